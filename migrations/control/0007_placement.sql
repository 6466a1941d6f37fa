-- Control schema, version 7: moves between machines. A tenant leaving this machine is
-- noted before the directory is switched (the move's commit point) and forgotten once its
-- rows and file are gone here; a tenant arriving waits, restored and unserved, until the
-- directory names this machine. Both are resolved against the directory at every start.
CREATE TABLE moves_out (
    tenant_id  TEXT PRIMARY KEY NOT NULL,
    to_machine TEXT NOT NULL,
    epoch      INTEGER NOT NULL,   -- the directory epoch the move switches to
    started_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE arrivals (
    tenant_id    TEXT PRIMARY KEY NOT NULL,
    from_machine TEXT NOT NULL,
    epoch        INTEGER NOT NULL, -- the directory epoch that makes it this machine's
    staged_path  TEXT NOT NULL,    -- the restored file, outside the tenants' folders
    passport     TEXT NOT NULL,    -- the tenant's control rows, JSON (control::passport)
    arrived_at   TEXT NOT NULL
) STRICT, WITHOUT ROWID;
