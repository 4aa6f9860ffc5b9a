//! End to end: a real HTTP receiver standing in for the gateway gets the sandbox's callbacks,
//! in order and signed, and `verify` + `parse` accept what arrives.
#![allow(clippy::unwrap_used)]

use axum::extract::{Request, State};
use axum::http::StatusCode;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use weft_provider::{
    Channel, ConnectionSpec, DeliveryStatus, EmailHeaders, InboundEvent, OutboundMessage, Provider,
    ProviderKind, WebhookRequest,
};
use weft_sandbox::{RetryPolicy, Sandbox};

/// One request the receiver got.
#[derive(Debug)]
struct Got {
    path: String,
    query: Option<String>,
    headers: Vec<(String, String)>,
    body: bytes::Bytes,
}

#[derive(Clone)]
struct Receiver {
    tx: mpsc::UnboundedSender<Got>,
    /// Answer 503 to this many requests first.
    fail_first: Arc<AtomicU32>,
}

async fn record(State(r): State<Receiver>, req: Request) -> StatusCode {
    let (parts, body) = req.into_parts();
    let body = axum::body::to_bytes(body, 1 << 20).await.unwrap();
    let headers = parts
        .headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    let failing = r
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok();
    r.tx.send(Got {
        path: parts.uri.path().into(),
        query: parts.uri.query().map(String::from),
        headers,
        body,
    })
    .unwrap();
    if failing {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

/// Starts a receiver; returns its base URL and the stream of requests.
async fn receiver(fail_first: u32) -> (String, mpsc::UnboundedReceiver<Got>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let state = Receiver {
        tx,
        fail_first: Arc::new(AtomicU32::new(fail_first)),
    };
    let app = axum::Router::new().fallback(record).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), rx)
}

fn sandbox(settings: serde_json::Value) -> Sandbox {
    let mut spec = ConnectionSpec::new("sbx", ProviderKind::Sandbox);
    spec.settings = settings.as_object().unwrap().clone();
    let fast = RetryPolicy {
        attempts: 5,
        first_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
    };
    Sandbox::new(&spec).unwrap().with_retry(fast)
}

fn message(base: &str, channel: Channel, to: &str, from: Option<&str>) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_01".into(),
        attempt_id: "att_01".into(),
        channel,
        to: to.into(),
        from: from.map(String::from),
        body: Some("hello there".into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: format!("{base}/webhooks/sandbox/sbx/status?m=msg_01&a=att_01"),
    }
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Got>) -> Got {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no callback in 10 s")
        .unwrap()
}

/// The received request as the gateway would hand it to the adapter, verified and parsed.
fn verified_events(p: &dyn Provider, base: &str, got: &Got) -> Vec<InboundEvent> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let url = match &got.query {
        Some(q) => format!("{base}{}?{q}", got.path),
        None => format!("{base}{}", got.path),
    };
    let kind = got.path.rsplit('/').next().unwrap();
    let headers: Vec<(&str, &str)> = got
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let req: WebhookRequest =
        weft_testkit::request("POST", &url, kind, &headers, got.body.clone(), now);
    assert!(p.capabilities().webhook_kinds.contains(&kind), "{kind}");
    p.verify(&req)
        .unwrap_or_else(|e| panic!("verify refused a sandbox callback: {e}"));
    let mut tampered = req.clone();
    tampered.body = bytes::Bytes::from(String::from_utf8_lossy(&got.body).replace("sbx_", "sbX_"));
    assert!(
        p.verify(&tampered).is_err(),
        "a changed body still verified"
    );
    p.parse(&req).unwrap()
}

fn status_of(events: &[InboundEvent]) -> (Option<DeliveryStatus>, Option<String>, String) {
    match events {
        [InboundEvent::Status(s)] => {
            assert_eq!(s.correlation.message_id.as_deref(), Some("msg_01"));
            assert_eq!(s.correlation.attempt_id.as_deref(), Some("att_01"));
            (
                s.status,
                s.error_code.clone(),
                s.provider_message_id.clone(),
            )
        }
        other => panic!("expected one status event, got {other:?}"),
    }
}

#[tokio::test]
async fn sent_then_delivered_then_echo_arrive_signed_and_in_order() {
    let (base, mut rx) = receiver(0).await;
    let p = sandbox(serde_json::json!({"callback_delay_ms": 5, "echo": true, "echo_delay_ms": 5}));
    let receipt = p
        .send(&message(
            &base,
            Channel::Sms,
            "+15550001111",
            Some("+15005550006"),
        ))
        .await
        .unwrap();
    assert_eq!(receipt.status, DeliveryStatus::Queued);
    assert_eq!(receipt.segments, None);
    let [id] = receipt.provider_ids.as_slice() else {
        panic!("{receipt:?}")
    };
    assert!(id.starts_with("sbx_"));

    let mut seen = Vec::new();
    for want in [DeliveryStatus::Sent, DeliveryStatus::Delivered] {
        let got = next(&mut rx).await;
        assert_eq!(got.path, "/webhooks/sandbox/sbx/status");
        assert_eq!(got.query.as_deref(), Some("m=msg_01&a=att_01"));
        assert!(got
            .headers
            .iter()
            .any(|(k, v)| k == "content-type" && v == "application/json"));
        let (status, code, pid) = status_of(&verified_events(&p, &base, &got));
        assert_eq!((status, code, &pid), (Some(want), None, id));
        seen.push(want);
    }
    assert_eq!(seen, [DeliveryStatus::Sent, DeliveryStatus::Delivered]);

    let got = next(&mut rx).await;
    assert_eq!(got.path, "/webhooks/sandbox/sbx/inbound");
    assert_eq!(got.query, None);
    match verified_events(&p, &base, &got).as_slice() {
        [InboundEvent::Message(m)] => {
            assert_eq!(m.channel, Channel::Sms);
            assert_eq!(m.from, "tel:+15550001111");
            assert_eq!(m.to, "tel:+15005550006");
            assert_eq!(m.body.as_deref(), Some("echo: hello there"));
            assert_eq!(m.reply_to_provider_id.as_deref(), Some(id.as_str()));
            assert!(m.provider_message_id.starts_with("sbx_") && m.provider_message_id != *id);
        }
        other => panic!("expected one message event, got {other:?}"),
    }
    assert_eq!(p.sent().len(), 1);
}

#[tokio::test]
async fn callbacks_are_retried_until_the_receiver_answers() {
    let (base, mut rx) = receiver(2).await;
    let p = sandbox(serde_json::json!({"callback_delay_ms": 0}));
    p.send(&message(&base, Channel::Whatsapp, "+4915112345678", None))
        .await
        .unwrap();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let got = next(&mut rx).await;
        statuses.push(status_of(&verified_events(&p, &base, &got)).0);
    }
    // Two refusals of `sent`, its success, then `delivered`: never out of order.
    use DeliveryStatus::*;
    assert_eq!(
        statuses,
        [Some(Sent), Some(Sent), Some(Sent), Some(Delivered)]
    );
}

#[tokio::test]
async fn magic_failures_send_one_failure_callback_and_no_echo() {
    let (base, mut rx) = receiver(0).await;
    let p = sandbox(serde_json::json!({"callback_delay_ms": 0, "echo": true, "echo_delay_ms": 0}));
    for (to, channel, word, code) in [
        (
            "+15005550004",
            Channel::Sms,
            DeliveryStatus::Failed,
            "30008",
        ),
        (
            "+15005550005",
            Channel::Sms,
            DeliveryStatus::Undeliverable,
            "30003",
        ),
        (
            "bounce@example.com",
            Channel::Email,
            DeliveryStatus::Undeliverable,
            "550",
        ),
    ] {
        p.send(&message(&base, channel, to, None)).await.unwrap();
        let got = next(&mut rx).await;
        let (status, got_code, _) = status_of(&verified_events(&p, &base, &got));
        assert_eq!(
            (status, got_code.as_deref()),
            (Some(word), Some(code)),
            "{to}"
        );
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        rx.try_recv().is_err(),
        "a failed message got more callbacks"
    );
}

#[tokio::test]
async fn email_echo_threads_on_our_headers_and_telegram_echo_answers_the_bot() {
    let (base, mut rx) = receiver(0).await;
    let p = sandbox(serde_json::json!({"callback_delay_ms": 0, "echo": true, "echo_delay_ms": 0}));
    let mut mail = message(
        &base,
        Channel::Email,
        "Jane@Example.com",
        Some("support@acme.example"),
    );
    mail.subject = Some("Your order".into());
    mail.email = Some(EmailHeaders {
        message_id: Some("msg_01@acme.example".into()),
        in_reply_to: None,
        references: vec![],
        reply_to: Some("reply+tok123@in.acme.example".into()),
    });
    p.send(&mail).await.unwrap();
    let echo = loop {
        let got = next(&mut rx).await;
        if got.path.ends_with("/inbound") {
            break got;
        }
    };
    match verified_events(&p, &base, &echo).as_slice() {
        [InboundEvent::Message(m)] => {
            assert_eq!(m.from, "mailto:jane@example.com");
            assert_eq!(m.to, "mailto:reply+tok123@in.acme.example");
            assert_eq!(m.subject.as_deref(), Some("Re: Your order"));
            let h = m.email.as_ref().unwrap();
            assert_eq!(h.in_reply_to.as_deref(), Some("msg_01@acme.example"));
            assert_eq!(h.references, ["msg_01@acme.example"]);
        }
        other => panic!("{other:?}"),
    }

    p.send(&message(&base, Channel::Telegram, "123456789", None))
        .await
        .unwrap();
    let echo = loop {
        let got = next(&mut rx).await;
        if got.path.ends_with("/inbound") {
            break got;
        }
    };
    match verified_events(&p, &base, &echo).as_slice() {
        [InboundEvent::Message(m)] => {
            assert_eq!(
                (m.from.as_str(), m.to.as_str()),
                ("telegram:123456789", "telegram:sbx")
            );
        }
        other => panic!("{other:?}"),
    }
}
