-- Tenant schema, version 2: the shop. Money is integer minor units of the tenant currency;
-- quantities are integer thousandths (1.5 kg = 1500). Names have a lowercase key for lookups.
CREATE TABLE staff (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'manager', 'staff', 'driver', 'vendor')),
    join_code  TEXT UNIQUE,
    active     INTEGER NOT NULL DEFAULT 1,
    created_at TEXT NOT NULL
) STRICT;

CREATE TABLE identities (
    id          INTEGER PRIMARY KEY,
    staff_id    INTEGER NOT NULL REFERENCES staff (id),
    channel     TEXT NOT NULL,
    external_id TEXT NOT NULL,
    chat_id     TEXT,
    created_at  TEXT NOT NULL,
    UNIQUE (channel, external_id)
) STRICT;
CREATE INDEX identities_staff ON identities (staff_id);

CREATE TABLE products (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL,
    name_key     TEXT NOT NULL UNIQUE,
    unit         TEXT NOT NULL DEFAULT 'pcs',
    price        INTEGER NOT NULL CHECK (price >= 0),
    stock        INTEGER NOT NULL DEFAULT 0,
    low_stock_at INTEGER,
    low_alerted  INTEGER NOT NULL DEFAULT 0,
    active       INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL
) STRICT;

CREATE TABLE product_aliases (
    alias_key  TEXT PRIMARY KEY NOT NULL,
    product_id INTEGER NOT NULL REFERENCES products (id) ON DELETE CASCADE
) STRICT;
CREATE INDEX product_aliases_product ON product_aliases (product_id);

CREATE TABLE customers (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    name_key   TEXT NOT NULL UNIQUE,
    phone      TEXT,
    balance    INTEGER NOT NULL DEFAULT 0, -- owed to the shop
    created_at TEXT NOT NULL
) STRICT;

-- The action journal: one row per applied write, with the operations that reverse it.
CREATE TABLE journal (
    id        INTEGER PRIMARY KEY,
    staff_id  INTEGER NOT NULL REFERENCES staff (id),
    action    TEXT NOT NULL,
    undo_ops  TEXT NOT NULL,
    at_ms     INTEGER NOT NULL,
    undone    INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX journal_staff ON journal (staff_id, id);

CREATE TABLE stock_movements (
    id         INTEGER PRIMARY KEY,
    product_id INTEGER NOT NULL REFERENCES products (id),
    delta      INTEGER NOT NULL,
    cause      TEXT NOT NULL CHECK (cause IN ('initial', 'sale', 'restock', 'count', 'undo')),
    unit_cost  INTEGER,
    supplier   TEXT,
    journal_id INTEGER REFERENCES journal (id),
    at         TEXT NOT NULL
) STRICT;
CREATE INDEX stock_movements_product ON stock_movements (product_id);

CREATE TABLE sales (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER REFERENCES customers (id),
    staff_id    INTEGER NOT NULL REFERENCES staff (id),
    total       INTEGER NOT NULL,
    paid        INTEGER NOT NULL,
    voided      INTEGER NOT NULL DEFAULT 0,
    at          TEXT NOT NULL
) STRICT;
CREATE INDEX sales_at ON sales (at);
CREATE INDEX sales_customer ON sales (customer_id);

CREATE TABLE sale_items (
    id         INTEGER PRIMARY KEY,
    sale_id    INTEGER NOT NULL REFERENCES sales (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    qty        INTEGER NOT NULL,
    unit_price INTEGER NOT NULL,
    total      INTEGER NOT NULL
) STRICT;
CREATE INDEX sale_items_sale ON sale_items (sale_id);
CREATE INDEX sale_items_product ON sale_items (product_id);

CREATE TABLE payments (
    id          INTEGER PRIMARY KEY,
    customer_id INTEGER NOT NULL REFERENCES customers (id),
    staff_id    INTEGER NOT NULL REFERENCES staff (id),
    amount      INTEGER NOT NULL,
    voided      INTEGER NOT NULL DEFAULT 0,
    at          TEXT NOT NULL
) STRICT;
CREATE INDEX payments_customer ON payments (customer_id);
CREATE INDEX payments_at ON payments (at);

CREATE TABLE expenses (
    id       INTEGER PRIMARY KEY,
    staff_id INTEGER NOT NULL REFERENCES staff (id),
    amount   INTEGER NOT NULL,
    category TEXT,
    note     TEXT,
    voided   INTEGER NOT NULL DEFAULT 0,
    at       TEXT NOT NULL
) STRICT;
CREATE INDEX expenses_at ON expenses (at);

CREATE TABLE orders (
    id           INTEGER PRIMARY KEY,
    customer_id  INTEGER NOT NULL REFERENCES customers (id),
    staff_id     INTEGER NOT NULL REFERENCES staff (id),
    address      TEXT,
    status       TEXT NOT NULL CHECK (status IN ('pending', 'assigned', 'delivered', 'cancelled')),
    driver_id    INTEGER REFERENCES staff (id),
    total        INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    delivered_at TEXT
) STRICT;
CREATE INDEX orders_status ON orders (status, id);
CREATE INDEX orders_driver ON orders (driver_id, status);

CREATE TABLE order_items (
    id         INTEGER PRIMARY KEY,
    order_id   INTEGER NOT NULL REFERENCES orders (id),
    product_id INTEGER NOT NULL REFERENCES products (id),
    qty        INTEGER NOT NULL,
    unit_price INTEGER NOT NULL,
    total      INTEGER NOT NULL
) STRICT;
CREATE INDEX order_items_order ON order_items (order_id);

-- Every message or action that reached the tenant, whatever became of it.
CREATE TABLE message_log (
    id          INTEGER PRIMARY KEY,
    inbound_id  TEXT UNIQUE,
    channel     TEXT NOT NULL,
    sender      TEXT NOT NULL,
    staff_id    INTEGER REFERENCES staff (id),
    text        TEXT,
    action      TEXT,
    source      TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('applied', 'rejected', 'clarify')),
    reply       TEXT NOT NULL,
    journal_id  INTEGER REFERENCES journal (id),
    received_at TEXT NOT NULL,
    parse_us    INTEGER,
    exec_us     INTEGER
) STRICT;
CREATE INDEX message_log_received ON message_log (received_at);
