-- Control schema, version 3: the schedule index and its run ledger.
-- Times the ticker compares are integer milliseconds since the epoch (UTC).
CREATE TABLE schedules (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    cron        TEXT NOT NULL,
    timezone    TEXT NOT NULL,
    enabled     INTEGER NOT NULL DEFAULT 1,
    recipients  TEXT NOT NULL,   -- JSON array of staff roles
    next_run_ms INTEGER,         -- NULL while disabled
    lease_ms    INTEGER,         -- set while a run holds the schedule
    last_run_at TEXT,
    last_status TEXT,
    updated_at  TEXT NOT NULL,
    UNIQUE (tenant_id, kind)
) STRICT;
CREATE INDEX schedules_due ON schedules (next_run_ms) WHERE enabled = 1;

-- One row per slot a schedule ran, missed or was run by hand; unique per (schedule, slot).
CREATE TABLE schedule_runs (
    id          INTEGER PRIMARY KEY,
    schedule_id INTEGER NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tenant_id   TEXT NOT NULL,
    kind        TEXT NOT NULL,
    slot        TEXT NOT NULL,   -- UTC instant the run is for
    trigger     TEXT NOT NULL CHECK (trigger IN ('schedule', 'catch_up', 'manual')),
    status      TEXT NOT NULL CHECK (status IN ('running', 'done', 'failed', 'missed')),
    started_at  TEXT,
    finished_at TEXT,
    sent        INTEGER NOT NULL DEFAULT 0,
    detail      TEXT,
    UNIQUE (schedule_id, slot)
) STRICT;
CREATE INDEX schedule_runs_tenant ON schedule_runs (tenant_id, id);
CREATE INDEX schedule_runs_finished ON schedule_runs (finished_at);
