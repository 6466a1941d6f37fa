-- Control schema, version 5: device keys. An owner's phone holds a named, revocable key of
-- its own with a role (owner or manager) instead of the shop's master key; only the key's
-- SHA-256 is kept. A revoked key is refused at once.
CREATE TABLE devices (
    id         INTEGER PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    name       TEXT NOT NULL,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'manager')),
    key_hash   TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
) STRICT;
CREATE INDEX devices_by_tenant ON devices (tenant_id, id);
