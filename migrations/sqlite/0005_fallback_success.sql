-- Per-step success criteria of channel fallback: JSON object channel → "sent" | "delivered" |
-- "read" (what the step must reach within fallback_after; default "delivered").
ALTER TABLE messages ADD COLUMN fallback_success TEXT;
