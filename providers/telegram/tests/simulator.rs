//! Adapter → simulator round trips; the simulator's updates go through a tiny receiver that
//! runs the adapter's own `verify` and `parse`, as the gateway does.
#![cfg(feature = "simulator")]
#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::IntoResponse;
use bytes::Bytes;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_provider::{
    Channel, ConsentAction, DeliveryStatus, FailureReason, InboundEvent, OutboundMessage, Provider,
    WebhookRequest,
};
use weft_simkit::CallbackBehaviour;
use weft_telegram::simulator::{
    Simulator, SimulatorConfig, BLOCKED_CHAT, DEACTIVATED_CHAT, UNKNOWN_CHAT,
};

struct Rx {
    provider: Arc<dyn Provider>,
    base: String,
    events: Mutex<Vec<InboundEvent>>,
    rejected: AtomicU32,
}

async fn receive(
    State(rx): State<Arc<Rx>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let req = WebhookRequest {
        method: Method::POST,
        url: format!("{}{}", rx.base, uri),
        kind: uri
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string(),
        headers,
        body,
        now_unix: 0,
    };
    if rx.provider.verify(&req).is_err() {
        rx.rejected.fetch_add(1, Ordering::Relaxed);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    match rx.provider.parse(&req) {
        Ok(events) => {
            rx.events.lock().unwrap().extend(events);
            StatusCode::OK.into_response()
        }
        Err(_) => StatusCode::BAD_REQUEST.into_response(),
    }
}

struct World {
    sim: Simulator,
    provider: Arc<dyn Provider>,
    rx: Arc<Rx>,
}

async fn world(timeout: Duration) -> World {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    let mut spec = sim.connection_spec("tg");
    spec.request_timeout = timeout;
    let provider = weft_telegram::build(&spec).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rx = Arc::new(Rx {
        provider: provider.clone(),
        base: base.clone(),
        events: Mutex::new(Vec::new()),
        rejected: AtomicU32::new(0),
    });
    let app = axum::Router::new()
        .route("/webhooks/telegram/tg/{kind}", axum::routing::post(receive))
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sim.set_webhook_url(Some(format!("{base}/webhooks/telegram/tg/updates")));
    World { sim, provider, rx }
}

fn msg(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_1".into(),
        attempt_id: "att_1".into(),
        channel: Channel::Telegram,
        to: to.into(),
        from: None,
        body: Some(body.into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: String::new(),
    }
}

fn taken(rx: &Rx) -> Vec<InboundEvent> {
    std::mem::take(&mut *rx.events.lock().unwrap())
}

#[tokio::test]
async fn send_then_a_reply_threads_back() {
    let w = world(Duration::from_secs(5)).await;
    let r = w
        .provider
        .send(&msg("3527065", "Passt Ihnen Donnerstag?"))
        .await
        .unwrap();
    assert_eq!(
        (r.status, r.provider_ids.clone()),
        (DeliveryStatus::Sent, vec!["3527065:1".to_string()])
    );
    let rec = w.sim.recorder().all();
    assert_eq!(
        (rec.len(), rec[0].provider_id.as_str(), rec[0].to.as_str()),
        (1, "3527065:1", "3527065")
    );

    // The customer answers quoting our message; the update reaches weft verified.
    let reply = w
        .sim
        .send_update_message(3527065, "Ja", Some(1))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let ev = taken(&w.rx);
    let InboundEvent::Message(m) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert_eq!(
        m.reply_to_provider_id.as_deref(),
        Some(r.provider_ids[0].as_str())
    );
    assert_eq!(
        m.provider_message_id,
        format!("3527065:{}", reply.message_id.unwrap())
    );
    assert_eq!(
        (m.from.as_str(), m.to.as_str()),
        ("telegram:3527065", "telegram:weft_sim_bot")
    );
    assert_eq!(m.dedupe_key, reply.update_id.to_string());

    // Our reply to the customer's message quotes it.
    let mut answer = msg("3527065", "Super");
    answer.reply_to_provider_id = Some(m.provider_message_id.clone());
    w.provider.send(&answer).await.unwrap();
    let last = w.sim.recorder().all().pop().unwrap();
    assert_eq!(
        last.raw["reply_parameters"]["message_id"],
        reply.message_id.unwrap()
    );

    w.sim.send_forwarded_message(3527065, "fwd").await.unwrap();
    let ev = taken(&w.rx);
    let InboundEvent::Message(f) = &ev[0] else {
        panic!("{ev:?}")
    };
    assert!(f.forwarded && f.reply_to_provider_id.is_none());
}

#[tokio::test]
async fn channels_and_special_chats() {
    let w = world(Duration::from_secs(5)).await;
    let r = w.provider.send(&msg("@weft_news", "News")).await.unwrap();
    assert!(
        r.provider_ids[0].starts_with("-100"),
        "{:?}",
        r.provider_ids
    );
    for (chat, reason) in [
        (BLOCKED_CHAT, FailureReason::OptedOut),
        (DEACTIVATED_CHAT, FailureReason::OptedOut),
        (UNKNOWN_CHAT, FailureReason::InvalidAddress),
    ] {
        let e = w
            .provider
            .send(&msg(&chat.to_string(), "hi"))
            .await
            .unwrap_err();
        assert_eq!((e.code(), e.reason()), ("rejected", reason), "{chat}");
    }
    assert_eq!(w.sim.recorder().count(), 1);
}

#[tokio::test]
async fn block_and_unblock_are_consent_events_and_gate_sends() {
    let w = world(Duration::from_secs(5)).await;
    assert_eq!(w.sim.send_block(555).await.unwrap().status, 200);
    let e = w.provider.send(&msg("555", "hi")).await.unwrap_err();
    assert_eq!(e.reason(), FailureReason::OptedOut);
    w.sim.send_unblock(555).await.unwrap();
    w.provider.send(&msg("555", "hi")).await.unwrap();
    let ev = taken(&w.rx);
    let actions: Vec<_> = ev
        .iter()
        .filter_map(|e| {
            if let InboundEvent::Consent(c) = e {
                Some((c.address.clone(), c.action))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("telegram:555".to_string(), ConsentAction::OptOut),
            ("telegram:555".to_string(), ConsentAction::OptIn)
        ]
    );
}

#[tokio::test]
async fn faults_use_the_bot_api_envelope() {
    let w = world(Duration::from_millis(400)).await;
    w.sim.faults().set_throttle_rate(1.0, 9);
    let e = w.provider.send(&msg("1", "hi")).await.unwrap_err();
    assert_eq!(
        (e.code(), e.retry_after()),
        ("throttled", Some(Duration::from_secs(9)))
    );
    w.sim.faults().set_throttle_rate(0.0, 0);
    w.sim.faults().set_outage(true);
    assert_eq!(
        w.provider.send(&msg("1", "hi")).await.unwrap_err().code(),
        "transient"
    );
    w.sim.faults().set_outage(false);
    w.sim.faults().set_timeout_rate(1.0);
    assert!(w
        .provider
        .send(&msg("1", "hi"))
        .await
        .unwrap_err()
        .is_ambiguous());
    assert_eq!(w.sim.recorder().count(), 0);
}

#[tokio::test]
async fn a_wrong_token_is_auth_and_never_printed() {
    let w = world(Duration::from_secs(5)).await;
    let mut spec = w.sim.connection_spec("tg");
    spec.credentials
        .insert("bot_token", "7000000001:AAHwrong-token-zzzz");
    let p = weft_telegram::build(&spec).unwrap();
    let e = p.send(&msg("1", "hi")).await.unwrap_err();
    assert_eq!(e.code(), "auth");
    assert!(!format!("{e:?}").contains("AAHwrong"));
    assert!(w.provider.health().await.is_ok());
}

#[tokio::test]
async fn forged_and_unsigned_updates_are_rejected() {
    let w = world(Duration::from_secs(5)).await;
    for b in [CallbackBehaviour::Forged, CallbackBehaviour::Unsigned] {
        w.sim.callbacks().set_behaviour(b);
        assert_eq!(
            w.sim
                .send_update_message(1, "evil", None)
                .await
                .unwrap()
                .status,
            401,
            "{b:?}"
        );
        assert_eq!(w.sim.send_block(1).await.unwrap().status, 401, "{b:?}");
    }
    assert_eq!(w.rx.rejected.load(Ordering::Relaxed), 4);
    assert!(taken(&w.rx).is_empty());
}
