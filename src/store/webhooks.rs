//! Storing verified webhook events: raw event first (de-duplicated per connection), then
//! applied. A receipt for a provider id weft has not stored yet is parked and re-matched when
//! the send's result is recorded.

use super::db::{query, Db};
use super::delivery::{delete_outbox, finish_attempt, record_refs};
use super::receipt_keys;
use super::script::Script;
use super::status::{self, ErrorFields, StatusChange, StatusInput};
use crate::domain::{ids, now_ms};
use sqlx::any::AnyRow;
use sqlx::Row;
use std::str::FromStr;
use std::sync::LazyLock;
use weft_provider::{DeliveryStatus, InboundEvent, StatusEvent};

pub struct WebhookJob {
    pub connection_id: String,
    pub kind: String,
    /// The connection's tenant (`*`: shared, resolved per event).
    pub tenant: String,
    pub events: Vec<InboundEvent>,
    pub email: std::sync::Arc<crate::threading::EmailThreading>,
    pub consent: std::sync::Arc<crate::policy::consent::ConsentPolicy>,
}

#[derive(Default)]
pub struct WebhookOutcome {
    pub stored: usize,
    pub duplicates: usize,
    pub parked: usize,
    pub changes: Vec<StatusChange>,
    /// Ids of inbound messages stored.
    pub inbound_messages: Vec<String>,
}

pub async fn run(conn: &mut Db<'_>, job: &WebhookJob) -> Result<WebhookOutcome, sqlx::Error> {
    let mut out = WebhookOutcome::default();
    let now = now_ms();
    for ev in &job.events {
        run_event(conn, job, ev, now, &mut out).await?;
    }
    Ok(out)
}

/// Stores and applies one event, unless it is a duplicate (see [`receipt_keys`]).
pub(super) async fn run_event(
    conn: &mut Db<'_>,
    job: &WebhookJob,
    ev: &InboundEvent,
    now: i64,
    out: &mut WebhookOutcome,
) -> Result<(), sqlx::Error> {
    let mut by_ref = None;
    if let InboundEvent::Status(s) = ev {
        let (row, seen) = read_ref_and_seen(conn, &job.connection_id, s).await?;
        if seen {
            out.duplicates += 1;
            return Ok(());
        }
        if receipt_keys::keyed(s, row.as_ref())? {
            out.stored += 1;
            return process_stored(conn, job, ev, None, row, now, out).await;
        }
        by_ref = row;
    }
    // Stored as processed, without the event: an event that is not applied (a receipt
    // that finds no message) is marked parked below (same transaction), which is the rare
    // case, and only a parked event is ever read back. An applied one is kept (for
    // `retention.webhook_events_days`) only to recognise the provider's retries.
    let event_id = ids::new_id(ids::IdKind::Event);
    let pid = match ev {
        InboundEvent::Status(s) => Some(s.provider_message_id.as_str()),
        InboundEvent::Message(m) => Some(m.provider_message_id.as_str()),
        _ => None,
    };
    let inserted = query(
        "INSERT INTO webhook_events (id, connection_id, kind, dedupe_key, event, provider_message_id, processed, received_at)
         VALUES ($1, $2, $3, $4, '', $5, 1, $6) ON CONFLICT (connection_id, dedupe_key) DO NOTHING",
    )
    .bind(&event_id)
    .bind(&job.connection_id)
    .bind(&job.kind)
    .bind(receipt_keys::stored_key(ev))
    .bind(pid)
    .bind(now)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if inserted == 0 {
        out.duplicates += 1;
        return Ok(());
    }
    out.stored += 1;
    process_stored(conn, job, ev, Some(&event_id), by_ref, now, out).await
}

/// A receipt's [`REF_SQL`] row (locking its message where writers run concurrently) and
/// whether it was applied already ([`receipt_keys::SEEN_TEST`], read after the lock), in
/// one round trip.
async fn read_ref_and_seen(
    conn: &mut Db<'_>,
    connection_id: &str,
    s: &StatusEvent,
) -> Result<(Option<AnyRow>, bool), sqlx::Error> {
    let (pid, key) = (s.provider_message_id.as_str(), s.dedupe_key.as_str());
    let stored = receipt_keys::stored_status_key(s);
    if !conn.concurrent() {
        let row = query(&REF_SQL_SEEN)
            .bind(connection_id)
            .bind(pid)
            .bind(key)
            .bind(&stored)
            .fetch_optional(&mut *conn)
            .await?;
        let seen = row
            .as_ref()
            .map(|r| r.try_get::<i64, _>("seen"))
            .transpose()?;
        return Ok((row, seen.is_some_and(|n| n != 0)));
    }
    let mut script = Script::new();
    script.add(
        REF_SQL_FOR_UPDATE.as_str(),
        vec![connection_id.into(), pid.into()],
    );
    script.add(
        receipt_keys::SEEN.as_str(),
        vec![connection_id.into(), pid.into(), key.into(), stored.into()],
    );
    let mut results = script.run(&mut *conn).await?.into_iter();
    let by_ref = results.next().and_then(|mut o| o.rows.pop());
    let seen = results.next().is_some_and(|o| !o.rows.is_empty());
    Ok((by_ref, seen))
}

/// Applies an event (`by_ref`: a receipt's [`REF_SQL`] row, read before); parks a
/// receipt that finds no message, if it is stored in `webhook_events` as `event_id`.
pub(super) async fn process_stored(
    conn: &mut Db<'_>,
    job: &WebhookJob,
    ev: &InboundEvent,
    event_id: Option<&str>,
    by_ref: Option<AnyRow>,
    now: i64,
    out: &mut WebhookOutcome,
) -> Result<(), sqlx::Error> {
    let processed = match ev {
        InboundEvent::Status(s) => {
            match apply_status_with(conn, &job.connection_id, s, now, by_ref).await? {
                Some(mut c) => {
                    out.changes.append(&mut c);
                    true
                }
                None => false,
            }
        }
        other => {
            if let Some(id) = crate::threading::ingest(
                conn,
                &job.connection_id,
                &job.tenant,
                &job.email,
                &job.consent,
                other,
                now,
            )
            .await?
            {
                out.inbound_messages.push(id);
            }
            true
        }
    };
    if let (false, Some(event_id)) = (processed, event_id) {
        query("UPDATE webhook_events SET processed = 0, event = $1 WHERE id = $2")
            .bind(serde_json::to_string(ev).unwrap_or_default())
            .bind(event_id)
            .execute(&mut *conn)
            .await?;
        out.parked += 1;
    }
    Ok(())
}

/// A provider id's ref (`$1` connection, `$2` provider id): message, attempt, part status,
/// the attempt's number of parts, and the message's [`status::CURRENT_COLUMNS`].
static REF_SQL: LazyLock<String> = LazyLock::new(|| refs_where(REF_CONDITION));

/// [`REF_SQL`]'s ref: `$1` connection, `$2` provider id.
const REF_CONDITION: &str = "r.connection_id = $1 AND r.provider_message_id = $2";

/// [`REF_SQL`]'s columns (and the ref's own `connection_id`, `provider_message_id`) for the
/// refs `condition` picks.
pub(super) fn refs_where(condition: &str) -> String {
    refs_with(&[], condition)
}

/// [`refs_where`] with more columns.
fn refs_with(extra: &[String], condition: &str) -> String {
    let mut current: Vec<String> = status::CURRENT_COLUMNS
        .split(", ")
        .map(|c| format!("m.{c}"))
        .collect();
    current.extend_from_slice(extra);
    format!(
        "SELECT r.message_id, r.attempt_id, r.status AS part_status, r.connection_id AS ref_connection, r.provider_message_id AS ref_pid,
            (SELECT COUNT(*) FROM provider_refs p WHERE p.message_id = r.message_id AND p.attempt_id = r.attempt_id) AS parts,
            {}
         FROM provider_refs r JOIN messages m ON m.id = r.message_id
         WHERE {condition}",
        current.join(", ")
    )
}

/// [`REF_SQL`] with [`receipt_keys::SEEN_TEST`] (`$3` key, `$4` stored key) as the column
/// `seen` (SQLite, where the read that finds the message is current without a lock).
pub(super) static REF_SQL_SEEN: LazyLock<String> = LazyLock::new(|| {
    refs_with(
        &[format!("{} AS seen", receipt_keys::SEEN_TEST)],
        REF_CONDITION,
    )
});

/// [`REF_SQL`] locking the message row (PostgreSQL; see [`status::current_sql`]).
static REF_SQL_FOR_UPDATE: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE OF m", REF_SQL.as_str()));

/// Applies one receipt (nothing if its message's history has it: a retry of it found
/// the send's answer first). `None`: no message known yet (park it).
pub(super) async fn apply_status(
    conn: &mut Db<'_>,
    connection_id: &str,
    s: &StatusEvent,
    now: i64,
) -> Result<Option<Vec<StatusChange>>, sqlx::Error> {
    let (by_ref, seen) = read_ref_and_seen(conn, connection_id, s).await?;
    if seen {
        return Ok(Some(Vec::new()));
    }
    apply_status_with(conn, connection_id, s, now, by_ref).await
}

/// [`apply_status`] with the [`REF_SQL`] row already read.
async fn apply_status_with(
    conn: &mut Db<'_>,
    connection_id: &str,
    s: &StatusEvent,
    now: i64,
    by_ref: Option<AnyRow>,
) -> Result<Option<Vec<StatusChange>>, sqlx::Error> {
    let ref_attempt: Option<String> = match &by_ref {
        Some(r) => Some(r.try_get("attempt_id")?),
        None => s.correlation.attempt_id.clone(),
    };
    // Part statuses matter only for a message sent in several parts (long SMS on Vonage).
    let (message_id, part_status) = match &by_ref {
        Some(r) => (
            r.try_get::<String, _>("message_id")?,
            if r.try_get::<i64, _>("parts")? > 1 {
                Some(r.try_get::<String, _>("part_status")?)
            } else {
                None
            },
        ),
        None => {
            // Not recorded yet (callback raced the send's answer, or we crashed mid-send):
            // the ids weft put in the callback prove which message and attempt it is.
            let Some(mid) = &s.correlation.message_id else {
                return Ok(None);
            };
            let exists = query("SELECT id FROM messages WHERE id = $1")
                .bind(mid)
                .fetch_optional(&mut *conn)
                .await?;
            if exists.is_none() {
                return Ok(None);
            }
            if let Some(att) = &s.correlation.attempt_id {
                reconcile(conn, connection_id, mid, att, &s.provider_message_id, now).await?;
            }
            (mid.clone(), None)
        }
    };
    // The one history row of a single message's receipt keeps its key (`receipt_keys`).
    let single = part_status.is_none();
    let Some(incoming) = s.status else {
        // Informational (no effect on delivery): history only.
        query(
            "INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, error_code, detail, occurred_at)
             SELECT $1, status, $2, 0, $3, $4, $5, $6, $7 FROM messages WHERE id = $8",
        )
        .bind(&message_id)
        .bind(&s.raw_status)
        .bind(connection_id)
        .bind(&s.provider_message_id)
        .bind(&s.error_code)
        .bind(&s.error_detail)
        .bind(s.occurred_at_ms.unwrap_or(now))
        .bind(&message_id)
        .execute(&mut *conn)
        .await?;
        return Ok(Some(Vec::new()));
    };
    // A long SMS has one id per part: the message is as far as its slowest part.
    let mut effective = incoming;
    if let Some(ps) = part_status {
        let cur = DeliveryStatus::from_str(&ps).unwrap_or(DeliveryStatus::Queued);
        if let weft_provider::status::Transition::Moved(n) = cur.apply(incoming) {
            query("UPDATE provider_refs SET status = $1 WHERE connection_id = $2 AND provider_message_id = $3")
                .bind(n.as_str())
                .bind(connection_id)
                .bind(&s.provider_message_id)
                .execute(&mut *conn)
                .await?;
        }
        // Parts of this attempt only: an earlier channel's (fallback) refs are not parts.
        let parts =
            query("SELECT status FROM provider_refs WHERE message_id = $1 AND attempt_id = $2")
                .bind(&message_id)
                .bind(ref_attempt.as_deref())
                .fetch_all(&mut *conn)
                .await?;
        if parts.len() > 1 {
            let statuses: Vec<DeliveryStatus> = parts
                .iter()
                .filter_map(|r| r.try_get::<String, _>("status").ok())
                .filter_map(|s| DeliveryStatus::from_str(&s).ok())
                .collect();
            if let Some(c) = DeliveryStatus::combine_parts(&statuses) {
                effective = if incoming.is_failure() { incoming } else { c };
            }
        }
    }
    if effective.is_failure() && falls_back(conn, &message_id, ref_attempt.as_deref()).await? {
        let detail = s
            .error_detail
            .clone()
            .unwrap_or_else(|| format!("provider reported {}", s.raw_status));
        super::delivery::next_channel(
            conn,
            &message_id,
            status::reason_for(effective),
            s.error_code.as_deref(),
            &detail,
            now,
        )
        .await?;
        if let Some(att) = &ref_attempt {
            query("UPDATE attempts SET outcome = 'failed', error_code = $1, error_detail = $2 WHERE id = $3")
                .bind(&s.error_code)
                .bind(&detail)
                .bind(att)
                .execute(&mut *conn)
                .await?;
        }
        return Ok(Some(Vec::new()));
    }
    if effective.is_failure() && s.opted_out {
        super::delivery::provider_opt_out(conn, &message_id, None, s.error_code.as_deref(), now)
            .await?;
    }
    let reason = status::reason_for(effective);
    let error = effective.is_failure().then_some(ErrorFields {
        reason: if s.opted_out { "opted_out" } else { reason },
        code: s.error_code.as_deref(),
        detail: s.error_detail.as_deref(),
    });
    let input = StatusInput {
        status: effective,
        raw_status: Some(&s.raw_status),
        connection_id: Some(connection_id),
        provider_message_id: Some(&s.provider_message_id),
        error,
        at: s.occurred_at_ms.unwrap_or(now),
        dedupe_key: (single && !effective.is_failure()).then_some(s.dedupe_key.as_str()),
    };
    // The message row read with the ref is still current: nothing above changed it, and
    // where writers run concurrently the read locked it.
    let change = match &by_ref {
        Some(row) => Some(status::apply_to(conn, &message_id, row, &input).await?),
        None => status::apply(conn, &message_id, &input).await?,
    };
    Ok(Some(change.into_iter().collect()))
}

/// True when a failure of this attempt should move the message to its next fallback
/// channel: the message has one left and the attempt belongs to the current channel (a late
/// failure of an earlier channel is history only — it is applied, but the state machine
/// keeps a delivered message delivered).
async fn falls_back(
    conn: &mut Db<'_>,
    message_id: &str,
    attempt_id: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let Some(row) =
        query("SELECT channel, fallback, channel_step, status FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(false);
    };
    let fallback: Vec<weft_provider::Channel> =
        super::json_col(&row, "fallback").unwrap_or_default();
    let step: i64 = row.try_get("channel_step")?;
    let status: String = row.try_get("status")?;
    if usize::try_from(step).map_or(true, |s| s >= fallback.len())
        || DeliveryStatus::from_str(&status).is_ok_and(|s| s.is_final())
    {
        return Ok(false);
    }
    let first: String = row.try_get("channel")?;
    let Ok(first) = weft_provider::Channel::from_str(&first) else {
        return Ok(false);
    };
    let current = if step == 0 {
        Some(first)
    } else {
        usize::try_from(step - 1)
            .ok()
            .and_then(|i| fallback.get(i).copied())
    };
    let Some(att) = attempt_id else {
        return Ok(false);
    };
    let row = query("SELECT channel FROM attempts WHERE id = $1")
        .bind(att)
        .fetch_optional(&mut *conn)
        .await?;
    let att_channel: Option<String> = row.map(|r| r.try_get("channel")).transpose()?;
    Ok(att_channel.as_deref() == current.map(|c| c.as_str()))
}

/// A callback proved an attempt reached the provider: record it as taken.
async fn reconcile(
    conn: &mut Db<'_>,
    connection_id: &str,
    message_id: &str,
    attempt_id: &str,
    provider_message_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row = query("SELECT outcome FROM attempts WHERE id = $1 AND message_id = $2")
        .bind(attempt_id)
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(()) };
    let outcome: String = row.try_get("outcome")?;
    if matches!(outcome.as_str(), "in_flight" | "unknown" | "timeout") {
        let ids = vec![provider_message_id.to_string()];
        finish_attempt(conn, attempt_id, "queued", Some(&ids), None, None, now).await?;
        record_refs(conn, connection_id, message_id, attempt_id, &ids).await?;
        query("UPDATE messages SET connection_id = $1 WHERE id = $2 AND connection_id IS NULL")
            .bind(connection_id)
            .bind(message_id)
            .execute(&mut *conn)
            .await?;
        // Only a send that is not running right now may lose its outbox row.
        if outcome != "in_flight" {
            delete_outbox(conn, message_id).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two receipts of one message applied at once by two PostgreSQL writers: `delivered`
    /// first (not yet committed) and `sent` behind it. The `sent` transaction must decide
    /// from `delivered` (waiting for the lock), not from the `queued` it could read before
    /// the other commit, or its update would move the message back to `sent`.
    #[tokio::test]
    async fn concurrent_receipts_keep_the_status_monotonic_on_postgres() {
        let db = crate::store::pg::TestDb::new().await;
        let pool = &db.pool;
        let setup = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
            INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, created_at, updated_at)
              VALUES ('msg_1', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'queued', 0, 0);
            INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status)
              VALUES ('c', 'SM1', 'msg_1', 'att_1', 0, 'queued');";
        sqlx::raw_sql(setup).execute(pool).await.expect("setup");
        let event = |status: DeliveryStatus, raw: &str| StatusEvent {
            provider_message_id: "SM1".into(),
            correlation: Default::default(),
            status: Some(status),
            raw_status: raw.into(),
            error_code: None,
            error_detail: None,
            occurred_at_ms: None,
            dedupe_key: raw.into(),
            opted_out: false,
        };
        let mut first = db.writer().await;
        first.simple("BEGIN").await.expect("begin");
        let delivered = event(DeliveryStatus::Delivered, "delivered");
        apply_status(&mut Db::Pg(&mut first), "c", &delivered, 1)
            .await
            .expect("delivered");
        let mut second = db.writer().await;
        let behind = tokio::spawn(async move {
            second.simple("BEGIN").await.expect("begin");
            let sent = event(DeliveryStatus::Sent, "sent");
            let changes = apply_status(&mut Db::Pg(&mut second), "c", &sent, 2)
                .await
                .expect("sent");
            second.simple("COMMIT").await.expect("commit");
            changes
        });
        // Long enough for the second writer to read the message (or to wait for its lock).
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.simple("COMMIT").await.expect("commit");
        let changes = behind.await.expect("second writer").expect("a message");
        assert!(
            !changes.iter().any(|c| c.moved),
            "a late `sent` moved the status"
        );
        let status: (String,) = sqlx::query_as("SELECT status FROM messages WHERE id = 'msg_1'")
            .fetch_one(pool)
            .await
            .expect("status");
        assert_eq!(status.0, "delivered");
        let late: (i64,) = sqlx::query_as(
            "SELECT CAST(applied AS BIGINT) FROM status_history WHERE message_id = 'msg_1' AND status = 'sent'",
        )
        .fetch_one(pool)
        .await
        .expect("history of the late receipt");
        assert_eq!(late.0, 0, "kept in history, not applied");
        db.drop_db().await;
    }
}
