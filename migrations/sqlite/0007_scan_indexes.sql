-- Indexes for lookups that scanned whole tables.
--
-- A shared connection (tenant "*") finds the tenant of an inbound sender by address alone;
-- without this index that lookup scanned every live identity.
CREATE INDEX identities_address_live ON identities (address, created_at) WHERE valid_to IS NULL;

-- The periodic sweeps (conversation idle/close, message expiry) run on the writing
-- connection; without these they scanned every conversation / every message each time.
CREATE INDEX conversations_activity ON conversations (state, last_activity_at);
CREATE INDEX messages_valid_until ON messages (valid_until) WHERE valid_until IS NOT NULL;
