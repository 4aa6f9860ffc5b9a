//! The connection registry: one adapter per configured provider account, with its rate
//! limiter and circuit state, looked up by id for webhooks and by channel for sends.

use crate::config::{BreakerConfig, Connection, RouteConfig};
use crate::policy::breaker::Breaker;
use crate::policy::pace::Pacer;
use crate::policy::routing::{Route, Target};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::RwLock;
use std::time::Duration;
use weft_provider::{Channel, ConfigError, ConnectionSpec, Provider, ProviderKind};

/// Builds the adapter for a connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    match spec.provider {
        ProviderKind::Twilio => weft_twilio::build(spec),
        ProviderKind::Vonage => weft_vonage::build(spec),
        ProviderKind::Sendgrid => weft_sendgrid::build(spec),
        ProviderKind::Mailgun => weft_mailgun::build(spec),
        ProviderKind::WhatsappCloud => weft_whatsapp::build(spec),
        ProviderKind::Telegram => weft_telegram::build(spec),
        ProviderKind::Smtp => weft_smtp::build(spec),
        ProviderKind::Sandbox => weft_sandbox::build(spec),
    }
}

/// One live connection.
pub struct Live {
    pub spec: ConnectionSpec,
    pub provider: Arc<dyn Provider>,
    pub limiter: Option<DefaultDirectRateLimiter>,
    /// Per-sender limit (carriers cap each long code / short code).
    pub sender_limiter: Option<DefaultKeyedRateLimiter<String>>,
    /// Future send slots for messages the limiters turned away (see [`crate::policy::pace`]).
    pub pacer: Option<Pacer>,
    pub sender_pacer: Option<Pacer>,
    pub breaker: Breaker,
}

impl Live {
    pub fn id(&self) -> &str {
        &self.spec.id
    }

    /// Whether this connection may send for the tenant (known by any of `tenant` — id or
    /// name) on `channel`.
    pub fn serves(&self, tenant: &[&str], channel: Channel) -> bool {
        (self.spec.tenant == "*" || tenant.contains(&self.spec.tenant.as_str()))
            && (self.spec.channels.is_empty() || self.spec.channels.contains(&channel))
            && self.provider.capabilities().channels.contains(&channel)
    }

    /// The sender to use: the requested one, else one of the pool's senders that suit the
    /// channel, chosen by the conversation so a customer always sees the same number.
    pub fn sender_for(
        &self,
        channel: Channel,
        requested: Option<&str>,
        conversation_id: &str,
    ) -> Option<String> {
        if let Some(r) = requested {
            return Some(r.to_string());
        }
        let email = channel == Channel::Email;
        let pool: Vec<&String> = self
            .spec
            .senders
            .iter()
            .filter(|s| s.contains('@') == email)
            .collect();
        if pool.is_empty() {
            return self.spec.senders.first().cloned();
        }
        let h = conversation_id
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
        let idx = usize::try_from(h % pool.len() as u64).unwrap_or(0);
        pool.get(idx).map(|s| (*s).clone())
    }
}

/// All connections of this process.
#[derive(Clone)]
pub struct Registry {
    by_id: Arc<HashMap<String, Arc<Live>>>,
    ordered: Arc<Vec<Arc<Live>>>,
    routes: Arc<RwLock<Arc<Vec<Route>>>>,
}

impl Registry {
    pub fn new(
        conns: Vec<Connection>,
        routes: &[RouteConfig],
        breaker: &BreakerConfig,
    ) -> Result<Registry, ConfigError> {
        let mut by_id = HashMap::new();
        let mut ordered = Vec::new();
        for c in conns {
            let provider = build(&c.spec)?;
            let rate = c.rate_limit_per_second.and_then(NonZeroU32::new);
            let limiter = rate.map(|n| RateLimiter::direct(Quota::per_second(n)));
            let b = Breaker::new(
                &c.spec.id,
                breaker.failure_threshold,
                Duration::from_secs(breaker.open_seconds),
            );
            let sender_rate = c.sender_rate_limit_per_second.and_then(NonZeroU32::new);
            let sender_limiter = sender_rate.map(|n| RateLimiter::keyed(Quota::per_second(n)));
            let live = Arc::new(Live {
                spec: c.spec,
                provider,
                limiter,
                sender_limiter,
                pacer: rate.map(Pacer::new),
                sender_pacer: sender_rate.map(Pacer::new),
                breaker: b,
            });
            by_id.insert(live.spec.id.clone(), live.clone());
            ordered.push(live);
        }
        let routes = Arc::new(RwLock::new(Arc::new(
            routes.iter().map(Route::compile).collect(),
        )));
        Ok(Registry {
            by_id: Arc::new(by_id),
            ordered: Arc::new(ordered),
            routes,
        })
    }

    pub fn get(&self, id: &str) -> Option<&Arc<Live>> {
        self.by_id.get(id)
    }

    /// Connections able to send `channel` for the tenant, in configured order; a
    /// tenant-specific connection comes before a shared (`*`) one.
    pub fn routes(&self, tenant: &[&str], channel: Channel) -> Vec<Arc<Live>> {
        let mut own: Vec<_> = self
            .ordered
            .iter()
            .filter(|l| l.spec.tenant != "*" && l.serves(tenant, channel))
            .cloned()
            .collect();
        own.extend(
            self.ordered
                .iter()
                .filter(|l| l.spec.tenant == "*" && l.serves(tenant, channel))
                .cloned(),
        );
        own
    }

    /// Replaces the routing rules (SIGHUP).
    pub fn reload_routes(&self, routes: &[RouteConfig]) {
        let compiled: Vec<Route> = routes.iter().map(Route::compile).collect();
        if let Ok(mut r) = self.routes.write() {
            *r = Arc::new(compiled);
        }
    }

    /// The connections to try for a message, in order: a pinned connection alone; else the
    /// first matching rule's list (weighted pick first); else every serving connection.
    /// Connections that cannot serve the tenant and channel are dropped.
    pub fn select(&self, t: &Target<'_>, pinned: Option<&str>) -> Vec<Arc<Live>> {
        if let Some(p) = pinned {
            return self
                .get(p)
                .filter(|l| l.serves(t.tenant, t.channel))
                .cloned()
                .into_iter()
                .collect();
        }
        let rules = self.routes.read().map(|r| r.clone()).unwrap_or_default();
        match rules.iter().find(|r| r.matches(t)) {
            Some(rule) => rule
                .order()
                .iter()
                .filter_map(|id| self.get(id))
                .filter(|l| l.serves(t.tenant, t.channel))
                .cloned()
                .collect(),
            None => self.routes(t.tenant, t.channel),
        }
    }
}
