//! Bot API errors → [`SendError`] (PROVIDERS.md §6).
//!
//! The envelope `{"ok":false,"error_code":N,"description":"…","parameters":{"retry_after":N,
//! "migrate_to_chat_id":M}}` carries the HTTP status as `error_code`; the description refines
//! it. 429 throttles for `retry_after` seconds; 400 is rejected (`chat not found` → invalid
//! address; a group upgraded to a supergroup too, since the old id no longer works); 401 and
//! 404 (a wrong token) are auth; 409 is config; 403 `blocked` / `deactivated` / `kicked` means
//! the user is gone: opted out; 5xx retries. `error_code` is the provider code. No
//! description ever holds the bot token, and callers redact it anyway.

use http::{HeaderMap, StatusCode};
use serde_json::Value;
use std::time::Duration;
use weft_provider::{FailureReason, SendError};

/// The `ok:false` envelope.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BotApiError {
    pub error_code: Option<u16>,
    pub description: Option<String>,
    pub retry_after: Option<u64>,
    pub migrate_to_chat_id: Option<i64>,
}

/// Reads the envelope; anything else gives an empty [`BotApiError`].
pub fn parse_error(body: &[u8]) -> BotApiError {
    let v: Value = serde_json::from_slice(body).unwrap_or_default();
    BotApiError {
        error_code: v["error_code"].as_u64().and_then(|c| u16::try_from(c).ok()),
        description: v["description"].as_str().map(String::from),
        retry_after: v["parameters"]["retry_after"].as_u64(),
        migrate_to_chat_id: v["parameters"]["migrate_to_chat_id"].as_i64(),
    }
}

fn header_retry_after(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(http::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Why a 400 is refused, from its description.
fn bad_request_reason(desc: &str, migrated: bool) -> FailureReason {
    let d = desc.to_ascii_lowercase();
    let address = [
        "chat not found",
        "user not found",
        "peer_id_invalid",
        "chat_id is empty",
        "wrong chat id",
    ];
    if migrated || address.iter().any(|a| d.contains(a)) {
        FailureReason::InvalidAddress
    } else {
        FailureReason::ProviderRejected
    }
}

/// Why a 403 is refused: the user blocked the bot, deleted the account, or removed the bot.
fn forbidden_reason(desc: &str) -> FailureReason {
    let d = desc.to_ascii_lowercase();
    if ["blocked", "deactivated", "kicked"]
        .iter()
        .any(|w| d.contains(w))
    {
        FailureReason::OptedOut
    } else {
        FailureReason::ProviderRejected
    }
}

/// Classifies a non-2xx (or `ok:false`) answer from the Bot API.
pub fn classify(status: StatusCode, headers: &HeaderMap, body: &[u8]) -> SendError {
    let e = parse_error(body);
    let code = e.error_code.unwrap_or(status.as_u16());
    let desc = e.description.clone().unwrap_or_default();
    let mut detail = if desc.is_empty() {
        format!("Telegram answered HTTP {}", status.as_u16())
    } else {
        format!(
            "Telegram error {code}: {}",
            desc.chars().take(200).collect::<String>()
        )
    };
    if let Some(m) = e.migrate_to_chat_id {
        detail.push_str(&format!(" (the group is now the supergroup {m})"));
    }
    let retry_after = e
        .retry_after
        .or_else(|| header_retry_after(headers))
        .map(Duration::from_secs);
    let err = match code {
        429 => SendError::throttled(retry_after, detail),
        400 => SendError::permanent(
            bad_request_reason(&desc, e.migrate_to_chat_id.is_some()),
            detail,
        ),
        401 | 404 => SendError::auth(detail),
        403 => SendError::permanent(forbidden_reason(&desc), detail),
        409 => SendError::config(detail),
        c if c >= 500 => SendError::transient(detail).with_retry_after(retry_after),
        c => match StatusCode::from_u16(c) {
            Ok(s) => SendError::from_http(s, headers, detail),
            Err(_) => SendError::from_http(status, headers, detail),
        },
    };
    err.with_provider_code(code.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tg(status: u16, desc: &str, params: &str) -> SendError {
        let body =
            format!(r#"{{"ok":false,"error_code":{status},"description":"{desc}"{params}}}"#);
        classify(
            StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            &HeaderMap::new(),
            body.as_bytes(),
        )
    }

    #[test]
    fn throttle_reads_retry_after() {
        let e = tg(
            429,
            "Too Many Requests: retry after 17",
            r#","parameters":{"retry_after":17}"#,
        );
        assert_eq!(
            (e.code(), e.retry_after(), e.provider_code()),
            ("throttled", Some(Duration::from_secs(17)), Some("429"))
        );
        let mut h = HeaderMap::new();
        h.insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("4"),
        );
        let e = classify(StatusCode::TOO_MANY_REQUESTS, &h, b"");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(4)));
    }

    #[test]
    fn bad_requests() {
        use FailureReason::*;
        for (desc, reason) in [
            ("Bad Request: chat not found", InvalidAddress),
            ("Bad Request: PEER_ID_INVALID", InvalidAddress),
            ("Bad Request: message text is empty", ProviderRejected),
            ("Bad Request: message is too long", ProviderRejected),
            ("Bad Request: can't parse entities", ProviderRejected),
        ] {
            let e = tg(400, desc, "");
            assert_eq!(
                (e.code(), e.reason(), e.is_retryable()),
                ("rejected", reason, false),
                "{desc}"
            );
        }
        let e = tg(
            400,
            "Bad Request: group chat was upgraded to a supergroup chat",
            r#","parameters":{"migrate_to_chat_id":-1001}"#,
        );
        assert_eq!(e.reason(), InvalidAddress);
        assert!(e.detail().contains("-1001"));
    }

    #[test]
    fn forbidden_is_opt_out_when_the_user_is_gone() {
        use FailureReason::*;
        for (desc, reason) in [
            ("Forbidden: bot was blocked by the user", OptedOut),
            ("Forbidden: user is deactivated", OptedOut),
            ("Forbidden: bot was kicked from the group chat", OptedOut),
            (
                "Forbidden: bot can't initiate conversation with a user",
                ProviderRejected,
            ),
        ] {
            assert_eq!(tg(403, desc, "").reason(), reason, "{desc}");
        }
    }

    #[test]
    fn auth_config_and_server_errors() {
        assert_eq!(tg(401, "Unauthorized", "").code(), "auth");
        assert_eq!(tg(404, "Not Found", "").code(), "auth");
        assert_eq!(
            tg(409, "Conflict: terminated by other getUpdates request", "").code(),
            "config"
        );
        for s in [500, 502, 503] {
            let e = tg(s, "Internal Server Error", "");
            assert_eq!((e.code(), e.is_retryable()), ("transient", true));
        }
        let e = classify(StatusCode::BAD_GATEWAY, &HeaderMap::new(), b"<html>");
        assert_eq!((e.code(), e.provider_code()), ("transient", Some("502")));
    }
}
