//! The ladder, rung by rung, and storing the inbound message on the chosen conversation.

use super::contacts::{self, normalize};
use super::{token, Decision, EmailThreading, Rule};
use crate::domain::ids::{self, IdKind};
use crate::policy::consent::{self, ConsentPolicy, Keyword, Subject};
use crate::store::db::{query, Db};
use sqlx::Row;
use weft_provider::{Channel, InboundEvent};

/// What an inbound event says, whatever its kind.
struct Inbound {
    channel: Channel,
    customer: String,
    business: String,
    body: Option<String>,
    subject: Option<String>,
    provider_id: String,
    reply_to: Option<String>,
    forwarded: bool,
    email_id: Option<String>,
    email_refs: Vec<String>,
    extra: serde_json::Value,
}

impl Inbound {
    fn from_event(ev: &InboundEvent) -> Option<Inbound> {
        match ev {
            InboundEvent::Message(m) => {
                let (email_id, mut refs) = match &m.email {
                    Some(e) => (e.message_id.clone(), e.references.clone()),
                    None => (None, Vec::new()),
                };
                if let Some(irt) = m.email.as_ref().and_then(|e| e.in_reply_to.clone()) {
                    refs.push(irt);
                }
                // Newest reference first.
                refs.reverse();
                Some(Inbound {
                    channel: m.channel,
                    customer: normalize(&m.from),
                    business: normalize(&m.to),
                    body: m.body.clone(),
                    subject: m.subject.clone(),
                    provider_id: m.provider_message_id.clone(),
                    reply_to: m.reply_to_provider_id.clone(),
                    forwarded: m.forwarded,
                    email_id,
                    email_refs: refs,
                    extra: serde_json::json!({ "profile_name": m.profile_name, "media": m.media }),
                })
            }
            InboundEvent::Call(c) => Some(Inbound {
                channel: Channel::Voice,
                customer: normalize(&c.from),
                business: normalize(&c.to),
                body: None,
                subject: None,
                provider_id: c.provider_call_id.clone(),
                reply_to: None,
                forwarded: false,
                email_id: None,
                email_refs: Vec::new(),
                extra: serde_json::json!({ "kind": "call", "call_status": c.raw_status, "caller_name": c.caller_name, "duration_seconds": c.duration_seconds }),
            }),
            _ => None,
        }
    }
}

/// A conversation a rung pointed at.
struct Hit {
    tenant_id: String,
    conversation_id: String,
    decision: Decision,
}

/// Stores an inbound message or call on its conversation. Returns the new message id.
pub async fn ingest(
    conn: &mut Db<'_>,
    connection_id: &str,
    tenant: &str,
    email: &EmailThreading,
    consent: &ConsentPolicy,
    ev: &InboundEvent,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let Some(inb) = Inbound::from_event(ev) else {
        return Ok(None);
    };
    if matches!(ev, InboundEvent::Call(_)) && update_call(conn, connection_id, &inb, now).await? {
        return Ok(None);
    }
    let tenant_filter = tenant_id_of(conn, tenant).await?;

    let mut hit = explicit(conn, email, &inb, tenant_filter.as_deref()).await?;
    if hit.is_none() {
        hit = reply_ref(conn, connection_id, &inb, tenant_filter.as_deref()).await?;
    }
    let tenant_id = match (&hit, &tenant_filter) {
        (Some(h), _) => h.tenant_id.clone(),
        (None, Some(t)) => t.clone(),
        (None, None) => match shared_tenant(conn, &inb.customer).await? {
            Some(t) => t,
            None => {
                tracing::warn!(
                    connection = connection_id,
                    "Inbound message on a shared connection matches no tenant; dropped."
                );
                return Ok(None);
            }
        },
    };
    let contact = contacts::owner(conn, &tenant_id, &inb.customer).await?;
    if hit.is_none() {
        if let Some(c) = &contact {
            hit = lease(conn, &tenant_id, c, &inb).await?;
        }
    }
    if hit.is_none() {
        if let Some(c) = &contact {
            hit = contact_open(conn, &tenant_id, c, &inb).await?;
        }
    }

    // A match on a closed conversation: a new one, linked to it.
    let mut previous_closed = None;
    if let Some(h) = &hit {
        if contacts::touch(conn, &h.conversation_id, now)
            .await?
            .as_deref()
            == Some("closed")
        {
            previous_closed = Some(h.conversation_id.clone());
        }
    }
    let (conversation_id, decision) = match hit {
        Some(h) if previous_closed.is_none() => (h.conversation_id, h.decision),
        other => {
            let contact = match contact {
                Some(id) => contacts::Found { id, created: false },
                None => contacts::contact_for(conn, &tenant_id, &inb.customer, now).await?,
            };
            let (conv, created) =
                contacts::open_conversation(conn, &tenant_id, &contact, now).await?;
            if created {
                if let Some(prev) = &previous_closed {
                    query("UPDATE conversations SET previous_conversation_id = $1 WHERE id = $2")
                        .bind(prev)
                        .bind(&conv)
                        .execute(&mut *conn)
                        .await?;
                }
                super::conversation_created(conn, &tenant_id, &conv, now).await?;
            }
            let decision = match other {
                // Matched a closed conversation: keep the rule that found it, explain the move.
                Some(h) => Decision {
                    candidates: vec![h.conversation_id, conv.clone()],
                    ..h.decision
                },
                None => Decision {
                    rule: if created { Rule::New } else { Rule::Contact },
                    matched_key: Some(inb.customer.clone()),
                    candidates: vec![conv.clone()],
                    ambiguous: false,
                },
            };
            (conv, decision)
        }
    };
    ::metrics::counter!(crate::metrics::THREADING_DECISIONS, "rule" => decision.rule.as_str())
        .increment(1);
    let id = store_message(
        conn,
        connection_id,
        &tenant_id,
        &conversation_id,
        &inb,
        &decision,
        now,
    )
    .await?;
    keywords(
        conn,
        connection_id,
        tenant,
        &tenant_id,
        &conversation_id,
        &inb,
        &id,
        consent,
        now,
    )
    .await?;
    Ok(Some(id))
}

/// A later event of a call already on a timeline (Twilio's status callbacks of an inbound
/// call): its status and duration update that entry instead of adding the call again.
async fn update_call(
    conn: &mut Db<'_>,
    connection_id: &str,
    inb: &Inbound,
    now: i64,
) -> Result<bool, sqlx::Error> {
    let row = query(
        "SELECT id, metadata FROM messages WHERE connection_id = $1 AND provider_message_id = $2 AND direction = 'inbound' AND channel = 'voice'",
    )
    .bind(connection_id)
    .bind(&inb.provider_id)
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else { return Ok(false) };
    let id: String = row.try_get("id")?;
    let mut meta = row
        .try_get::<Option<String>, _>("metadata")?
        .and_then(|m| serde_json::from_str::<serde_json::Value>(&m).ok())
        .filter(serde_json::Value::is_object)
        .unwrap_or_else(|| serde_json::json!({}));
    if let (Some(m), Some(new)) = (meta.as_object_mut(), inb.extra.as_object()) {
        for (k, v) in new.iter().filter(|(_, v)| !v.is_null()) {
            m.insert(k.clone(), v.clone());
        }
    }
    query("UPDATE messages SET metadata = $1, updated_at = $2 WHERE id = $3")
        .bind(meta.to_string())
        .bind(now)
        .bind(&id)
        .execute(&mut *conn)
        .await?;
    Ok(true)
}

/// STOP/START/HELP: update the consent ledger and answer with the configured auto-reply.
#[allow(clippy::too_many_arguments)]
async fn keywords(
    conn: &mut Db<'_>,
    connection_id: &str,
    tenant: &str,
    tenant_id: &str,
    conversation_id: &str,
    inb: &Inbound,
    message_id: &str,
    consent: &ConsentPolicy,
    now: i64,
) -> Result<(), sqlx::Error> {
    if !matches!(
        inb.channel,
        Channel::Sms | Channel::Whatsapp | Channel::Telegram
    ) {
        return Ok(());
    }
    let Some(body) = &inb.body else { return Ok(()) };
    let policy = consent.for_tenant(&[tenant_id, tenant]);
    let Some(kw) = policy.keyword(body) else {
        return Ok(());
    };
    let contact = contacts::contact_for(conn, tenant_id, &inb.customer, now)
        .await?
        .id;
    let subject = Subject::new(
        policy.scope,
        &inb.customer,
        &contact,
        inb.channel,
        &inb.business,
    );
    let word = body.trim().to_uppercase();
    let reply = match kw {
        Keyword::OptOut => {
            consent::record(
                conn,
                tenant_id,
                &subject,
                true,
                "keyword",
                Some(&word),
                Some(message_id),
                now,
            )
            .await?;
            consent.opted_out_now();
            policy.stop_reply
        }
        Keyword::OptIn => {
            consent::record(
                conn,
                tenant_id,
                &subject,
                false,
                "keyword",
                Some(&word),
                Some(message_id),
                now,
            )
            .await?;
            policy.start_reply
        }
        Keyword::Help => policy.help_reply,
    };
    if reply.is_empty() {
        return Ok(());
    }
    // The answer goes back through the same connection and number; it is exempt from the
    // ledger (a STOP confirmation must reach the customer who just opted out).
    let id = ids::new_id(IdKind::Message);
    query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, from_addr, body, status, created_at, updated_at, customer_identity, pinned_connection, kind, priority)
         VALUES ($1, $2, $3, 'outbound', $4, $5, $6, $7, 'accepted', $8, $9, $10, $11, 'auto_reply', 0)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(inb.channel.as_str())
    .bind(address_of(&inb.customer))
    .bind(address_of(&inb.business))
    .bind(reply)
    .bind(now)
    .bind(now)
    .bind(&inb.customer)
    .bind(connection_id)
    .execute(&mut *conn)
    .await?;
    query("INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at) VALUES ($1, $2, 0, NULL, 0, $3)")
        .bind(&id)
        .bind(now)
        .bind(now)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// An identity as a provider-neutral address: `tel:+1…` → `+1…`, `telegram:42` → `42`.
fn address_of(identity: &str) -> &str {
    identity
        .strip_prefix("tel:")
        .or_else(|| identity.strip_prefix("mailto:"))
        .or_else(|| identity.strip_prefix("telegram:"))
        .unwrap_or(identity)
}

async fn store_message(
    conn: &mut Db<'_>,
    connection_id: &str,
    tenant_id: &str,
    conversation_id: &str,
    inb: &Inbound,
    decision: &Decision,
    now: i64,
) -> Result<String, sqlx::Error> {
    let id = ids::new_id(IdKind::Message);
    let threading = serde_json::to_value(decision).unwrap_or_default();
    query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, from_addr, body, subject, metadata, status, connection_id, threading, created_at, updated_at, customer_identity, business_addr, email_message_id, provider_message_id)
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, $9, 'received', $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&id)
    .bind(tenant_id)
    .bind(conversation_id)
    .bind(inb.channel.as_str())
    .bind(bare(&inb.business))
    .bind(bare(&inb.customer))
    .bind(&inb.body)
    .bind(&inb.subject)
    .bind(inb.extra.to_string())
    .bind(connection_id)
    .bind(threading.to_string())
    .bind(now)
    .bind(now)
    .bind(&inb.customer)
    .bind(&inb.business)
    .bind(&inb.email_id)
    .bind(&inb.provider_id)
    .execute(&mut *conn)
    .await?;
    let data = || {
        serde_json::json!({
            "id": id, "conversation_id": conversation_id, "direction": "inbound", "channel": inb.channel.as_str(),
            "from": bare(&inb.customer), "to": bare(&inb.business), "body": inb.body, "subject": inb.subject,
            "threading": threading,
        })
    };
    crate::events::app_event(conn, tenant_id, "message.received", data, now).await?;
    Ok(id)
}

/// Rung 1: `reply+<token>@…`.
async fn explicit(
    conn: &mut Db<'_>,
    email: &EmailThreading,
    inb: &Inbound,
    tenant: Option<&str>,
) -> Result<Option<Hit>, sqlx::Error> {
    if inb.channel != Channel::Email {
        return Ok(None);
    }
    let Some(tok) = token::from_address(&inb.business) else {
        return Ok(None);
    };
    let Some(conv) = token::verify(&email.secret, tok) else {
        return Ok(None);
    };
    let row = query("SELECT tenant_id FROM conversations WHERE id = $1")
        .bind(&conv)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let tenant_id: String = row.try_get("tenant_id")?;
    if tenant.is_some_and(|t| t != tenant_id) {
        return Ok(None);
    }
    Ok(Some(Hit {
        tenant_id,
        conversation_id: conv.clone(),
        decision: Decision {
            rule: Rule::Explicit,
            matched_key: Some(tok.to_string()),
            candidates: vec![conv],
            ambiguous: false,
        },
    }))
}

/// Rung 2: a reply pointer to a message weft knows.
async fn reply_ref(
    conn: &mut Db<'_>,
    connection_id: &str,
    inb: &Inbound,
    tenant: Option<&str>,
) -> Result<Option<Hit>, sqlx::Error> {
    for r in &inb.email_refs {
        let row = query("SELECT conversation_id, tenant_id FROM messages WHERE email_message_id = $1 ORDER BY id DESC LIMIT 1")
            .bind(r.trim_matches(|c| c == '<' || c == '>'))
            .fetch_optional(&mut *conn)
            .await?;
        if let Some(hit) = hit_from(row, Rule::ReplyRef, r, tenant)? {
            return Ok(Some(hit));
        }
    }
    let Some(pid) = inb.reply_to.as_ref().filter(|_| !inb.forwarded) else {
        return Ok(None);
    };
    let row = query(
        "SELECT m.conversation_id, m.tenant_id FROM provider_refs r JOIN messages m ON m.id = r.message_id WHERE r.connection_id = $1 AND r.provider_message_id = $2",
    )
    .bind(connection_id)
    .bind(pid)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(hit) = hit_from(row, Rule::ReplyRef, pid, tenant)? {
        return Ok(Some(hit));
    }
    let row = query(INBOUND_BY_PROVIDER_ID)
        .bind(connection_id)
        .bind(pid)
        .fetch_optional(&mut *conn)
        .await?;
    hit_from(row, Rule::ReplyRef, pid, tenant)
}

fn hit_from(
    row: Option<sqlx::any::AnyRow>,
    rule: Rule,
    key: &str,
    tenant: Option<&str>,
) -> Result<Option<Hit>, sqlx::Error> {
    let Some(row) = row else { return Ok(None) };
    let tenant_id: String = row.try_get("tenant_id")?;
    if tenant.is_some_and(|t| t != tenant_id) {
        return Ok(None);
    }
    let conv: String = row.try_get("conversation_id")?;
    Ok(Some(Hit {
        tenant_id,
        conversation_id: conv.clone(),
        decision: Decision {
            rule,
            matched_key: Some(key.to_string()),
            candidates: vec![conv],
            ambiguous: false,
        },
    }))
}

/// An inbound message by the id its provider gave it on a connection (`$1`, `$2`).
pub(crate) const INBOUND_BY_PROVIDER_ID: &str =
    "SELECT conversation_id, tenant_id FROM messages WHERE connection_id = $1 AND provider_message_id = $2";

/// Rung 3's lookup: the conversations (not closed, of the contact or one merged into it) of
/// the last outbound messages to a customer (`$2`) from a business address (`$3`).
pub(crate) const LEASE: &str = "SELECT m.conversation_id FROM messages m JOIN conversations c ON c.id = m.conversation_id
         WHERE m.tenant_id = $1 AND m.customer_identity = $2 AND m.business_addr = $3 AND m.direction = 'outbound'
           AND c.state <> 'closed'
           AND (c.contact_id = $4 OR c.contact_id IN (SELECT cm.merged_id FROM contact_merges cm WHERE cm.survivor_id = $5 AND cm.undone_at IS NULL))
         ORDER BY m.id DESC LIMIT 50";

/// Rung 3: the (customer, business address) pair of a conversation that is not closed.
async fn lease(
    conn: &mut Db<'_>,
    tenant_id: &str,
    contact_id: &str,
    inb: &Inbound,
) -> Result<Option<Hit>, sqlx::Error> {
    let rows = query(LEASE)
        .bind(tenant_id)
        .bind(&inb.customer)
        .bind(&inb.business)
        .bind(contact_id)
        .bind(contact_id)
        .fetch_all(&mut *conn)
        .await?;
    let mut candidates: Vec<String> = Vec::new();
    for r in rows {
        let c: String = r.try_get("conversation_id")?;
        if !candidates.contains(&c) {
            candidates.push(c);
        }
    }
    let Some(first) = candidates.first().cloned() else {
        return Ok(None);
    };
    Ok(Some(Hit {
        tenant_id: tenant_id.to_string(),
        conversation_id: first,
        decision: Decision {
            rule: Rule::Lease,
            matched_key: Some(format!("{}|{}", inb.customer, inb.business)),
            ambiguous: candidates.len() > 1,
            candidates,
        },
    }))
}

/// Rung 4: the contact's conversations that are not closed — its default thread, ones the
/// app opened explicitly, those of contacts merged into it — most recently active first;
/// several → the first, `ambiguous`. None open: the caller opens one (rung 5).
async fn contact_open(
    conn: &mut Db<'_>,
    tenant_id: &str,
    contact_id: &str,
    inb: &Inbound,
) -> Result<Option<Hit>, sqlx::Error> {
    let rows = query(
        // Two index lookups (the contact's own conversations, then those of contacts merged
        // into it) instead of an OR that made SQLite walk every conversation of the tenant.
        "SELECT id, last_activity_at FROM conversations WHERE contact_id = $2 AND tenant_id = $1 AND state <> 'closed'
         UNION
         SELECT c.id, c.last_activity_at FROM contact_merges cm JOIN conversations c ON c.contact_id = cm.merged_id
          WHERE cm.survivor_id = $3 AND cm.undone_at IS NULL AND c.tenant_id = $1 AND c.state <> 'closed'
         ORDER BY last_activity_at DESC, id DESC LIMIT 50",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?;
    let candidates = rows
        .iter()
        .map(|r| r.try_get::<String, _>("id"))
        .collect::<Result<Vec<_>, _>>()?;
    let Some(first) = candidates.first().cloned() else {
        return Ok(None);
    };
    Ok(Some(Hit {
        tenant_id: tenant_id.to_string(),
        conversation_id: first,
        decision: Decision {
            rule: Rule::Contact,
            matched_key: Some(inb.customer.clone()),
            ambiguous: candidates.len() > 1,
            candidates,
        },
    }))
}

/// The tenant id of a connection's tenant (name or id); `None` for a shared (`*`) one.
async fn tenant_id_of(conn: &mut Db<'_>, tenant: &str) -> Result<Option<String>, sqlx::Error> {
    if tenant == "*" {
        return Ok(None);
    }
    let row = query("SELECT id FROM tenants WHERE name = $1 OR id = $2")
        .bind(tenant)
        .bind(tenant)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(Some(match row {
        Some(r) => r.try_get("id")?,
        None => tenant.to_string(),
    }))
}

/// For a shared connection: the tenant that owns the sender's identity most recently.
async fn shared_tenant(conn: &mut Db<'_>, customer: &str) -> Result<Option<String>, sqlx::Error> {
    let row = query("SELECT tenant_id FROM identities WHERE address = $1 AND valid_to IS NULL ORDER BY created_at DESC LIMIT 1")
        .bind(customer)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get("tenant_id")).transpose()
}

/// `tel:+1…` → `+1…`, `mailto:a@b` → `a@b` for display.
fn bare(identity: &str) -> &str {
    identity
        .strip_prefix("tel:")
        .or_else(|| identity.strip_prefix("mailto:"))
        .unwrap_or(identity)
}
