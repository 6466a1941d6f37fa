-- Control schema, version 4: the trash as its own list. A deleted tenant's files wait in
-- the trash until restored or purged, and re-creating the id makes a new tenant beside
-- them instead of forgetting where they are (every deletion of an id is kept).
CREATE TABLE trash (
    id         TEXT NOT NULL,
    deleted_at TEXT NOT NULL,
    name       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    currency   TEXT NOT NULL,
    timezone   TEXT NOT NULL,
    path       TEXT NOT NULL,   -- <data_dir>/_trash/<id>-<time>
    PRIMARY KEY (id, deleted_at)
) STRICT, WITHOUT ROWID;

INSERT INTO trash (id, deleted_at, name, created_at, currency, timezone, path)
    SELECT id, deleted_at, name, created_at, currency, timezone, trash_path FROM tenants
    WHERE status = 'deleted' AND trash_path IS NOT NULL AND deleted_at IS NOT NULL;
DELETE FROM tenants WHERE status = 'deleted';
