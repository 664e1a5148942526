-- REST API search tuning, from measurements on a 500K-stone catalogue (bench/api_bench.py).

-- Price order within a carat range, now per origin as well: lab-grown stones cost a fraction of
-- natural ones of the same weight, so a bucket read in price order without the origin skipped
-- every cheap lab stone before reaching the first natural one (13K index entries per bucket).
-- api.catalogue.query reads one (origin, 0.1 ct bucket) at a time and merges them.
DROP INDEX IF EXISTS diamonds_price_by_carat;
CREATE INDEX diamonds_price_by_origin_carat ON diamonds (lab_grown, (floor(carats * 10)::int), retail_price, id)
    INCLUDE (carats, shape, availability, color, clarity, cut, fancy_color)
    WHERE status = 'active';

-- Fancy-coloured stones are about 2 % of the catalogue: `fancy=true` searches and their counts
-- read this small index instead of filtering the whole price index.
CREATE INDEX diamonds_fancy_price ON diamonds (retail_price, id)
    INCLUDE (availability, shape, carats, lab_grown, fancy_color, color, clarity)
    WHERE status = 'active' AND fancy_color IS NOT NULL;
