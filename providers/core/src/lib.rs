//! The contract between the weft gateway and its provider adapters.
//!
//! An adapter (one crate per provider under `providers/`) turns an [`OutboundMessage`] into the
//! provider's HTTP request and the provider's answer into a [`SendReceipt`] or a [`SendError`];
//! it verifies and parses the provider's webhooks into normalized [`InboundEvent`]s. Adapters
//! never touch the gateway's store, and the gateway never sees a provider's wire format.
//!
//! The one delivery state machine every provider maps onto lives in [`status`].

mod channel;
mod error;
mod event;
mod message;
mod spec;
pub mod status;
pub mod verify;
mod webhook;

pub use channel::{Channel, ProviderKind};
pub use error::{ConfigError, FailureReason, ParseError, SendError, VerifyError, WebhookError};
pub use event::{
    CallEvent, ConsentAction, ConsentEvent, Correlation, EmailHeaders, InboundEvent,
    InboundMessage, Media, StatusEvent,
};
pub use message::{OutboundMessage, SendReceipt, Template, VoiceOptions};
pub use spec::{ConnectionSpec, Credentials};
pub use status::DeliveryStatus;
pub use webhook::{WebhookAck, WebhookRequest};

/// The HTTP client an adapter calls its provider with: `timeout` per request, a
/// `weft-<adapter>/<version>` user agent, and redirects not followed. A provider API does not
/// redirect a send; following one would turn a `POST` into a `GET` on a 301/302 (a
/// `base_url` with the wrong scheme, say) and hide the misconfiguration behind whatever the
/// `GET` answers. Unfollowed, it is a permanent error naming the 3xx status.
pub fn http_client(
    adapter: &str,
    timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(timeout)
        .user_agent(format!("weft-{adapter}/{}", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

use async_trait::async_trait;

/// What a connection can carry.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// Channels this provider can send on.
    pub channels: Vec<Channel>,
    /// Webhook kinds (the last path segment of `/webhooks/{provider}/{connection}/{kind}`)
    /// this adapter accepts. A request for any other kind answers 404.
    pub webhook_kinds: &'static [&'static str],
}

/// One provider account, ready to send and to read its webhooks.
///
/// Only [`Provider::send`], [`Provider::verify`] and [`Provider::parse`] are required; the rest
/// have defaults an adapter overrides where the provider differs (Twilio answers TwiML,
/// WhatsApp Cloud has a `GET` subscription handshake).
#[async_trait]
pub trait Provider: Send + Sync {
    /// Which provider this is; doubles as the metric label.
    fn kind(&self) -> ProviderKind;

    /// Channels and webhook kinds.
    fn capabilities(&self) -> Capabilities;

    /// Sends one message and returns every provider id it got (a long SMS may have one per
    /// part), or one classified error.
    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError>;

    /// Checks the webhook's signature over the exact raw bytes. Pure and synchronous.
    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError>;

    /// Turns a verified webhook into normalized events (statuses, inbound messages, calls).
    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError>;

    /// [`Provider::verify`], then [`Provider::parse`]. An adapter that reads the body the same
    /// way for both (Twilio's form fields) overrides it to read the body once.
    fn verify_then_parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, WebhookError> {
        self.verify(req)?;
        Ok(self.parse(req)?)
    }

    /// The answer the provider expects once the events are stored.
    fn ack(&self, _req: &WebhookRequest, _events: &[InboundEvent]) -> WebhookAck {
        WebhookAck::empty_ok()
    }

    /// A `GET` subscription handshake (WhatsApp Cloud's `hub.challenge`). `None`: this provider
    /// has none, and a `GET` is 405.
    fn handshake(&self, _req: &WebhookRequest) -> Option<Result<WebhookAck, VerifyError>> {
        None
    }

    /// Cheap reachability check used by readiness of provider connections.
    async fn health(&self) -> Result<(), SendError> {
        Ok(())
    }
}
