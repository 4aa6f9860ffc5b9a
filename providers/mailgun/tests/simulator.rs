#![allow(clippy::unwrap_used)]
//! Adapter -> simulator round trips; the simulator's signed events and inbound mail pass the
//! adapter's own `verify` + `parse` in a small stand-in for weft's webhook route.

use serde_json::json;
use std::time::Duration;
use weft_mailgun::simulator::{Simulator, SimulatorConfig};
use weft_mailkit::testing::{email_message, words};
use weft_provider::{DeliveryStatus, InboundEvent, OutboundMessage};
use weft_simkit::CallbackBehaviour;

type Rig = weft_mailkit::testing::Rig<Simulator>;

/// A simulator, the adapter pointed at it, and a stand-in for weft's
/// `/webhooks/mailgun/mg/{kind}` route that the simulator's events go to.
async fn start(cfg: SimulatorConfig) -> Rig {
    let sim = Simulator::start(cfg).await.unwrap();
    let mut spec = sim.connection_spec("mg");
    spec.request_timeout = Duration::from_secs(2);
    let provider = weft_mailgun::build(&spec).unwrap();
    let rig = Rig::start(sim, provider, "/webhooks/mailgun/mg").await;
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
    // Mailgun answers the id in brackets; the receipt has it bare, as events do.
    assert_eq!(receipt.provider_ids, vec![rec[0].provider_id.clone()]);
    assert!(!receipt.provider_ids[0].starts_with('<'));
    assert_eq!(rec[0].raw["v:weft_attempt_id"], json!("att_msg_a"));
    let evs = rig.wait_statuses("msg_a", 3).await;
    assert_eq!(
        words(&evs),
        vec![
            ("accepted".into(), Some(DeliveryStatus::Queued)),
            ("delivered".into(), Some(DeliveryStatus::Delivered)),
            ("opened".into(), Some(DeliveryStatus::Read)),
        ]
    );
    for e in &evs {
        assert_eq!(e.provider_message_id, receipt.provider_ids[0]);
        assert_eq!(e.correlation.attempt_id.as_deref(), Some("att_msg_a"));
    }
    assert_eq!(rig.rejected(), 0);
}

#[tokio::test]
async fn special_recipients_bounce_drop_and_tempfail() {
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
        .send(&msg("msg_t", "tempfail@example.org"))
        .await
        .unwrap();
    let b = rig.wait_statuses("msg_b", 2).await;
    assert_eq!(
        words(&b),
        vec![
            ("accepted".into(), Some(DeliveryStatus::Queued)),
            ("failed".into(), Some(DeliveryStatus::Undeliverable))
        ]
    );
    assert_eq!(
        b.iter()
            .find(|e| e.raw_status == "failed")
            .unwrap()
            .error_code
            .as_deref(),
        Some("550")
    );
    let d = rig.wait_statuses("msg_d", 1).await;
    assert_eq!(
        words(&d),
        vec![("failed".into(), Some(DeliveryStatus::Rejected))]
    );
    let t = rig.wait_statuses("msg_t", 3).await;
    assert_eq!(t.len(), 3);
    assert!(t
        .iter()
        .any(|e| e.raw_status == "failed" && e.status == Some(DeliveryStatus::Queued)));
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
async fn duplicated_callbacks_pass_verify_and_keep_their_dedupe_keys() {
    let rig = start(SimulatorConfig::default()).await;
    rig.sim
        .callbacks()
        .set_behaviour(CallbackBehaviour::Duplicate);
    rig.provider
        .send(&msg("msg_dup", "ana@example.org"))
        .await
        .unwrap();
    let evs = rig.wait_statuses("msg_dup", 4).await;
    assert_eq!(evs.len(), 4);
    let mut keys: Vec<_> = evs.iter().map(|e| e.dedupe_key.clone()).collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), 2);
    assert_eq!(rig.rejected(), 0);
}

#[tokio::test]
async fn faults_and_auth_classify() {
    let rig = start(SimulatorConfig::default()).await;
    rig.sim.faults().set_throttle_rate(1.0, 7);
    let e = rig
        .provider
        .send(&msg("msg_f", "ana@example.org"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "throttled");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    rig.sim.faults().set_throttle_rate(0.0, 0);
    rig.sim.faults().set_error_rate(1.0);
    assert_eq!(
        rig.provider
            .send(&msg("msg_f", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "transient"
    );
    rig.sim.faults().set_error_rate(0.0);
    rig.sim.faults().set_timeout_rate(1.0);
    assert_eq!(
        rig.provider
            .send(&msg("msg_f", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "timeout"
    );
    rig.sim.faults().set_timeout_rate(0.0);
    assert!(rig.sim.recorder().find_by_message("msg_f").is_empty());

    let mut spec = rig.sim.connection_spec("mg");
    spec.credentials.insert("api_key", "key-wrong");
    let wrong = weft_mailgun::build(&spec).unwrap();
    assert_eq!(
        wrong
            .send(&msg("msg_f", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "auth"
    );
    let mut spec = rig.sim.connection_spec("mg");
    spec.settings
        .insert("domain".into(), json!("mg.other.example"));
    let other = weft_mailgun::build(&spec).unwrap();
    assert_eq!(
        other
            .send(&msg("msg_f", "ana@example.org"))
            .await
            .unwrap_err()
            .code(),
        "config"
    );
}

#[tokio::test]
async fn inbound_reply_threads_in_both_form_shapes() {
    for multipart in [true, false] {
        let rig = start(SimulatorConfig {
            inbound_multipart: multipart,
            ..Default::default()
        })
        .await;
        let reply = rig
            .sim
            .send_inbound_email(
                &rig.url("inbound"),
                "Jane <Jane@X.com>",
                "reply+tok123@in.shop.example",
                "Re: Hello",
                "Sounds good.",
                Some("msg_a@mg.sim.weft.example"),
                &["first@mg.sim.weft.example", "<msg_a@mg.sim.weft.example>"],
            )
            .await
            .unwrap();
        assert_eq!(reply.status, 200, "multipart={multipart}");
        let events = rig.events();
        let InboundEvent::Message(m) = &events[0] else {
            panic!("not a message: {events:?}")
        };
        assert_eq!(m.from, "mailto:jane@x.com");
        assert_eq!(m.to, "mailto:reply+tok123@in.shop.example");
        assert_eq!(m.body.as_deref(), Some("Sounds good."));
        let e = m.email.clone().unwrap();
        assert_eq!(e.message_id.as_deref(), Some(reply.message_id.as_str()));
        assert_eq!(e.in_reply_to.as_deref(), Some("msg_a@mg.sim.weft.example"));
        assert_eq!(
            e.references,
            vec!["first@mg.sim.weft.example", "msg_a@mg.sim.weft.example"]
        );
    }
}

#[tokio::test]
async fn the_simulator_validates_like_mailgun() {
    let rig = start(SimulatorConfig::default()).await;
    let client = reqwest::Client::new();
    let url = format!(
        "{}/v3/{}/messages",
        rig.sim.base_url(),
        rig.sim.config().domain
    );
    let resp = client
        .post(&url)
        .basic_auth("api", Some(&rig.sim.config().api_key))
        .form(&[
            ("from", "a@b.example"),
            ("to", "not-an-address"),
            ("text", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("'to' parameter"));
    let resp = client
        .post(&url)
        .basic_auth("api", Some("nope"))
        .form(&[("from", "a@b.example")])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    // A signed event on demand.
    let reply = rig
        .sim
        .post_event(&rig.url("status"), json!({"event": "delivered", "id": "ev1", "timestamp": 1.0, "message": {"headers": {"message-id": "m@x"}}, "user-variables": {"weft_message_id": "msg_m"}}))
        .await
        .unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(rig.statuses("msg_m").len(), 1);
}
