-- Sync for the owner's app: the changeset log of the synced tables, the feed's epoch, and
-- join codes moved out of `staff` (a synced table) into a private table of their own.

CREATE TABLE sync_log (
    seq       INTEGER PRIMARY KEY,      -- dense: 1, 2, 3 …, never reused within an epoch
    what      TEXT NOT NULL,            -- what happened: an action's name, 'product', 'job' …
    changeset BLOB NOT NULL,            -- a SQLite session changeset of the synced tables
    at_ms     INTEGER NOT NULL
) STRICT;

CREATE TABLE sync_state (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    epoch          TEXT NOT NULL,       -- a new one after a restore, a migration or a reset
    pruned_through INTEGER NOT NULL DEFAULT 0  -- the last seq removed by retention
) STRICT;
INSERT INTO sync_state (id, epoch) VALUES (1, lower(hex(randomblob(8))));

CREATE TABLE join_codes (
    staff_id   INTEGER PRIMARY KEY REFERENCES staff (id),
    code       TEXT NOT NULL UNIQUE,
    expires_at TEXT NOT NULL
) STRICT;
INSERT INTO join_codes (staff_id, code, expires_at)
    SELECT id, join_code, join_code_expires_at FROM staff
    WHERE join_code IS NOT NULL AND join_code_expires_at IS NOT NULL;
-- The old columns stay (dropping a UNIQUE column needs a table rebuild) but are always NULL.
UPDATE staff SET join_code = NULL, join_code_expires_at = NULL;

-- The position from which a message's effects are visible to a syncing client (the write
-- checkpoint), also for its duplicates.
ALTER TABLE message_log ADD COLUMN sync_seq INTEGER;
