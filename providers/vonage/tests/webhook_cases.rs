//! Webhook table: SMS DLRs (GET, form, JSON), inbound SMS, Messages API statuses and inbound,
//! and forged, unsigned, stale or unknown requests.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::sync::Arc;
use weft_provider::{ConnectionSpec, Provider, ProviderKind, VerifyError, WebhookRequest};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};
use weft_vonage::jwt::{sign_hs256, webhook_claims};
use weft_vonage::verify::{sign_params, SigMethod};

const NOW: i64 = 1_767_225_600;
const SECRET: &str = "5zrLJTMV7IZIHS7BkGfqF0QnxSyVp2P7jxiGlzTdkps=";
const BASE: &str = "https://weft.example/webhooks/vonage/vonage-main";
const MSG_ID: &str = "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA";

fn adapter(api: &str, secret: Option<&str>) -> Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.settings.insert("api".into(), api.into());
    spec.credentials.insert("api_key", "9e831e45");
    spec.credentials.insert("api_secret", "api-secret-1234");
    if let Some(s) = secret {
        spec.credentials.insert("signature_secret", s);
    }
    weft_vonage::build(&spec).unwrap()
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Adds `api-key`, `timestamp`, `nonce` and the `sig` for `method`.
fn signed(p: &[(&str, &str)], method: SigMethod, ts: i64) -> Vec<(String, String)> {
    let mut v = pairs(p);
    v.push(("api-key".into(), "9e831e45".into()));
    v.push(("timestamp".into(), ts.to_string()));
    v.push((
        "nonce".into(),
        "6f2a1d4e-93b1-4c1f-9c55-1f2e3d4c5b6a".into(),
    ));
    let sig = sign_params(method, SECRET.as_bytes(), &v);
    v.push(("sig".into(), sig));
    v
}

fn form(kind: &str, p: Vec<(String, String)>) -> WebhookRequest {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p.iter())
        .finish();
    request(
        "POST",
        &format!("{BASE}/{kind}"),
        kind,
        &[("content-type", "application/x-www-form-urlencoded")],
        body,
        NOW,
    )
}

fn get(kind: &str, p: Vec<(String, String)>) -> WebhookRequest {
    let q = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(p.iter())
        .finish();
    request("GET", &format!("{BASE}/{kind}?{q}"), kind, &[], "", NOW)
}

fn json_post(kind: &str, p: Vec<(String, String)>) -> WebhookRequest {
    let obj: serde_json::Map<String, serde_json::Value> =
        p.into_iter().map(|(k, v)| (k, v.into())).collect();
    let body = serde_json::Value::Object(obj).to_string();
    request(
        "POST",
        &format!("{BASE}/{kind}"),
        kind,
        &[("content-type", "application/json")],
        body,
        NOW,
    )
}

fn dlr(id: &str, status: &str, err: &str) -> Vec<(&'static str, String)> {
    vec![
        ("msisdn", "447700900001".into()),
        ("to", "Weft".into()),
        ("network-code", "23410".into()),
        ("messageId", id.into()),
        ("price", "0.03330000".into()),
        ("status", status.into()),
        ("scts", "2601010000".into()),
        ("err-code", err.into()),
        ("client-ref", MSG_ID.into()),
        ("message-timestamp", "2026-01-01 00:00:00".into()),
    ]
}

fn signed_dlr(id: &str, status: &str, err: &str) -> Vec<(String, String)> {
    let d = dlr(id, status, err);
    let borrowed: Vec<(&str, &str)> = d.iter().map(|(k, v)| (*k, v.as_str())).collect();
    signed(&borrowed, SigMethod::Sha256, NOW)
}

/// A Messages API webhook signed with an HS256 JWT over its body.
fn messages(kind: &str, body: serde_json::Value, secret: &str) -> WebhookRequest {
    let body = body.to_string();
    let token = sign_hs256(
        secret.as_bytes(),
        &webhook_claims("9e831e45", "app-1", NOW, body.as_bytes()),
    );
    let auth = format!("Bearer {token}");
    request(
        "POST",
        &format!("{BASE}/{kind}"),
        kind,
        &[
            ("content-type", "application/json"),
            ("authorization", &auth),
        ],
        body,
        NOW,
    )
}

fn status_body(status: &str) -> serde_json::Value {
    json!({"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "to": "447700900001", "from": "447700900000",
        "timestamp": "2026-01-01T00:00:00.000Z", "status": status, "channel": "sms", "client_ref": MSG_ID,
        "usage": {"currency": "EUR", "price": "0.0333"}})
}

fn status_event(status: serde_json::Value, raw: &str, dedupe: &str) -> WebhookExpect {
    WebhookExpect::Events(
        json!([{"type": "status", "status": status, "raw_status": raw, "dedupe_key": dedupe,
        "correlation": {"message_id": MSG_ID}}]),
    )
}

fn sms_connection_cases() -> Vec<WebhookCase> {
    let mut stale = signed_dlr("0A01", "delivered", "0");
    stale.retain(|(k, _)| k != "sig" && k != "timestamp");
    stale.push(("timestamp".into(), (NOW - 301).to_string()));
    let sig = sign_params(SigMethod::Sha256, SECRET.as_bytes(), &stale);
    stale.push(("sig".into(), sig));

    let mut forged = signed_dlr("0A01", "delivered", "0");
    forged.iter_mut().find(|(k, _)| k == "status").unwrap().1 = "failed".into();
    let mut unsigned = signed_dlr("0A01", "delivered", "0");
    unsigned.retain(|(k, _)| k != "sig");
    let md5hash = {
        let d = dlr("0A01", "delivered", "0");
        let b: Vec<(&str, &str)> = d.iter().map(|(k, v)| (*k, v.as_str())).collect();
        signed(&b, SigMethod::Md5Hash, NOW)
    };

    let inbound = signed(
        &[
            ("msisdn", "447700900001"),
            ("to", "447700900000"),
            ("messageId", "1B0000000456EF0A2"),
            ("text", "Reply: price=5&qty=2 ok — danke"),
            ("type", "unicode"),
            ("keyword", "REPLY:"),
            ("message-timestamp", "2026-01-01 00:00:05"),
        ],
        SigMethod::Sha256,
        NOW,
    );
    let concat_part = signed(
        &[
            ("msisdn", "447700900001"),
            ("to", "447700900000"),
            ("messageId", "1B0000000456EF0B3"),
            ("text", "second half"),
            ("type", "text"),
            ("concat", "true"),
            ("concat-ref", "12"),
            ("concat-total", "2"),
            ("concat-part", "2"),
        ],
        SigMethod::Sha256,
        NOW,
    );
    let no_id = {
        let b = [
            ("msisdn", "447700900001"),
            ("status", "delivered"),
            ("err-code", "0"),
        ];
        signed(&b, SigMethod::Sha256, NOW)
    };

    vec![
        WebhookCase {
            name: "dlr accepted (POST form) → sent, correlated by client-ref",
            request: form("status", signed_dlr("0A01", "accepted", "0")),
            expect: WebhookExpect::Events(
                json!([{"type": "status", "provider_message_id": "0A01", "status": "sent",
                "raw_status": "accepted", "error_code": null, "dedupe_key": "0A01:accepted:0",
                "occurred_at_ms": 1_767_225_600_000i64, "correlation": {"message_id": MSG_ID}}]),
            ),
        },
        WebhookCase {
            name: "dlr buffered (GET query) → sent",
            request: get("status", signed_dlr("0A01", "buffered", "0")),
            expect: status_event(json!("sent"), "buffered", "0A01:buffered:0"),
        },
        WebhookCase {
            name: "dlr delivered (POST JSON) → delivered",
            request: json_post("status", signed_dlr("0A02", "delivered", "0")),
            expect: status_event(json!("delivered"), "delivered", "0A02:delivered:0"),
        },
        WebhookCase {
            name: "dlr expired → expired",
            request: form("status", signed_dlr("0A01", "expired", "0")),
            expect: status_event(json!("expired"), "expired", "0A01:expired:0"),
        },
        WebhookCase {
            name: "dlr failed keeps err-code",
            request: form("status", signed_dlr("0A01", "failed", "2")),
            expect: WebhookExpect::Events(
                json!([{"type": "status", "status": "failed", "error_code": "2",
                "error_detail": "absent subscriber (temporary)", "dedupe_key": "0A01:failed:2"}]),
            ),
        },
        WebhookCase {
            name: "dlr rejected (carrier) → failed",
            request: get("status", signed_dlr("0A01", "rejected", "6")),
            expect: status_event(json!("failed"), "rejected", "0A01:rejected:6"),
        },
        WebhookCase {
            name: "dlr unknown changes nothing",
            request: form("status", signed_dlr("0A01", "unknown", "1")),
            expect: status_event(json!(null), "unknown", "0A01:unknown:1"),
        },
        WebhookCase {
            name: "dlr signed md5hash checked as sha256 is rejected",
            request: form("status", md5hash),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "inbound SMS: tel: identities, text with & and = intact",
            request: form("inbound", inbound),
            expect: WebhookExpect::Events(
                json!([{"type": "message", "channel": "sms", "provider_message_id": "1B0000000456EF0A2",
                "from": "tel:+447700900001", "to": "tel:+447700900000", "body": "Reply: price=5&qty=2 ok — danke",
                "reply_to_provider_id": null, "received_at_ms": 1_767_225_605_000i64, "dedupe_key": "1B0000000456EF0A2"}]),
            ),
        },
        WebhookCase {
            name: "inbound SMS concat part is its own message",
            request: get("inbound", concat_part),
            expect: WebhookExpect::Events(
                json!([{"type": "message", "body": "second half", "dedupe_key": "1B0000000456EF0B3"}]),
            ),
        },
        WebhookCase {
            name: "dlr through URL credentials (Authorization: Basic) still checks sig",
            request: {
                let mut r = form("status", signed_dlr("0A03", "delivered", "0"));
                r.headers
                    .insert("authorization", "Basic d2VmdDpwYXNz".parse().unwrap());
                r
            },
            expect: status_event(json!("delivered"), "delivered", "0A03:delivered:0"),
        },
        WebhookCase {
            name: "a JWT-signed Messages status on an SMS connection",
            request: messages("status", status_body("delivered"), SECRET),
            expect: status_event(
                json!("delivered"),
                "delivered",
                "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab:delivered",
            ),
        },
        WebhookCase {
            name: "forged: status changed after signing",
            request: form("status", forged),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "unsigned DLR",
            request: form("status", unsigned),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "stale timestamp (301 s)",
            request: form("status", stale),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "empty GET",
            request: get("status", Vec::new()),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "signed DLR without messageId",
            request: form("status", no_id),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "unknown kind",
            request: form("voice", signed_dlr("0A01", "delivered", "0")),
            expect: WebhookExpect::Unparseable,
        },
    ]
}

fn messages_connection_cases() -> Vec<WebhookCase> {
    let mut rejected = status_body("rejected");
    rejected["error"] = json!({"type": "https://developer.nexmo.com/api-errors/messages-olympus#1330",
        "title": "1330", "detail": "The message was rejected by the carrier.", "instance": "x"});
    let inbound = json!({"channel": "whatsapp", "message_uuid": "bbbbbbbb-cccc-4ddd-8eee-0123456789ab",
        "to": "447700900000", "from": "4915112345678", "timestamp": "2026-01-01T00:00:05Z", "message_type": "text",
        "text": "Ja — Donnerstag passt.", "profile": {"name": "Jana Müller"},
        "context": {"message_uuid": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "message_from": "447700900000"}});
    let image = json!({"channel": "whatsapp", "message_uuid": "cccccccc-cccc-4ddd-8eee-0123456789ab",
        "to": "447700900000", "from": "4915112345678", "timestamp": "2026-01-01T00:00:06Z", "message_type": "image",
        "image": {"url": "https://example.invalid/media/1.jpg", "caption": "the receipt"}});
    let sms_inbound = json!({"channel": "sms", "message_uuid": "dddddddd-cccc-4ddd-8eee-0123456789ab",
        "to": "447700900000", "from": "447700900001", "timestamp": "2026-01-01T00:00:07Z", "message_type": "text", "text": "STOP"});
    let viber = json!({"channel": "viber_service", "message_uuid": "eeeeeeee-cccc-4ddd-8eee-0123456789ab",
        "to": "x", "from": "y", "message_type": "text", "text": "hi"});

    let alg_none = {
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use base64::Engine;
        let body = status_body("delivered").to_string();
        let claims = webhook_claims("9e831e45", "app-1", NOW, body.as_bytes());
        let token = format!(
            "{}.{}.",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let auth = format!("Bearer {token}");
        request(
            "POST",
            &format!("{BASE}/status"),
            "status",
            &[("authorization", &auth)],
            body,
            NOW,
        )
    };
    let tampered = {
        let mut r = messages("status", status_body("delivered"), SECRET);
        r.body = status_body("rejected").to_string().into();
        r
    };
    let unsigned = request(
        "POST",
        &format!("{BASE}/status"),
        "status",
        &[],
        status_body("delivered").to_string(),
        NOW,
    );
    let sms_sig_on_messages = form("status", signed_dlr("0A01", "delivered", "0"));

    vec![
        WebhookCase {
            name: "messages submitted → sent",
            request: messages("status", status_body("submitted"), SECRET),
            expect: status_event(
                json!("sent"),
                "submitted",
                "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab:submitted",
            ),
        },
        WebhookCase {
            name: "messages delivered → delivered, with time",
            request: messages("status", status_body("delivered"), SECRET),
            expect: WebhookExpect::Events(json!([{"type": "status", "status": "delivered",
                "provider_message_id": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "occurred_at_ms": 1_767_225_600_000i64}])),
        },
        WebhookCase {
            name: "messages read → read",
            request: messages("status", status_body("read"), SECRET),
            expect: status_event(
                json!("read"),
                "read",
                "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab:read",
            ),
        },
        WebhookCase {
            name: "messages rejected → failed with the error",
            request: messages("status", rejected, SECRET),
            expect: WebhookExpect::Events(
                json!([{"type": "status", "status": "failed", "error_code": "1330",
                "error_detail": "The message was rejected by the carrier."}]),
            ),
        },
        WebhookCase {
            name: "messages undeliverable → undeliverable",
            request: messages("status", status_body("undeliverable"), SECRET),
            expect: status_event(
                json!("undeliverable"),
                "undeliverable",
                "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab:undeliverable",
            ),
        },
        WebhookCase {
            name: "messages inbound WhatsApp reply: context, profile name",
            request: messages("inbound", inbound, SECRET),
            expect: WebhookExpect::Events(json!([{"type": "message", "channel": "whatsapp",
                "from": "tel:+4915112345678", "to": "tel:+447700900000", "body": "Ja — Donnerstag passt.",
                "reply_to_provider_id": "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab", "profile_name": "Jana Müller",
                "dedupe_key": "bbbbbbbb-cccc-4ddd-8eee-0123456789ab"}])),
        },
        WebhookCase {
            name: "messages inbound image: caption and media url",
            request: messages("inbound", image, SECRET),
            expect: WebhookExpect::Events(json!([{"type": "message", "body": "the receipt",
                "media": [{"url": "https://example.invalid/media/1.jpg"}]}])),
        },
        WebhookCase {
            name: "messages inbound SMS",
            request: messages("inbound", sms_inbound, SECRET),
            expect: WebhookExpect::Events(
                json!([{"type": "message", "channel": "sms", "body": "STOP", "from": "tel:+447700900001"}]),
            ),
        },
        WebhookCase {
            name: "messages inbound on a channel weft does not carry: no event",
            request: messages("inbound", viber, SECRET),
            expect: WebhookExpect::Events(json!([])),
        },
        WebhookCase {
            name: "jwt signed with another secret",
            request: messages("status", status_body("delivered"), "not-the-secret"),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "jwt alg none",
            request: alg_none,
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "jwt valid but body swapped",
            request: tampered,
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "no Authorization on a Messages connection",
            request: unsigned,
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "an SMS sig does not stand in for the JWT",
            request: sms_sig_on_messages,
            expect: WebhookExpect::Rejected,
        },
    ]
}

#[test]
fn sms_connection_webhooks() {
    run_webhook_cases(
        adapter("sms", Some(SECRET)).as_ref(),
        &sms_connection_cases(),
    );
}

#[test]
fn messages_connection_webhooks() {
    run_webhook_cases(
        adapter("messages", Some(SECRET)).as_ref(),
        &messages_connection_cases(),
    );
}

#[test]
fn without_a_signature_secret_everything_is_refused() {
    for api in ["sms", "messages"] {
        let p = adapter(api, None);
        assert_eq!(
            p.verify(&form("status", signed_dlr("0A01", "delivered", "0"))),
            Err(VerifyError::NotConfigured)
        );
        assert_eq!(
            p.verify(&messages("status", status_body("delivered"), SECRET)),
            Err(VerifyError::NotConfigured)
        );
    }
}

#[test]
fn capabilities_declare_status_and_inbound() {
    let caps = adapter("messages", Some(SECRET)).capabilities();
    assert_eq!(caps.webhook_kinds, &["status", "inbound"]);
    assert_eq!(
        caps.channels,
        vec![
            weft_provider::Channel::Sms,
            weft_provider::Channel::Whatsapp
        ]
    );
}
