//! weft's Vonage adapter (`ProviderKind::Vonage`): the SMS API or the Messages API v1.
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): setting `api` = `"sms"` (default) or
//!   `"messages"`, the credentials that API needs, the webhook `signature_secret` and
//!   `signature_method`; every problem is listed at once.
//! - `send` builds the request ([`request`]). SMS API: a form POST to `/sms/json` with weft's
//!   message id in `client-ref`; the answer is HTTP 200 with one entry per part — every accepted
//!   part's id is kept, and a non-zero part `status` is classified by its code ([`errors`]):
//!   `"1"` inside a 200 is a throttle. Messages API: a JSON POST to `/v1/messages` with an RS256
//!   application JWT (or Basic); 202 gives the `message_uuid`, problem+json errors are
//!   classified by HTTP status.
//! - Vonage calls back on `/webhooks/vonage/{connection}/{kind}` (`status`, `inbound`). `verify`
//!   ([`verify`]) checks the SMS API `sig` parameter (five methods, timestamp window) or the
//!   Messages API `Authorization: Bearer` HS256 JWT with its `payload_hash`; `parse`
//!   ([`webhook`]) maps DLRs and statuses through [`status_map`] and reads inbound SMS and
//!   WhatsApp messages.
//! - Feature `simulator`: an in-process Vonage ([`simulator::Simulator`]) speaking both APIs.
//!
//! Gateway notes: SMS API webhooks may arrive as `GET` (a dashboard setting); `parse` reads
//! them, but the gateway routes only `POST` to `verify`/`parse`, so set the dashboard to
//! `POST` or `POST-JSON` until it routes `GET` too. Long inbound SMS arrive as one message per
//! part (see [`webhook`]); reassembling them is left to the gateway.

pub mod config;
pub mod errors;
pub mod gsm;
pub mod jwt;
pub mod request;
pub mod status_map;
pub mod verify;
pub mod webhook;

#[cfg(feature = "simulator")]
pub mod simulator;

use async_trait::async_trait;
use config::{Api, MessagesAuth};
use secrecy::ExposeSecret;
use std::sync::Arc;
use weft_provider::{
    Capabilities, ConfigError, ConnectionSpec, InboundEvent, OutboundMessage, ParseError, Provider,
    ProviderKind, SendError, SendReceipt, VerifyError, WebhookRequest,
};

pub use config::VonageConfig;

/// Webhook kinds: `status` (SMS DLRs, Messages API statuses), `inbound` (SMS and Messages API).
pub const WEBHOOK_KINDS: &[&str] = &["status", "inbound"];

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Vonage::new(spec)?))
}

/// One Vonage account (one API).
#[derive(Debug, Clone)]
pub struct Vonage {
    cfg: VonageConfig,
    client: reqwest::Client,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Vonage {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = VonageConfig::from_spec(spec)?;
        let client = weft_provider::http_client("vonage", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        Ok(Vonage { cfg, client })
    }

    pub fn config(&self) -> &VonageConfig {
        &self.cfg
    }

    async fn send_sms(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let form = request::sms_form(&self.cfg, msg)?;
        let body = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form.iter())
            .finish();
        let resp = self
            .client
            .post(self.cfg.endpoint("sms/json"))
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let result = if status.is_success() {
            request::sms_receipt(&bytes)
        } else {
            Err(errors::sms_http(status, &headers, &bytes))
        };
        match &result {
            Ok(r) => tracing::debug!(
                parts = r.provider_ids.len(),
                "Vonage SMS API accepted the send."
            ),
            Err(e) => {
                tracing::debug!(code = ?e.provider_code(), kind = e.code(), "Vonage SMS API refused the send.")
            }
        }
        result
    }

    async fn send_messages(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let body = request::messages_body(&self.cfg, msg)?;
        let mut req = self
            .client
            .post(self.cfg.endpoint("v1/messages"))
            .header(http::header::ACCEPT, "application/json")
            .json(&body);
        req = match &self.cfg.messages_auth {
            Some(MessagesAuth::Jwt(signer)) => req.bearer_auth(signer.mint(now_unix())?),
            Some(MessagesAuth::Basic) => match (&self.cfg.api_key, &self.cfg.api_secret) {
                (Some(k), Some(s)) => req.basic_auth(k, Some(s.expose_secret())),
                _ => {
                    return Err(SendError::config(
                        "Basic auth needs credentials.api_key and credentials.api_secret",
                    ))
                }
            },
            None => {
                return Err(SendError::config(
                    "the Messages API connection has no credentials",
                ))
            }
        };
        let resp = req.send().await.map_err(|e| SendError::from_reqwest(&e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let result = if status.is_success() {
            request::messages_receipt(&bytes)
        } else {
            Err(errors::messages_http(status, &headers, &bytes))
        };
        match &result {
            Ok(_) => {
                tracing::debug!(channel = %msg.channel, "Vonage Messages API accepted the send.")
            }
            Err(e) => tracing::debug!(
                status = status.as_u16(),
                code = ?e.provider_code(),
                kind = e.code(),
                "Vonage Messages API refused the send."
            ),
        }
        result
    }
}

#[async_trait]
impl Provider for Vonage {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Vonage
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: self.cfg.channels.clone(),
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        match self.cfg.api {
            Api::Sms => self.send_sms(msg).await,
            Api::Messages => self.send_messages(msg).await,
        }
    }

    /// Messages API connections, and any request with an `Authorization: Bearer` header: the
    /// HS256 JWT. Otherwise the SMS API `sig` parameter (an `Authorization: Basic` from
    /// credentials in the dashboard URL does not count). No `signature_secret`: refused.
    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        let secret = self
            .cfg
            .signature_secret
            .as_ref()
            .ok_or(VerifyError::NotConfigured)?;
        let secret = secret.expose_secret().as_bytes();
        let authorization = req.header(http::header::AUTHORIZATION.as_str());
        let bearer = authorization
            .and_then(|a| a.trim().get(..7))
            .is_some_and(|scheme| scheme.eq_ignore_ascii_case("bearer "));
        if self.cfg.api == Api::Messages || bearer {
            verify::verify_jwt(
                authorization,
                &req.body,
                secret,
                self.cfg.application_id.as_deref(),
                req.now_unix,
                self.cfg.signature_tolerance_secs,
            )
        } else {
            verify::verify_sig(
                &webhook::sms_params(req),
                self.cfg.signature_method,
                secret,
                req.now_unix,
                self.cfg.signature_tolerance_secs,
            )
        }
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(req)
    }
}
