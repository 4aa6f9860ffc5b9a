//! weft's Twilio adapter (`ProviderKind::Twilio`): SMS, WhatsApp and voice.
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]): `account_sid` + `auth_token` (or an API key
//!   as the REST user), optional Messaging Service and voice settings; every problem listed.
//! - `send` turns an `OutboundMessage` into a form POST ([`request`]): `Messages.json` for SMS
//!   and WhatsApp (`whatsapp:` prefixes), `Calls.json` with a `<Say>` TwiML for voice. weft's
//!   ids ride in the `StatusCallback` URL. A 2xx gives the `sid`; anything else is classified
//!   by Twilio's own error code ([`errors`]).
//! - Twilio calls back on `/webhooks/twilio/{connection}/{kind}`. `verify` checks
//!   `X-Twilio-Signature` over the exact URL and form ([`verify`]); `parse` ([`webhook`]) turns
//!   `status` callbacks into statuses via [`status_map`], `inbound` into messages and `voice`
//!   into calls; `ack` answers TwiML where Twilio expects it.
//! - Feature `simulator`: an in-process Twilio ([`simulator::Simulator`]) for tests and demos.

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
    Capabilities, ConfigError, ConnectionSpec, InboundEvent, OutboundMessage, ParseError, Provider,
    ProviderKind, SendError, SendReceipt, VerifyError, WebhookAck, WebhookError, WebhookRequest,
};

pub use config::TwilioConfig;

/// Webhook kinds: delivery/call statuses, inbound SMS and WhatsApp, inbound calls.
pub const WEBHOOK_KINDS: &[&str] = &["status", "inbound", "voice"];

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Twilio::new(spec)?))
}

/// One Twilio account.
#[derive(Debug, Clone)]
pub struct Twilio {
    cfg: TwilioConfig,
    client: reqwest::Client,
    /// The `Messages.json` and `Calls.json` URLs and the `Authorization` header, made once:
    /// parsing the URL and encoding the credentials per send was ~10 % of a send's cost.
    messages_url: reqwest::Url,
    calls_url: reqwest::Url,
    authorization: http::HeaderValue,
    /// The webhook keys, keyed once.
    verifier: verify::Verifier,
}

impl Twilio {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = TwilioConfig::from_spec(spec)?;
        let client = weft_provider::http_client("twilio", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        let url = |resource: request::Endpoint| {
            reqwest::Url::parse(&cfg.resource_url(resource.path()))
                .map_err(|e| spec.problem(format!("base_url does not make a valid URL: {e}")))
        };
        let messages_url = url(request::Endpoint::Messages)?;
        let calls_url = url(request::Endpoint::Calls)?;
        let (user, pass) = cfg.basic_auth();
        let authorization = basic_authorization(user, pass)
            .map_err(|e| spec.problem(format!("credentials cannot form a header: {e}")))?;
        let verifier = verify::Verifier::new(&verify::Keys {
            auth_token: cfg.auth_token.expose_secret(),
            shared_key: cfg.webhook_shared_key.as_ref().map(|k| k.expose_secret()),
            shared_key_id: cfg.webhook_shared_key_id.as_deref(),
        });
        Ok(Twilio {
            cfg,
            client,
            messages_url,
            calls_url,
            authorization,
            verifier,
        })
    }

    fn url_of(&self, resource: request::Endpoint) -> &reqwest::Url {
        match resource {
            request::Endpoint::Messages => &self.messages_url,
            request::Endpoint::Calls => &self.calls_url,
        }
    }

    pub fn config(&self) -> &TwilioConfig {
        &self.cfg
    }
}

/// What `X-Twilio-Signature` covers, borrowed from the request.
fn signed(req: &WebhookRequest) -> verify::Signed<'_> {
    verify::Signed {
        method: req.method.as_str(),
        url: &req.url,
        body: &req.body,
        signature: req.header(verify::SIGNATURE_HEADER),
        settings: req.header(verify::SETTINGS_HEADER),
    }
}

#[async_trait]
impl Provider for Twilio {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Twilio
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: self.cfg.channels.clone(),
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let req = request::build(&self.cfg, msg)?;
        let resp = self
            .client
            .post(self.url_of(req.resource).clone())
            .header(http::header::AUTHORIZATION, self.authorization.clone())
            .header(
                http::header::CONTENT_TYPE,
                "application/x-www-form-urlencoded",
            )
            .header(http::header::ACCEPT, "application/json")
            .body(req.encoded())
            .send()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        let status = resp.status();
        // Headers matter only for an error (`Retry-After`).
        let headers = if status.is_success() {
            http::HeaderMap::new()
        } else {
            resp.headers().clone()
        };
        let body = resp
            .bytes()
            .await
            .map_err(|e| SendError::from_reqwest(&e))?;
        if status.is_success() {
            let receipt = request::receipt(&body)?;
            tracing::debug!(resource = req.resource.path(), sid = ?receipt.provider_ids.first(), "Twilio accepted the send.");
            Ok(receipt)
        } else {
            let err = errors::classify(status, &headers, &body);
            tracing::debug!(resource = req.resource.path(), status = status.as_u16(), code = ?err.provider_code(), "Twilio refused the send.");
            Err(err)
        }
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        self.verifier.verify(&signed(req), None)
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(req)
    }

    /// Reads the form once, for the signature and for the events.
    fn verify_then_parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, WebhookError> {
        let Some(form) = webhook::Form::of(req) else {
            self.verify(req)?;
            return Ok(self.parse(req)?);
        };
        self.verifier.verify(&signed(req), Some(form.fields()))?;
        Ok(webhook::parse_form(req, &form)?)
    }

    /// `inbound`: an empty TwiML `<Response/>`; `voice`: the configured answer TwiML;
    /// `status`: an empty 200.
    fn ack(&self, req: &WebhookRequest, _events: &[InboundEvent]) -> WebhookAck {
        match req.kind.as_str() {
            "inbound" => WebhookAck::xml("<Response/>"),
            "voice" => WebhookAck::xml(self.cfg.voice_answer_twiml.clone()),
            _ => WebhookAck::empty_ok(),
        }
    }
}

/// `Basic base64(user:pass)`, marked sensitive (kept out of debug output).
fn basic_authorization(
    user: &str,
    pass: &str,
) -> Result<http::HeaderValue, http::header::InvalidHeaderValue> {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    let mut value = http::HeaderValue::from_str(&format!("Basic {encoded}"))?;
    value.set_sensitive(true);
    Ok(value)
}
