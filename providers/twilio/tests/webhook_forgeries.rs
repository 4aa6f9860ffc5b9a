//! Forged, unsigned and wrong-URL webhooks are rejected; the SharedKey mode; acks per kind.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use serde_json::json;
use weft_provider::{ConnectionSpec, ProviderKind};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};
use weft_twilio::verify::{sign, Algorithm, SETTINGS_HEADER, SIGNATURE_HEADER};

fn rejection_cases() -> Vec<WebhookCase> {
    let body = encode(&pairs(&[
        ("MessageSid", SM),
        ("MessageStatus", "delivered"),
    ]));
    let good_sig = sign(
        Algorithm::HmacSha1,
        TOKEN,
        &status_url(),
        &pairs(&[("MessageSid", SM), ("MessageStatus", "delivered")]),
    );
    let forged_sig = sign(
        Algorithm::HmacSha1,
        "not-the-token",
        &status_url(),
        &pairs(&[("MessageSid", SM), ("MessageStatus", "delivered")]),
    );
    let tampered = encode(&pairs(&[("MessageSid", SM), ("MessageStatus", "failed")]));
    vec![
        WebhookCase {
            name: "unsigned_rejected",
            request: request("POST", &status_url(), "status", &[], body.clone(), NOW),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "forged_with_another_token_rejected",
            request: request(
                "POST",
                &status_url(),
                "status",
                &[(SIGNATURE_HEADER, &forged_sig)],
                body.clone(),
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "signed_for_another_url_rejected",
            request: request(
                "POST",
                &format!("{BASE}/inbound"),
                "inbound",
                &[(SIGNATURE_HEADER, &good_sig)],
                body.clone(),
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "changed_correlation_query_rejected",
            request: request(
                "POST",
                &status_url().replace("att_7", "att_8"),
                "status",
                &[(SIGNATURE_HEADER, &good_sig)],
                body.clone(),
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "tampered_body_rejected",
            request: request(
                "POST",
                &status_url(),
                "status",
                &[(SIGNATURE_HEADER, &good_sig)],
                tampered,
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "received_with_default_port_signed_without",
            request: request(
                "POST",
                &status_url().replace("weft.example.com", "weft.example.com:443"),
                "status",
                &[(SIGNATURE_HEADER, &good_sig)],
                body.clone(),
                NOW,
            ),
            expect: WebhookExpect::Events(json!([{"type": "status", "status": "delivered"}])),
        },
        WebhookCase {
            name: "sha256_shared_key_mode_without_a_configured_key_rejected",
            request: request(
                "POST",
                &status_url(),
                "status",
                &[
                    (
                        SIGNATURE_HEADER,
                        &sign(
                            Algorithm::HmacSha256,
                            SHARED,
                            &status_url(),
                            &pairs(&[("MessageSid", SM), ("MessageStatus", "delivered")]),
                        ),
                    ),
                    (
                        SETTINGS_HEADER,
                        "key=webhooks_sharedkey_786cea756c59b20c,algorithm=HMAC_SHA256",
                    ),
                ],
                body,
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
    ]
}

#[test]
fn forged_unsigned_and_wrong_url_webhooks() {
    run_webhook_cases(provider(false).as_ref(), &rejection_cases());
}

#[test]
fn shared_key_mode() {
    let params = pairs(&[("MessageSid", SM), ("MessageStatus", "delivered")]);
    let sig = sign(Algorithm::HmacSha256, SHARED, &status_url(), &params);
    let settings = "key=webhooks_sharedkey_786cea756c59b20c,algorithm=HMAC_SHA256";
    let cases = [
        WebhookCase {
            name: "sha256_shared_key_accepted",
            request: request(
                "POST",
                &status_url(),
                "status",
                &[(SIGNATURE_HEADER, &sig), (SETTINGS_HEADER, settings)],
                encode(&params),
                NOW,
            ),
            expect: WebhookExpect::Events(json!([{"type": "status", "status": "delivered"}])),
        },
        WebhookCase {
            name: "sha256_signature_without_settings_header_rejected",
            request: request(
                "POST",
                &status_url(),
                "status",
                &[(SIGNATURE_HEADER, &sig)],
                encode(&params),
                NOW,
            ),
            expect: WebhookExpect::Rejected,
        },
    ];
    run_webhook_cases(provider(true).as_ref(), &cases);
}

#[test]
fn acks_per_kind() {
    let p = provider(false);
    let req = |kind: &str| request("POST", &format!("{BASE}/{kind}"), kind, &[], "", NOW);
    let inbound = p.ack(&req("inbound"), &[]);
    assert_eq!(
        (inbound.content_type, &inbound.body[..]),
        (Some("text/xml"), &b"<Response/>"[..])
    );
    let voice = p.ack(&req("voice"), &[]);
    assert_eq!(voice.content_type, Some("text/xml"));
    assert_eq!(
        std::str::from_utf8(&voice.body).unwrap(),
        "<Response><Say>Thank you for calling. We will get back to you.</Say><Hangup/></Response>"
    );
    let status = p.ack(&req("status"), &[]);
    assert_eq!(
        (
            status.status.as_u16(),
            status.content_type,
            status.body.len()
        ),
        (200, None, 0)
    );

    let mut s = ConnectionSpec::new("tw", ProviderKind::Twilio);
    s.credentials.insert("account_sid", AC);
    s.credentials.insert("auth_token", TOKEN);
    s.settings.insert(
        "voice_answer_twiml".into(),
        json!("<Response><Dial>+15005550006</Dial></Response>"),
    );
    let custom = weft_twilio::build(&s).unwrap();
    assert_eq!(
        &custom.ack(&req("voice"), &[]).body[..],
        b"<Response><Dial>+15005550006</Dial></Response>"
    );
}
