#![allow(clippy::unwrap_used)]
//! Send cases against a mock SendGrid: every answer class, each must hit the mock once.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use weft_mailkit::testing::{assert_refusals_never_reach, email_message, with_provider_code};
use weft_provider::{
    ConnectionSpec, EmailHeaders, FailureReason, OutboundMessage, Provider, ProviderKind, Template,
};
use weft_testkit::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};

const API_KEY: &str = "SG.test-key-abcdef0123";
const PATH: &str = "/v3/mail/send";

fn msg() -> OutboundMessage {
    OutboundMessage {
        status_callback_url: "http://127.0.0.1:1/webhooks/sendgrid/sg/status".into(),
        ..email_message(
            "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA",
            "att_01",
            "ana@example.org",
            "Your code",
            "Your code is 123456.",
        )
    }
}

fn threaded() -> OutboundMessage {
    let mut m = msg();
    m.email = Some(EmailHeaders {
        message_id: Some("msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example".into()),
        in_reply_to: Some("CAF=abc123@mail.example.org".into()),
        references: vec![
            "first@mail.shop.example".into(),
            "<CAF=abc123@mail.example.org>".into(),
        ],
        reply_to: Some("reply+Q0RfMDE@in.shop.example".into()),
    });
    m
}

fn post() -> RequestMatch {
    RequestMatch::post(PATH).header("authorization", &format!("Bearer {API_KEY}"))
}

fn accepted(id: &str) -> MockAnswer {
    MockAnswer::text(202, "")
        .header("X-Message-Id", id)
        .header("X-RateLimit-Remaining", "599")
}

fn error(status: u16, message: &str, field: Option<&str>) -> MockAnswer {
    MockAnswer::json(
        status,
        json!({"errors": [{"message": message, "field": field, "help": null}]}),
    )
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn cases() -> Vec<SendCase> {
    let rejected = |r| SendExpect::permanent("rejected", r, None);
    let mut from_msg = msg();
    from_msg.from = Some("Shop Support <Support@Shop.Example>".into());
    let mut template = msg();
    template.body = None;
    template.template = Some(Template {
        name: "d-0123456789abcdef".into(),
        language: None,
        variables: [("code".to_string(), "123456".to_string())].into(),
    });
    vec![
        SendCase {
            name: "plain text mail is accepted with X-Message-Id",
            message: msg(),
            answer: accepted("Xm2pQ7vL9k4Rz8NcT1wY6b"),
            request: post().json(json!({
                "personalizations": [{"to": [{"email": "ana@example.org"}]}],
                "from": {"email": "news@shop.example", "name": "Shop"},
                "subject": "Your code",
                "content": [{"type": "text/plain", "value": "Your code is 123456."}],
                "headers": {"Message-ID": "<msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@shop.example>"},
                "custom_args": {"weft_message_id": "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA", "weft_attempt_id": "att_01"}
            })),
            expect: SendExpect::ok(&["Xm2pQ7vL9k4Rz8NcT1wY6b"]),
        },
        SendCase {
            name: "threading headers in brackets and reply_to",
            message: threaded(),
            answer: accepted("T1"),
            request: post().json(json!({
                "headers": {
                    "Message-ID": "<msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example>",
                    "In-Reply-To": "<CAF=abc123@mail.example.org>",
                    "References": "<first@mail.shop.example> <CAF=abc123@mail.example.org>"
                },
                "reply_to": {"email": "reply+Q0RfMDE@in.shop.example"}
            })),
            expect: SendExpect::ok(&["T1"]),
        },
        SendCase {
            name: "message sender overrides the default",
            message: from_msg,
            answer: accepted("F1"),
            request: post().json(json!({"from": {"email": "Support@Shop.Example", "name": "Shop Support"}})),
            expect: SendExpect::ok(&["F1"]),
        },
        SendCase {
            name: "dynamic template with data",
            message: template,
            answer: accepted("D1"),
            request: post().json(json!({
                "template_id": "d-0123456789abcdef",
                "personalizations": [{"to": [{"email": "ana@example.org"}], "dynamic_template_data": {"code": "123456"}}]
            })),
            expect: SendExpect::ok(&["D1"]),
        },
        SendCase {
            name: "202 without X-Message-Id keeps our Message-ID",
            message: msg(),
            answer: MockAnswer::text(202, ""),
            request: post(),
            expect: SendExpect::ok(&["msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@shop.example"]),
        },
        SendCase {
            name: "400 on the recipient is an invalid address",
            message: msg(),
            answer: error(400, "Does not contain a valid address.", Some("personalizations.0.to.0.email")),
            request: post(),
            expect: with_provider_code(rejected(FailureReason::InvalidAddress), "400"),
        },
        SendCase {
            name: "400 on content is rejected",
            message: msg(),
            answer: error(400, "Invalid type. Expected: string", Some("content.0.value")),
            request: post(),
            expect: with_provider_code(rejected(FailureReason::ProviderRejected), "400"),
        },
        SendCase {
            name: "401 is auth",
            message: msg(),
            answer: error(401, "The provided authorization grant is invalid, expired, or revoked", None),
            request: post(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("401")),
        },
        SendCase {
            name: "403 (sender identity / blocked) is auth",
            message: msg(),
            answer: error(403, "The from address does not match a verified Sender Identity.", Some("from")),
            request: post(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("403")),
        },
        SendCase {
            name: "406 is rejected",
            message: msg(),
            answer: error(406, "Not Acceptable", None),
            request: post(),
            expect: with_provider_code(rejected(FailureReason::ProviderRejected), "406"),
        },
        SendCase {
            name: "413 is rejected",
            message: msg(),
            answer: error(413, "Payload Too Large", None),
            request: post(),
            expect: with_provider_code(rejected(FailureReason::ProviderRejected), "413"),
        },
        SendCase {
            name: "429 with a reset already passed waits one second",
            message: msg(),
            answer: error(429, "too many requests", None).header("X-RateLimit-Reset", &(now() - 10).to_string()),
            request: post(),
            expect: SendExpect::retry("throttled", Some("429")).retry_after(Duration::from_secs(1)),
        },
        SendCase {
            name: "429 waits for X-RateLimit-Reset",
            message: msg(),
            answer: error(429, "too many requests", None)
                .header("X-RateLimit-Limit", "600")
                .header("X-RateLimit-Remaining", "0")
                .header("X-RateLimit-Reset", &(now() + 3600).to_string()),
            request: post(),
            expect: SendExpect::retry("throttled", Some("429")),
        },
        SendCase {
            name: "500 is transient",
            message: msg(),
            answer: error(500, "Internal server error", None),
            request: post(),
            expect: SendExpect::retry("transient", Some("500")),
        },
        SendCase {
            name: "503 is transient",
            message: msg(),
            answer: MockAnswer::text(503, "Service Unavailable"),
            request: post(),
            expect: SendExpect::retry("transient", Some("503")),
        },
        SendCase {
            name: "no answer in time is a timeout",
            message: msg(),
            answer: accepted("late").delayed(Duration::from_secs(3)),
            request: post(),
            expect: SendExpect::retry("timeout", None),
        },
    ]
}

fn build(base: url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    let mut spec = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
    spec.base_url = Some(base);
    spec.request_timeout = Duration::from_millis(1500);
    spec.credentials.insert("api_key", API_KEY);
    spec.settings
        .insert("from".into(), json!("Shop <news@shop.example>"));
    (
        weft_sendgrid::build(&spec).unwrap(),
        vec![API_KEY.to_string()],
    )
}

#[tokio::test]
async fn send_cases() {
    run_send_cases(cases(), build).await;
}

#[tokio::test]
async fn throttle_wait_is_relative_to_now() {
    // The 429 case above cannot pin the exact wait; check it is about an hour.
    let server = wiremock::MockServer::start().await;
    let reset = (now() + 3600).to_string();
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(
            wiremock::ResponseTemplate::new(429).insert_header("X-RateLimit-Reset", reset.as_str()),
        )
        .mount(&server)
        .await;
    let (p, _) = build(url::Url::parse(&server.uri()).unwrap());
    let err = p.send(&msg()).await.unwrap_err();
    let wait = err.retry_after().unwrap().as_secs();
    assert!((3590..=3600).contains(&wait), "{wait}");
}

#[tokio::test]
async fn refusals_never_reach_sendgrid() {
    let server = wiremock::MockServer::start().await;
    let (p, _) = build(url::Url::parse(&server.uri()).unwrap());
    assert_refusals_never_reach(p.as_ref(), &server, &msg()).await;
}
