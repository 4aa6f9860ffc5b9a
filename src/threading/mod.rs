//! Threading: every inbound message and call walks one fixed ladder of keys; the first rung
//! that matches wins, and the decision is stored on the message as `threading`
//! (`{rule, matched_key, candidates[], ambiguous}`), so "why did this land here?" always has
//! an answer (DESIGN.md §5):
//!
//! 1. `explicit` — a `reply+<token>@…` address weft issued (HMAC checked, [`token`]).
//! 2. `reply_ref` — e-mail `In-Reply-To`/`References` against every stored Message-ID, or a
//!    quoted provider message id (WhatsApp `context.id`, Telegram `reply_to_message`).
//!    Forwarded context is not a reply.
//! 3. `lease` — the (customer, business address) pair last used by an outbound message of a
//!    conversation that is not closed; several → the most recent, `ambiguous: true`.
//! 4. `contact` — the sender's live identity → its contact → the contact's open conversation.
//! 5. `new` — a new conversation, linked to the contact's last closed one.
//!
//! A match on a closed conversation starts a new one linked to it.

use crate::store::db::Db;
pub mod contacts;
pub mod ladder;
pub mod token;

pub use ladder::ingest;

use serde::Serialize;

/// E-mail threading settings of one running weft.
#[derive(Debug, Clone)]
pub struct EmailThreading {
    /// Domain of outbound `Message-ID`s.
    pub domain: String,
    /// Domain of `reply+<token>@…` addresses.
    pub inbound_domain: String,
    /// HMAC key of reply tokens.
    pub secret: Vec<u8>,
}

impl EmailThreading {
    pub fn reply_to(&self, conversation_id: &str) -> String {
        token::reply_to(&self.secret, conversation_id, &self.inbound_domain)
    }
}

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

/// Emits `conversation.created` for a conversation made in this transaction.
pub async fn conversation_created(
    conn: &mut Db<'_>,
    tenant_id: &str,
    conversation_id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    let data = || serde_json::json!({ "id": conversation_id, "state": "open" });
    crate::events::app_event(conn, tenant_id, "conversation.created", data, now).await
}
