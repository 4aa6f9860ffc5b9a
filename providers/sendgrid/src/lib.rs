//! weft's SendGrid adapter (`ProviderKind::Sendgrid`): e-mail only.
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): credential `api_key` (required),
//!   `webhook_public_key` and `inbound_secret` (each needed by its webhook); settings `from`,
//!   `sandbox_mode`, `signature_max_age_seconds`. Every problem is listed at once.
//! - `send` builds the `POST {base}/v3/mail/send` JSON ([`request`]): our `Message-ID`,
//!   `In-Reply-To`, `References` in `headers`, `reply_to`, weft's ids in `custom_args`,
//!   templates as `template_id` + `dynamic_template_data`. SendGrid answers `202` with an empty
//!   body and its id in `X-Message-Id`; errors are classified in [`errors`] (429 waits for
//!   `X-RateLimit-Reset`).
//! - SendGrid calls back on `/webhooks/sendgrid/{connection}/{kind}`:
//!   - `events` (alias `status`): the Event Webhook, ECDSA-signed ([`verify`]), a JSON array of
//!     events mapped by [`status_map`] ([`webhook`]);
//!   - `inbound`: Inbound Parse, protected by `?secret=<inbound_secret>` in the URL, parsed
//!     into an e-mail with its threading headers ([`inbound`]).
//! - Feature `simulator`: an in-process SendGrid ([`simulator::Simulator`]).

pub mod config;
pub mod errors;
pub mod inbound;
pub mod request;
pub mod status_map;
pub mod verify;
pub mod webhook;

#[cfg(feature = "simulator")]
pub mod simulator;

/// The e-mail helpers and form reader, shared with the other e-mail adapter.
pub use weft_mailkit::{email, multipart};

use async_trait::async_trait;
use secrecy::ExposeSecret;
use std::sync::Arc;
use weft_provider::{
    Capabilities, Channel, ConfigError, ConnectionSpec, InboundEvent, OutboundMessage, ParseError,
    Provider, ProviderKind, SendError, SendReceipt, VerifyError, WebhookRequest,
};

pub use config::SendgridConfig;
pub use webhook::WEBHOOK_KINDS;

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Sendgrid::new(spec)?))
}

/// One SendGrid account.
#[derive(Debug, Clone)]
pub struct Sendgrid {
    cfg: SendgridConfig,
    client: reqwest::Client,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Sendgrid {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = SendgridConfig::from_spec(spec)?;
        let client = weft_provider::http_client("sendgrid", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        Ok(Sendgrid { cfg, client })
    }

    pub fn config(&self) -> &SendgridConfig {
        &self.cfg
    }
}

#[async_trait]
impl Provider for Sendgrid {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sendgrid
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: vec![Channel::Email],
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let prepared = request::build(&self.cfg, msg)?;
        let resp = self
            .client
            .post(self.cfg.send_url())
            .bearer_auth(self.cfg.api_key.expose_secret())
            .json(&prepared.body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp
            .bytes()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        if status.is_success() {
            let receipt = request::receipt(&headers, &prepared.message_id);
            tracing::debug!(id = ?receipt.provider_ids.first(), "SendGrid accepted the send.");
            Ok(receipt)
        } else {
            let err = errors::classify(status, &headers, &body, now_unix());
            tracing::debug!(
                status = status.as_u16(),
                kind = err.code(),
                "SendGrid refused the send."
            );
            Err(err)
        }
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        match req.kind.as_str() {
            k if webhook::is_events_kind(k) => {
                let key = self
                    .cfg
                    .webhook_key
                    .as_ref()
                    .ok_or(VerifyError::NotConfigured)?;
                verify::verify_event(
                    key,
                    req.header(verify::SIGNATURE_HEADER),
                    req.header(verify::TIMESTAMP_HEADER),
                    &req.body,
                    req.now_unix,
                    self.cfg.signature_max_age,
                )
            }
            "inbound" => {
                let secret = self
                    .cfg
                    .inbound_secret
                    .as_ref()
                    .ok_or(VerifyError::NotConfigured)?;
                verify::verify_inbound_secret(
                    secret.expose_secret(),
                    req.query(verify::INBOUND_SECRET_PARAM).as_deref(),
                )
            }
            other => Err(VerifyError::Malformed(format!(
                "unknown webhook kind {other:?}"
            ))),
        }
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(req)
    }
}
