//! Receipts that arrive before weft knows their provider id (the callback raced the send's
//! answer, and names no message of weft's): stored in `webhook_events` with their event,
//! unprocessed, and applied when the send's result records that id.

use super::db::{query, Db};
use super::status::StatusChange;
use super::webhooks::apply_status;
use crate::domain::now_ms;
use sqlx::Row;
use weft_provider::InboundEvent;

/// Receipts parked for one provider id (`$1` connection, `$2` provider id), oldest first.
pub(super) const PARKED_SQL: &str = "SELECT id, event FROM webhook_events WHERE connection_id = $1 AND provider_message_id = $2 AND processed = 0 ORDER BY received_at";

/// Applies receipts that arrived before their provider ids were stored (read with
/// [`PARKED_SQL`] when the send's result was recorded).
pub(super) async fn apply_parked(
    conn: &mut Db<'_>,
    connection_id: &str,
    rows: Vec<sqlx::any::AnyRow>,
) -> Result<Vec<StatusChange>, sqlx::Error> {
    let mut changes = Vec::new();
    for r in rows {
        let id: String = r.try_get("id")?;
        let event: String = r.try_get("event")?;
        if let Ok(InboundEvent::Status(s)) = serde_json::from_str::<InboundEvent>(&event) {
            if let Some(mut c) = apply_status(conn, connection_id, &s, now_ms()).await? {
                changes.append(&mut c);
                query("UPDATE webhook_events SET processed = 1 WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::super::receipts::tests::webhook_job;
    use super::super::webhooks::run;
    use super::*;
    use weft_provider::DeliveryStatus;

    /// A receipt for a provider id weft has not recorded yet, without weft's ids: parked with
    /// its event (applied events are stored without it), then applied when the send's answer
    /// names that id. A retry of it meanwhile is a duplicate.
    #[tokio::test]
    async fn a_parked_receipt_keeps_its_event_until_it_is_applied() {
        let mut conn = crate::store::migrated_in_memory();
        conn.execute_batch(
            "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
             INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, created_at, updated_at)
               VALUES ('msg_1', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'queued', 0, 0);",
        )
        .expect("setup");
        let job = webhook_job("SM1", None, DeliveryStatus::Delivered, "SM1:delivered");
        let out = run(&mut Db::Lite(&mut conn), &job).await.expect("run");
        assert_eq!((out.stored, out.parked), (1, 1));
        let again = run(&mut Db::Lite(&mut conn), &job).await.expect("retry");
        assert_eq!((again.stored, again.duplicates), (0, 1));
        let event: String = conn
            .query_row(
                "SELECT event FROM webhook_events WHERE processed = 0",
                [],
                |r| r.get(0),
            )
            .expect("the parked event");
        assert!(event.contains("SM1"), "{event}");

        conn.execute_batch(
            "INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status)
               VALUES ('c', 'SM1', 'msg_1', 'att_1', 0, 'queued');",
        )
        .expect("the send's answer");
        let mut db = Db::Lite(&mut conn);
        let rows = query(PARKED_SQL)
            .bind("c")
            .bind("SM1")
            .fetch_all(&mut db)
            .await
            .expect("parked rows");
        assert_eq!(rows.len(), 1);
        let changes = apply_parked(&mut db, "c", rows).await.expect("apply");
        assert!(changes.iter().any(|c| c.moved), "delivered is applied");
        let (status, parked): (String, i64) = conn
            .query_row(
                "SELECT status, (SELECT COUNT(*) FROM webhook_events WHERE processed = 0) FROM messages WHERE id = 'msg_1'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .expect("state");
        assert_eq!((status.as_str(), parked), ("delivered", 0));
        // Applied, its key is on its history row: a later retry is still a duplicate.
        let late = run(&mut Db::Lite(&mut conn), &job)
            .await
            .expect("late retry");
        assert_eq!((late.stored, late.duplicates), (0, 1));
        let history: i64 = conn
            .query_row(
                "SELECT COUNT(*) FROM status_history WHERE dedupe_key = 'SM1:delivered'",
                [],
                |r| r.get(0),
            )
            .expect("history");
        assert_eq!(history, 1);
    }
}
