-- Service Bus time-to-live on the local bus: a message expires at its enqueue (or scheduled) time plus
-- its queue's default time-to-live. Messages sent before this migration have none and never expire.
ALTER TABLE bus_messages ADD COLUMN expires_at timestamptz;
-- Receives look for their queue's expired messages first: only those rows are read.
CREATE INDEX bus_messages_expiry ON bus_messages (queue, expires_at) WHERE expires_at IS NOT NULL;
