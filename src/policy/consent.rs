//! The consent ledger: inbound STOP/START/HELP keywords and provider opt-out errors update
//! it; sends to an opted-out address end `rejected` (`opted_out`) before any provider sees
//! them. Scope per tenant policy: `sender` (this customer ↔ this business number),
//! `channel` (this customer on this channel) or `contact` (every address of the contact).

use crate::config::ConsentConfig;
use crate::domain::ids::{self, IdKind};
use crate::store::db::{query, Db};
use serde::Serialize;
use sqlx::Row;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use utoipa::ToSchema;
use weft_provider::Channel;

/// What an inbound body asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    OptOut,
    OptIn,
    Help,
}

/// The consent policy of one running weft, with per-tenant overrides resolved on use.
#[derive(Debug)]
pub struct ConsentPolicy {
    cfg: ConsentConfig,
    /// False while the ledger has no opt-out at all: sends skip the lookup.
    any_opt_out: AtomicBool,
    /// Bumped by every opt-out this process writes; a database refresh that raced one is
    /// discarded.
    epoch: AtomicU64,
    /// `epoch + 1` of a first "no opt-outs" reading; the flag only drops on a second one
    /// with no opt-out written in between (an opt-out being written may not be committed
    /// yet when the first reading runs).
    pending_clear: AtomicU64,
}

/// A tenant's effective settings.
pub struct TenantConsent<'a> {
    pub scope: &'a str,
    opt_out: &'a [String],
    opt_in: &'a [String],
    help: &'a [String],
    pub stop_reply: &'a str,
    pub start_reply: &'a str,
    pub help_reply: &'a str,
}

impl ConsentPolicy {
    pub fn new(cfg: ConsentConfig) -> Arc<ConsentPolicy> {
        Arc::new(ConsentPolicy {
            cfg,
            any_opt_out: AtomicBool::new(true),
            epoch: AtomicU64::new(0),
            pending_clear: AtomicU64::new(0),
        })
    }

    /// Settings for a tenant (by name or id).
    pub fn for_tenant(&self, tenant: &[&str]) -> TenantConsent<'_> {
        let o = tenant.iter().find_map(|t| self.cfg.tenants.get(*t));
        let c = &self.cfg;
        TenantConsent {
            scope: o.and_then(|o| o.scope.as_deref()).unwrap_or(&c.scope),
            opt_out: o
                .and_then(|o| o.opt_out_keywords.as_deref())
                .unwrap_or(&c.opt_out_keywords),
            opt_in: o
                .and_then(|o| o.opt_in_keywords.as_deref())
                .unwrap_or(&c.opt_in_keywords),
            help: o
                .and_then(|o| o.help_keywords.as_deref())
                .unwrap_or(&c.help_keywords),
            stop_reply: o
                .and_then(|o| o.stop_reply.as_deref())
                .unwrap_or(&c.stop_reply),
            start_reply: o
                .and_then(|o| o.start_reply.as_deref())
                .unwrap_or(&c.start_reply),
            help_reply: o
                .and_then(|o| o.help_reply.as_deref())
                .unwrap_or(&c.help_reply),
        }
    }

    pub fn may_have_opt_outs(&self) -> bool {
        self.any_opt_out.load(Ordering::Relaxed)
    }

    /// This process wrote an opt-out: look the ledger up from now on.
    pub fn opted_out_now(&self) {
        self.any_opt_out.store(true, Ordering::SeqCst);
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.pending_clear.store(0, Ordering::SeqCst);
    }

    /// Taken before reading the ledger for [`ConsentPolicy::refreshed`].
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// What the ledger said (`any`), read after [`ConsentPolicy::epoch`] returned `epoch`.
    /// Opt-outs turn the lookup on at once; it turns off only after two consecutive empty
    /// readings with no opt-out written by this process in between.
    pub fn refreshed(&self, epoch: u64, any: bool) {
        if any {
            self.any_opt_out.store(true, Ordering::SeqCst);
            self.pending_clear.store(0, Ordering::SeqCst);
            return;
        }
        if self.epoch.load(Ordering::SeqCst) != epoch {
            return;
        }
        if self.pending_clear.load(Ordering::SeqCst) == epoch + 1 {
            self.any_opt_out.store(false, Ordering::SeqCst);
        } else {
            self.pending_clear.store(epoch + 1, Ordering::SeqCst);
        }
    }
}

impl TenantConsent<'_> {
    /// The keyword a body is, if it is one: the whole body, trimmed, case-insensitive,
    /// trailing punctuation ignored.
    pub fn keyword(&self, body: &str) -> Option<Keyword> {
        let word = body
            .trim()
            .trim_end_matches(['.', '!', '?'])
            .trim()
            .to_uppercase();
        let is = |list: &[String]| list.iter().any(|k| k.eq_ignore_ascii_case(&word));
        if is(self.opt_out) {
            Some(Keyword::OptOut)
        } else if is(self.opt_in) {
            Some(Keyword::OptIn)
        } else if is(self.help) {
            Some(Keyword::Help)
        } else {
            None
        }
    }
}

/// The ledger key a change is written under.
pub struct Subject {
    pub subject: String,
    pub scope: String,
    pub scope_value: String,
}

impl Subject {
    pub fn new(
        scope: &str,
        customer: &str,
        contact_id: &str,
        channel: Channel,
        business: &str,
    ) -> Subject {
        match scope {
            "contact" => Subject {
                subject: contact_id.into(),
                scope: "contact".into(),
                scope_value: "*".into(),
            },
            "sender" => Subject {
                subject: customer.into(),
                scope: "sender".into(),
                scope_value: business.into(),
            },
            _ => Subject {
                subject: customer.into(),
                scope: "channel".into(),
                scope_value: channel.as_str().into(),
            },
        }
    }
}

/// Writes a consent change (ledger row + log entry).
#[allow(clippy::too_many_arguments)]
pub async fn record(
    conn: &mut Db<'_>,
    tenant_id: &str,
    s: &Subject,
    opted_out: bool,
    source: &str,
    keyword: Option<&str>,
    message_id: Option<&str>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let status = if opted_out { "opted_out" } else { "opted_in" };
    query(
        "INSERT INTO consent (tenant_id, subject, scope, scope_value, status, source, keyword, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (tenant_id, subject, scope, scope_value) DO UPDATE SET status = excluded.status, source = excluded.source, keyword = excluded.keyword, updated_at = excluded.updated_at",
    )
    .bind(tenant_id)
    .bind(&s.subject)
    .bind(&s.scope)
    .bind(&s.scope_value)
    .bind(status)
    .bind(source)
    .bind(keyword)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    query(
        "INSERT INTO consent_log (id, tenant_id, subject, scope, scope_value, status, source, keyword, message_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(ids::new_id(IdKind::Event))
    .bind(tenant_id)
    .bind(&s.subject)
    .bind(&s.scope)
    .bind(&s.scope_value)
    .bind(status)
    .bind(source)
    .bind(keyword)
    .bind(message_id)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// True when a send to `customer` (identity) on `channel` from `sender` (identity) is
/// blocked by any scope of the ledger.
pub async fn opted_out(
    conn: &mut Db<'_>,
    tenant_id: &str,
    customer: &str,
    channel: Channel,
    sender: Option<&str>,
) -> Result<bool, sqlx::Error> {
    let contact = crate::threading::contacts::owner(conn, tenant_id, customer)
        .await?
        .unwrap_or_default();
    let row = query(
        "SELECT 1 AS x FROM consent WHERE tenant_id = $1 AND status = 'opted_out' AND (
            (scope = 'channel' AND subject = $2 AND scope_value = $3)
         OR (scope = 'sender' AND subject = $4 AND scope_value = $5)
         OR (scope = 'contact' AND subject = $6)) LIMIT 1",
    )
    .bind(tenant_id)
    .bind(customer)
    .bind(channel.as_str())
    .bind(customer)
    .bind(sender.unwrap_or_default())
    .bind(contact)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(row.is_some())
}

/// Whether the ledger holds any opt-out at all.
pub async fn any_opt_out(conn: &mut Db<'_>) -> Result<bool, sqlx::Error> {
    Ok(
        query("SELECT 1 AS x FROM consent WHERE status = 'opted_out' LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?
            .is_some(),
    )
}

/// One ledger entry as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentEntry {
    /// The identity (`tel:+…`) or, for contact scope, the contact id.
    pub subject: String,
    /// `sender`, `channel` or `contact`.
    pub scope: String,
    /// The sender identity, the channel, or `*`.
    pub scope_value: String,
    /// `opted_out` or `opted_in`.
    pub status: String,
    /// `keyword`, `provider` or `api`.
    pub source: String,
    pub keyword: Option<String>,
    pub updated_at: String,
}

/// The ledger entries of a contact and its identities.
pub async fn entries(
    conn: &mut Db<'_>,
    tenant_id: &str,
    contact_id: &str,
) -> Result<Vec<ConsentEntry>, sqlx::Error> {
    let rows = query(
        "SELECT subject, scope, scope_value, status, source, keyword, updated_at FROM consent WHERE tenant_id = $1 AND (
            subject = $2 OR subject IN (SELECT address FROM identities WHERE contact_id = $3)) ORDER BY updated_at",
    )
    .bind(tenant_id)
    .bind(contact_id)
    .bind(contact_id)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter()
        .map(|r| {
            Ok(ConsentEntry {
                subject: r.try_get("subject")?,
                scope: r.try_get("scope")?,
                scope_value: r.try_get("scope_value")?,
                status: r.try_get("status")?,
                source: r.try_get("source")?,
                keyword: r.try_get("keyword")?,
                updated_at: crate::domain::rfc3339(r.try_get("updated_at")?),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_lookup_switch_never_drops_on_a_racing_or_single_empty_reading() {
        let cfg = Config::from_toml("").unwrap_or_else(|e| panic!("{e}"));
        let p = ConsentPolicy::new(cfg.consent);
        // A refresh that started before an opt-out was written is discarded.
        let e = p.epoch();
        p.opted_out_now();
        p.refreshed(e, false);
        p.refreshed(e, false);
        assert!(p.may_have_opt_outs());
        // One empty reading is not enough (the opt-out may not be committed yet).
        let e = p.epoch();
        p.refreshed(e, false);
        assert!(p.may_have_opt_outs());
        // Two in a row with nothing written in between: no opt-outs anywhere.
        p.refreshed(p.epoch(), false);
        assert!(!p.may_have_opt_outs());
        // Any opt-out in the ledger turns it back on.
        p.refreshed(p.epoch(), true);
        assert!(p.may_have_opt_outs());
    }

    #[test]
    fn keywords_are_case_insensitive_and_trimmed() {
        let cfg = Config::from_toml("").unwrap_or_else(|e| panic!("{e}"));
        let p = ConsentPolicy::new(cfg.consent);
        let t = p.for_tenant(&["default"]);
        assert_eq!(t.keyword("  stop "), Some(Keyword::OptOut));
        assert_eq!(t.keyword("Stopp!"), Some(Keyword::OptOut));
        assert_eq!(t.keyword("unsubscribe."), Some(Keyword::OptOut));
        assert_eq!(t.keyword("START"), Some(Keyword::OptIn));
        assert_eq!(t.keyword("help"), Some(Keyword::Help));
        assert_eq!(t.keyword("please stop"), None);
        assert_eq!(t.keyword("stopper"), None);
    }
}
