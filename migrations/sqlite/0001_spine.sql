-- The spine: tenants, keys, conversations, messages, attempts, outbox, receipts.
-- Timestamps are Unix milliseconds (INTEGER); JSON is TEXT.

CREATE TABLE tenants (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    key_hash    TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE conversations (
    id                        TEXT PRIMARY KEY,
    tenant_id                 TEXT NOT NULL REFERENCES tenants(id),
    contact_id                TEXT,
    binding_key               TEXT UNIQUE,
    state                     TEXT NOT NULL,
    previous_conversation_id  TEXT,
    metadata                  TEXT,
    created_at                INTEGER NOT NULL,
    last_activity_at          INTEGER NOT NULL,
    closed_at                 INTEGER
);
CREATE INDEX conversations_tenant ON conversations (tenant_id, id);

CREATE TABLE messages (
    id               TEXT PRIMARY KEY,
    tenant_id        TEXT NOT NULL REFERENCES tenants(id),
    conversation_id  TEXT NOT NULL,
    direction        TEXT NOT NULL,
    channel          TEXT NOT NULL,
    to_addr          TEXT NOT NULL,
    from_addr        TEXT,
    body             TEXT,
    subject          TEXT,
    template         TEXT,
    metadata         TEXT,
    callback_url     TEXT,
    encoding         TEXT,
    segments         INTEGER,
    status           TEXT NOT NULL,
    error_reason     TEXT,
    error_code       TEXT,
    error_detail     TEXT,
    connection_id    TEXT,
    provider         TEXT,
    threading        TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL
);
CREATE INDEX messages_tenant ON messages (tenant_id, id);
CREATE INDEX messages_conversation ON messages (conversation_id, id);

CREATE TABLE status_history (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id           TEXT NOT NULL,
    status               TEXT NOT NULL,
    raw_status           TEXT,
    applied              INTEGER NOT NULL,
    connection_id        TEXT,
    provider_message_id  TEXT,
    error_code           TEXT,
    detail               TEXT,
    occurred_at          INTEGER NOT NULL
);
CREATE INDEX status_history_message ON status_history (message_id, id);

CREATE TABLE attempts (
    id             TEXT PRIMARY KEY,
    message_id     TEXT NOT NULL,
    seq            INTEGER NOT NULL,
    channel        TEXT NOT NULL,
    provider       TEXT NOT NULL,
    connection_id  TEXT NOT NULL,
    sender         TEXT,
    provider_ids   TEXT,
    outcome        TEXT NOT NULL,
    error_code     TEXT,
    error_detail   TEXT,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER
);
CREATE INDEX attempts_message ON attempts (message_id, seq);

CREATE TABLE outbox (
    message_id    TEXT PRIMARY KEY,
    available_at  INTEGER NOT NULL,
    tries         INTEGER NOT NULL DEFAULT 0,
    lease_token   TEXT,
    lease_until   INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);
CREATE INDEX outbox_due ON outbox (available_at);

CREATE TABLE provider_refs (
    connection_id        TEXT NOT NULL,
    provider_message_id  TEXT NOT NULL,
    message_id           TEXT NOT NULL,
    attempt_id           TEXT NOT NULL,
    part                 INTEGER NOT NULL,
    status               TEXT NOT NULL,
    PRIMARY KEY (connection_id, provider_message_id)
);
CREATE INDEX provider_refs_message ON provider_refs (message_id);

CREATE TABLE idempotency_keys (
    tenant_id        TEXT NOT NULL,
    idem_key         TEXT NOT NULL,
    request_hash     TEXT NOT NULL,
    response_status  INTEGER NOT NULL,
    response_body    TEXT NOT NULL,
    created_at       INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, idem_key)
);

CREATE TABLE webhook_events (
    id                   TEXT PRIMARY KEY,
    connection_id        TEXT NOT NULL,
    kind                 TEXT NOT NULL,
    dedupe_key           TEXT NOT NULL,
    event                TEXT NOT NULL,
    provider_message_id  TEXT,
    processed            INTEGER NOT NULL,
    received_at          INTEGER NOT NULL,
    UNIQUE (connection_id, dedupe_key)
);
CREATE INDEX webhook_events_parked ON webhook_events (connection_id, provider_message_id) WHERE processed = 0;
