-- REST API: search indexes for the catalogue's query shapes, and a resume point for repricing jobs.

-- Filtered searches (lab-grown, shape, carat range, plus grade/price/availability filters) find
-- their page and their bounded count with an index-only scan of this one index: every column the
-- common filters and the indexed sort keys read is in it, so no heap row is visited until the
-- page's 50 stones are fetched by id. It supersedes diamonds_shape_carats (same keys, reordered).
-- PostgreSQL 18's skip scan serves it when lab_grown or shape is not given.
DROP INDEX IF EXISTS diamonds_shape_carats;
CREATE INDEX diamonds_search ON diamonds (lab_grown, shape, carats, id)
    INCLUDE (retail_price, availability, color, clarity, cut, fancy_color, created_at)
    WHERE status = 'active';

-- Price order within a carat range (api.catalogue.query.carat_buckets): each 0.1 ct bucket in
-- price order, covering the usual filters so the page's ids come from an index-only scan.
CREATE INDEX diamonds_price_by_carat ON diamonds ((floor(carats * 10)::int), retail_price, id)
    INCLUDE (carats, lab_grown, shape, availability, color, clarity, cut, fancy_color)
    WHERE status = 'active';

-- Colour and clarity sort by their rank in the grade vocabulary (D before E, FL before IF); these
-- expressions are exactly api.catalogue.query.SORT_KEYS' so broad sorts and deep keyset pages
-- read them in order.
CREATE INDEX diamonds_color_rank ON diamonds (
    array_position(ARRAY['D','E','F','G','H','I','J','K','L','M','FANCY']::text[], color), id)
    WHERE status = 'active';
CREATE INDEX diamonds_clarity_rank ON diamonds (
    array_position(ARRAY['FL','IF','VVS1','VVS2','VS1','VS2','SI1','SI2','SI3','I1','I2','I3']::text[], clarity), id)
    WHERE status = 'active';

-- Where a repricing job continues after its runner died: the last diamond id it committed.
ALTER TABLE repricing_jobs ADD COLUMN resume_after uuid;
