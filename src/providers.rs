//! The connection registry: one adapter per configured provider account, with its rate
//! limiter and circuit state, looked up by id for webhooks and by channel for sends.

use crate::config::Connection;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Arc;
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

    /// The sender to use: the requested one if this connection owns it, else the first that
    /// suits the channel.
    pub fn sender_for(&self, channel: Channel, requested: Option<&str>) -> Option<String> {
        if let Some(r) = requested {
            return Some(r.to_string());
        }
        let email = channel == Channel::Email;
        self.spec
            .senders
            .iter()
            .find(|s| s.contains('@') == email)
            .or_else(|| self.spec.senders.first())
            .cloned()
    }
}

/// All connections of this process.
#[derive(Clone)]
pub struct Registry {
    by_id: Arc<HashMap<String, Arc<Live>>>,
    ordered: Arc<Vec<Arc<Live>>>,
}

impl Registry {
    pub fn new(conns: Vec<Connection>) -> Result<Registry, ConfigError> {
        let mut by_id = HashMap::new();
        let mut ordered = Vec::new();
        for c in conns {
            let provider = build(&c.spec)?;
            let limiter = c
                .rate_limit_per_second
                .and_then(NonZeroU32::new)
                .map(|n| RateLimiter::direct(Quota::per_second(n)));
            let live = Arc::new(Live {
                spec: c.spec,
                provider,
                limiter,
            });
            by_id.insert(live.spec.id.clone(), live.clone());
            ordered.push(live);
        }
        Ok(Registry {
            by_id: Arc::new(by_id),
            ordered: Arc::new(ordered),
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

    pub fn all(&self) -> impl Iterator<Item = &Arc<Live>> {
        self.ordered.iter()
    }
}
