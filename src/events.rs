//! What happens after a status change is committed: metrics now, app webhooks later.

use crate::metrics;
use crate::store::db::Db;
use crate::store::StatusChange;
use weft_provider::DeliveryStatus;

/// Reports committed status changes.
pub fn status_changed(changes: &[StatusChange], now_ms: i64) {
    for c in changes.iter().filter(|c| c.moved) {
        let channel = channel_label(&c.channel);
        ::metrics::counter!(metrics::MESSAGE_STATUS, "channel" => channel, "status" => c.status.as_str()).increment(1);
        if c.status == DeliveryStatus::Delivered {
            let secs = (now_ms - c.created_at).max(0) as f64 / 1000.0;
            ::metrics::histogram!(metrics::ACCEPT_TO_DELIVERED, "channel" => channel).record(secs);
        }
    }
}

/// Maps a stored channel name onto the closed label set.
pub fn channel_label(channel: &str) -> &'static str {
    weft_provider::Channel::ALL
        .into_iter()
        .find(|c| c.as_str() == channel)
        .map(|c| c.as_str())
        .unwrap_or("other")
}

/// Queues an app-webhook event in the current transaction (durable with the change).
pub async fn app_event(
    conn: &mut Db<'_>,
    tenant_id: &str,
    event_type: &str,
    data: impl FnOnce() -> serde_json::Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    crate::app_webhooks::enqueue(conn, tenant_id, event_type, data, now_ms).await
}
