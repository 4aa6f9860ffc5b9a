//! The outbox side: recording attempts and their results (claiming is in [`super::claim`]).
//!
//! Exactly-once to the provider: before a send, the attempt is written `in_flight` under the
//! outbox lease. If the process dies mid-send, the row's lease expires and a claimer finds
//! the `in_flight` attempt: it marks it `unknown` and holds the message for the reconcile
//! window. A status callback carrying weft's ids (every adapter echoes them) proves the
//! provider has it: the attempt becomes `queued` and the outbox row is removed. Only if no
//! proof arrives within the window is the message sent again.

use super::db::{query, Db};
use super::script::Script;
use super::status::{self, ErrorFields, StatusChange, StatusInput};
use sqlx::Row;
use weft_provider::{Channel, DeliveryStatus};

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

/// Records an attempt as in flight, if this process still holds the lease; returns the
/// attempt's number on the current channel (the retry budget). The attempt's `seq` counts
/// every attempt of the message, across fallback channels.
pub async fn begin(conn: &mut Db<'_>, j: &AttemptBegin) -> Result<Option<i64>, sqlx::Error> {
    if conn.is_lite() {
        return begin_lite(conn, j).await;
    }
    // One round trip: the attempt row is only written if the lease update found this
    // process's lease (the update leaves `lease_token` as it is).
    let mut s = Script::new();
    let lease = s.add(
        "UPDATE outbox SET lease_until = $1, tries = tries + 1 WHERE message_id = $2 AND lease_token = $3 RETURNING tries",
        vec![j.lease_until.into(), (&j.message_id).into(), (&j.lease_token).into()],
    );
    s.add(
        "INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, sender, outcome, started_at)
         SELECT $1, $2, (SELECT COUNT(*) + 1 FROM attempts WHERE message_id = $2), $3, $4, $5, $6, 'in_flight', $7
         WHERE EXISTS (SELECT 1 FROM outbox WHERE message_id = $2 AND lease_token = $8)",
        vec![
            (&j.attempt_id).into(),
            (&j.message_id).into(),
            j.channel.as_str().into(),
            j.provider.into(),
            (&j.connection_id).into(),
            (&j.sender).into(),
            j.now.into(),
            (&j.lease_token).into(),
        ],
    );
    let mut out = s.run(conn).await?;
    match out.get_mut(lease).and_then(|o| o.rows.pop()) {
        Some(row) => Ok(Some(row.try_get("tries")?)),
        None => Ok(None),
    }
}

/// [`begin_lite`]'s statements: extend the lease, read the tries and attempts made, write the
/// attempt (`$3` its `seq`).
pub(crate) const LITE_LEASE: &str = "UPDATE outbox SET lease_until = $1, tries = tries + 1 WHERE message_id = $2 AND lease_token = $3";
pub(crate) const LITE_TRIES: &str = "SELECT tries, (SELECT COUNT(*) FROM attempts WHERE message_id = $1) AS made FROM outbox WHERE message_id = $1";
pub(crate) const LITE_ATTEMPT: &str = "INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, sender, outcome, started_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'in_flight', $8)";

/// [`begin`] on the SQLite writer: the same writes as plain statements, one after the other
/// (see [`Db::is_lite`]).
async fn begin_lite(conn: &mut Db<'_>, j: &AttemptBegin) -> Result<Option<i64>, sqlx::Error> {
    let leased = query(LITE_LEASE)
        .bind(j.lease_until)
        .bind(&j.message_id)
        .bind(&j.lease_token)
        .execute(&mut *conn)
        .await?
        .rows_affected();
    if leased == 0 {
        return Ok(None);
    }
    let row = query(LITE_TRIES)
        .bind(&j.message_id)
        .fetch_one(&mut *conn)
        .await?;
    let tries: i64 = row.try_get("tries")?;
    let made: i64 = row.try_get("made")?;
    query(LITE_ATTEMPT)
        .bind(&j.attempt_id)
        .bind(&j.message_id)
        .bind(made + 1)
        .bind(j.channel.as_str())
        .bind(j.provider)
        .bind(&j.connection_id)
        .bind(&j.sender)
        .bind(j.now)
        .execute(&mut *conn)
        .await?;
    Ok(Some(tries))
}

/// Records what came of an attempt and moves the message and its outbox row on.
pub async fn end(conn: &mut Db<'_>, j: &AttemptEnd) -> Result<Vec<StatusChange>, sqlx::Error> {
    let mut changes = Vec::new();
    match &j.result {
        AttemptResult::Sent {
            provider_ids,
            status,
            segments,
            fallback_check_at,
        } => {
            // Two round trips (none on SQLite): the attempt, its provider ids and the
            // message's current state for the state machine (a read that locks the row where
            // writers run concurrently); then history, one `UPDATE` of the message (sent
            // columns, and the status if it moves), outbox and receipts parked for these ids.
            let mut first = Script::new();
            if let Some(a) = &j.attempt_id {
                let conn_id = j.connection_id.as_deref().unwrap_or_default();
                finish_attempt_in(
                    &mut first,
                    a,
                    "queued",
                    Some(provider_ids),
                    None,
                    None,
                    j.now,
                );
                refs_in(&mut first, conn_id, &j.message_id, a, provider_ids);
            }
            let sender_addr = sender_addr(j.sender.as_deref());
            let mut args = vec![
                (&j.connection_id).into(),
                (&j.sender).into(),
                sender_addr.into(),
                segments.map(i64::from).into(),
                (&j.message_id).into(),
            ];
            let read = first.add(status::current_sql(conn), vec![(&j.message_id).into()]);
            let mut out = first.run(&mut *conn).await?;
            let current = out.get_mut(read).and_then(|o| o.rows.pop());
            let input = StatusInput {
                status: *status,
                raw_status: None,
                connection_id: j.connection_id.as_deref(),
                provider_message_id: provider_ids.first().map(String::as_str),
                error: None,
                at: j.now,
                dedupe_key: None,
            };
            let mut second = Script::new();
            let planned = match &current {
                Some(row) => {
                    let p = status::plan_without_update(&j.message_id, row, &input, &mut second)?;
                    // With the history row, one statement on PostgreSQL.
                    match p.moved() {
                        Some((to, at)) => {
                            args.push(to.as_str().into());
                            args.push(at.into());
                            second.add_joined(SENT_STATUS_UPDATE, args)
                        }
                        None => second.add_joined(SENT_UPDATE, args),
                    };
                    Some(p)
                }
                None => None,
            };
            match fallback_check_at {
                Some(at) => second.add(
                    "UPDATE outbox SET purpose = 'fallback', available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2",
                    vec![(*at).into(), (&j.message_id).into()],
                ),
                None => second.add(DELETE_OUTBOX, vec![(&j.message_id).into()]),
            };
            let parked: Vec<usize> = match &j.connection_id {
                // The first with the outbox change, one statement on PostgreSQL.
                Some(conn_id) => provider_ids
                    .iter()
                    .map(|pid| {
                        second
                            .add_joined(super::parked::PARKED_SQL, vec![conn_id.into(), pid.into()])
                    })
                    .collect(),
                None => Vec::new(),
            };
            let mut out = second.run(&mut *conn).await?;
            if let Some(p) = planned {
                changes.push(p.finish(&mut *conn).await?);
            }
            let parked_rows: Vec<_> = parked
                .into_iter()
                .filter_map(|i| out.get_mut(i).map(|o| std::mem::take(&mut o.rows)))
                .flatten()
                .collect();
            if let (Some(conn_id), false) = (&j.connection_id, parked_rows.is_empty()) {
                changes.extend(super::parked::apply_parked(conn, conn_id, parked_rows).await?);
            }
        }
        AttemptResult::Retry {
            retry_at,
            outcome,
            code,
            detail,
        } => {
            let reconciled = reconciled(conn, j.attempt_id.as_deref()).await?;
            if let Some(a) = &j.attempt_id {
                if !reconciled {
                    finish_attempt(conn, a, outcome, None, code.as_deref(), Some(detail), j.now)
                        .await?;
                }
            }
            if reconciled {
                delete_outbox(conn, &j.message_id).await?;
            } else {
                query("UPDATE outbox SET available_at = $1, lease_token = NULL, lease_until = 0 WHERE message_id = $2")
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
            let reconciled = reconciled(conn, j.attempt_id.as_deref()).await?;
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
                    dedupe_key: None,
                };
                changes.extend(status::apply(conn, &j.message_id, &input).await?);
            }
            delete_outbox(conn, &j.message_id).await?;
        }
    }
    Ok(changes)
}

/// The sender as an address (`+1…`, `jo@…`): what `from_addr` is set to when the request
/// named none. `sender` is in identity form (`tel:+1…`, `mailto:jo@…`).
pub(super) fn sender_addr(sender: Option<&str>) -> Option<&str> {
    sender.map(|s| {
        s.strip_prefix("tel:")
            .or_else(|| s.strip_prefix("mailto:"))
            .unwrap_or(s)
    })
}

/// A sent message's connection, sender and segments (`$1`…`$4`; `$5` the message).
pub(crate) const SENT_UPDATE: &str = "UPDATE messages SET connection_id = $1, business_addr = $2, from_addr = COALESCE(from_addr, $3), segments = COALESCE(segments, $4) WHERE id = $5";

/// [`SENT_UPDATE`] that also moves the status (`$6`) and `updated_at` (`$7`).
pub(crate) const SENT_STATUS_UPDATE: &str = "UPDATE messages SET connection_id = $1, business_addr = $2, from_addr = COALESCE(from_addr, $3), segments = COALESCE(segments, $4), status = $6, updated_at = $7 WHERE id = $5";

/// Whether a status callback already proved this attempt reached the provider.
async fn reconciled(conn: &mut Db<'_>, attempt_id: Option<&str>) -> Result<bool, sqlx::Error> {
    let Some(a) = attempt_id else {
        return Ok(false);
    };
    Ok(query("SELECT outcome FROM attempts WHERE id = $1")
        .bind(a)
        .fetch_optional(&mut *conn)
        .await?
        .map(|r| r.try_get::<String, _>("outcome"))
        .transpose()?
        .is_some_and(|o| o == "queued"))
}

/// Moves a message to its next fallback channel, keeping the failure in its history.
pub(crate) async fn next_channel(
    conn: &mut Db<'_>,
    message_id: &str,
    reason: &str,
    code: Option<&str>,
    detail: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    query(
        "INSERT INTO status_history (message_id, status, raw_status, applied, error_code, detail, occurred_at) VALUES ($1, 'rejected', $2, 0, $3, $4, $5)",
    )
    .bind(message_id)
    .bind(format!("fallback: {reason}"))
    .bind(code)
    .bind(detail)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    query("UPDATE messages SET channel_step = channel_step + 1, updated_at = $1 WHERE id = $2")
        .bind(now)
        .bind(message_id)
        .execute(&mut *conn)
        .await?;
    query(
        "INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at, purpose) VALUES ($1, $2, 0, NULL, 0, $3, 'send')
         ON CONFLICT (message_id) DO UPDATE SET purpose = 'send', available_at = excluded.available_at, lease_token = NULL, lease_until = 0, tries = 0",
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
    conn: &mut Db<'_>,
    message_id: &str,
    sender: Option<&str>,
    code: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let row =
        query("SELECT tenant_id, customer_identity, business_addr FROM messages WHERE id = $1")
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
    conn: &mut Db<'_>,
    attempt_id: &str,
    outcome: &str,
    provider_ids: Option<&Vec<String>>,
    code: Option<&str>,
    detail: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let mut s = Script::new();
    finish_attempt_in(&mut s, attempt_id, outcome, provider_ids, code, detail, now);
    s.run(conn).await.map(drop)
}

fn finish_attempt_in(
    s: &mut Script,
    attempt_id: &str,
    outcome: &str,
    provider_ids: Option<&Vec<String>>,
    code: Option<&str>,
    detail: Option<&str>,
    now: i64,
) {
    s.add(
        "UPDATE attempts SET outcome = $1, provider_ids = COALESCE($2, provider_ids), error_code = $3, error_detail = $4, finished_at = $5 WHERE id = $6",
        vec![
            outcome.into(),
            provider_ids
                .map(|p| serde_json::to_string(p).unwrap_or_default())
                .into(),
            code.into(),
            detail.into(),
            now.into(),
            attempt_id.into(),
        ],
    );
}

pub(crate) async fn record_refs(
    conn: &mut Db<'_>,
    connection_id: &str,
    message_id: &str,
    attempt_id: &str,
    provider_ids: &[String],
) -> Result<(), sqlx::Error> {
    let mut s = Script::new();
    refs_in(&mut s, connection_id, message_id, attempt_id, provider_ids);
    s.run(conn).await.map(drop)
}

fn refs_in(
    s: &mut Script,
    connection_id: &str,
    message_id: &str,
    attempt_id: &str,
    provider_ids: &[String],
) {
    for (part, pid) in provider_ids.iter().enumerate() {
        s.add(
            "INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status) VALUES ($1, $2, $3, $4, $5, 'queued')
             ON CONFLICT (connection_id, provider_message_id) DO NOTHING",
            vec![
                connection_id.into(),
                pid.into(),
                message_id.into(),
                attempt_id.into(),
                i64::try_from(part).unwrap_or(0).into(),
            ],
        );
    }
}

pub(crate) const DELETE_OUTBOX: &str = "DELETE FROM outbox WHERE message_id = $1";

pub(crate) async fn delete_outbox(conn: &mut Db<'_>, message_id: &str) -> Result<(), sqlx::Error> {
    query(DELETE_OUTBOX)
        .bind(message_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Gives back (at shutdown) the leases of this process's rows that no send is using, so
/// another process can pick them up at once. `node` prefixes every lease token it took.
pub async fn release(conn: &mut Db<'_>, node: &str) -> Result<u64, sqlx::Error> {
    let r = query(
        "UPDATE outbox SET lease_token = NULL, lease_until = 0 WHERE lease_token LIKE $1
         AND NOT EXISTS (SELECT 1 FROM attempts a WHERE a.message_id = outbox.message_id AND a.outcome = 'in_flight')",
    )
        .bind(format!("{node}%"))
        .execute(&mut *conn)
        .await?;
    Ok(r.rows_affected())
}
