-- Control schema, version 1: the tenant registry.
CREATE TABLE tenants (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'deleted')),
    created_at   TEXT NOT NULL,
    currency     TEXT NOT NULL,
    timezone     TEXT NOT NULL,
    api_key_hash TEXT NOT NULL,
    deleted_at   TEXT,
    trash_path   TEXT
) STRICT;
CREATE INDEX tenants_status_id ON tenants (status, id);
CREATE INDEX tenants_key ON tenants (api_key_hash) WHERE status = 'active';
