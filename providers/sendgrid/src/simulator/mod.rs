//! An in-process SendGrid (feature `simulator`) for tests, load tests and the demo.
//!
//! It speaks `POST /v3/mail/send` as SendGrid does: `Bearer` auth (401 otherwise), JSON
//! validation with `{"errors":[{message, field, help}]}` 400s, **202 with an empty body and the
//! id in `X-Message-Id`**, `X-RateLimit-Limit/-Remaining/-Reset` on every answer and, from
//! simkit [`Faults`], 429s with those headers and no `Retry-After`, 500s and timeouts. Each
//! accepted send is recorded (weft's id from `custom_args.weft_message_id`).
//!
//! Then it posts Event Webhook batches to the configured weft `events` URL, signed with its own
//! P-256 key ([`Simulator::public_key_base64`] is the key to configure the adapter with; about
//! half the signatures are high-S, as SendGrid's are) through the simkit [`Callbacker`]
//! (delay, duplicates, reordering, unsigned and forged modes apply):
//! `processed -> delivered` (then `open` if [`Simulator::set_open_events`]); recipients whose
//! local part is `bounce` get `processed -> bounce`, `dropped` a single `dropped`, `deferred`
//! `processed -> deferred -> delivered`.
//!
//! On demand, [`Simulator::send_inbound_email`] posts an Inbound Parse form (with `?secret=`).

mod api;
mod events;

use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey, EncodePublicKey};
use std::sync::Arc;
use weft_mailkit::simulator::{InboundMail, SimCore};
use weft_provider::{Channel, ConnectionSpec, ProviderKind};
use weft_simkit::{Callbacker, Faults, Recorder, Running};

pub use events::EventPlan;
pub use weft_mailkit::simulator::WebhookReply;

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The API key sends must carry as `Bearer`.
    pub api_key: String,
    /// weft's Event Webhook URL (`…/webhooks/sendgrid/{connection}/events`); also settable later.
    pub events_url: Option<String>,
    /// The secret appended as `?secret=` to Inbound Parse posts.
    pub inbound_secret: Option<String>,
    /// A PKCS#8 PEM P-256 key to sign events with; `None` generates one.
    pub signing_key_pem: Option<String>,
    /// Send `open` after `delivered`.
    pub open_events: bool,
    /// Sign about half the events in high-S form, as SendGrid does.
    pub randomize_s: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            api_key: "SG.sim-api-key-0123456789".into(),
            events_url: None,
            inbound_secret: Some("sim-inbound-secret-0123456789".into()),
            signing_key_pem: None,
            open_events: false,
            randomize_s: true,
        }
    }
}

/// State shared by the HTTP handlers and the public handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: SimulatorConfig,
    pub(crate) core: SimCore,
    pub(crate) signing_key: SigningKey,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    running: Running,
}

impl Simulator {
    /// Starts the server on 127.0.0.1.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let core = SimCore::new(config.events_url.clone(), config.open_events)?;
        let signing_key = match &config.signing_key_pem {
            Some(pem) => SigningKey::from_pkcs8_pem(pem).map_err(std::io::Error::other)?,
            None => SigningKey::random(&mut rand::rngs::OsRng),
        };
        let port = config.port;
        let shared = Arc::new(Shared {
            cfg: config,
            core,
            signing_key,
        });
        let running = weft_simkit::serve(api::router(shared.clone()), port).await?;
        Ok(Simulator { shared, running })
    }

    /// `http://127.0.0.1:PORT`: the connection's `base_url`.
    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.core.faults
    }

    /// Callback behaviour and delay.
    pub fn callbacks(&self) -> &Arc<Callbacker> {
        &self.shared.core.callbacks
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.core.recorder
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.cfg
    }

    /// The Event Webhook verification key, base64 DER SPKI (credential `webhook_public_key`).
    pub fn public_key_base64(&self) -> String {
        use base64::Engine;
        match self.shared.signing_key.verifying_key().to_public_key_der() {
            Ok(der) => base64::engine::general_purpose::STANDARD.encode(der.as_bytes()),
            Err(_) => String::new(),
        }
    }

    /// Where events go from now on (`None`: no events).
    pub fn set_events_url(&self, url: Option<String>) {
        self.shared.core.set_events_url(url);
    }

    /// Whether delivered mail also gets an `open` event.
    pub fn set_open_events(&self, on: bool) {
        self.shared.core.set_open_events(on);
    }

    /// A connection spec pointing at this simulator, with its key, public key and secret.
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::Sendgrid);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.channels = vec![Channel::Email];
        spec.senders = vec!["notifications@sim.weft.example".into()];
        spec.credentials
            .insert("api_key", self.shared.cfg.api_key.clone());
        spec.credentials
            .insert("webhook_public_key", self.public_key_base64());
        if let Some(s) = &self.shared.cfg.inbound_secret {
            spec.credentials.insert("inbound_secret", s.clone());
        }
        spec
    }

    /// Signs `body` as the Event Webhook does: `(timestamp, base64 DER signature)`.
    pub fn sign(&self, timestamp: &str, body: &[u8]) -> (String, String) {
        (
            timestamp.to_string(),
            events::sign(&self.shared, timestamp, body),
        )
    }

    /// Posts one signed Event Webhook batch (a JSON array of these events) to `url` now.
    pub async fn post_events(
        &self,
        url: &str,
        events: Vec<serde_json::Value>,
    ) -> Result<WebhookReply, reqwest::Error> {
        events::post_batch(&self.shared, url, events).await
    }

    /// Posts an Inbound Parse form to `weft_inbound_url` (with `?secret=` added when the
    /// config has one): a mail from `from` (`Name <addr>` allowed) to `to`, optionally
    /// answering `in_reply_to` with `references` (ids with or without brackets).
    // The argument list is the shared simulator API every e-mail simulator offers.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_inbound_email(
        &self,
        weft_inbound_url: &str,
        from: &str,
        to: &str,
        subject: &str,
        text: &str,
        in_reply_to: Option<&str>,
        references: &[&str],
    ) -> Result<WebhookReply, reqwest::Error> {
        let mail = InboundMail {
            from,
            to,
            subject,
            text,
            in_reply_to,
            references,
        };
        events::post_inbound(&self.shared, weft_inbound_url, &mail).await
    }
}
