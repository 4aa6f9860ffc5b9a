//! A sandbox connection's credential and settings, all optional, validated once at build time
//! with every problem listed.
//!
//! Credential: `signing_secret` (default [`DEFAULT_SIGNING_SECRET`]). The default is public —
//! it is printed right here — so it only proves a callback came from *a* sandbox, which is all
//! a local demo needs. Set your own if a sandbox connection is reachable from elsewhere.
//!
//! Settings: `callback_delay_ms` (default 20), `echo` (default false), `echo_delay_ms`
//! (default 200). Numbers and booleans may also be given as strings (`"20"`, `"true"`), as
//! environment variables deliver them. Any other key is an error.

use secrecy::SecretString;
use std::time::Duration;
use weft_provider::{ConfigError, ConnectionSpec};

/// The signing secret used when none is configured. **Public**: anyone can forge sandbox
/// callbacks signed with it. Fine for a local demo; never rely on it for anything else.
pub const DEFAULT_SIGNING_SECRET: &str = "weft-sandbox-secret";

/// Every credential key this adapter reads; none is required.
pub const CREDENTIAL_KEYS: [&str; 1] = ["signing_secret"];

/// Every setting key this adapter reads; none is required.
pub const SETTING_KEYS: [&str; 3] = ["callback_delay_ms", "echo", "echo_delay_ms"];

pub const DEFAULT_CALLBACK_DELAY_MS: u64 = 20;
pub const DEFAULT_ECHO_DELAY_MS: u64 = 200;

/// The longest delay a setting may ask for (10 minutes), so a typo cannot park a task forever.
pub const MAX_DELAY_MS: u64 = 600_000;

/// A validated sandbox connection.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub connection_id: String,
    pub signing_secret: SecretString,
    /// Before each status callback.
    pub callback_delay: Duration,
    /// Post an `echo: …` reply after `delivered`.
    pub echo: bool,
    /// Between `delivered` and the echo.
    pub echo_delay: Duration,
    /// Time limit for one callback POST.
    pub request_timeout: Duration,
}

fn as_u64(v: &serde_json::Value) -> Option<u64> {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn as_bool(v: &serde_json::Value) -> Option<bool> {
    v.as_bool().or_else(|| match v.as_str().map(str::trim) {
        Some("true") => Some(true),
        Some("false") => Some(false),
        _ => None,
    })
}

impl SandboxConfig {
    /// Reads and checks the spec; the error lists every problem found (never a secret value).
    pub fn from_spec(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let mut problems = Vec::new();

        let signing_secret = match spec.credentials.expose("signing_secret") {
            None => DEFAULT_SIGNING_SECRET.to_string(),
            Some(s) if s.trim().is_empty() => {
                problems.push("credentials.signing_secret must not be empty (omit it to use the public default)".to_string());
                String::new()
            }
            Some(s) => s.trim().to_string(),
        };
        for key in spec.credentials.keys() {
            if !CREDENTIAL_KEYS.contains(&key) {
                problems.push(format!(
                    "credentials.{key} is not a sandbox credential (known: {})",
                    CREDENTIAL_KEYS.join(", ")
                ));
            }
        }

        let mut callback_delay_ms = DEFAULT_CALLBACK_DELAY_MS;
        let mut echo_delay_ms = DEFAULT_ECHO_DELAY_MS;
        let mut echo = false;
        for (key, value) in &spec.settings {
            match key.as_str() {
                "callback_delay_ms" | "echo_delay_ms" => match as_u64(value) {
                    Some(ms) if ms <= MAX_DELAY_MS => {
                        if key == "callback_delay_ms" {
                            callback_delay_ms = ms;
                        } else {
                            echo_delay_ms = ms;
                        }
                    }
                    _ => problems.push(format!(
                        "settings.{key} must be a whole number of milliseconds from 0 to {MAX_DELAY_MS} (got {value})"
                    )),
                },
                "echo" => match as_bool(value) {
                    Some(b) => echo = b,
                    None => problems.push(format!("settings.echo must be true or false (got {value})")),
                },
                _ => problems.push(format!(
                    "settings.{key} is not a sandbox setting (known: {})",
                    SETTING_KEYS.join(", ")
                )),
            }
        }
        if spec.request_timeout.is_zero() {
            problems.push("request_timeout must be more than zero".into());
        }
        if spec.base_url.is_some() {
            // Not an error: the sandbox calls no provider API, so there is nothing to point.
            tracing::debug!(connection = %spec.id, "The sandbox ignores base_url.");
        }

        if !problems.is_empty() {
            return Err(ConfigError {
                connection: spec.id.clone(),
                problems,
            });
        }
        Ok(SandboxConfig {
            connection_id: spec.id.clone(),
            signing_secret: SecretString::from(signing_secret),
            callback_delay: Duration::from_millis(callback_delay_ms),
            echo,
            echo_delay: Duration::from_millis(echo_delay_ms),
            request_timeout: spec.request_timeout,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use weft_provider::ProviderKind;

    fn spec() -> ConnectionSpec {
        ConnectionSpec::new("sandbox", ProviderKind::Sandbox)
    }

    fn ok(s: &ConnectionSpec) -> SandboxConfig {
        match SandboxConfig::from_spec(s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn empty_spec_takes_the_defaults() {
        let c = ok(&spec());
        assert_eq!(c.signing_secret.expose_secret(), DEFAULT_SIGNING_SECRET);
        assert_eq!(c.callback_delay, Duration::from_millis(20));
        assert!(!c.echo);
        assert_eq!(c.echo_delay, Duration::from_millis(200));
    }

    #[test]
    fn settings_are_read_from_json_or_strings() {
        let mut s = spec();
        s.credentials.insert("signing_secret", "s3cret-value");
        s.settings.insert("callback_delay_ms".into(), 0.into());
        s.settings.insert("echo".into(), "true".into());
        s.settings.insert("echo_delay_ms".into(), "5".into());
        let c = ok(&s);
        assert_eq!(c.signing_secret.expose_secret(), "s3cret-value");
        assert_eq!(c.callback_delay, Duration::ZERO);
        assert!(c.echo);
        assert_eq!(c.echo_delay, Duration::from_millis(5));
        assert!(
            !format!("{c:?}").contains("s3cret-value"),
            "Debug shows no secret"
        );
    }

    #[test]
    fn every_problem_is_listed() {
        let mut s = spec();
        s.credentials.insert("signing_secret", "  ");
        s.credentials.insert("api_key", "hunter2");
        s.settings.insert("callback_delay_ms".into(), (-1).into());
        s.settings.insert("echo_delay_ms".into(), 3_600_000.into());
        s.settings.insert("echo".into(), "yes".into());
        s.settings.insert("colour".into(), "red".into());
        let problems = match SandboxConfig::from_spec(&s) {
            Ok(_) => panic!("a broken spec was accepted"),
            Err(e) => e.problems,
        };
        for needle in [
            "signing_secret must not be empty",
            "credentials.api_key is not a sandbox credential",
            "settings.callback_delay_ms must be",
            "settings.echo_delay_ms must be",
            "settings.echo must be",
            "settings.colour is not a sandbox setting (known: callback_delay_ms, echo, echo_delay_ms)",
        ] {
            assert!(problems.iter().any(|p| p.contains(needle)), "missing {needle:?} in {problems:?}");
        }
        assert_eq!(problems.len(), 6, "{problems:?}");
        assert!(
            !problems.iter().any(|p| p.contains("hunter2")),
            "no secret value in problems"
        );
    }
}
