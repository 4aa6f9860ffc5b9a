//! weft's SMTP provider (`ProviderKind::Smtp`): e-mail through any SMTP relay, with lettre's
//! async tokio transport (rustls).
//!
//! A send goes: `request.rs` builds the mail (our `Message-ID`, `Reply-To`, `In-Reply-To`,
//! `References`, `X-Weft-Message-Id`; a missing subject or a bad address fails before any
//! connection) -> lettre connects (plaintext, STARTTLS required, or implicit TLS), says EHLO,
//! authenticates if credentials are set, and hands the mail over -> a `250` becomes a `queued`
//! receipt ([`status_map`]), any other answer or failure a classified [`SendError`] ([`errors`]).
//! The whole conversation is bounded by the connection's `request_timeout`.
//!
//! Settings and credentials: see [`config`] (`host`, `port`, `tls`, `from`, `hello_name`,
//! `auth_mechanism`, `allow_plaintext_auth`; `username` + `password`).
//!
//! **Provider id.** The receipt's one provider id is our own `Message-ID` without angle
//! brackets. A relay's queue id (`250 2.0.0 Ok: queued as ABC123`) is parsed and logged at
//! debug level only: it differs per relay and per retry, while our `Message-ID` is what replies
//! and bounces refer to.
//!
//! **No webhooks.** SMTP has no status callbacks: `webhook_kinds` is empty (the gateway answers
//! 404 to any webhook for an smtp connection), `verify` reports no secret configured and
//! `parse` fails. Bounces come back later as DSN mail to the sender; reading them (and inbound
//! replies) is out of scope here — an inbound-mail provider or the gateway's inbound route
//! has to match them by `Message-ID`.
//!
//! One TCP connection per send (lettre's pool is not enabled): simple, and a broken relay
//! connection never outlives one attempt.
//!
//! With the `simulator` feature, [`simulator::SmtpSink`] is a local SMTP server that records
//! what it receives and injects SMTP faults, for this crate's tests and the gateway's.

pub mod config;
pub mod errors;
mod request;
#[cfg(feature = "simulator")]
pub mod simulator;
pub mod status_map;

pub use config::TlsMode;
pub use request::{valid_msg_id, ATTEMPT_ID_HEADER, MESSAGE_ID_HEADER};
#[cfg(feature = "simulator")]
pub use simulator::{SinkConfig, SmtpFaults, SmtpSink};

use async_trait::async_trait;
use lettre::transport::smtp::authentication::Credentials as SmtpCredentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::sync::Arc;
use weft_provider::{
    Capabilities, Channel, ConfigError, ConnectionSpec, InboundEvent, OutboundMessage, ParseError,
    Provider, ProviderKind, SendError, SendReceipt, VerifyError, WebhookRequest,
};

/// Builds an SMTP connection from its spec, listing every configuration problem at once.
pub fn build(spec: &ConnectionSpec) -> Result<Arc<dyn Provider>, ConfigError> {
    Ok(Arc::new(SmtpProvider::new(spec)?))
}

/// One configured SMTP relay.
pub struct SmtpProvider {
    settings: config::Settings,
    transport: AsyncSmtpTransport<Tokio1Executor>,
}

impl std::fmt::Debug for SmtpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmtpProvider")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl SmtpProvider {
    pub fn new(spec: &ConnectionSpec) -> Result<Self, ConfigError> {
        let settings = config::settings(spec)?;
        let transport = transport(&settings).map_err(|e| spec.problem(e))?;
        Ok(SmtpProvider {
            settings,
            transport,
        })
    }
}

fn transport(s: &config::Settings) -> Result<AsyncSmtpTransport<Tokio1Executor>, String> {
    type T = AsyncSmtpTransport<Tokio1Executor>;
    let builder = match s.tls {
        TlsMode::None => T::builder_dangerous(s.host.as_str()),
        TlsMode::StartTls => T::starttls_relay(&s.host).map_err(|e| format!("tls: {e}"))?,
        TlsMode::Implicit => T::relay(&s.host).map_err(|e| format!("tls: {e}"))?,
    };
    let mut builder = builder
        .port(s.port)
        .timeout(Some(s.timeout))
        .authentication(s.mechanisms.clone());
    if let Some((user, pass)) = &s.credentials {
        builder = builder.credentials(SmtpCredentials::new(user.clone(), pass.clone()));
    }
    if let Some(name) = &s.hello_name {
        builder = builder.hello_name(ClientId::Domain(name.clone()));
    }
    Ok(builder.build())
}

#[async_trait]
impl Provider for SmtpProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Smtp
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            channels: vec![Channel::Email],
            webhook_kinds: &[],
        }
    }

    async fn send(&self, msg: &OutboundMessage) -> Result<SendReceipt, SendError> {
        let built = request::build_message(msg, self.settings.from.as_ref())?;
        let answer =
            tokio::time::timeout(self.settings.timeout, self.transport.send(built.message)).await;
        match answer {
            Err(_) => {
                tracing::debug!(message_id = %msg.message_id, "SMTP relay did not answer in time.");
                Err(SendError::timeout(format!(
                    "smtp relay did not finish the conversation within {:?}",
                    self.settings.timeout
                )))
            }
            Ok(Err(e)) => {
                let err = errors::classify_transport(&e);
                tracing::debug!(
                    message_id = %msg.message_id,
                    class = err.code(),
                    smtp_code = err.provider_code().unwrap_or(""),
                    "SMTP send failed."
                );
                Err(err)
            }
            Ok(Ok(response)) => {
                let text: Vec<&str> = response.message().collect();
                let queue_id = status_map::queue_id(&text.join(" "));
                tracing::debug!(
                    message_id = %msg.message_id,
                    smtp_code = %response.code(),
                    relay_queue_id = queue_id.as_deref().unwrap_or(""),
                    "Mail accepted by the SMTP relay."
                );
                Ok(status_map::receipt(&built.message_id))
            }
        }
    }

    fn verify(&self, _req: &WebhookRequest) -> Result<(), VerifyError> {
        Err(VerifyError::NotConfigured)
    }

    fn parse(&self, _req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
        Err(ParseError::new(
            "smtp webhook",
            "SMTP has no webhooks; bounces come back as DSN mail, which this adapter does not read",
        ))
    }

    /// Connects, greets and authenticates (lettre's `test_connection`), then quits.
    async fn health(&self) -> Result<(), SendError> {
        match tokio::time::timeout(self.settings.timeout, self.transport.test_connection()).await {
            Err(_) => Err(SendError::timeout(
                "smtp relay did not answer the health check in time",
            )),
            Ok(Err(e)) => Err(errors::classify_transport(&e)),
            Ok(Ok(true)) => Ok(()),
            Ok(Ok(false)) => Err(SendError::transient("smtp relay did not answer NOOP")),
        }
    }
}
