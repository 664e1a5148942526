-- Raw payloads (~2.6 KB of JSON) are stored out of line without compression: pglz compression
-- made every insert 1.5x slower on the database's one core (measured 11K vs 17K rows/s here), for
-- a table whose rows are rewritten on every change. It costs disk (about 1.8x), not CPU.
ALTER TABLE raw_diamonds_nivoda ALTER COLUMN payload SET STORAGE EXTERNAL;
