//! Adapter → simulator round trips; the simulator's signed webhooks go through a tiny receiver
//! that runs the adapter's own `handshake`, `verify` and `parse`, as the gateway does.
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
    Channel, DeliveryStatus, FailureReason, InboundEvent, OutboundMessage, Provider, StatusEvent,
    Template, WebhookRequest,
};
use weft_simkit::CallbackBehaviour;
use weft_whatsapp::simulator::{
    Simulator, SimulatorConfig, NOT_ON_WHATSAPP_NUMBER, PAIR_LIMIT_NUMBER, WINDOW_CLOSED_NUMBER,
};

struct Rx {
    provider: Arc<dyn Provider>,
    base: String,
    events: Mutex<Vec<InboundEvent>>,
    rejected: AtomicU32,
}

async fn receive(
    State(rx): State<Arc<Rx>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> axum::response::Response {
    let req = WebhookRequest {
        method: method.clone(),
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
    if method == Method::GET {
        return match rx.provider.handshake(&req) {
            Some(Ok(ack)) => (ack.status, ack.body).into_response(),
            _ => StatusCode::FORBIDDEN.into_response(),
        };
    }
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
    let mut spec = sim.connection_spec("wa");
    spec.request_timeout = timeout;
    let provider = weft_whatsapp::build(&spec).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let rx = Arc::new(Rx {
        provider: provider.clone(),
        base: base.clone(),
        events: Mutex::new(Vec::new()),
        rejected: AtomicU32::new(0),
    });
    let app = axum::Router::new()
        .route(
            "/webhooks/whatsapp_cloud/wa/{kind}",
            axum::routing::get(receive).post(receive),
        )
        .with_state(rx.clone());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sim.set_webhook_url(Some(format!("{base}/webhooks/whatsapp_cloud/wa/webhook")));
    World { sim, provider, rx }
}

fn msg(id: &str, to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: id.into(),
        attempt_id: "att_1".into(),
        channel: Channel::Whatsapp,
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

/// Waits (bounded) until `n` events arrived.
async fn events(rx: &Rx, n: usize) -> Vec<InboundEvent> {
    for _ in 0..200 {
        if rx.events.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    rx.events.lock().unwrap().clone()
}

fn statuses(ev: &[InboundEvent]) -> Vec<StatusEvent> {
    ev.iter()
        .filter_map(|e| {
            if let InboundEvent::Status(s) = e {
                Some(s.clone())
            } else {
                None
            }
        })
        .collect()
}

#[tokio::test]
async fn text_round_trip_with_signed_statuses() {
    let w = world(Duration::from_secs(5)).await;
    w.sim.set_read_receipts(true);
    let r = w
        .provider
        .send(&msg("msg_A", "+4915112345678", "Hallo"))
        .await
        .unwrap();
    assert_eq!(r.status, DeliveryStatus::Queued);
    let wamid = r.provider_ids[0].clone();
    assert!(wamid.starts_with("wamid."), "{wamid}");

    let rec = w.sim.recorder().find_by_message("msg_A");
    assert_eq!(rec.len(), 1);
    assert_eq!(rec[0].provider_id, wamid);
    assert_eq!(rec[0].to, "4915112345678");
    assert_eq!(rec[0].raw["text"]["preview_url"], false);

    let st = statuses(&events(&w.rx, 3).await);
    let words: Vec<_> = st.iter().map(|s| s.status).collect();
    assert_eq!(
        words,
        [
            Some(DeliveryStatus::Sent),
            Some(DeliveryStatus::Delivered),
            Some(DeliveryStatus::Read)
        ]
    );
    for s in &st {
        assert_eq!(s.provider_message_id, wamid);
        assert_eq!(s.correlation.message_id.as_deref(), Some("msg_A"));
        assert_eq!(s.correlation.attempt_id.as_deref(), Some("att_1"));
    }
    assert_eq!(w.rx.rejected.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn template_and_reply_are_accepted() {
    let w = world(Duration::from_secs(5)).await;
    let mut m = msg("msg_T", "+4915112345678", "");
    m.body = None;
    m.template = Some(Template {
        name: "hello_world".into(),
        language: None,
        variables: Default::default(),
    });
    m.reply_to_provider_id = Some("wamid.Q".into());
    w.provider.send(&m).await.unwrap();
    let rec = &w.sim.recorder().find_by_message("msg_T")[0];
    assert_eq!(rec.raw["template"]["language"]["code"], "en_US");
    assert_eq!(rec.raw["context"]["message_id"], "wamid.Q");
    assert_eq!(rec.body.as_deref(), Some("hello_world"));
}

#[tokio::test]
async fn special_recipients_fail_by_webhook_or_at_send() {
    let w = world(Duration::from_secs(5)).await;
    w.provider
        .send(&msg("msg_W", &format!("+{WINDOW_CLOSED_NUMBER}"), "hi"))
        .await
        .unwrap();
    w.provider
        .send(&msg("msg_U", &format!("+{NOT_ON_WHATSAPP_NUMBER}"), "hi"))
        .await
        .unwrap();
    let st = statuses(&events(&w.rx, 2).await);
    let by = |id: &str| {
        st.iter()
            .find(|s| s.correlation.message_id.as_deref() == Some(id))
            .cloned()
            .unwrap()
    };
    assert_eq!(
        (by("msg_W").status, by("msg_W").error_code.as_deref()),
        (Some(DeliveryStatus::Failed), Some("131047"))
    );
    assert_eq!(
        (by("msg_U").status, by("msg_U").error_code.as_deref()),
        (Some(DeliveryStatus::Undeliverable), Some("131026"))
    );

    w.sim.set_synchronous_failures(true);
    let e = w
        .provider
        .send(&msg("msg_W2", &format!("+{WINDOW_CLOSED_NUMBER}"), "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.provider_code()),
        (FailureReason::WindowClosed, Some("131047"))
    );
    let e = w
        .provider
        .send(&msg("msg_P", &format!("+{PAIR_LIMIT_NUMBER}"), "hi"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("throttled", Some("131056")));
}

#[tokio::test]
async fn faults_use_graph_codes() {
    let w = world(Duration::from_millis(400)).await;
    w.sim.faults().set_throttle_rate(1.0, 3);
    let e = w
        .provider
        .send(&msg("m1", "+4915112345678", "hi"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("throttled", Some("130429")));
    w.sim.faults().set_throttle_rate(0.0, 0);
    w.sim.faults().set_error_rate(1.0);
    let e = w
        .provider
        .send(&msg("m2", "+4915112345678", "hi"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("transient", Some("131000")));
    w.sim.faults().set_error_rate(0.0);
    w.sim.faults().set_timeout_rate(1.0);
    let e = w
        .provider
        .send(&msg("m3", "+4915112345678", "hi"))
        .await
        .unwrap_err();
    assert!(e.is_ambiguous(), "{e}");
    assert_eq!(w.sim.recorder().count(), 0);
}

#[tokio::test]
async fn a_wrong_token_is_auth() {
    let w = world(Duration::from_secs(5)).await;
    let mut spec = w.sim.connection_spec("wa");
    spec.credentials.insert("access_token", "EAAG-wrong");
    let p = weft_whatsapp::build(&spec).unwrap();
    let e = p.send(&msg("m", "+4915112345678", "hi")).await.unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("auth", Some("190")));
    assert!(!e.detail().contains("EAAG-wrong"));
    assert!(w.provider.health().await.is_ok());
    assert_eq!(p.health().await.unwrap_err().code(), "auth");
}

#[tokio::test]
async fn inbound_quoted_forwarded_and_forged() {
    let w = world(Duration::from_secs(5)).await;
    let r = w
        .sim
        .send_inbound_text("4915112345678", "Ja", Some("wamid.OUT"), false)
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let r2 = w
        .sim
        .send_inbound_text("4915112345678", "Fwd", Some("wamid.OUT"), true)
        .await
        .unwrap();
    assert_eq!(r2.status, 200);
    let ev = events(&w.rx, 2).await;
    let msgs: Vec<_> = ev
        .iter()
        .filter_map(|e| {
            if let InboundEvent::Message(m) = e {
                Some(m.clone())
            } else {
                None
            }
        })
        .collect();
    assert_eq!(msgs.len(), 2);
    assert_eq!(Some(&msgs[0].provider_message_id), r.wamid.as_ref());
    assert_eq!(msgs[0].from, "tel:+4915112345678");
    assert_eq!(msgs[0].to, "tel:+15550783881");
    assert_eq!(msgs[0].reply_to_provider_id.as_deref(), Some("wamid.OUT"));
    assert_eq!(msgs[0].profile_name.as_deref(), Some("Sim User"));
    assert!(msgs[1].forwarded && msgs[1].reply_to_provider_id.is_none());

    for b in [CallbackBehaviour::Forged, CallbackBehaviour::Unsigned] {
        w.sim.callbacks().set_behaviour(b);
        let r = w
            .sim
            .send_inbound_text("4915112345678", "evil", None, false)
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{b:?}");
    }
    assert_eq!(w.rx.rejected.load(Ordering::Relaxed), 2);
    assert_eq!(events(&w.rx, 2).await.len(), 2);
}

#[tokio::test]
async fn forged_status_callbacks_are_rejected() {
    let w = world(Duration::from_secs(5)).await;
    w.sim.callbacks().set_behaviour(CallbackBehaviour::Forged);
    w.provider
        .send(&msg("msg_F", "+4915112345678", "hi"))
        .await
        .unwrap();
    for _ in 0..200 {
        if w.rx.rejected.load(Ordering::Relaxed) >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(w.rx.rejected.load(Ordering::Relaxed), 2);
    assert!(w.rx.events.lock().unwrap().is_empty());
}

#[tokio::test]
async fn subscription_handshake() {
    let w = world(Duration::from_secs(5)).await;
    let ok = w.sim.verify_subscription(None, "1158201444").await.unwrap();
    assert_eq!((ok.status, ok.body.as_str()), (200, "1158201444"));
    let bad = w.sim.verify_subscription(Some("guess"), "1").await.unwrap();
    assert_eq!(bad.status, 403);
}
