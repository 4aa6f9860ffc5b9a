//! A Telegram connection's credentials and settings, validated once at build time with every
//! problem listed.
//!
//! Credentials: `bot_token` (`<bot id>:<secret>`, from @BotFather; it sits in every API URL
//! path, so nothing here ever prints a URL) and `secret_token` (given to `setWebhook`;
//! Telegram echoes it in `X-Telegram-Bot-Api-Secret-Token`).
//!
//! Settings: `bot_username` (optional; names the bot in inbound `to` as
//! `telegram:<bot_username>`, else `telegram:<connection id>`).

use secrecy::{ExposeSecret, SecretString};
use std::time::Duration;
use weft_provider::{Channel, ConfigError, ConnectionSpec};

/// Telegram's production Bot API host.
pub const PRODUCTION_BASE_URL: &str = "https://api.telegram.org";

/// Every setting key this adapter reads; any other key is a configuration error.
pub const SETTING_KEYS: [&str; 1] = ["bot_username"];

/// Every credential key this adapter reads; both are required.
pub const CREDENTIAL_KEYS: [&str; 2] = ["bot_token", "secret_token"];

/// A validated connection.
#[derive(Debug, Clone)]
pub struct TelegramConfig {
    pub connection_id: String,
    pub base_url: url::Url,
    pub bot_token: SecretString,
    pub secret_token: SecretString,
    /// Without the `@`.
    pub bot_username: Option<String>,
    pub request_timeout: Duration,
}

/// `<digits>:<letters, digits, _ or ->`, as BotFather issues them.
fn token_shape_ok(t: &str) -> bool {
    match t.split_once(':') {
        Some((id, secret)) => {
            !id.is_empty()
                && id.bytes().all(|b| b.is_ascii_digit())
                && !secret.is_empty()
                && secret
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        }
        None => false,
    }
}

/// `setWebhook`'s rule: 1–256 characters of `A-Z a-z 0-9 _ -`.
pub fn secret_token_ok(t: &str) -> bool {
    (1..=256).contains(&t.len())
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn username_ok(u: &str) -> bool {
    (1..=64).contains(&u.len()) && u.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl TelegramConfig {
    /// Reads and checks the spec; the error lists every problem found (never a value).
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();
        let cred = |k: &str| {
            spec.credentials
                .expose(k)
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };

        let bot_token = cred("bot_token");
        match bot_token {
            None => {
                problems.push("credentials.bot_token is required for provider telegram".to_string())
            }
            Some(t) if !token_shape_ok(t) => problems.push(
                "credentials.bot_token must look like <bot id>:<token> as BotFather issues it"
                    .into(),
            ),
            Some(_) => {}
        }
        let secret_token = cred("secret_token");
        match secret_token {
            None => problems.push(
                "credentials.secret_token is required for provider telegram (webhooks are checked with it)".into(),
            ),
            Some(t) if !secret_token_ok(t) => {
                problems.push("credentials.secret_token must be 1-256 characters of A-Z a-z 0-9 _ -".into())
            }
            Some(_) => {}
        }
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a Telegram credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        let mut bot_username = None;
        for (key, value) in &spec.settings {
            match (key.as_str(), value.as_str()) {
                ("bot_username", Some(u)) => {
                    let u = u.trim().trim_start_matches('@');
                    if username_ok(u) {
                        bot_username = Some(u.to_string());
                    } else {
                        problems.push(
                            "settings.bot_username must be a Telegram username (A-Z a-z 0-9 _)"
                                .into(),
                        );
                    }
                }
                ("bot_username", None) => {
                    problems.push("settings.bot_username must be a string".into())
                }
                _ => problems.push(format!(
                    "settings.{key} is not a Telegram setting (known: {})",
                    SETTING_KEYS.join(", ")
                )),
            }
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
            if *c != Channel::Telegram {
                problems.push(format!(
                    "channels: telegram does not carry {c} (only telegram)"
                ));
            }
        }
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".into());
        }

        match (base_url, bot_token, secret_token) {
            (Some(base_url), Some(bot_token), Some(secret_token)) if problems.is_empty() => {
                Ok(TelegramConfig {
                    connection_id: spec.id.clone(),
                    base_url,
                    bot_token: SecretString::from(bot_token.to_string()),
                    secret_token: SecretString::from(secret_token.to_string()),
                    bot_username,
                    request_timeout: spec.request_timeout,
                })
            }
            _ => Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            }),
        }
    }

    /// `{base}/bot{token}/{method}`. Holds the token: never log or return it.
    pub fn method_url(&self, method: &str) -> String {
        let base = self.base_url.as_str().trim_end_matches('/');
        format!("{base}/bot{}/{method}", self.bot_token.expose_secret())
    }

    /// The bot as inbound `to`: `telegram:<bot_username>`, else `telegram:<connection id>`.
    pub fn bot_address(&self) -> String {
        format!(
            "telegram:{}",
            self.bot_username.as_deref().unwrap_or(&self.connection_id)
        )
    }

    /// Replaces the bot token wherever it appears (belt and braces for error texts).
    pub fn redact(&self, text: &str) -> String {
        let token = self.bot_token.expose_secret();
        if token.is_empty() {
            text.to_string()
        } else {
            text.replace(token, "<bot token>")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::ProviderKind;

    const TOKEN: &str = "7000000001:AAH-test_token-0123456789";

    fn spec() -> ConnectionSpec {
        let mut s = ConnectionSpec::new("tg", ProviderKind::Telegram);
        s.credentials.insert("bot_token", TOKEN);
        s.credentials.insert("secret_token", "weft_tg-secret");
        s
    }

    fn ok(s: &ConnectionSpec) -> TelegramConfig {
        match TelegramConfig::from_spec(s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn minimal_spec_builds_with_defaults() {
        let c = ok(&spec());
        assert_eq!(
            c.method_url("sendMessage"),
            format!("https://api.telegram.org/bot{TOKEN}/sendMessage")
        );
        assert_eq!(c.bot_address(), "telegram:tg");
        assert_eq!(c.redact(&format!("x {TOKEN} y")), "x <bot token> y");
        assert!(
            !format!("{c:?}").contains("AAH-test"),
            "Debug shows no token"
        );
    }

    #[test]
    fn bot_username_names_the_bot() {
        let mut s = spec();
        s.settings
            .insert("bot_username".into(), "@weft_demo_bot".into());
        assert_eq!(ok(&s).bot_address(), "telegram:weft_demo_bot");
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = ConnectionSpec::new("tg", ProviderKind::Telegram);
        s.credentials.insert("bot_token", "no-colon-hunter2");
        s.credentials.insert("secret_token", "has spaces");
        s.credentials.insert("password", "hunter2");
        s.settings.insert("bot_username".into(), "bad name!".into());
        s.settings.insert("colour".into(), "red".into());
        s.channels = vec![Channel::Sms];
        s.base_url = url::Url::parse("ftp://x.example").ok();
        let problems = match TelegramConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "bot_token must look like",
            "secret_token must be 1-256",
            "credentials.password",
            "bot_username must be",
            "settings.colour",
            "does not carry sms",
            "scheme must be http or https",
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
        let empty = ConnectionSpec::new("tg", ProviderKind::Telegram);
        let problems = TelegramConfig::from_spec(&empty)
            .err()
            .map(|e| e.problems)
            .unwrap_or_default();
        assert_eq!(problems.len(), 2, "{problems:?}");
    }
}
