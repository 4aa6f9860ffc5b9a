//! weft's Telegram Bot API adapter (`ProviderKind::Telegram`).
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): `bot_token` and `secret_token`, optional
//!   `bot_username`; every problem listed.
//! - `send` posts JSON to `{base}/bot{token}/sendMessage` ([`request`]): `chat_id` from
//!   `msg.to`, the text (over 4096 characters is refused before any request), and
//!   `reply_parameters` from `reply_to_provider_id`. `ok:true` gives the provider id
//!   `"{chat_id}:{message_id}"` and status `sent`, which is final: bots get no receipts.
//!   Errors are classified from the envelope ([`errors`]): 429 with `retry_after`, 403 blocked
//!   → opted out, …
//! - **The token is in every URL.** reqwest prints the URL in its errors, so transport errors
//!   are stripped with `without_url()` and every error text is redacted; nothing logs a URL.
//! - Telegram calls `/webhooks/telegram/{connection}/updates` (`inbound` is an alias). `verify`
//!   compares `X-Telegram-Bot-Api-Secret-Token` in constant time ([`verify`]); `parse`
//!   ([`webhook`]) turns messages into inbound messages and blocks/unblocks into consent events
//!   ([`status_map`]). There are no status webhooks.
//! - Feature `simulator`: an in-process Bot API ([`simulator::Simulator`]).

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
    Provider, ProviderKind, SendError, SendReceipt, VerifyError, WebhookRequest,
};

pub use config::TelegramConfig;

/// Webhook kinds: `updates` is the URL given to `setWebhook`; `inbound` is an alias.
pub const WEBHOOK_KINDS: &[&str] = &["updates", "inbound"];

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Telegram::new(spec)?))
}

/// One bot.
#[derive(Debug, Clone)]
pub struct Telegram {
    cfg: TelegramConfig,
    client: reqwest::Client,
}

impl Telegram {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = TelegramConfig::from_spec(spec)?;
        let client = weft_provider::http_client("telegram", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        Ok(Telegram { cfg, client })
    }

    pub fn config(&self) -> &TelegramConfig {
        &self.cfg
    }

    /// A transport error with the URL (and so the token) removed from its text.
    fn transport(&self, e: reqwest::Error) -> SendError {
        let err = SendError::from_reqwest(&e.without_url());
        let detail = self.cfg.redact(err.detail());
        // Rebuild with the redacted text, keeping the class.
        if err.is_ambiguous() {
            SendError::timeout(detail)
        } else {
            SendError::transient(detail)
        }
    }

    /// Calls one Bot API method with a JSON body.
    async fn call(
        &self,
        method: &str,
        body: &serde_json::Value,
    ) -> Result<(http::StatusCode, http::HeaderMap, bytes::Bytes), SendError> {
        let resp = self
            .client
            .post(self.cfg.method_url(method))
            .json(body)
            .send()
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.bytes().await.map_err(|e| self.transport(e))?;
        Ok((status, headers, bytes))
    }

    fn refused(
        &self,
        status: http::StatusCode,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> SendError {
        let err = errors::classify(status, headers, body);
        if err.detail().contains(self.cfg.bot_token.expose_secret()) {
            // Never seen; keep the class, lose the text.
            let code = err.provider_code().unwrap_or_default().to_string();
            return errors::classify(status, headers, b"").with_provider_code(code);
        }
        err
    }
}

#[async_trait]
impl Provider for Telegram {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Telegram
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: vec![Channel::Telegram],
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let (chat, body) = request::build(msg)?;
        let (status, headers, bytes) = self.call("sendMessage", &body).await?;
        let ok = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v["ok"].as_bool());
        if status.is_success() && ok != Some(false) {
            let receipt = request::receipt(&bytes, &chat)?;
            tracing::debug!(provider_id = ?receipt.provider_ids.first(), "Telegram accepted the send.");
            Ok(receipt)
        } else {
            let err = self.refused(status, &headers, &bytes);
            tracing::debug!(status = status.as_u16(), code = ?err.provider_code(), "Telegram refused the send.");
            Err(err)
        }
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        verify::verify_secret(
            self.cfg.secret_token.expose_secret(),
            req.header(verify::SECRET_HEADER),
        )
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(&req.body, &self.cfg.bot_address())
    }

    /// `getMe`: the token is valid.
    async fn health(&self) -> Result<(), SendError> {
        let (status, headers, bytes) = self.call("getMe", &serde_json::json!({})).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(self.refused(status, &headers, &bytes))
        }
    }
}
