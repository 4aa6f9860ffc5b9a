//! Webhook table: every status mapping, inbound shapes, several events per request, forgeries;
//! plus the GET subscription handshake.
#![allow(clippy::unwrap_used)]

use serde_json::{json, Value};
use weft_provider::{ConnectionSpec, Provider, ProviderKind, VerifyError};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};
use weft_whatsapp::verify::sign;

const SECRET: &str = "357129596994b36a01392bcfa930d45c";
const URL: &str = "https://weft.example/webhooks/whatsapp_cloud/wa/webhook";
const NOW: i64 = 1_767_225_600;

fn provider() -> std::sync::Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("wa", ProviderKind::WhatsappCloud);
    spec.credentials.insert("access_token", "EAAG-token");
    spec.credentials.insert("app_secret", SECRET);
    spec.credentials.insert("verify_token", "hub-verify-me");
    spec.settings
        .insert("phone_number_id".into(), "106540352242922".into());
    weft_whatsapp::build(&spec).unwrap()
}

fn metadata() -> Value {
    json!({"display_phone_number": "15550783881", "phone_number_id": "106540352242922"})
}

fn envelope(values: Vec<Value>) -> String {
    let changes: Vec<Value> = values
        .into_iter()
        .map(|v| json!({"field": "messages", "value": v}))
        .collect();
    json!({"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "changes": changes}]}).to_string()
}

fn status_value(status: Value) -> Value {
    json!({"messaging_product": "whatsapp", "metadata": metadata(), "statuses": [status]})
}

fn message_value(message: Value) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": metadata(),
        "contacts": [{"profile": {"name": "Jana Müller"}, "wa_id": "4915112345678"}],
        "messages": [message],
    })
}

fn signed(kind: &str, body: String) -> weft_provider::WebhookRequest {
    let sig = sign(SECRET, body.as_bytes());
    request(
        "POST",
        URL,
        kind,
        &[
            ("X-Hub-Signature-256", &sig),
            ("content-type", "application/json"),
        ],
        body,
        NOW,
    )
}

fn status_case(name: &'static str, word: &str, errors: Option<Value>, want: Value) -> WebhookCase {
    let mut s = json!({
        "id": "wamid.OUT1", "status": word, "timestamp": "1767225600", "recipient_id": "4915112345678",
        "biz_opaque_callback_data": "msg_01J:att_01",
    });
    if let Some(e) = errors {
        s["errors"] = e;
    }
    WebhookCase {
        name,
        request: signed("webhook", envelope(vec![status_value(s)])),
        expect: WebhookExpect::Events(json!([want])),
    }
}

fn text_message(extra: Value) -> Value {
    let mut m = json!({"from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "text", "text": {"body": "Donnerstag passt"}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    m
}

fn message_case(name: &'static str, message: Value, want: Value) -> WebhookCase {
    WebhookCase {
        name,
        request: signed("webhook", envelope(vec![message_value(message)])),
        expect: WebhookExpect::Events(json!([want])),
    }
}

fn cases() -> Vec<WebhookCase> {
    let err = |code: i64| json!([{"code": code, "title": "t", "message": "m", "error_data": {"details": "why"}}]);
    let corr = json!({"message_id": "msg_01J", "attempt_id": "att_01"});
    let inbound_base = json!({
        "type": "message", "provider_message_id": "wamid.IN1", "channel": "whatsapp",
        "from": "tel:+4915112345678", "to": "tel:+15550783881", "profile_name": "Jana Müller",
        "received_at_ms": 1_767_225_600_000_i64, "dedupe_key": "wamid.IN1",
    });
    let with = |extra: Value| {
        let mut v = inbound_base.clone();
        for (k, x) in extra.as_object().unwrap() {
            v[k] = x.clone();
        }
        v
    };
    let bad_sig_body = envelope(vec![status_value(
        json!({"id": "wamid.X", "status": "read", "timestamp": "1"}),
    )]);
    vec![
        status_case("sent → sent with correlation", "sent", None, json!({
            "type": "status", "provider_message_id": "wamid.OUT1", "status": "sent", "raw_status": "sent",
            "correlation": corr, "dedupe_key": "wamid.OUT1:sent", "occurred_at_ms": 1_767_225_600_000_i64, "error_code": null,
        })),
        status_case("delivered → delivered", "delivered", None, json!({"status": "delivered", "dedupe_key": "wamid.OUT1:delivered"})),
        status_case("read → read", "read", None, json!({"status": "read", "dedupe_key": "wamid.OUT1:read"})),
        status_case("failed 131047 → failed", "failed", Some(err(131047)), json!({
            "status": "failed", "error_code": "131047", "error_detail": "why", "opted_out": false, "dedupe_key": "wamid.OUT1:failed",
        })),
        status_case("failed 131026 → undeliverable", "failed", Some(err(131026)), json!({"status": "undeliverable", "error_code": "131026"})),
        status_case("failed 131050 → failed, opted out", "failed", Some(err(131050)), json!({"status": "failed", "opted_out": true})),
        status_case("failed without errors → failed", "failed", None, json!({"status": "failed", "error_code": null})),
        status_case("deleted changes nothing", "deleted", None, json!({"status": null, "raw_status": "deleted"})),
        status_case("an unknown word changes nothing", "warning", None, json!({"status": null, "raw_status": "warning"})),
        message_case("inbound text", text_message(json!({})), with(json!({
            "body": "Donnerstag passt", "reply_to_provider_id": null, "forwarded": false, "media": [],
        }))),
        message_case("inbound quoted reply: context.id", text_message(json!({"context": {"from": "15550783881", "id": "wamid.OUT1"}})),
            with(json!({"reply_to_provider_id": "wamid.OUT1", "forwarded": false}))),
        message_case("forwarded is not a reply", text_message(json!({"context": {"forwarded": true}})),
            with(json!({"reply_to_provider_id": null, "forwarded": true}))),
        message_case("frequently forwarded with an id is not a reply", text_message(json!({"context": {"frequently_forwarded": true, "id": "wamid.OUT1"}})),
            with(json!({"reply_to_provider_id": null, "forwarded": true}))),
        message_case("image with caption", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "image",
            "image": {"id": "1234567890", "mime_type": "image/jpeg", "sha256": "abc", "caption": "Rechnung"},
        }), with(json!({"body": "Rechnung", "media": [{"provider_media_id": "1234567890", "content_type": "image/jpeg", "url": null}]}))),
        message_case("document without caption", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "document",
            "document": {"id": "987", "mime_type": "application/pdf", "filename": "a.pdf"},
        }), with(json!({"body": null, "media": [{"provider_media_id": "987", "content_type": "application/pdf"}]}))),
        message_case("template quick-reply button", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "button",
            "context": {"from": "15550783881", "id": "wamid.TPL"}, "button": {"text": "Bestätigen", "payload": "CONFIRM"},
        }), with(json!({"body": "Bestätigen", "reply_to_provider_id": "wamid.TPL"}))),
        message_case("interactive button reply", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "interactive",
            "interactive": {"type": "button_reply", "button_reply": {"id": "yes", "title": "Ja"}},
        }), with(json!({"body": "Ja"}))),
        message_case("interactive list reply", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "interactive",
            "interactive": {"type": "list_reply", "list_reply": {"id": "r2", "title": "Dienstag", "description": "10-12"}},
        }), with(json!({"body": "Dienstag"}))),
        message_case("reaction points at the reacted message", json!({
            "from": "4915112345678", "id": "wamid.IN1", "timestamp": "1767225600", "type": "reaction",
            "reaction": {"message_id": "wamid.OUT1", "emoji": "👍"},
        }), with(json!({"body": "👍", "reply_to_provider_id": "wamid.OUT1"}))),
        message_case("a username user without a phone is whatsapp:<id>", json!({
            "from_user_id": "US.13491208655302741918", "id": "wamid.IN1", "timestamp": "1767225600", "type": "text", "text": {"body": "hi"},
        }), json!({"from": "whatsapp:US.13491208655302741918", "profile_name": "Jana Müller"})),
        WebhookCase {
            name: "several changes and items give several events, in order",
            request: signed("webhook", envelope(vec![
                json!({"metadata": metadata(), "statuses": [
                    {"id": "wamid.A", "status": "sent", "timestamp": "1"},
                    {"id": "wamid.B", "status": "delivered", "timestamp": "2"},
                ]}),
                message_value(text_message(json!({}))),
            ])),
            expect: WebhookExpect::Events(json!([
                {"type": "status", "dedupe_key": "wamid.A:sent", "correlation": {"message_id": null}},
                {"type": "status", "dedupe_key": "wamid.B:delivered"},
                {"type": "message", "dedupe_key": "wamid.IN1"},
            ])),
        },
        WebhookCase {
            name: "kind status is an alias",
            request: signed("status", envelope(vec![status_value(json!({"id": "wamid.A", "status": "read", "timestamp": "1"}))])),
            expect: WebhookExpect::Events(json!([{"type": "status", "status": "read"}])),
        },
        WebhookCase {
            name: "kind inbound is an alias",
            request: signed("inbound", envelope(vec![message_value(text_message(json!({})))])),
            expect: WebhookExpect::Events(json!([{"type": "message", "body": "Donnerstag passt"}])),
        },
        WebhookCase {
            name: "other fields (template review) give no events",
            request: signed("webhook", json!({"object": "whatsapp_business_account", "entry": [{"id": "1", "changes": [
                {"field": "message_template_status_update", "value": {"event": "APPROVED", "message_template_id": 1}}]}]}).to_string()),
            expect: WebhookExpect::Events(json!([])),
        },
        WebhookCase {
            name: "signed junk is unparseable",
            request: signed("webhook", "{not json".to_string()),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "unsigned is rejected",
            request: request("POST", URL, "webhook", &[], bad_sig_body.clone(), NOW),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "signed with another secret is rejected",
            request: request("POST", URL, "webhook", &[("X-Hub-Signature-256", &sign("other-secret", bad_sig_body.as_bytes()))], bad_sig_body.clone(), NOW),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "a body changed after signing is rejected",
            request: request(
                "POST", URL, "webhook",
                &[("X-Hub-Signature-256", &sign(SECRET, bad_sig_body.as_bytes()))],
                bad_sig_body.replace("read", "sent"), NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "a legacy sha1 header alone is rejected",
            request: request("POST", URL, "webhook", &[("X-Hub-Signature", "sha1=2de170559a2466d29cff9f5c9069706ae09c5c14")], bad_sig_body, NOW),
            expect: WebhookExpect::Rejected,
        },
    ]
}

#[test]
fn webhook_table() {
    let cases = cases();
    assert!(cases.len() >= 25, "{}", cases.len());
    run_webhook_cases(provider().as_ref(), &cases);
}

#[test]
fn declares_its_kinds() {
    let kinds = provider().capabilities().webhook_kinds;
    for k in ["webhook", "status", "inbound"] {
        assert!(kinds.contains(&k), "{k}");
    }
}

fn get(query: &str) -> weft_provider::WebhookRequest {
    request("GET", &format!("{URL}?{query}"), "webhook", &[], "", NOW)
}

#[test]
fn handshake_echoes_the_raw_challenge() {
    let ack = provider().handshake(&get(
        "hub.mode=subscribe&hub.verify_token=hub-verify-me&hub.challenge=1158201444",
    ));
    let ack = ack.unwrap().unwrap();
    assert_eq!(ack.status, http::StatusCode::OK);
    assert_eq!(&ack.body[..], b"1158201444");
    assert_eq!(ack.content_type, Some("text/plain"));
}

#[test]
fn handshake_refuses_a_wrong_token_or_mode() {
    let p = provider();
    for (q, want) in [
        (
            "hub.mode=subscribe&hub.verify_token=guess&hub.challenge=1",
            Some(VerifyError::Mismatch),
        ),
        (
            "hub.mode=subscribe&hub.challenge=1",
            Some(VerifyError::Missing("hub.verify_token")),
        ),
        (
            "hub.mode=unsubscribe&hub.verify_token=hub-verify-me&hub.challenge=1",
            None,
        ),
        (
            "hub.mode=subscribe&hub.verify_token=hub-verify-me",
            Some(VerifyError::Missing("hub.challenge")),
        ),
        ("", None),
    ] {
        let got = p.handshake(&get(q)).unwrap();
        let err = got.expect_err(q);
        if let Some(w) = want {
            assert_eq!(err, w, "{q}");
        }
    }
}
