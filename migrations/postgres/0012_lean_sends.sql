-- Less work per message for PostgreSQL (measured with pg_waldump: 37.5 B-tree inserts per
-- message before this, and the foreign-key checks ~8 % of PostgreSQL's CPU under load).
--
-- * A send's result sets `connection_id` and `business_addr`. Both were indexed, so that
--   update could never be HOT: it wrote a new entry into every index of `messages` (four).
--   Neither index needs the column any more:
--   - `messages_inbound_pid` finds an inbound message by its provider id; ids are unique
--     per provider (Telegram's carry their chat), so the connection is checked on the row.
--   - `messages_lease` (the reply lease: the last outbound messages to a customer from a
--     business address) keys on the customer and walks their outbound messages newest
--     first, checking the business address on each row. For a tenant with one sender per
--     channel that is the same walk; with a pool of senders it reads the customer's
--     messages from the others too (stopping at the lookup's LIMIT).
-- * `status_history` is only ever read by message, in id order: its primary key is that
--   order, and the separate `status_history_message` index (a second insert for every
--   history row, three per message) goes.
-- * The hot tables' foreign keys to `tenants` (and identities' to `contacts`) ran a
--   trigger and a locking lookup for every row inserted, and with several writers every
--   insert shared a lock on the one tenant row (multixacts). Tenants are never deleted and
--   every tenant id written comes from a `tenants` lookup; a contact is deleted only by
--   the accept's undo, when its identity was never written (the address had an owner
--   already). The keys of the rarely written tables (API keys, app webhooks) stay.
DROP INDEX IF EXISTS messages_inbound_pid;
CREATE INDEX messages_inbound_pid ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;
DROP INDEX IF EXISTS messages_lease;
CREATE INDEX messages_lease ON messages (tenant_id, customer_identity, id) WHERE direction = 'outbound';

ALTER TABLE status_history DROP CONSTRAINT status_history_pkey;
DROP INDEX IF EXISTS status_history_message;
ALTER TABLE status_history ADD PRIMARY KEY (message_id, id);

ALTER TABLE messages DROP CONSTRAINT IF EXISTS messages_tenant_id_fkey;
ALTER TABLE conversations DROP CONSTRAINT IF EXISTS conversations_tenant_id_fkey;
ALTER TABLE contacts DROP CONSTRAINT IF EXISTS contacts_tenant_id_fkey;
ALTER TABLE identities DROP CONSTRAINT IF EXISTS identities_contact_id_fkey;
