-- Raw payloads are kept as text: the feed client has already parsed every item, so the `json`
-- type's validation was a second parse of ~130 KB per page on the database's core; the
-- consolidator parses the text itself.
ALTER TABLE raw_diamonds_nivoda ALTER COLUMN payload TYPE text;
ALTER TABLE raw_diamonds_nivoda ALTER COLUMN payload SET STORAGE EXTERNAL;
