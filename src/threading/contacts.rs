//! Contacts, identities and open conversations as threading and accept need them.

use crate::domain::ids::{self, IdKind};
use crate::store::db::{query, Db};
use crate::store::script::Script;
use sqlx::Row;

/// Normalizes an address into identity form: `tel:+E164` for phone numbers (also WhatsApp
/// by phone), `mailto:` lower-cased, `whatsapp:`/`telegram:` kept.
pub fn normalize(raw: &str) -> String {
    let raw = raw.trim();
    if let Some(rest) = raw.strip_prefix("whatsapp:") {
        let digits = rest.trim_start_matches('+');
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return format!("tel:+{digits}");
        }
        return raw.to_string();
    }
    if let Some(rest) = raw.strip_prefix("mailto:") {
        return format!("mailto:{}", rest.to_lowercase());
    }
    if raw.starts_with("tel:") || raw.starts_with("telegram:") {
        return raw.to_string();
    }
    if raw.starts_with('+') && raw[1..].bytes().all(|b| b.is_ascii_digit()) {
        return format!("tel:{raw}");
    }
    if raw.contains('@') {
        return format!("mailto:{}", raw.to_lowercase());
    }
    raw.to_string()
}

/// The contact owning a live identity.
pub async fn owner(
    conn: &mut Db<'_>,
    tenant_id: &str,
    identity: &str,
) -> Result<Option<String>, sqlx::Error> {
    let row = query("SELECT contact_id FROM identities WHERE tenant_id = $1 AND address = $2 AND valid_to IS NULL")
        .bind(tenant_id)
        .bind(identity)
        .fetch_optional(&mut *conn)
        .await?;
    row.map(|r| r.try_get("contact_id")).transpose()
}

/// A contact and whether the call that found it created it (in the caller's transaction).
pub struct Found {
    pub id: String,
    pub created: bool,
}

/// The contact owning `identity`, created with that identity if there is none. Race-free:
/// one live owner per address is a unique index.
pub async fn contact_for(
    conn: &mut Db<'_>,
    tenant_id: &str,
    identity: &str,
    now: i64,
) -> Result<Found, sqlx::Error> {
    if let Some(id) = owner(conn, tenant_id, identity).await? {
        return Ok(Found { id, created: false });
    }
    let mut script = Script::new();
    let new = add_contact(&mut script, tenant_id, identity, now);
    let out = script.run(&mut *conn).await?;
    if new.claimed(&out) {
        return Ok(Found {
            id: new.contact,
            created: true,
        });
    }
    // Another writer's transaction claimed the address first: its contact is the owner.
    let mut undo = Script::new();
    new.undo(&mut undo);
    undo.run(&mut *conn).await?;
    let id = owner(conn, tenant_id, identity)
        .await?
        .unwrap_or(new.contact);
    Ok(Found { id, created: false })
}

/// A contact added to a [`Script`] by [`add_contact`], not yet known to own its address.
pub struct NewContact {
    contact: String,
    /// Its first conversation, when added with [`NewContact::add_conversation`].
    conversation: Option<String>,
    identity_insert: usize,
}

impl NewContact {
    /// Whether the address became this contact's: `false` when another transaction's
    /// contact already owned it (the identity insert did nothing).
    pub fn claimed(&self, out: &[crate::store::script::Out]) -> bool {
        out.get(self.identity_insert).map_or(0, |o| o.rows_affected) == 1
    }

    /// Adds the contact's first conversation (a new contact has none, open or closed, so a
    /// plain insert; see [`open_conversation`]). Returns its id.
    pub fn add_conversation(&mut self, script: &mut Script, tenant_id: &str, now: i64) -> String {
        let id = add_first_conversation(script, tenant_id, &self.contact, now);
        self.conversation = Some(id.clone());
        id
    }

    /// Deletes what [`add_contact`] (and [`NewContact::add_conversation`]) wrote, when the
    /// address turned out to be owned already. Rows that point at them go first.
    pub fn undo(&self, script: &mut Script) {
        if let Some(c) = &self.conversation {
            script.add("DELETE FROM conversations WHERE id = $1", vec![c.into()]);
        }
        script.add(
            "DELETE FROM contacts WHERE id = $1",
            vec![(&self.contact).into()],
        );
    }
}

/// Adds a new contact owning `identity` to `script`: the contact, and its identity unless
/// the address already has a live owner (unique index; see [`NewContact::claimed`]).
pub fn add_contact(script: &mut Script, tenant_id: &str, identity: &str, now: i64) -> NewContact {
    let contact = ids::new_id(IdKind::Contact);
    script.add(
        "INSERT INTO contacts (id, tenant_id, created_at) VALUES ($1, $2, $3)",
        vec![(&contact).into(), tenant_id.into(), now.into()],
    );
    let identity_insert = script.add(
        "INSERT INTO identities (id, tenant_id, contact_id, address, valid_from, created_at) VALUES ($1, $2, $3, $4, $5, $6)
         ON CONFLICT (tenant_id, address) WHERE valid_to IS NULL DO NOTHING",
        vec![
            ids::new_id(IdKind::Identity).into(),
            tenant_id.into(),
            (&contact).into(),
            identity.into(),
            now.into(),
            now.into(),
        ],
    );
    NewContact {
        contact,
        conversation: None,
        identity_insert,
    }
}

/// A new contact's first conversation (`$4`: [`binding_key`]).
pub(crate) const NEW_CONTACT_CONVERSATION: &str = "INSERT INTO conversations (id, tenant_id, contact_id, binding_key, state, created_at, last_activity_at) VALUES ($1, $2, $3, $4, 'open', $5, $6)";

/// Adds a new contact's first conversation to `script`; returns its id.
fn add_first_conversation(
    script: &mut Script,
    tenant_id: &str,
    contact_id: &str,
    now: i64,
) -> String {
    let id = ids::new_id(IdKind::Conversation);
    script.add(
        NEW_CONTACT_CONVERSATION,
        vec![
            (&id).into(),
            tenant_id.into(),
            contact_id.into(),
            binding_key(tenant_id, contact_id).into(),
            now.into(),
            now.into(),
        ],
    );
    id
}

/// The contact's open (or inactive, which reopens) conversation, or a new one linked to its
/// last closed conversation. Returns `(id, created)`.
pub async fn open_conversation(
    conn: &mut Db<'_>,
    tenant_id: &str,
    contact: &Found,
    now: i64,
) -> Result<(String, bool), sqlx::Error> {
    let contact_id = contact.id.as_str();
    if contact.created {
        // A contact made in this transaction has no conversation yet, open or closed (the
        // binding key names the contact): a plain insert. The upsert below, with its lookup
        // of a closed predecessor and its `RETURNING`, costs SQLite two temporary tables.
        let mut script = Script::new();
        let id = add_first_conversation(&mut script, tenant_id, contact_id, now);
        script.run(&mut *conn).await?;
        return Ok((id, true));
    }
    let fresh = ids::new_id(IdKind::Conversation);
    let row = query(
        "INSERT INTO conversations (id, tenant_id, contact_id, binding_key, state, previous_conversation_id, created_at, last_activity_at)
         VALUES ($1, $2, $3, $4, 'open',
                 (SELECT p.id FROM conversations p WHERE p.contact_id = $5 AND p.state = 'closed' ORDER BY p.closed_at DESC LIMIT 1),
                 $6, $7)
         ON CONFLICT (binding_key) DO UPDATE SET last_activity_at = excluded.last_activity_at, state = 'open'
         RETURNING id",
    )
    .bind(&fresh)
    .bind(tenant_id)
    .bind(contact_id)
    .bind(binding_key(tenant_id, contact_id))
    .bind(contact_id)
    .bind(now)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    let id: String = row.try_get("id")?;
    let created = id == fresh;
    Ok((id, created))
}

/// The key that makes one open conversation per contact a unique index.
pub(crate) fn binding_key(tenant_id: &str, contact_id: &str) -> String {
    format!("{tenant_id}|{contact_id}")
}

/// Marks a conversation active now (an inactive one reopens). Returns its state before.
pub async fn touch(
    conn: &mut Db<'_>,
    conversation_id: &str,
    now: i64,
) -> Result<Option<String>, sqlx::Error> {
    let row = query("SELECT state FROM conversations WHERE id = $1")
        .bind(conversation_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else { return Ok(None) };
    let state: String = row.try_get("state")?;
    if state != "closed" {
        query("UPDATE conversations SET last_activity_at = $1, state = 'open' WHERE id = $2")
            .bind(now)
            .bind(conversation_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(Some(state))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_normalize() {
        assert_eq!(normalize("whatsapp:15551234567"), "tel:+15551234567");
        assert_eq!(normalize("whatsapp:+15551234567"), "tel:+15551234567");
        assert_eq!(normalize("+15551234567"), "tel:+15551234567");
        assert_eq!(normalize("tel:+15551234567"), "tel:+15551234567");
        assert_eq!(normalize("mailto:Jo@X.io"), "mailto:jo@x.io");
        assert_eq!(normalize("Jo@X.io"), "mailto:jo@x.io");
        assert_eq!(normalize("telegram:42"), "telegram:42");
        assert_eq!(normalize("whatsapp:US.abc"), "whatsapp:US.abc");
    }
}
