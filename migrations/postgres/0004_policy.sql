-- Delivery policy: pinned connection, fallback channels, scheduling, validity, priority,
-- the consent ledger.

ALTER TABLE messages ADD COLUMN pinned_connection TEXT;
ALTER TABLE messages ADD COLUMN fallback TEXT;
ALTER TABLE messages ADD COLUMN fallback_after_ms BIGINT;
ALTER TABLE messages ADD COLUMN channel_step BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN send_at BIGINT;
ALTER TABLE messages ADD COLUMN valid_until BIGINT;
ALTER TABLE messages ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN kind TEXT;

-- `purpose`: 'send' (dispatch the current channel step) or 'fallback' (check for delivery
-- after fallback_after and move to the next channel if there is none).
ALTER TABLE outbox ADD COLUMN priority BIGINT NOT NULL DEFAULT 0;
ALTER TABLE outbox ADD COLUMN purpose TEXT NOT NULL DEFAULT 'send';
CREATE INDEX outbox_due_priority ON outbox (priority, available_at);

CREATE TABLE consent (
    tenant_id    TEXT NOT NULL,
    -- an identity (`tel:+…`) for sender/channel scope, a contact id for contact scope
    subject      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    -- the sender identity, the channel, or '*' for contact scope
    scope_value  TEXT NOT NULL,
    status       TEXT NOT NULL,
    source       TEXT NOT NULL,
    keyword      TEXT,
    updated_at   BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, subject, scope, scope_value)
);

CREATE TABLE consent_log (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    subject      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    scope_value  TEXT NOT NULL,
    status       TEXT NOT NULL,
    source       TEXT NOT NULL,
    keyword      TEXT,
    message_id   TEXT,
    created_at   BIGINT NOT NULL
);
CREATE INDEX consent_log_subject ON consent_log (tenant_id, subject, created_at);
