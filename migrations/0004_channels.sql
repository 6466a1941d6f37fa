-- Tenant schema, version 4: the durable inbox and outbox of chat channels.
CREATE TABLE inbox (
    id           INTEGER PRIMARY KEY,
    channel      TEXT NOT NULL,
    update_key   TEXT NOT NULL UNIQUE, -- telegram: tg:<bot>:<update_id>; whatsapp: the wamid
    chat_id      TEXT,
    sender_id    TEXT,
    sender_name  TEXT,
    text         TEXT,
    payload      TEXT NOT NULL,        -- the raw body as received
    status       TEXT NOT NULL CHECK (status IN ('pending', 'done', 'ignored')),
    note         TEXT,
    received_at  TEXT NOT NULL,
    processed_at TEXT
) STRICT;
CREATE INDEX inbox_pending ON inbox (status, chat_id, id);

CREATE TABLE outbox (
    id              INTEGER PRIMARY KEY,
    channel         TEXT NOT NULL,
    chat_id         TEXT NOT NULL,
    text            TEXT NOT NULL,
    parts_sent      INTEGER NOT NULL DEFAULT 0,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'unreachable')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    last_error      TEXT,
    provider_id     TEXT,
    delivery_status TEXT,          -- the provider's last word: sent, delivered, read, failed
    inbox_id        INTEGER REFERENCES inbox (id),
    created_at      TEXT NOT NULL,
    sent_at         TEXT
) STRICT;
CREATE INDEX outbox_due ON outbox (status, next_attempt_at, id);
CREATE INDEX outbox_provider ON outbox (provider_id);
