-- The original's seed pricing (its migration 003): per stone type, cost brackets with a margin
-- modifier in percentage points over the type's base margin (natural 40, lab 79, fancy 40).
INSERT INTO pricing_rules (priority, description, stone_type, cost_min, cost_max, margin_modifier) VALUES
    (10, 'natural stones costing $0.00 to $499.99', 'natural', 0.00, 499.99, 6.00),
    (11, 'natural stones costing $500.00 to $999.99', 'natural', 500.00, 999.99, 6.00),
    (12, 'natural stones costing $1000.00 to $2999.99', 'natural', 1000.00, 2999.99, 3.00),
    (13, 'natural stones costing $3000.00 to $5999.99', 'natural', 3000.00, 5999.99, 0.00),
    (14, 'natural stones costing $6000.00 to $9999.99', 'natural', 6000.00, 9999.99, -4.00),
    (15, 'natural stones costing $10000.00 to $19999.99', 'natural', 10000.00, 19999.99, -9.00),
    (16, 'natural stones costing $20000.00 and above', 'natural', 20000.00, NULL, -14.00),
    (20, 'lab stones costing $0.00 to $499.99', 'lab', 0.00, 499.99, 6.00),
    (21, 'lab stones costing $500.00 to $999.99', 'lab', 500.00, 999.99, 6.00),
    (22, 'lab stones costing $1000.00 to $2999.99', 'lab', 1000.00, 2999.99, 3.00),
    (23, 'lab stones costing $3000.00 to $5999.99', 'lab', 3000.00, 5999.99, 0.00),
    (24, 'lab stones costing $6000.00 to $9999.99', 'lab', 6000.00, 9999.99, -4.00),
    (25, 'lab stones costing $10000.00 to $19999.99', 'lab', 10000.00, 19999.99, -9.00),
    (26, 'lab stones costing $20000.00 and above', 'lab', 20000.00, NULL, -14.00),
    (30, 'fancy stones costing $0.00 to $499.99', 'fancy', 0.00, 499.99, 6.00),
    (31, 'fancy stones costing $500.00 to $999.99', 'fancy', 500.00, 999.99, 6.00),
    (32, 'fancy stones costing $1000.00 to $2999.99', 'fancy', 1000.00, 2999.99, 3.00),
    (33, 'fancy stones costing $3000.00 to $5999.99', 'fancy', 3000.00, 5999.99, 0.00),
    (34, 'fancy stones costing $6000.00 to $9999.99', 'fancy', 6000.00, 9999.99, -4.00),
    (35, 'fancy stones costing $10000.00 to $19999.99', 'fancy', 10000.00, 19999.99, -9.00),
    (36, 'fancy stones costing $20000.00 and above', 'fancy', 20000.00, NULL, -14.00);
