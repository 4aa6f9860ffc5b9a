//! Recognising a provider's retried webhook: where each event's key is kept.
//!
//! Providers retry a callback until they get a 2xx, so the same event can arrive twice, even
//! at two replicas at once. Each event has a key (the provider's event id or idempotency
//! token, or its message id and status), and a second event with a key already seen is a
//! duplicate: acknowledged, not applied.
//!
//! - A receipt that finds its message and writes one history row for it — a status that is
//!   not a failure, of a message sent in one part — keeps its key on that history row
//!   ([`keyed`]). That is nearly every receipt, and it costs no row of its own.
//! - Every other event (a receipt parked until its send's answer names its provider id, a
//!   failure, which may move the message to a fallback channel, an informational status, a
//!   part of a long message, an inbound message) is stored in `webhook_events`, unique per
//!   connection and [`stored_key`].
//!
//! Before a receipt is applied, its message's history and `webhook_events` are searched
//! for its key ([`SEEN_TEST`]; the latter also holds the keys of receipts applied before
//! migration 0013). On PostgreSQL that read is a statement of its own ([`SEEN`]), after
//! the one that takes the message's row lock (in the same round trip): whoever applied an
//! earlier copy held that lock until its commit, so the later copy sees the earlier one's
//! history row. SQLite writes one transaction at a time, so there the test is a column of
//! the read that finds the message.

use sqlx::any::AnyRow;
use sqlx::Row;
use std::sync::LazyLock;
use weft_provider::{InboundEvent, StatusEvent};

/// Whether the receipt `s`, whose provider id's ref is `by_ref` (see
/// [`super::webhooks::refs_where`]), keeps its key on the history row it writes (and is
/// not stored in `webhook_events`).
pub(super) fn keyed(s: &StatusEvent, by_ref: Option<&AnyRow>) -> Result<bool, sqlx::Error> {
    let Some(row) = by_ref else { return Ok(false) };
    Ok(s.status.is_some_and(|st| !st.is_failure()) && row.try_get::<i64, _>("parts")? <= 1)
}

/// Whether the receipt keyed `$3` (stored as `$4`, [`stored_key`]) for the ref `r` was
/// applied: it is in its message's history (a [`keyed`] one) or in `webhook_events` (every
/// other one, and those stored before migration 0013). A parked event does not count: it
/// is the one being applied, or a retry of it finds its row when it is stored.
pub(super) const SEEN_TEST: &str = "(EXISTS (SELECT 1 FROM status_history h
       WHERE h.message_id = r.message_id AND h.connection_id = r.connection_id AND h.dedupe_key = $3)
     OR EXISTS (SELECT 1 FROM webhook_events w
       WHERE w.connection_id = r.connection_id AND w.dedupe_key = $4 AND w.processed = 1))";

/// A row if the receipt of [`SEEN_TEST`] for provider id `$2` on connection `$1` was
/// applied (PostgreSQL: run after the statement that locks the message).
pub(super) static SEEN: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT 1 AS seen FROM provider_refs r
         WHERE r.connection_id = $1 AND r.provider_message_id = $2 AND {SEEN_TEST}"
    )
});

/// [`SEEN`] for many receipts at once (PostgreSQL; `$1` connections, `$2` provider ids,
/// `$3` keys, `$4` stored keys): the `(ref_connection, ref_pid, dedupe_key)` of every
/// receipt key in their messages' history, and of those of the receipts applied from
/// `webhook_events`.
pub(super) const SEEN_ALL: &str = "SELECT r.connection_id AS ref_connection, r.provider_message_id AS ref_pid, h.dedupe_key
     FROM provider_refs r
     JOIN status_history h ON h.message_id = r.message_id AND h.connection_id = r.connection_id
     WHERE (r.connection_id, r.provider_message_id) IN (SELECT u.c, u.p FROM unnest($1::text[], $2::text[]) AS u(c, p))
       AND h.dedupe_key IS NOT NULL
     UNION ALL
     SELECT u.c, u.p, u.k
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(c, p, k, stored)
     JOIN webhook_events w ON w.connection_id = u.c AND w.dedupe_key = u.stored AND w.processed = 1";

/// The key an event is stored under in `webhook_events`. A receipt that names weft's
/// message (the ids adapters put in the callback URL) is keyed under that message: message
/// ids grow with time, so the unique index gets its inserts near its right edge, on pages
/// other recent receipts just wrote, instead of one random page per receipt (provider
/// tokens and ids are random). Retries of one callback carry the same URL and token, so
/// they still collide.
pub(super) fn stored_key(ev: &InboundEvent) -> String {
    match ev {
        InboundEvent::Status(s) => stored_status_key(s),
        other => other.dedupe_key().to_string(),
    }
}

/// [`stored_key`] of a receipt.
pub(super) fn stored_status_key(s: &StatusEvent) -> String {
    match &s.correlation.message_id {
        Some(m) => format!("{m}/{}", s.dedupe_key),
        None => s.dedupe_key.clone(),
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use weft_provider::DeliveryStatus;

    /// A `delivered` receipt for provider id `SM1`, keyed `token`.
    fn receipt(message_id: Option<&str>, token: &str) -> InboundEvent {
        let mut job = super::super::receipts::tests::webhook_job(
            "SM1",
            message_id,
            DeliveryStatus::Delivered,
            token,
        );
        job.events.remove(0)
    }

    #[test]
    fn events_are_stored_under_their_message() {
        let a = stored_key(&receipt(Some("msg_01A"), "tok-1"));
        assert_eq!(a, "msg_01A/tok-1");
        // A retry (same URL, same token) collides; another message's receipt does not.
        assert_eq!(a, stored_key(&receipt(Some("msg_01A"), "tok-1")));
        assert_ne!(a, stored_key(&receipt(Some("msg_01B"), "tok-1")));
        // Without weft's id the provider's key is used as it is.
        assert_eq!(stored_key(&receipt(None, "SM1:sent")), "SM1:sent");
    }

    /// Only a receipt that finds its message, is not a failure and is not a part of a long
    /// message keeps its key in the history.
    #[tokio::test]
    async fn only_plain_found_receipts_are_keyed_in_history() {
        let mut conn = crate::store::migrated_in_memory();
        let mut db = super::super::db::Db::Lite(&mut conn);
        // A ref row as the message's lookup reads it, with `n` parts.
        let sql = "SELECT $1 AS parts";
        let one = super::super::db::query(sql)
            .bind(1_i64)
            .fetch_one(&mut db)
            .await;
        let two = super::super::db::query(sql)
            .bind(2_i64)
            .fetch_one(&mut db)
            .await;
        let (one, two) = (one.expect("row"), two.expect("row"));
        let InboundEvent::Status(mut s) = receipt(None, "k") else {
            unreachable!("a receipt")
        };
        assert!(keyed(&s, Some(&one)).expect("keyed"));
        assert!(!keyed(&s, Some(&two)).expect("a part"));
        assert!(!keyed(&s, None).expect("no message yet"));
        s.status = Some(DeliveryStatus::Undeliverable);
        assert!(!keyed(&s, Some(&one)).expect("a failure"));
        s.status = None;
        assert!(!keyed(&s, Some(&one)).expect("informational"));
    }

    /// A receipt applied before migration 0013 (in `webhook_events`, its history row without
    /// a key) still drops the provider's retry of it; a new receipt is keyed in history.
    #[tokio::test]
    async fn a_receipt_applied_before_the_upgrade_still_drops_its_retry() {
        use super::super::db::Db;
        use super::super::webhooks::run;
        let mut conn = crate::store::migrated_in_memory();
        conn.execute_batch(LEGACY).expect("setup");
        let job = |status, key| {
            super::super::receipts::tests::webhook_job("SM1", Some("msg_1"), status, key)
        };
        let retry = job(DeliveryStatus::Delivered, "tok-1");
        let out = run(&mut Db::Lite(&mut conn), &retry).await.expect("retry");
        assert_eq!((out.stored, out.duplicates), (0, 1));
        let late = job(DeliveryStatus::Sent, "tok-2");
        let out = run(&mut Db::Lite(&mut conn), &late).await.expect("late");
        assert_eq!((out.stored, out.duplicates), (1, 0));
        let rows: (i64, i64) = conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM status_history),
                        (SELECT COUNT(*) FROM status_history WHERE dedupe_key = 'tok-2')",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("history");
        assert_eq!(rows, (2, 1));
        let again = run(&mut Db::Lite(&mut conn), &late).await.expect("again");
        assert_eq!((again.stored, again.duplicates), (0, 1));
    }

    /// A delivered message whose `delivered` receipt was applied before migration 0013.
    pub(in crate::store) const LEGACY: &str = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
        INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, created_at, updated_at)
          VALUES ('msg_1', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'delivered', 0, 0);
        INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status)
          VALUES ('c', 'SM1', 'msg_1', 'att_1', 0, 'queued');
        INSERT INTO webhook_events (id, connection_id, kind, dedupe_key, event, provider_message_id, processed, received_at)
          VALUES ('evt_1', 'c', 'status', 'msg_1/tok-1', '', 'SM1', 1, 0);
        INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, occurred_at)
          VALUES ('msg_1', 'delivered', 'delivered', 1, 'c', 'SM1', 0);";
}
