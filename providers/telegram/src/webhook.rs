//! Telegram updates → [`InboundEvent`]s (PROVIDERS.md §6 "Updates").
//!
//! One update, at most one event, deduplicated on `update_id`:
//! - `message` / `channel_post` → an [`InboundMessage`]: from `telegram:<chat.id>`, to the bot
//!   ([`crate::TelegramConfig::bot_address`]), id `"{chat.id}:{message_id}"`, body the text or
//!   caption, `reply_to_message` → `reply_to_provider_id` `"{chat.id}:{message_id}"`, a forward
//!   (`forward_origin`, or the older `forward_from*` / `forward_sender_name` / `forward_date`)
//!   → `forwarded` and no reply pointer; media by `file_id`.
//! - `edited_message` / `edited_channel_post` → nothing. An edit is not a new message and the
//!   normalized model has no "edited" event; emitting it would duplicate the timeline entry.
//! - `my_chat_member` → a [`ConsentEvent`] per [`status_map::consent`] (blocked / unblocked).
//! - Anything else (callback queries, polls, joins) → nothing; the webhook is still answered 200.

use crate::status_map;
use serde_json::Value;
use weft_provider::{Channel, ConsentEvent, InboundEvent, InboundMessage, Media, ParseError};

const WHAT: &str = "Telegram update";

fn text(v: &Value) -> Option<String> {
    v.as_str().map(str::to_string).filter(|s| !s.is_empty())
}

/// Parses a verified update. `bot_address` is the inbound `to`.
pub fn parse(body: &[u8], bot_address: &str) -> Result<Vec<InboundEvent>, ParseError> {
    let update: Value = serde_json::from_slice(body).map_err(|e| ParseError::new(WHAT, e))?;
    let update_id = update["update_id"]
        .as_i64()
        .ok_or_else(|| ParseError::new(WHAT, "no update_id"))?;
    let dedupe_key = update_id.to_string();
    if let Some(m) = ["message", "channel_post"]
        .iter()
        .map(|k| &update[*k])
        .find(|m| m.is_object())
    {
        return Ok(message(m, bot_address, dedupe_key)
            .map(InboundEvent::Message)
            .into_iter()
            .collect());
    }
    if update["my_chat_member"].is_object() {
        return Ok(consent(&update["my_chat_member"], dedupe_key)
            .map(InboundEvent::Consent)
            .into_iter()
            .collect());
    }
    if update["edited_message"].is_object() || update["edited_channel_post"].is_object() {
        tracing::debug!(update_id, "Ignoring an edited Telegram message.");
    }
    Ok(Vec::new())
}

fn display_name(m: &Value) -> Option<String> {
    let from = &m["from"];
    let full = [text(&from["first_name"]), text(&from["last_name"])]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    Some(full)
        .filter(|s| !s.is_empty())
        .or_else(|| text(&from["username"]))
        .or_else(|| text(&m["sender_chat"]["title"]))
        .or_else(|| text(&m["chat"]["title"]))
}

fn media(m: &Value) -> Vec<Media> {
    let mut out = Vec::new();
    // Photo sizes come smallest first: keep the largest.
    if let Some(largest) = m["photo"].as_array().and_then(|p| p.last()) {
        out.push(Media {
            url: None,
            provider_media_id: text(&largest["file_id"]),
            content_type: Some("image/jpeg".into()),
        });
    }
    for kind in [
        "document",
        "voice",
        "audio",
        "video",
        "video_note",
        "animation",
        "sticker",
    ] {
        let o = &m[kind];
        if o.is_object() {
            let content_type = text(&o["mime_type"]).or_else(|| match kind {
                "video_note" => Some("video/mp4".into()),
                "sticker" => Some("image/webp".into()),
                _ => None,
            });
            out.push(Media {
                url: None,
                provider_media_id: text(&o["file_id"]),
                content_type,
            });
        }
    }
    out
}

fn is_forward(m: &Value) -> bool {
    [
        "forward_origin",
        "forward_from",
        "forward_from_chat",
        "forward_sender_name",
        "forward_date",
    ]
    .iter()
    .any(|k| !m[*k].is_null())
}

fn message(m: &Value, bot_address: &str, dedupe_key: String) -> Option<InboundMessage> {
    let chat = m["chat"]["id"].as_i64()?;
    let message_id = m["message_id"].as_i64()?;
    let forwarded = is_forward(m);
    let reply_to_provider_id = if forwarded {
        None
    } else {
        m["reply_to_message"]["message_id"]
            .as_i64()
            .map(|id| format!("{chat}:{id}"))
    };
    Some(InboundMessage {
        provider_message_id: format!("{chat}:{message_id}"),
        channel: Channel::Telegram,
        from: format!("telegram:{chat}"),
        to: bot_address.to_string(),
        body: text(&m["text"]).or_else(|| text(&m["caption"])),
        subject: None,
        email: None,
        reply_to_provider_id,
        forwarded,
        profile_name: display_name(m),
        media: media(m),
        received_at_ms: m["date"].as_i64().and_then(|d| d.checked_mul(1000)),
        dedupe_key,
    })
}

fn consent(member: &Value, dedupe_key: String) -> Option<ConsentEvent> {
    let chat = member["chat"]["id"].as_i64()?;
    let new_status = member["new_chat_member"]["status"].as_str()?;
    let action = status_map::consent(member["old_chat_member"]["status"].as_str(), new_status)?;
    Some(ConsentEvent {
        address: format!("telegram:{chat}"),
        channel: Channel::Telegram,
        action,
        dedupe_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junk_and_missing_update_id_are_errors() {
        assert!(parse(b"nope", "telegram:bot").is_err());
        assert!(parse(br#"{"message":{}}"#, "telegram:bot").is_err());
        assert_eq!(
            parse(br#"{"update_id":1}"#, "telegram:bot").map(|e| e.len()),
            Ok(0)
        );
    }

    #[test]
    fn a_message_without_chat_gives_nothing() {
        assert_eq!(
            parse(
                br#"{"update_id":1,"message":{"message_id":2}}"#,
                "telegram:bot"
            )
            .map(|e| e.len()),
            Ok(0)
        );
    }

    #[test]
    fn names() {
        let m: Value = serde_json::json!({"from": {"first_name": "Nic", "last_name": "K"}});
        assert_eq!(display_name(&m).as_deref(), Some("Nic K"));
        let m: Value = serde_json::json!({"from": {"username": "nic"}});
        assert_eq!(display_name(&m).as_deref(), Some("nic"));
        let m: Value = serde_json::json!({"chat": {"title": "News"}});
        assert_eq!(display_name(&m).as_deref(), Some("News"));
    }
}
