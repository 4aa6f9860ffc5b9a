//! Sends status callbacks and inbound messages to weft, as the provider would: signed, with
//! retries while weft is unreachable, and optionally misbehaving.

use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use std::sync::atomic::{AtomicU32, AtomicU8, Ordering};
use std::time::Duration;

/// One callback's time limit.
const TIMEOUT: Duration = Duration::from_secs(15);

/// How callbacks misbehave; settable at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackBehaviour {
    /// Signed, once each, in order.
    Normal,
    /// Every callback twice.
    Duplicate,
    /// The callbacks of one message in reverse order.
    Reversed,
    /// Without the signature header.
    Unsigned,
    /// With a wrong signature.
    Forged,
    /// Sends no callbacks at all.
    Silent,
}

impl CallbackBehaviour {
    fn to_u8(self) -> u8 {
        self as u8
    }
    fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Duplicate,
            2 => Self::Reversed,
            3 => Self::Unsigned,
            4 => Self::Forged,
            5 => Self::Silent,
            _ => Self::Normal,
        }
    }
}

/// One HTTP call to weft. The simulator signs it; the callbacker may strip or spoil the
/// signature header per [`CallbackBehaviour`].
#[derive(Debug, Clone)]
pub struct OutgoingCallback {
    pub url: String,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Headers including the signature header.
    pub headers: Vec<(String, String)>,
    /// The name of the signature header (removed for `Unsigned`, spoilt for `Forged`).
    pub signature_header: Option<String>,
}

/// Delivers callbacks with retries: until weft answers 2xx/4xx, backing off up to
/// `max_retry_window`.
#[derive(Debug)]
pub struct Callbacker {
    /// `http://` targets (weft on 127.0.0.1 in every test and load run): hyper's pooled
    /// client, which takes the URL as an `http::Uri` (reqwest parses each URL three times
    /// with the `url` crate: a fifth of a simulator's instructions under load).
    plain: Client<HttpConnector, Full<bytes::Bytes>>,
    /// Any other scheme (`https://`).
    client: reqwest::Client,
    behaviour: AtomicU8,
    delay_ms: AtomicU32,
    max_attempts: AtomicU32,
    delivered: AtomicU32,
    failed: AtomicU32,
}

impl Default for Callbacker {
    fn default() -> Self {
        Callbacker {
            plain: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(256)
                .build_http(),
            client: reqwest::Client::builder()
                .timeout(TIMEOUT)
                .pool_max_idle_per_host(256)
                // weft answers callbacks itself: a redirect would be a bug to surface, not
                // to follow. (reqwest still runs its redirect layer, URL parse included.)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
            behaviour: AtomicU8::new(0),
            delay_ms: AtomicU32::new(0),
            max_attempts: AtomicU32::new(40),
            delivered: AtomicU32::new(0),
            failed: AtomicU32::new(0),
        }
    }
}

impl Callbacker {
    pub fn set_behaviour(&self, b: CallbackBehaviour) {
        self.behaviour.store(b.to_u8(), Ordering::Relaxed);
    }
    pub fn behaviour(&self) -> CallbackBehaviour {
        CallbackBehaviour::from_u8(self.behaviour.load(Ordering::Relaxed))
    }
    /// Delay between a send and its first callback, and between callbacks of one message.
    pub fn set_delay(&self, d: Duration) {
        self.delay_ms.store(d.as_millis() as u32, Ordering::Relaxed);
    }
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed) as u64)
    }
    /// Attempts per callback while weft is unreachable or answers 5xx (0.25 s apart, growing
    /// to 1 s): the default covers a restart of about half a minute.
    pub fn set_max_attempts(&self, n: u32) {
        self.max_attempts.store(n.max(1), Ordering::Relaxed);
    }
    /// Callbacks weft answered 2xx.
    pub fn delivered(&self) -> u32 {
        self.delivered.load(Ordering::Relaxed)
    }
    /// Callbacks that were refused (4xx) or given up on.
    pub fn failed(&self) -> u32 {
        self.failed.load(Ordering::Relaxed)
    }

    /// Sends a sequence of callbacks for one message in the background, honouring the
    /// behaviour (order, duplicates, signatures) and the delay.
    pub fn spawn_sequence(self: &std::sync::Arc<Self>, mut calls: Vec<OutgoingCallback>) {
        let this = self.clone();
        let behaviour = self.behaviour();
        if behaviour == CallbackBehaviour::Silent {
            return;
        }
        if behaviour == CallbackBehaviour::Reversed {
            calls.reverse();
        }
        tokio::spawn(async move {
            for call in calls {
                let d = this.delay();
                if !d.is_zero() {
                    tokio::time::sleep(d).await;
                }
                let call = spoil(call, behaviour);
                this.deliver(&call).await;
                if behaviour == CallbackBehaviour::Duplicate {
                    this.deliver(&call).await;
                }
            }
        });
    }

    /// Delivers one callback now, with retries; returns the final HTTP status, if any.
    pub async fn deliver(&self, call: &OutgoingCallback) -> Option<u16> {
        let attempts = self.max_attempts.load(Ordering::Relaxed);
        let mut backoff = Duration::from_millis(250);
        for attempt in 1..=attempts {
            match self.send_once(call).await {
                Some(status) if (200..300).contains(&status) => {
                    self.delivered.fetch_add(1, Ordering::Relaxed);
                    return Some(status);
                }
                Some(status) if (400..500).contains(&status) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    return Some(status);
                }
                _ if attempt < attempts => {
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Some(status) => {
                    self.failed.fetch_add(1, Ordering::Relaxed);
                    return Some(status);
                }
                None => {}
            }
        }
        self.failed.fetch_add(1, Ordering::Relaxed);
        None
    }

    /// One attempt: the answer's status, or `None` (unreachable, timed out, bad URL).
    async fn send_once(&self, call: &OutgoingCallback) -> Option<u16> {
        let mut req = http::Request::post(call.url.as_str())
            .header(http::header::CONTENT_TYPE, call.content_type);
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req.body(bytes::Bytes::from(call.body.clone())).ok()?;
        if req.uri().scheme() != Some(&http::uri::Scheme::HTTP) {
            let req = reqwest::Request::try_from(req).ok()?;
            return self
                .client
                .execute(req)
                .await
                .ok()
                .map(|r| r.status().as_u16());
        }
        let answer = async {
            let resp = self.plain.request(req.map(Full::new)).await.ok()?;
            let status = resp.status().as_u16();
            // Read the (short) answer so the connection goes back to the pool.
            let _ = resp.into_body().collect().await;
            Some(status)
        };
        tokio::time::timeout(TIMEOUT, answer).await.ok().flatten()
    }
}

fn spoil(mut call: OutgoingCallback, behaviour: CallbackBehaviour) -> OutgoingCallback {
    let Some(name) = call.signature_header.clone() else {
        return call;
    };
    match behaviour {
        CallbackBehaviour::Unsigned => call.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(&name)),
        CallbackBehaviour::Forged => {
            for (k, v) in call.headers.iter_mut() {
                if k.eq_ignore_ascii_case(&name) {
                    // Flip the last meaningful character: same shape, wrong value.
                    let mut chars: Vec<char> = v.chars().collect();
                    if let Some(c) = chars.iter_mut().rev().find(|c| c.is_ascii_alphanumeric()) {
                        *c = if *c == 'A' { 'B' } else { 'A' };
                    }
                    *v = chars.into_iter().collect();
                }
            }
        }
        _ => {}
    }
    call
}
