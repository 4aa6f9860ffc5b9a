//! Adapter ↔ simulator round trips: sends on both APIs, the simulator's signed DLRs, statuses
//! and inbound messages through the adapter's own `verify` + `parse`.
#![cfg(feature = "simulator")]
#![allow(clippy::unwrap_used)]

use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use bytes::Bytes;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, DeliveryStatus, FailureReason, InboundEvent, OutboundMessage,
    Provider, ProviderKind, WebhookRequest,
};
use weft_simkit::CallbackBehaviour;
use weft_vonage::simulator::{
    Simulator, SimulatorConfig, SmsWebhookFormat, DLR_FAIL_PREFIX, PART_FAIL_PREFIX, REJECT_PREFIX,
};
use weft_vonage::verify::SigMethod;

const MSG_ID: &str = "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA";
const PRIVATE_KEY: &str = include_str!("fixtures/test_application_private_key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/test_application_public_key.pem");

/// A stand-in for weft's webhook routes: records every request, answers 200.
#[derive(Clone, Default)]
struct Inbox(Arc<Mutex<Vec<WebhookRequest>>>);

impl Inbox {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
    fn all(&self) -> Vec<WebhookRequest> {
        self.0.lock().unwrap().clone()
    }
    /// Waits (bounded, 10 s) until `n` requests arrived.
    async fn wait_for(&self, n: usize) -> Vec<WebhookRequest> {
        for _ in 0..200 {
            if self.len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let all = self.all();
        assert!(all.len() >= n, "expected {n} callbacks, got {}", all.len());
        all
    }
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

async fn capture(
    State(inbox): State<Inbox>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let kind = uri.path().rsplit('/').next().unwrap_or("").to_string();
    inbox.0.lock().unwrap().push(WebhookRequest {
        method,
        url: format!("https://weft.example{uri}"),
        kind,
        headers,
        body,
        now_unix: now(),
    });
    StatusCode::OK
}

/// Starts the receiver; returns its webhook base (`…/webhooks/vonage/vonage-main`).
async fn receiver() -> (String, Inbox, weft_simkit::Running) {
    let inbox = Inbox::default();
    let router = axum::Router::new()
        .fallback(capture)
        .with_state(inbox.clone());
    let running = weft_simkit::serve(router, 0).await.unwrap();
    (
        format!("{}/webhooks/vonage/vonage-main", running.base_url()),
        inbox,
        running,
    )
}

async fn start(mut cfg: SimulatorConfig, hooks: &str) -> Simulator {
    cfg.dlr_url = Some(format!("{hooks}/status"));
    cfg.inbound_url = Some(format!("{hooks}/inbound"));
    Simulator::start(cfg).await.unwrap()
}

fn sms_adapter(sim: &Simulator) -> Arc<dyn Provider> {
    let c = sim.config();
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.base_url = Some(url::Url::parse(&sim.base_url()).unwrap());
    spec.senders = vec!["+447700900000".into()];
    spec.request_timeout = Duration::from_secs(5);
    spec.settings.insert(
        "signature_method".into(),
        c.signature_method.as_str().into(),
    );
    spec.credentials.insert("api_key", c.api_key.as_str());
    spec.credentials.insert("api_secret", c.api_secret.as_str());
    spec.credentials
        .insert("signature_secret", c.signature_secret.as_str());
    weft_vonage::build(&spec).unwrap()
}

fn messages_adapter(sim: &Simulator, basic_secret: Option<&str>) -> Arc<dyn Provider> {
    let c = sim.config();
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.base_url = Some(url::Url::parse(&sim.base_url()).unwrap());
    spec.senders = vec!["+447700900000".into()];
    spec.settings.insert("api".into(), "messages".into());
    spec.credentials
        .insert("signature_secret", c.signature_secret.as_str());
    match basic_secret {
        Some(secret) => {
            spec.credentials.insert("api_key", c.api_key.as_str());
            spec.credentials.insert("api_secret", secret);
        }
        None => {
            spec.credentials
                .insert("application_id", c.application_id.as_str());
            spec.credentials.insert("private_key", PRIVATE_KEY);
        }
    }
    weft_vonage::build(&spec).unwrap()
}

fn msg(channel: Channel, to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: MSG_ID.into(),
        attempt_id: "att_1".into(),
        channel,
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

/// Verifies and parses every request, returning the events.
fn events(p: &dyn Provider, reqs: &[WebhookRequest]) -> Vec<InboundEvent> {
    reqs.iter()
        .flat_map(|r| {
            p.verify(r).unwrap_or_else(|e| panic!("verify failed: {e}"));
            p.parse(r).unwrap()
        })
        .collect()
}

fn statuses(events: &[InboundEvent]) -> Vec<(String, Option<DeliveryStatus>, Option<String>)> {
    events
        .iter()
        .map(|e| match e {
            InboundEvent::Status(s) => (
                s.provider_message_id.clone(),
                s.status,
                s.correlation.message_id.clone(),
            ),
            other => panic!("not a status: {other:?}"),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_multipart_send_and_signed_dlrs_per_part() {
    for format in [SmsWebhookFormat::Form, SmsWebhookFormat::Json] {
        let (hooks, inbox, _r) = receiver().await;
        let sim = start(
            SimulatorConfig {
                sms_webhook_format: format,
                ..Default::default()
            },
            &hooks,
        )
        .await;
        let p = sms_adapter(&sim);
        let receipt = p
            .send(&msg(Channel::Sms, "+447700900001", &"a".repeat(200)))
            .await
            .unwrap();
        assert_eq!(receipt.provider_ids.len(), 2, "200 GSM chars are two parts");
        assert_eq!(receipt.segments, Some(2));

        let sent = sim.recorder().find_by_message(MSG_ID);
        assert_eq!(sent.len(), 1);
        assert_eq!(
            sent[0].raw["message-ids"],
            serde_json::json!(receipt.provider_ids)
        );
        assert!(sent[0].raw.get("api_secret").is_none());

        let evs = statuses(&events(p.as_ref(), &inbox.wait_for(4).await));
        for id in &receipt.provider_ids {
            let mine: Vec<_> = evs.iter().filter(|(pid, _, _)| pid == id).collect();
            assert_eq!(mine.len(), 2, "{format:?}: two DLRs for part {id}");
            assert!(mine
                .iter()
                .any(|(_, s, _)| *s == Some(DeliveryStatus::Sent)));
            assert!(mine
                .iter()
                .any(|(_, s, _)| *s == Some(DeliveryStatus::Delivered)));
            assert!(mine.iter().all(|(_, _, m)| m.as_deref() == Some(MSG_ID)));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_unicode_is_split_in_67s() {
    let (hooks, _inbox, _r) = receiver().await;
    let sim = start(SimulatorConfig::default(), &hooks).await;
    let receipt = sms_adapter(&sim)
        .send(&msg(Channel::Sms, "+447700900001", &"ж".repeat(100)))
        .await
        .unwrap();
    assert_eq!(receipt.provider_ids.len(), 2);
    assert_eq!(sim.recorder().all()[0].raw["type"], "unicode");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_throttle_is_status_1_in_a_200_never_429() {
    let (hooks, _inbox, _r) = receiver().await;
    let sim = start(SimulatorConfig::default(), &hooks).await;
    sim.faults().set_throttle_rate(1.0, 1);
    let raw = reqwest::Client::new()
        .post(format!("{}/sms/json", sim.base_url()))
        .form(&[
            ("api_key", "simkey01"),
            ("api_secret", "sim-api-secret"),
            ("from", "1"),
            ("to", "2"),
            ("text", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 200);
    let body: serde_json::Value = raw.json().await.unwrap();
    assert_eq!(body["messages"][0]["status"], "1");
    assert_eq!(
        body["messages"][0]["error-text"],
        "Throughput Rate Exceeded - please wait [ 1000 ] and retry"
    );

    let e = sms_adapter(&sim)
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.code(), "throttled");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert_eq!(sim.recorder().count(), 0);

    sim.faults().set_throttle_rate(0.0, 0);
    sim.faults().set_error_rate(1.0);
    let e = sms_adapter(&sim)
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("transient", Some("5")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_credentials_and_special_numbers() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(SimulatorConfig::default(), &hooks).await;

    let wrong = Simulator::start(SimulatorConfig {
        api_secret: "other".into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.base_url = Some(url::Url::parse(&wrong.base_url()).unwrap());
    spec.senders = vec!["Weft".into()];
    spec.credentials.insert("api_key", "simkey01");
    spec.credentials.insert("api_secret", "sim-api-secret");
    let e = weft_vonage::build(&spec)
        .unwrap()
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("auth", Some("4")));

    let p = sms_adapter(&sim);
    let e = p
        .send(&msg(Channel::Sms, &format!("+{REJECT_PREFIX}07"), "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.provider_code()),
        (FailureReason::OptedOut, Some("7"))
    );

    let r = p
        .send(&msg(
            Channel::Sms,
            &format!("+{PART_FAIL_PREFIX}09"),
            &"b".repeat(300),
        ))
        .await
        .unwrap();
    assert_eq!(
        r.provider_ids.len(),
        1,
        "only the first of two parts was accepted"
    );
    assert_eq!(r.segments, Some(2));

    let r = p
        .send(&msg(Channel::Sms, &format!("+{DLR_FAIL_PREFIX}02"), "hi"))
        .await
        .unwrap();
    // Two DLRs for the accepted part above, two for this one.
    let all = inbox.wait_for(4).await;
    let evs = events(p.as_ref(), &all);
    let failed = evs
        .iter()
        .find_map(|e| match e {
            InboundEvent::Status(s)
                if s.provider_message_id == r.provider_ids[0] && s.raw_status == "failed" =>
            {
                Some(s)
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(failed.status, Some(DeliveryStatus::Failed));
    assert_eq!(failed.error_code.as_deref(), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dlr_before_response_arrives_before_the_send_returns() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(
        SimulatorConfig {
            dlr_before_response: true,
            ..Default::default()
        },
        &hooks,
    )
    .await;
    sim.callbacks().set_delay(Duration::from_millis(300));
    let p = sms_adapter(&sim);
    let r = p
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap();
    let early = inbox.all();
    assert_eq!(early.len(), 1, "the first DLR was posted before the answer");
    let ev = statuses(&events(p.as_ref(), &early));
    assert_eq!(ev[0].0, r.provider_ids[0]);
    assert_eq!(
        ev[0].2.as_deref(),
        Some(MSG_ID),
        "correlated by client-ref before the id is stored"
    );
    inbox.wait_for(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_sms_with_every_signature_method() {
    for method in SigMethod::ALL {
        let (hooks, inbox, _r) = receiver().await;
        let format = if method == SigMethod::Sha1 {
            SmsWebhookFormat::Json
        } else {
            SmsWebhookFormat::Form
        };
        let sim = start(
            SimulatorConfig {
                signature_method: method,
                sms_webhook_format: format,
                ..Default::default()
            },
            &hooks,
        )
        .await;
        let d = sim
            .send_inbound_sms("+447700900001", "+447700900000", "Hi & bye = ok")
            .await;
        assert_eq!(d.http_status, Some(200));
        let evs = events(sms_adapter(&sim).as_ref(), &inbox.all());
        match &evs[..] {
            [InboundEvent::Message(m)] => {
                assert_eq!(m.from, "tel:+447700900001");
                assert_eq!(m.to, "tel:+447700900000");
                assert_eq!(m.body.as_deref(), Some("Hi & bye = ok"));
                assert_eq!(m.provider_message_id, d.provider_message_id);
            }
            other => panic!("{method:?}: {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inbound_concatenated_sms_arrive_as_parts() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(SimulatorConfig::default(), &hooks).await;
    let ds = sim
        .send_inbound_sms_concat(
            "447700900001",
            "447700900000",
            &["first half, ", "second half"],
        )
        .await;
    assert_eq!(ds.len(), 2);
    let evs = events(sms_adapter(&sim).as_ref(), &inbox.all());
    let keys: Vec<&str> = evs.iter().map(|e| e.dedupe_key()).collect();
    assert_eq!(
        keys,
        vec![
            ds[0].provider_message_id.as_str(),
            ds[1].provider_message_id.as_str()
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_and_unsigned_callbacks_are_rejected() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(
        SimulatorConfig {
            public_key_pem: Some(PUBLIC_KEY.into()),
            ..Default::default()
        },
        &hooks,
    )
    .await;
    let sms = sms_adapter(&sim);
    let wa = messages_adapter(&sim, None);
    for behaviour in [CallbackBehaviour::Forged, CallbackBehaviour::Unsigned] {
        sim.callbacks().set_behaviour(behaviour);
        let before = inbox.len();
        sim.send_inbound_sms("447700900001", "447700900000", "hi")
            .await;
        sim.send_inbound_messages_whatsapp("4915112345678", "447700900000", "hallo", None)
            .await;
        let all = inbox.all();
        assert_eq!(all.len(), before + 2);
        assert!(
            sms.verify(&all[before]).is_err(),
            "{behaviour:?} SMS accepted"
        );
        assert!(
            wa.verify(&all[before + 1]).is_err(),
            "{behaviour:?} WhatsApp accepted"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_round_trip_with_jwt_and_signed_statuses() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(
        SimulatorConfig {
            public_key_pem: Some(PUBLIC_KEY.into()),
            ..Default::default()
        },
        &hooks,
    )
    .await;
    let p = messages_adapter(&sim, None);
    let r = p
        .send(&msg(
            Channel::Whatsapp,
            "+4915112345678",
            "Ihre Bestellung ist da.",
        ))
        .await
        .unwrap();
    assert_eq!(r.provider_ids.len(), 1);
    let sent = sim.recorder().find_by_message(MSG_ID);
    assert_eq!(sent[0].provider_id, r.provider_ids[0]);
    assert_eq!(sent[0].raw["client_ref"], MSG_ID);

    let evs = statuses(&events(p.as_ref(), &inbox.wait_for(3).await));
    let got: Vec<_> = evs.iter().map(|(_, s, _)| *s).collect();
    assert_eq!(
        got,
        vec![
            Some(DeliveryStatus::Sent),
            Some(DeliveryStatus::Delivered),
            Some(DeliveryStatus::Read)
        ]
    );
    assert!(evs
        .iter()
        .all(|(id, _, m)| id == &r.provider_ids[0] && m.as_deref() == Some(MSG_ID)));

    let before = inbox.len();
    let d = sim
        .send_inbound_messages_whatsapp(
            "+4915112345678",
            "+447700900000",
            "Danke!",
            Some(&r.provider_ids[0]),
        )
        .await;
    assert_eq!(d.http_status, Some(200));
    match &events(p.as_ref(), &inbox.all()[before..])[..] {
        [InboundEvent::Message(m)] => {
            assert_eq!(m.channel, Channel::Whatsapp);
            assert_eq!(m.from, "tel:+4915112345678");
            assert_eq!(
                m.reply_to_provider_id.as_deref(),
                Some(r.provider_ids[0].as_str())
            );
            assert_eq!(m.profile_name.as_deref(), Some("Simulated Customer"));
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_api_refusals() {
    let (hooks, inbox, _r) = receiver().await;
    let sim = start(
        SimulatorConfig {
            public_key_pem: Some(PUBLIC_KEY.into()),
            ..Default::default()
        },
        &hooks,
    )
    .await;
    let e = messages_adapter(&sim, Some("wrong-secret"))
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.provider_code()),
        ("auth", Some("unauthorized"))
    );

    let basic = messages_adapter(&sim, Some("sim-api-secret"));
    assert!(basic
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .is_ok());

    let p = messages_adapter(&sim, None);
    let e = p
        .send(&msg(Channel::Sms, &format!("+{REJECT_PREFIX}03"), "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.reason(), e.provider_code()),
        (FailureReason::ProviderRejected, Some("1150"))
    );

    sim.faults().set_throttle_rate(1.0, 2);
    let e = p
        .send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.retry_after()),
        ("throttled", Some(Duration::from_secs(2)))
    );
    sim.faults().set_throttle_rate(0.0, 0);

    let r = p
        .send(&msg(Channel::Sms, &format!("+{DLR_FAIL_PREFIX}30"), "hi"))
        .await
        .unwrap();
    // Two statuses for the Basic send above, two for this one.
    let all = inbox.wait_for(4).await;
    let evs = events(p.as_ref(), &all);
    let last = evs
        .iter()
        .find_map(|e| match e {
            InboundEvent::Status(s)
                if s.provider_message_id == r.provider_ids[0]
                    && s.raw_status == "undeliverable" =>
            {
                Some(s)
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(last.status, Some(DeliveryStatus::Undeliverable));
    assert_eq!(last.error_code.as_deref(), Some("30"));
}
