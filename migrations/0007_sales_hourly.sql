-- Tenant schema, version 7: hourly sales totals kept by triggers, so a report reads a few
-- rows per hour of its period instead of every sale in it (a busy day's report read every
-- sale of the day: 12 ms at 23,000 sales). Triggers keep every writer honest, including
-- voids, undo, corrections and direct SQL.
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

-- A sale counts while it is not voided; its lines count at the sale's hour.
CREATE TRIGGER sales_hourly_sale_in AFTER INSERT ON sales WHEN NEW.voided = 0 BEGIN
    INSERT INTO sales_hourly (hour, product_id, count, total, cash)
        VALUES (substr(NEW.at, 1, 13), 0, 1, NEW.total, CASE WHEN NEW.paid THEN NEW.total ELSE 0 END)
        ON CONFLICT DO UPDATE SET count = count + 1, total = total + excluded.total,
            cash = cash + excluded.cash;
END;

CREATE TRIGGER sales_hourly_sale_out AFTER DELETE ON sales WHEN OLD.voided = 0 BEGIN
    INSERT INTO sales_hourly (hour, product_id, count, total, cash)
        VALUES (substr(OLD.at, 1, 13), 0, -1, -OLD.total, CASE WHEN OLD.paid THEN -OLD.total ELSE 0 END)
        ON CONFLICT DO UPDATE SET count = count + excluded.count, total = total + excluded.total,
            cash = cash + excluded.cash;
END;

CREATE TRIGGER sales_hourly_sale_change AFTER UPDATE OF voided, at, total, paid ON sales BEGIN
    INSERT INTO sales_hourly (hour, product_id, count, total, cash)
        SELECT substr(OLD.at, 1, 13), 0, -1, -OLD.total, CASE WHEN OLD.paid THEN -OLD.total ELSE 0 END
        WHERE OLD.voided = 0
        ON CONFLICT DO UPDATE SET count = count + excluded.count, total = total + excluded.total,
            cash = cash + excluded.cash;
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(OLD.at, 1, 13), product_id, -qty, -total FROM sale_items
        WHERE sale_id = OLD.id AND OLD.voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
    INSERT INTO sales_hourly (hour, product_id, count, total, cash)
        SELECT substr(NEW.at, 1, 13), 0, 1, NEW.total, CASE WHEN NEW.paid THEN NEW.total ELSE 0 END
        WHERE NEW.voided = 0
        ON CONFLICT DO UPDATE SET count = count + excluded.count, total = total + excluded.total,
            cash = cash + excluded.cash;
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(NEW.at, 1, 13), product_id, qty, total FROM sale_items
        WHERE sale_id = NEW.id AND NEW.voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
END;

CREATE TRIGGER sales_hourly_line_in AFTER INSERT ON sale_items BEGIN
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(at, 1, 13), NEW.product_id, NEW.qty, NEW.total FROM sales
        WHERE id = NEW.sale_id AND voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
END;

CREATE TRIGGER sales_hourly_line_out AFTER DELETE ON sale_items BEGIN
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(at, 1, 13), OLD.product_id, -OLD.qty, -OLD.total FROM sales
        WHERE id = OLD.sale_id AND voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
END;

CREATE TRIGGER sales_hourly_line_change AFTER UPDATE ON sale_items BEGIN
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(at, 1, 13), OLD.product_id, -OLD.qty, -OLD.total FROM sales
        WHERE id = OLD.sale_id AND voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
    INSERT INTO sales_hourly (hour, product_id, qty, total)
        SELECT substr(at, 1, 13), NEW.product_id, NEW.qty, NEW.total FROM sales
        WHERE id = NEW.sale_id AND voided = 0
        ON CONFLICT DO UPDATE SET qty = qty + excluded.qty, total = total + excluded.total;
END;
