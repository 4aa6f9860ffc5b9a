//! An in-process Vonage for tests, load tests and demos (feature `simulator`).
//!
//! It speaks both APIs with their real shapes:
//! - `POST /sms/json` (form or JSON): checks `api_key`/`api_secret` (body or Basic); answers
//!   HTTP 200 with one entry per part — a text over 160 GSM-7 septets (70 UCS-2 units with
//!   `type=unicode`) is cut into parts of 153 (67), each with its own `message-id`. Errors ride
//!   in the 200 too: bad credentials `status:"4"`, a throttle fault `status:"1"`
//!   ("Throughput Rate Exceeded - please wait \[ N \] and retry", N in ms — never an HTTP 429), a server
//!   fault `status:"5"`. Each accepted part gets signed DLRs (`sig`, the configured method) at
//!   `dlr_url`: `accepted`, then `delivered`.
//! - `POST /v1/messages` (JSON): checks the bearer JWT (RS256 against `public_key_pem` when
//!   given, else its shape and `application_id`) or Basic; answers 202 `{"message_uuid"}`,
//!   problem+json 401/422/429 (+ `Retry-After`)/500 otherwise. Status callbacks at `dlr_url`
//!   are JSON signed with an HS256 JWT carrying `payload_hash`: `submitted`, `delivered` (and
//!   `read` on WhatsApp).
//!
//! Special recipients (`to`, without `+`): [`REJECT_PREFIX`]`NN` refuses every part with status
//! `NN` (Messages API: 422); [`PART_FAIL_PREFIX`]`NN` accepts the first part and refuses the
//! others with `NN`; [`DLR_FAIL_PREFIX`]`NN` accepts, then fails in the DLR with `err-code`
//! `NN` (Messages API: `undeliverable`, error title `NN`).
//!
//! `dlr_before_response` posts the first callback before answering the send — the race a
//! gateway must survive. On demand: signed inbound SMS ([`Simulator::send_inbound_sms`], also
//! as concatenated parts) and WhatsApp messages ([`Simulator::send_inbound_messages_whatsapp`])
//! at `inbound_url`. The [`Callbacker`] behaviour (duplicate, reversed, unsigned, forged,
//! silent) applies to all of them.

mod messages;
mod sms;

use crate::jwt::{random_uuid, sign_hs256, webhook_claims};
use crate::verify::{sign_params, SigMethod};
use jsonwebtoken::DecodingKey;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;
use weft_simkit::{CallbackBehaviour, Callbacker, Faults, OutgoingCallback, Recorder, Running};

/// `to` = this + two digits `NN`: every part refused with SMS status `NN` (Messages API: 422).
pub const REJECT_PREFIX: &str = "4470099900";
/// `to` = this + `NN`: the first part accepted, the others refused with status `NN`.
pub const PART_FAIL_PREFIX: &str = "4470099920";
/// `to` = this + `NN`: accepted, then the DLR says `failed` with `err-code` `NN`.
pub const DLR_FAIL_PREFIX: &str = "4470099910";

/// How SMS API webhooks (DLRs, inbound) are posted — the dashboard's "HTTP method".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SmsWebhookFormat {
    /// `POST`, `application/x-www-form-urlencoded`.
    #[default]
    Form,
    /// `POST`, `application/json`.
    Json,
}

/// What the simulated account looks like and where it calls weft.
#[derive(Debug, Clone)]
pub struct SimulatorConfig {
    /// 0 = any free port (always on 127.0.0.1).
    pub port: u16,
    pub api_key: String,
    pub api_secret: String,
    /// Signs SMS webhooks (`sig`) and Messages webhooks (HS256 JWT).
    pub signature_secret: String,
    pub signature_method: SigMethod,
    pub application_id: String,
    /// The application's public key (PEM): when set, bearer JWTs must verify against it.
    pub public_key_pem: Option<String>,
    /// weft's `status` webhook URL (SMS DLRs and Messages API statuses), as set in a dashboard.
    pub dlr_url: Option<String>,
    /// weft's `inbound` webhook URL.
    pub inbound_url: Option<String>,
    pub sms_webhook_format: SmsWebhookFormat,
    /// Post the first callback of a send before answering it.
    pub dlr_before_response: bool,
}

impl Default for SimulatorConfig {
    fn default() -> Self {
        SimulatorConfig {
            port: 0,
            api_key: "simkey01".into(),
            api_secret: "sim-api-secret".into(),
            signature_secret: "sim-signature-secret".into(),
            signature_method: SigMethod::Sha256,
            application_id: "aaaaaaaa-bbbb-4ccc-8ddd-000000000001".into(),
            public_key_pem: None,
            dlr_url: None,
            inbound_url: None,
            sms_webhook_format: SmsWebhookFormat::Form,
            dlr_before_response: false,
        }
    }
}

/// What became of an inbound message the simulator posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundDelivery {
    /// The `messageId` / `message_uuid` it carried.
    pub provider_message_id: String,
    /// weft's final HTTP status; `None` if nothing was posted (no `inbound_url`, `Silent`) or
    /// weft never answered.
    pub http_status: Option<u16>,
}

struct Shared {
    cfg: SimulatorConfig,
    decoding_key: Option<DecodingKey>,
    dlr_before_response: AtomicBool,
    faults: Faults,
    recorder: Recorder,
    callbacks: Arc<Callbacker>,
    seq: AtomicU64,
}

/// A running simulator; stops when dropped.
pub struct Simulator {
    running: Running,
    shared: Arc<Shared>,
}

impl Simulator {
    pub async fn start(config: SimulatorConfig) -> std::io::Result<Simulator> {
        let decoding_key = match &config.public_key_pem {
            Some(pem) => Some(DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("public_key_pem: {e}"),
                )
            })?),
            None => None,
        };
        let shared = Arc::new(Shared {
            dlr_before_response: AtomicBool::new(config.dlr_before_response),
            cfg: config,
            decoding_key,
            faults: Faults::default(),
            recorder: Recorder::default(),
            callbacks: Arc::new(Callbacker::default()),
            seq: AtomicU64::new(1),
        });
        let router = axum::Router::new()
            .route("/sms/json", axum::routing::post(sms::send))
            .route("/v1/messages", axum::routing::post(messages::send))
            .with_state(shared.clone());
        let running = weft_simkit::serve(router, shared.cfg.port).await?;
        Ok(Simulator { running, shared })
    }

    /// `http://127.0.0.1:PORT` — the `base_url` of a connection using either API.
    pub fn base_url(&self) -> String {
        self.running.base_url()
    }

    pub fn config(&self) -> &SimulatorConfig {
        &self.shared.cfg
    }

    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    pub fn callbacks(&self) -> &Arc<Callbacker> {
        &self.shared.callbacks
    }

    pub fn recorder(&self) -> &Recorder {
        &self.shared.recorder
    }

    pub fn set_dlr_before_response(&self, on: bool) {
        self.shared.dlr_before_response.store(on, Ordering::Relaxed);
    }

    /// Posts a signed inbound SMS (`msisdn` = `from`, `to`, `text`; numbers with or without `+`).
    pub async fn send_inbound_sms(&self, from: &str, to: &str, text: &str) -> InboundDelivery {
        let id = self.shared.next_sms_id();
        let params = self.shared.inbound_sms_params(&id, from, to, text);
        self.shared
            .post_inbound(id, |url| self.shared.sms_callback(url, params))
            .await
    }

    /// Posts a long inbound SMS as concatenated parts (`concat=true`, `concat-ref`,
    /// `concat-total`, `concat-part`), one webhook per part, each with its own `messageId`.
    pub async fn send_inbound_sms_concat(
        &self,
        from: &str,
        to: &str,
        parts: &[&str],
    ) -> Vec<InboundDelivery> {
        let concat_ref = (self.shared.seq.fetch_add(1, Ordering::Relaxed) % 256).to_string();
        let mut out = Vec::new();
        for (i, part) in parts.iter().enumerate() {
            let id = self.shared.next_sms_id();
            let mut params = self.shared.inbound_sms_params(&id, from, to, part);
            params.push(("concat".into(), "true".into()));
            params.push(("concat-ref".into(), concat_ref.clone()));
            params.push(("concat-total".into(), parts.len().to_string()));
            params.push(("concat-part".into(), (i + 1).to_string()));
            out.push(
                self.shared
                    .post_inbound(id, |url| self.shared.sms_callback(url, params))
                    .await,
            );
        }
        out
    }

    /// Posts a signed Messages API inbound WhatsApp text; `context_uuid` makes it a reply to
    /// that message of ours.
    pub async fn send_inbound_messages_whatsapp(
        &self,
        from: &str,
        to: &str,
        text: &str,
        context_uuid: Option<&str>,
    ) -> InboundDelivery {
        let uuid = random_uuid();
        let (from, to) = (from.trim_start_matches('+'), to.trim_start_matches('+'));
        let mut body = serde_json::json!({
            "channel": "whatsapp",
            "message_uuid": uuid,
            "to": to,
            "from": from,
            "timestamp": iso_now(),
            "message_type": "text",
            "text": text,
            "profile": {"name": "Simulated Customer"},
        });
        if let (Some(ctx), Some(obj)) = (context_uuid, body.as_object_mut()) {
            obj.insert(
                "context".into(),
                serde_json::json!({"message_uuid": ctx, "message_from": to}),
            );
        }
        self.shared
            .post_inbound(uuid, |url| self.shared.messages_callback(url, &body))
            .await
    }
}

impl Shared {
    fn next_sms_id(&self) -> String {
        format!("0A{:015X}", self.seq.fetch_add(1, Ordering::Relaxed))
    }

    fn inbound_sms_params(
        &self,
        id: &str,
        from: &str,
        to: &str,
        text: &str,
    ) -> Vec<(String, String)> {
        let ty = if crate::gsm::encoding(text) == crate::gsm::Encoding::Gsm7 {
            "text"
        } else {
            "unicode"
        };
        let keyword = text.split_whitespace().next().unwrap_or("").to_uppercase();
        vec![
            ("msisdn".into(), from.trim_start_matches('+').into()),
            ("to".into(), to.trim_start_matches('+').into()),
            ("messageId".into(), id.into()),
            ("text".into(), text.into()),
            ("type".into(), ty.into()),
            ("keyword".into(), keyword),
            ("message-timestamp".into(), vonage_now()),
        ]
    }

    async fn post_inbound(
        &self,
        id: String,
        make: impl FnOnce(&str) -> OutgoingCallback,
    ) -> InboundDelivery {
        let behaviour = self.callbacks.behaviour();
        let http_status = match &self.cfg.inbound_url {
            Some(url) if behaviour != CallbackBehaviour::Silent => {
                let call = make(url);
                let first = self.callbacks.deliver(&call).await;
                if behaviour == CallbackBehaviour::Duplicate {
                    self.callbacks.deliver(&call).await
                } else {
                    first
                }
            }
            _ => None,
        };
        InboundDelivery {
            provider_message_id: id,
            http_status,
        }
    }

    /// An SMS API webhook: `api-key`, `timestamp`, `nonce` and `sig` added, posted as the
    /// configured format; unsigned or forged per the callback behaviour.
    fn sms_callback(&self, url: &str, mut params: Vec<(String, String)>) -> OutgoingCallback {
        params.push(("api-key".into(), self.cfg.api_key.clone()));
        params.push(("timestamp".into(), now_unix().to_string()));
        params.push(("nonce".into(), random_uuid()));
        match self.callbacks.behaviour() {
            CallbackBehaviour::Unsigned => {}
            b => {
                let sig = sign_params(
                    self.cfg.signature_method,
                    self.cfg.signature_secret.as_bytes(),
                    &params,
                );
                params.push((
                    "sig".into(),
                    if b == CallbackBehaviour::Forged {
                        spoil(&sig)
                    } else {
                        sig
                    },
                ));
            }
        }
        let (content_type, body) = match self.cfg.sms_webhook_format {
            SmsWebhookFormat::Form => (
                "application/x-www-form-urlencoded",
                form_urlencoded::Serializer::new(String::new())
                    .extend_pairs(params.iter())
                    .finish()
                    .into_bytes(),
            ),
            SmsWebhookFormat::Json => {
                let obj: serde_json::Map<String, serde_json::Value> = params
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect();
                (
                    "application/json",
                    serde_json::Value::Object(obj).to_string().into_bytes(),
                )
            }
        };
        OutgoingCallback {
            url: url.to_string(),
            content_type,
            body,
            headers: Vec::new(),
            signature_header: None,
        }
    }

    /// A Messages API webhook: JSON with `Authorization: Bearer <HS256 JWT>` over its hash.
    fn messages_callback(&self, url: &str, body: &serde_json::Value) -> OutgoingCallback {
        let bytes = body.to_string().into_bytes();
        let claims = webhook_claims(
            &self.cfg.api_key,
            &self.cfg.application_id,
            now_unix(),
            &bytes,
        );
        let token = sign_hs256(self.cfg.signature_secret.as_bytes(), &claims);
        let headers = match self.callbacks.behaviour() {
            CallbackBehaviour::Unsigned => Vec::new(),
            CallbackBehaviour::Forged => {
                let (signed, sig) = token.rsplit_once('.').unwrap_or((&token, ""));
                vec![(
                    "Authorization".to_string(),
                    format!("Bearer {signed}.{}", spoil(sig)),
                )]
            }
            _ => vec![("Authorization".to_string(), format!("Bearer {token}"))],
        };
        OutgoingCallback {
            url: url.to_string(),
            content_type: "application/json",
            body: bytes,
            headers,
            signature_header: None,
        }
    }

    /// Sends a send's callbacks: the first one before returning when `dlr_before_response` is
    /// on (bounded by a 10 s wait), the rest in the background.
    async fn dispatch(&self, mut calls: Vec<OutgoingCallback>) {
        if calls.is_empty() {
            return;
        }
        let behaviour = self.callbacks.behaviour();
        if self.dlr_before_response.load(Ordering::Relaxed)
            && !matches!(
                behaviour,
                CallbackBehaviour::Silent | CallbackBehaviour::Reversed
            )
        {
            let first = calls.remove(0);
            let _ =
                tokio::time::timeout(Duration::from_secs(10), self.callbacks.deliver(&first)).await;
            if behaviour == CallbackBehaviour::Duplicate {
                let cb = self.callbacks.clone();
                tokio::spawn(async move { cb.deliver(&first).await });
            }
        }
        self.callbacks.spawn_sequence(calls);
    }
}

/// Changes the first character: same shape, wrong value (hex or base64url alike).
fn spoil(sig: &str) -> String {
    let mut chars: Vec<char> = sig.chars().collect();
    if let Some(c) = chars.first_mut() {
        *c = if *c == '0' { '1' } else { '0' };
    }
    chars.into_iter().collect()
}

fn now_unix() -> i64 {
    OffsetDateTime::now_utc().unix_timestamp()
}

/// `YYYY-MM-DD HH:MM:SS` (UTC), as in `message-timestamp`.
fn vonage_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// `YYMMDDHHMM` (UTC), as in `scts`.
fn scts_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// RFC 3339 UTC with milliseconds, as in Messages API webhooks.
fn iso_now() -> String {
    let t = OffsetDateTime::now_utc();
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second(),
        t.millisecond()
    )
}

/// The two digits after a special prefix, if `to` starts with it.
fn special(to: &str, prefix: &str) -> Option<String> {
    let rest = to
        .strip_prefix(prefix)
        .filter(|r| r.len() == 2 && r.chars().all(|c| c.is_ascii_digit()))?;
    let code = rest.trim_start_matches('0');
    Some(if code.is_empty() {
        "0".to_string()
    } else {
        code.to_string()
    })
}
