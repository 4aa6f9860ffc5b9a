//! Messages as the API shows them and as the store and dispatcher pass them around.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use weft_provider::{Channel, DeliveryStatus, Template};

/// A message about to be stored by `POST /v1/messages`.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub tenant_id: String,
    /// The explicit conversation, if the request named one.
    pub conversation_id: Option<String>,
    pub channel: Channel,
    /// Provider-neutral destination (`+E164`, e-mail, chat id).
    pub to: String,
    /// Normalized identity of the recipient (`tel:+E164`, `mailto:…`).
    pub identity: String,
    pub from: Option<String>,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub template: Option<Template>,
    pub metadata: Option<serde_json::Value>,
    pub callback_url: Option<String>,
    /// Signs the status callbacks to `callback_url` (see `api::auth::Tenant::callback_secret`).
    pub callback_secret: Option<String>,
    pub encoding: Option<&'static str>,
    pub segments: Option<u32>,
    /// Our `Message-ID` (without brackets) for e-mail.
    pub email_message_id: Option<String>,
    pub created_at: i64,
    pub policy: SendPolicy,
}

/// What a dispatcher needs to send one message.
#[derive(Debug, Clone)]
pub struct DispatchItem {
    pub message_id: String,
    pub tenant_id: String,
    pub conversation_id: String,
    pub channel: Channel,
    pub to: String,
    pub from: Option<String>,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub template: Option<Template>,
    /// The outbox lease this process holds.
    pub lease_token: String,
    pub created_at: i64,
    pub policy: SendPolicy,
    /// Index into `[first channel] + policy.fallback` of the channel being tried.
    pub step: i64,
    /// Why the outbox row came due.
    pub purpose: Purpose,
}

/// What an outbox row is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Send on the current channel step.
    Send,
    /// `fallback_after` ran out: move on unless the message was delivered.
    FallbackCheck,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::Send => "send",
            Purpose::FallbackCheck => "fallback",
        }
    }
}

/// How a message wants to be delivered.
#[derive(Debug, Clone, Default)]
pub struct SendPolicy {
    /// Send through this connection only.
    pub pinned_connection: Option<String>,
    /// Channels to try after the first, in order.
    pub fallback: Vec<Channel>,
    /// Move to the next channel when no `delivered` arrives within this long.
    pub fallback_after_ms: Option<i64>,
    /// What a step must reach within `fallback_after` (`sent`, `delivered` or `read`) where
    /// it is not `delivered`, by channel.
    pub fallback_success: Vec<(Channel, DeliveryStatus)>,
    pub send_at: Option<i64>,
    /// Undelivered by then: `expired`.
    pub valid_until: Option<i64>,
    /// Bulk traffic yields to transactional traffic.
    pub bulk: bool,
    /// `auto_reply`: a consent answer, exempt from the ledger.
    pub kind: Option<String>,
}

impl SendPolicy {
    /// The channel of step `step`, given the message's first channel.
    pub fn channel_at(&self, first: Channel, step: i64) -> Option<Channel> {
        if step == 0 {
            return Some(first);
        }
        usize::try_from(step - 1)
            .ok()
            .and_then(|i| self.fallback.get(i).copied())
    }

    /// What a step on `channel` must reach for the message not to move on.
    pub fn success_on(&self, channel: Channel) -> DeliveryStatus {
        self.fallback_success
            .iter()
            .find(|(c, _)| *c == channel)
            .map_or(DeliveryStatus::Delivered, |(_, s)| *s)
    }

    /// `fallback_success` as stored (a JSON object), `None` when empty.
    pub fn fallback_success_json(&self) -> Option<String> {
        if self.fallback_success.is_empty() {
            return None;
        }
        let map: serde_json::Map<String, serde_json::Value> = self
            .fallback_success
            .iter()
            .map(|(c, s)| (c.as_str().to_string(), s.as_str().into()))
            .collect();
        Some(serde_json::Value::Object(map).to_string())
    }

    /// Reads [`SendPolicy::fallback_success_json`] back (unknown entries are skipped).
    pub fn parse_fallback_success(json: Option<&str>) -> Vec<(Channel, DeliveryStatus)> {
        use std::str::FromStr;
        let Some(map) = json.and_then(|j| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(j).ok()
        }) else {
            return Vec::new();
        };
        map.iter()
            .filter_map(|(c, s)| {
                Some((
                    Channel::from_str(c).ok()?,
                    DeliveryStatus::from_str(s.as_str()?).ok()?,
                ))
            })
            .collect()
    }
}

/// Why a message ended badly.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
pub struct MessageError {
    /// `opted_out`, `no_route`, `invalid_address`, `provider_rejected`, `window_closed`,
    /// `provider_auth`, `retries_exhausted`, `expired`, `provider_failed`, `undeliverable`.
    pub reason: String,
    /// The provider's own error code.
    pub code: Option<String>,
    pub detail: Option<String>,
}

/// One entry of `status_history`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct StatusEntry {
    pub status: String,
    /// The provider's own status word.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw_status: Option<String>,
    /// False when the entry was late or a duplicate and did not change `status`.
    pub applied: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_message_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error_code: Option<String>,
    pub at: String,
}

/// One try at a provider.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptView {
    pub id: String,
    pub seq: i64,
    pub channel: String,
    pub provider: String,
    pub connection: String,
    pub sender: Option<String>,
    pub provider_ids: Vec<String>,
    /// `in_flight`, `queued` (provider took it), `sent`, `retry`, `rejected`, `unknown`
    /// (interrupted; reconciled by a callback or sent again).
    pub outcome: String,
    pub error_code: Option<String>,
    pub error_detail: Option<String>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// A message as the API returns it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MessageView {
    pub id: String,
    pub conversation_id: String,
    /// `outbound` or `inbound`.
    pub direction: String,
    pub channel: String,
    pub to: String,
    pub from: Option<String>,
    pub body: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub template: Option<Template>,
    pub status: String,
    /// SMS encoding: `gsm7` or `ucs2`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encoding: Option<String>,
    /// SMS parts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub segments: Option<i64>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    pub error: Option<MessageError>,
    /// For inbound messages: why it landed on its conversation.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub threading: Option<serde_json::Value>,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_history: Option<Vec<StatusEntry>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempts: Option<Vec<AttemptView>>,
}

impl MessageView {
    /// The 202 answer for a freshly stored message.
    pub fn accepted(m: &NewMessage, conversation_id: &str) -> MessageView {
        let at = super::rfc3339(m.created_at);
        MessageView {
            id: m.id.clone(),
            conversation_id: conversation_id.to_string(),
            direction: "outbound".into(),
            channel: m.channel.as_str().into(),
            to: m.to.clone(),
            from: m.from.clone(),
            body: m.body.clone(),
            subject: m.subject.clone(),
            template: m.template.clone(),
            status: "accepted".into(),
            encoding: m.encoding.map(str::to_string),
            segments: m.segments.map(i64::from),
            metadata: m.metadata.clone(),
            callback_url: m.callback_url.clone(),
            error: None,
            threading: None,
            created_at: at.clone(),
            updated_at: at,
            status_history: None,
            attempts: None,
        }
    }
}
