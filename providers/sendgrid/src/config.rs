//! A SendGrid connection's credentials and settings, validated once at build time with every
//! problem listed.
//!
//! Credentials:
//! - `api_key` (required): the `Bearer` key for `POST /v3/mail/send`.
//! - `webhook_public_key` (optional): the Event Webhook verification key as the dashboard shows
//!   it (base64 DER SubjectPublicKeyInfo; a PEM block is accepted too). Without it the `events`
//!   webhook is refused.
//! - `inbound_secret` (optional): the secret Inbound Parse must carry as `?secret=` in the URL
//!   configured at SendGrid (Inbound Parse has no signature). Without it `inbound` is refused.
//!
//! Settings: `from` (default sender address, `Name <addr>` allowed), `sandbox_mode` (bool:
//! SendGrid validates but does not deliver), `signature_max_age_seconds` (integer; reject Event
//! Webhook timestamps older than this; default: no age check, see [`crate::verify`]).

use crate::email::Address;
use p256::ecdsa::VerifyingKey;
use secrecy::{ExposeSecret, SecretString};
use weft_mailkit::config as mailkit_config;
use weft_provider::{ConfigError, ConnectionSpec};

/// SendGrid's production API host (EU accounts: `https://api.eu.sendgrid.com`).
pub const PRODUCTION_BASE_URL: &str = "https://api.sendgrid.com";

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 3] = ["from", "sandbox_mode", "signature_max_age_seconds"];

/// Every credential key this adapter reads.
pub const CREDENTIAL_KEYS: [&str; 3] = ["api_key", "webhook_public_key", "inbound_secret"];

/// A validated connection.
#[derive(Debug, Clone)]
pub struct SendgridConfig {
    pub connection_id: String,
    pub base_url: url::Url,
    pub api_key: SecretString,
    pub webhook_key: Option<VerifyingKey>,
    pub inbound_secret: Option<SecretString>,
    pub from: Option<Address>,
    pub senders: Vec<String>,
    pub sandbox_mode: bool,
    pub signature_max_age: Option<u64>,
    pub request_timeout: std::time::Duration,
}

impl SendgridConfig {
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
            problems.push("credentials.api_key is required for provider sendgrid".to_string());
        }
        let webhook_key = match cred("webhook_public_key") {
            None => None,
            Some(k) => match crate::verify::parse_public_key(k) {
                Ok(key) => Some(key),
                Err(e) => {
                    problems.push(format!("credentials.webhook_public_key: {e}"));
                    None
                }
            },
        };
        let inbound_secret = cred("inbound_secret").map(|s| SecretString::from(s.to_string()));
        if let Some(s) = &inbound_secret {
            if s.expose_secret().len() < 16 {
                problems
                    .push("credentials.inbound_secret must be at least 16 characters".to_string());
            }
        }
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a SendGrid credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        for key in spec.settings.keys() {
            if !SETTING_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "settings.{key} is not a SendGrid setting (known: {})",
                    SETTING_KEYS.join(", ")
                ));
            }
        }
        let from = mailkit_config::from_setting(spec, &mut problems);
        let sandbox_mode = match spec.settings.get("sandbox_mode") {
            None => false,
            Some(v) => v.as_bool().unwrap_or_else(|| {
                problems.push("settings.sandbox_mode must be true or false".to_string());
                false
            }),
        };
        let signature_max_age = match spec.settings.get("signature_max_age_seconds") {
            None => None,
            Some(v) => match v.as_u64() {
                Some(0) => None,
                Some(n) => Some(n),
                None => {
                    problems.push(
                        "settings.signature_max_age_seconds must be a non-negative integer"
                            .to_string(),
                    );
                    None
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
        mailkit_config::check_email_only(spec, "sendgrid", &mut problems);
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".to_string());
        }

        match (base_url, api_key) {
            (Some(base_url), Some(api_key)) if problems.is_empty() => Ok(SendgridConfig {
                connection_id: spec.id.clone(),
                base_url,
                api_key,
                webhook_key,
                inbound_secret,
                from,
                senders: spec.senders.clone(),
                sandbox_mode,
                signature_max_age,
                request_timeout: spec.request_timeout,
            }),
            _ => Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            }),
        }
    }

    /// `{base}/v3/mail/send`.
    pub fn send_url(&self) -> String {
        format!(
            "{}/v3/mail/send",
            self.base_url.as_str().trim_end_matches('/')
        )
    }

    /// The sender used when a message names none: `settings.from`, else the first sender.
    pub fn default_from(&self) -> Option<Address> {
        mailkit_config::default_sender(self.from.as_ref(), &self.senders)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::{Channel, ProviderKind};

    const KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";

    fn spec() -> ConnectionSpec {
        let mut s = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
        s.credentials.insert("api_key", "SG.test-key");
        s
    }

    #[test]
    fn minimal_spec_builds_with_defaults() {
        let c = match SendgridConfig::from_spec(&spec()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.send_url(), "https://api.sendgrid.com/v3/mail/send");
        assert!(
            c.webhook_key.is_none() && c.inbound_secret.is_none() && c.default_from().is_none()
        );
        assert!(!c.sandbox_mode);
        assert_eq!(c.signature_max_age, None);
    }

    #[test]
    fn full_spec_builds() {
        let mut s = spec();
        s.credentials.insert("webhook_public_key", KEY);
        s.credentials
            .insert("inbound_secret", "0123456789abcdef0123");
        s.settings
            .insert("from".into(), serde_json::json!("Shop <News@Shop.Example>"));
        s.settings
            .insert("sandbox_mode".into(), serde_json::json!(true));
        s.settings
            .insert("signature_max_age_seconds".into(), serde_json::json!(600));
        s.channels = vec![Channel::Email];
        let c = match SendgridConfig::from_spec(&s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert!(c.webhook_key.is_some());
        assert_eq!(
            c.default_from().map(|a| a.email),
            Some("News@Shop.Example".to_string())
        );
        assert_eq!(c.signature_max_age, Some(600));
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
        s.credentials.insert("webhook_public_key", "bm90IGEga2V5");
        s.credentials.insert("inbound_secret", "short");
        s.credentials.insert("password", "p");
        s.settings
            .insert("from".into(), serde_json::json!("nobody"));
        s.settings
            .insert("sandbox_mode".into(), serde_json::json!("yes"));
        s.settings
            .insert("signature_max_age_seconds".into(), serde_json::json!(-1));
        s.settings.insert("colour".into(), serde_json::json!("red"));
        s.senders = vec!["+15550001".into()];
        s.channels = vec![Channel::Sms];
        s.base_url = url::Url::parse("ftp://x.example").ok();
        let problems = match SendgridConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "api_key is required",
            "webhook_public_key",
            "inbound_secret must be at least",
            "credentials.password",
            "settings.from must be an e-mail",
            "sandbox_mode must be",
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
    }
}
