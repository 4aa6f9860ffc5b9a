//! A connection's settings read and checked once, every problem listed.
//!
//! | key | kind | meaning |
//! |---|---|---|
//! | `host` | setting | relay host; required unless `base_url` is `smtp://host[:port]` |
//! | `port` | setting | relay port; default 25 (`none`), 587 (`starttls`), 465 (`implicit`) |
//! | `tls` | setting | `"starttls"` (default for `smtp://`), `"implicit"` (default for `smtps://`), `"none"` |
//! | `from` | setting | default sender (`a@b` or `Name <a@b>`) when the message has none |
//! | `hello_name` | setting | the EHLO name; default: this machine's host name |
//! | `auth_mechanism` | setting | `"plain"` or `"login"`; default: whichever the relay offers, PLAIN first |
//! | `allow_plaintext_auth` | setting | `true` lets credentials travel over `tls = "none"` to a non-loopback host |
//! | `username`, `password` | credentials | optional, both or neither (AUTH PLAIN / LOGIN) |
//!
//! `base_url` (the connection's override, what tests point at the sink) wins over `host`; the
//! `port` setting applies only when `base_url` names no port.

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Mechanism;
use std::net::IpAddr;
use std::time::Duration;
use weft_provider::{ConfigError, ConnectionSpec, ProviderKind};

/// How the connection to the relay is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// Plaintext (lettre's `builder_dangerous`): only for a local sink or a trusted network.
    None,
    /// `STARTTLS` is required; a relay that does not offer it fails the send (no downgrade).
    StartTls,
    /// TLS from the first byte (SMTPS, port 465).
    Implicit,
}

impl TlsMode {
    pub fn parse(s: &str) -> Option<TlsMode> {
        match s {
            "none" => Some(TlsMode::None),
            "starttls" => Some(TlsMode::StartTls),
            "implicit" => Some(TlsMode::Implicit),
            _ => None,
        }
    }

    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::StartTls => 587,
            TlsMode::Implicit => 465,
        }
    }
}

/// Everything `send` needs, checked.
#[derive(Clone)]
pub(crate) struct Settings {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub from: Option<Mailbox>,
    pub hello_name: Option<String>,
    /// (username, password), exposed only to lettre.
    pub credentials: Option<(String, String)>,
    pub mechanisms: Vec<Mechanism>,
    pub timeout: Duration,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("auth", &self.credentials.is_some())
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Reads and checks a connection's settings, listing every problem at once.
pub(crate) fn settings(spec: &ConnectionSpec) -> Result<Settings, ConfigError> {
    let mut problems = Vec::new();
    if spec.provider != ProviderKind::Smtp {
        problems.push(format!("provider is {}, expected smtp", spec.provider));
    }

    // Where to connect: base_url (the override) first, then `host`.
    let mut host = None;
    let mut url_port = None;
    let mut url_tls = None;
    match &spec.base_url {
        Some(url) => match url.scheme() {
            "smtp" | "smtps" => {
                url_tls = Some(if url.scheme() == "smtps" {
                    TlsMode::Implicit
                } else {
                    TlsMode::StartTls
                });
                url_port = url.port();
                match url.host_str().filter(|h| !h.is_empty()) {
                    Some(h) => {
                        host = Some(h.trim_start_matches('[').trim_end_matches(']').to_string())
                    }
                    None => problems.push("base_url: needs a host (smtp://host:port)".to_string()),
                }
            }
            other => problems.push(format!(
                "base_url: scheme must be smtp or smtps (got {other:?})"
            )),
        },
        None => match spec.settings.get("host") {
            Some(serde_json::Value::String(h)) if valid_host(h) => host = Some(h.clone()),
            Some(_) => problems.push("settings.host must be a host name or IP address".to_string()),
            None => problems
                .push("settings.host is required (or a base_url smtp://host:port)".to_string()),
        },
    }

    let tls = match spec.settings.get("tls") {
        None => url_tls.unwrap_or(TlsMode::StartTls),
        Some(v) => match v.as_str().and_then(TlsMode::parse) {
            Some(t) => t,
            None => {
                problems.push(format!(
                    "settings.tls must be \"none\", \"starttls\" or \"implicit\" (got {v})"
                ));
                TlsMode::StartTls
            }
        },
    };

    let port = match (url_port, spec.settings.get("port")) {
        (Some(p), _) => p,
        (None, None) => tls.default_port(),
        (None, Some(v)) => match v
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .filter(|p| *p > 0)
        {
            Some(p) => p,
            None => {
                problems.push(format!(
                    "settings.port must be a number from 1 to 65535 (got {v})"
                ));
                tls.default_port()
            }
        },
    };

    let from = match spec.settings.get("from") {
        None => None,
        Some(v) => match v.as_str().map(str::parse::<Mailbox>) {
            Some(Ok(m)) => Some(m),
            _ => {
                problems.push(
                    "settings.from must be an e-mail address (a@b or \"Name <a@b>\")".to_string(),
                );
                None
            }
        },
    };

    let hello_name = match spec.settings.get("hello_name") {
        None => None,
        Some(serde_json::Value::String(h)) if valid_host(h) => Some(h.clone()),
        Some(_) => {
            problems.push("settings.hello_name must be a host name".to_string());
            None
        }
    };

    let mechanisms = match spec.settings.get("auth_mechanism") {
        None => vec![Mechanism::Plain, Mechanism::Login],
        Some(v) => match v.as_str() {
            Some("plain") => vec![Mechanism::Plain],
            Some("login") => vec![Mechanism::Login],
            _ => {
                problems.push("settings.auth_mechanism must be \"plain\" or \"login\"".to_string());
                Vec::new()
            }
        },
    };

    let user = spec.credentials.expose("username");
    let pass = spec.credentials.expose("password");
    let credentials = match (user, pass) {
        (Some(u), Some(p)) if !u.is_empty() => Some((u.to_string(), p.to_string())),
        (None, None) => None,
        (Some(_), Some(_)) => {
            problems.push("credentials.username must not be empty".to_string());
            None
        }
        (Some(_), None) => {
            problems.push(
                "credentials.password is required when credentials.username is set".to_string(),
            );
            None
        }
        (None, Some(_)) => {
            problems.push(
                "credentials.username is required when credentials.password is set".to_string(),
            );
            None
        }
    };

    if let (Some(h), TlsMode::None, Some(_)) = (&host, tls, &credentials) {
        let plaintext_ok = spec.setting_bool("allow_plaintext_auth").unwrap_or(false);
        if !is_loopback(h) && !plaintext_ok {
            problems.push(
                "credentials would travel in clear text with tls = \"none\" to a non-loopback host; \
                 use starttls or implicit (or set allow_plaintext_auth = true)"
                    .to_string(),
            );
        }
    }

    match host {
        Some(host) if problems.is_empty() => Ok(Settings {
            host,
            port,
            tls,
            from,
            hello_name,
            credentials,
            mechanisms,
            timeout: spec.request_timeout,
        }),
        _ => Err(ConfigError {
            connection: spec.id.clone(),
            problems,
        }),
    }
}

fn valid_host(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '[' | ']'))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    fn spec(settings: serde_json::Value) -> ConnectionSpec {
        let mut s = ConnectionSpec::new("mail", ProviderKind::Smtp);
        s.settings = settings.as_object().cloned().unwrap_or_default();
        s
    }

    #[test]
    fn host_and_tls_defaults() {
        let s = settings(&spec(json!({"host": "smtp.example.com"}))).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("smtp.example.com", 587, TlsMode::StartTls)
        );
        let s = settings(&spec(
            json!({"host": "smtp.example.com", "tls": "implicit"}),
        ))
        .unwrap();
        assert_eq!(s.port, 465);
        let s = settings(&spec(
            json!({"host": "smtp.example.com", "tls": "none", "port": 2525}),
        ))
        .unwrap();
        assert_eq!((s.port, s.tls), (2525, TlsMode::None));
    }

    #[test]
    fn base_url_wins_over_host() {
        let mut sp = spec(json!({"host": "smtp.example.com", "tls": "none", "port": 26}));
        sp.base_url = Some(url::Url::parse("smtp://127.0.0.1:2525").unwrap());
        let s = settings(&sp).unwrap();
        assert_eq!(
            (s.host.as_str(), s.port, s.tls),
            ("127.0.0.1", 2525, TlsMode::None)
        );
        sp.settings.remove("tls");
        sp.base_url = Some(url::Url::parse("smtps://relay.example.com").unwrap());
        let s = settings(&sp).unwrap();
        assert_eq!((s.port, s.tls), (26, TlsMode::Implicit));
    }

    #[test]
    fn every_problem_is_listed() {
        let mut sp = spec(
            json!({"tls": "ssl", "port": 70000, "from": "not an address", "auth_mechanism": "cram"}),
        );
        sp.credentials.insert("username", "u");
        let e = settings(&sp).unwrap_err();
        assert_eq!(e.problems.len(), 6, "{:?}", e.problems);
        let mut sp = spec(json!({}));
        sp.base_url = Some(url::Url::parse("https://relay.example.com").unwrap());
        assert_eq!(settings(&sp).unwrap_err().problems.len(), 1);
    }

    #[test]
    fn clear_text_credentials_only_to_loopback() {
        let mut sp = spec(json!({"host": "relay.example.com", "tls": "none"}));
        sp.credentials.insert("username", "u");
        sp.credentials.insert("password", "p");
        let e = settings(&sp).unwrap_err();
        assert!(e.problems[0].contains("clear text"));
        sp.settings
            .insert("allow_plaintext_auth".into(), json!(true));
        assert!(settings(&sp).is_ok());
        let mut sp = spec(json!({"host": "127.0.0.1", "tls": "none"}));
        sp.credentials.insert("username", "u");
        sp.credentials.insert("password", "p");
        assert!(settings(&sp).unwrap().credentials.is_some());
    }

    #[test]
    fn debug_hides_credentials() {
        let mut sp = spec(json!({"host": "127.0.0.1", "tls": "none"}));
        sp.credentials.insert("username", "alice-user");
        sp.credentials.insert("password", "hunter2-secret");
        let text = format!("{:?}", settings(&sp).unwrap());
        assert!(!text.contains("alice-user") && !text.contains("hunter2"));
    }
}
