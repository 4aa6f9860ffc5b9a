-- Fewer B-tree writes per message (each is CPU, and a page in the WAL at every commit):
--
-- * `outbox_due` is unused: the claim scans `outbox_due_priority` (priority, available_at).
--   It cost an index insert at accept and a delete at the send's end.
-- * Applied webhook events are pruned by their id (`evt_` + a ULID made when the event was
--   received, so ids order by arrival) instead of by an index on `received_at`, which cost
--   an insert per receipt (two per message with the simulator: `sent`, `delivered`).
-- * `status_history` keeps its integer key without AUTOINCREMENT, which read and rewrote the
--   `sqlite_sequence` row on every insert (three per message). Rows are never deleted, so a
--   new row still gets a larger id than every row before it, and history ordered by id stays
--   in insertion order. SQLite cannot drop AUTOINCREMENT in place: the table is copied.
DROP INDEX IF EXISTS outbox_due;
DROP INDEX IF EXISTS webhook_events_applied_age;

CREATE TABLE status_history_plain (
    id                   INTEGER PRIMARY KEY,
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
INSERT INTO status_history_plain (id, message_id, status, raw_status, applied, connection_id, provider_message_id, error_code, detail, occurred_at)
    SELECT id, message_id, status, raw_status, applied, connection_id, provider_message_id, error_code, detail, occurred_at FROM status_history;
DROP TABLE status_history;
ALTER TABLE status_history_plain RENAME TO status_history;
CREATE INDEX status_history_message ON status_history (message_id, id);
