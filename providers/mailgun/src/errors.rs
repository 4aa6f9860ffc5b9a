//! Mailgun answers -> [`SendError`].
//!
//! Errors come as `{"message":"…"}` (401 may be a bare `Forbidden`), with no numeric code, so
//! the HTTP status is the provider code:
//! - 400 -> rejected (`invalid_address` when the message is about the `to` parameter),
//!   413 and other 4xx -> rejected;
//! - 401, 403 -> auth; 404 (unknown domain) -> config;
//! - 429 -> throttled (honouring `Retry-After` if sent); 5xx -> transient.

use http::{HeaderMap, StatusCode};
use weft_provider::{FailureReason, SendError};

/// The `message` of a Mailgun error body, else its text.
pub fn message(body: &[u8]) -> Option<String> {
    let from_json = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["message"].as_str().map(String::from));
    from_json
        .or_else(|| std::str::from_utf8(body).ok().map(String::from))
        .map(|s| s.trim().chars().take(200).collect::<String>())
        .filter(|s| !s.is_empty())
}

/// Classifies a non-2xx answer.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let msg = message(body);
    let detail = match &msg {
        Some(m) => format!("mailgun {}: {m}", status.as_u16()),
        None => format!("mailgun answered {status}"),
    };
    let err = match status.as_u16() {
        400 if msg.as_deref().is_some_and(is_recipient_problem) => {
            SendError::permanent(FailureReason::InvalidAddress, detail)
        }
        401 | 403 => SendError::auth(detail),
        404 => SendError::config(detail),
        429 => SendError::from_http(status, headers, detail),
        s if s >= 500 => SendError::from_http(status, headers, detail),
        408 => SendError::timeout(detail),
        _ => SendError::permanent(FailureReason::ProviderRejected, detail),
    };
    err.with_provider_code(status.as_u16().to_string())
}

/// "'to' parameter is not a valid address. please check documentation", "to parameter is missing"…
fn is_recipient_problem(m: &str) -> bool {
    let m = m.to_ascii_lowercase();
    (m.contains("'to'") || m.starts_with("to ")) && (m.contains("valid") || m.contains("address"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use std::time::Duration;

    /// (status, body, code, retryable, reason)
    type Row = (
        u16,
        &'static [u8],
        &'static str,
        bool,
        Option<FailureReason>,
    );

    #[test]
    fn statuses_classify() {
        let h = HeaderMap::new();
        let cases: [Row; 10] = [
            (400, br#"{"message":"'to' parameter is not a valid address. please check documentation"}"#, "rejected", false, Some(FailureReason::InvalidAddress)),
            (400, br#"{"message":"'from' parameter is missing"}"#, "rejected", false, Some(FailureReason::ProviderRejected)),
            (401, b"Forbidden", "auth", false, Some(FailureReason::ProviderAuth)),
            (403, br#"{"message":"Domain mg.x is not allowed to send: Free accounts are for test purposes only."}"#, "auth", false, None),
            (404, br#"{"message":"Domain not found: mg.x"}"#, "config", false, Some(FailureReason::ProviderAuth)),
            (413, b"", "rejected", false, Some(FailureReason::ProviderRejected)),
            (429, br#"{"message":"Too many requests"}"#, "throttled", true, None),
            (500, br#"{"message":"Internal Server Error"}"#, "transient", true, None),
            (502, b"<html>", "transient", true, None),
            (503, b"", "transient", true, None),
        ];
        for (status, body, code, retryable, reason) in cases {
            let e = classify(StatusCode::from_u16(status).unwrap_or_default(), &h, body);
            assert_eq!(e.code(), code, "{status}");
            assert_eq!(e.is_retryable(), retryable, "{status}");
            assert_eq!(e.provider_code(), Some(status.to_string().as_str()));
            if let Some(r) = reason {
                assert_eq!(e.reason(), r, "{status}");
            }
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let mut h = HeaderMap::new();
        h.insert("retry-after", HeaderValue::from_static("12"));
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(12)));
        assert_eq!(
            classify(StatusCode::BAD_REQUEST, &h, br#"{"message":"x"}"#).detail(),
            "mailgun 400: x"
        );
    }
}
