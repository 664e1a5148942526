-- Raw payloads are stored as `json` (the text as received), not `jsonb`: nothing queries inside
-- them, and measured here jsonb cost 2x on insert (ingestion) and 2.6x on output (consolidation),
-- both on the database's one core of two.
ALTER TABLE raw_diamonds_nivoda ALTER COLUMN payload TYPE json USING payload::json;
