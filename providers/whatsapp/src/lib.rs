//! weft's WhatsApp Cloud API adapter (`ProviderKind::WhatsappCloud`).
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): `access_token`, `app_secret`, `verify_token`;
//!   settings `phone_number_id` and `api_version`; every problem listed.
//! - `send` posts JSON to `{base}/{version}/{phone-number-id}/messages` with the Bearer token
//!   ([`request`]): text or template, `context.message_id` to quote, and weft's ids in
//!   `biz_opaque_callback_data`. A 2xx gives the wamid (status `queued`); anything else is
//!   classified by Meta's `error.code`, never the HTTP status ([`errors`]).
//! - Meta calls `/webhooks/whatsapp_cloud/{connection}/webhook` (kinds `status` and `inbound`
//!   are accepted as aliases). A `GET` is the subscription `handshake` (`hub.challenge` echoed
//!   when `hub.verify_token` matches); a `POST` is checked by `verify` (`X-Hub-Signature-256`,
//!   [`verify`]) and `parse` ([`webhook`]) turns it into statuses ([`status_map`]) and inbound
//!   messages — several per request.
//! - The 24-hour customer-service window is the gateway's business (it knows the
//!   conversation); here a send outside it just comes back as error 131047, `window_closed`.
//! - Feature `simulator`: an in-process Graph API ([`simulator::Simulator`]).

pub mod config;
pub mod errors;
pub mod request;
pub mod status_map;
pub mod verify;
pub mod webhook;

#[cfg(feature = "simulator")]
pub mod simulator;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use std::sync::Arc;
use weft_provider::{
    Capabilities, Channel, ConfigError, ConnectionSpec, InboundEvent, OutboundMessage, ParseError,
    Provider, ProviderKind, SendError, SendReceipt, VerifyError, WebhookAck, WebhookRequest,
};

pub use config::WhatsappConfig;

/// Webhook kinds: `webhook` is the one URL to configure at Meta (statuses and messages
/// arrive together); `status` and `inbound` are aliases with the same handling.
pub const WEBHOOK_KINDS: &[&str] = &["webhook", "status", "inbound"];

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(WhatsappCloud::new(spec)?))
}

/// One WhatsApp Business account number set.
#[derive(Debug, Clone)]
pub struct WhatsappCloud {
    cfg: WhatsappConfig,
    client: reqwest::Client,
}

/// A transport error without its URL (the URL is harmless here, but kept out of logs alike).
fn transport(e: reqwest::Error) -> SendError {
    SendError::from_reqwest(&e.without_url())
}

impl WhatsappCloud {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = WhatsappConfig::from_spec(spec)?;
        let client = weft_provider::http_client("whatsapp", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        Ok(WhatsappCloud { cfg, client })
    }

    pub fn config(&self) -> &WhatsappConfig {
        &self.cfg
    }
}

#[async_trait]
impl Provider for WhatsappCloud {
    fn kind(&self) -> ProviderKind {
        ProviderKind::WhatsappCloud
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: vec![Channel::Whatsapp],
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let req = request::build(&self.cfg, msg)?;
        let resp = self
            .client
            .post(self.cfg.messages_url(&req.phone_number_id))
            .header(http::header::AUTHORIZATION, self.cfg.bearer())
            .json(&req.body)
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport)?;
        if status.is_success() {
            let receipt = request::receipt(&body)?;
            tracing::debug!(wamid = ?receipt.provider_ids.first(), "WhatsApp accepted the send.");
            Ok(receipt)
        } else {
            let err = errors::classify(status, &headers, &body);
            tracing::debug!(status = status.as_u16(), code = ?err.provider_code(), "WhatsApp refused the send.");
            Err(err)
        }
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        verify::verify_signature(
            self.cfg.app_secret.expose_secret(),
            req.header(verify::SIGNATURE_HEADER),
            &req.body,
        )
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(&req.body, self.cfg.phone_number_id.as_deref())
    }

    /// `GET ?hub.mode=subscribe&hub.verify_token=…&hub.challenge=…`: 200 with the raw
    /// challenge when the token matches.
    fn handshake(&self, req: &WebhookRequest) -> Option<Result<WebhookAck, VerifyError>> {
        let q = req.query_pairs();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        Some(
            verify::check_handshake(
                self.cfg.verify_token.expose_secret(),
                get("hub.mode"),
                get("hub.verify_token"),
                get("hub.challenge"),
            )
            .map(WebhookAck::text),
        )
    }

    /// `GET {base}/{version}/{phone-number-id}?fields=id`: the token works and the number exists.
    async fn health(&self) -> Result<(), SendError> {
        let Some(pnid) = self.cfg.phone_number_id.as_deref() else {
            return Ok(());
        };
        let resp = self
            .client
            .get(self.cfg.graph_url(pnid))
            .query(&[("fields", "id")])
            .header(http::header::AUTHORIZATION, self.cfg.bearer())
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let headers = resp.headers().clone();
        let body = resp.bytes().await.map_err(transport)?;
        Err(errors::classify(status, &headers, &body))
    }
}
