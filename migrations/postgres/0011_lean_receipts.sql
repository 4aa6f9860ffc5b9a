-- Fewer index writes per message (each is CPU and WAL):
--
-- * `outbox_due` is unused: the claim scans `outbox_due_priority` (priority, available_at).
--   It cost an index insert at accept and a delete at the send's end.
-- * Applied webhook events are pruned by their id (`evt_` + a ULID made when the event was
--   received, so ids order by arrival) instead of by an index on `received_at`, which cost
--   an insert per receipt (two per message with the simulator: `sent`, `delivered`).
DROP INDEX IF EXISTS outbox_due;
DROP INDEX IF EXISTS webhook_events_applied_age;
