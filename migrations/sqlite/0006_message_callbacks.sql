-- Per-message status callbacks (`callback_url` of POST /v1/messages) ride the app-webhook
-- delivery queue: such a delivery has no endpoint but its own URL and signing secret.
-- SQLite cannot drop NOT NULL in place: the (unreferenced) delivery table is rebuilt.
ALTER TABLE messages ADD COLUMN callback_secret TEXT;

CREATE TABLE app_webhook_deliveries_new (
    id                TEXT PRIMARY KEY,
    endpoint_id       TEXT REFERENCES webhook_endpoints(id),
    tenant_id         TEXT NOT NULL,
    event_id          TEXT NOT NULL,
    event_type        TEXT NOT NULL,
    payload           TEXT NOT NULL,
    attempts          INTEGER NOT NULL DEFAULT 0,
    attempt_log       TEXT,
    next_attempt_at   INTEGER NOT NULL,
    lease_token       TEXT,
    lease_until       INTEGER NOT NULL DEFAULT 0,
    status            TEXT NOT NULL,
    last_status_code  INTEGER,
    last_error        TEXT,
    created_at        INTEGER NOT NULL,
    delivered_at      INTEGER,
    url               TEXT,
    secret            TEXT,
    message_id        TEXT
);
INSERT INTO app_webhook_deliveries_new (id, endpoint_id, tenant_id, event_id, event_type, payload, attempts, attempt_log, next_attempt_at, lease_token, lease_until, status, last_status_code, last_error, created_at, delivered_at)
    SELECT id, endpoint_id, tenant_id, event_id, event_type, payload, attempts, attempt_log, next_attempt_at, lease_token, lease_until, status, last_status_code, last_error, created_at, delivered_at
    FROM app_webhook_deliveries;
DROP TABLE app_webhook_deliveries;
ALTER TABLE app_webhook_deliveries_new RENAME TO app_webhook_deliveries;
CREATE INDEX app_webhook_deliveries_due ON app_webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX app_webhook_deliveries_endpoint ON app_webhook_deliveries (endpoint_id, id);
