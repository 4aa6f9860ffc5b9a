//! App webhooks (DESIGN.md §6): events POSTed to the endpoints a tenant subscribed, signed
//! per the Standard Webhooks spec, from a durable queue with retries and back-off.
//!
//! - [`enqueue`] runs inside the store transaction that makes the change (a status moved, a
//!   message arrived, a conversation opened or closed), so an event exists if and only if
//!   its change was committed. It costs nothing for tenants without endpoints ([`cache`]).
//! - [`worker`] claims due deliveries under a lease, signs ([`sign`]) and POSTs them, and
//!   records each attempt; failures retry with exponential back-off and jitter, then fail.
//! - [`ssrf`] refuses URLs reaching private or loopback addresses, at creation and again
//!   on every delivery, unless `app_webhooks.allow_private_urls` is set.
//! - [`db`] and [`queue`] hold the SQL; [`views`] what the API shows.

mod cache;
pub mod db;
pub mod queue;
pub mod sign;
pub mod ssrf;
pub mod views;
mod worker;

pub use worker::{backoff, start, AppWebhooks};

use crate::domain::ids::{new_id, IdKind};
use crate::store::db::Db;
use std::sync::OnceLock;
use tokio::sync::Notify;

/// Every event type an endpoint can subscribe to (`*` subscribes to all).
pub const EVENT_TYPES: [&str; 4] = [
    "message.received",
    "message.status_updated",
    "conversation.created",
    "conversation.closed",
];

/// Queues `event_type` with `data` (the resource, as the API shows it) for every endpoint
/// of the tenant subscribed to it, inside the caller's transaction. Returns at once, with
/// no SQL, for a tenant that has no live endpoint; `data` is only built when some endpoint
/// is subscribed (most tenants have none, and the JSON is ~20 allocations).
pub async fn enqueue(
    conn: &mut Db<'_>,
    tenant_id: &str,
    event_type: &str,
    data: impl FnOnce() -> serde_json::Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if !may_have_endpoints(tenant_id) {
        return Ok(());
    }
    let subscribed: Vec<String> = db::subscribers(conn, tenant_id)
        .await?
        .into_iter()
        .filter(|(_, events)| events.iter().any(|e| e == "*" || e == event_type))
        .map(|(id, _)| id)
        .collect();
    if subscribed.is_empty() {
        return Ok(());
    }
    let event_id = new_id(IdKind::Event);
    let payload = payload(event_type, now_ms, &data());
    for endpoint_id in &subscribed {
        let d = queue::NewDelivery {
            target: queue::Target::Endpoint(endpoint_id),
            tenant_id,
            event_id: &event_id,
            event_type,
            payload: &payload,
            now: now_ms,
        };
        queue::insert_delivery(conn, &d).await?;
    }
    wake().notify_waiters();
    Ok(())
}

/// Where a message's own status callbacks go (`callback_url` of `POST /v1/messages`).
pub struct Callback<'a> {
    pub tenant_id: &'a str,
    pub message_id: &'a str,
    pub url: &'a str,
    pub secret: &'a str,
}

/// Whether `tenant_id` may have a live endpoint (false only when the cache knows it has
/// none): callers skip building an event's JSON when no one can receive it.
pub fn may_have_endpoints(tenant_id: &str) -> bool {
    cache::lookup(tenant_id) != cache::Answer::No
}

/// Queues `event_type` for a message's `callback_url`, inside the caller's transaction; it
/// is delivered, signed and retried like any app webhook.
pub async fn enqueue_callback(
    conn: &mut Db<'_>,
    to: &Callback<'_>,
    event_type: &str,
    data: &serde_json::Value,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let d = queue::NewDelivery {
        target: queue::Target::Callback(to),
        tenant_id: to.tenant_id,
        event_id: &new_id(IdKind::Event),
        event_type,
        payload: &payload(event_type, now_ms, data),
        now: now_ms,
    };
    queue::insert_delivery(conn, &d).await?;
    wake().notify_waiters();
    Ok(())
}

/// The body every endpoint receives: `{"type", "timestamp", "data"}` in that order.
pub fn payload(event_type: &str, now_ms: i64, data: &serde_json::Value) -> String {
    let s = |v: &str| serde_json::Value::from(v).to_string();
    format!(
        r#"{{"type":{},"timestamp":{},"data":{}}}"#,
        s(event_type),
        s(&crate::domain::rfc3339(now_ms)),
        data
    )
}

fn wake() -> &'static Notify {
    static WAKE: OnceLock<Notify> = OnceLock::new();
    WAKE.get_or_init(Notify::new)
}

/// Resolves when `enqueue` queued something (in any app of this process).
fn woken() -> tokio::sync::futures::Notified<'static> {
    wake().notified()
}

/// An endpoint is being created for the tenant in this process: deliver to it from now on.
pub(crate) fn tenant_gains_endpoint(tenant_id: &str) {
    cache::pin(tenant_id);
}

/// The tenant's last live endpoint was deleted in this process.
pub(crate) fn tenant_loses_endpoints(tenant_id: &str) {
    cache::forget(tenant_id);
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_type_timestamp_data() {
        let data = serde_json::json!({"id": "msg_1", "status": "delivered"});
        let p = payload("message.status_updated", 1_767_225_600_123, &data);
        assert_eq!(
            p,
            r#"{"type":"message.status_updated","timestamp":"2026-01-01T00:00:00.123Z","data":{"id":"msg_1","status":"delivered"}}"#
        );
        let v: serde_json::Value = serde_json::from_str(&p).unwrap();
        assert_eq!(v["data"], data);
    }
}
