//! Errors adapters return. Adapters classify; the gateway's dispatcher decides what to do.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Why a message did not go out, as the API reports it in `error.reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// The recipient opted out (STOP, blocked bot, provider opt-out error).
    OptedOut,
    /// No connection serves this channel and destination.
    NoRoute,
    /// The address is malformed, unknown or unreachable by this channel.
    InvalidAddress,
    /// The provider refused the message at submit.
    ProviderRejected,
    /// A free-form chat message outside the customer-service window.
    WindowClosed,
    /// The provider account's credentials or setup are wrong.
    ProviderAuth,
    /// Every retry failed.
    RetriesExhausted,
    /// Validity ran out before delivery.
    Expired,
    /// The provider accepted it and then failed it.
    ProviderFailed,
    /// Could not be delivered (bounce, unreachable handset).
    Undeliverable,
}

impl FailureReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::OptedOut => "opted_out",
            FailureReason::NoRoute => "no_route",
            FailureReason::InvalidAddress => "invalid_address",
            FailureReason::ProviderRejected => "provider_rejected",
            FailureReason::WindowClosed => "window_closed",
            FailureReason::ProviderAuth => "provider_auth",
            FailureReason::RetriesExhausted => "retries_exhausted",
            FailureReason::Expired => "expired",
            FailureReason::ProviderFailed => "provider_failed",
            FailureReason::Undeliverable => "undeliverable",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transient,
    Throttled,
    Timeout,
    Permanent(FailureReason),
    Auth,
    Config,
}

/// A failed send: retryable (transient, throttled, timeout) or permanent (rejected, auth,
/// config). Ask it questions; its kind is private so callers cannot depend on internals.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    kind: Kind,
    retry_after: Option<Duration>,
    provider_code: Option<String>,
    detail: String,
}

impl SendError {
    fn new(kind: Kind, detail: impl Into<String>) -> Self {
        SendError {
            kind,
            retry_after: None,
            provider_code: None,
            detail: detail.into(),
        }
    }

    /// A passing fault (5xx, connection refused, provider internal error): retry with back-off.
    pub fn transient(detail: impl Into<String>) -> Self {
        Self::new(Kind::Transient, detail)
    }

    /// The provider asked us to slow down, optionally saying for how long.
    pub fn throttled(retry_after: Option<Duration>, detail: impl Into<String>) -> Self {
        SendError {
            retry_after,
            ..Self::new(Kind::Throttled, detail)
        }
    }

    /// No answer in time. The provider may or may not have the message.
    pub fn timeout(detail: impl Into<String>) -> Self {
        Self::new(Kind::Timeout, detail)
    }

    /// Refused for good; the reason is reported to the API client.
    pub fn permanent(reason: FailureReason, detail: impl Into<String>) -> Self {
        Self::new(Kind::Permanent(reason), detail)
    }

    /// Credentials were refused.
    pub fn auth(detail: impl Into<String>) -> Self {
        Self::new(Kind::Auth, detail)
    }

    /// The account or connection is set up wrong (capability, unknown domain).
    pub fn config(detail: impl Into<String>) -> Self {
        Self::new(Kind::Config, detail)
    }

    /// Attaches the provider's own error code (for the API and logs, never a metric label).
    pub fn with_provider_code(mut self, code: impl Into<String>) -> Self {
        self.provider_code = Some(code.into());
        self
    }

    pub fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        self.retry_after = after;
        self
    }

    /// The default classification of an HTTP answer by status alone: 408, 425, 429 and 5xx
    /// retry (429 honouring `Retry-After`), 401/403 are auth, any other 4xx is rejected.
    /// Adapters whose provider has its own codes classify those first.
    pub fn from_http(
        status: http::StatusCode,
        headers: &http::HeaderMap,
        detail: impl Into<String>,
    ) -> Self {
        let detail = detail.into();
        match status.as_u16() {
            429 => Self::throttled(retry_after_header(headers), detail),
            408 | 425 => Self::timeout(detail),
            401 | 403 => Self::auth(detail),
            s if s >= 500 => Self::transient(detail).with_retry_after(retry_after_header(headers)),
            _ => Self::permanent(FailureReason::ProviderRejected, detail),
        }
    }

    /// Classifies a transport error from reqwest: a timeout is [`SendError::timeout`], a failure
    /// to connect is transient (the provider cannot have the message), anything else transient.
    pub fn from_reqwest(err: &reqwest::Error) -> Self {
        if err.is_timeout() {
            Self::timeout(format!("provider did not answer in time: {err}"))
        } else if err.is_connect() {
            Self::transient(format!("could not connect to provider: {err}"))
        } else {
            Self::transient(format!("provider request failed: {err}"))
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, Kind::Transient | Kind::Throttled | Kind::Timeout)
    }

    /// True when the provider may have the message although we got no answer: the dispatcher
    /// must not blindly resend on another connection.
    pub fn is_ambiguous(&self) -> bool {
        matches!(self.kind, Kind::Timeout)
    }

    pub fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// A stable, bounded code fit for a metric label.
    pub fn code(&self) -> &'static str {
        match self.kind {
            Kind::Transient => "transient",
            Kind::Throttled => "throttled",
            Kind::Timeout => "timeout",
            Kind::Permanent(_) => "rejected",
            Kind::Auth => "auth",
            Kind::Config => "config",
        }
    }

    /// Why the message ends, for a permanent error.
    pub fn reason(&self) -> FailureReason {
        match self.kind {
            Kind::Permanent(r) => r,
            Kind::Auth | Kind::Config => FailureReason::ProviderAuth,
            _ => FailureReason::RetriesExhausted,
        }
    }

    /// The provider's raw error code (for the API and logs only).
    pub fn provider_code(&self) -> Option<&str> {
        self.provider_code.as_deref()
    }

    pub fn detail(&self) -> &str {
        &self.detail
    }
}

/// Parses `Retry-After` as delta-seconds (HTTP dates are rare from APIs and ignored).
pub fn retry_after_header(headers: &http::HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A webhook whose signature is missing or wrong. Nothing of it may be stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("signature header {0} is missing")]
    Missing(&'static str),
    #[error("signature does not match")]
    Mismatch,
    #[error("signature timestamp is outside the allowed window")]
    Stale,
    #[error("signature is malformed: {0}")]
    Malformed(String),
    #[error("this connection has no webhook secret configured")]
    NotConfigured,
}

/// Why a webhook was not turned into events: its signature (answer 403) or its body (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error(transparent)]
    Parse(#[from] ParseError),
}

/// A verified webhook whose body we cannot read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot parse {what}: {detail}")]
pub struct ParseError {
    pub what: &'static str,
    pub detail: String,
}

impl ParseError {
    pub fn new(what: &'static str, detail: impl std::fmt::Display) -> Self {
        ParseError {
            what,
            detail: detail.to_string(),
        }
    }
}

/// A connection's configuration is unusable; every problem is listed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("connection {connection}: {}", problems.join("; "))]
pub struct ConfigError {
    pub connection: String,
    pub problems: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    #[test]
    fn http_statuses_classify() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
        let e = SendError::from_http(StatusCode::TOO_MANY_REQUESTS, &h, "slow down");
        assert!(e.is_retryable());
        assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
        assert_eq!(e.code(), "throttled");
        assert!(
            SendError::from_http(StatusCode::SERVICE_UNAVAILABLE, &HeaderMap::new(), "x")
                .is_retryable()
        );
        let e = SendError::from_http(StatusCode::BAD_REQUEST, &HeaderMap::new(), "x");
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), FailureReason::ProviderRejected);
        assert_eq!(
            SendError::from_http(StatusCode::UNAUTHORIZED, &HeaderMap::new(), "x").code(),
            "auth"
        );
    }
}
