//! An in-process WhatsApp Cloud API (feature `simulator`) for tests, load tests and the demo.
//!
//! It speaks the Graph shapes weft uses: `POST /{version}/{phone-number-id}/messages` with a
//! Bearer token (`190` OAuthException on a wrong one), `messaging_product` required (`100`),
//! `200 {"messaging_product","contacts":[{input,wa_id}],"messages":[{id:"wamid.…"}]}`, errors
//! `{"error":{message,type,code,error_data,fbtrace_id}}`; `GET /{version}/{phone-number-id}`
//! for health. Faults from simkit [`Faults`]: 5xx is code `131000` on a 500, a throttle is code
//! `130429` on a **400** (Meta does not use 429), timeouts.
//!
//! Each accepted send is recorded under its wamid, with weft's message id read from
//! `biz_opaque_callback_data`; Meta echoes that field in the status webhooks, and so does this
//! simulator. As on Meta, the callback URL is configured once ([`SimulatorConfig::webhook_url`],
//! [`Simulator::set_webhook_url`]), not per message. Statuses `sent → delivered` (`→ read` if
//! enabled) are posted signed with `X-Hub-Signature-256` through the simkit [`Callbacker`]
//! (delay, duplicates, reordering, unsigned and forged modes apply).
//!
//! Special recipients (see the constants): window closed (131047), not on WhatsApp (131026),
//! marketing opt-out (131050) end in a `failed` status webhook, as on Meta, or — with
//! `synchronous_failures` — in a synchronous error; the pair-limit number always answers 131056.
//!
//! On demand it posts signed inbound text messages (quoting or forwarded) and runs the `GET`
//! subscription handshake against weft.

mod api;
mod callbacks;

pub use callbacks::WebhookReply;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use weft_provider::{Channel, ConnectionSpec, ProviderKind};
use weft_simkit::{Callbacker, Faults, Recorder, Running};

/// A recipient outside the 24 h window: error 131047.
pub const WINDOW_CLOSED_NUMBER: &str = "15550000047";
/// A recipient that is not a WhatsApp user: error 131026.
pub const NOT_ON_WHATSAPP_NUMBER: &str = "15550000026";
/// A recipient who stopped marketing messages: error 131050.
pub const OPTED_OUT_NUMBER: &str = "15550000050";
/// A recipient whose pair rate limit is always hit: synchronous error 131056.
pub const PAIR_LIMIT_NUMBER: &str = "15550000056";

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub access_token: String,
    /// Signs every webhook.
    pub app_secret: String,
    /// Sent in the `GET` handshake.
    pub verify_token: String,
    pub phone_number_id: String,
    /// Digits, as Meta sends it in `metadata`.
    pub display_phone_number: String,
    pub waba_id: String,
    /// weft's webhook URL as set in the Meta dashboard
    /// (`{public_url}/webhooks/whatsapp_cloud/{connection}/webhook`). `None`: no callbacks.
    pub webhook_url: Option<String>,
    /// Delivered messages also get a `read` status.
    pub read_receipts: bool,
    /// Special recipients fail at send time instead of with a `failed` status webhook.
    pub synchronous_failures: bool,
    /// `contacts[].profile.name` of simulated inbound messages.
    pub profile_name: String,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            access_token: "EAAGsim-access-token-0123456789".into(),
            app_secret: "sim-app-secret-0123456789abcdef".into(),
            verify_token: "sim-verify-token".into(),
            phone_number_id: "106540352242922".into(),
            display_phone_number: "15550783881".into(),
            waba_id: "102290129340398".into(),
            webhook_url: None,
            read_receipts: false,
            synchronous_failures: false,
            profile_name: "Sim User".into(),
        }
    }
}

/// State shared by the HTTP handlers and the public handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: SimulatorConfig,
    pub(crate) faults: Faults,
    pub(crate) recorder: Recorder,
    pub(crate) callbacks: Arc<Callbacker>,
    webhook_url: Mutex<Option<String>>,
    read_receipts: AtomicBool,
    synchronous_failures: AtomicBool,
    pub(crate) counter: AtomicU64,
    pub(crate) client: reqwest::Client,
}

impl Shared {
    pub(crate) fn webhook_url(&self) -> Option<String> {
        self.webhook_url.lock().ok().and_then(|g| g.clone())
    }
    pub(crate) fn read_receipts(&self) -> bool {
        self.read_receipts.load(Ordering::Relaxed)
    }
    pub(crate) fn synchronous_failures(&self) -> bool {
        self.synchronous_failures.load(Ordering::Relaxed)
    }
}

/// Why an on-demand post to weft did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no webhook URL is configured")]
    NoWebhookUrl,
    #[error("posting to weft failed: {0}")]
    Http(#[from] reqwest::Error),
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    shared: Arc<Shared>,
    running: Running,
}

impl Simulator {
    /// Starts the server on 127.0.0.1.
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let client = reqwest::Client::builder()
            .timeout(std::time::Duration::from_secs(15))
            .build()
            .map_err(std::io::Error::other)?;
        let port = config.port;
        let shared = Arc::new(Shared {
            webhook_url: Mutex::new(config.webhook_url.clone()),
            read_receipts: AtomicBool::new(config.read_receipts),
            synchronous_failures: AtomicBool::new(config.synchronous_failures),
            cfg: config,
            faults: Faults::default(),
            recorder: Recorder::default(),
            callbacks: Arc::new(Callbacker::default()),
            counter: AtomicU64::new(0),
            client,
        });
        let running = weft_simkit::serve(api::router(shared.clone()), port).await?;
        Ok(Simulator { shared, running })
    }

    /// `http://127.0.0.1:PORT`: the connection's `base_url`.
    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// Callback behaviour and delay.
    pub fn callbacks(&self) -> &Arc<Callbacker> {
        &self.shared.callbacks
    }

    /// Accepted sends: provider id = wamid, weft message id from `biz_opaque_callback_data`.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.cfg
    }

    /// Where statuses and inbound messages go from now on (`None` stops them).
    pub fn set_webhook_url(&self, url: Option<String>) {
        if let Ok(mut g) = self.shared.webhook_url.lock() {
            *g = url;
        }
    }

    /// Delivered messages also get a `read` status from now on.
    pub fn set_read_receipts(&self, on: bool) {
        self.shared.read_receipts.store(on, Ordering::Relaxed);
    }

    /// Special recipients fail at send time (error JSON) instead of by status webhook.
    pub fn set_synchronous_failures(&self, on: bool) {
        self.shared
            .synchronous_failures
            .store(on, Ordering::Relaxed);
    }

    /// A connection spec pointing at this simulator.
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::WhatsappCloud);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.senders = vec![self.shared.cfg.phone_number_id.clone()];
        spec.channels = vec![Channel::Whatsapp];
        spec.credentials
            .insert("access_token", self.shared.cfg.access_token.clone());
        spec.credentials
            .insert("app_secret", self.shared.cfg.app_secret.clone());
        spec.credentials
            .insert("verify_token", self.shared.cfg.verify_token.clone());
        spec.settings.insert(
            "phone_number_id".into(),
            self.shared.cfg.phone_number_id.clone().into(),
        );
        spec
    }

    /// Posts a signed inbound text from `from_wa_id` (digits) to the webhook URL, optionally
    /// quoting `context_wamid` or marked forwarded. The reply names the new message's wamid.
    pub async fn send_inbound_text(
        &self,
        from_wa_id: &str,
        text: &str,
        context_wamid: Option<&str>,
        forwarded: bool,
    ) -> Result<WebhookReply, SimError> {
        let (wamid, body) =
            callbacks::inbound_text(&self.shared, from_wa_id, text, context_wamid, forwarded);
        let mut reply = callbacks::post_signed(&self.shared, body).await?;
        reply.wamid = Some(wamid);
        Ok(reply)
    }

    /// Posts any webhook body, signed (per the callback behaviour), to the webhook URL.
    pub async fn post_webhook(&self, body: serde_json::Value) -> Result<WebhookReply, SimError> {
        callbacks::post_signed(&self.shared, body.to_string().into_bytes()).await
    }

    /// Runs Meta's `GET` subscription handshake against the webhook URL with `verify_token`
    /// (the configured one if `None`); weft should answer 200 with `challenge`.
    pub async fn verify_subscription(
        &self,
        verify_token: Option<&str>,
        challenge: &str,
    ) -> Result<WebhookReply, SimError> {
        let url = self.shared.webhook_url().ok_or(SimError::NoWebhookUrl)?;
        let token = verify_token.unwrap_or(&self.shared.cfg.verify_token);
        let resp = self
            .shared
            .client
            .get(url)
            .query(&[
                ("hub.mode", "subscribe"),
                ("hub.verify_token", token),
                ("hub.challenge", challenge),
            ])
            .send()
            .await?;
        let status = resp.status().as_u16();
        let body = resp.text().await?;
        Ok(WebhookReply {
            status,
            body,
            wamid: None,
        })
    }
}
