-- App webhooks (DESIGN.md §6): subscriptions and the durable delivery queue.
-- Timestamps are Unix milliseconds (INTEGER); JSON is TEXT.

CREATE TABLE webhook_endpoints (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL REFERENCES tenants(id),
    url         TEXT NOT NULL,
    events      TEXT NOT NULL,
    secret      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    deleted_at  INTEGER
);
CREATE INDEX webhook_endpoints_tenant ON webhook_endpoints (tenant_id, id);
CREATE INDEX webhook_endpoints_live ON webhook_endpoints (tenant_id) WHERE deleted_at IS NULL;

CREATE TABLE app_webhook_deliveries (
    id                TEXT PRIMARY KEY,
    endpoint_id       TEXT NOT NULL REFERENCES webhook_endpoints(id),
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
    delivered_at      INTEGER
);
-- The due-claim query: pending rows by next attempt time.
CREATE INDEX app_webhook_deliveries_due ON app_webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX app_webhook_deliveries_endpoint ON app_webhook_deliveries (endpoint_id, id);
