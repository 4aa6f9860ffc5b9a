//! A Mailgun connection's credentials and settings, validated once at build time with every
//! problem listed.
//!
//! Credentials:
//! - `api_key` (required): Basic `api:<key>` for `POST /v3/{domain}/messages`.
//! - `webhook_signing_key` (optional): the HTTP webhook signing key (not the API key) that
//!   signs event webhooks and route posts. Without it every webhook is refused.
//!
//! Settings: `domain` (required: the sending domain, e.g. `mg.shop.example`), `from` (default
//! sender, `Name <addr>` allowed), `test_mode` (bool: `o:testmode=yes`, Mailgun accepts but does
//! not deliver), `signature_max_age_seconds` (integer, default 900 as in Mailgun's SDK).

use crate::email::Address;
use secrecy::SecretString;
use weft_mailkit::config as mailkit_config;
use weft_provider::{ConfigError, ConnectionSpec};

/// Mailgun's production API host (EU domains: `https://api.eu.mailgun.net`).
pub const PRODUCTION_BASE_URL: &str = "https://api.mailgun.net";

/// Default freshness window of webhook timestamps (Mailgun's SDK uses 900 s).
pub const DEFAULT_MAX_AGE_SECONDS: u64 = 900;

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 4] = ["domain", "from", "test_mode", "signature_max_age_seconds"];

/// Every credential key this adapter reads.
pub const CREDENTIAL_KEYS: [&str; 2] = ["api_key", "webhook_signing_key"];

/// A validated connection.
#[derive(Debug, Clone)]
pub struct MailgunConfig {
    pub connection_id: String,
    pub base_url: url::Url,
    pub domain: String,
    pub api_key: SecretString,
    pub webhook_signing_key: Option<SecretString>,
    pub from: Option<Address>,
    pub senders: Vec<String>,
    pub test_mode: bool,
    pub signature_max_age: u64,
    pub request_timeout: std::time::Duration,
}

fn domain_ok(d: &str) -> bool {
    d.contains('.')
        && d.len() <= 253
        && d.split('.')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
}

impl MailgunConfig {
    /// Reads and checks the spec; the error lists every problem found.
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let cred = |k: &str| {
            spec.credentials
                .expose(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };

        let api_key = cred("api_key").map(|k| SecretString::from(k.to_string()));
        if api_key.is_none() {
            problems.push("credentials.api_key is required for provider mailgun".to_string());
        }
        let webhook_signing_key =
            cred("webhook_signing_key").map(|k| SecretString::from(k.to_string()));
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a Mailgun credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        for key in spec.settings.keys() {
            if !SETTING_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "settings.{key} is not a Mailgun setting (known: {})",
                    SETTING_KEYS.join(", ")
                ));
            }
        }
        let domain = match spec.settings.get("domain") {
            None => {
                problems.push(
                    "settings.domain is required for provider mailgun (the sending domain)"
                        .to_string(),
                );
                None
            }
            Some(serde_json::Value::String(d)) if domain_ok(d.trim()) => {
                Some(d.trim().to_ascii_lowercase())
            }
            Some(_) => {
                problems.push(
                    "settings.domain must be a domain name such as mg.example.com".to_string(),
                );
                None
            }
        };
        let from = mailkit_config::from_setting(spec, &mut problems);
        let test_mode = match spec.settings.get("test_mode") {
            None => false,
            Some(v) => v.as_bool().unwrap_or_else(|| {
                problems.push("settings.test_mode must be true or false".to_string());
                false
            }),
        };
        let signature_max_age = match spec.settings.get("signature_max_age_seconds") {
            None => DEFAULT_MAX_AGE_SECONDS,
            Some(v) => match v.as_u64() {
                Some(n) if n > 0 => n,
                _ => {
                    problems.push(
                        "settings.signature_max_age_seconds must be a positive integer".to_string(),
                    );
                    DEFAULT_MAX_AGE_SECONDS
                }
            },
        };
        mailkit_config::check_senders(spec, &mut problems);
        let base_url = match spec.base_url_or(PRODUCTION_BASE_URL) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
            Ok(u) => {
                problems.push(format!(
                    "base_url: scheme must be http or https with a host (got {:?})",
                    u.scheme()
                ));
                None
            }
            Err(e) => {
                problems.extend(e.problems);
                None
            }
        };
        mailkit_config::check_email_only(spec, "mailgun", &mut problems);
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".to_string());
        }

        match (base_url, api_key, domain) {
            (Some(base_url), Some(api_key), Some(domain)) if problems.is_empty() => {
                Ok(MailgunConfig {
                    connection_id: spec.id.clone(),
                    base_url,
                    domain,
                    api_key,
                    webhook_signing_key,
                    from,
                    senders: spec.senders.clone(),
                    test_mode,
                    signature_max_age,
                    request_timeout: spec.request_timeout,
                })
            }
            _ => Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            }),
        }
    }

    /// `{base}/v3/{domain}/messages`.
    pub fn send_url(&self) -> String {
        format!(
            "{}/v3/{}/messages",
            self.base_url.as_str().trim_end_matches('/'),
            self.domain
        )
    }

    /// The sender used when a message names none: `settings.from`, else the first sender,
    /// else `postmaster@{domain}`.
    pub fn default_from(&self) -> Address {
        mailkit_config::default_sender(self.from.as_ref(), &self.senders).unwrap_or_else(|| {
            Address {
                name: None,
                email: format!("postmaster@{}", self.domain),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::{Channel, ProviderKind};

    fn spec() -> ConnectionSpec {
        let mut s = ConnectionSpec::new("mg", ProviderKind::Mailgun);
        s.credentials.insert("api_key", "key-test");
        s.settings
            .insert("domain".into(), serde_json::json!("mg.shop.example"));
        s
    }

    #[test]
    fn minimal_spec_builds_with_defaults() {
        let c = match MailgunConfig::from_spec(&spec()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            c.send_url(),
            "https://api.mailgun.net/v3/mg.shop.example/messages"
        );
        assert_eq!(c.default_from().email, "postmaster@mg.shop.example");
        assert_eq!(c.signature_max_age, DEFAULT_MAX_AGE_SECONDS);
        assert!(c.webhook_signing_key.is_none() && !c.test_mode);
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = ConnectionSpec::new("mg", ProviderKind::Mailgun);
        s.credentials.insert("password", "p");
        s.settings
            .insert("from".into(), serde_json::json!("nobody"));
        s.settings
            .insert("test_mode".into(), serde_json::json!("yes"));
        s.settings
            .insert("signature_max_age_seconds".into(), serde_json::json!(0));
        s.settings.insert("colour".into(), serde_json::json!("red"));
        s.senders = vec!["+15550001".into()];
        s.channels = vec![Channel::Sms];
        s.base_url = url::Url::parse("ftp://x.example").ok();
        let problems = match MailgunConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "api_key is required",
            "settings.domain is required",
            "credentials.password",
            "settings.from must be an e-mail",
            "test_mode must be",
            "signature_max_age_seconds must be",
            "settings.colour",
            "senders:",
            "does not carry sms",
            "scheme must be http or https",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "missing {needle:?} in {problems:?}"
            );
        }
        let mut s = spec();
        s.settings
            .insert("domain".into(), serde_json::json!("not a domain"));
        assert!(
            MailgunConfig::from_spec(&s).is_err_and(|e| e.problems[0].contains("domain must be"))
        );
    }
}
