//! Webhook cases: message and call statuses, inbound SMS / WhatsApp / calls.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::{json, Value};
use weft_provider::WebhookRequest;
use weft_testkit::{run_webhook_cases, WebhookCase, WebhookExpect};

fn message_status(status: &str, extra: &[(&'static str, &'static str)]) -> WebhookRequest {
    let mut p = vec![
        ("AccountSid", AC),
        ("ApiVersion", "2010-04-01"),
        ("From", "+15005550006"),
        ("MessageSid", SM),
        ("MessageStatus", status),
        ("SmsSid", SM),
        ("SmsStatus", status),
        ("To", "+14155550100"),
    ];
    p.extend_from_slice(extra);
    signed("status", &status_url(), &p)
}

fn status_case(
    name: &'static str,
    raw: &str,
    extra: &[(&'static str, &'static str)],
    want: Value,
) -> WebhookCase {
    let mut expected = json!({
        "type": "status",
        "provider_message_id": SM,
        "raw_status": raw,
        "correlation": {"message_id": "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA", "attempt_id": "att_7"},
        "dedupe_key": format!("{SM}:{raw}"),
    });
    for (k, v) in want.as_object().unwrap() {
        expected[k] = v.clone();
    }
    WebhookCase {
        name,
        request: message_status(raw, extra),
        expect: WebhookExpect::Events(json!([expected])),
    }
}

fn call_status(status: &str, extra: &[(&'static str, &'static str)]) -> WebhookRequest {
    let mut p = vec![
        ("AccountSid", AC),
        ("ApiVersion", "2010-04-01"),
        ("CallSid", CA),
        ("CallStatus", status),
        ("Called", "+14155550100"),
        ("Caller", "+15005550006"),
        ("CallbackSource", "call-progress-events"),
        ("Direction", "outbound-api"),
        ("From", "+15005550006"),
        ("SequenceNumber", "0"),
        ("Timestamp", "Thu, 01 Jan 2026 00:00:00 +0000"),
        ("To", "+14155550100"),
    ];
    p.extend_from_slice(extra);
    signed("status", &status_url(), &p)
}

fn call_case(
    name: &'static str,
    raw: &str,
    extra: &[(&'static str, &'static str)],
    want: Value,
) -> WebhookCase {
    let mut expected = json!({
        "type": "status",
        "provider_message_id": CA,
        "raw_status": raw,
        "status": want,
        "correlation": {"message_id": "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA", "attempt_id": "att_7"},
        "occurred_at_ms": 1_767_225_600_000i64,
        "dedupe_key": format!("{CA}:{raw}"),
        "opted_out": false,
    });
    if raw == "busy" {
        expected["error_detail"] = json!("SIP response 486");
    }
    WebhookCase {
        name,
        request: call_status(raw, extra),
        expect: WebhookExpect::Events(json!([expected])),
    }
}

fn inbound(p: &[(&str, &str)]) -> WebhookRequest {
    signed("inbound", &format!("{BASE}/inbound"), p)
}

const WA_BASE: [(&str, &str); 9] = [
    ("AccountSid", AC),
    ("ApiVersion", "2010-04-01"),
    ("Body", "Ja, passt!"),
    ("From", "whatsapp:+4915112345678"),
    ("MessageSid", "SM11111111111111111111111111111111"),
    ("NumMedia", "0"),
    ("ProfileName", "Jana"),
    ("To", "whatsapp:+15005550006"),
    ("WaId", "4915112345678"),
];

fn whatsapp(extra: &[(&str, &str)]) -> WebhookRequest {
    let mut p = WA_BASE.to_vec();
    p.extend_from_slice(extra);
    inbound(&p)
}

fn status_cases() -> Vec<WebhookCase> {
    vec![
        status_case("msg_accepted", "accepted", &[], json!({"status": "queued"})),
        status_case(
            "msg_scheduled",
            "scheduled",
            &[],
            json!({"status": "queued"}),
        ),
        status_case("msg_queued", "queued", &[], json!({"status": "queued"})),
        status_case("msg_sending", "sending", &[], json!({"status": "sending"})),
        status_case(
            "msg_sent",
            "sent",
            &[],
            json!({"status": "sent", "error_code": null, "opted_out": false}),
        ),
        status_case(
            "msg_delivered",
            "delivered",
            &[("RawDlrDoneDate", "2601010000")],
            json!({"status": "delivered", "occurred_at_ms": 1_767_225_600_000i64}),
        ),
        status_case(
            "msg_partially_delivered_is_delivered_and_flagged",
            "partially_delivered",
            &[],
            json!({"status": "delivered", "error_detail": "partially delivered: some parts were not delivered"}),
        ),
        status_case("msg_read", "read", &[], json!({"status": "read"})),
        status_case(
            "msg_undelivered_30003",
            "undelivered",
            &[("ErrorCode", "30003")],
            json!({"status": "undeliverable", "error_code": "30003", "error_detail": "unreachable destination handset", "opted_out": false}),
        ),
        status_case(
            "msg_failed_30008",
            "failed",
            &[("ErrorCode", "30008")],
            json!({"status": "failed", "error_code": "30008"}),
        ),
        status_case(
            "msg_canceled_is_failed",
            "canceled",
            &[],
            json!({"status": "failed", "error_detail": "canceled before sending"}),
        ),
        status_case(
            "msg_failed_21610_is_opt_out",
            "failed",
            &[("ErrorCode", "21610")],
            json!({"status": "failed", "error_code": "21610", "opted_out": true}),
        ),
        status_case(
            "msg_unknown_status_changes_nothing",
            "teleported",
            &[],
            json!({"status": null}),
        ),
        WebhookCase {
            name: "msg_idempotency_token_is_the_dedupe_key",
            request: signed_with(
                "status",
                &status_url(),
                &[
                    ("MessageSid", SM),
                    ("MessageStatus", "delivered"),
                    ("From", "+15005550006"),
                    ("To", "+14155550100"),
                ],
                &[("I-Twilio-Idempotency-Token", "idem-6f1c2b")],
            ),
            expect: WebhookExpect::Events(
                json!([{"type": "status", "status": "delivered", "dedupe_key": "idem-6f1c2b"}]),
            ),
        },
        WebhookCase {
            name: "msg_status_without_query_has_no_correlation",
            request: signed(
                "status",
                &format!("{BASE}/status"),
                &[("SmsSid", SM), ("SmsStatus", "sent")],
            ),
            expect: WebhookExpect::Events(
                json!([{"status": "sent", "correlation": {"message_id": null, "attempt_id": null}}]),
            ),
        },
        call_case("call_queued", "queued", &[], json!("queued")),
        call_case("call_initiated", "initiated", &[], json!("queued")),
        call_case("call_ringing", "ringing", &[], json!("sent")),
        call_case("call_in_progress", "in-progress", &[], json!("delivered")),
        call_case(
            "call_completed",
            "completed",
            &[("CallDuration", "17"), ("SipResponseCode", "200")],
            json!("delivered"),
        ),
        call_case(
            "call_busy",
            "busy",
            &[("SipResponseCode", "486")],
            json!("undeliverable"),
        ),
        call_case("call_no_answer", "no-answer", &[], json!("undeliverable")),
        call_case("call_failed", "failed", &[], json!("failed")),
        call_case("call_canceled", "canceled", &[], json!("failed")),
        WebhookCase {
            name: "inbound_call_status_is_a_call_event",
            request: signed(
                "status",
                &format!("{BASE}/status"),
                &[
                    ("CallSid", CA),
                    ("CallStatus", "completed"),
                    ("CallDuration", "42"),
                    ("Direction", "inbound"),
                    ("From", "+4915112345678"),
                    ("To", "+15005550006"),
                ],
            ),
            expect: WebhookExpect::Events(json!([{
                "type": "call", "provider_call_id": CA, "direction": "inbound", "raw_status": "completed",
                "duration_seconds": 42, "from": "tel:+4915112345678", "dedupe_key": format!("{CA}:completed"),
            }])),
        },
    ]
}

fn inbound_cases() -> Vec<WebhookCase> {
    vec![
        WebhookCase {
            name: "inbound_sms",
            request: inbound(&[
                ("AccountSid", AC),
                ("Body", "Grüße aus Köln 👋 — price=5&qty=2"),
                ("From", "+4915112345678"),
                ("MessageSid", SM),
                ("NumMedia", "0"),
                ("SmsStatus", "received"),
                ("To", "+15005550006"),
            ]),
            expect: WebhookExpect::Events(json!([{
                "type": "message", "channel": "sms", "provider_message_id": SM,
                "from": "tel:+4915112345678", "to": "tel:+15005550006",
                "body": "Grüße aus Köln 👋 — price=5&qty=2", "reply_to_provider_id": null,
                "forwarded": false, "media": [], "dedupe_key": SM,
            }])),
        },
        WebhookCase {
            name: "inbound_mms_media",
            request: inbound(&[
                ("Body", ""),
                ("From", "+4915112345678"),
                ("MessageSid", "MM5366b918259e6326de47c2397616cfeb"),
                ("MediaContentType0", "image/jpeg"),
                ("MediaContentType1", "audio/ogg"),
                ("MediaUrl0", "https://api.twilio.com/media/ME1"),
                ("MediaUrl1", "https://api.twilio.com/media/ME2"),
                ("NumMedia", "2"),
                ("To", "+15005550006"),
            ]),
            expect: WebhookExpect::Events(json!([{
                "type": "message", "body": null,
                "media": [
                    {"url": "https://api.twilio.com/media/ME1", "content_type": "image/jpeg"},
                    {"url": "https://api.twilio.com/media/ME2", "content_type": "audio/ogg"},
                ],
            }])),
        },
        WebhookCase {
            name: "inbound_whatsapp_shares_the_tel_identity",
            request: whatsapp(&[]),
            expect: WebhookExpect::Events(json!([{
                "type": "message", "channel": "whatsapp", "from": "tel:+4915112345678", "to": "tel:+15005550006",
                "profile_name": "Jana", "body": "Ja, passt!", "reply_to_provider_id": null, "forwarded": false,
            }])),
        },
        WebhookCase {
            name: "inbound_whatsapp_quoted_reply",
            request: whatsapp(&[
                ("OriginalRepliedMessageSender", "whatsapp:+15005550006"),
                ("OriginalRepliedMessageSid", SM),
            ]),
            expect: WebhookExpect::Events(
                json!([{"type": "message", "channel": "whatsapp", "reply_to_provider_id": SM, "forwarded": false}]),
            ),
        },
        WebhookCase {
            name: "inbound_whatsapp_forwarded_is_not_a_reply",
            request: whatsapp(&[("Forwarded", "true"), ("OriginalRepliedMessageSid", SM)]),
            expect: WebhookExpect::Events(
                json!([{"type": "message", "reply_to_provider_id": null, "forwarded": true}]),
            ),
        },
        WebhookCase {
            name: "inbound_call",
            request: signed(
                "voice",
                &format!("{BASE}/voice"),
                &[
                    ("AccountSid", AC),
                    ("CallSid", CA),
                    ("CallStatus", "ringing"),
                    ("CallerName", "JANA M"),
                    ("Direction", "inbound"),
                    ("From", "+4915112345678"),
                    ("To", "+15005550006"),
                ],
            ),
            expect: WebhookExpect::Events(json!([{
                "type": "call", "provider_call_id": CA, "from": "tel:+4915112345678", "to": "tel:+15005550006",
                "direction": "inbound", "raw_status": "ringing", "caller_name": "JANA M", "dedupe_key": CA,
            }])),
        },
        WebhookCase {
            name: "status_without_ids_is_unparseable",
            request: signed(
                "status",
                &status_url(),
                &[("AccountSid", AC), ("To", "+14155550100")],
            ),
            expect: WebhookExpect::Unparseable,
        },
        WebhookCase {
            name: "inbound_without_from_is_unparseable",
            request: inbound(&[("MessageSid", SM), ("To", "+15005550006"), ("Body", "x")]),
            expect: WebhookExpect::Unparseable,
        },
    ]
}

#[test]
fn status_webhooks() {
    run_webhook_cases(provider(false).as_ref(), &status_cases());
}

#[test]
fn inbound_webhooks() {
    run_webhook_cases(provider(false).as_ref(), &inbound_cases());
}
