-- Control schema, version 2: chat channel bindings and tenants with work in flight.
CREATE TABLE channel_bindings (
    tenant_id  TEXT NOT NULL,
    channel    TEXT NOT NULL CHECK (channel IN ('telegram', 'whatsapp')),
    key        TEXT NOT NULL, -- telegram: bot id; whatsapp: phone_number_id
    token      TEXT NOT NULL, -- bot token / access token: never returned by the API
    secret     TEXT,          -- telegram: the webhook secret token
    username   TEXT,
    created_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, channel),
    UNIQUE (channel, key)
) STRICT;

-- Tenants whose inbox or outbox may hold unfinished rows (resumed at start).
CREATE TABLE pending_work (
    tenant_id TEXT PRIMARY KEY NOT NULL,
    since     TEXT NOT NULL
) STRICT, WITHOUT ROWID;
