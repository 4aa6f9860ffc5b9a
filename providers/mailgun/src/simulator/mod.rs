//! An in-process Mailgun (feature `simulator`) for tests, load tests and the demo.
//!
//! It speaks `POST /v3/{domain}/messages` as Mailgun does: Basic `api:<key>` (401 `Forbidden`
//! otherwise), 404 `{"message":"Domain not found: …"}` for another domain, url-encoded or
//! multipart forms, 400 `{"message":"…"}` for missing parameters, and **200
//! `{"id":"<…@domain>","message":"Queued. Thank you."}`** (ids in angle brackets). Faults from
//! simkit [`Faults`]: 500s, 429s (`{"message":"Too many requests"}` with `Retry-After`; the
//! real header names are unconfirmed), timeouts. Each accepted send is recorded (weft's id from
//! `v:weft_message_id`).
//!
//! Then it posts signed events (`{"signature":{…},"event-data":{…}}`, HMAC with the configured
//! signing key) to the configured weft `events` URL through the simkit [`Callbacker`] (delay,
//! duplicates, reordering apply; unsigned drops the signature object, forged spoils it):
//! `accepted -> delivered` (then `opened` if [`Simulator::set_open_events`]); local part
//! `bounce` gets `accepted -> failed` (permanent, `bounce`, 550); `dropped` gets a single
//! `failed` (permanent, `suppress-bounce`, 605); `tempfail` gets `accepted -> failed`
//! (temporary, greylisted) `-> delivered`.
//!
//! On demand, [`Simulator::send_inbound_email`] posts a signed route form.

mod api;
mod events;

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
    /// The API key sends must carry as Basic `api:<key>`.
    pub api_key: String,
    /// The one sending domain this account has.
    pub domain: String,
    /// Signs events and route posts.
    pub webhook_signing_key: String,
    /// weft's event webhook URL (`…/webhooks/mailgun/{connection}/events`); also settable later.
    pub events_url: Option<String>,
    /// Send `opened` after `delivered`.
    pub open_events: bool,
    /// Post inbound routes as multipart (as Mailgun's `forward()` does) rather than url-encoded.
    pub inbound_multipart: bool,
    /// Use the `h:Message-Id` a send sets as the message id (else make one up).
    pub honour_message_id: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            api_key: "key-sim-0123456789abcdef".into(),
            domain: "mg.sim.weft.example".into(),
            webhook_signing_key: "sim-signing-key-0123456789abcdef".into(),
            events_url: None,
            open_events: false,
            inbound_multipart: true,
            honour_message_id: true,
        }
    }
}

/// State shared by the HTTP handlers and the public handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: SimulatorConfig,
    pub(crate) core: SimCore,
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
        let port = config.port;
        let shared = Arc::new(Shared { cfg: config, core });
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

    /// Where events go from now on (`None`: no events).
    pub fn set_events_url(&self, url: Option<String>) {
        self.shared.core.set_events_url(url);
    }

    /// Whether delivered mail also gets an `opened` event.
    pub fn set_open_events(&self, on: bool) {
        self.shared.core.set_open_events(on);
    }

    /// A connection spec pointing at this simulator, with its key, domain and signing key.
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::Mailgun);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.channels = vec![Channel::Email];
        spec.senders = vec![format!("notifications@{}", self.shared.cfg.domain)];
        spec.settings.insert(
            "domain".into(),
            serde_json::Value::String(self.shared.cfg.domain.clone()),
        );
        spec.credentials
            .insert("api_key", self.shared.cfg.api_key.clone());
        spec.credentials.insert(
            "webhook_signing_key",
            self.shared.cfg.webhook_signing_key.clone(),
        );
        spec
    }

    /// `{timestamp, token, signature}` as Mailgun signs them, for `timestamp` and a new token.
    pub fn signature(&self, timestamp: i64) -> serde_json::Value {
        events::signature(&self.shared, timestamp)
    }

    /// Posts one signed event with this `event-data` to `url` now.
    pub async fn post_event(
        &self,
        url: &str,
        event_data: serde_json::Value,
    ) -> Result<WebhookReply, reqwest::Error> {
        events::post_event(&self.shared, url, event_data).await
    }

    /// Posts a signed inbound route to `weft_inbound_url`: a mail from `from` (`Name <addr>`
    /// allowed) to `to`, optionally answering `in_reply_to` with `references`.
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
