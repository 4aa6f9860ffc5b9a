-- Per-message status callbacks (`callback_url` of POST /v1/messages) ride the app-webhook
-- delivery queue: such a delivery has no endpoint but its own URL and signing secret.
ALTER TABLE messages ADD COLUMN callback_secret TEXT;
ALTER TABLE app_webhook_deliveries ALTER COLUMN endpoint_id DROP NOT NULL;
ALTER TABLE app_webhook_deliveries ADD COLUMN url TEXT;
ALTER TABLE app_webhook_deliveries ADD COLUMN secret TEXT;
ALTER TABLE app_webhook_deliveries ADD COLUMN message_id TEXT;
