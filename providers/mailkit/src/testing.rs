//! Scaffolding for the e-mail adapters' integration tests (feature `testing`): the outbound
//! mail they send, a stand-in for weft's webhook route ([`Rig`]) that runs the adapter's own
//! `verify` + `parse` on what a simulator posts, and checks every e-mail adapter must pass.
//! Each adapter keeps its own table cases.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use axum::Router;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_provider::{
    Channel, DeliveryStatus, FailureReason, InboundEvent, OutboundMessage, Provider, StatusEvent,
    WebhookRequest,
};
use weft_testkit::SendExpect;

/// An e-mail to `to` with weft id `id`, attempt `attempt_id`, a subject and a text body.
pub fn email_message(
    id: &str,
    attempt_id: &str,
    to: &str,
    subject: &str,
    body: &str,
) -> OutboundMessage {
    OutboundMessage {
        message_id: id.into(),
        attempt_id: attempt_id.into(),
        channel: Channel::Email,
        to: to.into(),
        from: None,
        body: Some(body.into()),
        subject: Some(subject.into()),
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: String::new(),
    }
}

/// `e` with the provider code it must carry (an `Ok` stays as it is).
pub fn with_provider_code(e: SendExpect, provider_code: &str) -> SendExpect {
    match e {
        SendExpect::Err {
            retryable,
            code,
            reason,
            retry_after,
            ..
        } => SendExpect::Err {
            retryable,
            code,
            provider_code: Some(provider_code.to_string()),
            reason,
            retry_after,
        },
        ok => ok,
    }
}

/// Sends variants of `good` (a mail the adapter would send) that it must refuse before any
/// request: no subject, not e-mail, a phone number as recipient. `server` is the mock the
/// adapter points at; it must have received nothing.
pub async fn assert_refusals_never_reach(
    provider: &dyn Provider,
    server: &wiremock::MockServer,
    good: &OutboundMessage,
) {
    let mut no_subject = good.clone();
    no_subject.subject = None;
    let e = provider
        .send(&no_subject)
        .await
        .expect_err("a mail without a subject was sent");
    assert_eq!(e.detail(), "email needs a subject");
    assert_eq!(e.reason(), FailureReason::ProviderRejected);
    for channel in [Channel::Sms, Channel::Voice] {
        let mut other = good.clone();
        other.channel = channel;
        let e = provider
            .send(&other)
            .await
            .expect_err("a message on another channel was sent");
        assert_eq!(e.reason(), FailureReason::NoRoute, "{channel}");
    }
    let mut bad_to = good.clone();
    bad_to.to = "+15550001111".into();
    let e = provider
        .send(&bad_to)
        .await
        .expect_err("a mail to a phone number was sent");
    assert_eq!(e.reason(), FailureReason::InvalidAddress);
    assert!(server
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty());
}

/// `(raw status, status)` of each event, sorted, for comparing event sequences.
pub fn words(evs: &[StatusEvent]) -> Vec<(String, Option<DeliveryStatus>)> {
    let mut v: Vec<_> = evs
        .iter()
        .map(|e| (e.raw_status.clone(), e.status))
        .collect();
    v.sort_by_key(|(w, s)| (w.clone(), format!("{s:?}")));
    v
}

/// A stand-in for weft's `/webhooks/{provider}/{connection}/{kind}` route.
#[derive(Clone)]
pub struct Receiver {
    pub provider: Arc<dyn Provider>,
    /// What the adapter parsed from verified posts.
    pub events: Arc<Mutex<Vec<InboundEvent>>>,
    /// Posts that failed `verify`.
    pub rejected: Arc<Mutex<u32>>,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

async fn hook(
    State(r): State<Receiver>,
    Path(kind): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let req = WebhookRequest {
        method: http::Method::POST,
        url: format!("{}{}", r.base, uri),
        kind,
        headers,
        body,
        now_unix: now_unix(),
    };
    if r.provider.verify(&req).is_err() {
        if let Ok(mut n) = r.rejected.lock() {
            *n += 1;
        }
        return StatusCode::UNAUTHORIZED;
    }
    match r.provider.parse(&req) {
        Ok(evs) => {
            if let Ok(mut events) = r.events.lock() {
                events.extend(evs);
            }
            StatusCode::OK
        }
        Err(_) => StatusCode::BAD_REQUEST,
    }
}

/// A simulator `S`, the adapter pointed at it, and the stand-in route it posts to.
pub struct Rig<S> {
    pub sim: S,
    pub provider: Arc<dyn Provider>,
    pub rx: Receiver,
    route: String,
    _server: tokio::task::JoinHandle<()>,
}

impl<S> Rig<S> {
    /// Serves the stand-in route at `route` (`/webhooks/sendgrid/sg`, `/{kind}` added) on a
    /// free port, verifying and parsing with `provider`.
    pub async fn start(sim: S, provider: Arc<dyn Provider>, route: &str) -> Rig<S> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the webhook route");
        let base = format!(
            "http://{}",
            listener.local_addr().expect("the route's address")
        );
        let rx = Receiver {
            provider: provider.clone(),
            events: Default::default(),
            rejected: Default::default(),
            base,
        };
        let app = Router::new()
            .route(&format!("{route}/{{kind}}"), post(hook))
            .with_state(rx.clone());
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .await
                .expect("serve the webhook route");
        });
        Rig {
            sim,
            provider,
            rx,
            route: route.to_string(),
            _server: server,
        }
    }

    /// The full URL of webhook `kind`.
    pub fn url(&self, kind: &str) -> String {
        format!("{}{}/{kind}", self.rx.base, self.route)
    }

    /// Everything parsed so far.
    pub fn events(&self) -> Vec<InboundEvent> {
        self.rx.events.lock().map(|e| e.clone()).unwrap_or_default()
    }

    /// How many posts failed `verify`.
    pub fn rejected(&self) -> u32 {
        self.rx.rejected.lock().map(|n| *n).unwrap_or_default()
    }

    /// The status events parsed so far for weft message `weft_id`.
    pub fn statuses(&self, weft_id: &str) -> Vec<StatusEvent> {
        self.events()
            .into_iter()
            .filter_map(|e| match e {
                InboundEvent::Status(s) if s.correlation.message_id.as_deref() == Some(weft_id) => {
                    Some(s)
                }
                _ => None,
            })
            .collect()
    }

    /// Waits (bounded) until `n` statuses for `weft_id` arrived.
    pub async fn wait_statuses(&self, weft_id: &str, n: usize) -> Vec<StatusEvent> {
        for _ in 0..100 {
            let got = self.statuses(weft_id);
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.statuses(weft_id)
    }

    /// Waits (bounded) until `n` posts failed `verify`; returns how many did.
    pub async fn wait_rejected(&self, n: u32) -> u32 {
        for _ in 0..100 {
            if self.rejected() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.rejected()
    }
}
