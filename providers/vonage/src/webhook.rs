//! Vonage webhooks → normalized events.
//!
//! Kinds (`/webhooks/vonage/{connection}/{kind}`):
//! - `status`: SMS API delivery receipts (GET query, POST form or POST JSON — all accepted),
//!   one per part, and Messages API status JSON (recognized by `message_uuid`).
//! - `inbound`: SMS API inbound messages (same three shapes) and Messages API inbound JSON.
//!
//! SMS parts of a long inbound text (`concat=true`, `concat-ref`, `concat-total`,
//! `concat-part`) are emitted one message per part, each with its own `messageId` as the dedupe
//! key and the part's text as the body: reassembly needs state the adapter does not keep.

use crate::request::json_str;
use crate::status_map;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};
use weft_provider::{
    Channel, Correlation, InboundEvent, InboundMessage, Media, ParseError, StatusEvent,
    WebhookRequest,
};

/// The body as a JSON object, if it is one.
pub fn json_body(req: &WebhookRequest) -> Option<serde_json::Map<String, serde_json::Value>> {
    let trimmed = req
        .body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .map(|i| &req.body[i..])?;
    if trimmed.first() != Some(&b'{') {
        return None;
    }
    match serde_json::from_slice::<serde_json::Value>(&req.body) {
        Ok(serde_json::Value::Object(m)) => Some(m),
        _ => None,
    }
}

/// The parameters of an SMS API webhook, as signed: the JSON object (values as strings), else
/// the form body, else — for a GET or an empty body — the URL's query.
pub fn sms_params(req: &WebhookRequest) -> Vec<(String, String)> {
    if let Some(obj) = json_body(req) {
        return obj
            .iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::Null => None,
                serde_json::Value::Object(_) | serde_json::Value::Array(_) => {
                    Some((k.clone(), v.to_string()))
                }
                other => json_str(Some(other)).map(|s| (k.clone(), s)),
            })
            .collect();
    }
    if req.body.iter().any(|b| !b.is_ascii_whitespace()) {
        req.form_pairs()
    } else {
        req.query_pairs()
    }
}

/// True when the body is a Messages API webhook (JSON with a `message_uuid`).
pub fn is_messages_api(req: &WebhookRequest) -> bool {
    json_body(req).is_some_and(|o| o.contains_key("message_uuid"))
}

/// Parses a verified webhook.
pub fn parse(req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
    let messages = json_body(req).filter(|o| o.contains_key("message_uuid"));
    match (req.kind.as_str(), messages) {
        ("status", Some(obj)) => messages_status(&obj).map(|e| vec![e]),
        ("status", None) => sms_dlr(&sms_params(req)).map(|e| vec![e]),
        ("inbound", Some(obj)) => messages_inbound(&obj),
        ("inbound", None) => sms_inbound(&sms_params(req)).map(|e| vec![e]),
        (other, _) => Err(ParseError::new(
            "Vonage webhook",
            format!("unknown kind {other:?}"),
        )),
    }
}

fn param<'a>(params: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names
        .iter()
        .find_map(|n| params.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str()))
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

/// `447700900001` → `tel:+447700900001`; anything that is not a number stays as it is.
pub fn tel(addr: &str) -> String {
    let digits = addr.trim().trim_start_matches('+');
    if !digits.is_empty() && digits.chars().all(|c| c.is_ascii_digit()) {
        format!("tel:+{digits}")
    } else {
        addr.trim().to_string()
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) → Unix ms.
fn vonage_timestamp_ms(s: &str) -> Option<i64> {
    let dt = PrimitiveDateTime::parse(
        s.trim(),
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
    .ok()?;
    Some((dt.assume_utc().unix_timestamp_nanos() / 1_000_000) as i64)
}

/// `scts` `YYMMDDHHMM` (UTC) → Unix ms.
fn scts_ms(s: &str) -> Option<i64> {
    let s = s.trim();
    if s.len() != 10 || !s.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    vonage_timestamp_ms(&format!(
        "20{}-{}-{} {}:{}:00",
        &s[0..2],
        &s[2..4],
        &s[4..6],
        &s[6..8],
        &s[8..10]
    ))
}

/// ISO 8601 / RFC 3339 → Unix ms.
fn iso_ms(s: &str) -> Option<i64> {
    let dt = OffsetDateTime::parse(s.trim(), &Rfc3339).ok()?;
    Some((dt.unix_timestamp_nanos() / 1_000_000) as i64)
}

/// One SMS API delivery receipt (one part).
pub fn sms_dlr(params: &[(String, String)]) -> Result<InboundEvent, ParseError> {
    let id = param(params, &["messageId", "message-id"])
        .ok_or_else(|| ParseError::new("Vonage delivery receipt", "no messageId"))?;
    let raw_status = param(params, &["status"])
        .ok_or_else(|| ParseError::new("Vonage delivery receipt", "no status"))?;
    let err_code = param(params, &["err-code"]).unwrap_or("0");
    let error_code = (err_code != "0").then(|| err_code.to_string());
    Ok(InboundEvent::Status(StatusEvent {
        provider_message_id: id.to_string(),
        correlation: Correlation {
            message_id: param(params, &["client-ref"]).map(str::to_string),
            attempt_id: None,
        },
        status: status_map::sms_dlr_status(raw_status),
        raw_status: raw_status.to_string(),
        error_detail: error_code
            .as_deref()
            .and_then(status_map::dlr_error_text)
            .map(str::to_string),
        error_code,
        occurred_at_ms: param(params, &["message-timestamp"])
            .and_then(vonage_timestamp_ms)
            .or_else(|| param(params, &["scts"]).and_then(scts_ms)),
        dedupe_key: format!("{id}:{raw_status}:{err_code}"),
        opted_out: false,
    }))
}

/// One SMS API inbound message (or one part of a long one).
pub fn sms_inbound(params: &[(String, String)]) -> Result<InboundEvent, ParseError> {
    let id = param(params, &["messageId", "message-id"])
        .ok_or_else(|| ParseError::new("Vonage inbound SMS", "no messageId"))?;
    let from = param(params, &["msisdn"])
        .ok_or_else(|| ParseError::new("Vonage inbound SMS", "no msisdn"))?;
    let to =
        param(params, &["to"]).ok_or_else(|| ParseError::new("Vonage inbound SMS", "no to"))?;
    let binary = param(params, &["type"]) == Some("binary");
    let body = if binary {
        None
    } else {
        // The text keeps its own spaces; only a missing one is None.
        params
            .iter()
            .find(|(k, _)| k == "text")
            .map(|(_, v)| v.clone())
    };
    Ok(InboundEvent::Message(InboundMessage {
        provider_message_id: id.to_string(),
        channel: Channel::Sms,
        from: tel(from),
        to: tel(to),
        body,
        subject: None,
        email: None,
        reply_to_provider_id: None,
        forwarded: false,
        profile_name: None,
        media: Vec::new(),
        received_at_ms: param(params, &["message-timestamp"]).and_then(vonage_timestamp_ms),
        dedupe_key: id.to_string(),
    }))
}

fn obj_str(obj: &serde_json::Map<String, serde_json::Value>, path: &[&str]) -> Option<String> {
    let (last, head) = path.split_last()?;
    let mut cur = obj;
    for p in head {
        cur = cur.get(*p)?.as_object()?;
    }
    json_str(cur.get(*last))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

/// A Messages API status webhook.
pub fn messages_status(
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<InboundEvent, ParseError> {
    let uuid = obj_str(obj, &["message_uuid"])
        .ok_or_else(|| ParseError::new("Vonage message status", "no message_uuid"))?;
    let raw_status = obj_str(obj, &["status"])
        .ok_or_else(|| ParseError::new("Vonage message status", "no status"))?;
    let error_code = obj_str(obj, &["error", "title"])
        .filter(|t| t.chars().all(|c| c.is_ascii_digit()))
        .or_else(|| {
            obj_str(obj, &["error", "type"])
                .and_then(|t| t.rsplit(['#', '/']).next().map(str::to_string))
        })
        .filter(|s| !s.is_empty());
    let error_detail =
        obj_str(obj, &["error", "detail"]).or_else(|| obj_str(obj, &["error", "title"]));
    Ok(InboundEvent::Status(StatusEvent {
        provider_message_id: uuid.clone(),
        correlation: Correlation {
            message_id: obj_str(obj, &["client_ref"]),
            attempt_id: None,
        },
        status: status_map::messages_status(&raw_status),
        error_code,
        error_detail,
        occurred_at_ms: obj_str(obj, &["timestamp"]).and_then(|t| iso_ms(&t)),
        dedupe_key: format!("{uuid}:{raw_status}"),
        raw_status,
        opted_out: false,
    }))
}

/// A Messages API inbound message. Channels weft does not carry here (Messenger, Viber…) give
/// no event: the raw webhook is still stored by the gateway, and Vonage is not made to retry.
pub fn messages_inbound(
    obj: &serde_json::Map<String, serde_json::Value>,
) -> Result<Vec<InboundEvent>, ParseError> {
    let uuid = obj_str(obj, &["message_uuid"])
        .ok_or_else(|| ParseError::new("Vonage inbound message", "no message_uuid"))?;
    let channel = match obj_str(obj, &["channel"]).as_deref() {
        Some("sms") | Some("mms") => Channel::Sms,
        Some("whatsapp") => Channel::Whatsapp,
        other => {
            tracing::debug!(channel = ?other, "Vonage inbound message on a channel weft does not carry; ignored.");
            return Ok(Vec::new());
        }
    };
    let from = obj_str(obj, &["from"])
        .ok_or_else(|| ParseError::new("Vonage inbound message", "no from"))?;
    let to =
        obj_str(obj, &["to"]).ok_or_else(|| ParseError::new("Vonage inbound message", "no to"))?;
    let message_type = obj_str(obj, &["message_type"]).unwrap_or_else(|| "text".into());
    let mut media = Vec::new();
    let body = match message_type.as_str() {
        "text" => obj.get("text").and_then(|t| t.as_str()).map(str::to_string),
        kind @ ("image" | "video" | "audio" | "file" | "sticker") => {
            media.push(Media {
                url: obj_str(obj, &[kind, "url"]),
                provider_media_id: None,
                content_type: None,
            });
            obj_str(obj, &[kind, "caption"])
        }
        _ => None,
    };
    Ok(vec![InboundEvent::Message(InboundMessage {
        provider_message_id: uuid.clone(),
        channel,
        from: tel(&from),
        to: tel(&to),
        body,
        subject: None,
        email: None,
        reply_to_provider_id: obj_str(obj, &["context", "message_uuid"]),
        forwarded: false,
        profile_name: obj_str(obj, &["profile", "name"]),
        media,
        received_at_ms: obj_str(obj, &["timestamp"]).and_then(|t| iso_ms(&t)),
        dedupe_key: uuid,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse() {
        assert_eq!(
            vonage_timestamp_ms("2026-01-01 00:00:00"),
            Some(1_767_225_600_000)
        );
        assert_eq!(scts_ms("2601010000"), Some(1_767_225_600_000));
        assert_eq!(iso_ms("2026-01-01T00:00:00.000Z"), Some(1_767_225_600_000));
        assert_eq!(iso_ms("2026-01-01T00:00:05Z"), Some(1_767_225_605_000));
        assert_eq!(scts_ms("26010100"), None);
        assert_eq!(vonage_timestamp_ms("yesterday"), None);
    }

    #[test]
    fn tel_forms() {
        assert_eq!(tel("447700900001"), "tel:+447700900001");
        assert_eq!(tel("+447700900001"), "tel:+447700900001");
        assert_eq!(tel("Weft"), "Weft");
    }
}
