-- The shop's job schedules as the owner's app sees them (a synced table): a mirror of the
-- control db's schedule index, which stays the scheduler's source of truth. Only what an
-- owner sets is mirrored; run times and outcomes are in `GET /schedules` and the run ledger.

CREATE TABLE schedules (
    kind       TEXT PRIMARY KEY,
    cron       TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    recipients TEXT NOT NULL,   -- JSON array of staff roles
    updated_at TEXT NOT NULL
) STRICT;
