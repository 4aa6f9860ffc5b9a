//! WhatsApp Cloud webhooks → [`InboundEvent`]s (PROVIDERS.md §5 "Webhooks").
//!
//! One POST carries `entry[].changes[].value`; every `statuses[]` item becomes a
//! [`StatusEvent`] and every `messages[]` item an [`InboundMessage`], so one request may give
//! several events. Changes of another `field` (template reviews, account updates) give none.
//!
//! - Status: the wamid, the word mapped by [`status_map`], `errors[0].code`, our ids from
//!   `biz_opaque_callback_data`; dedupe `{wamid}:{status}`.
//! - Message: `from` (a wa_id, i.e. the phone number) → `tel:+<wa_id>`, a non-numeric user id
//!   → `whatsapp:<id>`; `to` → `tel:+<metadata.display_phone_number>`; body from text, button,
//!   interactive reply, media caption, reaction; `context.id` → `reply_to_provider_id` unless
//!   the context marks a forward; the profile name from `contacts[]`; dedupe = the wamid.

use crate::request::parse_correlation;
use crate::status_map;
use serde_json::Value;
use weft_provider::{Channel, InboundEvent, InboundMessage, Media, ParseError, StatusEvent};

const WHAT: &str = "WhatsApp webhook";

fn int(v: &Value) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string).filter(|s| !s.is_empty())
}

/// Meta's timestamps are Unix seconds, as strings.
fn millis(v: &Value) -> Option<i64> {
    int(v).and_then(|s| s.checked_mul(1000))
}

fn digits(s: &str) -> String {
    s.chars().filter(char::is_ascii_digit).collect()
}

/// A user address: a wa_id (digits) is a phone number, anything else a business-scoped id.
fn user_address(id: &str) -> String {
    if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) {
        format!("tel:+{id}")
    } else {
        format!("whatsapp:{id}")
    }
}

/// Parses a verified webhook body. `own_number_id` names our number when the change has no
/// `metadata` (never seen in practice).
pub fn parse(body: &[u8], own_number_id: Option<&str>) -> Result<Vec<InboundEvent>, ParseError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| ParseError::new(WHAT, e))?;
    if !v.is_object() {
        return Err(ParseError::new(WHAT, "not a JSON object"));
    }
    if let Some(object) = v["object"].as_str() {
        if object != "whatsapp_business_account" {
            tracing::debug!(object, "Ignoring a webhook for another Graph object.");
            return Ok(Vec::new());
        }
    }
    let entries = v["entry"]
        .as_array()
        .ok_or_else(|| ParseError::new(WHAT, "no entry array"))?;
    let mut events = Vec::new();
    for change in entries
        .iter()
        .flat_map(|e| e["changes"].as_array().into_iter().flatten())
    {
        if change["field"].as_str().is_some_and(|f| f != "messages") {
            continue;
        }
        let value = &change["value"];
        for s in value["statuses"].as_array().into_iter().flatten() {
            events.extend(status(s).map(InboundEvent::Status));
        }
        for m in value["messages"].as_array().into_iter().flatten() {
            events.extend(message(value, m, own_number_id).map(InboundEvent::Message));
        }
    }
    Ok(events)
}

fn status(s: &Value) -> Option<StatusEvent> {
    let id = text(&s["id"])?;
    let raw = text(&s["status"])?;
    let first_error = &s["errors"][0];
    let code = int(&first_error["code"]);
    let detail = [
        &first_error["error_data"]["details"],
        &first_error["message"],
        &first_error["title"],
    ]
    .into_iter()
    .find_map(text);
    Some(StatusEvent {
        dedupe_key: format!("{id}:{raw}"),
        correlation: parse_correlation(s["biz_opaque_callback_data"].as_str()),
        status: status_map::map(&raw, code),
        opted_out: status_map::opted_out(code),
        error_code: code.map(|c| c.to_string()),
        error_detail: detail,
        occurred_at_ms: millis(&s["timestamp"]),
        provider_message_id: id,
        raw_status: raw,
    })
}

/// Body and media of one message, by its `type`.
fn content(m: &Value) -> (Option<String>, Vec<Media>) {
    let kind = m["type"].as_str().unwrap_or_default();
    match kind {
        "text" => (text(&m["text"]["body"]), Vec::new()),
        "button" => (
            text(&m["button"]["text"]).or_else(|| text(&m["button"]["payload"])),
            Vec::new(),
        ),
        "interactive" => {
            let i = &m["interactive"];
            let body = text(&i["button_reply"]["title"])
                .or_else(|| text(&i["list_reply"]["title"]))
                .or_else(|| text(&i["nfm_reply"]["body"]));
            (body, Vec::new())
        }
        "image" | "audio" | "video" | "document" | "sticker" => {
            let o = &m[kind];
            let media = Media {
                url: None,
                provider_media_id: text(&o["id"]),
                content_type: text(&o["mime_type"]),
            };
            (text(&o["caption"]), vec![media])
        }
        "reaction" => (text(&m["reaction"]["emoji"]), Vec::new()),
        "location" => {
            let l = &m["location"];
            let body = match (l["latitude"].as_f64(), l["longitude"].as_f64()) {
                (Some(lat), Some(lon)) => Some(format!("geo:{lat},{lon}")),
                _ => None,
            };
            (body, Vec::new())
        }
        _ => (None, Vec::new()),
    }
}

fn message(value: &Value, m: &Value, own_number_id: Option<&str>) -> Option<InboundMessage> {
    let id = text(&m["id"])?;
    if m["type"].as_str() == Some("system") {
        // "user changed number" notices are not messages from the customer.
        tracing::debug!("Ignoring a WhatsApp system message.");
        return None;
    }
    let sender = text(&m["from"]).or_else(|| text(&m["from_user_id"]))?;
    let display = value["metadata"]["display_phone_number"]
        .as_str()
        .map(digits)
        .filter(|d| !d.is_empty());
    let to = match (
        display,
        text(&value["metadata"]["phone_number_id"]).or(own_number_id.map(String::from)),
    ) {
        (Some(d), _) => format!("tel:+{d}"),
        (None, Some(pnid)) => format!("whatsapp:{pnid}"),
        (None, None) => "whatsapp:unknown".to_string(),
    };
    let ctx = &m["context"];
    let forwarded = ctx["forwarded"].as_bool() == Some(true)
        || ctx["frequently_forwarded"].as_bool() == Some(true);
    let quoted = if forwarded {
        None
    } else if m["type"].as_str() == Some("reaction") {
        text(&m["reaction"]["message_id"])
    } else {
        text(&ctx["id"])
    };
    let contacts = value["contacts"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let profile_name = contacts
        .iter()
        .find(|c| c["wa_id"].as_str() == Some(sender.as_str()))
        .or(contacts.first())
        .and_then(|c| text(&c["profile"]["name"]));
    let (body, media) = content(m);
    Some(InboundMessage {
        dedupe_key: id.clone(),
        provider_message_id: id,
        channel: Channel::Whatsapp,
        from: user_address(&sender),
        to,
        body,
        subject: None,
        email: None,
        reply_to_provider_id: quoted,
        forwarded,
        profile_name,
        media,
        received_at_ms: millis(&m["timestamp"]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: serde_json::Value) -> Vec<InboundEvent> {
        let body = serde_json::json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [{"field": "messages", "value": value}]}]});
        parse(body.to_string().as_bytes(), Some("106540352242922")).unwrap_or_default()
    }

    #[test]
    fn addresses() {
        assert_eq!(user_address("4915112345678"), "tel:+4915112345678");
        assert_eq!(
            user_address("US.13491208655302741918"),
            "whatsapp:US.13491208655302741918"
        );
        assert_eq!(digits("+1 555-078-3881"), "15550783881");
    }

    #[test]
    fn without_metadata_the_setting_names_our_number() {
        let ev = one(
            serde_json::json!({"messages": [{"from": "15551234567", "id": "wamid.A", "type": "text", "text": {"body": "hi"}}]}),
        );
        match ev.first() {
            Some(InboundEvent::Message(m)) => assert_eq!(m.to, "whatsapp:106540352242922"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn junk_is_a_parse_error_and_other_objects_are_ignored() {
        assert!(parse(b"not json", None).is_err());
        assert!(parse(b"[]", None).is_err());
        assert!(parse(br#"{"object":"whatsapp_business_account"}"#, None).is_err());
        assert_eq!(
            parse(br#"{"object":"page","entry":[]}"#, None).map(|e| e.len()),
            Ok(0)
        );
    }

    #[test]
    fn system_messages_and_items_without_ids_are_skipped() {
        let ev = one(serde_json::json!({
            "messages": [{"from": "1555", "id": "wamid.S", "type": "system", "system": {"body": "changed"}}, {"from": "1555", "type": "text"}],
            "statuses": [{"status": "sent"}, {"id": "wamid.X"}],
        }));
        assert!(ev.is_empty(), "{ev:?}");
    }
}
