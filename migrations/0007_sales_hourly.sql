-- Tenant schema, version 7: hourly sales totals, so a report reads a few rows per hour of
-- its period instead of every sale in it (a busy day's report read every sale of the day:
-- 12 ms at 23,000 sales). Every write that adds, voids or moves a sale updates them in its
-- transaction (`shop::report::count_sale`). Not triggers: their compiled schema costs
-- about 29 KiB more memory on every open connection.
CREATE TABLE sales_hourly (
    hour       TEXT NOT NULL,               -- the sale's UTC hour: substr(at, 1, 13)
    product_id INTEGER NOT NULL,            -- 0: the sales themselves (count, total, cash)
    qty        INTEGER NOT NULL DEFAULT 0,  -- thousandths, like sale_items.qty
    total      INTEGER NOT NULL DEFAULT 0,
    count      INTEGER NOT NULL DEFAULT 0,
    cash       INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (hour, product_id)
) STRICT, WITHOUT ROWID;

INSERT INTO sales_hourly (hour, product_id, count, total, cash)
    SELECT substr(at, 1, 13), 0, count(*), sum(total), sum(CASE WHEN paid THEN total ELSE 0 END)
    FROM sales WHERE voided = 0 GROUP BY 1;
INSERT INTO sales_hourly (hour, product_id, qty, total)
    SELECT substr(s.at, 1, 13), i.product_id, sum(i.qty), sum(i.total)
    FROM sale_items i JOIN sales s ON s.id = i.sale_id WHERE s.voided = 0 GROUP BY 1, 2;
