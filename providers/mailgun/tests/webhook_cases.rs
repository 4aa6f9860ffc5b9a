#![allow(clippy::unwrap_used)]
//! Webhook cases: every event mapping, inbound routes with threading headers (url-encoded and
//! multipart), and forged / unsigned / stale / replayed requests rejected.

use serde_json::{json, Value};
use weft_provider::verify::hmac_sha256_hex;
use weft_provider::{ConnectionSpec, Provider, ProviderKind, WebhookRequest};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};

const KEY: &str = "9dba3544b1d5499e7be76f11fbf8abc7";
const NOW: i64 = 1_767_225_600;

fn provider() -> std::sync::Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("mg", ProviderKind::Mailgun);
    spec.credentials.insert("api_key", "key-api");
    spec.credentials.insert("webhook_signing_key", KEY);
    spec.settings
        .insert("domain".into(), json!("mg.shop.example"));
    weft_mailgun::build(&spec).unwrap()
}

/// A signature object; `token` must differ per case (the provider remembers tokens).
fn sig(token: &str, ts: i64, key: &str) -> Value {
    let ts = ts.to_string();
    json!({"timestamp": ts, "token": token, "signature": hmac_sha256_hex(key.as_bytes(), format!("{ts}{token}").as_bytes())})
}

fn event_req(kind: &str, signature: Option<Value>, data: Value) -> WebhookRequest {
    let mut body = json!({"event-data": data});
    if let Some(s) = signature {
        body["signature"] = s;
    }
    request(
        "POST",
        "https://weft.example.com/webhooks/mailgun/mg/events",
        kind,
        &[("content-type", "application/json")],
        body.to_string(),
        NOW + 3,
    )
}

fn data(event: &str, extra: Value) -> Value {
    let mut v = json!({
        "event": event, "id": format!("id-{event}"), "timestamp": 1767225599.5,
        "recipient": "ana@example.org",
        "message": {"headers": {"message-id": "20260101.abc@mg.shop.example"}},
        "user-variables": {"weft_message_id": "msg_1", "weft_attempt_id": "att_1"}
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

fn status_case(
    name: &'static str,
    token: &str,
    event: &str,
    extra: Value,
    want: Value,
) -> WebhookCase {
    let mut expected = json!({
        "type": "status", "provider_message_id": "20260101.abc@mg.shop.example", "raw_status": event,
        "correlation": {"message_id": "msg_1", "attempt_id": "att_1"},
        "dedupe_key": format!("id-{event}"), "occurred_at_ms": 1_767_225_599_500i64
    });
    for (k, x) in want.as_object().unwrap() {
        expected[k] = x.clone();
    }
    let mut d = data(event, extra);
    if let Some(id) = want.get("dedupe_key") {
        d["id"] = id.clone();
    }
    WebhookCase {
        name,
        request: event_req("events", Some(sig(token, NOW, KEY)), d),
        expect: WebhookExpect::Events(json!([expected])),
    }
}

fn route_fields(token: &str) -> Vec<(String, String)> {
    let s = sig(token, NOW, KEY);
    let mut f: Vec<(String, String)> = [
        ("recipient", "reply+tok123@in.shop.example"),
        ("sender", "Jane@X.com"),
        ("from", "\"Jane\" <Jane@X.com>"),
        ("subject", "Re: Your appointment"),
        ("body-plain", "Thursday works.\n\n> Does Thursday work?"),
        ("stripped-text", "Thursday works."),
        ("Message-Id", "<CAF=abc123@mail.x.com>"),
        ("In-Reply-To", "<msg_01@mg.shop.example>"),
        ("References", "<first@mg.shop.example> <msg_01@mg.shop.example>"),
        ("message-headers", r#"[["Date","Thu, 01 Jan 2026 00:00:00 +0000"],["Reply-To","Jane Home <jane@home.example>"]]"#),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for k in ["timestamp", "token", "signature"] {
        f.push((k.to_string(), s[k].as_str().unwrap().to_string()));
    }
    f
}

fn urlencoded(fields: &[(String, String)]) -> WebhookRequest {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    request(
        "POST",
        "https://weft.example.com/webhooks/mailgun/mg/inbound",
        "inbound",
        &[("content-type", "application/x-www-form-urlencoded")],
        s.finish(),
        NOW + 3,
    )
}

fn multipart(fields: &[(String, String)], file: Option<(&str, &str)>) -> WebhookRequest {
    let b = "b0undary9";
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    if let Some((name, filename)) = file {
        out.push_str(&format!("--{b}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{filename}\"\r\nContent-Type: image/png\r\n\r\nPNG\r\n"));
    }
    out.push_str(&format!("--{b}--\r\n"));
    let ct = format!("multipart/form-data; boundary={b}");
    request(
        "POST",
        "https://weft.example.com/webhooks/mailgun/mg/inbound",
        "inbound",
        &[("content-type", ct.as_str())],
        out,
        NOW + 3,
    )
}

fn without(mut fields: Vec<(String, String)>, names: &[&str]) -> Vec<(String, String)> {
    fields.retain(|(k, _)| !names.contains(&k.as_str()));
    fields
}

fn reply_expect() -> Value {
    json!([{
        "type": "message", "channel": "email", "provider_message_id": "CAF=abc123@mail.x.com",
        "from": "mailto:jane@x.com", "to": "mailto:reply+tok123@in.shop.example",
        "subject": "Re: Your appointment", "body": "Thursday works.\n\n> Does Thursday work?",
        "email": {
            "message_id": "CAF=abc123@mail.x.com", "in_reply_to": "msg_01@mg.shop.example",
            "references": ["first@mg.shop.example", "msg_01@mg.shop.example"], "reply_to": "jane@home.example"
        },
        "received_at_ms": 1_767_225_600_000i64, "forwarded": false,
        "dedupe_key": "CAF=abc123@mail.x.com/reply+tok123@in.shop.example"
    }])
}

fn cases() -> Vec<WebhookCase> {
    let mut replay_body = data("delivered", json!({}));
    replay_body["event"] = json!("failed");
    let forged_key_fields = {
        let mut f = without(route_fields("tok-r-forged"), &["signature"]);
        f.push((
            "signature".into(),
            sig("tok-r-forged", NOW, "another-key")["signature"]
                .as_str()
                .unwrap()
                .to_string(),
        ));
        f
    };
    vec![
        status_case(
            "accepted is queued",
            "tok-01",
            "accepted",
            json!({}),
            json!({"status": "queued", "error_code": null}),
        ),
        status_case(
            "delivered",
            "tok-02",
            "delivered",
            json!({"delivery-status": {"code": 250, "message": "OK"}}),
            json!({"status": "delivered"}),
        ),
        status_case(
            "temporary failure is still queued",
            "tok-03",
            "failed",
            json!({"severity": "temporary", "reason": "greylisted", "delivery-status": {"code": 421, "message": "4.7.1 Greylisted"}}),
            json!({"status": "queued", "error_code": "421", "error_detail": "4.7.1 Greylisted", "dedupe_key": "id-temp"}),
        ),
        status_case(
            "permanent bounce is undeliverable",
            "tok-04",
            "failed",
            json!({"severity": "permanent", "reason": "bounce", "delivery-status": {"code": 550, "message": "5.1.1 User unknown", "description": ""}}),
            json!({"status": "undeliverable", "error_code": "550", "error_detail": "5.1.1 User unknown", "opted_out": false}),
        ),
        status_case(
            "suppressed address is rejected",
            "tok-05",
            "failed",
            json!({"severity": "permanent", "reason": "suppress-bounce", "delivery-status": {"code": 605, "description": "Not delivering to previously bounced address"}}),
            json!({"status": "rejected", "error_code": "605", "error_detail": "Not delivering to previously bounced address", "dedupe_key": "id-supp"}),
        ),
        status_case(
            "suppressed unsubscribe is rejected and opted out",
            "tok-06",
            "failed",
            json!({"severity": "permanent", "reason": "suppress-unsubscribe"}),
            json!({"status": "rejected", "opted_out": true, "dedupe_key": "id-unsub"}),
        ),
        status_case(
            "rejected",
            "tok-07",
            "rejected",
            json!({"reject": {"reason": "Sandbox subdomains are for test purposes only"}}),
            json!({"status": "rejected", "error_detail": "Sandbox subdomains are for test purposes only"}),
        ),
        status_case(
            "opened is read",
            "tok-08",
            "opened",
            json!({}),
            json!({"status": "read"}),
        ),
        status_case(
            "clicked is read",
            "tok-09",
            "clicked",
            json!({"url": "https://shop.example"}),
            json!({"status": "read"}),
        ),
        status_case(
            "complained changes nothing, opts out",
            "tok-10",
            "complained",
            json!({}),
            json!({"status": null, "opted_out": true}),
        ),
        status_case(
            "unsubscribed changes nothing, opts out",
            "tok-11",
            "unsubscribed",
            json!({}),
            json!({"status": null, "opted_out": true}),
        ),
        WebhookCase {
            name: "the status alias kind works",
            request: event_req(
                "status",
                Some(sig("tok-12", NOW, KEY)),
                data("delivered", json!({"id": "alias-1"})),
            ),
            expect: WebhookExpect::Events(
                json!([{"status": "delivered", "dedupe_key": "alias-1"}]),
            ),
        },
        WebhookCase {
            name: "signed with the API key is rejected",
            request: event_req(
                "events",
                Some(sig("tok-13", NOW, "key-api")),
                data("delivered", json!({})),
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "unsigned event is rejected",
            request: event_req("events", None, data("delivered", json!({}))),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "stale event is rejected",
            request: event_req(
                "events",
                Some(sig("tok-14", NOW - 3600, KEY)),
                data("delivered", json!({})),
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "first use of a token passes",
            request: event_req(
                "events",
                Some(sig("tok-15", NOW, KEY)),
                data("delivered", json!({"id": "r1"})),
            ),
            expect: WebhookExpect::Events(json!([{"status": "delivered"}])),
        },
        WebhookCase {
            name: "the same token and body again (a retry) passes",
            request: event_req(
                "events",
                Some(sig("tok-15", NOW, KEY)),
                data("delivered", json!({"id": "r1"})),
            ),
            expect: WebhookExpect::Events(json!([{"status": "delivered"}])),
        },
        WebhookCase {
            name: "a replayed token on another body is rejected",
            request: event_req("events", Some(sig("tok-15", NOW, KEY)), replay_body),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "a signed event without event-data is unparseable",
            request: request(
                "POST",
                "https://weft.example.com/x",
                "events",
                &[("content-type", "application/json")],
                json!({"signature": sig("tok-16", NOW, KEY)}).to_string(),
                NOW,
            ),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "inbound reply, url-encoded",
            request: urlencoded(&route_fields("tok-r1")),
            expect: WebhookExpect::Events(reply_expect()),
        },
        WebhookCase {
            name: "inbound reply, multipart",
            request: multipart(&route_fields("tok-r2"), None),
            expect: WebhookExpect::Events(reply_expect()),
        },
        WebhookCase {
            name: "inbound headers only in message-headers",
            request: urlencoded(&{
                let mut f = without(
                    route_fields("tok-r3"),
                    &["Message-Id", "In-Reply-To", "References", "message-headers"],
                );
                f.push(("message-headers".into(), r#"[["Message-Id","<mh-1@x.com>"],["In-Reply-To","<msg_01@mg.shop.example>"],["References","<msg_01@mg.shop.example>"]]"#.into()));
                f
            }),
            expect: WebhookExpect::Events(json!([{
                "provider_message_id": "mh-1@x.com",
                "email": {"message_id": "mh-1@x.com", "in_reply_to": "msg_01@mg.shop.example", "references": ["msg_01@mg.shop.example"]}
            }])),
        },
        WebhookCase {
            name: "inbound new mail with an attachment",
            request: multipart(
                &without(
                    route_fields("tok-r4"),
                    &["In-Reply-To", "References", "message-headers", "body-plain"],
                ),
                Some(("attachment-1", "photo.png")),
            ),
            expect: WebhookExpect::Events(json!([{
                "body": "Thursday works.",
                "email": {"in_reply_to": null, "references": []},
                "received_at_ms": 1_767_225_600_000i64,
                "media": [{"provider_media_id": "photo.png", "content_type": "image/png"}]
            }])),
        },
        WebhookCase {
            name: "inbound without a signature is rejected",
            request: urlencoded(&without(route_fields("tok-r5"), &["signature"])),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "inbound signed with another key is rejected",
            request: urlencoded(&forged_key_fields),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "inbound without a sender is unparseable",
            request: urlencoded(&without(route_fields("tok-r6"), &["from", "sender"])),
            expect: WebhookExpect::Unparseable,
        },
    ]
}

#[test]
fn webhook_cases() {
    run_webhook_cases(provider().as_ref(), &cases());
}

#[test]
fn without_a_signing_key_every_webhook_is_refused() {
    let mut spec = ConnectionSpec::new("mg", ProviderKind::Mailgun);
    spec.credentials.insert("api_key", "key-api");
    spec.settings
        .insert("domain".into(), json!("mg.shop.example"));
    let p = weft_mailgun::build(&spec).unwrap();
    assert!(p
        .verify(&event_req(
            "events",
            Some(sig("t", NOW, KEY)),
            data("delivered", json!({}))
        ))
        .is_err());
    assert!(p.verify(&urlencoded(&route_fields("t2"))).is_err());
    let mut voice = event_req(
        "events",
        Some(sig("t3", NOW, KEY)),
        data("delivered", json!({})),
    );
    voice.kind = "voice".into();
    assert!(provider().verify(&voice).is_err());
    assert_eq!(
        p.capabilities().webhook_kinds,
        &["events", "status", "inbound"]
    );
}
