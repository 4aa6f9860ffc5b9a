//! Twilio error codes → [`SendError`] (PROVIDERS.md §1 "Errors").
//!
//! The code in the error body decides, not the HTTP status: 20429 and 21611 retry, 20003 is
//! auth, the 21xxx address and content codes are permanent with their own reason. Codes we do
//! not know fall back to [`SendError::from_http`]. The Twilio code is always attached with
//! [`SendError::with_provider_code`].

use http::{HeaderMap, StatusCode};
use serde::Deserialize;
use std::time::Duration;
use weft_provider::{FailureReason, SendError};

/// Twilio's legacy error body: `{"code":21211,"message":"…","more_info":"…","status":400}`.
#[derive(Debug, Clone, Deserialize, Default)]
pub struct TwilioErrorBody {
    #[serde(default)]
    pub code: Option<i64>,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub more_info: Option<String>,
    #[serde(default)]
    pub status: Option<u16>,
}

/// How one synchronous error code classifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Throttled,
    Transient,
    Auth,
    Permanent(FailureReason),
}

/// The synchronous code catalogue; `None` for codes we leave to the HTTP status.
pub fn class_of(code: i64) -> Option<Class> {
    use FailureReason::*;
    Some(match code {
        // Too many concurrent requests: never processed, retry after a pause.
        20429 => Class::Throttled,
        // WhatsApp / channel rate limits.
        63017 | 63018 | 14107 => Class::Throttled,
        // The sender's queue is full: try later.
        21611 => Class::Transient,
        20003 => Class::Auth,
        // Resource (usually the account in the path) not found.
        20404 => Class::Permanent(ProviderRejected),
        // Invalid `To`, or `To` unreachable by this channel.
        21211 | 21612 | 21614 => Class::Permanent(InvalidAddress),
        // Calls: invalid / unreachable number.
        21217 | 21214 => Class::Permanent(InvalidAddress),
        // Recipient replied STOP.
        21610 => Class::Permanent(OptedOut),
        // Invalid `From`, region not enabled, body missing, `From` cannot send there,
        // unverified `To` on a trial account, body too long; calls: geo permission, blocked.
        21212 | 21408 | 21602 | 21606 | 21608 | 21617 | 21215 | 21216 => {
            Class::Permanent(ProviderRejected)
        }
        // WhatsApp free-form message outside the 24 h window.
        63016 => Class::Permanent(WindowClosed),
        _ => return None,
    })
}

/// Classifies a non-2xx answer from the Twilio REST API.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let parsed: TwilioErrorBody = serde_json::from_slice(body).unwrap_or_default();
    let detail = match (&parsed.code, &parsed.message) {
        (Some(c), Some(m)) => format!("Twilio error {c}: {m}"),
        (Some(c), None) => format!("Twilio error {c} (HTTP {})", status.as_u16()),
        _ => format!("Twilio answered HTTP {}", status.as_u16()),
    };
    let err = match parsed.code.and_then(class_of) {
        Some(Class::Throttled) => SendError::throttled(retry_after_header(headers), detail),
        Some(Class::Transient) => {
            SendError::transient(detail).with_retry_after(retry_after_header(headers))
        }
        Some(Class::Auth) => SendError::auth(detail),
        Some(Class::Permanent(reason)) => SendError::permanent(reason, detail),
        None => SendError::from_http(status, headers, detail),
    };
    match parsed.code {
        Some(code) => err.with_provider_code(code.to_string()),
        None => err,
    }
}

/// `Retry-After` as delta-seconds (the core crate parses it the same way inside `from_http`).
fn retry_after_header(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// A short description of an asynchronous `ErrorCode` from a status callback.
pub fn callback_error_detail(code: &str) -> Option<&'static str> {
    Some(match code {
        "30001" => "queue overflow",
        "30002" => "account suspended",
        "30003" => "unreachable destination handset",
        "30004" => "message blocked",
        "30005" => "unknown destination handset",
        "30006" => "landline or unreachable carrier",
        "30007" => "carrier filtered the message",
        "30008" => "unknown error",
        "30010" => "price exceeds MaxPrice",
        "30022" => "10DLC rate limit exceeded",
        "30032" => "toll-free number not verified",
        "63016" => "WhatsApp message outside the 24 h window; send a template",
        "63017" | "63018" | "14107" => "rate limit exceeded",
        "21610" => "recipient opted out (STOP)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn err(status: u16, code: Option<i64>, headers: &HeaderMap) -> SendError {
        let body = match code {
            Some(c) => format!(
                r#"{{"code":{c},"message":"m","more_info":"https://www.twilio.com/docs/errors/{c}","status":{status}}}"#
            ),
            None => String::new(),
        };
        classify(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            headers,
            body.as_bytes(),
        )
    }

    #[test]
    fn every_catalogued_code() {
        use FailureReason::*;
        let none = HeaderMap::new();
        // (HTTP status, code, retryable, SendError::code, reason for permanent ones)
        let table: &[(u16, i64, bool, &str, Option<FailureReason>)] = &[
            (429, 20429, true, "throttled", None),
            (400, 21611, true, "transient", None),
            (401, 20003, false, "auth", None),
            (403, 20003, false, "auth", None),
            (404, 20404, false, "rejected", Some(ProviderRejected)),
            (400, 21211, false, "rejected", Some(InvalidAddress)),
            (400, 21212, false, "rejected", Some(ProviderRejected)),
            (400, 21408, false, "rejected", Some(ProviderRejected)),
            (400, 21602, false, "rejected", Some(ProviderRejected)),
            (400, 21606, false, "rejected", Some(ProviderRejected)),
            (400, 21608, false, "rejected", Some(ProviderRejected)),
            (400, 21610, false, "rejected", Some(OptedOut)),
            (400, 21612, false, "rejected", Some(InvalidAddress)),
            (400, 21614, false, "rejected", Some(InvalidAddress)),
            (400, 21617, false, "rejected", Some(ProviderRejected)),
            (400, 21217, false, "rejected", Some(InvalidAddress)),
            (400, 21214, false, "rejected", Some(InvalidAddress)),
            (400, 21215, false, "rejected", Some(ProviderRejected)),
            (400, 21216, false, "rejected", Some(ProviderRejected)),
            (400, 63016, false, "rejected", Some(WindowClosed)),
            (500, 20500, true, "transient", None),
            (400, 99999, false, "rejected", Some(ProviderRejected)),
        ];
        for &(status, code, retryable, kind, reason) in table {
            let e = err(status, Some(code), &none);
            assert_eq!(e.is_retryable(), retryable, "{code}");
            assert_eq!(e.code(), kind, "{code}");
            assert_eq!(e.provider_code(), Some(code.to_string().as_str()), "{code}");
            if let Some(r) = reason {
                assert_eq!(e.reason(), r, "{code}");
            }
        }
    }

    #[test]
    fn throttle_honours_retry_after() {
        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let e = err(429, Some(20429), &h);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        // A bare 429 without a Twilio body still throttles.
        let e = err(429, None, &h);
        assert_eq!(e.code(), "throttled");
        assert_eq!(e.provider_code(), None);
    }

    #[test]
    fn bodies_that_are_not_twilio_json_fall_back_to_http() {
        let e = classify(
            StatusCode::BAD_GATEWAY,
            &HeaderMap::new(),
            b"<html>bad gateway</html>",
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), "transient");
        let e = classify(StatusCode::UNAUTHORIZED, &HeaderMap::new(), b"");
        assert_eq!(e.code(), "auth");
    }

    #[test]
    fn callback_codes_have_details() {
        for c in ["30001", "30003", "30007", "30008", "63016"] {
            assert!(callback_error_detail(c).is_some(), "{c}");
        }
        assert!(callback_error_detail("1").is_none());
    }
}
