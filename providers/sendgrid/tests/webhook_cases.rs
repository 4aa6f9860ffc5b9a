#![allow(clippy::unwrap_used)]
//! Webhook cases: every Event Webhook mapping, batches, Inbound Parse with threading headers,
//! and forged / unsigned / wrong-secret requests rejected.

use base64::Engine;
use p256::ecdsa::{signature::Signer, Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Value};
use weft_provider::{ConnectionSpec, Provider, ProviderKind, WebhookRequest};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};

const NOW: i64 = 1_767_225_600;
const SECRET: &str = "inbound-secret-0123456789";
const EVENTS_URL: &str = "https://weft.example.com/webhooks/sendgrid/sg/events";

fn vector_key() -> (SigningKey, String) {
    let case = weft_testkit::vectors::cases("sendgrid_event_webhook.json")
        .into_iter()
        .find(|c| c["private_key_pem"].is_string())
        .unwrap();
    let sk = SigningKey::from_pkcs8_pem(case["private_key_pem"].as_str().unwrap()).unwrap();
    (sk, case["public_key"].as_str().unwrap().to_string())
}

fn other_key() -> SigningKey {
    SigningKey::from_bytes(&[7u8; 32].into()).unwrap()
}

fn provider(max_age: Option<u64>) -> std::sync::Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
    spec.credentials.insert("api_key", "SG.k");
    spec.credentials
        .insert("webhook_public_key", vector_key().1);
    spec.credentials.insert("inbound_secret", SECRET);
    if let Some(a) = max_age {
        spec.settings
            .insert("signature_max_age_seconds".into(), json!(a));
    }
    weft_sendgrid::build(&spec).unwrap()
}

fn sign_with(key: &SigningKey, ts: &str, body: &[u8]) -> String {
    let mut signed = ts.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig: Signature = key.sign(&signed);
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

fn events_req(kind: &str, events: Value) -> WebhookRequest {
    let body = format!("{events}\r\n").into_bytes();
    let sig = sign_with(&vector_key().0, &NOW.to_string(), &body);
    request(
        "POST",
        EVENTS_URL,
        kind,
        &[
            ("content-type", "application/json"),
            ("X-Twilio-Email-Event-Webhook-Signature", &sig),
            ("X-Twilio-Email-Event-Webhook-Timestamp", &NOW.to_string()),
        ],
        body,
        NOW + 5,
    )
}

/// One event of message `M1` with our custom args.
fn ev(event: &str, extra: Value) -> Value {
    let mut v = json!({
        "email": "ana@example.org", "timestamp": 1767225590, "event": event,
        "sg_event_id": format!("id-{event}"), "sg_message_id": "M1abc.recvd-0-1-1",
        "smtp-id": "<M1abc@ismtpd-1>", "weft_message_id": "msg_1", "weft_attempt_id": "att_1"
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn status_case(name: &'static str, event: &str, extra: Value, want: Value) -> WebhookCase {
    let mut expected = json!({
        "type": "status", "provider_message_id": "M1abc", "raw_status": event,
        "correlation": {"message_id": "msg_1", "attempt_id": "att_1"},
        "dedupe_key": format!("id-{event}"), "occurred_at_ms": 1_767_225_590_000i64
    });
    for (k, x) in want.as_object().unwrap() {
        expected[k] = x.clone();
    }
    WebhookCase {
        name,
        request: events_req("events", json!([ev(event, extra)])),
        expect: WebhookExpect::Events(json!([expected])),
    }
}

fn multipart(fields: &[(&str, &str)], file: Option<(&str, &str, &str)>) -> (String, Vec<u8>) {
    let b = "----xYzZY0123";
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    if let Some((name, filename, content)) = file {
        out.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: application/pdf\r\n\r\n{content}\r\n"
        ));
    }
    out.push_str(&format!("--{b}--\r\n"));
    (
        format!("multipart/form-data; boundary={b}"),
        out.into_bytes(),
    )
}

const HEADERS: &str = "Received: by mx0047p1mdw1.sendgrid.net with SMTP id abc\r\nDate: Thu, 01 Jan 2026 00:00:00 +0000\r\nFrom: \"Jane\" <Jane@X.com>\r\nTo: reply+tok123@in.shop.example\r\nSubject: Re: Your appointment\r\nMessage-ID: <CAF=abc123@mail.x.com>\r\nIn-Reply-To: <msg_01@mail.shop.example>\r\nReferences: <first@mail.shop.example>\r\n <msg_01@mail.shop.example>\r\nReply-To: Jane Home <jane@home.example>\r\nMIME-Version: 1.0\r\n";

fn inbound_req(
    query: &str,
    fields: &[(&str, &str)],
    file: Option<(&str, &str, &str)>,
) -> WebhookRequest {
    let (ct, body) = multipart(fields, file);
    let url = format!("https://weft.example.com/webhooks/sendgrid/sg/inbound{query}");
    request(
        "POST",
        &url,
        "inbound",
        &[("content-type", ct.as_str())],
        body,
        NOW,
    )
}

fn reply_fields() -> Vec<(&'static str, &'static str)> {
    vec![
        ("headers", HEADERS),
        ("dkim", "{@x.com : pass}"),
        ("to", "reply+tok123@in.shop.example"),
        ("from", "\"Jane\" <Jane@X.com>"),
        ("subject", "Re: Your appointment"),
        ("text", "Thursday works.\n\n> Does Thursday work?"),
        (
            "envelope",
            r#"{"to":["reply+tok123@in.shop.example"],"from":"Jane@X.com"}"#,
        ),
        (
            "charsets",
            r#"{"to":"UTF-8","subject":"UTF-8","text":"UTF-8","from":"UTF-8"}"#,
        ),
        ("attachments", "0"),
    ]
}

fn cases() -> Vec<WebhookCase> {
    let q = format!("?secret={SECRET}");
    let signed_other = {
        let mut r = events_req("events", json!([ev("delivered", json!({}))]));
        let sig = sign_with(&other_key(), &NOW.to_string(), &r.body);
        r.headers.insert(
            "X-Twilio-Email-Event-Webhook-Signature",
            sig.parse().unwrap(),
        );
        r
    };
    let unsigned = {
        let mut r = events_req("events", json!([ev("delivered", json!({}))]));
        r.headers.remove("X-Twilio-Email-Event-Webhook-Signature");
        r
    };
    let tampered = {
        let mut r = events_req("events", json!([ev("delivered", json!({}))]));
        r.body = String::from_utf8(r.body.to_vec())
            .unwrap()
            .replace("delivered", "bounce")
            .into();
        r
    };
    let not_an_array = events_req("events", json!({"event": "delivered"}));
    let raw_mail = "From: Bo <Bo@Example.NET>\r\nTo: support@in.shop.example\r\nSubject: Hello\r\nMessage-ID: <raw-1@example.net>\r\nContent-Type: multipart/alternative; boundary=\"alt\"\r\n\r\n--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nPlain hello\r\n--alt\r\nContent-Type: text/html\r\n\r\n<p>hello</p>\r\n--alt--\r\n";
    vec![
        status_case("processed is queued", "processed", json!({}), json!({"status": "queued", "opted_out": false})),
        status_case(
            "deferred is queued with the reason",
            "deferred",
            json!({"response": "451 4.7.1 try later", "attempt": "1"}),
            json!({"status": "queued", "error_detail": "451 4.7.1 try later"}),
        ),
        status_case("delivered", "delivered", json!({"response": "250 OK"}), json!({"status": "delivered", "error_detail": null})),
        status_case(
            "bounce is undeliverable",
            "bounce",
            json!({"type": "bounce", "status": "5.1.1", "reason": "550 5.1.1 unknown user"}),
            json!({"status": "undeliverable", "error_code": "5.1.1", "error_detail": "550 5.1.1 unknown user"}),
        ),
        status_case(
            "blocked bounce is undeliverable",
            "bounce",
            json!({"type": "blocked", "status": "5.7.1", "reason": "blocked by policy"}),
            json!({"status": "undeliverable", "error_code": "5.7.1"}),
        ),
        status_case(
            "dropped is rejected",
            "dropped",
            json!({"reason": "Bounced Address"}),
            json!({"status": "rejected", "error_detail": "Bounced Address", "opted_out": false}),
        ),
        status_case(
            "dropped for an unsubscribed address is an opt-out",
            "dropped",
            json!({"reason": "Unsubscribed Address"}),
            json!({"status": "rejected", "opted_out": true}),
        ),
        status_case("open is read", "open", json!({"useragent": "Mozilla/5.0"}), json!({"status": "read"})),
        status_case("click is read", "click", json!({"url": "https://shop.example/x"}), json!({"status": "read"})),
        status_case("spamreport changes nothing but opts out", "spamreport", json!({}), json!({"status": null, "opted_out": true})),
        status_case("unsubscribe changes nothing but opts out", "unsubscribe", json!({}), json!({"status": null, "opted_out": true})),
        status_case("group_resubscribe changes nothing", "group_resubscribe", json!({"asm_group_id": 1}), json!({"status": null, "opted_out": false})),
        WebhookCase {
            name: "a batch for two messages, alias kind status",
            request: events_req(
                "status",
                json!([
                    ev("processed", json!({})),
                    {"email": "bo@example.net", "timestamp": 1767225599, "event": "delivered", "sg_event_id": "b2",
                     "sg_message_id": "M2xyz.recvd-0-1-2", "weft_message_id": "msg_2"},
                    {"email": "cy@example.com", "timestamp": 1767225599, "event": "dropped", "sg_event_id": "c3",
                     "smtp-id": "<M3qrs@ismtpd-1>", "reason": "Invalid"}
                ]),
            ),
            expect: WebhookExpect::Events(json!([
                {"provider_message_id": "M1abc", "status": "queued"},
                {"provider_message_id": "M2xyz", "status": "delivered", "correlation": {"message_id": "msg_2", "attempt_id": null}, "dedupe_key": "b2"},
                {"provider_message_id": "M3qrs", "status": "rejected", "correlation": {"message_id": null}, "dedupe_key": "c3"}
            ])),
        },
        WebhookCase { name: "events signed by another key are rejected", request: signed_other, expect: WebhookExpect::Rejected },
        WebhookCase { name: "unsigned events are rejected", request: unsigned, expect: WebhookExpect::Rejected },
        WebhookCase { name: "a tampered batch is rejected", request: tampered, expect: WebhookExpect::Rejected },
        WebhookCase { name: "a signed non-array body is unparseable", request: not_an_array, expect: WebhookExpect::Unparseable },
        WebhookCase {
            name: "inbound reply with folded threading headers",
            request: inbound_req(&q, &reply_fields(), None),
            expect: WebhookExpect::Events(json!([{
                "type": "message", "channel": "email",
                "provider_message_id": "CAF=abc123@mail.x.com",
                "from": "mailto:jane@x.com", "to": "mailto:reply+tok123@in.shop.example",
                "subject": "Re: Your appointment", "body": "Thursday works.\n\n> Does Thursday work?",
                "email": {
                    "message_id": "CAF=abc123@mail.x.com",
                    "in_reply_to": "msg_01@mail.shop.example",
                    "references": ["first@mail.shop.example", "msg_01@mail.shop.example"],
                    "reply_to": "jane@home.example"
                },
                "reply_to_provider_id": null, "forwarded": false, "media": [],
                "received_at_ms": 1_767_225_600_000i64,
                "dedupe_key": "CAF=abc123@mail.x.com/reply+tok123@in.shop.example"
            }])),
        },
        WebhookCase {
            name: "inbound new mail without threading headers, with an attachment",
            request: inbound_req(
                &q,
                &[
                    ("headers", "From: Bo <bo@example.net>\r\nTo: Support <Support@In.Shop.Example>\r\nSubject: Question\r\nMessage-ID: <q-1@example.net>\r\n"),
                    ("to", "Support <Support@In.Shop.Example>"),
                    ("from", "Bo <bo@example.net>"),
                    ("subject", "Question"),
                    ("text", "Do you ship to Norway?"),
                    ("attachments", "1"),
                ],
                Some(("attachment1", "invoice.pdf", "%PDF-1.4")),
            ),
            expect: WebhookExpect::Events(json!([{
                "from": "mailto:bo@example.net", "to": "mailto:support@in.shop.example",
                "email": {"message_id": "q-1@example.net", "in_reply_to": null, "references": []},
                "media": [{"provider_media_id": "invoice.pdf", "content_type": "application/pdf", "url": null}]
            }])),
        },
        WebhookCase {
            name: "inbound raw mode (full MIME in email)",
            request: inbound_req(&q, &[("email", raw_mail), ("to", "support@in.shop.example"), ("from", "Bo <Bo@Example.NET>")], None),
            expect: WebhookExpect::Events(json!([{
                "from": "mailto:bo@example.net", "subject": "Hello", "body": "Plain hello",
                "provider_message_id": "raw-1@example.net"
            }])),
        },
        WebhookCase { name: "inbound without the secret is rejected", request: inbound_req("", &reply_fields(), None), expect: WebhookExpect::Rejected },
        WebhookCase {
            name: "inbound with a wrong secret is rejected",
            request: inbound_req("?secret=inbound-secret-0123456780", &reply_fields(), None),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "inbound that is not multipart is unparseable",
            request: request("POST", &format!("https://weft.example.com/webhooks/sendgrid/sg/inbound{q}"), "inbound", &[("content-type", "application/json")], "{}", NOW),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "inbound without a sender is unparseable",
            request: inbound_req(&q, &[("headers", "Subject: x\r\n"), ("text", "hi")], None),
            expect: WebhookExpect::Unparseable,
        },
    ]
}

#[test]
fn webhook_cases() {
    run_webhook_cases(provider(None).as_ref(), &cases());
}

#[test]
fn stale_events_are_rejected_when_an_age_limit_is_set() {
    let p = provider(Some(600));
    let fresh = events_req("events", json!([ev("delivered", json!({}))]));
    let mut stale = fresh.clone();
    stale.now_unix = NOW + 601;
    run_webhook_cases(
        p.as_ref(),
        &[
            WebhookCase {
                name: "fresh",
                request: fresh,
                expect: WebhookExpect::Events(json!([{"status": "delivered"}])),
            },
            WebhookCase {
                name: "stale",
                request: stale,
                expect: WebhookExpect::Rejected,
            },
        ],
    );
}

#[test]
fn without_keys_every_webhook_is_refused() {
    let mut spec = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
    spec.credentials.insert("api_key", "SG.k");
    let p = weft_sendgrid::build(&spec).unwrap();
    let q = format!("?secret={SECRET}");
    assert!(p.verify(&events_req("events", json!([]))).is_err());
    assert!(p.verify(&inbound_req(&q, &reply_fields(), None)).is_err());
    let mut other = events_req("events", json!([]));
    other.kind = "voice".into();
    assert!(provider(None).verify(&other).is_err());
    assert_eq!(
        p.capabilities().webhook_kinds,
        &["events", "status", "inbound"]
    );
}
