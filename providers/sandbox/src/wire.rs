//! The sandbox's callback wire format: one JSON object per POST, tagged by `type`.
//!
//! Status (posted to the message's `status_callback_url`, query included):
//!
//! ```json
//! {"type":"status","event_id":"01J…","provider_message_id":"sbx_01J…","message_id":"msg_…",
//!  "attempt_id":"att_…","status":"sent","error_code":null,"timestamp_ms":1767225600000}
//! ```
//!
//! `status` is `sent`, `delivered`, `failed` or `undeliverable`; `error_code` is `null` or the
//! failure's code (`"30008"`, `"30003"`, `"550"`), with an optional `error_detail` text.
//!
//! Message (the echo; posted to [`inbound_url`]: the same URL with its last path segment
//! replaced by `inbound` and no query):
//!
//! ```json
//! {"type":"message","event_id":"01J…","provider_message_id":"sbx_01J…","channel":"sms",
//!  "from":"+15005550006","to":"+15550001111","body":"echo: hi",
//!  "reply_to_provider_id":"sbx_01J… (the message echoed)","timestamp_ms":1767225600200}
//! ```
//!
//! `from`/`to` are raw, as the channel writes them (`+E164`, an e-mail address, a Telegram
//! chat id); [`crate::webhook`] turns them into identities. E-mail echoes also carry
//! `subject` and `email` (threading headers).

use serde::{Deserialize, Serialize};
use weft_provider::{Channel, EmailHeaders};

/// One callback body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Callback {
    Status(StatusCallback),
    Message(MessageCallback),
}

/// A delivery status of one sandbox message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusCallback {
    /// Unique per callback (a ULID); the dedupe key.
    pub event_id: String,
    pub provider_message_id: String,
    #[serde(default)]
    pub message_id: Option<String>,
    #[serde(default)]
    pub attempt_id: Option<String>,
    pub status: String,
    /// Always present on the wire: `null` or the code.
    #[serde(default)]
    pub error_code: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_detail: Option<String>,
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
}

/// A message from the "recipient" (the echo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageCallback {
    pub event_id: String,
    pub provider_message_id: String,
    pub channel: Channel,
    pub from: String,
    pub to: String,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default)]
    pub reply_to_provider_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<EmailHeaders>,
    #[serde(default)]
    pub timestamp_ms: Option<i64>,
}

/// A fresh event id (a ULID).
pub fn event_id() -> String {
    ulid::Ulid::new().to_string()
}

/// A fresh sandbox message id: `sbx_<ULID>`.
pub fn provider_id() -> String {
    format!("sbx_{}", ulid::Ulid::new())
}

/// Where the echo goes: the status URL with its last path segment (`status`) replaced by
/// `inbound`, and no query or fragment. `None` for a URL with no path to edit.
pub fn inbound_url(status_url: &url::Url) -> Option<url::Url> {
    let mut url = status_url.clone();
    url.set_query(None);
    url.set_fragment(None);
    {
        let mut segments = url.path_segments_mut().ok()?;
        segments.pop_if_empty().pop().push("inbound");
    }
    Some(url)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn status_serializes_as_documented() {
        let cb = Callback::Status(StatusCallback {
            event_id: "E1".into(),
            provider_message_id: "sbx_1".into(),
            message_id: Some("msg_1".into()),
            attempt_id: Some("att_1".into()),
            status: "sent".into(),
            error_code: None,
            error_detail: None,
            timestamp_ms: Some(5),
        });
        assert_eq!(
            serde_json::to_value(&cb).unwrap(),
            json!({"type":"status","event_id":"E1","provider_message_id":"sbx_1","message_id":"msg_1",
                   "attempt_id":"att_1","status":"sent","error_code":null,"timestamp_ms":5})
        );
    }

    #[test]
    fn message_serializes_as_documented() {
        let cb = Callback::Message(MessageCallback {
            event_id: "E2".into(),
            provider_message_id: "sbx_2".into(),
            channel: Channel::Sms,
            from: "+15550001111".into(),
            to: "+15005550006".into(),
            body: Some("echo: hi".into()),
            subject: None,
            reply_to_provider_id: Some("sbx_1".into()),
            email: None,
            timestamp_ms: Some(6),
        });
        assert_eq!(
            serde_json::to_value(&cb).unwrap(),
            json!({"type":"message","event_id":"E2","provider_message_id":"sbx_2","channel":"sms",
                   "from":"+15550001111","to":"+15005550006","body":"echo: hi",
                   "reply_to_provider_id":"sbx_1","timestamp_ms":6})
        );
    }

    #[test]
    fn ids_have_their_shapes() {
        let id = provider_id();
        assert!(id.starts_with("sbx_") && id.len() == 4 + 26, "{id}");
        assert_ne!(provider_id(), provider_id());
        assert_eq!(event_id().len(), 26);
    }

    #[test]
    fn inbound_url_replaces_the_last_segment_and_drops_the_query() {
        let u = url::Url::parse(
            "https://weft.example/base/webhooks/sandbox/sbx/status?m=msg_1&a=att_1",
        )
        .unwrap();
        assert_eq!(
            inbound_url(&u).unwrap().as_str(),
            "https://weft.example/base/webhooks/sandbox/sbx/inbound"
        );
        let u = url::Url::parse("http://127.0.0.1:8080/webhooks/sandbox/sbx/status/?m=1").unwrap();
        assert_eq!(
            inbound_url(&u).unwrap().as_str(),
            "http://127.0.0.1:8080/webhooks/sandbox/sbx/inbound"
        );
        assert!(inbound_url(&url::Url::parse("mailto:a@b.example").unwrap()).is_none());
    }
}
