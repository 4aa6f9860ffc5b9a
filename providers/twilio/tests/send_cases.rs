//! Send cases against a mock Twilio: exact requests, receipts, and every error class.
#![allow(clippy::unwrap_used)]

use base64::Engine as _;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, FailureReason, OutboundMessage, Provider, ProviderKind, Template,
    VoiceOptions,
};
use weft_testkit::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};

const AC: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "twilio-test-auth-token-5f1e";
const MESSAGES: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Messages.json";
const CALLS: &str = "/2010-04-01/Accounts/AC0123456789abcdef0123456789abcdef/Calls.json";
const CB: &str = "https://weft.example.com/webhooks/twilio/tw/status?m=msg_1&a=att_1";
const SID: &str = "SM5366b918259e6326de47c2397616cfeb";
const CALL_SID: &str = "CA0ee8a6bed1f8c64d81daeceb296d7ed0";

fn basic(user: &str, pass: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
    )
}

fn spec(base: url::Url) -> ConnectionSpec {
    let mut s = ConnectionSpec::new("tw", ProviderKind::Twilio);
    s.base_url = Some(base);
    s.senders = vec!["+15005550006".into()];
    s.credentials.insert("account_sid", AC);
    s.credentials.insert("auth_token", TOKEN);
    s.request_timeout = Duration::from_millis(500);
    s
}

fn builder(
    tweak: fn(&mut ConnectionSpec),
) -> impl Fn(url::Url) -> (Arc<dyn Provider>, Vec<String>) {
    move |base| {
        let mut s = spec(base);
        tweak(&mut s);
        let secrets = s
            .credentials
            .keys()
            .filter(|k| *k != "account_sid")
            .map(|k| s.credentials.expose(k).unwrap().to_string())
            .collect();
        (weft_twilio::build(&s).unwrap(), secrets)
    }
}

fn msg(channel: Channel, to: &str, body: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: "msg_1".into(),
        attempt_id: "att_1".into(),
        channel,
        to: to.into(),
        from: Some("+15005550006".into()),
        body: Some(body.into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: CB.into(),
    }
}

fn sms() -> OutboundMessage {
    msg(Channel::Sms, "+14155550100", "Hello from weft")
}

fn resource(sid: &str, status: &str, segments: &str) -> MockAnswer {
    MockAnswer::json(
        201,
        json!({"sid": sid, "status": status, "num_segments": segments, "error_code": null, "direction": "outbound-api"}),
    )
}

fn twilio_error(status: u16, code: u32) -> MockAnswer {
    MockAnswer::json(
        status,
        json!({"code": code, "message": "m", "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status}),
    )
}

fn post_messages() -> RequestMatch {
    RequestMatch::post(MESSAGES)
}

/// A permanent-error case on an SMS send.
fn rejected(name: &'static str, status: u16, code: u32, reason: FailureReason) -> SendCase {
    SendCase {
        name,
        message: sms(),
        answer: twilio_error(status, code),
        request: post_messages(),
        expect: SendExpect::permanent("rejected", reason, Some(&code.to_string())),
    }
}

#[tokio::test]
async fn account_auth_cases() {
    use FailureReason::*;
    let mut template = sms();
    template.body = None;
    template.template = Some(Template {
        name: "HXb5b62575e6e4ff6129ad7c8efe1f983e".into(),
        language: None,
        variables: BTreeMap::from([
            ("1".to_string(), "Jana".to_string()),
            ("2".to_string(), "3pm".to_string()),
        ]),
    });
    let mut default_sender = sms();
    default_sender.from = None;
    let mut voice = msg(Channel::Voice, "+14155550100", "Your code is <1 2 3> & bye");
    voice.voice = Some(VoiceOptions {
        language: Some("en-GB".into()),
        voice: Some("Polly.Amy".into()),
    });

    let cases = vec![
        SendCase {
            name: "sms_ok",
            message: sms(),
            answer: resource(SID, "queued", "1"),
            request: post_messages()
                .form("To", "+14155550100")
                .form("From", "+15005550006")
                .form("Body", "Hello from weft")
                .form("StatusCallback", CB)
                .header("authorization", &basic(AC, TOKEN))
                .header("content-type", "application/x-www-form-urlencoded"),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "sms_any_2xx_counts",
            message: sms(),
            answer: MockAnswer::json(200, json!({"sid": SID, "status": "queued", "num_segments": "1"})),
            request: post_messages(),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "sms_without_from_uses_the_connection_sender",
            message: default_sender,
            answer: resource(SID, "queued", "1"),
            request: post_messages().form("From", "+15005550006"),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "whatsapp_prefixes_both_addresses",
            message: msg(Channel::Whatsapp, "+4915112345678", "Hallo"),
            answer: resource(SID, "queued", "1"),
            request: post_messages()
                .form("To", "whatsapp:+4915112345678")
                .form("From", "whatsapp:+15005550006")
                .form("Body", "Hallo"),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "template_sends_content_sid_and_variables",
            message: template,
            answer: resource(SID, "queued", "1"),
            request: post_messages()
                .form("ContentSid", "HXb5b62575e6e4ff6129ad7c8efe1f983e")
                .form("ContentVariables", r#"{"1":"Jana","2":"3pm"}"#),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "voice_call_says_escaped_text",
            message: voice,
            answer: MockAnswer::json(201, json!({"sid": CALL_SID, "status": "queued"})),
            request: RequestMatch::post(CALLS)
                .form("To", "+14155550100")
                .form("From", "+15005550006")
                .form(
                    "Twiml",
                    r#"<Response><Say language="en-GB" voice="Polly.Amy">Your code is &lt;1 2 3&gt; &amp; bye</Say></Response>"#,
                )
                .form("StatusCallback", CB)
                .form("StatusCallbackEvent", "initiated")
                .form("StatusCallbackEvent", "ringing")
                .form("StatusCallbackEvent", "answered")
                .form("StatusCallbackEvent", "completed"),
            expect: SendExpect::ok(&[CALL_SID]),
        },
        SendCase {
            name: "throttled_20429_with_retry_after",
            message: sms(),
            answer: twilio_error(429, 20429).header("retry-after", "2"),
            request: post_messages(),
            expect: SendExpect::retry("throttled", Some("20429")).retry_after(Duration::from_secs(2)),
        },
        SendCase {
            name: "queue_full_21611_is_retryable",
            message: sms(),
            answer: twilio_error(400, 21611),
            request: post_messages(),
            expect: SendExpect::retry("transient", Some("21611")),
        },
        SendCase {
            name: "auth_20003",
            message: sms(),
            answer: twilio_error(401, 20003),
            request: post_messages(),
            expect: SendExpect::Err { retryable: false, code: "auth", provider_code: Some("20003".into()), reason: Some(ProviderAuth), retry_after: None },
        },
        SendCase {
            name: "server_error_json_500",
            message: sms(),
            answer: twilio_error(500, 20500),
            request: post_messages(),
            expect: SendExpect::retry("transient", Some("20500")),
        },
        SendCase {
            name: "bad_gateway_html_503",
            message: sms(),
            answer: MockAnswer::text(503, "<html>unavailable</html>"),
            request: post_messages(),
            expect: SendExpect::retry("transient", None),
        },
        SendCase {
            name: "timeout",
            message: sms(),
            answer: resource(SID, "queued", "1").delayed(Duration::from_secs(2)),
            request: post_messages(),
            expect: SendExpect::retry("timeout", None),
        },
        SendCase {
            name: "whatsapp_window_closed_63016",
            message: msg(Channel::Whatsapp, "+4915112345678", "late"),
            answer: twilio_error(400, 63016),
            request: post_messages(),
            expect: SendExpect::permanent("rejected", WindowClosed, Some("63016")),
        },
        SendCase {
            name: "call_to_invalid_21217",
            message: msg(Channel::Voice, "+15005550001", "hi"),
            answer: twilio_error(400, 21217),
            request: RequestMatch::post(CALLS),
            expect: SendExpect::permanent("rejected", InvalidAddress, Some("21217")),
        },
        SendCase {
            name: "call_not_allowed_21216",
            message: msg(Channel::Voice, "+15005550004", "hi"),
            answer: twilio_error(400, 21216),
            request: RequestMatch::post(CALLS),
            expect: SendExpect::permanent("rejected", ProviderRejected, Some("21216")),
        },
        rejected("not_found_20404", 404, 20404, ProviderRejected),
        rejected("invalid_to_21211", 400, 21211, InvalidAddress),
        rejected("invalid_from_21212", 400, 21212, ProviderRejected),
        rejected("region_not_enabled_21408", 400, 21408, ProviderRejected),
        rejected("body_missing_21602", 400, 21602, ProviderRejected),
        rejected("from_cannot_send_there_21606", 400, 21606, ProviderRejected),
        rejected("unverified_to_21608", 400, 21608, ProviderRejected),
        rejected("opted_out_21610", 400, 21610, OptedOut),
        rejected("to_not_reachable_21612", 400, 21612, InvalidAddress),
        rejected("not_mobile_21614", 400, 21614, InvalidAddress),
        rejected("body_too_long_21617", 400, 21617, ProviderRejected),
    ];
    run_send_cases(cases, builder(|_| {})).await;
}

#[tokio::test]
async fn messaging_service_and_voice_settings() {
    let mut no_from = sms();
    no_from.from = None;
    let cases = vec![
        SendCase {
            name: "messaging_service_without_from",
            message: no_from,
            answer: resource(SID, "accepted", "0"),
            request: post_messages()
                .form("MessagingServiceSid", "MG9752274e9e519418a7406176694466fa")
                .form("To", "+14155550100"),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "messaging_service_with_explicit_from",
            message: sms(),
            answer: resource(SID, "queued", "1"),
            request: post_messages()
                .form("MessagingServiceSid", "MG9752274e9e519418a7406176694466fa")
                .form("From", "+15005550006"),
            expect: SendExpect::ok(&[SID]),
        },
        SendCase {
            name: "voice_language_and_name_from_settings",
            message: msg(Channel::Voice, "+14155550100", "Hallo"),
            answer: MockAnswer::json(201, json!({"sid": CALL_SID, "status": "queued"})),
            request: RequestMatch::post(CALLS).form(
                "Twiml",
                r#"<Response><Say language="de-DE" voice="Polly.Marlene">Hallo</Say></Response>"#,
            ),
            expect: SendExpect::ok(&[CALL_SID]),
        },
    ];
    run_send_cases(
        cases,
        builder(|s| {
            s.settings.insert(
                "messaging_service_sid".into(),
                json!("MG9752274e9e519418a7406176694466fa"),
            );
            s.settings.insert("voice_language".into(), json!("de-DE"));
            s.settings
                .insert("voice_name".into(), json!("Polly.Marlene"));
        }),
    )
    .await;
}

#[tokio::test]
async fn api_key_is_the_basic_user() {
    let cases = vec![SendCase {
        name: "api_key_auth",
        message: sms(),
        answer: resource(SID, "queued", "1"),
        request: post_messages().header(
            "authorization",
            &basic("SK0123456789abcdef0123456789abcdef", "api-key-secret-9c2d"),
        ),
        expect: SendExpect::ok(&[SID]),
    }];
    run_send_cases(
        cases,
        builder(|s| {
            s.credentials
                .insert("api_key_sid", "SK0123456789abcdef0123456789abcdef");
            s.credentials
                .insert("api_key_secret", "api-key-secret-9c2d");
        }),
    )
    .await;
}

#[tokio::test]
async fn refused_before_any_request() {
    // Port 9 (discard) on localhost: nothing must be sent there for these.
    let p = weft_twilio::build(&spec(url::Url::parse("http://127.0.0.1:9").unwrap())).unwrap();
    let email = msg(Channel::Email, "a@example.com", "x");
    assert_eq!(p.send(&email).await.unwrap_err().code(), "config");
    let mut empty = sms();
    empty.body = None;
    let e = p.send(&empty).await.unwrap_err();
    assert_eq!(
        (e.code(), e.reason()),
        ("rejected", FailureReason::ProviderRejected)
    );
    let mut silent_call = msg(Channel::Voice, "+14155550100", " ");
    silent_call.body = Some("  ".into());
    assert!(!p.send(&silent_call).await.unwrap_err().is_retryable());
}

#[tokio::test]
async fn connection_refused_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let p = weft_twilio::build(&spec(
        url::Url::parse(&format!("http://127.0.0.1:{port}")).unwrap(),
    ))
    .unwrap();
    let e = p.send(&sms()).await.unwrap_err();
    assert!(e.is_retryable());
    assert_eq!(e.code(), "transient");
    assert!(!e.is_ambiguous());
}

#[test]
fn capabilities_and_kind() {
    let p = weft_twilio::build(&spec(url::Url::parse("http://127.0.0.1:9").unwrap())).unwrap();
    assert_eq!(p.kind(), ProviderKind::Twilio);
    let caps = p.capabilities();
    assert_eq!(caps.webhook_kinds, &["status", "inbound", "voice"]);
    assert_eq!(
        caps.channels,
        vec![Channel::Sms, Channel::Whatsapp, Channel::Voice]
    );
}
