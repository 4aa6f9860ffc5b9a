-- Contacts, their channel identities, merges; what threading needs on messages.

CREATE TABLE contacts (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants(id),
    name         TEXT,
    metadata     TEXT,
    merged_into  TEXT,
    created_at   INTEGER NOT NULL
);
CREATE INDEX contacts_tenant ON contacts (tenant_id, id);

CREATE TABLE identities (
    id          TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    contact_id  TEXT NOT NULL REFERENCES contacts(id),
    address     TEXT NOT NULL,
    valid_from  INTEGER NOT NULL,
    valid_to    INTEGER,
    created_at  INTEGER NOT NULL
);
-- One live owner per address and tenant; retired identities keep their history.
CREATE UNIQUE INDEX identities_live ON identities (tenant_id, address) WHERE valid_to IS NULL;
CREATE INDEX identities_contact ON identities (contact_id);

CREATE TABLE contact_merges (
    id           TEXT PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    survivor_id  TEXT NOT NULL,
    merged_id    TEXT NOT NULL,
    identities   TEXT NOT NULL,
    conversations TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    undone_at    INTEGER
);
CREATE INDEX contact_merges_pair ON contact_merges (survivor_id, merged_id);

CREATE TABLE kv (
    k  TEXT PRIMARY KEY,
    v  TEXT NOT NULL
);

ALTER TABLE messages ADD COLUMN customer_identity TEXT;
ALTER TABLE messages ADD COLUMN business_addr TEXT;
ALTER TABLE messages ADD COLUMN email_message_id TEXT;
ALTER TABLE messages ADD COLUMN provider_message_id TEXT;
CREATE INDEX messages_lease ON messages (tenant_id, customer_identity, business_addr, id);
CREATE INDEX messages_email_id ON messages (email_message_id);
CREATE INDEX messages_inbound_pid ON messages (connection_id, provider_message_id);
CREATE INDEX conversations_contact ON conversations (contact_id, state);
