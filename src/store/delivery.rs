//! The outbox side: claiming due rows, recording attempts and their results.
//!
//! Exactly-once to the provider: before a send, the attempt is written `in_flight` under the
//! outbox lease. If the process dies mid-send, the row's lease expires and a claimer finds
//! the `in_flight` attempt: it marks it `unknown` and holds the message for the reconcile
//! window. A status callback carrying weft's ids (every adapter echoes them) proves the
//! provider has it: the attempt becomes `queued` and the outbox row is removed. Only if no
//! proof arrives within the window is the message sent again.

use super::status::{self, ErrorFields, StatusChange, StatusInput};
use super::Backend;
use crate::domain::message::DispatchItem;
use sqlx::{AnyConnection, Row};
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

pub struct AttemptBegin {
    pub message_id: String,
    pub lease_token: String,
    pub lease_until: i64,
    pub attempt_id: String,
    pub channel: Channel,
    pub provider: &'static str,
    pub connection_id: String,
    pub sender: Option<String>,
    pub now: i64,
}

pub enum AttemptResult {
    /// The provider took it.
    Sent {
        provider_ids: Vec<String>,
        status: DeliveryStatus,
        segments: Option<u32>,
    },
    /// Try again at `retry_at`; `outcome` is the attempt's recorded outcome.
    Retry {
        retry_at: i64,
        outcome: &'static str,
        code: Option<String>,
        detail: String,
    },
    /// The message ends (`rejected` before or at submit, `failed` after retries).
    Final {
        status: DeliveryStatus,
        reason: &'static str,
        code: Option<String>,
        detail: String,
    },
}

pub struct AttemptEnd {
    pub message_id: String,
    /// The sender used, in identity form (`tel:+…`, `mailto:…`): the lease key of replies.
    pub sender: Option<String>,
    /// `None` when no attempt was made (no route, opted out).
    pub attempt_id: Option<String>,
    pub connection_id: Option<String>,
    pub result: AttemptResult,
    pub now: i64,
}

pub async fn claim(
    conn: &mut AnyConnection,
    backend: Backend,
    job: &ClaimJob,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    let sql = format!(
        "UPDATE outbox SET lease_token = $1, lease_until = $2 WHERE message_id IN (
            SELECT message_id FROM outbox WHERE available_at <= $3 AND lease_until < $4 ORDER BY available_at LIMIT $5{lock}
         ) RETURNING message_id, tries"
    );
    let rows = sqlx::query(&sql)
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
        let Some(m) = sqlx::query(
            "SELECT tenant_id, conversation_id, channel, to_addr, from_addr, body, subject, template, status, created_at FROM messages WHERE id = $1",
        )
        .bind(&id)
        .fetch_optional(&mut *conn)
        .await?
        else {
            delete_outbox(conn, &id).await?;
            continue;
        };
        let status: String = m.try_get("status")?;
        if status != "accepted" {
            // A provider has it (or it ended): nothing left to send.
            delete_outbox(conn, &id).await?;
            continue;
        }
        // An attempt still in flight means its sender died mid-send: wait for proof.
        let pending = sqlx::query(
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
            sqlx::query("UPDATE attempts SET outcome = 'unknown', finished_at = $1 WHERE message_id = $2 AND outcome = 'in_flight'")
                .bind(job.now)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            let hold_until = (latest + job.reconcile_ms).max(job.now + job.reconcile_ms);
            sqlx::query("UPDATE outbox SET available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2")
                .bind(hold_until)
                .bind(&id)
                .execute(&mut *conn)
                .await?;
            continue;
        }
        let channel: String = m.try_get("channel")?;
        let Ok(channel) = Channel::from_str(&channel) else {
            continue;
        };
        out.push(Claimed {
            tries,
            item: DispatchItem {
                message_id: id,
                tenant_id: m.try_get("tenant_id")?,
                conversation_id: m.try_get("conversation_id")?,
                channel,
                to: m.try_get("to_addr")?,
                from: m.try_get("from_addr")?,
                body: m.try_get("body")?,
                subject: m.try_get("subject")?,
                template: super::json_col::<Template>(&m, "template"),
                lease_token: job.token.clone(),
                created_at: m.try_get("created_at")?,
            },
        });
    }
    Ok(out)
}

/// Records an attempt as in flight, if this process still holds the lease; returns the
/// attempt's number.
pub async fn begin(conn: &mut AnyConnection, j: &AttemptBegin) -> Result<Option<i64>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE outbox SET lease_until = $1, tries = tries + 1 WHERE message_id = $2 AND lease_token = $3 RETURNING tries",
    )
    .bind(j.lease_until)
    .bind(&j.message_id)
    .bind(&j.lease_token)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(None) };
    let seq: i64 = row.try_get("tries")?;
    sqlx::query(
        "INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, sender, outcome, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_flight', $8)",
    )
    .bind(&j.attempt_id)
    .bind(&j.message_id)
    .bind(seq)
    .bind(j.channel.as_str())
    .bind(j.provider)
    .bind(&j.connection_id)
    .bind(&j.sender)
    .bind(j.now)
    .execute(&mut *conn)
    .await?;
    Ok(Some(seq))
}

/// Records what came of an attempt and moves the message and its outbox row on.
pub async fn end(
    conn: &mut AnyConnection,
    j: &AttemptEnd,
) -> Result<Vec<StatusChange>, sqlx::Error> {
    let mut changes = Vec::new();
    // A status callback may already have proven this attempt reached the provider.
    let reconciled = match &j.attempt_id {
        Some(a) => sqlx::query("SELECT outcome FROM attempts WHERE id = $1")
            .bind(a)
            .fetch_optional(&mut *conn)
            .await?
            .map(|r| r.try_get::<String, _>("outcome"))
            .transpose()?
            .is_some_and(|o| o == "queued"),
        None => false,
    };
    match &j.result {
        AttemptResult::Sent {
            provider_ids,
            status,
            segments,
        } => {
            if let Some(a) = &j.attempt_id {
                finish_attempt(conn, a, "queued", Some(provider_ids), None, None, j.now).await?;
                let conn_id = j.connection_id.as_deref().unwrap_or_default();
                record_refs(conn, conn_id, &j.message_id, a, provider_ids).await?;
            }
            if let Some(s) = segments {
                sqlx::query("UPDATE messages SET segments = $1 WHERE id = $2 AND segments IS NULL")
                    .bind(i64::from(*s))
                    .bind(&j.message_id)
                    .execute(&mut *conn)
                    .await?;
            }
            sqlx::query("UPDATE messages SET connection_id = $1, business_addr = $2, from_addr = COALESCE(from_addr, $3) WHERE id = $4")
                .bind(&j.connection_id)
                .bind(&j.sender)
                .bind(j.sender.as_deref().map(|s| s.strip_prefix("tel:").or_else(|| s.strip_prefix("mailto:")).unwrap_or(s)))
                .bind(&j.message_id)
                .execute(&mut *conn)
                .await?;
            let input = StatusInput {
                status: *status,
                raw_status: None,
                connection_id: j.connection_id.as_deref(),
                provider_message_id: provider_ids.first().map(String::as_str),
                error: None,
                at: j.now,
            };
            changes.extend(status::apply(conn, &j.message_id, &input).await?);
            delete_outbox(conn, &j.message_id).await?;
            if let Some(conn_id) = &j.connection_id {
                changes.extend(super::webhooks::rematch_parked(conn, conn_id, provider_ids).await?);
            }
        }
        AttemptResult::Retry {
            retry_at,
            outcome,
            code,
            detail,
        } => {
            if let Some(a) = &j.attempt_id {
                if !reconciled {
                    finish_attempt(conn, a, outcome, None, code.as_deref(), Some(detail), j.now)
                        .await?;
                }
            }
            if reconciled {
                delete_outbox(conn, &j.message_id).await?;
            } else {
                sqlx::query("UPDATE outbox SET available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2")
                    .bind(*retry_at)
                    .bind(&j.message_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
        AttemptResult::Final {
            status,
            reason,
            code,
            detail,
        } => {
            if let Some(a) = &j.attempt_id {
                if !reconciled {
                    finish_attempt(
                        conn,
                        a,
                        "rejected",
                        None,
                        code.as_deref(),
                        Some(detail),
                        j.now,
                    )
                    .await?;
                }
            }
            if !reconciled {
                let input = StatusInput {
                    status: *status,
                    raw_status: None,
                    connection_id: j.connection_id.as_deref(),
                    provider_message_id: None,
                    error: Some(ErrorFields {
                        reason,
                        code: code.as_deref(),
                        detail: Some(detail),
                    }),
                    at: j.now,
                };
                changes.extend(status::apply(conn, &j.message_id, &input).await?);
            }
            delete_outbox(conn, &j.message_id).await?;
        }
    }
    Ok(changes)
}

pub(crate) async fn finish_attempt(
    conn: &mut AnyConnection,
    attempt_id: &str,
    outcome: &str,
    provider_ids: Option<&Vec<String>>,
    code: Option<&str>,
    detail: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE attempts SET outcome = $1, provider_ids = COALESCE($2, provider_ids), error_code = $3, error_detail = $4, finished_at = $5 WHERE id = $6",
    )
    .bind(outcome)
    .bind(provider_ids.map(|p| serde_json::to_string(p).unwrap_or_default()))
    .bind(code)
    .bind(detail)
    .bind(now)
    .bind(attempt_id)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

pub(crate) async fn record_refs(
    conn: &mut AnyConnection,
    connection_id: &str,
    message_id: &str,
    attempt_id: &str,
    provider_ids: &[String],
) -> Result<(), sqlx::Error> {
    for (part, pid) in provider_ids.iter().enumerate() {
        sqlx::query(
            "INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status) VALUES ($1, $2, $3, $4, $5, 'queued')
             ON CONFLICT (connection_id, provider_message_id) DO NOTHING",
        )
        .bind(connection_id)
        .bind(pid)
        .bind(message_id)
        .bind(attempt_id)
        .bind(i64::try_from(part).unwrap_or(0))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(crate) async fn delete_outbox(
    conn: &mut AnyConnection,
    message_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM outbox WHERE message_id = $1")
        .bind(message_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives back (at shutdown) the leases of this process's rows that no send is using, so
/// another process can pick them up at once. `node` prefixes every lease token it took.
pub async fn release(conn: &mut AnyConnection, node: &str) -> Result<u64, sqlx::Error> {
    let r = sqlx::query(
        "UPDATE outbox SET lease_token = NULL, lease_until = 0 WHERE lease_token LIKE $1
         AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = outbox.message_id AND a.outcome = 'in_flight')",
    )
        .bind(format!("{node}%"))
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}
