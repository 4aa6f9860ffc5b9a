//! Send table: request shapes and every error class, against a mock Bot API. The harness also
//! checks that the bot token (which sits in the URL path) shows up in no log and no result.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, DeliveryStatus, FailureReason, OutboundMessage, Provider, ProviderKind,
};
use weft_testkit::{run_send_cases, LogCapture, MockAnswer, RequestMatch, SendCase, SendExpect};

const TOKEN: &str = "7000000001:AAH-test_token-0123456789";
const SECRET: &str = "weft_tg-QrErFtZodSA4JLtAEY8cW6q72Ci7pKwz";

fn path() -> String {
    format!("/bot{TOKEN}/sendMessage")
}

fn msg(to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_01J".into(),
        attempt_id: "att_01".into(),
        channel: Channel::Telegram,
        to: to.into(),
        from: None,
        body: Some(body.into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: String::new(),
    }
}

fn reply(to: &str, quoted: &str) -> OutboundMessage {
    let mut m = msg(to, "Ja, passt.");
    m.reply_to_provider_id = Some(quoted.into());
    m
}

fn sent(ids: &[&str]) -> SendExpect {
    SendExpect::Ok {
        provider_ids: ids.iter().map(|s| s.to_string()).collect(),
        status: DeliveryStatus::Sent,
    }
}

fn ok_answer(chat: i64, message_id: i64) -> MockAnswer {
    MockAnswer::json(
        200,
        json!({"ok": true, "result": {"message_id": message_id, "from": {"id": 7000000001_i64, "is_bot": true, "first_name": "Weft"},
            "chat": {"id": chat, "type": if chat > 0 { "private" } else { "supergroup" }}, "date": 1767225600, "text": "x"}}),
    )
}

fn tg_error(code: u16, description: &str) -> MockAnswer {
    MockAnswer::json(
        code,
        json!({"ok": false, "error_code": code, "description": description}),
    )
}

fn error_case(name: &'static str, answer: MockAnswer, expect: SendExpect) -> SendCase {
    SendCase {
        name,
        message: msg("3527065", "Hallo"),
        answer,
        request: RequestMatch::post(path()),
        expect,
    }
}

fn cases() -> Vec<SendCase> {
    use FailureReason::*;
    vec![
        SendCase {
            name: "private chat: numeric chat_id, text, sent with chat:message id",
            message: msg("3527065", "Passt Ihnen Donnerstag?"),
            answer: ok_answer(3527065, 41),
            request: RequestMatch::post(path()).json(json!({"chat_id": 3527065, "text": "Passt Ihnen Donnerstag?"})),
            expect: sent(&["3527065:41"]),
        },
        SendCase {
            name: "supergroup: negative chat id",
            message: msg("-1001234567890", "Hallo Gruppe"),
            answer: ok_answer(-1001234567890, 7),
            request: RequestMatch::post(path()).json(json!({"chat_id": -1001234567890_i64})),
            expect: sent(&["-1001234567890:7"]),
        },
        SendCase {
            name: "@channel: username as chat_id, id from the answer's chat",
            message: msg("@weft_news", "News"),
            answer: ok_answer(-1009876543210, 12),
            request: RequestMatch::post(path()).json(json!({"chat_id": "@weft_news", "text": "News"})),
            expect: sent(&["-1009876543210:12"]),
        },
        SendCase {
            name: "reply: message_id part of chat:message",
            message: reply("3527065", "3527065:42"),
            answer: ok_answer(3527065, 43),
            request: RequestMatch::post(path())
                .json(json!({"reply_parameters": {"message_id": 42, "allow_sending_without_reply": true}})),
            expect: sent(&["3527065:43"]),
        },
        SendCase {
            name: "reply: a bare message id",
            message: reply("3527065", "42"),
            answer: ok_answer(3527065, 44),
            request: RequestMatch::post(path()).json(json!({"reply_parameters": {"message_id": 42}})),
            expect: sent(&["3527065:44"]),
        },
        SendCase {
            name: "reply to a message of another chat names that chat",
            message: reply("3527065", "-100555:9"),
            answer: ok_answer(3527065, 45),
            request: RequestMatch::post(path()).json(json!({"reply_parameters": {"message_id": 9, "chat_id": -100555}})),
            expect: sent(&["3527065:45"]),
        },
        error_case(
            "429 throttled with parameters.retry_after",
            MockAnswer::json(429, json!({"ok": false, "error_code": 429, "description": "Too Many Requests: retry after 17", "parameters": {"retry_after": 17}})),
            SendExpect::retry("throttled", Some("429")).retry_after(Duration::from_secs(17)),
        ),
        error_case(
            "429 without parameters falls back to Retry-After",
            tg_error(429, "Too Many Requests").header("retry-after", "5"),
            SendExpect::retry("throttled", Some("429")).retry_after(Duration::from_secs(5)),
        ),
        error_case("400 chat not found is an invalid address", tg_error(400, "Bad Request: chat not found"), SendExpect::permanent("rejected", InvalidAddress, Some("400"))),
        error_case("400 can't parse entities is rejected", tg_error(400, "Bad Request: can't parse entities: unsupported start tag"), SendExpect::permanent("rejected", ProviderRejected, Some("400"))),
        error_case("400 message text is empty is rejected", tg_error(400, "Bad Request: message text is empty"), SendExpect::permanent("rejected", ProviderRejected, Some("400"))),
        error_case(
            "400 group migrated to a supergroup is an invalid address",
            MockAnswer::json(400, json!({"ok": false, "error_code": 400, "description": "Bad Request: group chat was upgraded to a supergroup chat", "parameters": {"migrate_to_chat_id": -1001}})),
            SendExpect::permanent("rejected", InvalidAddress, Some("400")),
        ),
        error_case("401 unauthorized is auth", tg_error(401, "Unauthorized"), SendExpect::permanent("auth", ProviderAuth, Some("401"))),
        error_case("404 (wrong token) is auth", tg_error(404, "Not Found"), SendExpect::permanent("auth", ProviderAuth, Some("404"))),
        error_case("409 conflict is config", tg_error(409, "Conflict: can't use getUpdates method while webhook is active"), SendExpect::permanent("config", ProviderAuth, Some("409"))),
        error_case("403 blocked is opted out", tg_error(403, "Forbidden: bot was blocked by the user"), SendExpect::permanent("rejected", OptedOut, Some("403"))),
        error_case("403 deactivated is opted out", tg_error(403, "Forbidden: user is deactivated"), SendExpect::permanent("rejected", OptedOut, Some("403"))),
        error_case("403 cannot initiate is rejected", tg_error(403, "Forbidden: bot can't initiate conversation with a user"), SendExpect::permanent("rejected", ProviderRejected, Some("403"))),
        error_case("500 is transient", tg_error(500, "Internal Server Error"), SendExpect::retry("transient", Some("500"))),
        error_case("502 with an HTML body is transient", MockAnswer::text(502, "<html>Bad Gateway</html>"), SendExpect::retry("transient", Some("502"))),
        error_case("HTTP 200 with ok:false is classified by error_code", MockAnswer::json(200, json!({"ok": false, "error_code": 400, "description": "Bad Request: chat not found"})), SendExpect::permanent("rejected", InvalidAddress, Some("400"))),
        error_case("ok:true without a message is ambiguous", MockAnswer::json(200, json!({"ok": true, "result": {}})), SendExpect::retry("timeout", None)),
        error_case("no answer in time is a timeout", ok_answer(3527065, 1).delayed(Duration::from_secs(3)), SendExpect::retry("timeout", None)),
    ]
}

fn spec(base: url::Url) -> ConnectionSpec {
    let mut spec = ConnectionSpec::new("tg", ProviderKind::Telegram);
    spec.base_url = Some(base);
    spec.request_timeout = Duration::from_millis(500);
    spec.credentials.insert("bot_token", TOKEN);
    spec.credentials.insert("secret_token", SECRET);
    spec
}

#[tokio::test]
async fn send_table() {
    let cases = cases();
    assert!(cases.len() >= 20);
    run_send_cases(cases, |base| {
        let p: Arc<dyn Provider> = weft_telegram::build(&spec(base)).unwrap();
        // The whole token, and its secret half alone.
        (
            p,
            vec![
                TOKEN.to_string(),
                TOKEN.split(':').nth(1).unwrap().to_string(),
                SECRET.to_string(),
            ],
        )
    })
    .await;
}

fn dead_base() -> url::Url {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap()
}

#[tokio::test]
async fn local_rejections_make_no_request() {
    let p = weft_telegram::build(&spec(dead_base())).unwrap();
    let long = "x".repeat(4097);
    let mut template = msg("3527065", "");
    template.body = None;
    template.template = Some(Default::default());
    for (name, m, reason) in [
        (
            "text over 4096 characters",
            msg("3527065", &long),
            FailureReason::ProviderRejected,
        ),
        (
            "empty text",
            msg("3527065", " "),
            FailureReason::ProviderRejected,
        ),
        ("template only", template, FailureReason::ProviderRejected),
        (
            "a phone number is no chat id",
            msg("+4915112345678", "hi"),
            FailureReason::InvalidAddress,
        ),
        (
            "junk address",
            msg("chat-42", "hi"),
            FailureReason::InvalidAddress,
        ),
    ] {
        let e = p.send(&m).await.unwrap_err();
        assert_eq!((e.code(), e.reason()), ("rejected", reason), "{name}: {e}");
    }
    // Exactly 4096 characters (multi-byte) passes the local check and reaches the (dead) API.
    let e = p
        .send(&msg("3527065", &"ä".repeat(4096)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), "transient");
}

#[tokio::test]
async fn transport_errors_never_show_the_token() {
    let p = weft_telegram::build(&spec(dead_base())).unwrap();
    let logs = LogCapture::default();
    let e = {
        let _g = logs.install();
        p.send(&msg("3527065", "hi")).await.unwrap_err()
    };
    assert_eq!(e.code(), "transient");
    let secret_half = TOKEN.split(':').nth(1).unwrap();
    for text in [format!("{e}"), format!("{e:?}"), logs.text()] {
        assert!(!text.contains(secret_half), "token leaked: {text}");
    }
    let h = p.health().await.unwrap_err();
    assert!(!format!("{h:?}").contains(secret_half));
}
