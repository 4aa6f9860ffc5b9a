//! Accepting a message: idempotency check, conversation, message row and outbox row in one
//! transaction.

use super::db::{query, Db};
use super::script::Script;
use crate::domain::message::{MessageView, NewMessage};
use crate::domain::now_ms;
use crate::threading::contacts;
use sqlx::Row;

/// An idempotency key is remembered this long.
pub const IDEMPOTENCY_TTL_MS: i64 = 24 * 3600 * 1000;

pub struct AcceptJob {
    pub msg: NewMessage,
    /// `(key, sha256 of the canonical request)`.
    pub idempotency: Option<(String, String)>,
    pub lease_token: String,
    pub lease_until: i64,
}

pub enum AcceptOutcome {
    Accepted {
        conversation_id: String,
        body: String,
    },
    /// The key was seen with the same request: the original answer.
    Replay { status: u16, body: String },
    /// The key was seen with a different request.
    Conflict,
    /// The named conversation does not exist for this tenant.
    UnknownConversation,
}

pub async fn run(conn: &mut Db<'_>, job: &AcceptJob) -> Result<AcceptOutcome, sqlx::Error> {
    let m = &job.msg;
    let p = &m.policy;
    if let Some((key, hash)) = &job.idempotency {
        // The key is claimed before anything else is written. A concurrent request with the
        // same key in another writer's open transaction (PostgreSQL) makes the claim wait for
        // that commit and do nothing; the second round then reads its answer back, instead of
        // a unique violation failing the request.
        for _ in 0..2 {
            let row = query(
                "SELECT request_hash, response_status, response_body, created_at FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2",
            )
            .bind(&m.tenant_id)
            .bind(key)
            .fetch_optional(&mut *conn)
            .await?;
            if let Some(row) = row {
                let created: i64 = row.try_get("created_at")?;
                if created > now_ms() - IDEMPOTENCY_TTL_MS {
                    let stored_hash: String = row.try_get("request_hash")?;
                    if &stored_hash != hash {
                        return Ok(AcceptOutcome::Conflict);
                    }
                    let status: i64 = row.try_get("response_status")?;
                    return Ok(AcceptOutcome::Replay {
                        status: u16::try_from(status).unwrap_or(202),
                        body: row.try_get("response_body")?,
                    });
                }
                query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2")
                    .bind(&m.tenant_id)
                    .bind(key)
                    .execute(&mut *conn)
                    .await?;
            }
            let claimed = query(
                "INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, response_status, response_body, created_at) VALUES ($1, $2, $3, 202, '', $4)
                 ON CONFLICT (tenant_id, idem_key) DO NOTHING",
            )
            .bind(&m.tenant_id)
            .bind(key)
            .bind(hash)
            .bind(m.created_at)
            .execute(&mut *conn)
            .await?
            .rows_affected();
            if claimed > 0 {
                break;
            }
        }
    }

    let mut conversation_created = false;
    let conversation_id = match &m.conversation_id {
        Some(id) => {
            let found = query("SELECT id FROM conversations WHERE id = $1 AND tenant_id = $2 AND state <> 'closed'")
                .bind(id)
                .bind(&m.tenant_id)
                .fetch_optional(&mut *conn)
                .await?;
            if found.is_none() {
                return Ok(AcceptOutcome::UnknownConversation);
            }
            contacts::touch(conn, id, m.created_at).await?;
            id.clone()
        }
        None => {
            let contact =
                contacts::contact_for(conn, &m.tenant_id, &m.identity, m.created_at).await?;
            let (id, created) =
                contacts::open_conversation(conn, &m.tenant_id, &contact, m.created_at).await?;
            conversation_created = created;
            id
        }
    };
    if conversation_created {
        crate::threading::conversation_created(conn, &m.tenant_id, &conversation_id, m.created_at)
            .await?;
    }

    // Message, outbox row and the idempotency key's answer: one round trip on SQLite.
    let body =
        serde_json::to_string(&MessageView::accepted(m, &conversation_id)).unwrap_or_default();
    let mut script = Script::new();
    script.add(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, from_addr, body, subject, template, metadata, callback_url, encoding, segments, status, created_at, updated_at, customer_identity, email_message_id,
                               pinned_connection, fallback, fallback_after_ms, send_at, valid_until, priority, kind, fallback_success, callback_secret)
         VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 'accepted', $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26)",
        vec![
            (&m.id).into(),
            (&m.tenant_id).into(),
            (&conversation_id).into(),
            m.channel.as_str().into(),
            (&m.to).into(),
            (&m.from).into(),
            (&m.body).into(),
            (&m.subject).into(),
            m.template
                .as_ref()
                .and_then(|t| serde_json::to_string(t).ok())
                .into(),
            m.metadata.as_ref().map(|v| v.to_string()).into(),
            (&m.callback_url).into(),
            m.encoding.map(str::to_string).into(),
            m.segments.map(i64::from).into(),
            m.created_at.into(),
            m.created_at.into(),
            (&m.identity).into(),
            (&m.email_message_id).into(),
            (&p.pinned_connection).into(),
            (!p.fallback.is_empty())
                .then(|| serde_json::to_string(&p.fallback).unwrap_or_default())
                .into(),
            p.fallback_after_ms.into(),
            p.send_at.into(),
            p.valid_until.into(),
            i64::from(p.bulk).into(),
            (&p.kind).into(),
            p.fallback_success_json().into(),
            (&m.callback_secret).into(),
        ],
    );
    // A future send is left to the poller; a due one is leased to the accepting process.
    let scheduled = p.send_at.is_some_and(|t| t > m.created_at);
    script.add(
        "INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at, priority) VALUES ($1, $2, 0, $3, $4, $5, $6)",
        vec![
            (&m.id).into(),
            p.send_at.unwrap_or(m.created_at).into(),
            (!scheduled).then(|| job.lease_token.clone()).into(),
            (if scheduled { 0 } else { job.lease_until }).into(),
            m.created_at.into(),
            i64::from(p.bulk).into(),
        ],
    );
    if let Some((key, _)) = &job.idempotency {
        script.add(
            "UPDATE idempotency_keys SET response_body = $1 WHERE tenant_id = $2 AND idem_key = $3",
            vec![(&body).into(), (&m.tenant_id).into(), key.into()],
        );
    }
    script.run(&mut *conn).await?;
    Ok(AcceptOutcome::Accepted {
        conversation_id,
        body,
    })
}
