//! Adapter → simulator round trips: sends, magic numbers, faults, and the simulator's signed
//! callbacks and inbound webhooks passing the adapter's own `verify` + `parse` in a small
//! receiver that plays weft's webhook route.
#![cfg(feature = "simulator")]
#![allow(clippy::unwrap_used)]

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use weft_provider::{
    Channel, DeliveryStatus, FailureReason, InboundEvent, OutboundMessage, Provider, WebhookRequest,
};
use weft_simkit::CallbackBehaviour;
use weft_twilio::simulator::{
    CallOutcome, MessageOutcome, Simulator, SimulatorConfig, WhatsappInbound,
};

#[derive(Clone)]
struct Receiver {
    provider: Arc<dyn Provider>,
    events: Arc<Mutex<Vec<InboundEvent>>>,
}

async fn webhook(
    State(r): State<Receiver>,
    Path((_conn, kind)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let req = WebhookRequest {
        method,
        url: format!("http://{host}{uri}"),
        kind,
        headers,
        body,
        now_unix: 0,
    };
    if r.provider.verify(&req).is_err() {
        return StatusCode::FORBIDDEN.into_response();
    }
    let Ok(events) = r.provider.parse(&req) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let ack = r.provider.ack(&req, &events);
    r.events.lock().unwrap().extend(events);
    let mut resp = (ack.status, ack.body).into_response();
    if let Some(ct) = ack.content_type {
        resp.headers_mut()
            .insert("content-type", ct.parse().unwrap());
    }
    resp
}

struct Rig {
    sim: Simulator,
    provider: Arc<dyn Provider>,
    events: Arc<Mutex<Vec<InboundEvent>>>,
    weft: String,
    _receiver: weft_simkit::Running,
}

async fn rig_with(
    config: SimulatorConfig,
    tweak: impl FnOnce(&mut weft_provider::ConnectionSpec),
) -> Rig {
    let sim = Simulator::start(config).await.unwrap();
    let mut spec = sim.connection_spec("tw");
    spec.request_timeout = Duration::from_secs(5);
    tweak(&mut spec);
    let provider = weft_twilio::build(&spec).unwrap();
    let events = Arc::new(Mutex::new(Vec::new()));
    let router = axum::Router::new()
        .route(
            "/webhooks/twilio/{conn}/{kind}",
            axum::routing::post(webhook),
        )
        .with_state(Receiver {
            provider: provider.clone(),
            events: events.clone(),
        });
    let receiver = weft_simkit::serve(router, 0).await.unwrap();
    let weft = format!("{}/webhooks/twilio/tw", receiver.base_url());
    Rig {
        sim,
        provider,
        events,
        weft,
        _receiver: receiver,
    }
}

async fn rig() -> Rig {
    rig_with(SimulatorConfig::default(), |_| {}).await
}

impl Rig {
    fn msg(&self, id: &str, channel: Channel, to: &str, body: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: id.into(),
            attempt_id: format!("att_{id}"),
            channel,
            to: to.into(),
            from: Some("+15005550006".into()),
            body: Some(body.into()),
            subject: None,
            template: None,
            email: None,
            reply_to_provider_id: None,
            voice: None,
            status_callback_url: format!("{}/status?m={id}&a=att_{id}", self.weft),
        }
    }

    /// Waits (bounded) until `n` events arrived, then returns them.
    async fn wait_events(&self, n: usize) -> Vec<InboundEvent> {
        for _ in 0..200 {
            if self.events.lock().unwrap().len() >= n {
                break;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        let got = self.events.lock().unwrap().clone();
        assert!(got.len() >= n, "expected {n} events, got {got:?}");
        got
    }

    fn statuses(events: &[InboundEvent]) -> Vec<(String, Option<DeliveryStatus>)> {
        events
            .iter()
            .filter_map(|e| match e {
                InboundEvent::Status(s) => Some((s.raw_status.clone(), s.status)),
                _ => None,
            })
            .collect()
    }
}

#[tokio::test]
async fn sms_round_trip_with_signed_callbacks() {
    let rig = rig().await;
    let receipt = rig
        .provider
        .send(&rig.msg("msg_1", Channel::Sms, "+14155550100", "Hello"))
        .await
        .unwrap();
    let sid = receipt.provider_ids[0].clone();
    assert!(sid.starts_with("SM") && sid.len() == 34, "{sid}");
    assert_eq!(
        (receipt.status, receipt.segments),
        (DeliveryStatus::Queued, Some(1))
    );

    let recorded = rig.sim.recorder().find_by_message("msg_1");
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (
            recorded[0].provider_id.as_str(),
            recorded[0].body.as_deref()
        ),
        (sid.as_str(), Some("Hello"))
    );

    let events = rig.wait_events(2).await;
    assert_eq!(
        Rig::statuses(&events),
        vec![
            ("sent".into(), Some(DeliveryStatus::Sent)),
            ("delivered".into(), Some(DeliveryStatus::Delivered))
        ]
    );
    for e in &events {
        let InboundEvent::Status(s) = e else {
            panic!("{e:?}")
        };
        assert_eq!(s.provider_message_id, sid);
        assert_eq!(s.correlation.message_id.as_deref(), Some("msg_1"));
        assert_eq!(s.correlation.attempt_id.as_deref(), Some("att_msg_1"));
    }
    assert_ne!(events[0].dedupe_key(), events[1].dedupe_key());
    assert_eq!(rig.sim.callbacks().failed(), 0);
}

#[tokio::test]
async fn undelivered_and_failed_outcomes_carry_error_codes() {
    let rig = rig().await;
    rig.sim.set_message_outcome(MessageOutcome::Undelivered);
    rig.provider
        .send(&rig.msg("msg_u", Channel::Whatsapp, "+4915112345678", "Hallo"))
        .await
        .unwrap();
    let events = rig.wait_events(2).await;
    let InboundEvent::Status(last) = &events[1] else {
        panic!()
    };
    assert_eq!(
        (last.status, last.error_code.as_deref()),
        (Some(DeliveryStatus::Undeliverable), Some("30003"))
    );
    assert_eq!(
        rig.sim.recorder().find_by_message("msg_u")[0].to,
        "whatsapp:+4915112345678"
    );

    rig.sim.set_message_outcome(MessageOutcome::Failed);
    rig.provider
        .send(&rig.msg("msg_f", Channel::Sms, "+14155550100", "x"))
        .await
        .unwrap();
    let events = rig.wait_events(3).await;
    let InboundEvent::Status(f) = &events[2] else {
        panic!()
    };
    assert_eq!(
        (f.status, f.error_code.as_deref()),
        (Some(DeliveryStatus::Failed), Some("30008"))
    );
}

#[tokio::test]
async fn voice_call_progress() {
    let rig = rig().await;
    let receipt = rig
        .provider
        .send(&rig.msg("msg_v", Channel::Voice, "+14155550100", "Code 1 2 3"))
        .await
        .unwrap();
    assert!(receipt.provider_ids[0].starts_with("CA"));
    let rec = &rig.sim.recorder().find_by_message("msg_v")[0];
    assert_eq!(
        rec.body.as_deref(),
        Some("<Response><Say>Code 1 2 3</Say></Response>")
    );
    let events = rig.wait_events(4).await;
    use DeliveryStatus::*;
    assert_eq!(
        Rig::statuses(&events),
        vec![
            ("initiated".into(), Some(Queued)),
            ("ringing".into(), Some(Sent)),
            ("in-progress".into(), Some(Delivered)),
            ("completed".into(), Some(Delivered)),
        ]
    );

    rig.sim.set_call_outcome(CallOutcome::Busy);
    rig.provider
        .send(&rig.msg("msg_b", Channel::Voice, "+14155550100", "x"))
        .await
        .unwrap();
    let events = rig.wait_events(6).await;
    assert_eq!(
        Rig::statuses(&events[4..]),
        vec![
            ("initiated".into(), Some(Queued)),
            ("busy".into(), Some(Undeliverable))
        ]
    );
}

/// (To, From, channel, Twilio code, retryable, reason of a permanent error)
type MagicCase = (
    &'static str,
    &'static str,
    Channel,
    &'static str,
    bool,
    Option<FailureReason>,
);

#[tokio::test]
async fn magic_numbers_classify_like_twilio() {
    let rig = rig().await;
    let send = |to: &str, from: &str, channel: Channel| {
        let mut m = rig.msg("msg_m", channel, to, "x");
        m.from = Some(from.into());
        let p = rig.provider.clone();
        async move { p.send(&m).await.unwrap_err() }
    };
    let cases: &[MagicCase] = &[
        (
            "+14155550100",
            "+15005550001",
            Channel::Sms,
            "21212",
            false,
            Some(FailureReason::ProviderRejected),
        ),
        (
            "+14155550100",
            "+15005550007",
            Channel::Sms,
            "21606",
            false,
            Some(FailureReason::ProviderRejected),
        ),
        (
            "+14155550100",
            "+15005550008",
            Channel::Sms,
            "21611",
            true,
            None,
        ),
        (
            "+15005550001",
            "+15005550006",
            Channel::Sms,
            "21211",
            false,
            Some(FailureReason::InvalidAddress),
        ),
        (
            "+15005550002",
            "+15005550006",
            Channel::Sms,
            "21612",
            false,
            Some(FailureReason::InvalidAddress),
        ),
        (
            "+15005550003",
            "+15005550006",
            Channel::Sms,
            "21408",
            false,
            Some(FailureReason::ProviderRejected),
        ),
        (
            "+15005550004",
            "+15005550006",
            Channel::Sms,
            "21610",
            false,
            Some(FailureReason::OptedOut),
        ),
        (
            "+15005550009",
            "+15005550006",
            Channel::Sms,
            "21614",
            false,
            Some(FailureReason::InvalidAddress),
        ),
        (
            "+15005550001",
            "+15005550006",
            Channel::Voice,
            "21217",
            false,
            Some(FailureReason::InvalidAddress),
        ),
        (
            "+15005550002",
            "+15005550006",
            Channel::Voice,
            "21214",
            false,
            Some(FailureReason::InvalidAddress),
        ),
        (
            "+15005550003",
            "+15005550006",
            Channel::Voice,
            "21215",
            false,
            Some(FailureReason::ProviderRejected),
        ),
        (
            "+15005550004",
            "+15005550006",
            Channel::Voice,
            "21216",
            false,
            Some(FailureReason::ProviderRejected),
        ),
    ];
    for (to, from, channel, code, retryable, reason) in cases {
        let e = send(to, from, *channel).await;
        assert_eq!(
            (e.provider_code(), e.is_retryable()),
            (Some(*code), *retryable),
            "{to} {from}: {e}"
        );
        if let Some(r) = reason {
            assert_eq!(e.reason(), *r, "{to} {from}");
        }
    }
    assert_eq!(
        rig.sim.recorder().count(),
        0,
        "refused sends are not recorded"
    );
}

#[tokio::test]
async fn faults_and_auth() {
    let rig = rig().await;
    let m = rig.msg("msg_x", Channel::Sms, "+14155550100", "x");
    rig.sim.faults().set_throttle_rate(1.0, 3);
    let e = rig.provider.send(&m).await.unwrap_err();
    assert_eq!(
        (e.code(), e.provider_code(), e.retry_after()),
        ("throttled", Some("20429"), Some(Duration::from_secs(3)))
    );
    rig.sim.faults().set_throttle_rate(0.0, 0);
    rig.sim.faults().set_error_rate(1.0);
    let e = rig.provider.send(&m).await.unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("transient", Some("20500")));
    rig.sim.faults().set_error_rate(0.0);

    let mut wrong = rig.sim.connection_spec("tw");
    wrong.credentials.insert("auth_token", "wrong-token");
    let e = weft_twilio::build(&wrong)
        .unwrap()
        .send(&m)
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.provider_code()), ("auth", Some("20003")));
}

#[tokio::test]
async fn timeouts_are_ambiguous() {
    let rig = rig_with(SimulatorConfig::default(), |s| {
        s.request_timeout = Duration::from_millis(300)
    })
    .await;
    rig.sim.faults().set_timeout_rate(1.0);
    let e = rig
        .provider
        .send(&rig.msg("msg_t", Channel::Sms, "+14155550100", "x"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "timeout");
    assert!(e.is_ambiguous());
}

#[tokio::test]
async fn api_key_auth() {
    let config = SimulatorConfig {
        api_key_sid: Some("SK0123456789abcdef0123456789abcdef".into()),
        api_key_secret: Some("sim-key-secret".into()),
        ..SimulatorConfig::default()
    };
    let rig = rig_with(config, |s| {
        s.credentials
            .insert("api_key_sid", "SK0123456789abcdef0123456789abcdef");
        s.credentials.insert("api_key_secret", "sim-key-secret");
    })
    .await;
    rig.provider
        .send(&rig.msg("msg_k", Channel::Sms, "+14155550100", "x"))
        .await
        .unwrap();
}

#[tokio::test]
async fn inbound_sms_whatsapp_and_calls() {
    let rig = rig().await;
    let inbound = format!("{}/inbound", rig.weft);
    let reply = rig
        .sim
        .send_inbound_sms(&inbound, "+4915112345678", "+15005550006", "Hi there", &[])
        .await
        .unwrap();
    assert_eq!((reply.status, reply.body.as_str()), (200, "<Response/>"));
    assert_eq!(reply.content_type.as_deref(), Some("text/xml"));

    let quoted = WhatsappInbound {
        profile_name: Some("Jana"),
        quoted_sid: Some("SMquoted"),
        ..Default::default()
    };
    rig.sim
        .send_inbound_whatsapp(&inbound, "+4915112345678", "+15005550006", "Ja", quoted)
        .await
        .unwrap();
    let fwd = WhatsappInbound {
        quoted_sid: Some("SMquoted"),
        forwarded: true,
        ..Default::default()
    };
    rig.sim
        .send_inbound_whatsapp(&inbound, "+4915112345678", "+15005550006", "Fwd", fwd)
        .await
        .unwrap();

    let call = rig
        .sim
        .place_inbound_call(
            &format!("{}/voice", rig.weft),
            "+4915112345678",
            "+15005550006",
        )
        .await
        .unwrap();
    assert_eq!(call.status, 200);
    assert!(call.body.contains("Thank you for calling"), "{}", call.body);

    let events = rig.wait_events(4).await;
    let msgs: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            InboundEvent::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(msgs[0].provider_message_id, reply.sid);
    assert_eq!(
        (
            msgs[0].channel,
            msgs[0].from.as_str(),
            msgs[0].body.as_deref()
        ),
        (Channel::Sms, "tel:+4915112345678", Some("Hi there"))
    );
    assert_eq!(
        (msgs[1].channel, msgs[1].from.as_str()),
        (Channel::Whatsapp, "tel:+4915112345678")
    );
    assert_eq!(
        (
            msgs[1].reply_to_provider_id.as_deref(),
            msgs[1].profile_name.as_deref()
        ),
        (Some("SMquoted"), Some("Jana"))
    );
    assert_eq!(
        (msgs[2].reply_to_provider_id.as_deref(), msgs[2].forwarded),
        (None, true)
    );
    let InboundEvent::Call(c) = &events[3] else {
        panic!("{:?}", events[3])
    };
    assert_eq!(
        (c.provider_call_id.as_str(), c.direction.as_str()),
        (call.sid.as_str(), "inbound")
    );
}

#[tokio::test]
async fn forged_unsigned_and_duplicate_callbacks() {
    let rig = rig().await;
    let inbound = format!("{}/inbound", rig.weft);
    rig.sim.callbacks().set_behaviour(CallbackBehaviour::Forged);
    let r = rig
        .sim
        .send_inbound_sms(&inbound, "+4915112345678", "+15005550006", "x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    rig.sim
        .callbacks()
        .set_behaviour(CallbackBehaviour::Unsigned);
    let r = rig
        .sim
        .send_inbound_sms(&inbound, "+4915112345678", "+15005550006", "x", &[])
        .await
        .unwrap();
    assert_eq!(r.status, 403);

    // Forged status callbacks are refused by weft (4xx), none becomes an event.
    rig.sim.callbacks().set_behaviour(CallbackBehaviour::Forged);
    rig.provider
        .send(&rig.msg("msg_forged", Channel::Sms, "+14155550100", "x"))
        .await
        .unwrap();
    for _ in 0..200 {
        if rig.sim.callbacks().failed() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(rig.sim.callbacks().failed(), 2);
    assert!(rig.events.lock().unwrap().is_empty());

    // Duplicates repeat the idempotency token, so they share a dedupe key.
    rig.sim
        .callbacks()
        .set_behaviour(CallbackBehaviour::Duplicate);
    rig.provider
        .send(&rig.msg("msg_dup", Channel::Sms, "+14155550100", "x"))
        .await
        .unwrap();
    let events = rig.wait_events(4).await;
    let keys: Vec<&str> = events.iter().map(|e| e.dedupe_key()).collect();
    assert_eq!((keys[0], keys[2]), (keys[1], keys[3]));
    assert_ne!(keys[0], keys[2]);
}
