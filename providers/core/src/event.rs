//! Normalized webhook events: what every provider's status callbacks and inbound messages
//! become before the gateway stores and threads them.

use crate::{Channel, DeliveryStatus};
use serde::{Deserialize, Serialize};

/// weft's own ids echoed back by the provider (callback URL query, `client-ref`,
/// `custom_args`, `v:` variables). Lets a receipt find its message before the provider id
/// is stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Correlation {
    pub message_id: Option<String>,
    pub attempt_id: Option<String>,
}

/// A delivery receipt / status callback for something weft sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusEvent {
    /// The provider's id of the message or part.
    pub provider_message_id: String,
    #[serde(default)]
    pub correlation: Correlation,
    /// `None`: a status with no effect on delivery (Vonage `unknown`, engagement events);
    /// kept in history only.
    pub status: Option<DeliveryStatus>,
    /// The provider's own status word, as sent.
    pub raw_status: String,
    /// The provider's own error code, if any.
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    /// When the provider says it happened (Unix ms).
    pub occurred_at_ms: Option<i64>,
    /// Unique per (message, status) change at this provider, for de-duplication.
    pub dedupe_key: String,
    /// The provider reports the recipient opted out (Twilio 21610, Telegram blocked bot).
    #[serde(default)]
    pub opted_out: bool,
}

/// E-mail threading headers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct EmailHeaders {
    /// The message's own `Message-ID`, without angle brackets.
    pub message_id: Option<String>,
    pub in_reply_to: Option<String>,
    /// `References`, oldest first, without angle brackets.
    #[serde(default)]
    pub references: Vec<String>,
    /// `Reply-To` we set on outbound mail (`reply+<token>@inbound-domain`).
    pub reply_to: Option<String>,
}

/// A media attachment an inbound message points at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Media {
    pub url: Option<String>,
    pub provider_media_id: Option<String>,
    pub content_type: Option<String>,
}

/// A message from a customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InboundMessage {
    pub provider_message_id: String,
    pub channel: Channel,
    /// Sender in normalized identity form: `tel:+E164`, `mailto:a@b`, `whatsapp:<id>`,
    /// `telegram:<chat id>`.
    pub from: String,
    /// The business address it was sent to, in the same form.
    pub to: String,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub email: Option<EmailHeaders>,
    /// The provider id of the message this one quotes (WhatsApp `context.id`, Telegram
    /// `reply_to_message`, Twilio `OriginalRepliedMessageSid`).
    pub reply_to_provider_id: Option<String>,
    /// Forwarded context is not a reply.
    #[serde(default)]
    pub forwarded: bool,
    pub profile_name: Option<String>,
    #[serde(default)]
    pub media: Vec<Media>,
    pub received_at_ms: Option<i64>,
    /// Unique per inbound message at this provider.
    pub dedupe_key: String,
}

/// A voice call: an inbound call, or a status of one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallEvent {
    pub provider_call_id: String,
    pub from: String,
    pub to: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    pub raw_status: String,
    pub caller_name: Option<String>,
    pub duration_seconds: Option<u32>,
    pub received_at_ms: Option<i64>,
    pub dedupe_key: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentAction {
    OptOut,
    OptIn,
}

/// A consent change the provider reports outside a message (Telegram user blocked the bot).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentEvent {
    pub address: String,
    pub channel: Channel,
    pub action: ConsentAction,
    pub dedupe_key: String,
}

/// One normalized webhook event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum InboundEvent {
    Status(StatusEvent),
    Message(InboundMessage),
    Call(CallEvent),
    Consent(ConsentEvent),
}

impl InboundEvent {
    pub fn dedupe_key(&self) -> &str {
        match self {
            InboundEvent::Status(s) => &s.dedupe_key,
            InboundEvent::Message(m) => &m.dedupe_key,
            InboundEvent::Call(c) => &c.dedupe_key,
            InboundEvent::Consent(c) => &c.dedupe_key,
        }
    }
}
