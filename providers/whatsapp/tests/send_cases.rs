//! Send table: every request shape and every error class, against a mock Graph API.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, FailureReason, OutboundMessage, Provider, ProviderKind, Template,
};
use weft_testkit::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};

const TOKEN: &str = "EAAG-test-access-token-42";
const PNID: &str = "106540352242922";
const PATH: &str = "/v21.0/106540352242922/messages";

fn msg(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_01J".into(),
        attempt_id: "att_01".into(),
        channel: Channel::Whatsapp,
        to: to.into(),
        from: None,
        body: Some(body.into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url:
            "https://weft.example/webhooks/whatsapp_cloud/wa/status?m=msg_01J&a=att_01".into(),
    }
}

fn ok_answer(id: &str) -> MockAnswer {
    MockAnswer::json(
        200,
        json!({"messaging_product": "whatsapp", "contacts": [{"input": "4915112345678", "wa_id": "4915112345678"}], "messages": [{"id": id}]}),
    )
}

fn graph_error(status: u16, code: i64, message: &str) -> MockAnswer {
    MockAnswer::json(
        status,
        json!({"error": {"message": message, "type": "OAuthException", "code": code, "error_data": {"messaging_product": "whatsapp", "details": message}, "fbtrace_id": "AbCdEf"}}),
    )
}

fn post() -> RequestMatch {
    RequestMatch::post(PATH).header("authorization", &format!("Bearer {TOKEN}"))
}

fn error_case(name: &'static str, status: u16, code: i64, expect: SendExpect) -> SendCase {
    SendCase {
        name,
        message: msg("+4915112345678", "Hallo"),
        answer: graph_error(status, code, "m"),
        request: post(),
        expect,
    }
}

fn cases() -> Vec<SendCase> {
    use FailureReason::*;
    let mut template = msg("+4915112345678", "");
    template.body = None;
    template.template = Some(Template {
        name: "appointment_reminder".into(),
        language: Some("de".into()),
        variables: BTreeMap::from([
            ("2".to_string(), "10:00".to_string()),
            ("1".to_string(), "Jana".to_string()),
        ]),
    });
    let mut template_default_lang = template.clone();
    if let Some(t) = template_default_lang.template.as_mut() {
        t.language = None;
        t.variables.clear();
    }
    let mut reply = msg("+4915112345678", "Ja, gerne");
    reply.reply_to_provider_id = Some("wamid.HBgLQUOTED==".into());
    let mut from_sender = msg("+4915112345678", "Hi");
    from_sender.from = Some("109999999999999".into());

    vec![
        SendCase {
            name: "text: to without +, preview off, correlation, queued",
            message: msg("+4915112345678", "Hallo Jana"),
            answer: ok_answer("wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjQ2"),
            request: post().json(json!({
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": "4915112345678",
                "type": "text",
                "text": {"preview_url": false, "body": "Hallo Jana"},
                "biz_opaque_callback_data": "msg_01J:att_01",
            })),
            expect: SendExpect::ok(&["wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjQ2"]),
        },
        SendCase {
            name: "template: language and body parameters ordered by key",
            message: template,
            answer: ok_answer("wamid.T1"),
            request: post().json(json!({
                "to": "4915112345678",
                "type": "template",
                "template": {
                    "name": "appointment_reminder",
                    "language": {"code": "de"},
                    "components": [{"type": "body", "parameters": [{"type": "text", "text": "Jana"}, {"type": "text", "text": "10:00"}]}],
                },
            })),
            expect: SendExpect::ok(&["wamid.T1"]),
        },
        SendCase {
            name: "template: language defaults to en_US",
            message: template_default_lang,
            answer: ok_answer("wamid.T2"),
            request: post().json(json!({"type": "template", "template": {"name": "appointment_reminder", "language": {"code": "en_US"}}})),
            expect: SendExpect::ok(&["wamid.T2"]),
        },
        SendCase {
            name: "reply: context.message_id quotes the wamid",
            message: reply,
            answer: ok_answer("wamid.R1"),
            request: post().json(json!({"context": {"message_id": "wamid.HBgLQUOTED=="}, "text": {"body": "Ja, gerne"}})),
            expect: SendExpect::ok(&["wamid.R1"]),
        },
        SendCase {
            name: "a phone-number id in msg.from picks the sending number",
            message: from_sender,
            answer: ok_answer("wamid.F1"),
            request: RequestMatch::post("/v21.0/109999999999999/messages").header("authorization", &format!("Bearer {TOKEN}")),
            expect: SendExpect::ok(&["wamid.F1"]),
        },
        // Throttles: the code decides, on whatever HTTP status.
        error_case("130429 throughput on a 400 is throttled", 400, 130429, SendExpect::retry("throttled", Some("130429"))),
        error_case("4 app rate limit", 400, 4, SendExpect::retry("throttled", Some("4"))),
        error_case("80007 WABA rate limit", 400, 80007, SendExpect::retry("throttled", Some("80007"))),
        error_case("131048 spam rate limit", 400, 131048, SendExpect::retry("throttled", Some("131048"))),
        error_case("131056 pair rate limit", 400, 131056, SendExpect::retry("throttled", Some("131056"))),
        error_case("133016 registration rate limit", 400, 133016, SendExpect::retry("throttled", Some("133016"))),
        SendCase {
            name: "a throttle honours Retry-After when Meta sends one",
            message: msg("+4915112345678", "Hallo"),
            answer: graph_error(429, 130429, "Rate limit hit").header("retry-after", "12"),
            request: post(),
            expect: SendExpect::retry("throttled", Some("130429")).retry_after(Duration::from_secs(12)),
        },
        // Transient.
        error_case("131000 generic on a 500 is transient", 500, 131000, SendExpect::retry("transient", Some("131000"))),
        error_case("131000 on a 400 is still transient", 400, 131000, SendExpect::retry("transient", Some("131000"))),
        error_case("131053 media error is transient", 400, 131053, SendExpect::retry("transient", Some("131053"))),
        SendCase {
            name: "a 503 without a Graph body is transient",
            message: msg("+4915112345678", "Hallo"),
            answer: MockAnswer::text(503, "<html>Service Unavailable</html>"),
            request: post(),
            expect: SendExpect::retry("transient", None),
        },
        // Auth and config.
        error_case("190 expired token is auth", 401, 190, SendExpect::permanent("auth", ProviderAuth, Some("190"))),
        error_case("0 AuthException is auth", 400, 0, SendExpect::permanent("auth", ProviderAuth, Some("0"))),
        error_case("3 capability is config", 400, 3, SendExpect::permanent("config", ProviderAuth, Some("3"))),
        error_case("10 permission is config", 403, 10, SendExpect::permanent("config", ProviderAuth, Some("10"))),
        error_case("200 permission is config", 403, 200, SendExpect::permanent("config", ProviderAuth, Some("200"))),
        error_case("299 permission is config", 400, 299, SendExpect::permanent("config", ProviderAuth, Some("299"))),
        // Permanent.
        error_case("100 bad parameter is rejected", 400, 100, SendExpect::permanent("rejected", ProviderRejected, Some("100"))),
        error_case("131008 missing parameter", 400, 131008, SendExpect::permanent("rejected", ProviderRejected, Some("131008"))),
        error_case("131009 parameter value", 400, 131009, SendExpect::permanent("rejected", ProviderRejected, Some("131009"))),
        error_case("131051 unsupported type", 400, 131051, SendExpect::permanent("rejected", ProviderRejected, Some("131051"))),
        error_case("131047 outside the window", 400, 131047, SendExpect::permanent("rejected", WindowClosed, Some("131047"))),
        error_case("368 policy block", 403, 368, SendExpect::permanent("rejected", ProviderRejected, Some("368"))),
        error_case("131026 not a WhatsApp user", 400, 131026, SendExpect::permanent("rejected", InvalidAddress, Some("131026"))),
        error_case("131050 stopped marketing messages", 400, 131050, SendExpect::permanent("rejected", OptedOut, Some("131050"))),
        error_case("an unknown code on a 400 falls back to rejected", 400, 987654, SendExpect::permanent("rejected", ProviderRejected, Some("987654"))),
        SendCase {
            name: "2xx without a message id is ambiguous",
            message: msg("+4915112345678", "Hallo"),
            answer: MockAnswer::json(200, json!({"messaging_product": "whatsapp", "messages": []})),
            request: post(),
            expect: SendExpect::retry("timeout", None),
        },
        SendCase {
            name: "no answer in time is a timeout",
            message: msg("+4915112345678", "Hallo"),
            answer: ok_answer("wamid.late").delayed(Duration::from_secs(3)),
            request: post(),
            expect: SendExpect::retry("timeout", None),
        },
    ]
}

fn spec(base: url::Url) -> ConnectionSpec {
    let mut spec = ConnectionSpec::new("wa", ProviderKind::WhatsappCloud);
    spec.base_url = Some(base);
    spec.request_timeout = Duration::from_millis(500);
    spec.credentials.insert("access_token", TOKEN);
    spec.credentials.insert("app_secret", "app-secret-1234");
    spec.credentials.insert("verify_token", "verify-token-1234");
    spec.settings.insert("phone_number_id".into(), PNID.into());
    spec
}

#[tokio::test]
async fn send_table() {
    let cases = cases();
    assert!(cases.len() >= 25);
    run_send_cases(cases, |base| {
        let p: Arc<dyn Provider> = weft_whatsapp::build(&spec(base)).unwrap();
        (
            p,
            vec![
                TOKEN.to_string(),
                "app-secret-1234".to_string(),
                "verify-token-1234".to_string(),
            ],
        )
    })
    .await;
}

/// Refused locally: nothing reaches the provider.
#[tokio::test]
async fn local_rejections_make_no_request() {
    let server = wiremock_free_base();
    let p = weft_whatsapp::build(&spec(server)).unwrap();
    let long = "x".repeat(4097);
    for (name, m, reason) in [
        (
            "bad number",
            msg("12345", "hi"),
            FailureReason::InvalidAddress,
        ),
        (
            "email as number",
            msg("jana@example.com", "hi"),
            FailureReason::InvalidAddress,
        ),
        (
            "empty body",
            msg("+4915112345678", "  "),
            FailureReason::ProviderRejected,
        ),
        (
            "too long",
            msg("+4915112345678", &long),
            FailureReason::ProviderRejected,
        ),
    ] {
        let e = p.send(&m).await.unwrap_err();
        assert!(!e.is_retryable(), "{name}");
        assert_eq!(e.reason(), reason, "{name}");
    }
    let mut sms = msg("+4915112345678", "hi");
    sms.channel = Channel::Sms;
    assert_eq!(p.send(&sms).await.unwrap_err().code(), "config");
}

/// A port nothing listens on: a request would fail as transient, not as the expected error.
fn wiremock_free_base() -> url::Url {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let p = weft_whatsapp::build(&spec(wiremock_free_base())).unwrap();
    let e = p.send(&msg("+4915112345678", "hi")).await.unwrap_err();
    assert_eq!(e.code(), "transient");
}
