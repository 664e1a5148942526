"""Catalogue API benchmark: latency and throughput of a fixed search mix on a 500K-stone catalogue.

    .venv/bin/python -m bench.api_bench [--stones 500000] [--workers 2] [--duration 20]

Builds (or reuses) a catalogue in an embedded PostgreSQL (or DATABASE_URL), generated with SQL
(generate_series, seeded random) to realistic distributions; serves the API with uvicorn on
127.0.0.1; drives it from a separate load-generator process (raw HTTP/1.1 keep-alive clients, so
the generator costs little of the machine's two cores) and prints p50/p95/p99 latency at 1 client
and requests/s at 1 and 32 clients, against a baseline measured in the same run (GET /api/health).
"""

from __future__ import annotations

SEED_SQL = """

INSERT INTO diamonds (
    feed, supplier_stone_id, offer_id, shape, carats, color, clarity, cut, polish, symmetry,
    fluorescence_intensity, fancy_color, fancy_intensity, lab_grown, feed_price, price_per_carat,
    retail_price, markup_ratio, rating, availability, certificate_lab, certificate_number,
    image_url, video_url, ratio, table_pct, depth_pct, eye_clean, brown, green, milky,
    status, deleted_at, row_hash, created_at, updated_at)
SELECT
    CASE WHEN lab THEN 'nivoda-labgrown' ELSE 'nivoda-natural' END,
    'stone-' || g, 'offer-' || g, shape, carats,
    CASE WHEN fancy THEN 'FANCY' ELSE color END, clarity, cut, polish, symmetry, fluorescence,
    CASE WHEN fancy THEN (ARRAY['Yellow', 'Pink', 'Blue', 'Brown-Yellow', 'Green', 'Orangy Brown'])
                         [1 + (r9 * 6)::int %% 6] END,
    CASE WHEN fancy THEN (ARRAY['Fancy Light', 'Fancy', 'Fancy Intense', 'Fancy Vivid', 'Fancy Deep'])
                         [1 + (r10 * 5)::int %% 5] END,
    lab, cost, round(cost / carats, 2), round(cost * markup, 2), markup,
    CASE WHEN r11 < 0.1 THEN NULL ELSE greatest(1, least(10, round(6 + 2 * z3)))::smallint END,
    CASE WHEN r12 < 0.85 THEN 'available' WHEN r12 < 0.93 THEN 'on_hold' WHEN r12 < 0.97 THEN 'sold'
         ELSE 'unavailable' END,
    CASE WHEN lab THEN (CASE WHEN r13 < 0.7 THEN 'IGI' WHEN r13 < 0.85 THEN 'GCAL' ELSE 'GIA' END)
         ELSE (CASE WHEN r13 < 0.75 THEN 'GIA' WHEN r13 < 0.9 THEN 'IGI' WHEN r13 < 0.95 THEN 'HRD' ELSE 'AGS' END) END,
    'C' || (100000000 + g),
    'https://img.example/' || g || '.jpg', 'https://vid.example/' || g,
    CASE WHEN r14 < 0.05 THEN NULL ELSE round((ratio_base + ratio_span * r15)::numeric, 3) END,
    CASE WHEN r16 < 0.03 THEN NULL ELSE round((53 + 12 * r17)::numeric, 1) END,
    CASE WHEN r16 < 0.03 THEN NULL ELSE round((58 + 14 * r18)::numeric, 1) END,
    CASE WHEN r19 < 0.4 THEN NULL ELSE r19 < 0.85 END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.95 THEN 'NONE' ELSE 'Light' END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.97 THEN 'NONE' ELSE 'Faint' END,
    CASE WHEN r20 < 0.3 THEN NULL WHEN r20 < 0.96 THEN 'NONE' ELSE 'Light' END,
    CASE WHEN r21 < 0.03 THEN 'deleted' ELSE 'active' END,
    CASE WHEN r21 < 0.03 THEN now() - interval '1 day' END,
    decode(md5(g::text), 'hex'),
    now() - r22 * interval '120 days', now() - r22 * interval '60 days'
FROM (
    SELECT g, lab, fancy, shape, carats, color, clarity, cut, polish, symmetry, fluorescence,
           ratio_base, ratio_span, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18, r19, r20, r21, r22, z3,
           round(greatest(carats * price_base * exp(0.8 * ln(carats))
                 * (1.25 - 0.04 * color_rank) * (1.3 - 0.05 * clarity_rank) * exp(0.25 * z2)::numeric, 20), 2) AS cost,
           CASE WHEN lab THEN 1.79 ELSE 1.40 END + (CASE WHEN r23 < 0.5 THEN 0.06 ELSE -0.04 END) AS markup
    FROM (
        SELECT g, lab, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18, r19, r20, r21, r22, r23, z2, z3,
               r2 < 0.02 AS fancy,
               CASE WHEN lab THEN 300 ELSE 3500 END AS price_base,
               shape, round(least(10, greatest(0.18, exp(-0.25 + 0.6 * z1)))::numeric, 2) AS carats,
               color_rank, clarity_rank,
               (ARRAY['D','E','F','G','H','I','J','K','L','M'])[color_rank] AS color,
               (ARRAY['FL','IF','VVS1','VVS2','VS1','VS2','SI1','SI2','I1','I2'])[clarity_rank] AS clarity,
               CASE WHEN shape = 'ROUND' OR r5 < 0.5 THEN
                   (CASE WHEN r6 < 0.6 THEN 'EXCELLENT' WHEN r6 < 0.85 THEN 'VERY_GOOD' WHEN r6 < 0.95 THEN 'GOOD'
                         ELSE 'FAIR' END) END AS cut,
               CASE WHEN r7 < 0.55 THEN 'EXCELLENT' WHEN r7 < 0.9 THEN 'VERY_GOOD' ELSE 'GOOD' END AS polish,
               CASE WHEN r8 < 0.5 THEN 'EXCELLENT' WHEN r8 < 0.88 THEN 'VERY_GOOD' ELSE 'GOOD' END AS symmetry,
               CASE WHEN r5 < 0.6 THEN 'NONE' WHEN r5 < 0.8 THEN 'FAINT' WHEN r5 < 0.92 THEN 'MEDIUM'
                    WHEN r5 < 0.98 THEN 'STRONG' ELSE 'VERY_STRONG' END AS fluorescence,
               CASE shape WHEN 'ROUND' THEN 0.99 WHEN 'OVAL' THEN 1.30 WHEN 'EMERALD' THEN 1.30 WHEN 'PEAR' THEN 1.50
                          WHEN 'MARQUISE' THEN 1.80 WHEN 'CUSHION' THEN 1.00 ELSE 1.00 END AS ratio_base,
               CASE shape WHEN 'ROUND' THEN 0.02 ELSE 0.25 END AS ratio_span
        FROM (
            SELECT g, r1 < 0.55 AS lab, r2, r5, r6, r7, r8, r9, r10, r11, r12, r13, r14, r15, r16, r17, r18,
                   r19, r20, r21, r22, r23, z1, z2, z3,
                   CASE WHEN r3 < 0.45 THEN 'ROUND' WHEN r3 < 0.57 THEN 'OVAL' WHEN r3 < 0.65 THEN 'EMERALD'
                        WHEN r3 < 0.72 THEN 'CUSHION' WHEN r3 < 0.78 THEN 'PRINCESS' WHEN r3 < 0.84 THEN 'PEAR'
                        WHEN r3 < 0.89 THEN 'RADIANT' WHEN r3 < 0.92 THEN 'MARQUISE' WHEN r3 < 0.95 THEN 'ASSCHER'
                        WHEN r3 < 0.98 THEN 'HEART' ELSE 'CUSHION MODIFIED' END AS shape,
                   CASE WHEN r4 < 0.08 THEN 1 WHEN r4 < 0.20 THEN 2 WHEN r4 < 0.35 THEN 3 WHEN r4 < 0.52 THEN 4
                        WHEN r4 < 0.67 THEN 5 WHEN r4 < 0.79 THEN 6 WHEN r4 < 0.88 THEN 7 WHEN r4 < 0.94 THEN 8
                        WHEN r4 < 0.98 THEN 9 ELSE 10 END AS color_rank,
                   CASE WHEN r24 < 0.01 THEN 1 WHEN r24 < 0.04 THEN 2 WHEN r24 < 0.12 THEN 3 WHEN r24 < 0.23 THEN 4
                        WHEN r24 < 0.40 THEN 5 WHEN r24 < 0.59 THEN 6 WHEN r24 < 0.79 THEN 7 WHEN r24 < 0.93 THEN 8
                        WHEN r24 < 0.98 THEN 9 ELSE 10 END AS clarity_rank
            FROM (
                SELECT g, random() r1, random() r2, random() r3, random() r4, random() r5, random() r6,
                       random() r7, random() r8, random() r9, random() r10, random() r11, random() r12,
                       random() r13, random() r14, random() r15, random() r16, random() r17, random() r18,
                       random() r19, random() r20, random() r21, random() r22, random() r23, random() r24,
                       random_normal() z1, random_normal() z2, random_normal() z3
                FROM generate_series(1, %(stones)s) g
            ) raw
        ) picked
    ) graded
) priced
"""
