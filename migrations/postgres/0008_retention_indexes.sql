-- The retention sweep deletes old finished rows by age without scanning live ones.
CREATE INDEX webhook_events_applied_age ON webhook_events (received_at) WHERE processed = 1;
CREATE INDEX app_webhook_deliveries_finished_age ON app_webhook_deliveries (created_at) WHERE status <> 'pending';
