-- Tenant schema, version 5: scheduled jobs. `job_runs` marks a slot whose effects are
-- committed (the same transaction as its outbox rows), so a slot never sends twice.
CREATE TABLE job_runs (
    kind    TEXT NOT NULL,
    slot    TEXT NOT NULL,
    sent    INTEGER NOT NULL,
    detail  TEXT,
    ran_at  TEXT NOT NULL,
    PRIMARY KEY (kind, slot)
) STRICT, WITHOUT ROWID;

-- Generated reports (the weekly report): numbers, chart and optional narrative.
CREATE TABLE reports (
    id           INTEGER PRIMARY KEY,
    kind         TEXT NOT NULL,
    period_start TEXT NOT NULL,  -- first local day
    period_end   TEXT NOT NULL,  -- first local day not included
    data         TEXT NOT NULL,  -- JSON numbers
    narrative    TEXT,
    chart_png    BLOB,
    created_at   TEXT NOT NULL,
    UNIQUE (kind, period_start)
) STRICT;

ALTER TABLE outbox ADD COLUMN image BLOB;     -- sent as a photo / image, `text` its caption
ALTER TABLE outbox ADD COLUMN origin TEXT;    -- reply, or the job that queued it
CREATE INDEX inbox_received ON inbox (received_at);
CREATE INDEX outbox_created ON outbox (created_at);

-- Jobs write to staff chats, so every staff member needs a way to /join one (the seeded
-- owner had no join code).
UPDATE staff SET join_code = upper(hex(randomblob(4))) WHERE join_code IS NULL;
