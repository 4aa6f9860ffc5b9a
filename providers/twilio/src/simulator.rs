//! An in-process Twilio (feature `simulator`) for tests, load tests and the demo.
//!
//! It speaks the REST shapes weft uses — `POST /2010-04-01/Accounts/{AC}/Messages.json` and
//! `…/Calls.json`, form bodies, Basic auth (account or API key), `201` with the Message / Call
//! resource, legacy error JSON `{code,message,more_info,status}` — including the magic test
//! numbers of PROVIDERS.md §1 (`+1500555xxxx`). Each accepted send is recorded (weft's message
//! id from the `m` query parameter of its `StatusCallback`), then signed status callbacks go
//! to that URL through the simkit [`Callbacker`] (its delay, duplicates, reordering, unsigned
//! and forged modes apply): messages `sent → delivered` (or `undelivered` 30003 / `failed`
//! 30008, see [`MessageOutcome`]); calls `initiated → ringing → in-progress → completed` with
//! `CallDuration` (or busy / no-answer / failed, see [`CallOutcome`]), each only if asked for in
//! `StatusCallbackEvent`. Faults come from simkit [`Faults`]: 5xx as Twilio JSON 500, 429 with
//! code 20429 and `Retry-After`, timeouts.
//!
//! On demand it posts signed inbound SMS, WhatsApp messages (quoted or forwarded) and inbound
//! calls to weft, and returns what weft answered.

mod api;
mod callbacks;

pub use callbacks::WebhookReply;

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU8, Ordering};
use std::sync::Arc;
use weft_provider::{Channel, ConnectionSpec, ProviderKind};
use weft_simkit::{Callbacker, Faults, Recorder, Running};

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    pub account_sid: String,
    /// Signs callbacks and authenticates REST calls.
    pub auth_token: String,
    /// An API key accepted as the Basic user in place of the account.
    pub api_key_sid: Option<String>,
    pub api_key_secret: Option<String>,
    /// Field naming the quoted message of a WhatsApp reply (name unconfirmed).
    pub replied_sid_field: String,
    /// Field marking a forwarded WhatsApp message (name unconfirmed).
    pub forwarded_field: String,
    /// `CallDuration` reported when a simulated call completes.
    pub call_duration_seconds: u32,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            account_sid: "AC00000000000000000000000000000000".into(),
            auth_token: "sim-auth-token-0123456789abcdef".into(),
            api_key_sid: None,
            api_key_secret: None,
            replied_sid_field: "OriginalRepliedMessageSid".into(),
            forwarded_field: "Forwarded".into(),
            call_duration_seconds: 5,
        }
    }
}

/// How simulated messages end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageOutcome {
    /// `sent`, then `delivered`.
    #[default]
    Delivered,
    /// `sent`, then `undelivered` with `ErrorCode=30003` (unreachable handset).
    Undelivered,
    /// `failed` with `ErrorCode=30008` (unknown error).
    Failed,
}

/// How simulated outbound calls end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallOutcome {
    /// `initiated`, `ringing`, `in-progress`, `completed` (with `CallDuration`).
    #[default]
    Completed,
    /// `initiated`, `busy`.
    Busy,
    /// `initiated`, `ringing`, `no-answer`.
    NoAnswer,
    /// `failed`.
    Failed,
}

/// State shared by the HTTP handlers and the public handle.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) cfg: SimulatorConfig,
    pub(crate) faults: Faults,
    pub(crate) recorder: Recorder,
    pub(crate) callbacks: Arc<Callbacker>,
    message_outcome: AtomicU8,
    call_outcome: AtomicU8,
    whatsapp_read: AtomicBool,
    call_duration: AtomicU32,
    pub(crate) client: reqwest::Client,
}

impl Shared {
    pub(crate) fn message_outcome(&self) -> MessageOutcome {
        match self.message_outcome.load(Ordering::Relaxed) {
            1 => MessageOutcome::Undelivered,
            2 => MessageOutcome::Failed,
            _ => MessageOutcome::Delivered,
        }
    }
    pub(crate) fn call_outcome(&self) -> CallOutcome {
        match self.call_outcome.load(Ordering::Relaxed) {
            1 => CallOutcome::Busy,
            2 => CallOutcome::NoAnswer,
            3 => CallOutcome::Failed,
            _ => CallOutcome::Completed,
        }
    }
    pub(crate) fn whatsapp_read(&self) -> bool {
        self.whatsapp_read.load(Ordering::Relaxed)
    }
    pub(crate) fn call_duration(&self) -> u32 {
        self.call_duration.load(Ordering::Relaxed)
    }
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
            call_duration: AtomicU32::new(config.call_duration_seconds),
            cfg: config,
            faults: Faults::default(),
            recorder: Recorder::default(),
            callbacks: Arc::new(Callbacker::default()),
            message_outcome: AtomicU8::new(0),
            call_outcome: AtomicU8::new(0),
            whatsapp_read: AtomicBool::new(false),
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

    /// Callback behaviour and delay (`set_delay` is the "callback delay" setting).
    pub fn callbacks(&self) -> &Arc<Callbacker> {
        &self.shared.callbacks
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.cfg
    }

    pub fn account_sid(&self) -> &str {
        &self.shared.cfg.account_sid
    }

    pub fn auth_token(&self) -> &str {
        &self.shared.cfg.auth_token
    }

    /// How messages sent from now on end.
    pub fn set_message_outcome(&self, o: MessageOutcome) {
        let v = match o {
            MessageOutcome::Delivered => 0,
            MessageOutcome::Undelivered => 1,
            MessageOutcome::Failed => 2,
        };
        self.shared.message_outcome.store(v, Ordering::Relaxed);
    }

    /// How calls placed from now on end.
    pub fn set_call_outcome(&self, o: CallOutcome) {
        let v = match o {
            CallOutcome::Completed => 0,
            CallOutcome::Busy => 1,
            CallOutcome::NoAnswer => 2,
            CallOutcome::Failed => 3,
        };
        self.shared.call_outcome.store(v, Ordering::Relaxed);
    }

    /// Delivered WhatsApp messages also get a `read` callback (off by default).
    pub fn set_whatsapp_read_receipts(&self, on: bool) {
        self.shared.whatsapp_read.store(on, Ordering::Relaxed);
    }

    /// `CallDuration` of completed calls from now on.
    pub fn set_call_duration(&self, seconds: u32) {
        self.shared.call_duration.store(seconds, Ordering::Relaxed);
    }

    /// A connection spec pointing at this simulator (sender `+15005550006`, all channels).
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::Twilio);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.senders = vec!["+15005550006".into()];
        spec.channels = vec![Channel::Sms, Channel::Whatsapp, Channel::Voice];
        spec.credentials
            .insert("account_sid", self.shared.cfg.account_sid.clone());
        spec.credentials
            .insert("auth_token", self.shared.cfg.auth_token.clone());
        spec
    }

    /// Posts a signed inbound SMS to `weft_inbound_url`; `extra` adds or replaces fields
    /// (`MediaUrl0`, `NumMedia`, …). Returns what weft answered.
    pub async fn send_inbound_sms(
        &self,
        weft_inbound_url: &str,
        from: &str,
        to: &str,
        body: &str,
        extra: &[(&str, &str)],
    ) -> Result<WebhookReply, reqwest::Error> {
        let params = callbacks::inbound_sms(&self.shared, from, to, body, extra);
        callbacks::post_signed(&self.shared, weft_inbound_url, params).await
    }

    /// Posts a signed inbound WhatsApp message (`from`/`to` as `+E164`, the `whatsapp:` prefix
    /// is added), optionally quoting a message or marked forwarded.
    pub async fn send_inbound_whatsapp(
        &self,
        weft_inbound_url: &str,
        from: &str,
        to: &str,
        body: &str,
        opts: WhatsappInbound<'_>,
    ) -> Result<WebhookReply, reqwest::Error> {
        let params = callbacks::inbound_whatsapp(&self.shared, from, to, body, &opts);
        callbacks::post_signed(&self.shared, weft_inbound_url, params).await
    }

    /// Rings weft's `voice` webhook with a signed inbound call; the reply carries the TwiML.
    pub async fn place_inbound_call(
        &self,
        weft_voice_url: &str,
        from: &str,
        to: &str,
    ) -> Result<WebhookReply, reqwest::Error> {
        let params = callbacks::inbound_call(&self.shared, from, to);
        callbacks::post_signed(&self.shared, weft_voice_url, params).await
    }
}

/// Options of a simulated inbound WhatsApp message.
#[derive(Debug, Clone, Copy, Default)]
pub struct WhatsappInbound<'a> {
    pub profile_name: Option<&'a str>,
    /// The sid of the message this one quotes.
    pub quoted_sid: Option<&'a str>,
    pub forwarded: bool,
    /// More fields to add or replace.
    pub extra: &'a [(&'a str, &'a str)],
}
