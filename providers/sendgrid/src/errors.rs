//! SendGrid answers -> [`SendError`].
//!
//! Errors come as `{"errors":[{"message":"…","field":"personalizations.0.to","help":"…"}]}`
//! with no numeric code, so the HTTP status is the provider code:
//! - 400 -> rejected (`invalid_address` when the field is a recipient address), 406, 413 and
//!   any other 4xx -> rejected; 401, 403 -> auth (403 also covers "temporarily blocked").
//! - 429 -> throttled. SendGrid sends no `Retry-After`; the wait is `X-RateLimit-Reset`
//!   (epoch seconds) minus now, at least one second (a `Retry-After` is honoured if present).
//! - 5xx -> transient.

use http::{HeaderMap, StatusCode};
use std::time::Duration;
use weft_provider::{FailureReason, SendError};

/// The epoch-seconds reset header of SendGrid's rate limits.
pub const RATE_LIMIT_RESET: &str = "X-RateLimit-Reset";

/// The first error of a SendGrid error body: `(message, field)`.
pub fn first_error(body: &[u8]) -> (Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let first = &v["errors"][0];
    let text = |k: &str| {
        first[k]
            .as_str()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
    };
    (text("message"), text("field"))
}

fn clip(s: &str) -> String {
    s.chars().take(200).collect()
}

/// How long a 429 asks us to wait, from `X-RateLimit-Reset` relative to `now_unix`.
pub fn throttle_wait(headers: &HeaderMap, now_unix: i64) -> Option<Duration> {
    let reset = headers
        .get(RATE_LIMIT_RESET)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok());
    match reset {
        Some(reset) => Some(Duration::from_secs(
            reset.saturating_sub(now_unix).max(1) as u64
        )),
        None => SendError::from_http(StatusCode::TOO_MANY_REQUESTS, headers, "").retry_after(),
    }
}

/// Classifies a non-2xx answer.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8], now_unix: i64) -> SendError {
    let (message, field) = first_error(body);
    let detail = match (&message, &field) {
        (Some(m), Some(f)) => format!(
            "sendgrid {}: {} (field {})",
            status.as_u16(),
            clip(m),
            clip(f)
        ),
        (Some(m), None) => format!("sendgrid {}: {}", status.as_u16(), clip(m)),
        _ => format!("sendgrid answered {status}"),
    };
    let code = status.as_u16().to_string();
    let err = match status.as_u16() {
        429 => SendError::throttled(throttle_wait(headers, now_unix), detail),
        401 | 403 => SendError::auth(detail),
        400 if field.as_deref().is_some_and(is_recipient_field) => {
            SendError::permanent(FailureReason::InvalidAddress, detail)
        }
        s if s >= 500 => SendError::from_http(status, headers, detail),
        408 => SendError::timeout(detail),
        _ => SendError::permanent(FailureReason::ProviderRejected, detail),
    };
    err.with_provider_code(code)
}

/// `personalizations.0.to`, `personalizations.0.to.0.email`, …
fn is_recipient_field(field: &str) -> bool {
    field.starts_with("personalizations")
        && field.split('.').any(|p| matches!(p, "to" | "cc" | "bcc"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn body(message: &str, field: Option<&str>) -> Vec<u8> {
        serde_json::json!({"errors": [{"message": message, "field": field, "help": null}]})
            .to_string()
            .into_bytes()
    }

    /// (status, error field, code, retryable, reason)
    type Row = (
        u16,
        Option<&'static str>,
        &'static str,
        bool,
        Option<FailureReason>,
    );

    #[test]
    fn statuses_classify() {
        let h = HeaderMap::new();
        let cases: [Row; 9] = [
            (
                400,
                Some("personalizations.0.to.0.email"),
                "rejected",
                false,
                Some(FailureReason::InvalidAddress),
            ),
            (
                400,
                Some("from.email"),
                "rejected",
                false,
                Some(FailureReason::ProviderRejected),
            ),
            (401, None, "auth", false, Some(FailureReason::ProviderAuth)),
            (403, None, "auth", false, Some(FailureReason::ProviderAuth)),
            (
                406,
                None,
                "rejected",
                false,
                Some(FailureReason::ProviderRejected),
            ),
            (
                413,
                None,
                "rejected",
                false,
                Some(FailureReason::ProviderRejected),
            ),
            (500, None, "transient", true, None),
            (503, None, "transient", true, None),
            (429, None, "throttled", true, None),
        ];
        for (status, field, code, retryable, reason) in cases {
            let e = classify(
                StatusCode::from_u16(status).unwrap_or_default(),
                &h,
                &body("boom", field),
                0,
            );
            assert_eq!(e.code(), code, "{status}");
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.provider_code(), Some(status.to_string().as_str()));
            if let Some(r) = reason {
                assert_eq!(e.reason(), r, "{status}");
            }
        }
    }

    #[test]
    fn throttle_waits_for_the_reset() {
        let mut h = HeaderMap::new();
        h.insert(RATE_LIMIT_RESET, HeaderValue::from_static("1767225630"));
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &h, b"", 1_767_225_600);
        assert_eq!(e.retry_after(), Some(Duration::from_secs(30)));
        // A reset already past still waits a second.
        assert_eq!(
            throttle_wait(&h, 1_767_225_700),
            Some(Duration::from_secs(1))
        );
        assert_eq!(throttle_wait(&HeaderMap::new(), 0), None);
    }

    #[test]
    fn detail_names_message_and_field() {
        let e = classify(
            StatusCode::BAD_REQUEST,
            &HeaderMap::new(),
            &body("Invalid type", Some("content")),
            0,
        );
        assert_eq!(e.detail(), "sendgrid 400: Invalid type (field content)");
        let e = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>", 0);
        assert_eq!(e.detail(), "sendgrid answered 502 Bad Gateway");
    }
}
