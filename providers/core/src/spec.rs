//! A connection's configuration as an adapter sees it: secrets already resolved from env or
//! files by the gateway.

use crate::{Channel, ConfigError, ProviderKind};
use secrecy::{ExposeSecret, SecretString};
use std::collections::BTreeMap;
use std::time::Duration;

/// Named secrets (`auth_token`, `api_key`, …). `Debug` never shows a value.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, SecretString>);

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

impl Credentials {
    pub fn new(map: BTreeMap<String, SecretString>) -> Self {
        Credentials(map)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.0.insert(key.into(), SecretString::from(value.into()));
    }

    pub fn get(&self, key: &str) -> Option<&SecretString> {
        self.0.get(key)
    }

    pub fn expose(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|s| s.expose_secret())
    }

    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }
}

/// One configured provider account.
#[derive(Debug, Clone)]
pub struct ConnectionSpec {
    /// Appears in webhook URLs: `/webhooks/{provider}/{id}/{kind}`.
    pub id: String,
    pub provider: ProviderKind,
    /// The tenant whose inbound traffic arrives on this account.
    pub tenant: String,
    /// Overrides the provider's production API base (tests point it at a simulator).
    pub base_url: Option<url::Url>,
    pub senders: Vec<String>,
    pub channels: Vec<Channel>,
    pub credentials: Credentials,
    /// Provider-specific, non-secret settings (`voice_language`, `inbound_domain`, …).
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// Time limit for one provider request.
    pub request_timeout: Duration,
}

impl ConnectionSpec {
    /// A minimal spec, for tests and simulators.
    pub fn new(id: impl Into<String>, provider: ProviderKind) -> Self {
        ConnectionSpec {
            id: id.into(),
            provider,
            tenant: "default".into(),
            base_url: None,
            senders: Vec::new(),
            channels: Vec::new(),
            credentials: Credentials::default(),
            settings: serde_json::Map::new(),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// The base URL to call: the override, else the provider's production default.
    pub fn base_url_or(&self, default: &str) -> Result<url::Url, ConfigError> {
        match &self.base_url {
            Some(u) => Ok(u.clone()),
            None => url::Url::parse(default).map_err(|e| self.problem(format!("base_url: {e}"))),
        }
    }

    /// A string setting.
    pub fn setting_str(&self, key: &str) -> Option<&str> {
        self.settings.get(key).and_then(|v| v.as_str())
    }

    pub fn setting_bool(&self, key: &str) -> Option<bool> {
        self.settings.get(key).and_then(|v| v.as_bool())
    }

    /// Collects the required credential keys that are missing into one error.
    pub fn require_credentials(&self, keys: &[&str]) -> Result<(), ConfigError> {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| self.credentials.get(k).is_none())
            .map(|k| format!("credentials.{k} is required for provider {}", self.provider))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                connection: self.id.clone(),
                problems: missing,
            })
        }
    }

    pub fn problem(&self, p: impl Into<String>) -> ConfigError {
        ConfigError {
            connection: self.id.clone(),
            problems: vec![p.into()],
        }
    }
}
