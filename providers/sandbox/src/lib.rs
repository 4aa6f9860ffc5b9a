//! weft's built-in sandbox provider (`ProviderKind::Sandbox`): the default connection of a bare
//! `weft serve`. It needs no account and calls no provider: every message is "delivered", and
//! a newcomer sees send → `sent` → `delivered` → (with `echo`) a threaded reply.
//!
//! Follow one message through it:
//! - [`build`] reads the connection ([`config`]). All keys are optional: credential
//!   `signing_secret` (default `"weft-sandbox-secret"`, **public**, see
//!   [`config::DEFAULT_SIGNING_SECRET`]); settings `callback_delay_ms` (20), `echo` (false),
//!   `echo_delay_ms` (200). Unknown keys are refused, every one listed.
//! - `send` answers at once with `queued` and a fresh id `sbx_<ULID>`, unless the destination
//!   is magic (below). A background task then posts signed status callbacks ([`wire`]) to
//!   `msg.status_callback_url` in order — `sent`, then `delivered`, each after
//!   `callback_delay_ms` — each retried on a connection error or non-2xx up to 30 times
//!   (100 ms doubling to 2 s; [`deliver::RetryPolicy`]), then logged and dropped.
//! - With `echo`, `echo_delay_ms` after `delivered` it posts an inbound message from the
//!   recipient to the sender, body `"echo: <original body>"`, `reply_to_provider_id` = the
//!   echoed message's `sbx_` id, to the same URL with its last path segment `status` replaced
//!   by `inbound` and no query. Voice is not echoed (nobody texts back a phone call). The
//!   reply goes to `msg.from` (e-mail: the `Reply-To` weft set, else `from`); with no sender,
//!   to `+15005550006`, `sandbox@weft.invalid` or, on Telegram, the connection id.
//! - `verify` ([`verify`]) checks `X-Weft-Sandbox-Signature: v1=<hex HMAC-SHA256(secret,
//!   "<X-Weft-Sandbox-Timestamp>.<body>")>` in constant time, refusing timestamps more than
//!   300 s from the verifier's clock. `parse` ([`webhook`]) gives one status or message
//!   event per callback, deduplicated on its `event_id`, addresses as identities.
//!
//! Magic destinations ([`magic`]), for tests and demos:
//!
//! | `to` | what happens |
//! |---|---|
//! | `+15005550001` | `send` fails: permanent, `invalid_address`, provider code `21211` |
//! | `+15005550009` | `send` fails retryably (a simulated 503) on the first 2 attempts of each message id, then succeeds |
//! | `+15005550004` | `queued`, then a `failed` callback, error code `30008` |
//! | `+15005550005` | `queued`, then an `undeliverable` callback, error code `30003` |
//! | `bounce@example.com` | `queued`, then an `undeliverable` callback, error code `550` |
//! | anything else | `queued`, `sent`, `delivered` (and the echo, if on) |
//!
//! The gateway's part: webhook kinds are `status` and `inbound`, so `status_callback_url` must
//! be `{public_url}/webhooks/sandbox/{connection_id}/status?m={message_id}&a={attempt_id}`
//! and `/webhooks/sandbox/{connection_id}/inbound` must be routed too. Callback tasks are
//! detached: they outlive the provider value for at most about a minute per callback.

pub mod config;
pub mod deliver;
pub mod magic;
pub mod verify;
pub mod webhook;
pub mod wire;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use weft_provider::{
    Capabilities, Channel, ConfigError, ConnectionSpec, EmailHeaders, InboundEvent,
    OutboundMessage, ParseError, Provider, ProviderKind, SendError, SendReceipt, VerifyError,
    WebhookRequest,
};

pub use config::SandboxConfig;
pub use deliver::RetryPolicy;

/// Webhook kinds: `status` callbacks and `inbound` echoes.
pub const WEBHOOK_KINDS: &[&str] = &["status", "inbound"];

/// The echo's recipient on sms, voice and WhatsApp when the message had no sender.
pub const DEFAULT_PHONE_SENDER: &str = "+15005550006";
/// The echo's recipient on e-mail when the message had no sender nor `Reply-To`.
pub const DEFAULT_EMAIL_SENDER: &str = "sandbox@weft.invalid";

/// Sent messages [`Sandbox::sent`] keeps, newest last.
const RECORD_LIMIT: usize = 1000;

/// Builds the adapter for one connection.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(Sandbox::new(spec)?))
}

/// One sandbox connection.
#[derive(Debug)]
pub struct Sandbox {
    cfg: SandboxConfig,
    poster: deliver::Poster,
    flaky: magic::FlakyCounter,
    sent: Mutex<VecDeque<OutboundMessage>>,
}

impl Sandbox {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let cfg = SandboxConfig::from_spec(spec)?;
        let client = weft_provider::http_client("sandbox", cfg.request_timeout)
            .map_err(|e| spec.problem(format!("cannot build the HTTP client: {e}")))?;
        let poster = deliver::Poster {
            client,
            secret: cfg.signing_secret.clone(),
            retry: RetryPolicy::default(),
        };
        Ok(Sandbox {
            cfg,
            poster,
            flaky: magic::FlakyCounter::default(),
            sent: Mutex::new(VecDeque::new()),
        })
    }

    /// Replaces how callbacks are retried (tests shorten it).
    pub fn with_retry(mut self, retry: RetryPolicy) -> Self {
        self.poster.retry = retry;
        self
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.cfg
    }

    /// The last 1000 messages queued (not those refused), oldest first, for assertions.
    pub fn sent(&self) -> Vec<OutboundMessage> {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }

    fn record(&self, msg: &OutboundMessage) {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        if sent.len() >= RECORD_LIMIT {
            sent.pop_front();
        }
        sent.push_back(msg.clone());
    }

    /// The reply the recipient sends back, or `None` when echo is off or the channel is voice.
    fn echo(&self, msg: &OutboundMessage, provider_id: &str) -> Option<wire::MessageCallback> {
        if !self.cfg.echo || msg.channel == Channel::Voice {
            return None;
        }
        let original = match (&msg.body, &msg.template) {
            (Some(body), _) => body.clone(),
            (None, Some(t)) => format!("[template {}]", t.name),
            (None, None) => String::new(),
        };
        let echo_id = wire::provider_id();
        let sender = msg.from.clone().filter(|f| !f.trim().is_empty());
        let (to, subject, email) = match msg.channel {
            Channel::Email => {
                let ours = msg.email.clone().unwrap_or_default();
                let to = ours
                    .reply_to
                    .clone()
                    .or(sender)
                    .unwrap_or_else(|| DEFAULT_EMAIL_SENDER.to_string());
                let subject = msg.subject.as_ref().map(|s| {
                    if s.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
                        s.clone()
                    } else {
                        format!("Re: {s}")
                    }
                });
                let mut references = ours.references.clone();
                references.extend(ours.message_id.clone());
                let headers = EmailHeaders {
                    message_id: Some(format!("{echo_id}@sandbox.weft.invalid")),
                    in_reply_to: ours.message_id,
                    references,
                    reply_to: None,
                };
                (to, subject, Some(headers))
            }
            Channel::Telegram => (
                sender.unwrap_or_else(|| self.cfg.connection_id.clone()),
                None,
                None,
            ),
            Channel::Sms | Channel::Voice | Channel::Whatsapp => (
                sender.unwrap_or_else(|| DEFAULT_PHONE_SENDER.to_string()),
                None,
                None,
            ),
        };
        Some(wire::MessageCallback {
            event_id: wire::event_id(),
            provider_message_id: echo_id,
            channel: msg.channel,
            from: msg.to.clone(),
            to,
            body: Some(format!("echo: {original}")),
            subject,
            reply_to_provider_id: Some(provider_id.to_string()),
            email,
            timestamp_ms: None,
        })
    }
}

#[async_trait]
impl Provider for Sandbox {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Sandbox
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: Channel::ALL.to_vec(),
            webhook_kinds: WEBHOOK_KINDS,
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let status_url = url::Url::parse(&msg.status_callback_url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"))
            .ok_or_else(|| {
                SendError::config("sandbox: status_callback_url is not an absolute http(s) URL")
            })?;
        let outcome = magic::outcome(msg, &self.flaky)?;
        let provider_id = wire::provider_id();
        let echo =
            self.echo(msg, &provider_id)
                .and_then(|cb| match wire::inbound_url(&status_url) {
                    Some(url) => Some((url, cb, self.cfg.echo_delay)),
                    None => {
                        tracing::warn!(
                            "No inbound URL can be made from the status callback URL; no echo."
                        );
                        None
                    }
                });
        let job = deliver::Job {
            status_url,
            provider_id: provider_id.clone(),
            message_id: msg.message_id.clone(),
            attempt_id: msg.attempt_id.clone(),
            outcome,
            callback_delay: self.cfg.callback_delay,
            echo,
        };
        self.record(msg);
        tokio::spawn(job.run(self.poster.clone()));
        tracing::debug!(provider_id = %provider_id, "Sandbox queued the message.");
        Ok(SendReceipt::queued(vec![provider_id]))
    }

    fn verify(&self, req: &WebhookRequest) -> Result<(), VerifyError> {
        verify::verify(
            self.cfg.signing_secret.expose_secret(),
            req.header(verify::SIGNATURE_HEADER),
            req.header(verify::TIMESTAMP_HEADER),
            &req.body,
            req.now_unix,
        )
    }

    fn parse(&self, req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        webhook::parse(&req.body, |k| req.query(k))
    }
}
