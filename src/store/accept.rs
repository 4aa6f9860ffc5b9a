//! Accepting a message: idempotency check, conversation, message row and outbox row in one
//! transaction.

use super::db::{query, Db};
use super::script::{insert_one, Col, Script, Val};
use crate::domain::message::{MessageView, NewMessage};
use crate::domain::now_ms;
use crate::threading::contacts;
use sqlx::Row;
use std::sync::LazyLock;

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
        None => match contacts::owner(conn, &m.tenant_id, &m.identity).await? {
            Some(owner) => {
                let contact = contacts::Found {
                    id: owner,
                    created: false,
                };
                open_conversation(conn, m, &contact).await?
            }
            None => {
                // A new recipient: its contact, identity and first conversation, the message
                // and its outbox row in one round trip. Another transaction may have claimed
                // the address meanwhile (PostgreSQL, several writers): then this contact is
                // undone and the message goes to the owner's conversation.
                let mut script = Script::new();
                let mut new =
                    contacts::add_contact(&mut script, &m.tenant_id, &m.identity, m.created_at);
                let conversation_id = new.add_conversation(&mut script, &m.tenant_id, m.created_at);
                let body = answer(m, &conversation_id);
                add_message(&mut script, job, &conversation_id, &body);
                let out = script.run(&mut *conn).await?;
                if new.claimed(&out) {
                    crate::threading::conversation_created(
                        conn,
                        &m.tenant_id,
                        &conversation_id,
                        m.created_at,
                    )
                    .await?;
                    return Ok(AcceptOutcome::Accepted {
                        conversation_id,
                        body,
                    });
                }
                let mut undo = Script::new();
                undo.add(super::delivery::DELETE_OUTBOX, vec![(&m.id).into()]);
                undo.add(DELETE_MESSAGE, vec![(&m.id).into()]);
                new.undo(&mut undo);
                undo.run(&mut *conn).await?;
                let contact =
                    contacts::contact_for(conn, &m.tenant_id, &m.identity, m.created_at).await?;
                open_conversation(conn, m, &contact).await?
            }
        },
    };

    // Message, outbox row and the idempotency key's answer: one round trip.
    let body = answer(m, &conversation_id);
    let mut script = Script::new();
    add_message(&mut script, job, &conversation_id, &body);
    script.run(&mut *conn).await?;
    Ok(AcceptOutcome::Accepted {
        conversation_id,
        body,
    })
}

/// The contact's open conversation (made, and announced, if it has none).
async fn open_conversation(
    conn: &mut Db<'_>,
    m: &NewMessage,
    contact: &contacts::Found,
) -> Result<String, sqlx::Error> {
    let (id, created) =
        contacts::open_conversation(conn, &m.tenant_id, contact, m.created_at).await?;
    if created {
        crate::threading::conversation_created(conn, &m.tenant_id, &id, m.created_at).await?;
    }
    Ok(id)
}

/// The 202 answer's body (also the idempotency key's stored answer).
pub(super) fn answer(m: &NewMessage, conversation_id: &str) -> String {
    serde_json::to_string(&MessageView::accepted(m, conversation_id)).unwrap_or_default()
}

const DELETE_MESSAGE: &str = "DELETE FROM messages WHERE id = $1";

/// The columns an accepted message's row is written with.
pub(super) const MESSAGE_COLUMNS: [(&str, Col); 28] = [
    ("id", Col::Text),
    ("tenant_id", Col::Text),
    ("conversation_id", Col::Text),
    ("direction", Col::Text),
    ("channel", Col::Text),
    ("to_addr", Col::Text),
    ("from_addr", Col::Text),
    ("body", Col::Text),
    ("subject", Col::Text),
    ("template", Col::Text),
    ("metadata", Col::Text),
    ("callback_url", Col::Text),
    ("encoding", Col::Text),
    ("segments", Col::Int),
    ("status", Col::Text),
    ("created_at", Col::Int),
    ("updated_at", Col::Int),
    ("customer_identity", Col::Text),
    ("email_message_id", Col::Text),
    ("pinned_connection", Col::Text),
    ("fallback", Col::Text),
    ("fallback_after_ms", Col::Int),
    ("send_at", Col::Int),
    ("valid_until", Col::Int),
    ("priority", Col::Int),
    ("kind", Col::Text),
    ("fallback_success", Col::Text),
    ("callback_secret", Col::Text),
];

/// The columns its outbox row is written with.
pub(super) const OUTBOX_COLUMNS: [(&str, Col); 7] = [
    ("message_id", Col::Text),
    ("available_at", Col::Int),
    ("tries", Col::Int),
    ("lease_token", Col::Text),
    ("lease_until", Col::Int),
    ("created_at", Col::Int),
    ("priority", Col::Int),
];

static INSERT_MESSAGE: LazyLock<String> =
    LazyLock::new(|| insert_one("messages", &MESSAGE_COLUMNS));
static INSERT_OUTBOX: LazyLock<String> = LazyLock::new(|| insert_one("outbox", &OUTBOX_COLUMNS));

/// The message's row, in [`MESSAGE_COLUMNS`] order.
pub(super) fn message_row(job: &AcceptJob, conversation_id: &str) -> Vec<Val> {
    let m = &job.msg;
    let p = &m.policy;
    vec![
        (&m.id).into(),
        (&m.tenant_id).into(),
        conversation_id.into(),
        "outbound".into(),
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
        "accepted".into(),
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
    ]
}

/// The message's outbox row, in [`OUTBOX_COLUMNS`] order. A future send is left to the
/// poller; a due one is leased to the accepting process.
pub(super) fn outbox_row(job: &AcceptJob) -> Vec<Val> {
    let m = &job.msg;
    let p = &m.policy;
    let scheduled = p.send_at.is_some_and(|t| t > m.created_at);
    vec![
        (&m.id).into(),
        p.send_at.unwrap_or(m.created_at).into(),
        0i64.into(),
        (!scheduled).then(|| job.lease_token.clone()).into(),
        (if scheduled { 0 } else { job.lease_until }).into(),
        m.created_at.into(),
        i64::from(p.bulk).into(),
    ]
}

/// Adds the message row, its outbox row and the idempotency key's answer to `script`.
fn add_message(script: &mut Script, job: &AcceptJob, conversation_id: &str, body: &str) {
    let m = &job.msg;
    script.add(INSERT_MESSAGE.as_str(), message_row(job, conversation_id));
    script.add(INSERT_OUTBOX.as_str(), outbox_row(job));
    if let Some((key, _)) = &job.idempotency {
        script.add(
            "UPDATE idempotency_keys SET response_body = $1 WHERE tenant_id = $2 AND idem_key = $3",
            vec![body.into(), (&m.tenant_id).into(), key.into()],
        );
    }
}

/// A plain SMS accept to `to` for tenant `t` (tests).
#[cfg(test)]
pub(super) fn test_job(to: &str) -> AcceptJob {
    AcceptJob {
        msg: NewMessage {
            id: crate::domain::ids::new_id(crate::domain::ids::IdKind::Message),
            tenant_id: "t".into(),
            conversation_id: None,
            channel: weft_provider::Channel::Sms,
            to: to.into(),
            identity: format!("tel:{to}"),
            from: None,
            body: Some("hi".into()),
            subject: None,
            template: None,
            metadata: None,
            callback_url: None,
            callback_secret: None,
            encoding: Some("GSM-7"),
            segments: Some(1),
            email_message_id: None,
            created_at: now_ms(),
            policy: Default::default(),
        },
        idempotency: None,
        lease_token: "lease".into(),
        lease_until: now_ms() + 60_000,
    }
}

/// A fresh database with tenant `t`, and a writer whose open transaction accepted a first
/// message to `to` (its conversation): for tests of a second writer racing it (tests).
#[cfg(test)]
pub(super) async fn first_claim(to: &str) -> (super::pg::TestDb, super::pg::PgConn, String) {
    let db = super::pg::TestDb::new().await;
    sqlx::raw_sql("INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0)")
        .execute(&db.pool)
        .await
        .expect("tenant");
    let mut first = db.writer().await;
    first.simple("BEGIN").await.expect("begin");
    let conversation = match run(&mut Db::Pg(&mut first), &test_job(to)).await {
        Ok(AcceptOutcome::Accepted {
            conversation_id, ..
        }) => conversation_id,
        _ => panic!("first accept"),
    };
    (db, first, conversation)
}
#[cfg(test)]
mod tests {
    use super::*;

    /// Two PostgreSQL writers accept the first messages to one new number at once: both
    /// see no contact, both write a contact, identity, conversation and message in one
    /// round trip; the second's identity waits for the first's commit and loses. Its
    /// contact and conversation are undone and its message joins the winner's
    /// conversation: one contact, one conversation, two messages, both in the outbox.
    #[tokio::test]
    async fn racing_first_messages_to_a_new_number_share_one_contact_on_postgres() {
        let (db, first, a) = first_claim("+12025550199").await;
        let mut second = db.writer().await;
        let behind = tokio::spawn(async move {
            second.simple("BEGIN").await.expect("begin");
            let out = run(&mut Db::Pg(&mut second), &test_job("+12025550199")).await;
            second.simple("COMMIT").await.expect("commit");
            match out {
                Ok(AcceptOutcome::Accepted {
                    conversation_id, ..
                }) => conversation_id,
                _ => panic!("second accept"),
            }
        });
        // Long enough for the second writer to reach the identity insert and wait there.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.simple("COMMIT").await.expect("commit");
        let b = behind.await.expect("second writer");
        assert_eq!(a, b, "both messages in the winner's conversation");
        db.assert_counts(&[
            ("SELECT COUNT(*) FROM contacts", 1),
            ("SELECT COUNT(*) FROM identities", 1),
            ("SELECT COUNT(*) FROM conversations", 1),
            ("SELECT COUNT(*) FROM messages", 2),
            ("SELECT COUNT(*) FROM outbox", 2),
        ])
        .await;
        db.drop_db().await;
    }
}
