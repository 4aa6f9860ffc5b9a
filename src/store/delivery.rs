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
use crate::domain::message::{DispatchItem, Purpose, SendPolicy};
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
    /// The provider took it. With a fallback channel left, the outbox row stays as a
    /// fallback check due at `fallback_check_at`.
    Sent {
        provider_ids: Vec<String>,
        status: DeliveryStatus,
        segments: Option<u32>,
        fallback_check_at: Option<i64>,
    },
    /// This channel failed for good (or timed out without `delivered`): try the next.
    NextChannel {
        reason: &'static str,
        code: Option<String>,
        detail: String,
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
    // Transactional rows first: bulk never starves them.
    let sql = format!(
        "UPDATE outbox SET lease_token = $1, lease_until = $2 WHERE message_id IN (
            SELECT message_id FROM outbox WHERE available_at <= $3 AND lease_until < $4 ORDER BY priority, available_at LIMIT $5{lock}
         ) RETURNING message_id, tries, purpose"
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
        let purpose = match row.try_get::<String, _>("purpose")?.as_str() {
            "fallback" => Purpose::FallbackCheck,
            _ => Purpose::Send,
        };
        let Some(m) = sqlx::query(
            "SELECT tenant_id, conversation_id, channel, to_addr, from_addr, body, subject, template, status, created_at,
                    pinned_connection, fallback, fallback_after_ms, send_at, valid_until, priority, kind, channel_step
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
        let ended = DeliveryStatus::from_str(&status)
            .map(|s| s.is_final())
            .unwrap_or(true);
        if ended {
            // Delivered, read, or ended badly: nothing left to do.
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
        // A send row of the first step whose message a provider already took (reconciled
        // by a callback): nothing to send.
        let step: i64 = m.try_get("channel_step")?;
        if purpose == Purpose::Send && step == 0 && status != "accepted" {
            delete_outbox(conn, &id).await?;
            continue;
        }
        let channel: String = m.try_get("channel")?;
        let Ok(first) = Channel::from_str(&channel) else {
            continue;
        };
        let policy = SendPolicy {
            pinned_connection: m.try_get("pinned_connection")?,
            fallback: super::json_col::<Vec<Channel>>(&m, "fallback").unwrap_or_default(),
            fallback_after_ms: m.try_get("fallback_after_ms")?,
            send_at: m.try_get("send_at")?,
            valid_until: m.try_get("valid_until")?,
            bulk: m.try_get::<i64, _>("priority")? != 0,
            kind: m.try_get("kind")?,
        };
        let Some(current) = policy.channel_at(first, step) else {
            continue;
        };
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

/// Records an attempt as in flight, if this process still holds the lease; returns the
/// attempt's number on the current channel (the retry budget). The attempt's `seq` counts
/// every attempt of the message, across fallback channels.
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
        "INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, sender, outcome, started_at)
         VALUES ($1, $2, (SELECT COUNT(*) + 1 FROM attempts WHERE message_id = $3), $4, $5, $6, $7, 'in_flight', $8)",
    )
    .bind(&j.attempt_id)
    .bind(&j.message_id)
    .bind(&j.message_id)
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
            fallback_check_at,
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
            match fallback_check_at {
                Some(at) => {
                    sqlx::query("UPDATE outbox SET purpose = 'fallback', available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2")
                        .bind(*at)
                        .bind(&j.message_id)
                        .execute(&mut *conn)
                        .await?;
                }
                None => delete_outbox(conn, &j.message_id).await?,
            }
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
        AttemptResult::NextChannel {
            reason,
            code,
            detail,
        } => {
            if let Some(a) = &j.attempt_id {
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
            next_channel(conn, &j.message_id, reason, code.as_deref(), detail, j.now).await?;
        }
        AttemptResult::Final {
            status,
            reason,
            code,
            detail,
        } => {
            if *reason == "opted_out" && j.attempt_id.is_some() {
                provider_opt_out(
                    conn,
                    &j.message_id,
                    j.sender.as_deref(),
                    code.as_deref(),
                    j.now,
                )
                .await?;
            }
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

/// Moves a message to its next fallback channel, keeping the failure in its history.
pub(crate) async fn next_channel(
    conn: &mut AnyConnection,
    message_id: &str,
    reason: &str,
    code: Option<&str>,
    detail: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO status_history (message_id, status, raw_status, applied, error_code, detail, occurred_at) VALUES ($1, 'rejected', $2, 0, $3, $4, $5)",
    )
    .bind(message_id)
    .bind(format!("fallback: {reason}"))
    .bind(code)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE messages SET channel_step = channel_step + 1, updated_at = $1 WHERE id = $2",
    )
    .bind(now)
    .bind(message_id)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at, purpose) VALUES ($1, $2, 0, NULL, 0, $3, 'send')
         ON CONFLICT (message_id) DO UPDATE SET purpose = 'send', available_at = excluded.available_at, lease_token = NULL, lease_until = 0",
    )
    .bind(message_id)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The provider says the recipient opted out (Twilio 21610): the ledger learns it.
pub(crate) async fn provider_opt_out(
    conn: &mut AnyConnection,
    message_id: &str,
    sender: Option<&str>,
    code: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row = sqlx::query(
        "SELECT tenant_id, customer_identity, business_addr FROM messages WHERE id = $1",
    )
    .bind(message_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(()) };
    let Some(customer) = row.try_get::<Option<String>, _>("customer_identity")? else {
        return Ok(());
    };
    let business: Option<String> = row.try_get("business_addr")?;
    let Some(sender) = sender.map(str::to_string).or(business) else {
        return Ok(());
    };
    let tenant: String = row.try_get("tenant_id")?;
    let subject = crate::policy::consent::Subject {
        subject: customer,
        scope: "sender".into(),
        scope_value: sender,
    };
    crate::policy::consent::record(
        conn,
        &tenant,
        &subject,
        true,
        "provider",
        code,
        Some(message_id),
        now,
    )
    .await
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
