//! Graph API error codes → [`SendError`] (PROVIDERS.md §5).
//!
//! Meta's codes ride on varying HTTP statuses (a throughput limit is `130429` on a 400), so the
//! `error.code` of `{"error":{"message","type","code","error_data","error_subcode","fbtrace_id"}}`
//! decides; only an answer without a known code falls back to [`SendError::from_http`]. The code
//! is always attached with [`SendError::with_provider_code`].

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::time::Duration;
use weft_provider::{FailureReason, SendError};

/// How one Graph error code classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A rate limit: retry after a back-off.
    Throttled,
    /// A passing fault at Meta: retry.
    Transient,
    /// The access token is invalid or expired.
    Auth,
    /// The app or number lacks a capability or permission.
    Config,
    /// Refused for good.
    Permanent(FailureReason),
}

/// The code catalogue; `None` for codes left to the HTTP status.
pub fn class_of(code: i64) -> Option<Class> {
    use FailureReason::*;
    Some(match code {
        // Rate limits: app (4), WABA (80007), throughput (130429), spam (131048), pair
        // (131056: back off for this recipient), registration (133016).
        4 | 80007 | 130429 | 131048 | 131056 | 133016 => Class::Throttled,
        // API unknown (1) / service (2), generic user error (131000), media download (131053),
        // service unavailable (131016).
        1 | 2 | 131000 | 131016 | 131053 => Class::Transient,
        // AuthException (0), invalid or expired token (190).
        0 | 190 => Class::Auth,
        // Capability (3), permission (10, 200–299); account locked (131031), payment
        // (131042), number not registered (133010).
        3 | 10 | 200..=299 | 131031 | 131042 | 133010 => Class::Config,
        // Bad or missing parameter (100, 131008), parameter value (131009), unsupported type
        // (131051), recipient is the sender (131021), template problems (132xxx).
        100 | 131008 | 131009 | 131021 | 131051 | 132000..=132999 => {
            Class::Permanent(ProviderRejected)
        }
        // Outside the 24 h customer-service window: a template is needed.
        131047 => Class::Permanent(WindowClosed),
        // Blocked by Meta's policy enforcement.
        368 => Class::Permanent(ProviderRejected),
        // Not a WhatsApp user / cannot receive; recipient not in a test number's allowed list.
        131026 | 131030 => Class::Permanent(InvalidAddress),
        // The user stopped marketing messages from this business.
        131050 => Class::Permanent(OptedOut),
        _ => return None,
    })
}

/// The `error` object of a Graph error answer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GraphError {
    pub code: Option<i64>,
    pub subcode: Option<i64>,
    pub message: Option<String>,
    pub details: Option<String>,
}

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

/// Reads `{"error":{…}}`; anything else gives an empty [`GraphError`].
pub fn parse_error(body: &[u8]) -> GraphError {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    let e = &v["error"];
    GraphError {
        code: int(&e["code"]),
        subcode: int(&e["error_subcode"]),
        message: e["message"].as_str().map(String::from),
        details: e["error_data"]["details"].as_str().map(String::from),
    }
}

fn clip(s: &str) -> String {
    const MAX: usize = 200;
    if s.chars().count() > MAX {
        format!("{}…", s.chars().take(MAX).collect::<String>())
    } else {
        s.to_string()
    }
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// Classifies a non-2xx answer from the Graph API.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let e = parse_error(body);
    let mut detail = match (e.code, &e.message) {
        (Some(c), Some(m)) => format!("WhatsApp error {c}: {}", clip(m)),
        (Some(c), None) => format!("WhatsApp error {c} (HTTP {})", status.as_u16()),
        _ => format!("WhatsApp answered HTTP {}", status.as_u16()),
    };
    if let Some(d) = &e.details {
        detail.push_str(&format!(" ({})", clip(d)));
    }
    let err = match e.code.and_then(class_of) {
        Some(Class::Throttled) => SendError::throttled(retry_after(headers), detail),
        Some(Class::Transient) => {
            SendError::transient(detail).with_retry_after(retry_after(headers))
        }
        Some(Class::Auth) => SendError::auth(detail),
        Some(Class::Config) => SendError::config(detail),
        Some(Class::Permanent(reason)) => SendError::permanent(reason, detail),
        None => SendError::from_http(status, headers, detail),
    };
    match e.code {
        Some(code) => err.with_provider_code(code.to_string()),
        None => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(status: u16, code: i64) -> SendError {
        let body = format!(
            r#"{{"error":{{"message":"m","type":"OAuthException","code":{code},"fbtrace_id":"A"}}}}"#
        );
        classify(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn throttles_retry_whatever_the_http_status() {
        for code in [4, 80007, 130429, 131048, 131056, 133016] {
            for status in [400, 403, 429] {
                let e = graph(status, code);
                assert_eq!(
                    (e.code(), e.is_retryable()),
                    ("throttled", true),
                    "{code} on {status}"
                );
                assert_eq!(e.provider_code(), Some(code.to_string().as_str()));
            }
        }
    }

    #[test]
    fn transient_codes_retry() {
        for code in [131000, 131053, 1, 2, 131016] {
            let e = graph(500, code);
            assert_eq!((e.code(), e.is_retryable()), ("transient", true), "{code}");
        }
        // The code decides even on a 400.
        assert_eq!(graph(400, 131000).code(), "transient");
    }

    #[test]
    fn auth_and_config() {
        assert_eq!(graph(401, 190).code(), "auth");
        assert_eq!(graph(400, 0).code(), "auth");
        for code in [3, 10, 200, 250, 299, 131031, 133010] {
            assert_eq!(graph(403, code).code(), "config", "{code}");
        }
    }

    #[test]
    fn permanent_codes_carry_their_reason() {
        use FailureReason::*;
        for (code, reason) in [
            (100, ProviderRejected),
            (131008, ProviderRejected),
            (131009, ProviderRejected),
            (131051, ProviderRejected),
            (132001, ProviderRejected),
            (131047, WindowClosed),
            (368, ProviderRejected),
            (131026, InvalidAddress),
            (131050, OptedOut),
        ] {
            let e = graph(400, code);
            assert!(!e.is_retryable(), "{code}");
            assert_eq!((e.code(), e.reason()), ("rejected", reason), "{code}");
        }
    }

    #[test]
    fn unknown_or_missing_codes_fall_back_to_http() {
        assert_eq!(graph(503, 999_999).code(), "transient");
        assert_eq!(
            graph(400, 999_999).reason(),
            FailureReason::ProviderRejected
        );
        let e = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert_eq!((e.code(), e.provider_code()), ("transient", None));
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &HeaderMap::new(), b"");
        assert_eq!(e.code(), "throttled");
    }

    #[test]
    fn string_codes_and_details_are_read() {
        let e = parse_error(br#"{"error":{"code":"131047","error_subcode":2494010,"error_data":{"details":"window"}}}"#);
        assert_eq!(
            (e.code, e.subcode, e.details.as_deref()),
            (Some(131047), Some(2494010), Some("window"))
        );
    }
}
