//! Webhook cases through `Provider::verify` and `parse`: both callback kinds, forgeries,
//! unsigned and stale requests, bodies that do not parse.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use weft_provider::{ConnectionSpec, ProviderKind, WebhookRequest};
use weft_sandbox::verify::{sign, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};

const NOW: i64 = 1_767_225_600;
const SECRET: &str = "weft-sandbox-secret";
const STATUS_URL: &str = "https://weft.example/webhooks/sandbox/sbx/status?m=msg_q&a=att_q";
const INBOUND_URL: &str = "https://weft.example/webhooks/sandbox/sbx/inbound";

fn signed_at(url: &str, kind: &str, body: &str, secret: &str, ts: i64, now: i64) -> WebhookRequest {
    let sig = sign(secret, ts, body.as_bytes());
    let ts = ts.to_string();
    request(
        "POST",
        url,
        kind,
        &[(SIGNATURE_HEADER, &sig), (TIMESTAMP_HEADER, &ts)],
        body.to_string(),
        now,
    )
}

fn signed(url: &str, kind: &str, body: &str) -> WebhookRequest {
    signed_at(url, kind, body, SECRET, NOW, NOW)
}

fn status_body() -> String {
    json!({"type":"status","event_id":"01JEVENT0000000000000000A1","provider_message_id":"sbx_01JMSG",
           "message_id":"msg_01","attempt_id":"att_01","status":"failed","error_code":"30008",
           "timestamp_ms":1_767_225_600_123_i64})
    .to_string()
}

fn message_body() -> String {
    json!({"type":"message","event_id":"01JEVENT0000000000000000B2","provider_message_id":"sbx_01JECHO",
           "channel":"whatsapp","from":"+4915112345678","to":"+15005550006","body":"echo: hi",
           "reply_to_provider_id":"sbx_01JMSG","timestamp_ms":1_767_225_600_456_i64})
    .to_string()
}

#[test]
fn webhook_cases() {
    let p = weft_sandbox::build(&ConnectionSpec::new("sbx", ProviderKind::Sandbox)).unwrap();
    let unsigned = request("POST", STATUS_URL, "status", &[], status_body(), NOW);
    let no_ts = {
        let sig = sign(SECRET, NOW, status_body().as_bytes());
        request(
            "POST",
            STATUS_URL,
            "status",
            &[(SIGNATURE_HEADER, &sig)],
            status_body(),
            NOW,
        )
    };
    let cases = [
        WebhookCase {
            name: "status",
            request: signed(STATUS_URL, "status", &status_body()),
            expect: WebhookExpect::Events(json!([{
                "type": "status",
                "provider_message_id": "sbx_01JMSG",
                "correlation": {"message_id": "msg_01", "attempt_id": "att_01"},
                "status": "failed",
                "raw_status": "failed",
                "error_code": "30008",
                "occurred_at_ms": 1_767_225_600_123_i64,
                "dedupe_key": "01JEVENT0000000000000000A1",
                "opted_out": false,
            }])),
        },
        WebhookCase {
            name: "echo message",
            request: signed(INBOUND_URL, "inbound", &message_body()),
            expect: WebhookExpect::Events(json!([{
                "type": "message",
                "provider_message_id": "sbx_01JECHO",
                "channel": "whatsapp",
                "from": "tel:+4915112345678",
                "to": "tel:+15005550006",
                "body": "echo: hi",
                "reply_to_provider_id": "sbx_01JMSG",
                "forwarded": false,
                "received_at_ms": 1_767_225_600_456_i64,
                "dedupe_key": "01JEVENT0000000000000000B2",
            }])),
        },
        WebhookCase {
            name: "forged with another secret",
            request: signed_at(STATUS_URL, "status", &status_body(), "guessed", NOW, NOW),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "body changed after signing",
            request: {
                let mut r = signed(STATUS_URL, "status", &status_body());
                r.body = status_body().replace("failed", "delivered").into();
                r
            },
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "unsigned",
            request: unsigned,
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "no timestamp",
            request: no_ts,
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "replayed 10 minutes later",
            request: signed_at(STATUS_URL, "status", &status_body(), SECRET, NOW, NOW + 600),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "from the future",
            request: signed_at(STATUS_URL, "status", &status_body(), SECRET, NOW + 301, NOW),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "signed but not JSON",
            request: signed(STATUS_URL, "status", "status=delivered"),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "signed but of an unknown type",
            request: signed(STATUS_URL, "status", r#"{"type":"call","event_id":"E"}"#),
            expect: WebhookExpect::Unparseable,
        },
    ];
    run_webhook_cases(p.as_ref(), &cases);
}

#[test]
fn a_configured_secret_replaces_the_default() {
    let mut spec = ConnectionSpec::new("sbx", ProviderKind::Sandbox);
    spec.credentials.insert("signing_secret", "my-own-secret");
    let p = weft_sandbox::build(&spec).unwrap();
    assert!(p
        .verify(&signed_at(
            STATUS_URL,
            "status",
            &status_body(),
            "my-own-secret",
            NOW,
            NOW
        ))
        .is_ok());
    assert!(
        p.verify(&signed(STATUS_URL, "status", &status_body()))
            .is_err(),
        "the public default still works"
    );
}
