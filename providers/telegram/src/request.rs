//! Building the `sendMessage` JSON body, and reading its answer.
//!
//! - `chat_id`: `msg.to`, a numeric chat id (sent as a number) or an `@channel` username.
//! - `text`: the body, 1–4096 characters; longer is refused here, before any request.
//! - `reply_parameters{message_id}` from `reply_to_provider_id` (`chat_id:message_id`, or a bare
//!   message id), with `allow_sending_without_reply` so a deleted original does not fail the
//!   send; `chat_id` is added when the quoted message lives in another chat.
//! - The answer's Message gives the provider id `"{chat.id}:{message_id}"` (message ids are
//!   unique per chat only) and status `sent`, final: bots get no delivery receipts.

use serde_json::{json, Value};
use weft_provider::{
    Channel, DeliveryStatus, FailureReason, OutboundMessage, SendError, SendReceipt,
};

/// Longest text `sendMessage` takes.
pub const MAX_TEXT_CHARS: usize = 4096;

/// A chat as `sendMessage` takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatId {
    Id(i64),
    /// `@channelusername`
    Username(String),
}

impl ChatId {
    pub fn to_json(&self) -> Value {
        match self {
            ChatId::Id(n) => json!(n),
            ChatId::Username(u) => json!(u),
        }
    }
}

/// Reads `msg.to`: `-1001234567890`, `3527065`, `@weft_news` (a `telegram:` prefix is allowed).
pub fn chat_id(to: &str) -> Result<ChatId, SendError> {
    let t = to.trim();
    let t = t.strip_prefix("telegram:").unwrap_or(t);
    if let Ok(n) = t.parse::<i64>() {
        // A leading `+` is a phone number, never a chat id.
        if n != 0 && !t.starts_with('+') {
            return Ok(ChatId::Id(n));
        }
    }
    if let Some(name) = t.strip_prefix('@') {
        if (1..=64).contains(&name.len())
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            return Ok(ChatId::Username(t.to_string()));
        }
    }
    Err(SendError::permanent(
        FailureReason::InvalidAddress,
        "recipient is not a Telegram chat id or @channel",
    ))
}

/// Splits a provider id `chat_id:message_id` (or a bare message id).
pub fn split_provider_id(id: &str) -> Option<(Option<i64>, i64)> {
    let id = id.trim();
    match id.rsplit_once(':') {
        Some((chat, msg)) => Some((chat.parse().ok(), msg.parse().ok()?)),
        None => Some((None, id.parse().ok()?)),
    }
}

/// The provider id of a message: `"{chat_id}:{message_id}"`.
pub fn provider_id(chat_id: i64, message_id: i64) -> String {
    format!("{chat_id}:{message_id}")
}

/// Builds the `sendMessage` body.
pub fn build(msg: &OutboundMessage) -> Result<(ChatId, Value), SendError> {
    if msg.channel != Channel::Telegram {
        return Err(SendError::config(format!(
            "a telegram connection cannot send {}",
            msg.channel
        )));
    }
    let chat = chat_id(&msg.to)?;
    let text = msg.body.as_deref().unwrap_or_default();
    if text.trim().is_empty() {
        let why = if msg.template.is_some() {
            "Telegram has no templates: send a body"
        } else {
            "a Telegram message needs a text"
        };
        return Err(SendError::permanent(FailureReason::ProviderRejected, why));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(SendError::permanent(
            FailureReason::ProviderRejected,
            format!("text is longer than Telegram's {MAX_TEXT_CHARS} characters"),
        ));
    }
    let mut body = json!({"chat_id": chat.to_json(), "text": text});
    if let Some(quoted) = msg.reply_to_provider_id.as_deref() {
        match split_provider_id(quoted) {
            Some((quoted_chat, message_id)) => {
                let mut rp = json!({"message_id": message_id, "allow_sending_without_reply": true});
                if let Some(qc) = quoted_chat.filter(|qc| ChatId::Id(*qc) != chat) {
                    rp["chat_id"] = json!(qc);
                }
                body["reply_parameters"] = rp;
            }
            None => tracing::debug!("Ignoring a reply reference that is not chat_id:message_id."),
        }
    }
    Ok((chat, body))
}

/// Reads an `ok:true` answer into a receipt (`sent`). Unreadable means unknown: ambiguous.
pub fn receipt(body: &[u8], sent_to: &ChatId) -> Result<SendReceipt, SendError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        SendError::timeout(format!(
            "Telegram answered 2xx with an unreadable body: {e}"
        ))
    })?;
    if v["ok"].as_bool() != Some(true) {
        return Err(SendError::timeout("Telegram answered 2xx without ok:true"));
    }
    let result = &v["result"];
    let message_id = result["message_id"]
        .as_i64()
        .ok_or_else(|| SendError::timeout("Telegram answered without a message_id"))?;
    let chat = match (result["chat"]["id"].as_i64(), sent_to) {
        (Some(id), _) => id,
        (None, ChatId::Id(id)) => *id,
        (None, ChatId::Username(_)) => {
            return Err(SendError::timeout("Telegram answered without the chat id"))
        }
    };
    Ok(SendReceipt {
        provider_ids: vec![provider_id(chat, message_id)],
        status: DeliveryStatus::Sent,
        segments: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chat_ids() {
        assert_eq!(chat_id("3527065").ok(), Some(ChatId::Id(3527065)));
        assert_eq!(
            chat_id("-1001234567890").ok(),
            Some(ChatId::Id(-1001234567890))
        );
        assert_eq!(chat_id("telegram:42").ok(), Some(ChatId::Id(42)));
        assert_eq!(
            chat_id("@weft_news").ok(),
            Some(ChatId::Username("@weft_news".into()))
        );
        for bad in ["", "0", "@", "@bad-name", "+4915112345678", "a@b.c", "12ab"] {
            assert_eq!(
                chat_id(bad).err().map(|e| e.reason()),
                Some(FailureReason::InvalidAddress),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn provider_ids_split() {
        assert_eq!(split_provider_id("3527065:41"), Some((Some(3527065), 41)));
        assert_eq!(split_provider_id("-100123:7"), Some((Some(-100123), 7)));
        assert_eq!(split_provider_id("41"), Some((None, 41)));
        assert_eq!(split_provider_id("x:y"), None);
        assert_eq!(split_provider_id("wamid.ABC"), None);
    }

    #[test]
    fn receipts() {
        let r = receipt(br#"{"ok":true,"result":{"message_id":43,"chat":{"id":3527065,"type":"private"},"date":1}}"#, &ChatId::Id(1));
        assert_eq!(
            r.map(|r| (r.provider_ids, r.status)).ok(),
            Some((vec!["3527065:43".into()], DeliveryStatus::Sent))
        );
        let r = receipt(br#"{"ok":true,"result":{"message_id":5}}"#, &ChatId::Id(9));
        assert_eq!(
            r.map(|r| r.provider_ids).ok(),
            Some(vec!["9:5".to_string()])
        );
        for bad in [&b"{}"[..], b"nope", br#"{"ok":true,"result":{}}"#] {
            assert_eq!(
                receipt(bad, &ChatId::Id(1)).err().map(|e| e.is_ambiguous()),
                Some(true)
            );
        }
    }
}
