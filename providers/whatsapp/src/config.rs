//! A WhatsApp Cloud connection's credentials and settings, validated once at build time with
//! every problem listed.
//!
//! Credentials: `access_token` (the Graph API Bearer token), `app_secret` (signs webhooks:
//! `X-Hub-Signature-256`), `verify_token` (the `hub.verify_token` of the subscription handshake).
//!
//! Settings: `phone_number_id` (the sending number's Graph id; may instead come from the
//! message's `from`, so it is required only when no sender is a phone-number id) and
//! `api_version` (default `v21.0`).

use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use weft_provider::{Channel, ConfigError, ConnectionSpec};

/// Meta's production Graph API host.
pub const PRODUCTION_BASE_URL: &str = "https://graph.facebook.com";

/// The Graph API version used when `api_version` is not set.
pub const DEFAULT_API_VERSION: &str = "v21.0";

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 2] = ["phone_number_id", "api_version"];

/// Every credential key this adapter reads; all three are required.
pub const CREDENTIAL_KEYS: [&str; 3] = ["access_token", "app_secret", "verify_token"];

/// A validated connection.
#[derive(Debug, Clone)]
pub struct WhatsappConfig {
    pub connection_id: String,
    pub base_url: url::Url,
    /// `v21.0`, always with the leading `v`.
    pub api_version: String,
    /// The default sending number; `msg.from` overrides it when it is a phone-number id.
    pub phone_number_id: Option<String>,
    pub access_token: SecretString,
    pub app_secret: SecretString,
    pub verify_token: SecretString,
    pub senders: Vec<String>,
    pub request_timeout: Duration,
}

/// A Graph object id: digits only.
pub fn is_graph_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 32 && s.bytes().all(|b| b.is_ascii_digit())
}

/// `v21.0`, `21.0` → `v21.0`; anything else → `None`.
fn normalize_version(v: &str) -> Option<String> {
    let v = v.trim();
    let digits = v.strip_prefix('v').unwrap_or(v);
    let (major, minor) = digits.split_once('.')?;
    let ok = |p: &str| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit());
    (ok(major) && ok(minor)).then(|| format!("v{major}.{minor}"))
}

impl WhatsappConfig {
    /// Reads and checks the spec; the error lists every problem found.
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let cred = |k: &str| {
            spec.credentials
                .expose(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let mut required = |k: &str| {
            let v = cred(k).map(|s| SecretString::from(s.to_string()));
            if v.is_none() {
                problems.push(format!(
                    "credentials.{k} is required for provider whatsapp_cloud"
                ));
            }
            v
        };
        let access_token = required("access_token");
        let app_secret = required("app_secret");
        let verify_token = required("verify_token");
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a WhatsApp Cloud credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        let mut phone_number_id = None;
        let mut api_version = DEFAULT_API_VERSION.to_string();
        for (key, value) in &spec.settings {
            // A phone-number id written as a TOML integer is accepted too.
            let text = match value {
                serde_json::Value::String(s) => Some(s.trim().to_string()),
                serde_json::Value::Number(n) if key == "phone_number_id" => Some(n.to_string()),
                _ => None,
            };
            match (key.as_str(), text) {
                ("phone_number_id", Some(id)) if is_graph_id(&id) => phone_number_id = Some(id),
                ("phone_number_id", _) => problems.push(
                    "settings.phone_number_id must be the number's Graph id (digits only)".into(),
                ),
                ("api_version", Some(v)) => match normalize_version(&v) {
                    Some(v) => api_version = v,
                    None => problems.push(format!(
                        "settings.api_version must look like v21.0 (got {v:?})"
                    )),
                },
                ("api_version", None) => {
                    problems.push("settings.api_version must be a string".into())
                }
                _ => problems.push(format!(
                    "settings.{key} is not a WhatsApp Cloud setting (known: {})",
                    SETTING_KEYS.join(", ")
                )),
            }
        }
        if phone_number_id.is_none() && !spec.senders.iter().any(|s| is_graph_id(s.trim())) {
            problems.push(
                "settings.phone_number_id is required unless senders lists phone-number ids (digits only)".into(),
            );
        }

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
        for c in &spec.channels {
            if *c != Channel::Whatsapp {
                problems.push(format!(
                    "channels: whatsapp_cloud does not carry {c} (only whatsapp)"
                ));
            }
        }
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".into());
        }

        match (base_url, access_token, app_secret, verify_token) {
            (Some(base_url), Some(access_token), Some(app_secret), Some(verify_token))
                if problems.is_empty() =>
            {
                Ok(WhatsappConfig {
                    connection_id: spec.id.clone(),
                    base_url,
                    api_version,
                    phone_number_id,
                    access_token,
                    app_secret,
                    verify_token,
                    senders: spec.senders.clone(),
                    request_timeout: spec.request_timeout,
                })
            }
            _ => Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            }),
        }
    }

    /// `{base}/{version}/{path}`, the base's own path kept.
    pub fn graph_url(&self, path: &str) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        format!("{base}/{}/{path}", self.api_version)
    }

    /// `{base}/{version}/{phone_number_id}/messages`.
    pub fn messages_url(&self, phone_number_id: &str) -> String {
        self.graph_url(&format!("{phone_number_id}/messages"))
    }

    pub fn bearer(&self) -> String {
        format!("Bearer {}", self.access_token.expose_secret())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::ProviderKind;

    fn spec() -> ConnectionSpec {
        let mut s = ConnectionSpec::new("wa", ProviderKind::WhatsappCloud);
        s.credentials.insert("access_token", "EAAG-token");
        s.credentials.insert("app_secret", "app-secret");
        s.credentials.insert("verify_token", "verify-me");
        s.settings.insert(
            "phone_number_id".into(),
            serde_json::json!("106540352242922"),
        );
        s
    }

    #[test]
    fn minimal_spec_builds_with_defaults() {
        let c = match WhatsappConfig::from_spec(&spec()) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.api_version, "v21.0");
        assert_eq!(
            c.messages_url("106540352242922"),
            "https://graph.facebook.com/v21.0/106540352242922/messages"
        );
        assert_eq!(c.bearer(), "Bearer EAAG-token");
    }

    #[test]
    fn version_and_numeric_id_are_normalized() {
        let mut s = spec();
        s.settings
            .insert("api_version".into(), serde_json::json!("22.0"));
        s.settings.insert(
            "phone_number_id".into(),
            serde_json::json!(106540352242922_u64),
        );
        s.base_url = url::Url::parse("http://127.0.0.1:9/graph/").ok();
        let c = match WhatsappConfig::from_spec(&s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            c.messages_url("1"),
            "http://127.0.0.1:9/graph/v22.0/1/messages"
        );
        assert_eq!(c.phone_number_id.as_deref(), Some("106540352242922"));
    }

    #[test]
    fn a_sender_id_replaces_the_setting() {
        let mut s = spec();
        s.settings.clear();
        s.senders = vec!["106540352242922".into()];
        assert!(WhatsappConfig::from_spec(&s).is_ok());
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = ConnectionSpec::new("wa", ProviderKind::WhatsappCloud);
        s.credentials.insert("access_token", "  ");
        s.credentials.insert("password", "hunter2-value");
        s.settings
            .insert("api_version".into(), serde_json::json!("latest"));
        s.settings.insert("colour".into(), serde_json::json!("red"));
        s.senders = vec!["+15550783881".into()];
        s.channels = vec![Channel::Sms];
        s.base_url = url::Url::parse("ftp://x.example").ok();
        s.request_timeout = Duration::ZERO;
        let problems = match WhatsappConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "credentials.access_token is required",
            "credentials.app_secret is required",
            "credentials.verify_token is required",
            "credentials.password",
            "api_version must look like",
            "settings.colour",
            "phone_number_id is required",
            "does not carry sms",
            "scheme must be http or https",
            "request_timeout",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "missing {needle:?} in {problems:?}"
            );
        }
        assert!(
            !problems.iter().any(|p| p.contains("hunter2")),
            "no secret value in problems"
        );
    }
}
