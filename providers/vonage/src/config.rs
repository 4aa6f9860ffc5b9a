//! A Vonage connection's credentials and settings, validated once at build time with every
//! problem listed.
//!
//! Settings:
//! - `api`: `"sms"` (default, the SMS API) or `"messages"` (Messages API v1).
//! - `signature_method`: how SMS API webhooks are signed (dashboard setting): `md5hash`, `md5`,
//!   `sha1`, `sha256` (default) or `sha512`. Messages API webhooks are always HS256 JWTs.
//! - `signature_tolerance_secs`: accepted clock difference for the SMS `timestamp` parameter and
//!   the JWT `iat`/`exp` claims (default 300).
//! - `whatsapp_locale`: the `whatsapp.locale` sent with templates whose `language` is unset
//!   (default `en`).
//!
//! Credentials:
//! - SMS API: `api_key` + `api_secret` (sent in the form body).
//! - Messages API: `application_id` + `private_key` (PEM; we mint an RS256 JWT per request), or
//!   `api_key` + `api_secret` (Basic).
//! - Webhooks: `signature_secret` (SMS `sig` and the Messages HS256 JWT). Without it every
//!   webhook is refused with `VerifyError::NotConfigured`.

use crate::jwt::JwtSigner;
use crate::verify::SigMethod;
use secrecy::SecretString;
use std::time::Duration;
use weft_provider::{Channel, ConfigError, ConnectionSpec};

/// The SMS API's production host.
pub const SMS_PRODUCTION_BASE_URL: &str = "https://rest.nexmo.com";
/// The Messages API's production host.
pub const MESSAGES_PRODUCTION_BASE_URL: &str = "https://api.nexmo.com";

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 4] = [
    "api",
    "signature_method",
    "signature_tolerance_secs",
    "whatsapp_locale",
];

/// Every credential key this adapter reads; any other key is a configuration error.
pub const CREDENTIAL_KEYS: [&str; 5] = [
    "api_key",
    "api_secret",
    "signature_secret",
    "application_id",
    "private_key",
];

/// Default clock tolerance for signed webhooks.
pub const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// Which Vonage API a connection sends through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `POST /sms/json`, form-encoded, key and secret in the body.
    Sms,
    /// `POST /v1/messages`, JSON, JWT or Basic.
    Messages,
}

impl Api {
    pub fn as_str(self) -> &'static str {
        match self {
            Api::Sms => "sms",
            Api::Messages => "messages",
        }
    }

    /// The channels this API carries here.
    pub fn channels(self) -> &'static [Channel] {
        match self {
            Api::Sms => &[Channel::Sms],
            Api::Messages => &[Channel::Sms, Channel::Whatsapp],
        }
    }
}

/// How Messages API requests authenticate.
#[derive(Debug, Clone)]
pub enum MessagesAuth {
    /// An RS256 JWT minted per request with the application's private key.
    Jwt(JwtSigner),
    /// `api_key:api_secret`.
    Basic,
}

/// A validated connection.
#[derive(Debug, Clone)]
pub struct VonageConfig {
    pub connection_id: String,
    pub api: Api,
    pub base_url: url::Url,
    pub api_key: Option<String>,
    pub api_secret: Option<SecretString>,
    pub signature_secret: Option<SecretString>,
    pub signature_method: SigMethod,
    pub signature_tolerance_secs: i64,
    /// Messages API: the application (also checked against signed webhooks' claim).
    pub application_id: Option<String>,
    /// Messages API only.
    pub messages_auth: Option<MessagesAuth>,
    pub whatsapp_locale: String,
    pub senders: Vec<String>,
    pub channels: Vec<Channel>,
    pub request_timeout: Duration,
}

impl VonageConfig {
    /// Reads and checks the spec; the error lists every problem found.
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let cred = |k: &str| {
            spec.credentials
                .expose(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };

        for key in spec.settings.keys() {
            if !SETTING_KEYS.contains(&key.as_str()) {
                problems.push(format!(
                    "settings.{key} is not a vonage setting (known: {})",
                    SETTING_KEYS.join(", ")
                ));
            }
        }
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a vonage credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        let api = match spec.settings.get("api") {
            None => Api::Sms,
            Some(v) => match v.as_str() {
                Some("sms") => Api::Sms,
                Some("messages") => Api::Messages,
                _ => {
                    problems.push(format!(
                        "settings.api must be \"sms\" or \"messages\" (got {v})"
                    ));
                    Api::Sms
                }
            },
        };

        let signature_method = match spec.settings.get("signature_method") {
            None => SigMethod::Sha256,
            Some(v) => match v.as_str().map(str::parse::<SigMethod>) {
                Some(Ok(m)) => m,
                _ => {
                    problems.push(format!(
                        "settings.signature_method must be one of md5hash, md5, sha1, sha256, sha512 (got {v})"
                    ));
                    SigMethod::Sha256
                }
            },
        };

        let signature_tolerance_secs = match spec.settings.get("signature_tolerance_secs") {
            None => DEFAULT_TOLERANCE_SECS,
            Some(v) => {
                match v
                    .as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
                {
                    Some(n) if n > 0 => n,
                    _ => {
                        problems.push(format!("settings.signature_tolerance_secs must be a positive integer (got {v})"));
                        DEFAULT_TOLERANCE_SECS
                    }
                }
            }
        };

        let whatsapp_locale = match spec.settings.get("whatsapp_locale") {
            None => "en".to_string(),
            Some(v) => match v.as_str().map(str::trim).filter(|s| !s.is_empty()) {
                Some(s) => s.to_string(),
                None => {
                    problems.push(format!(
                        "settings.whatsapp_locale must be a non-empty string (got {v})"
                    ));
                    "en".to_string()
                }
            },
        };

        let api_key = cred("api_key").map(str::to_string);
        let api_secret = cred("api_secret").map(|s| SecretString::from(s.to_string()));
        let application_id = cred("application_id").map(str::to_string);
        let private_key = cred("private_key");

        if api_key.is_some() != api_secret.is_some() {
            problems.push(
                "credentials.api_key and credentials.api_secret go together: set both or neither"
                    .into(),
            );
        }

        let messages_auth = match api {
            Api::Sms => {
                if api_key.is_none() || api_secret.is_none() {
                    problems.push(
                        "credentials.api_key and credentials.api_secret are required for provider vonage with api = \"sms\""
                            .into(),
                    );
                }
                if private_key.is_some() {
                    problems.push(
                        "credentials.private_key is only used with settings.api = \"messages\""
                            .into(),
                    );
                }
                None
            }
            Api::Messages => match (&application_id, private_key) {
                (Some(app), Some(pem)) => {
                    match JwtSigner::from_pem(app, pem) {
                        Ok(signer) => Some(MessagesAuth::Jwt(signer)),
                        Err(e) => {
                            problems.push(format!("credentials.private_key is not a usable RSA private key (PEM): {e}"));
                            None
                        }
                    }
                }
                (None, Some(_)) => {
                    problems
                        .push("credentials.private_key needs credentials.application_id".into());
                    None
                }
                (Some(_), None) if api_key.is_none() => {
                    problems.push(
                        "credentials.application_id needs credentials.private_key (or use api_key + api_secret)".into(),
                    );
                    None
                }
                _ if api_key.is_some() && api_secret.is_some() => Some(MessagesAuth::Basic),
                _ => {
                    problems.push(
                        "provider vonage with api = \"messages\" needs credentials.application_id + credentials.private_key, or credentials.api_key + credentials.api_secret"
                            .into(),
                    );
                    None
                }
            },
        };

        let default_base = match api {
            Api::Sms => SMS_PRODUCTION_BASE_URL,
            Api::Messages => MESSAGES_PRODUCTION_BASE_URL,
        };
        let base_url = match spec.base_url_or(default_base) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            Ok(u) => {
                problems.push(format!(
                    "base_url: scheme must be http or https (got {:?})",
                    u.scheme()
                ));
                None
            }
            Err(e) => {
                problems.extend(e.problems);
                None
            }
        };

        let channels = if spec.channels.is_empty() {
            api.channels().to_vec()
        } else {
            for c in &spec.channels {
                if !api.channels().contains(c) {
                    problems.push(format!(
                        "channels: vonage with api = \"{}\" cannot carry {c}",
                        api.as_str()
                    ));
                }
            }
            spec.channels.clone()
        };

        match base_url {
            Some(base_url) if problems.is_empty() => Ok(VonageConfig {
                connection_id: spec.id.clone(),
                api,
                base_url,
                api_key,
                api_secret,
                signature_secret: cred("signature_secret")
                    .map(|s| SecretString::from(s.to_string())),
                signature_method,
                signature_tolerance_secs,
                application_id,
                messages_auth,
                whatsapp_locale,
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

    /// `{base}/{path}` whatever the base's trailing slash.
    pub fn endpoint(&self, path: &str) -> String {
        format!(
            "{}/{}",
            self.base_url.as_str().trim_end_matches('/'),
            path.trim_start_matches('/')
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_provider::ProviderKind;

    fn spec(settings: serde_json::Value, creds: &[(&str, &str)]) -> ConnectionSpec {
        let mut s = ConnectionSpec::new("vonage-test", ProviderKind::Vonage);
        s.settings = settings.as_object().cloned().unwrap_or_default();
        for (k, v) in creds {
            s.credentials.insert(*k, *v);
        }
        s
    }

    #[test]
    fn sms_defaults() {
        let cfg = VonageConfig::from_spec(&spec(
            serde_json::json!({}),
            &[("api_key", "k"), ("api_secret", "s")],
        ))
        .unwrap();
        assert_eq!(cfg.api, Api::Sms);
        assert_eq!(cfg.signature_method, SigMethod::Sha256);
        assert_eq!(cfg.base_url.as_str(), "https://rest.nexmo.com/");
        assert_eq!(cfg.channels, vec![Channel::Sms]);
        assert_eq!(cfg.endpoint("sms/json"), "https://rest.nexmo.com/sms/json");
    }

    #[test]
    fn every_problem_is_listed() {
        let err = VonageConfig::from_spec(&spec(
            serde_json::json!({"api": "fax", "signature_method": "crc32", "colour": "blue", "signature_tolerance_secs": -1}),
            &[("api_key", "k"), ("token", "t")],
        ))
        .unwrap_err();
        let all = err.problems.join("\n");
        for needle in [
            "settings.api",
            "signature_method",
            "settings.colour",
            "credentials.token",
            "api_secret go together",
            "signature_tolerance_secs",
        ] {
            assert!(all.contains(needle), "missing {needle:?} in {all}");
        }
    }

    #[test]
    fn messages_needs_some_auth_and_a_real_key() {
        let err = VonageConfig::from_spec(&spec(serde_json::json!({"api": "messages"}), &[]))
            .unwrap_err();
        assert!(err.problems[0].contains("application_id"));
        let err = VonageConfig::from_spec(&spec(
            serde_json::json!({"api": "messages"}),
            &[("application_id", "app"), ("private_key", "not a pem")],
        ))
        .unwrap_err();
        assert!(err.problems[0].contains("private_key"), "{err}");
        let cfg = VonageConfig::from_spec(&spec(
            serde_json::json!({"api": "messages"}),
            &[("api_key", "k"), ("api_secret", "s")],
        ))
        .unwrap();
        assert!(matches!(cfg.messages_auth, Some(MessagesAuth::Basic)));
        assert_eq!(cfg.base_url.as_str(), "https://api.nexmo.com/");
        assert_eq!(cfg.channels, vec![Channel::Sms, Channel::Whatsapp]);
    }

    #[test]
    fn sms_api_cannot_carry_whatsapp() {
        let mut s = spec(
            serde_json::json!({}),
            &[("api_key", "k"), ("api_secret", "s")],
        );
        s.channels = vec![Channel::Whatsapp];
        assert!(
            VonageConfig::from_spec(&s).unwrap_err().problems[0].contains("cannot carry whatsapp")
        );
    }
}
