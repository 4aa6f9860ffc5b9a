//! Threading: every inbound message and call walks one fixed ladder of keys; the first rung
//! that matches wins and the decision is stored on the message as `threading`
//! (`{rule, matched_key, candidates[], ambiguous}`), so "why did this land here?" always has
//! an answer. Rungs (DESIGN.md §5): `explicit`, `reply_ref`, `lease`, `contact`, `new`.

use crate::domain::ids;
use crate::store::accept::open_conversation_for;
use serde::Serialize;
use sqlx::{AnyConnection, Row};
use weft_provider::{Channel, InboundEvent};

/// The rung that placed a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Rule {
    Explicit,
    ReplyRef,
    Lease,
    Contact,
    New,
}

impl Rule {
    pub const ALL: [Rule; 5] = [
        Rule::Explicit,
        Rule::ReplyRef,
        Rule::Lease,
        Rule::Contact,
        Rule::New,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Explicit => "explicit",
            Rule::ReplyRef => "reply_ref",
            Rule::Lease => "lease",
            Rule::Contact => "contact",
            Rule::New => "new",
        }
    }
}

/// The stored explanation of a threading decision.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub rule: Rule,
    pub matched_key: Option<String>,
    pub candidates: Vec<String>,
    pub ambiguous: bool,
}

/// Normalizes a sender identity so a channel switch still finds the same contact:
/// `whatsapp:<digits>` (WhatsApp by phone) is `tel:+<digits>`; `mailto:` is lower-cased.
pub fn normalize_identity(raw: &str) -> String {
    if let Some(rest) = raw.strip_prefix("whatsapp:") {
        let digits = rest.trim_start_matches('+');
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return format!("tel:+{digits}");
        }
    }
    if let Some(rest) = raw.strip_prefix("mailto:") {
        return format!("mailto:{}", rest.to_lowercase());
    }
    raw.to_string()
}

/// Strips the scheme for display in `from`/`to` (`tel:+1…` → `+1…`).
fn bare(identity: &str) -> &str {
    identity
        .strip_prefix("tel:")
        .or_else(|| identity.strip_prefix("mailto:"))
        .unwrap_or(identity)
}

/// Stores an inbound message or call on its conversation. Returns the new message id.
pub async fn ingest(
    conn: &mut AnyConnection,
    connection_id: &str,
    tenant: &str,
    ev: &InboundEvent,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let (channel, from, to, body, subject, reply_to, forwarded, extra) = match ev {
        InboundEvent::Message(m) => (
            m.channel,
            m.from.clone(),
            m.to.clone(),
            m.body.clone(),
            m.subject.clone(),
            m.reply_to_provider_id.clone(),
            m.forwarded,
            serde_json::json!({ "provider_message_id": m.provider_message_id, "profile_name": m.profile_name }),
        ),
        InboundEvent::Call(c) => (
            Channel::Voice,
            c.from.clone(),
            c.to.clone(),
            None,
            None,
            None,
            false,
            serde_json::json!({ "call_id": c.provider_call_id, "call_status": c.raw_status, "kind": "call" }),
        ),
        InboundEvent::Consent(_) | InboundEvent::Status(_) => return Ok(None),
    };
    let identity = normalize_identity(&from);

    // Rung 2: a channel-native reply pointer to a message weft knows.
    let mut placed: Option<(String, String, Decision)> = None;
    if let (Some(pid), false) = (&reply_to, forwarded) {
        let row = sqlx::query(
            "SELECT m.conversation_id, m.tenant_id FROM provider_refs r JOIN messages m ON m.id = r.message_id WHERE r.connection_id = $1 AND r.provider_message_id = $2",
        )
        .bind(connection_id)
        .bind(pid)
        .fetch_optional(&mut *conn)
        .await?;
        if let Some(r) = row {
            let t: String = r.try_get("tenant_id")?;
            if tenant == "*" || t == tenant {
                let conv: String = r.try_get("conversation_id")?;
                placed = Some((
                    t,
                    conv.clone(),
                    Decision {
                        rule: Rule::ReplyRef,
                        matched_key: Some(pid.clone()),
                        candidates: vec![conv],
                        ambiguous: false,
                    },
                ));
            }
        }
    }

    let tenant_id = match &placed {
        Some((t, _, _)) => t.clone(),
        None => match resolve_tenant(conn, tenant, &identity).await? {
            Some(t) => t,
            None => {
                tracing::warn!(
                    connection = connection_id,
                    "Inbound message for a shared connection matches no tenant; dropped."
                );
                return Ok(None);
            }
        },
    };

    // Rung 4: the sender's identity → its open conversation; rung 5: a new one.
    let (conversation_id, decision) = match placed {
        Some((_, c, d)) => (c, d),
        None => {
            let binding = format!("{tenant_id}|{identity}");
            let existing = sqlx::query("SELECT id FROM conversations WHERE binding_key = $1")
                .bind(&binding)
                .fetch_optional(&mut *conn)
                .await?;
            let conv = open_conversation_for(conn, &tenant_id, &identity, now).await?;
            let rule = if existing.is_some() {
                Rule::Contact
            } else {
                Rule::New
            };
            (
                conv.clone(),
                Decision {
                    rule,
                    matched_key: Some(identity.clone()),
                    candidates: vec![conv],
                    ambiguous: false,
                },
            )
        }
    };
    metrics::counter!(crate::metrics::THREADING_DECISIONS, "rule" => decision.rule.as_str())
        .increment(1);

    let id = ids::new_id(ids::IdKind::Message);
    let threading = serde_json::to_string(&decision).unwrap_or_default();
    sqlx::query(
        "INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, from_addr, body, subject, metadata, status, connection_id, threading, created_at, updated_at)
         VALUES ($1, $2, $3, 'inbound', $4, $5, $6, $7, $8, $9, 'received', $10, $11, $12, $13)",
    )
    .bind(&id)
    .bind(&tenant_id)
    .bind(&conversation_id)
    .bind(channel.as_str())
    .bind(bare(&normalize_identity(&to)))
    .bind(bare(&identity))
    .bind(&body)
    .bind(&subject)
    .bind(extra.to_string())
    .bind(connection_id)
    .bind(&threading)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(Some(id))
}

/// The tenant of an inbound message: the connection's, or for a shared (`*`) connection the
/// tenant that last wrote to this identity.
async fn resolve_tenant(
    conn: &mut AnyConnection,
    tenant: &str,
    identity: &str,
) -> Result<Option<String>, sqlx::Error> {
    if tenant != "*" {
        let row = sqlx::query("SELECT id FROM tenants WHERE name = $1 OR id = $2")
            .bind(tenant)
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
        return row.map(|r| r.try_get("id")).transpose();
    }
    let row = sqlx::query("SELECT tenant_id FROM conversations WHERE binding_key LIKE $1 ORDER BY last_activity_at DESC LIMIT 1")
        .bind(format!("%|{identity}"))
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get("tenant_id")).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_normalize_across_channels() {
        assert_eq!(
            normalize_identity("whatsapp:15551234567"),
            "tel:+15551234567"
        );
        assert_eq!(normalize_identity("tel:+15551234567"), "tel:+15551234567");
        assert_eq!(normalize_identity("mailto:Jo@X.io"), "mailto:jo@x.io");
        assert_eq!(normalize_identity("telegram:42"), "telegram:42");
    }
}
