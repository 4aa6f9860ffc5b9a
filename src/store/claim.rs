//! Claiming due outbox rows: lease them to this process and load what a send needs. A row
//! whose message has nothing left to do is removed; one with an attempt still in flight
//! (its sender died mid-send) is held for the reconcile window (see [`super::delivery`]).

use super::db::{query, Db};
use super::delivery::delete_outbox;
use super::Backend;
use crate::domain::message::{DispatchItem, Purpose, SendPolicy};
use sqlx::Row;
use std::str::FromStr;
use weft_provider::{Channel, DeliveryStatus, Template};

pub struct ClaimJob {
    pub token: String,
    pub now: i64,
    pub lease_until: i64,
    pub limit: i64,
    pub reconcile_ms: i64,
}

/// A claimed outbox row ready to send.
pub struct Claimed {
    pub item: DispatchItem,
    pub tries: i64,
}

/// Leases up to `job.limit` due rows (transactional first) and loads their messages.
pub async fn claim(
    conn: &mut Db<'_>,
    backend: Backend,
    job: &ClaimJob,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Transactional rows first: bulk never starves them.
    let sql = format!(
        "UPDATE outbox SET lease_token = $1, lease_until = $2 WHERE message_id IN (
            SELECT message_id FROM outbox WHERE available_at <= $3 AND lease_until < $4 ORDER BY priority, available_at LIMIT $5{lock}
         ) RETURNING message_id, tries, purpose"
    );
    let rows = query(&sql)
        .bind(&job.token)
        .bind(job.lease_until)
        .bind(job.now)
        .bind(job.now)
        .bind(job.limit)
        .fetch_all(&mut *conn)
        .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id: String = row.try_get("message_id")?;
        let tries: i64 = row.try_get("tries")?;
        let purpose = match row.try_get::<String, _>("purpose")?.as_str() {
            "fallback" => Purpose::FallbackCheck,
            _ => Purpose::Send,
        };
        let Some(m) = query(
            "SELECT tenant_id, conversation_id, channel, to_addr, from_addr, body, subject, template, status, created_at,
                    pinned_connection, fallback, fallback_after_ms, send_at, valid_until, priority, kind, channel_step, fallback_success
             FROM messages WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            delete_outbox(conn, &id).await?;
            continue;
        };
        let status: String = m.try_get("status")?;
        let step: i64 = m.try_get("channel_step")?;
        let channel: String = m.try_get("channel")?;
        let Ok(first) = Channel::from_str(&channel) else {
            continue;
        };
        let policy = SendPolicy {
            pinned_connection: m.try_get("pinned_connection")?,
            fallback: super::json_col::<Vec<Channel>>(&m, "fallback").unwrap_or_default(),
            fallback_after_ms: m.try_get("fallback_after_ms")?,
            fallback_success: SendPolicy::parse_fallback_success(
                m.try_get::<Option<String>, _>("fallback_success")?
                    .as_deref(),
            ),
            send_at: m.try_get("send_at")?,
            valid_until: m.try_get("valid_until")?,
            bulk: m.try_get::<i64, _>("priority")? != 0,
            kind: m.try_get("kind")?,
        };
        let Some(current) = policy.channel_at(first, step) else {
            continue;
        };
        // Ended badly, or already reached what this step needed (a fallback check) or what the
        // step before needed (a send after moving on, when the earlier channel's receipt came
        // late): nothing left to do. A step's bar is `delivered` unless `fallback_success`
        // says `sent` or `read`.
        let Ok(now_status) = DeliveryStatus::from_str(&status) else {
            delete_outbox(conn, &id).await?;
            continue;
        };
        let reached = |c: Channel| now_status.rank() >= policy.success_on(c).rank();
        let done = now_status.is_failure()
            || match purpose {
                Purpose::FallbackCheck => reached(current),
                Purpose::Send if step == 0 => now_status.is_final(),
                Purpose::Send => policy.channel_at(first, step - 1).is_some_and(reached),
            };
        if done {
            delete_outbox(conn, &id).await?;
            continue;
        }
        // An attempt still in flight means its sender died mid-send: wait for proof.
        let pending = query(
            "SELECT id, started_at FROM attempts WHERE message_id = $1 AND outcome = 'in_flight'",
        )
        .bind(&id)
        .fetch_all(&mut *conn)
        .await?;
        if !pending.is_empty() {
            let mut latest = 0i64;
            for p in &pending {
                latest = latest.max(p.try_get("started_at")?);
            }
            query("UPDATE attempts SET outcome = 'unknown', finished_at = $1 WHERE message_id = $2 AND outcome = 'in_flight'")
                .bind(job.now)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            let hold_until = (latest + job.reconcile_ms).max(job.now + job.reconcile_ms);
            query("UPDATE outbox SET available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2")
                .bind(hold_until)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            continue;
        }
        // A send row of the first step whose message a provider already took (reconciled
        // by a callback): nothing to send.
        if purpose == Purpose::Send && step == 0 && status != "accepted" {
            delete_outbox(conn, &id).await?;
            continue;
        }
        out.push(Claimed {
            tries,
            item: DispatchItem {
                message_id: id,
                tenant_id: m.try_get("tenant_id")?,
                conversation_id: m.try_get("conversation_id")?,
                channel: current,
                to: m.try_get("to_addr")?,
                from: m.try_get("from_addr")?,
                body: m.try_get("body")?,
                subject: m.try_get("subject")?,
                template: super::json_col::<Template>(&m, "template"),
                lease_token: job.token.clone(),
                created_at: m.try_get("created_at")?,
                policy,
                step,
                purpose,
            },
        });
    }
    Ok(out)
}
