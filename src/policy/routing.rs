//! Routing rules: the first rule matching tenant, channel, destination prefix or country and
//! sender chooses an ordered list of connections; weights split traffic between them (the
//! others stay in order as failover). No rule matching: every connection serving the tenant
//! and channel, in configured order. Rules reload on SIGHUP.

use crate::config::RouteConfig;
use rand::Rng;
use weft_provider::Channel;

/// One compiled rule.
#[derive(Debug, Clone)]
pub struct Route {
    pub tenant: Option<String>,
    pub channel: Option<Channel>,
    pub prefix: Option<String>,
    pub country: Option<String>,
    pub sender: Option<String>,
    pub connections: Vec<String>,
    pub weights: Option<Vec<u32>>,
}

/// What a message offers for matching.
pub struct Target<'a> {
    pub tenant: &'a [&'a str],
    pub channel: Channel,
    /// `+E164`, e-mail or chat id.
    pub to: &'a str,
    pub sender: Option<&'a str>,
}

impl Route {
    pub fn compile(c: &RouteConfig) -> Route {
        Route {
            tenant: c.tenant.clone(),
            channel: c.channel.as_deref().and_then(|s| s.parse().ok()),
            prefix: c.prefix.clone(),
            country: c.country.as_ref().map(|s| s.to_ascii_uppercase()),
            sender: c.sender.clone(),
            connections: c.connections.clone(),
            weights: c.weights.clone(),
        }
    }

    pub fn matches(&self, t: &Target<'_>) -> bool {
        self.tenant.as_deref().is_none_or(|x| t.tenant.contains(&x))
            && self.channel.is_none_or(|c| c == t.channel)
            && self.prefix.as_deref().is_none_or(|p| t.to.starts_with(p))
            && self.sender.as_deref().is_none_or(|s| t.sender == Some(s))
            && self
                .country
                .as_deref()
                .is_none_or(|c| country_of(t.to).as_deref() == Some(c))
    }

    /// The connection ids in try order: a weighted pick first, then the rest in order.
    pub fn order(&self) -> Vec<String> {
        let mut out = self.connections.clone();
        if let Some(w) = &self.weights {
            let total: u64 = w.iter().map(|&x| u64::from(x)).sum();
            if total > 0 && w.len() == out.len() {
                let mut pick = rand::thread_rng().gen_range(0..total);
                let mut idx = 0;
                for (i, &x) in w.iter().enumerate() {
                    if pick < u64::from(x) {
                        idx = i;
                        break;
                    }
                    pick -= u64::from(x);
                }
                let first = out.remove(idx);
                out.insert(0, first);
            }
        }
        out
    }
}

/// ISO 3166 country of an E.164 number (`DE`), if it is one (remembered per number).
pub fn country_of(number: &str) -> Option<String> {
    crate::domain::address::country(number)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(country: Option<&str>, prefix: Option<&str>, weights: Option<Vec<u32>>) -> Route {
        Route {
            tenant: None,
            channel: Some(Channel::Sms),
            prefix: prefix.map(str::to_string),
            country: country.map(str::to_string),
            sender: None,
            connections: vec!["a".into(), "b".into()],
            weights,
        }
    }

    #[test]
    fn matches_country_and_prefix() {
        let t = |to| Target {
            tenant: &["acme"],
            channel: Channel::Sms,
            to,
            sender: None,
        };
        assert!(route(Some("DE"), None, None).matches(&t("+4915112345678")));
        assert!(!route(Some("DE"), None, None).matches(&t("+14155550100")));
        assert!(route(None, Some("+44"), None).matches(&t("+442071838750")));
        assert_eq!(country_of("+442071838750").as_deref(), Some("GB"));
    }

    #[test]
    fn weights_split_traffic() {
        let r = route(None, None, Some(vec![80, 20]));
        let n = 10_000;
        let a = (0..n).filter(|_| r.order()[0] == "a").count();
        let share = a as f64 / n as f64;
        assert!((0.77..0.83).contains(&share), "share {share}");
        assert_eq!(r.order().len(), 2);
    }
}
