//! Vonage refusals → [`SendError`] (retryable or permanent), by Vonage's own codes.
//!
//! SMS API (PROVIDERS.md §2.1): the answer is HTTP 200 even for errors; each part carries a
//! `status`. `0` is accepted. Retryable: `1` throttled ("Throughput Rate Exceeded - please wait
//! \[ N \] and retry", N in milliseconds — accounts held to 1 SMS/s see waits like `[ 978 ]` —
//! reported as `retry_after`), `5` internal error, `10` too many binds. Credentials: `4` bad credentials and `14` invalid signature are `auth`;
//! `11` HTTP not enabled and `32` signature and secret both sent are `config`. Everything else
//! is rejected for good: `6` invalid prefix and `33` de-activated number are invalid addresses,
//! `7` number barred is an opt-out (the destination is on the barred list, e.g. after STOP),
//! `8` account barred and `9` quota/credit are account problems (reason `provider_auth`), and
//! `2`, `3`, `12`, `15`, `22`, `23`, `29` and unknown codes are `provider_rejected`.
//!
//! Messages API (§2.2): problem+json. 401/403 auth, 402 (balance) config, 422 and other 4xx
//! rejected, 429 throttled with `Retry-After`, 5xx transient. The provider code is the
//! problem `title` when it is a number (Vonage's numeric code), else the `type` URL's fragment
//! or last path segment, else the HTTP status.

use std::time::Duration;
use weft_provider::{FailureReason, SendError};

/// Classifies one non-zero SMS API part `status`.
pub fn sms_status(code: &str, error_text: Option<&str>) -> SendError {
    let code = code.trim();
    let text = error_text.unwrap_or("").trim();
    let detail = if text.is_empty() {
        format!("Vonage SMS API status {code}")
    } else {
        format!("Vonage SMS API status {code}: {text}")
    };
    let err = match code {
        "1" => SendError::throttled(throttle_hint(text), detail),
        "5" | "10" => SendError::transient(detail),
        "4" | "14" => SendError::auth(detail),
        "11" | "32" => SendError::config(detail),
        "6" | "33" => SendError::permanent(FailureReason::InvalidAddress, detail),
        "7" => SendError::permanent(FailureReason::OptedOut, detail),
        "8" | "9" => SendError::permanent(FailureReason::ProviderAuth, detail),
        _ => SendError::permanent(FailureReason::ProviderRejected, detail),
    };
    err.with_provider_code(code)
}

/// Reads the wait out of "Throughput Rate Exceeded - please wait \[ N \] and retry" (N in ms).
pub fn throttle_hint(text: &str) -> Option<Duration> {
    let start = text.find('[')?;
    let end = start + text[start..].find(']')?;
    let ms: u64 = text[start + 1..end].trim().parse().ok()?;
    Some(Duration::from_millis(ms))
}

/// Classifies a non-2xx SMS API answer (rare: the API answers 200 to almost everything).
pub fn sms_http(status: http::StatusCode, headers: &http::HeaderMap, body: &[u8]) -> SendError {
    let snippet: String = String::from_utf8_lossy(body).chars().take(200).collect();
    SendError::from_http(
        status,
        headers,
        format!(
            "Vonage SMS API answered HTTP {}: {snippet}",
            status.as_u16()
        ),
    )
    .with_provider_code(status.as_u16().to_string())
}

/// The `type`/`title`/`detail` of a problem+json body, if it is one.
fn problem(body: &[u8]) -> (Option<String>, Option<String>, Option<String>) {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let s = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (s("type"), s("title"), s("detail"))
}

/// The code a problem carries: a numeric `title`, else the `type` URL's fragment or last path
/// segment.
fn problem_code(ty: Option<&str>, title: Option<&str>) -> Option<String> {
    if let Some(t) = title.filter(|t| !t.is_empty() && t.chars().all(|c| c.is_ascii_digit())) {
        return Some(t.to_string());
    }
    let ty = ty?.trim();
    let tail = match ty.rsplit_once('#') {
        Some((_, frag)) => frag,
        None => ty.trim_end_matches('/').rsplit('/').next().unwrap_or(""),
    };
    (!tail.is_empty()).then(|| tail.to_string())
}

/// Classifies a non-2xx Messages API answer.
pub fn messages_http(
    status: http::StatusCode,
    headers: &http::HeaderMap,
    body: &[u8],
) -> SendError {
    let (ty, title, detail) = problem(body);
    let code = problem_code(ty.as_deref(), title.as_deref())
        .unwrap_or_else(|| status.as_u16().to_string());
    let words = [title.as_deref(), detail.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(": ");
    let text = format!(
        "Vonage Messages API answered HTTP {}{}{words}",
        status.as_u16(),
        if words.is_empty() { "" } else { ": " }
    );
    let err = match status.as_u16() {
        402 => SendError::config(text),
        422 => SendError::permanent(FailureReason::ProviderRejected, text),
        _ => SendError::from_http(status, headers, text),
    };
    err.with_provider_code(code)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{HeaderMap, HeaderValue, StatusCode};

    #[test]
    fn sms_codes_classify() {
        // (code, retryable, SendError::code, reason for permanent ones)
        let table: [(&str, bool, &str, Option<FailureReason>); 21] = [
            ("1", true, "throttled", None),
            ("5", true, "transient", None),
            ("10", true, "transient", None),
            ("4", false, "auth", None),
            ("14", false, "auth", None),
            ("11", false, "config", None),
            ("32", false, "config", None),
            (
                "2",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (
                "3",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            ("6", false, "rejected", Some(FailureReason::InvalidAddress)),
            ("7", false, "rejected", Some(FailureReason::OptedOut)),
            ("8", false, "rejected", Some(FailureReason::ProviderAuth)),
            ("9", false, "rejected", Some(FailureReason::ProviderAuth)),
            (
                "12",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (
                "15",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (
                "22",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (
                "23",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (
                "29",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            ("33", false, "rejected", Some(FailureReason::InvalidAddress)),
            (
                "99",
                false,
                "rejected",
                Some(FailureReason::ProviderRejected),
            ),
            (" 7 ", false, "rejected", Some(FailureReason::OptedOut)),
        ];
        for (code, retryable, label, reason) in table {
            let e = sms_status(code, Some("text"));
            assert_eq!(e.is_retryable(), retryable, "{code}");
            assert_eq!(e.code(), label, "{code}");
            assert_eq!(e.provider_code(), Some(code.trim()), "{code}");
            if let Some(r) = reason {
                assert_eq!(e.reason(), r, "{code}");
            }
        }
    }

    #[test]
    fn throttle_hints() {
        let hint = throttle_hint;
        assert_eq!(
            hint("Throughput Rate Exceeded - please wait [ 978 ] and retry"),
            Some(Duration::from_millis(978))
        );
        assert_eq!(
            hint("please wait [1000] and retry"),
            Some(Duration::from_secs(1))
        );
        assert_eq!(hint("Throughput Rate Exceeded"), None);
        assert_eq!(hint("wait [ soon ]"), None);
        let e = sms_status(
            "1",
            Some("Throughput Rate Exceeded - please wait [ 2000 ] and retry"),
        );
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn messages_problems_classify() {
        let body = br#"{"type":"https://developer.nexmo.com/api-errors/messages-olympus#1150","title":"Invalid params","detail":"The value of one or more parameters is invalid."}"#;
        let e = messages_http(StatusCode::UNPROCESSABLE_ENTITY, &HeaderMap::new(), body);
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), FailureReason::ProviderRejected);
        assert_eq!(e.provider_code(), Some("1150"));

        let e = messages_http(
            StatusCode::PAYMENT_REQUIRED,
            &HeaderMap::new(),
            br#"{"title":"1170"}"#,
        );
        assert_eq!(e.code(), "config");
        assert_eq!(e.provider_code(), Some("1170"));

        let e = messages_http(StatusCode::UNAUTHORIZED, &HeaderMap::new(), br#"{"type":"https://developer.vonage.com/api-errors#unauthorized","title":"Unauthorized"}"#);
        assert_eq!(e.code(), "auth");
        assert_eq!(e.provider_code(), Some("unauthorized"));

        let mut h = HeaderMap::new();
        h.insert(http::header::RETRY_AFTER, HeaderValue::from_static("3"));
        let e = messages_http(StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!(e.code(), "throttled");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(3)));
        assert_eq!(e.provider_code(), Some("429"));

        assert_eq!(
            messages_http(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>").code(),
            "transient"
        );
    }
}
