//! weft's Mailgun adapter (`ProviderKind::Mailgun`): e-mail only.
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): credential `api_key` (required) and
//!   `webhook_signing_key` (needed by every webhook); settings `domain` (required), `from`,
//!   `test_mode`, `signature_max_age_seconds`. Every problem is listed at once.
//! - `send` posts the url-encoded form of [`request`] to `{base}/v3/{domain}/messages` with
//!   Basic `api:<key>`: our `Message-ID`, `Reply-To`, `In-Reply-To`, `References` as `h:`
//!   fields, weft's ids as `v:` variables, templates as `template` + `t:variables`. Mailgun
//!   answers `200 {"id":"<…>","message":"Queued. Thank you."}`; the provider id is that id
//!   without angle brackets, as events carry it. Errors are classified in [`errors`].
//! - Mailgun calls back on `/webhooks/mailgun/{connection}/{kind}`, every body signed with an
//!   HMAC of `timestamp + token` ([`verify`]: age window, replayed tokens refused):
//!   - `events` (alias `status`): one JSON event, mapped by [`status_map`] ([`webhook`]);
//!   - `inbound`: a route post (form or multipart) with its threading headers ([`inbound`]).
//! - Feature `simulator`: an in-process Mailgun ([`simulator::Simulator`]).

pub mod body;
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

pub use config::MailgunConfig;
pub use webhook::WEBHOOK_KINDS;

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Mailgun::new(spec)?))
}

/// One Mailgun domain.
#[derive(Debug)]
pub struct Mailgun {
    cfg: MailgunConfig,
    client: reqwest::Client,
    replay: verify::ReplayGuard,
}

impl Mailgun {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = MailgunConfig::from_spec(spec)?;
        let client = weft_provider::http_client("mailgun", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        Ok(Mailgun {
            cfg,
            client,
            replay: verify::ReplayGuard::default(),
        })
    }

    pub fn config(&self) -> &MailgunConfig {
        &self.cfg
    }
}

#[async_trait]
impl Provider for Mailgun {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Mailgun
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
            .basic_auth("api", Some(self.cfg.api_key.expose_secret()))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(prepared.encoded())
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
            let receipt = request::receipt(&body, &prepared.message_id);
            tracing::debug!(id = ?receipt.provider_ids.first(), "Mailgun accepted the send.");
            Ok(receipt)
        } else {
            let err = errors::classify(status, &headers, &body);
            tracing::debug!(
                status = status.as_u16(),
                kind = err.code(),
                "Mailgun refused the send."
            );
            Err(err)
        }
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        if !webhook::is_events_kind(&req.kind) && req.kind != "inbound" {
            return Err(VerifyError::Malformed(format!(
                "unknown webhook kind {:?}",
                req.kind
            )));
        }
        let key = self
            .cfg
            .webhook_signing_key
            .as_ref()
            .ok_or(VerifyError::NotConfigured)?;
        verify::verify_request(
            req,
            key.expose_secret(),
            self.cfg.signature_max_age,
            &self.replay,
        )
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(req)
    }
}
