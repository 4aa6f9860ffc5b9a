//! An in-process Telegram Bot API (feature `simulator`) for tests, load tests and the demo.
//!
//! It speaks the shapes weft uses: `POST /bot{token}/sendMessage` (JSON or form) answering the
//! envelope `{"ok":true,"result":<Message>}` or `{"ok":false,"error_code","description",
//! "parameters":{"retry_after"}}`; `getMe`; `setWebhook` (sets the webhook URL and secret, as
//! on Telegram). A wrong token is `401 Unauthorized`. Faults from simkit [`Faults`]: 5xx as
//! `500 Internal Server Error`, throttles as `429 Too Many Requests: retry after N` with
//! `parameters.retry_after`, timeouts. Message ids count per chat, as on Telegram.
//!
//! Special chats (see the constants) answer 403 blocked / 403 deactivated / 400 chat not found;
//! a chat blocked with [`Simulator::send_block`] answers 403 blocked until unblocked.
//!
//! Each accepted send is recorded under `"{chat_id}:{message_id}"`. Telegram carries no
//! correlation value, so `weft_message_id` is `None`: count by provider id or `to`. Bots get no
//! delivery receipts, so there are no status callbacks.
//!
//! On demand it posts updates to weft with the secret-token header (or without / a wrong one,
//! per the simkit callback behaviour): a message (optionally a reply), a block, an unblock.

mod api;
mod updates;

pub use updates::WebhookReply;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::AtomicI64;
use std::sync::{Arc, Mutex};
use weft_provider::{Channel, ConnectionSpec, ProviderKind};
use weft_simkit::{Callbacker, Faults, Recorder, Running};

/// A chat whose user blocked the bot: `403 Forbidden: bot was blocked by the user`.
pub const BLOCKED_CHAT: i64 = 403403;
/// A chat whose user deleted the account: `403 Forbidden: user is deactivated`.
pub const DEACTIVATED_CHAT: i64 = 403404;
/// A chat that does not exist: `400 Bad Request: chat not found`.
pub const UNKNOWN_CHAT: i64 = 400400;

/// How the simulator is set up.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// `<bot id>:<secret>`; the bot id is the number before the colon.
    pub bot_token: String,
    /// Sent as `X-Telegram-Bot-Api-Secret-Token` (a `setWebhook` call may replace it).
    pub secret_token: String,
    pub bot_username: String,
    /// weft's webhook URL (`{public_url}/webhooks/telegram/{connection}/updates`); a
    /// `setWebhook` call may set it too. `None`: updates cannot be posted.
    pub webhook_url: Option<String>,
    /// First `update_id` handed out.
    pub first_update_id: i64,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            bot_token: "7000000001:AAHsim-bot-token_0123456789abcdef".into(),
            secret_token: "weft_tg-sim-secret-0123456789".into(),
            bot_username: "weft_sim_bot".into(),
            webhook_url: None,
            first_update_id: 174_114_371,
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
    pub(crate) webhook: Mutex<Webhook>,
    /// Last message id per chat.
    pub(crate) chats: Mutex<HashMap<i64, i64>>,
    /// `@username` → chat id.
    pub(crate) usernames: Mutex<HashMap<String, i64>>,
    pub(crate) blocked: Mutex<HashSet<i64>>,
    pub(crate) next_update: AtomicI64,
    pub(crate) client: reqwest::Client,
}

/// Where updates go.
#[derive(Debug, Clone, Default)]
pub(crate) struct Webhook {
    pub(crate) url: Option<String>,
    pub(crate) secret: String,
}

impl Shared {
    pub(crate) fn bot_id(&self) -> i64 {
        self.cfg
            .bot_token
            .split(':')
            .next()
            .and_then(|id| id.parse().ok())
            .unwrap_or(1)
    }

    /// The next message id in `chat`.
    pub(crate) fn next_message_id(&self, chat: i64) -> i64 {
        match self.chats.lock() {
            Ok(mut g) => {
                let n = g.entry(chat).or_insert(0);
                *n += 1;
                *n
            }
            Err(_) => 1,
        }
    }

    pub(crate) fn message_exists(&self, chat: i64, id: i64) -> bool {
        self.chats
            .lock()
            .map(|g| g.get(&chat).is_some_and(|last| id >= 1 && id <= *last))
            .unwrap_or(false)
    }

    pub(crate) fn is_blocked(&self, chat: i64) -> bool {
        self.blocked
            .lock()
            .map(|g| g.contains(&chat))
            .unwrap_or(false)
    }

    pub(crate) fn set_blocked(&self, chat: i64, on: bool) {
        if let Ok(mut g) = self.blocked.lock() {
            if on {
                g.insert(chat);
            } else {
                g.remove(&chat);
            }
        }
    }

    pub(crate) fn webhook(&self) -> Webhook {
        self.webhook.lock().map(|g| g.clone()).unwrap_or_default()
    }
}

/// Why an on-demand post to weft did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("no webhook URL is set")]
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
            webhook: Mutex::new(Webhook {
                url: config.webhook_url.clone(),
                secret: config.secret_token.clone(),
            }),
            next_update: AtomicI64::new(config.first_update_id),
            cfg: config,
            faults: Faults::default(),
            recorder: Recorder::default(),
            callbacks: Arc::new(Callbacker::default()),
            chats: Mutex::new(HashMap::new()),
            usernames: Mutex::new(HashMap::new()),
            blocked: Mutex::new(HashSet::new()),
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

    /// The behaviour (`Unsigned`, `Forged`) applies to on-demand updates; there are no status
    /// callbacks to delay or reorder.
    pub fn callbacks(&self) -> &Arc<Callbacker> {
        &self.shared.callbacks
    }

    /// Accepted sends: provider id `"{chat_id}:{message_id}"`, no weft message id.
    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.cfg
    }

    /// The bot's user id (the number before the token's colon).
    pub fn bot_id(&self) -> i64 {
        self.shared.bot_id()
    }

    /// Where updates go from now on (as `setWebhook` would set it).
    pub fn set_webhook_url(&self, url: Option<String>) {
        if let Ok(mut g) = self.shared.webhook.lock() {
            g.url = url;
        }
    }

    /// A connection spec pointing at this simulator.
    pub fn connection_spec(&self, id: &str) -> ConnectionSpec {
        let mut spec = ConnectionSpec::new(id, ProviderKind::Telegram);
        spec.base_url = url::Url::parse(&self.base_url()).ok();
        spec.channels = vec![Channel::Telegram];
        spec.credentials
            .insert("bot_token", self.shared.cfg.bot_token.clone());
        spec.credentials
            .insert("secret_token", self.shared.webhook().secret);
        spec.settings.insert(
            "bot_username".into(),
            self.shared.cfg.bot_username.clone().into(),
        );
        spec
    }

    /// Posts a `message` update from the private chat `chat_id` (the user's id), optionally
    /// replying to `reply_to_message_id` (a message of that chat, e.g. one weft sent).
    pub async fn send_update_message(
        &self,
        chat_id: i64,
        text: &str,
        reply_to_message_id: Option<i64>,
    ) -> Result<WebhookReply, SimError> {
        let update = updates::message(&self.shared, chat_id, text, reply_to_message_id, false);
        updates::post(&self.shared, update).await
    }

    /// Posts a forwarded `message` update from `chat_id`.
    pub async fn send_forwarded_message(
        &self,
        chat_id: i64,
        text: &str,
    ) -> Result<WebhookReply, SimError> {
        let update = updates::message(&self.shared, chat_id, text, None, true);
        updates::post(&self.shared, update).await
    }

    /// The user of `chat_id` blocks the bot: a `my_chat_member` update (`member → kicked`), and
    /// sends to the chat answer 403 from now on.
    pub async fn send_block(&self, chat_id: i64) -> Result<WebhookReply, SimError> {
        self.shared.set_blocked(chat_id, true);
        let update = updates::member(&self.shared, chat_id, "member", "kicked");
        updates::post(&self.shared, update).await
    }

    /// The user unblocks the bot (`kicked → member`).
    pub async fn send_unblock(&self, chat_id: i64) -> Result<WebhookReply, SimError> {
        self.shared.set_blocked(chat_id, false);
        let update = updates::member(&self.shared, chat_id, "kicked", "member");
        updates::post(&self.shared, update).await
    }

    /// Posts any update object; its `update_id` is set if missing.
    pub async fn post_update(&self, update: serde_json::Value) -> Result<WebhookReply, SimError> {
        updates::post(&self.shared, update).await
    }
}
