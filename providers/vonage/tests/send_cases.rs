//! Send table: both Vonage APIs against a mock that must be called exactly once.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, FailureReason, OutboundMessage, Provider, ProviderKind, Template,
};
use weft_testkit::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};

const MSG_ID: &str = "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA";
const API_KEY: &str = "vkey1234";
const API_SECRET: &str = "vsecret-5678-abcd";
const SIG_SECRET: &str = "sig-secret-0000-1111";
const APP_ID: &str = "aaaaaaaa-bbbb-4ccc-8ddd-adab9277a42d";
const PRIVATE_KEY: &str = include_str!("fixtures/test_application_private_key.pem");
const PUBLIC_KEY: &str = include_str!("fixtures/test_application_public_key.pem");

fn msg(channel: Channel, to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: MSG_ID.into(),
        attempt_id: "att_01KDX3Z8Q4V9W2N5T7R6P1M0YB".into(),
        channel,
        to: to.into(),
        from: None,
        body: Some(body.into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: format!(
            "https://weft.example/webhooks/vonage/vonage-main/status?m={MSG_ID}&a=att_1"
        ),
    }
}

fn sms(body: &str) -> OutboundMessage {
    msg(Channel::Sms, "+447700900001", body)
}

fn spec(base: url::Url, api: &str) -> ConnectionSpec {
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.base_url = Some(base);
    spec.senders = vec!["+447700900000".into()];
    spec.request_timeout = Duration::from_millis(800);
    spec.settings.insert("api".into(), api.into());
    spec.credentials.insert("signature_secret", SIG_SECRET);
    spec
}

fn sms_adapter(base: url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    let mut spec = spec(base, "sms");
    spec.credentials.insert("api_key", API_KEY);
    spec.credentials.insert("api_secret", API_SECRET);
    (
        weft_vonage::build(&spec).unwrap(),
        vec![API_SECRET.into(), SIG_SECRET.into()],
    )
}

fn jwt_adapter(base: url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    let mut spec = spec(base, "messages");
    spec.channels = vec![Channel::Sms, Channel::Whatsapp];
    spec.credentials.insert("application_id", APP_ID);
    spec.credentials.insert("private_key", PRIVATE_KEY);
    (
        weft_vonage::build(&spec).unwrap(),
        vec![SIG_SECRET.into(), PRIVATE_KEY.into()],
    )
}

fn basic_adapter(base: url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    let mut spec = spec(base, "messages");
    spec.credentials.insert("api_key", API_KEY);
    spec.credentials.insert("api_secret", API_SECRET);
    (
        weft_vonage::build(&spec).unwrap(),
        vec![API_SECRET.into(), SIG_SECRET.into()],
    )
}

fn sms_answer(parts: serde_json::Value) -> MockAnswer {
    let n = parts.as_array().unwrap().len().to_string();
    MockAnswer::json(
        200,
        serde_json::json!({"message-count": n, "messages": parts}),
    )
}

fn ok_part(id: &str) -> serde_json::Value {
    serde_json::json!({"to": "447700900001", "message-id": id, "status": "0", "remaining-balance": "3.14",
        "message-price": "0.0333", "network": "23410", "client-ref": MSG_ID})
}

fn err_part(status: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"status": status, "error-text": text})
}

fn sms_req() -> RequestMatch {
    RequestMatch::post("/sms/json")
        .form("api_key", API_KEY)
        .form("api_secret", API_SECRET)
        .form("from", "447700900000")
        .form("to", "447700900001")
        .form("client-ref", MSG_ID)
        .form("status-report-req", "1")
}

/// An SMS send refused in a 200 with one part status.
fn sms_refused(name: &'static str, status: &str, text: &str, expect: SendExpect) -> SendCase {
    SendCase {
        name,
        message: sms("hi"),
        answer: sms_answer(serde_json::json!([err_part(status, text)])),
        request: sms_req(),
        expect,
    }
}

fn rejected(reason: FailureReason, code: &str) -> SendExpect {
    SendExpect::permanent("rejected", reason, Some(code))
}

fn sms_cases() -> Vec<SendCase> {
    let long = "x".repeat(400);
    vec![
        SendCase {
            name: "sms: one part, GSM text, no type",
            message: sms("Your code is 1234"),
            answer: sms_answer(serde_json::json!([ok_part("0A0000000123ABCD1")])),
            request: sms_req().form("text", "Your code is 1234"),
            expect: SendExpect::ok(&["0A0000000123ABCD1"]),
        },
        SendCase {
            name: "sms: three parts keep all ids in order",
            message: sms(&long),
            answer: sms_answer(serde_json::json!([
                ok_part("0A01"),
                ok_part("0A02"),
                ok_part("0A03")
            ])),
            request: sms_req().form("text", &long),
            expect: SendExpect::ok(&["0A01", "0A02", "0A03"]),
        },
        SendCase {
            name: "sms: non-GSM text goes as type=unicode",
            message: sms("Danke — bis bald 🙂"),
            answer: sms_answer(serde_json::json!([ok_part("0A0000000123ABCD2")])),
            request: sms_req()
                .form("type", "unicode")
                .form("text", "Danke — bis bald 🙂"),
            expect: SendExpect::ok(&["0A0000000123ABCD2"]),
        },
        SendCase {
            name: "sms: alphanumeric sender kept as is",
            message: OutboundMessage {
                from: Some("Weft".into()),
                ..sms("hello")
            },
            answer: sms_answer(serde_json::json!([ok_part("0A0000000123ABCD3")])),
            request: RequestMatch::post("/sms/json")
                .form("from", "Weft")
                .form("to", "447700900001"),
            expect: SendExpect::ok(&["0A0000000123ABCD3"]),
        },
        SendCase {
            name: "sms: part accepted, later part refused keeps the accepted id",
            message: sms(&long),
            answer: sms_answer(serde_json::json!([
                ok_part("0A11"),
                err_part("9", "Quota Exceeded"),
                err_part("9", "Quota Exceeded")
            ])),
            request: sms_req(),
            expect: SendExpect::ok(&["0A11"]),
        },
        SendCase {
            name: "sms: status 1 inside HTTP 200 is a throttle with its wait",
            message: sms("hi"),
            answer: sms_answer(serde_json::json!([err_part(
                "1",
                "Throughput Rate Exceeded - please wait [ 978 ] and retry"
            )])),
            request: sms_req(),
            expect: SendExpect::retry("throttled", Some("1"))
                .retry_after(Duration::from_millis(978)),
        },
        sms_refused(
            "sms: 5 internal error retries",
            "5",
            "Internal Error",
            SendExpect::retry("transient", Some("5")),
        ),
        sms_refused(
            "sms: 10 too many binds retries",
            "10",
            "Too many existing binds",
            SendExpect::retry("transient", Some("10")),
        ),
        sms_refused(
            "sms: 4 bad credentials is auth",
            "4",
            "Bad Credentials",
            SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("4")),
        ),
        sms_refused(
            "sms: 14 invalid signature is auth",
            "14",
            "Invalid Signature",
            SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("14")),
        ),
        sms_refused(
            "sms: 11 HTTP not enabled is config",
            "11",
            "Account not enabled for HTTP",
            SendExpect::permanent("config", FailureReason::ProviderAuth, Some("11")),
        ),
        sms_refused(
            "sms: 32 signature and secret is config",
            "32",
            "Signature And API Secret Disallowed",
            SendExpect::permanent("config", FailureReason::ProviderAuth, Some("32")),
        ),
        sms_refused(
            "sms: 2 missing params rejected",
            "2",
            "Missing to param",
            rejected(FailureReason::ProviderRejected, "2"),
        ),
        sms_refused(
            "sms: 3 invalid params rejected",
            "3",
            "Invalid to param",
            rejected(FailureReason::ProviderRejected, "3"),
        ),
        sms_refused(
            "sms: 6 invalid prefix is an invalid address",
            "6",
            "Invalid Message",
            rejected(FailureReason::InvalidAddress, "6"),
        ),
        sms_refused(
            "sms: 7 number barred is an opt-out",
            "7",
            "Number barred.",
            rejected(FailureReason::OptedOut, "7"),
        ),
        sms_refused(
            "sms: 8 account barred",
            "8",
            "Partner account barred.",
            rejected(FailureReason::ProviderAuth, "8"),
        ),
        sms_refused(
            "sms: 9 quota",
            "9",
            "Quota Exceeded",
            rejected(FailureReason::ProviderAuth, "9"),
        ),
        sms_refused(
            "sms: 12 too long",
            "12",
            "Message too long",
            rejected(FailureReason::ProviderRejected, "12"),
        ),
        sms_refused(
            "sms: 15 invalid sender",
            "15",
            "Invalid sender address",
            rejected(FailureReason::ProviderRejected, "15"),
        ),
        sms_refused(
            "sms: 29 non-whitelisted destination",
            "29",
            "Non-Whitelisted Destination",
            rejected(FailureReason::ProviderRejected, "29"),
        ),
        sms_refused(
            "sms: 33 de-activated number",
            "33",
            "Number de-activated",
            rejected(FailureReason::InvalidAddress, "33"),
        ),
        SendCase {
            name: "sms: HTTP 500 retries",
            message: sms("hi"),
            answer: MockAnswer::text(500, "oops"),
            request: sms_req(),
            expect: SendExpect::retry("transient", Some("500")),
        },
        SendCase {
            name: "sms: HTTP 401 is auth",
            message: sms("hi"),
            answer: MockAnswer::text(401, "Unauthorized"),
            request: sms_req(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("401")),
        },
        SendCase {
            name: "sms: no answer in time is a timeout",
            message: sms("hi"),
            answer: sms_answer(serde_json::json!([ok_part("0A99")]))
                .delayed(Duration::from_secs(3)),
            request: sms_req(),
            expect: SendExpect::retry("timeout", None),
        },
    ]
}

fn problem(status: u16, code: &str, title: &str) -> MockAnswer {
    MockAnswer::json(
        status,
        serde_json::json!({"type": format!("https://developer.nexmo.com/api-errors/messages-olympus#{code}"),
            "title": title, "detail": "…", "instance": "bf0ca0bf-927b-3b52-e7f2-0d7b7b2e2a29"}),
    )
    .header("content-type", "application/problem+json")
}

fn accepted(uuid: &str) -> MockAnswer {
    MockAnswer::json(202, serde_json::json!({"message_uuid": uuid}))
}

fn messages_cases() -> Vec<SendCase> {
    let wa = |body: &str| msg(Channel::Whatsapp, "+4915112345678", body);
    let template = Template {
        name: "order_update".into(),
        language: Some("de".into()),
        variables: [("1", "Jana"), ("2", "A-17"), ("10", "Thu")]
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect(),
    };
    let messages_req = || RequestMatch::post("/v1/messages");
    vec![
        SendCase {
            name: "messages: SMS text with client_ref",
            message: msg(Channel::Sms, "+447700900001", "Your code is 1234"),
            answer: accepted("aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"),
            request: messages_req().json(serde_json::json!({"channel": "sms", "message_type": "text",
                "to": "447700900001", "from": "447700900000", "text": "Your code is 1234", "client_ref": MSG_ID})),
            expect: SendExpect::ok(&["aaaaaaaa-bbbb-4ccc-8ddd-0123456789ab"]),
        },
        SendCase {
            name: "messages: WhatsApp reply carries context.message_uuid",
            message: OutboundMessage { reply_to_provider_id: Some("bbbbbbbb-cccc-4ddd-8eee-0123456789ab".into()), ..wa("Ja, Donnerstag.") },
            answer: accepted("cccccccc-bbbb-4ccc-8ddd-0123456789ab"),
            request: messages_req().json(serde_json::json!({"channel": "whatsapp", "message_type": "text",
                "to": "4915112345678", "text": "Ja, Donnerstag.",
                "context": {"message_uuid": "bbbbbbbb-cccc-4ddd-8eee-0123456789ab"}})),
            expect: SendExpect::ok(&["cccccccc-bbbb-4ccc-8ddd-0123456789ab"]),
        },
        SendCase {
            name: "messages: WhatsApp template with ordered parameters",
            message: OutboundMessage { body: None, template: Some(template), ..wa("") },
            answer: accepted("dddddddd-bbbb-4ccc-8ddd-0123456789ab"),
            request: messages_req().json(serde_json::json!({"channel": "whatsapp", "message_type": "template",
                "template": {"name": "order_update", "parameters": ["Jana", "A-17", "Thu"]},
                "whatsapp": {"policy": "deterministic", "locale": "de"}, "client_ref": MSG_ID})),
            expect: SendExpect::ok(&["dddddddd-bbbb-4ccc-8ddd-0123456789ab"]),
        },
        SendCase {
            name: "messages: 401 is auth",
            message: wa("hi"),
            answer: problem(401, "unauthorized", "Unauthorized"),
            request: messages_req(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("unauthorized")),
        },
        SendCase {
            name: "messages: 402 low balance is config",
            message: wa("hi"),
            answer: problem(402, "1170", "Low balance"),
            request: messages_req(),
            expect: SendExpect::permanent("config", FailureReason::ProviderAuth, Some("1170")),
        },
        SendCase {
            name: "messages: 422 is rejected",
            message: wa("hi"),
            answer: problem(422, "1150", "Invalid params"),
            request: messages_req(),
            expect: rejected(FailureReason::ProviderRejected, "1150"),
        },
        SendCase {
            name: "messages: 429 honours Retry-After",
            message: wa("hi"),
            answer: problem(429, "1000", "Throttled").header("Retry-After", "2"),
            request: messages_req(),
            expect: SendExpect::retry("throttled", Some("1000")).retry_after(Duration::from_secs(2)),
        },
        SendCase {
            name: "messages: 500 retries",
            message: wa("hi"),
            answer: problem(500, "1010", "Internal Error"),
            request: messages_req(),
            expect: SendExpect::retry("transient", Some("1010")),
        },
        SendCase {
            name: "messages: no answer in time is a timeout",
            message: wa("hi"),
            answer: accepted("eeeeeeee-bbbb-4ccc-8ddd-0123456789ab").delayed(Duration::from_secs(3)),
            request: messages_req(),
            expect: SendExpect::retry("timeout", None),
        },
    ]
}

#[tokio::test]
async fn sms_api_sends() {
    run_send_cases(sms_cases(), sms_adapter).await;
}

#[tokio::test]
async fn messages_api_sends_with_jwt() {
    run_send_cases(messages_cases(), jwt_adapter).await;
}

#[tokio::test]
async fn messages_api_sends_with_basic_auth() {
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{API_KEY}:{API_SECRET}"))
    );
    let cases = vec![SendCase {
        name: "messages: Basic api_key:api_secret",
        message: msg(Channel::Sms, "+447700900001", "hi"),
        answer: accepted("ffffffff-bbbb-4ccc-8ddd-0123456789ab"),
        request: RequestMatch::post("/v1/messages").header("authorization", &basic),
        expect: SendExpect::ok(&["ffffffff-bbbb-4ccc-8ddd-0123456789ab"]),
    }];
    run_send_cases(cases, basic_adapter).await;
}

#[tokio::test]
async fn the_application_jwt_is_rs256_with_the_right_claims() {
    use wiremock::{matchers, Mock, MockServer, ResponseTemplate};
    let server = MockServer::start().await;
    Mock::given(matchers::path("/v1/messages"))
        .respond_with(
            ResponseTemplate::new(202).set_body_json(serde_json::json!({"message_uuid": "u-1"})),
        )
        .expect(1)
        .mount(&server)
        .await;
    let (p, _) = jwt_adapter(url::Url::parse(&server.uri()).unwrap());
    p.send(&msg(Channel::Sms, "+447700900001", "hi"))
        .await
        .unwrap();
    let req = &server.received_requests().await.unwrap()[0];
    let auth = req.headers.get("authorization").unwrap().to_str().unwrap();
    let token = auth.strip_prefix("Bearer ").unwrap();
    let key = jsonwebtoken::DecodingKey::from_rsa_pem(PUBLIC_KEY.as_bytes()).unwrap();
    let data = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &key,
        &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
    )
    .unwrap();
    let c = data.claims;
    assert_eq!(c["application_id"], APP_ID);
    assert_eq!(
        c["exp"].as_i64().unwrap() - c["iat"].as_i64().unwrap(),
        15 * 60
    );
    assert!(!c["jti"].as_str().unwrap().is_empty());
}

#[tokio::test]
async fn local_refusals_reach_no_provider() {
    let base = url::Url::parse("http://127.0.0.1:9").unwrap();
    let (p, _) = sms_adapter(base.clone());
    let e = p
        .send(&msg(Channel::Sms, "not-a-number", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.reason(), FailureReason::InvalidAddress);
    let e = p
        .send(&msg(Channel::Whatsapp, "+447700900001", "hi"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "config");
    let templated = OutboundMessage {
        body: None,
        template: Some(Template::default()),
        ..sms("")
    };
    assert_eq!(
        p.send(&templated).await.unwrap_err().reason(),
        FailureReason::ProviderRejected
    );

    let mut spec = spec(base, "sms");
    spec.senders.clear();
    spec.credentials.insert("api_key", API_KEY);
    spec.credentials.insert("api_secret", API_SECRET);
    let p = weft_vonage::build(&spec).unwrap();
    assert_eq!(p.send(&sms("hi")).await.unwrap_err().code(), "config");
}
