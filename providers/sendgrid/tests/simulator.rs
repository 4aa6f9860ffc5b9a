#![allow(clippy::unwrap_used)]
//! Adapter -> simulator round trips; the simulator's signed events and inbound mail pass the
//! adapter's own `verify` + `parse` in a small stand-in for weft's webhook route.

use serde_json::json;
use std::time::Duration;
use weft_mailkit::testing::{email_message, words};
use weft_provider::{DeliveryStatus, InboundEvent, OutboundMessage};
use weft_sendgrid::simulator::{Simulator, SimulatorConfig};
use weft_simkit::CallbackBehaviour;

type Rig = weft_mailkit::testing::Rig<Simulator>;

/// A simulator, the adapter pointed at it, and a stand-in for weft's
/// `/webhooks/sendgrid/sg/{kind}` route that the simulator's events go to.
async fn start(cfg: SimulatorConfig) -> Rig {
    let sim = Simulator::start(cfg).await.unwrap();
    let mut spec = sim.connection_spec("sg");
    spec.request_timeout = Duration::from_secs(2);
    let provider = weft_sendgrid::build(&spec).unwrap();
    let rig = Rig::start(sim, provider, "/webhooks/sendgrid/sg").await;
    rig.sim.set_events_url(Some(rig.url("events")));
    rig
}

fn msg(id: &str, to: &str) -> OutboundMessage {
    email_message(id, &format!("att_{id}"), to, "Hello", "Hello from weft")
}

#[tokio::test]
async fn delivered_round_trip_with_open() {
    let rig = start(SimulatorConfig {
        open_events: true,
        ..Default::default()
    })
    .await;
    let receipt = rig
        .provider
        .send(&msg("msg_a", "ana@example.org"))
        .await
        .unwrap();
    assert_eq!(receipt.status, DeliveryStatus::Queued);
    let rec = rig.sim.recorder().find_by_message("msg_a");
    assert_eq!(rec.len(), 1);
    assert_eq!(receipt.provider_ids, vec![rec[0].provider_id.clone()]);
    assert_eq!(rec[0].to, "ana@example.org");
    assert_eq!(
        rec[0].raw["custom_args"]["weft_attempt_id"],
        json!("att_msg_a")
    );
    let evs = rig.wait_statuses("msg_a", 3).await;
    assert_eq!(
        words(&evs),
        vec![
            ("delivered".into(), Some(DeliveryStatus::Delivered)),
            ("open".into(), Some(DeliveryStatus::Read)),
            ("processed".into(), Some(DeliveryStatus::Queued)),
        ]
    );
    for e in &evs {
        assert_eq!(e.provider_message_id, receipt.provider_ids[0]);
        assert_eq!(e.correlation.attempt_id.as_deref(), Some("att_msg_a"));
    }
    assert_eq!(rig.rejected(), 0);
}

#[tokio::test]
async fn special_recipients_bounce_drop_and_defer() {
    let rig = start(SimulatorConfig::default()).await;
    rig.provider
        .send(&msg("msg_b", "bounce@example.org"))
        .await
        .unwrap();
    rig.provider
        .send(&msg("msg_d", "dropped@example.org"))
        .await
        .unwrap();
    rig.provider
        .send(&msg("msg_f", "deferred@example.org"))
        .await
        .unwrap();
    let b = rig.wait_statuses("msg_b", 2).await;
    assert_eq!(
        words(&b)[0],
        ("bounce".into(), Some(DeliveryStatus::Undeliverable))
    );
    assert_eq!(
        b.iter()
            .find(|e| e.raw_status == "bounce")
            .unwrap()
            .error_code
            .as_deref(),
        Some("5.1.1")
    );
    let d = rig.wait_statuses("msg_d", 1).await;
    assert_eq!(
        words(&d),
        vec![("dropped".into(), Some(DeliveryStatus::Rejected))]
    );
    let f = rig.wait_statuses("msg_f", 3).await;
    assert_eq!(f.len(), 3);
    assert!(f
        .iter()
        .any(|e| e.raw_status == "deferred" && e.status == Some(DeliveryStatus::Queued)));
}

#[tokio::test]
async fn forged_and_unsigned_events_are_refused() {
    let rig = start(SimulatorConfig::default()).await;
    rig.sim.callbacks().set_behaviour(CallbackBehaviour::Forged);
    rig.provider
        .send(&msg("msg_x", "ana@example.org"))
        .await
        .unwrap();
    rig.sim
        .callbacks()
        .set_behaviour(CallbackBehaviour::Unsigned);
    rig.provider
        .send(&msg("msg_y", "ana@example.org"))
        .await
        .unwrap();
    assert_eq!(rig.wait_rejected(4).await, 4);
    assert!(rig.statuses("msg_x").is_empty() && rig.statuses("msg_y").is_empty());
}

#[tokio::test]
async fn faults_classify() {
    let rig = start(SimulatorConfig::default()).await;
    rig.sim.faults().set_throttle_rate(1.0, 7);
    let e = rig
        .provider
        .send(&msg("msg_t", "ana@example.org"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "throttled");
    let wait = e.retry_after().unwrap().as_secs();
    assert!((6..=8).contains(&wait), "{wait}");
    rig.sim.faults().set_throttle_rate(0.0, 0);
    rig.sim.faults().set_error_rate(1.0);
    assert_eq!(
        rig.provider
            .send(&msg("msg_t", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "transient"
    );
    rig.sim.faults().set_error_rate(0.0);
    rig.sim.faults().set_timeout_rate(1.0);
    assert_eq!(
        rig.provider
            .send(&msg("msg_t", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "timeout"
    );
    rig.sim.faults().set_timeout_rate(0.0);
    assert!(rig.sim.recorder().find_by_message("msg_t").is_empty());

    let mut spec = rig.sim.connection_spec("sg");
    spec.credentials.insert("api_key", "SG.wrong");
    let wrong = weft_sendgrid::build(&spec).unwrap();
    assert_eq!(
        wrong
            .send(&msg("msg_t", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "auth"
    );
}

#[tokio::test]
async fn the_simulator_validates_like_sendgrid() {
    let rig = start(SimulatorConfig::default()).await;
    let client = reqwest::Client::new();
    let resp = client
        .post(format!("{}/v3/mail/send", rig.sim.base_url()))
        .bearer_auth(&rig.sim.config().api_key)
        .json(&json!({"personalizations": [{"to": [{"email": "not-an-address"}]}], "from": {"email": "a@b.example"}, "subject": "s", "content": [{"type": "text/plain", "value": "x"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert!(resp.headers().contains_key("x-ratelimit-reset"));
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        body["errors"][0]["field"],
        json!("personalizations.0.to.0.email")
    );
}

#[tokio::test]
async fn inbound_reply_threads_through_inbound_parse() {
    let rig = start(SimulatorConfig::default()).await;
    let reply = rig
        .sim
        .send_inbound_email(
            &rig.url("inbound"),
            "Jane <Jane@X.com>",
            "reply+tok123@in.shop.example",
            "Re: Hello",
            "Sounds good.",
            Some("msg_a@sim.weft.example"),
            &["first@sim.weft.example", "<msg_a@sim.weft.example>"],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    let events = rig.events();
    let InboundEvent::Message(m) = &events[0] else {
        panic!("not a message: {events:?}")
    };
    assert_eq!(m.from, "mailto:jane@x.com");
    assert_eq!(m.to, "mailto:reply+tok123@in.shop.example");
    assert_eq!(m.body.as_deref(), Some("Sounds good."));
    let e = m.email.clone().unwrap();
    assert_eq!(e.message_id.as_deref(), Some(reply.message_id.as_str()));
    assert_eq!(e.in_reply_to.as_deref(), Some("msg_a@sim.weft.example"));
    assert_eq!(
        e.references,
        vec!["first@sim.weft.example", "msg_a@sim.weft.example"]
    );
    assert!(m.received_at_ms.is_some());

    // Without the secret the same post is refused.
    let sim2 = Simulator::start(SimulatorConfig {
        inbound_secret: None,
        ..Default::default()
    })
    .await
    .unwrap();
    let refused = sim2
        .send_inbound_email(
            &rig.url("inbound"),
            "a@b.example",
            "c@d.example",
            "s",
            "t",
            None,
            &[],
        )
        .await
        .unwrap();
    assert_eq!(refused.status, 401);
}

#[tokio::test]
async fn on_demand_batches_and_the_vector_key() {
    let case = weft_testkit::vectors::cases("sendgrid_event_webhook.json")
        .into_iter()
        .find(|c| c["private_key_pem"].is_string())
        .unwrap();
    let cfg = SimulatorConfig {
        signing_key_pem: case["private_key_pem"].as_str().map(String::from),
        ..Default::default()
    };
    let rig = start(cfg).await;
    assert_eq!(
        rig.sim.public_key_base64(),
        case["public_key"].as_str().unwrap()
    );
    let reply = rig
        .sim
        .post_events(
            &rig.url("status"),
            vec![
                json!({"event": "delivered", "sg_event_id": "e1", "sg_message_id": "A.1", "weft_message_id": "msg_m", "timestamp": 1}),
                json!({"event": "click", "sg_event_id": "e2", "sg_message_id": "A.1", "weft_message_id": "msg_m", "timestamp": 2}),
            ],
        )
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(rig.statuses("msg_m").len(), 2);
}
