//! A Twilio connection's credentials and settings, validated once at build time with every
//! problem listed.
//!
//! Credentials: `account_sid` (`AC…`) and `auth_token` (always: webhooks are signed with it);
//! optionally `api_key_sid` (`SK…`) + `api_key_secret` as the REST user instead, and
//! `webhook_shared_key` (the SharedKey secret for HMAC-SHA256 signed webhooks).
//!
//! Settings: `messaging_service_sid` (`MG…`), `voice_language`, `voice_name`,
//! `voice_answer_twiml` (answer to inbound calls), `webhook_shared_key_id`.

use secrecy::{ExposeSecret, SecretString};
use weft_provider::{Channel, ConfigError, ConnectionSpec};

/// Twilio's production REST host.
pub const PRODUCTION_BASE_URL: &str = "https://api.twilio.com";

/// TwiML answered to an inbound call when `voice_answer_twiml` is not set.
pub const DEFAULT_VOICE_ANSWER: &str =
    "<Response><Say>Thank you for calling. We will get back to you.</Say><Hangup/></Response>";

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 5] = [
    "messaging_service_sid",
    "voice_language",
    "voice_name",
    "voice_answer_twiml",
    "webhook_shared_key_id",
];

const CREDENTIAL_KEYS: [&str; 5] = [
    "account_sid",
    "auth_token",
    "api_key_sid",
    "api_key_secret",
    "webhook_shared_key",
];

/// The channels Twilio carries here.
pub const CHANNELS: [Channel; 3] = [Channel::Sms, Channel::Whatsapp, Channel::Voice];

/// A validated connection.
#[derive(Debug, Clone)]
pub struct TwilioConfig {
    pub connection_id: String,
    pub base_url: url::Url,
    pub account_sid: String,
    pub auth_token: SecretString,
    /// `(sid, secret)` used as the Basic user instead of the account.
    pub api_key: Option<(String, SecretString)>,
    pub webhook_shared_key: Option<SecretString>,
    pub webhook_shared_key_id: Option<String>,
    pub messaging_service_sid: Option<String>,
    pub voice_language: Option<String>,
    pub voice_name: Option<String>,
    pub voice_answer_twiml: String,
    pub senders: Vec<String>,
    pub channels: Vec<Channel>,
    pub request_timeout: std::time::Duration,
}

fn sid_ok(sid: &str, prefix: &str) -> bool {
    sid.len() > prefix.len()
        && sid.starts_with(prefix)
        && sid.chars().all(|c| c.is_ascii_alphanumeric())
}

impl TwilioConfig {
    /// Reads and checks the spec; the error lists every problem found.
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let cred = |k: &str| {
            spec.credentials
                .expose(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };

        let account_sid = cred("account_sid").unwrap_or_default().to_string();
        if account_sid.is_empty() {
            problems.push("credentials.account_sid is required for provider twilio".to_string());
        } else if !sid_ok(&account_sid, "AC") {
            problems.push(
                "credentials.account_sid must look like AC followed by letters and digits"
                    .to_string(),
            );
        }
        let auth_token = cred("auth_token");
        if auth_token.is_none() {
            problems.push(
                "credentials.auth_token is required for provider twilio (webhook signatures use it)".to_string(),
            );
        }
        let api_key = match (cred("api_key_sid"), cred("api_key_secret")) {
            (Some(sid), Some(secret)) => {
                if !sid_ok(sid, "SK") {
                    problems.push(
                        "credentials.api_key_sid must look like SK followed by letters and digits"
                            .into(),
                    );
                }
                Some((sid.to_string(), SecretString::from(secret.to_string())))
            }
            (None, None) => None,
            (Some(_), None) => {
                problems.push(
                    "credentials.api_key_secret is required with credentials.api_key_sid".into(),
                );
                None
            }
            (None, Some(_)) => {
                problems.push(
                    "credentials.api_key_sid is required with credentials.api_key_secret".into(),
                );
                None
            }
        };
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a Twilio credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        for (key, value) in &spec.settings {
            if !SETTING_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "settings.{key} is not a Twilio setting (known: {})",
                    SETTING_KEYS.join(", ")
                ));
            } else if !value.is_string() {
                problems.push(format!("settings.{key} must be a string"));
            }
        }
        let setting = |k: &str| {
            spec.setting_str(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
                .map(String::from)
        };
        let messaging_service_sid = setting("messaging_service_sid");
        if let Some(mg) = &messaging_service_sid {
            if !sid_ok(mg, "MG") {
                problems.push("settings.messaging_service_sid must look like MG followed by letters and digits".into());
            }
        }
        let voice_answer_twiml =
            setting("voice_answer_twiml").unwrap_or_else(|| DEFAULT_VOICE_ANSWER.to_string());
        if !voice_answer_twiml.contains("<Response") {
            problems
                .push("settings.voice_answer_twiml must be TwiML (a <Response> document)".into());
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
            if !CHANNELS.contains(c) {
                problems.push(format!(
                    "channels: twilio does not carry {c} (only sms, whatsapp, voice)"
                ));
            }
        }
        let channels = if spec.channels.is_empty() {
            CHANNELS.to_vec()
        } else {
            spec.channels.clone()
        };
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".into());
        }

        match (base_url, auth_token) {
            (Some(base_url), Some(token)) if problems.is_empty() => Ok(TwilioConfig {
                connection_id: spec.id.clone(),
                base_url,
                account_sid,
                auth_token: SecretString::from(token.to_string()),
                api_key,
                webhook_shared_key: cred("webhook_shared_key")
                    .map(|s| SecretString::from(s.to_string())),
                webhook_shared_key_id: setting("webhook_shared_key_id"),
                messaging_service_sid,
                voice_language: setting("voice_language"),
                voice_name: setting("voice_name"),
                voice_answer_twiml,
                senders: spec.senders.clone(),
                channels,
                request_timeout: spec.request_timeout,
            }),
            _ => Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            }),
        }
    }

    /// The Basic-auth user and password for the REST API.
    pub fn basic_auth(&self) -> (&str, &str) {
        match &self.api_key {
            Some((sid, secret)) => (sid, secret.expose_secret()),
            None => (&self.account_sid, self.auth_token.expose_secret()),
        }
    }

    /// `{base}/2010-04-01/Accounts/{AccountSid}/{resource}` (`Messages.json`, `Calls.json`).
    pub fn resource_url(&self, resource: &str) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        format!("{base}/2010-04-01/Accounts/{}/{resource}", self.account_sid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::ProviderKind;

    fn spec() -> ConnectionSpec {
        let mut s = ConnectionSpec::new("tw", ProviderKind::Twilio);
        s.credentials
            .insert("account_sid", "AC0123456789abcdef0123456789abcdef");
        s.credentials.insert("auth_token", "token-123");
        s
    }

    #[test]
    fn minimal_spec_builds_with_defaults() {
        let c = TwilioConfig::from_spec(&spec()).map_err(|e| e.to_string());
        let c = match c {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(c.base_url.as_str(), "https://api.twilio.com/");
        assert_eq!(c.channels, CHANNELS.to_vec());
        assert_eq!(
            c.basic_auth(),
            ("AC0123456789abcdef0123456789abcdef", "token-123")
        );
        assert_eq!(c.voice_answer_twiml, DEFAULT_VOICE_ANSWER);
        assert_eq!(
            c.resource_url("Messages.json"),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = ConnectionSpec::new("tw", ProviderKind::Twilio);
        s.credentials.insert("account_sid", "XX1");
        s.credentials.insert("api_key_sid", "SK1");
        s.credentials.insert("password", "p");
        s.settings
            .insert("messaging_service_sid".into(), serde_json::json!("nope"));
        s.settings.insert("voice_name".into(), serde_json::json!(3));
        s.settings.insert("colour".into(), serde_json::json!("red"));
        s.channels = vec![Channel::Email];
        s.base_url = url::Url::parse("ftp://x.example").ok();
        let problems = match TwilioConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "account_sid must look like",
            "auth_token is required",
            "api_key_secret is required",
            "credentials.password",
            "messaging_service_sid must look like",
            "settings.voice_name must be a string",
            "settings.colour",
            "does not carry email",
            "scheme must be http or https",
        ] {
            assert!(
                problems.iter().any(|p| p.contains(needle)),
                "missing {needle:?} in {problems:?}"
            );
        }
    }

    #[test]
    fn api_key_is_the_basic_user() {
        let mut s = spec();
        s.credentials.insert("api_key_sid", "SK0123");
        s.credentials.insert("api_key_secret", "keysecret");
        match TwilioConfig::from_spec(&s) {
            Ok(c) => assert_eq!(c.basic_auth(), ("SK0123", "keysecret")),
            Err(e) => panic!("{e}"),
        }
    }
}
