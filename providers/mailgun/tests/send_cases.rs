#![allow(clippy::unwrap_used)]
//! Send cases against a mock Mailgun: every answer class, each must hit the mock once.

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use weft_mailkit::testing::{assert_refusals_never_reach, email_message, with_provider_code};
use weft_provider::{
    ConnectionSpec, EmailHeaders, FailureReason, OutboundMessage, Provider, ProviderKind, Template,
};
use weft_testkit::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};

const API_KEY: &str = "key-3ax6xnjp29jd6fds4gc373sgvjxteol0";
const PATH: &str = "/v3/mg.shop.example/messages";
// base64("api:" + API_KEY)
fn basic() -> String {
    use base64_like::encode;
    format!("Basic {}", encode(format!("api:{API_KEY}").as_bytes()))
}

/// A tiny standard base64 encoder, to keep the test's expectation independent of the adapter.
mod base64_like {
    pub fn encode(input: &[u8]) -> String {
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        let mut out = String::new();
        for chunk in input.chunks(3) {
            let b = [
                chunk[0],
                *chunk.get(1).unwrap_or(&0),
                *chunk.get(2).unwrap_or(&0),
            ];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..4 {
                if i <= chunk.len() {
                    out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
                } else {
                    out.push('=');
                }
            }
        }
        out
    }
}

fn msg() -> OutboundMessage {
    OutboundMessage {
        status_callback_url: "http://127.0.0.1:1/webhooks/mailgun/mg/status".into(),
        ..email_message(
            "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA",
            "att_01",
            "ana@example.org",
            "Your code",
            "Your code is 123456.",
        )
    }
}

fn post() -> RequestMatch {
    RequestMatch::post(PATH).header("authorization", &basic())
}

fn queued(id: &str) -> MockAnswer {
    MockAnswer::json(
        200,
        json!({"id": format!("<{id}>"), "message": "Queued. Thank you."}),
    )
}

fn error(status: u16, message: &str) -> MockAnswer {
    MockAnswer::json(status, json!({"message": message}))
}

fn cases() -> Vec<SendCase> {
    let mut threaded = msg();
    threaded.email = Some(EmailHeaders {
        message_id: Some("<msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example>".into()),
        in_reply_to: Some("CAF=abc123@mail.example.org".into()),
        references: vec![
            "first@mail.shop.example".into(),
            "CAF=abc123@mail.example.org".into(),
        ],
        reply_to: Some("reply+Q0RfMDE@in.shop.example".into()),
    });
    let mut template = msg();
    template.body = None;
    template.subject = None;
    template.template = Some(Template {
        name: "otp-code".into(),
        language: None,
        variables: [("code".to_string(), "123456".to_string())].into(),
    });
    let mut from_msg = msg();
    from_msg.from = Some("Shop Support <support@shop.example>".into());
    vec![
        SendCase {
            name: "plain mail is queued; the id loses its brackets",
            message: msg(),
            answer: queued("20260101000000.1a2b3c4d5e6f7a8b@mg.shop.example"),
            request: post()
                .form("from", "Shop <news@shop.example>")
                .form("to", "ana@example.org")
                .form("subject", "Your code")
                .form("text", "Your code is 123456.")
                .form("h:Message-Id", "<msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mg.shop.example>")
                .form("v:weft_message_id", "msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA")
                .form("v:weft_attempt_id", "att_01"),
            expect: SendExpect::ok(&["20260101000000.1a2b3c4d5e6f7a8b@mg.shop.example"]),
        },
        SendCase {
            name: "threading headers in brackets and Reply-To",
            message: threaded,
            answer: queued("msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example"),
            request: post()
                .form("h:Message-Id", "<msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example>")
                .form("h:In-Reply-To", "<CAF=abc123@mail.example.org>")
                .form("h:References", "<first@mail.shop.example> <CAF=abc123@mail.example.org>")
                .form("h:Reply-To", "reply+Q0RfMDE@in.shop.example"),
            expect: SendExpect::ok(&["msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mail.shop.example"]),
        },
        SendCase {
            name: "template with t:variables",
            message: template,
            answer: queued("t1@mg.shop.example"),
            request: post().form("template", "otp-code").form("t:variables", r#"{"code":"123456"}"#),
            expect: SendExpect::ok(&["t1@mg.shop.example"]),
        },
        SendCase {
            name: "message sender overrides the default",
            message: from_msg,
            answer: queued("f1@mg.shop.example"),
            request: post().form("from", "Shop Support <support@shop.example>"),
            expect: SendExpect::ok(&["f1@mg.shop.example"]),
        },
        SendCase {
            name: "200 without an id keeps our Message-ID",
            message: msg(),
            answer: MockAnswer::json(200, json!({"message": "Queued. Thank you."})),
            request: post(),
            expect: SendExpect::ok(&["msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA@mg.shop.example"]),
        },
        SendCase {
            name: "400 invalid to is an invalid address",
            message: msg(),
            answer: error(400, "'to' parameter is not a valid address. please check documentation"),
            request: post(),
            expect: SendExpect::permanent("rejected", FailureReason::InvalidAddress, Some("400")),
        },
        SendCase {
            name: "400 other is rejected",
            message: msg(),
            answer: error(400, "'from' parameter is missing"),
            request: post(),
            expect: SendExpect::permanent("rejected", FailureReason::ProviderRejected, Some("400")),
        },
        SendCase {
            name: "401 Forbidden is auth",
            message: msg(),
            answer: MockAnswer::text(401, "Forbidden"),
            request: post(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("401")),
        },
        SendCase {
            name: "403 is auth",
            message: msg(),
            answer: error(403, "Domain mg.shop.example is not allowed to send: Free accounts are for test purposes only."),
            request: post(),
            expect: SendExpect::permanent("auth", FailureReason::ProviderAuth, Some("403")),
        },
        SendCase {
            name: "404 unknown domain is config",
            message: msg(),
            answer: error(404, "Domain not found: mg.shop.example"),
            request: post(),
            expect: SendExpect::permanent("config", FailureReason::ProviderAuth, Some("404")),
        },
        SendCase {
            name: "413 is rejected",
            message: msg(),
            answer: error(413, "request entity too large"),
            request: post(),
            expect: SendExpect::permanent("rejected", FailureReason::ProviderRejected, Some("413")),
        },
        SendCase {
            name: "429 with Retry-After is throttled",
            message: msg(),
            answer: error(429, "Too many requests").header("Retry-After", "9"),
            request: post(),
            expect: with_provider_code(SendExpect::retry("throttled", None).retry_after(Duration::from_secs(9)), "429"),
        },
        SendCase {
            name: "500 is transient",
            message: msg(),
            answer: error(500, "Internal Server Error"),
            request: post(),
            expect: SendExpect::retry("transient", Some("500")),
        },
        SendCase {
            name: "503 is transient",
            message: msg(),
            answer: MockAnswer::text(503, ""),
            request: post(),
            expect: SendExpect::retry("transient", Some("503")),
        },
        SendCase {
            name: "no answer in time is a timeout",
            message: msg(),
            answer: queued("late@mg.shop.example").delayed(Duration::from_secs(3)),
            request: post(),
            expect: SendExpect::retry("timeout", None),
        },
    ]
}

fn build(base: url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    let mut spec = ConnectionSpec::new("mg", ProviderKind::Mailgun);
    spec.base_url = Some(base);
    spec.request_timeout = Duration::from_millis(1500);
    spec.credentials.insert("api_key", API_KEY);
    spec.credentials
        .insert("webhook_signing_key", "signing-key-0123456789");
    spec.settings
        .insert("domain".into(), json!("mg.shop.example"));
    spec.settings
        .insert("from".into(), json!("Shop <news@shop.example>"));
    (
        weft_mailgun::build(&spec).unwrap(),
        vec![API_KEY.to_string(), "signing-key-0123456789".to_string()],
    )
}

#[tokio::test]
async fn send_cases() {
    run_send_cases(cases(), build).await;
}

#[tokio::test]
async fn refusals_never_reach_mailgun() {
    let server = wiremock::MockServer::start().await;
    let (p, _) = build(url::Url::parse(&server.uri()).unwrap());
    assert_refusals_never_reach(p.as_ref(), &server, &msg()).await;
}
