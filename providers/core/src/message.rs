//! What the gateway hands an adapter, and what it gets back.

use crate::{Channel, DeliveryStatus, EmailHeaders};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A provider-side template (WhatsApp templates, SendGrid dynamic templates, Twilio Content).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Template {
    pub name: String,
    /// BCP 47 / provider language code, e.g. `en_US`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    /// Variables in order of their names (`"1"`, `"2"` for positional templates).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
}

/// Text-to-speech settings for a voice call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct VoiceOptions {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<String>,
}

/// One message (one attempt of it) to send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundMessage {
    /// weft's message id (`msg_…`): echo it wherever the provider carries a correlation
    /// value (Twilio's callback URL, Vonage `client-ref`, SendGrid `custom_args`, Mailgun `v:`).
    pub message_id: String,
    /// weft's attempt id (`att_…`), unique per try.
    pub attempt_id: String,
    pub channel: Channel,
    /// Destination in the provider-neutral form: `+E164` for sms/voice/whatsapp, a lower-case
    /// e-mail address, or a Telegram chat id. No `whatsapp:`/`telegram:` prefix.
    pub to: String,
    /// The sender chosen for this attempt: `+E164`, an alphanumeric id, an e-mail address, a
    /// WhatsApp phone-number id. `None` where the provider needs none (Telegram bots).
    pub from: Option<String>,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub template: Option<Template>,
    /// E-mail headers weft sets: our `Message-ID`, `Reply-To`, `In-Reply-To`, `References`.
    pub email: Option<EmailHeaders>,
    /// The provider id of a message this one answers (WhatsApp `context.message_id`,
    /// Telegram `reply_parameters.message_id`).
    pub reply_to_provider_id: Option<String>,
    pub voice: Option<VoiceOptions>,
    /// Absolute URL the provider should post status callbacks to; already carries weft's
    /// message and attempt ids in its query where the provider signs the URL.
    pub status_callback_url: String,
}

/// What the provider said when it took the message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    /// Every id the provider gave; one per part for a multi-part SMS. Never empty.
    pub provider_ids: Vec<String>,
    /// `queued` for most providers; `sent` where a 2xx is final (Telegram).
    pub status: DeliveryStatus,
    /// Parts the provider reports (SMS), if it does.
    pub segments: Option<u32>,
}

impl SendReceipt {
    pub fn queued(provider_ids: Vec<String>) -> Self {
        SendReceipt {
            provider_ids,
            status: DeliveryStatus::Queued,
            segments: None,
        }
    }
}
