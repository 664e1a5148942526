-- Foreign keys on the hot write paths cost more than they protect. Each inserted row runs a
-- referential check that takes a FOR KEY SHARE lock on the referenced row, and for these tables
-- that row is the same for every concurrent writer (one feeds row, one run row): concurrent
-- locks on one row become MultiXacts. Measured here: raw upserts of new stones went from 6K to
-- 10K rows/s without them.
-- * The feed of raw rows and diamonds is checked against the known variants instead (adding a
--   feed is a migration anyway).
-- * raw_pending and run_seen_stones are bookkeeping written only next to the rows they point at.
ALTER TABLE raw_diamonds_nivoda DROP CONSTRAINT raw_diamonds_nivoda_feed_fkey,
    ADD CONSTRAINT raw_diamonds_nivoda_feed_check CHECK (feed IN ('nivoda-natural', 'nivoda-labgrown'));
ALTER TABLE diamonds DROP CONSTRAINT diamonds_feed_fkey,
    ADD CONSTRAINT diamonds_feed_check CHECK (feed IN ('nivoda-natural', 'nivoda-labgrown'));
ALTER TABLE raw_pending DROP CONSTRAINT raw_pending_feed_fkey,
    DROP CONSTRAINT raw_pending_feed_supplier_stone_id_fkey;
ALTER TABLE run_seen_stones DROP CONSTRAINT run_seen_stones_run_id_fkey;
