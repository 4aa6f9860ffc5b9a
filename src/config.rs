//! Configuration: the embedded, commented `config/default.toml`, then an optional TOML file
//! (`--config` / `WEFT_CONFIG`), then `WEFT_*` environment variables (`__` nests). Everything
//! is validated at start-up and every problem is reported at once.

use figment::providers::{Env, Format, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;
use weft_provider::{Channel, ConnectionSpec, Credentials, ProviderKind};

/// The defaults, compiled in: the reference for every key.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    pub public_url: String,
    pub max_body_bytes: usize,
    pub migrate_on_start: bool,
    pub log: LogConfig,
    pub store: StoreConfig,
    pub dispatch: DispatchConfig,
    pub shutdown: ShutdownConfig,
    pub sandbox: SandboxConfig,
    pub email: EmailConfig,
    pub conversations: ConversationsConfig,
    pub app_webhooks: AppWebhooksConfig,
    pub consent: ConsentConfig,
    pub breaker: BreakerConfig,
    pub api: ApiConfig,
    pub retention: RetentionConfig,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
    #[serde(default)]
    pub connections: Vec<ConnectionConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    pub format: String,
    pub level: String,
    pub redact: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    pub pool_size: u32,
    pub batch_max: usize,
    pub writers: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DispatchConfig {
    pub concurrency: usize,
    pub max_attempts: u32,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub lease_seconds: u64,
    pub poll_interval_ms: u64,
    pub reconcile_seconds: u64,
    pub request_timeout_seconds: u64,
    pub whatsapp_window: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShutdownConfig {
    pub drain_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SandboxConfig {
    pub enabled: bool,
    pub echo: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub domain: String,
    pub inbound_domain: String,
    pub reply_token_secret: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConversationsConfig {
    pub inactive_after_seconds: u64,
    pub close_after_seconds: u64,
    pub sweep_interval_seconds: u64,
}

/// `[retention]`: how long bookkeeping rows are kept (0 keeps them for ever). Messages,
/// their history and attempts are the tenant's record and are never pruned.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Provider webhook events once applied (kept only to drop provider retries).
    pub webhook_events_days: u64,
    /// App-webhook and callback deliveries once delivered or failed.
    pub app_webhook_deliveries_days: u64,
}

/// `[app_webhooks]`: delivery of events to the apps' endpoints (DESIGN.md §6).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppWebhooksConfig {
    pub allow_private_urls: bool,
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    pub max_attempts: u32,
    pub request_timeout_seconds: u64,
    pub concurrency: usize,
    pub poll_interval_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    pub scope: String,
    pub opt_out_keywords: Vec<String>,
    pub opt_in_keywords: Vec<String>,
    pub help_keywords: Vec<String>,
    pub stop_reply: String,
    pub start_reply: String,
    pub help_reply: String,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConsentConfig>,
}

/// Per-tenant overrides of [`ConsentConfig`].
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantConsentConfig {
    pub scope: Option<String>,
    pub opt_out_keywords: Option<Vec<String>>,
    pub opt_in_keywords: Option<Vec<String>>,
    pub help_keywords: Option<Vec<String>>,
    pub stop_reply: Option<String>,
    pub start_reply: Option<String>,
    pub help_reply: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    pub failure_threshold: u32,
    pub open_seconds: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    pub tenant_rate_limit_per_second: u32,
    pub tenant_rate_limit_burst: u32,
    /// How long a replica trusts its cached answer for an API key (revocation delay).
    pub key_cache_seconds: u64,
}

/// One `[[routes]]` rule.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    pub tenant: Option<String>,
    pub channel: Option<String>,
    pub prefix: Option<String>,
    pub country: Option<String>,
    pub sender: Option<String>,
    pub connections: Vec<String>,
    pub weights: Option<Vec<u32>>,
}

/// One `[[connections]]` entry as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionConfig {
    pub id: String,
    pub provider: String,
    #[serde(default = "default_tenant")]
    pub tenant: String,
    #[serde(default)]
    pub base_url: Option<String>,
    #[serde(default)]
    pub senders: Vec<String>,
    #[serde(default)]
    pub channels: Vec<String>,
    #[serde(default)]
    pub rate_limit_per_second: Option<u32>,
    /// Per sender number/address of this connection.
    #[serde(default)]
    pub sender_rate_limit_per_second: Option<u32>,
    #[serde(default)]
    pub request_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub credentials: BTreeMap<String, String>,
    #[serde(default)]
    pub settings: serde_json::Map<String, serde_json::Value>,
}

fn default_tenant() -> String {
    "default".into()
}

/// Where the database lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    Sqlite(String),
    Postgres(String),
}

impl DatabaseUrl {
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(s) | DatabaseUrl::Postgres(s) => s,
        }
    }
}

/// A connection with its secrets resolved and its values checked.
#[derive(Debug, Clone)]
pub struct Connection {
    pub spec: ConnectionSpec,
    pub rate_limit_per_second: Option<u32>,
    pub sender_rate_limit_per_second: Option<u32>,
}

/// Everything wrong with a configuration.
#[derive(Debug, thiserror::Error)]
#[error("configuration has {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigProblems {
    pub problems: Vec<String>,
}

impl Config {
    /// Loads defaults → file → environment. `file` comes from `--config` or `WEFT_CONFIG`.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigProblems> {
        let mut fig = Figment::from(Toml::string(DEFAULT_TOML));
        if let Some(path) = file {
            if !path.exists() {
                return Err(ConfigProblems {
                    problems: vec![format!("config file {} does not exist", path.display())],
                });
            }
            fig = fig.merge(Toml::file(path));
        }
        fig = fig.merge(Env::prefixed("WEFT_").split("__").ignore(&[
            "CONFIG",
            "VECTORS_DIR",
            "TEST_DATABASE_URL",
            "TEST_PG_URL",
            "BIN",
        ]));
        let cfg: Config = fig.extract().map_err(|e| ConfigProblems {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Loads from a TOML string layered on the defaults (tests).
    pub fn from_toml(extra: &str) -> Result<Config, ConfigProblems> {
        let fig = Figment::from(Toml::string(DEFAULT_TOML)).merge(Toml::string(extra));
        let cfg: Config = fig.extract().map_err(|e| ConfigProblems {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Every problem at once.
    pub fn validate(&self) -> Result<(), ConfigProblems> {
        let mut p = Vec::new();
        if self.listen_addr().is_err() {
            p.push(format!("listen: {:?} is not host:port", self.listen));
        }
        match self.database() {
            Err(e) => p.push(e),
            // The writers' own connections read sslmode and sslrootcert: a mistake in them
            // is a start-up problem, not a failure of every later write.
            Ok(DatabaseUrl::Postgres(url)) => {
                if let Err(e) = crate::store::PgTarget::from_url(&url) {
                    p.push(format!("database_url: {e}"));
                }
            }
            Ok(DatabaseUrl::Sqlite(_)) => {}
        }
        if !self.public_url.is_empty() {
            match url::Url::parse(&self.public_url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {}
                _ => p.push(format!(
                    "public_url: {:?} must be an http(s) URL",
                    self.public_url
                )),
            }
        }
        if self.max_body_bytes < 1024 {
            p.push("max_body_bytes: must be at least 1024".into());
        }
        if !matches!(self.log.format.as_str(), "json" | "pretty") {
            p.push(format!(
                "log.format: {:?} must be json or pretty",
                self.log.format
            ));
        }
        let aw = &self.app_webhooks;
        if aw.retry_base_ms == 0 || aw.retry_max_ms < aw.retry_base_ms {
            p.push("app_webhooks: retry_base_ms must be > 0 and <= retry_max_ms".into());
        }
        if aw.max_attempts == 0 || aw.concurrency == 0 || aw.request_timeout_seconds == 0 {
            p.push("app_webhooks: max_attempts, concurrency and request_timeout_seconds must be at least 1".into());
        }
        if aw.poll_interval_ms < 10 {
            p.push("app_webhooks.poll_interval_ms: must be at least 10".into());
        }
        let cv = &self.conversations;
        if cv.inactive_after_seconds == 0
            || cv.close_after_seconds < cv.inactive_after_seconds
            || cv.sweep_interval_seconds == 0
        {
            p.push("conversations: inactive_after_seconds must be > 0 and <= close_after_seconds; sweep_interval_seconds > 0".into());
        }
        if self.store.batch_max == 0 || self.store.writers == 0 || self.store.pool_size == 0 {
            p.push("store: batch_max, writers and pool_size must be at least 1".into());
        }
        let d = &self.dispatch;
        if d.concurrency == 0 || d.max_attempts == 0 {
            p.push("dispatch: concurrency and max_attempts must be at least 1".into());
        }
        if d.retry_base_ms == 0 || d.retry_max_ms < d.retry_base_ms {
            p.push("dispatch: retry_base_ms must be > 0 and <= retry_max_ms".into());
        }
        if d.lease_seconds < d.request_timeout_seconds + 5 {
            p.push(format!(
                "dispatch.lease_seconds: {}s must exceed request_timeout_seconds {}s plus a 5s margin",
                d.lease_seconds, d.request_timeout_seconds
            ));
        }
        let scopes = ["sender", "channel", "contact"];
        if !scopes.contains(&self.consent.scope.as_str()) {
            p.push(format!(
                "consent.scope: {:?} must be sender, channel or contact",
                self.consent.scope
            ));
        }
        for (t, o) in &self.consent.tenants {
            if o.scope.as_deref().is_some_and(|s| !scopes.contains(&s)) {
                p.push(format!(
                    "consent.tenants.{t}.scope: must be sender, channel or contact"
                ));
            }
        }
        if self.breaker.failure_threshold == 0 || self.breaker.open_seconds == 0 {
            p.push("breaker: failure_threshold and open_seconds must be at least 1".into());
        }
        let mut ids: Vec<&str> = self.connections.iter().map(|c| c.id.as_str()).collect();
        if self.sandbox.enabled {
            ids.push("sandbox");
        }
        for (i, r) in self.routes.iter().enumerate() {
            let at = format!("routes[{i}]");
            if r.connections.is_empty() {
                p.push(format!("{at}.connections: name at least one connection"));
            }
            for c in &r.connections {
                if !ids.contains(&c.as_str()) {
                    p.push(format!("{at}.connections: no connection {c:?}"));
                }
            }
            if let Some(ch) = &r.channel {
                if let Err(e) = Channel::from_str(ch) {
                    p.push(format!("{at}.channel: {e}"));
                }
            }
            if let Some(w) = &r.weights {
                if w.len() != r.connections.len() || w.iter().all(|&x| x == 0) {
                    p.push(format!(
                        "{at}.weights: one weight per connection, not all zero"
                    ));
                }
            }
            if let Some(c) = &r.country {
                if c.len() != 2 || !c.bytes().all(|b| b.is_ascii_alphabetic()) {
                    p.push(format!(
                        "{at}.country: {c:?} is not an ISO 3166 alpha-2 code"
                    ));
                }
            }
            if let Some(px) = &r.prefix {
                if !px.starts_with('+') || !px[1..].bytes().all(|b| b.is_ascii_digit()) {
                    p.push(format!("{at}.prefix: {px:?} must look like +49"));
                }
            }
        }
        let mut seen = std::collections::HashSet::new();
        for c in &self.connections {
            if !seen.insert(c.id.clone()) {
                p.push(format!("connections.{}: duplicate id", c.id));
            }
            if let Err(mut errs) = self.resolve_connection(c) {
                p.append(&mut errs);
            }
        }
        if p.is_empty() {
            Ok(())
        } else {
            Err(ConfigProblems { problems: p })
        }
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, std::net::AddrParseError> {
        self.listen.parse()
    }

    /// The public base URL, without a trailing slash.
    pub fn public_base(&self) -> String {
        let base = if self.public_url.is_empty() {
            format!("http://{}", self.listen)
        } else {
            self.public_url.clone()
        };
        base.trim_end_matches('/').to_string()
    }

    /// The domain of outbound `Message-ID`s.
    pub fn mail_domain(&self) -> String {
        if !self.email.domain.is_empty() {
            return self.email.domain.clone();
        }
        url::Url::parse(&self.public_base())
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| "weft.local".into())
    }

    /// The domain inbound replies are addressed to.
    pub fn inbound_domain(&self) -> String {
        if self.email.inbound_domain.is_empty() {
            self.mail_domain()
        } else {
            self.email.inbound_domain.clone()
        }
    }

    pub fn database(&self) -> Result<DatabaseUrl, String> {
        let url = self.database_url.trim();
        if url.is_empty() {
            return Ok(DatabaseUrl::Sqlite("sqlite://weft.db?mode=rwc".into()));
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseUrl::Postgres(url.to_string()))
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.trim_start_matches("//");
            if rest.is_empty() {
                return Err("database_url: sqlite URL has no path".into());
            }
            let sep = if rest.contains('?') { "&" } else { "?" };
            let with_mode = if rest.contains("mode=") {
                rest.to_string()
            } else {
                format!("{rest}{sep}mode=rwc")
            };
            Ok(DatabaseUrl::Sqlite(format!("sqlite://{with_mode}")))
        } else {
            Err(format!(
                "database_url: {url:?} must start with sqlite: or postgres://"
            ))
        }
    }

    /// Connections ready for the adapters: the configured ones, plus the sandbox.
    pub fn connections(&self) -> Result<Vec<Connection>, ConfigProblems> {
        let mut out = Vec::new();
        let mut problems = Vec::new();
        for c in &self.connections {
            match self.resolve_connection(c) {
                Ok(conn) => out.push(conn),
                Err(mut e) => problems.append(&mut e),
            }
        }
        if self.sandbox.enabled && !self.connections.iter().any(|c| c.id == "sandbox") {
            let mut spec = ConnectionSpec::new("sandbox", ProviderKind::Sandbox);
            spec.tenant = "*".into();
            spec.channels = Channel::ALL.to_vec();
            spec.senders = vec!["+15005550006".into(), "sandbox@weft.local".into()];
            spec.settings
                .insert("echo".into(), serde_json::Value::Bool(self.sandbox.echo));
            spec.request_timeout = Duration::from_secs(self.dispatch.request_timeout_seconds);
            out.push(Connection {
                spec,
                rate_limit_per_second: None,
                sender_rate_limit_per_second: None,
            });
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(ConfigProblems { problems })
        }
    }

    fn resolve_connection(&self, c: &ConnectionConfig) -> Result<Connection, Vec<String>> {
        let mut p = Vec::new();
        let at = format!("connections.{}", c.id);
        if c.id.is_empty()
            || !c
                .id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            p.push(format!(
                "{at}.id: use letters, digits, - and _ only (it appears in URLs)"
            ));
        }
        let provider = ProviderKind::from_str(&c.provider);
        if let Err(e) = &provider {
            p.push(format!("{at}.provider: {e}"));
        }
        let base_url = match &c.base_url {
            None => None,
            Some(u) => match url::Url::parse(u) {
                Ok(u) if matches!(u.scheme(), "http" | "https" | "smtp") => Some(u),
                Ok(u) => {
                    p.push(format!(
                        "{at}.base_url: scheme must be http or https (got {:?})",
                        u.scheme()
                    ));
                    None
                }
                Err(e) => {
                    p.push(format!("{at}.base_url: {e}"));
                    None
                }
            },
        };
        let mut channels = Vec::new();
        for ch in &c.channels {
            match Channel::from_str(ch) {
                Ok(ch) => channels.push(ch),
                Err(e) => p.push(format!("{at}.channels: {e}")),
            }
        }
        if c.rate_limit_per_second == Some(0) {
            p.push(format!("{at}.rate_limit_per_second: must be at least 1"));
        }
        let mut creds = BTreeMap::new();
        for (k, v) in &c.credentials {
            if let Some(name) = k.strip_suffix("_env") {
                match std::env::var(v) {
                    Ok(val) => {
                        creds.insert(name.to_string(), SecretString::from(val));
                    }
                    Err(_) => p.push(format!(
                        "{at}.credentials.{k}: environment variable {v} is not set"
                    )),
                }
            } else if let Some(name) = k.strip_suffix("_file") {
                match std::fs::read_to_string(v) {
                    Ok(val) => {
                        creds.insert(
                            name.to_string(),
                            SecretString::from(val.trim_end().to_string()),
                        );
                    }
                    Err(e) => p.push(format!("{at}.credentials.{k}: cannot read {v}: {e}")),
                }
            } else {
                creds.insert(k.clone(), SecretString::from(v.clone()));
            }
        }
        let Ok(provider) = provider else {
            return Err(p);
        };
        let mut spec = ConnectionSpec::new(c.id.clone(), provider);
        spec.tenant = c.tenant.clone();
        spec.base_url = base_url;
        spec.senders = c.senders.clone();
        spec.channels = channels;
        spec.credentials = Credentials::new(creds);
        spec.settings = c.settings.clone();
        spec.request_timeout = Duration::from_secs(
            c.request_timeout_seconds
                .unwrap_or(self.dispatch.request_timeout_seconds),
        );
        if let Err(e) = crate::providers::build(&spec) {
            p.extend(e.problems.into_iter().map(|m| format!("{at}: {m}")));
        }
        if p.is_empty() {
            Ok(Connection {
                spec,
                rate_limit_per_second: c.rate_limit_per_second,
                sender_rate_limit_per_second: c.sender_rate_limit_per_second,
            })
        } else {
            Err(p)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        let cfg = Config::from_toml("").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cfg.listen, "127.0.0.1:8080");
        assert!(matches!(cfg.database(), Ok(DatabaseUrl::Sqlite(_))));
        assert_eq!(cfg.public_base(), "http://127.0.0.1:8080");
        let conns = cfg.connections().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(conns.len(), 1);
        assert_eq!(conns[0].spec.provider, ProviderKind::Sandbox);
    }

    #[test]
    fn every_problem_is_listed() {
        let err = Config::from_toml(
            r#"
            listen = "nowhere"
            database_url = "mysql://x"
            [dispatch]
            lease_seconds = 10
            [[connections]]
            id = "bad id"
            provider = "pigeon"
            channels = ["fax"]
            "#,
        )
        .err()
        .unwrap_or_else(|| panic!("must fail"));
        let all = err.problems.join("\n");
        for needle in [
            "listen",
            "database_url",
            "lease_seconds",
            ".id:",
            "provider",
            "fax",
        ] {
            assert!(all.contains(needle), "missing {needle} in {all}");
        }
    }

    /// The writers' TLS settings are checked at start-up like everything else.
    #[test]
    fn a_postgres_url_with_unusable_tls_settings_is_a_problem() {
        let err = Config::from_toml(
            "database_url = \"postgres://postgres@127.0.0.1/weft?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem\"",
        )
        .err()
        .unwrap_or_else(|| panic!("must fail"));
        let all = err.problems.join("\n");
        assert!(
            all.contains("database_url: sslrootcert /nonexistent/ca.pem"),
            "{all}"
        );
        let ok = Config::from_toml(
            "database_url = \"postgres://postgres@127.0.0.1/weft?sslmode=require\"",
        )
        .expect("sslmode=require");
        assert!(matches!(ok.database(), Ok(DatabaseUrl::Postgres(_))));
    }

    #[test]
    fn sqlite_urls_get_create_mode() {
        let cfg = Config::from_toml("database_url = \"sqlite:///tmp/x.db\"")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            cfg.database(),
            Ok(DatabaseUrl::Sqlite("sqlite:///tmp/x.db?mode=rwc".into()))
        );
    }
}

#[cfg(test)]
mod example_tests {
    use super::*;

    /// Every example in `examples/config/` is a valid configuration once its secrets exist.
    #[test]
    fn examples_validate() {
        let secrets = [
            ("TWILIO_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
            ("TWILIO_AUTH_TOKEN", "0123456789abcdef0123456789abcdef"),
            ("VONAGE_API_KEY", "abcd1234"),
            ("VONAGE_API_SECRET", "abcdef0123456789"),
            ("VONAGE_SIGNATURE_SECRET", "signature-secret-0123456789"),
            ("SENDGRID_API_KEY", "SG.example-key"),
            (
                "SENDGRID_WEBHOOK_PUBLIC_KEY",
                "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
            ),
            ("SENDGRID_INBOUND_SECRET", "0123456789abcdef0123"),
            ("MAILGUN_API_KEY", "key-example"),
            ("MAILGUN_WEBHOOK_SIGNING_KEY", "signing-key-example"),
            ("WHATSAPP_ACCESS_TOKEN", "EAAG-example"),
            ("WHATSAPP_APP_SECRET", "app-secret"),
            ("WHATSAPP_VERIFY_TOKEN", "verify-me"),
            ("TELEGRAM_BOT_TOKEN", "123456789:AAE-example_token-abcdefghijklmnopqrstu"),
            ("TELEGRAM_SECRET_TOKEN", "weft-secret_token"),
            ("SMTP_USERNAME", "mailer"),
        ];
        for (k, v) in secrets {
            std::env::set_var(k, v);
        }
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/config");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{e}")) {
            let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
            let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{e}"));
            let text = text.replace(
                "password_file = \"/run/secrets/smtp-password\"",
                "password = \"example\"",
            );
            if let Err(e) = Config::from_toml(&text) {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
        assert!(n >= 7, "one example per provider");
    }
}
