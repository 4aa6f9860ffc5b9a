#![allow(clippy::unwrap_used)]
//! Send cases against the SMTP sink, run by `smtp_runner` (testkit's runner speaks HTTP).

mod smtp_runner;

use smtp_runner::{case, run, Case, Check};
use std::time::Duration;
use weft_provider::{
    Channel, ConnectionSpec, DeliveryStatus, EmailHeaders, FailureReason, OutboundMessage,
};
use weft_smtp::simulator::Stage;
use weft_smtp::SinkConfig;
use weft_testkit::SendExpect;

fn msg(id: &str, to: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: id.into(),
        attempt_id: format!("att_{id}"),
        channel: Channel::Email,
        to: to.into(),
        from: Some("support@shop.example".into()),
        body: Some("Hello from weft.\r\nSecond line.".into()),
        subject: Some("Your order".into()),
        template: None,
        email: Some(EmailHeaders {
            message_id: Some(format!("{id}@mail.shop.example")),
            in_reply_to: None,
            references: Vec::new(),
            reply_to: None,
        }),
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: format!("http://weft.test/webhooks/smtp/mail/status?m={id}"),
    }
}

fn with(mut m: OutboundMessage, f: impl FnOnce(&mut OutboundMessage)) -> OutboundMessage {
    f(&mut m);
    m
}

const USER: &str = "relay-user";
const PASS: &str = "s3cret-relay-pass";
const WRONG: &str = "not-the-pass-42";

fn creds(spec: &mut ConnectionSpec) {
    spec.credentials.insert("username", USER);
    spec.credentials.insert("password", PASS);
}

/// Queued under our Message-ID.
fn ok(id: &str) -> SendExpect {
    SendExpect::Ok {
        provider_ids: vec![format!("{id}@mail.shop.example")],
        status: DeliveryStatus::Queued,
    }
}

fn perm_no_code(reason: FailureReason) -> SendExpect {
    SendExpect::permanent("rejected", reason, None)
}

fn perm(code: &'static str, reason: FailureReason, smtp: &str) -> SendExpect {
    SendExpect::permanent(code, reason, Some(smtp))
}

fn cases() -> Vec<Case> {
    use Check::*;
    use FailureReason::*;
    vec![
        case("success", msg("msg_ok", "bob@example.com"), ok("msg_ok"))
            .mail(vec![
                Header("Message-ID", "<msg_ok@mail.shop.example>"),
                Header("X-Weft-Message-Id", "msg_ok"),
                Header("X-Weft-Attempt-Id", "att_msg_ok"),
                Header("Subject", "Your order"),
                Header("To", "bob@example.com"),
                Header("From", "support@shop.example"),
                Header("Content-Type", "text/plain; charset=utf-8"),
                Envelope("support@shop.example", "bob@example.com"),
                Body("Hello from weft.\r\nSecond line.".into()),
                AuthUser(None),
            ])
            .connections(1),
        case(
            "threading headers",
            with(msg("msg_thr", "bob@example.com"), |m| {
                let e = m.email.as_mut().unwrap();
                e.reply_to = Some("reply+c0nv.t0k@in.shop.example".into());
                e.in_reply_to = Some("CAF=x1@mail.gmail.com".into());
                e.references = vec![
                    "root.1@shop.example".into(),
                    "<CAF=x1@mail.gmail.com>".into(),
                ];
            }),
            ok("msg_thr"),
        )
        .mail(vec![
            Header("Message-ID", "<msg_thr@mail.shop.example>"),
            Header("Reply-To", "reply+c0nv.t0k@in.shop.example"),
            Header("In-Reply-To", "<CAF=x1@mail.gmail.com>"),
            Header(
                "References",
                "<root.1@shop.example> <CAF=x1@mail.gmail.com>",
            ),
        ]),
        case(
            "message id defaults to ours",
            with(msg("msg_def", "bob@example.com"), |m| m.email = None),
            SendExpect::ok(&["msg_def@shop.example"]),
        )
        .mail(vec![
            Header("Message-ID", "<msg_def@shop.example>"),
            Header("X-Weft-Message-Id", "msg_def"),
        ]),
        case(
            "unicode subject and body",
            with(msg("msg_uni", "bob@example.com"), |m| {
                m.subject = Some("Grüße aus Köln – 你好 🎉".into());
                m.body = Some("Ünïcödé ✓ — 日本語のテキスト\r\nzweite Zeile".into());
            }),
            ok("msg_uni"),
        )
        .mail(vec![
            Header("Subject", "Grüße aus Köln – 你好 🎉"),
            Body("Ünïcödé ✓ — 日本語のテキスト\r\nzweite Zeile".into()),
            RawIsAscii,
        ]),
        case(
            "unicode recipient over SMTPUTF8",
            msg("msg_u8", "jörg@example.com"),
            ok("msg_u8"),
        )
        .mail(vec![Check::Envelope(
            "support@shop.example",
            "jörg@example.com",
        )]),
        case(
            "unicode recipient, relay without SMTPUTF8",
            msg("msg_nou8", "jörg@example.com"),
            perm_no_code(FailureReason::ProviderRejected),
        )
        .sink(SinkConfig {
            smtputf8: false,
            ..SinkConfig::default()
        }),
        case(
            "dot-stuffed body survives",
            with(msg("msg_dot", "bob@example.com"), |m| {
                m.body = Some(".leading dot\r\n.\r\n..two\r\nend".into())
            }),
            ok("msg_dot"),
        )
        .mail(vec![Body(".leading dot\r\n.\r\n..two\r\nend".into())]),
        case(
            "long body with long lines",
            with(msg("msg_long", "bob@example.com"), |m| {
                m.body = Some("0123456789".repeat(3000))
            }),
            ok("msg_long"),
        )
        .mail(vec![
            Header("X-Weft-Message-Id", "msg_long"),
            Body("0123456789".repeat(3000)),
        ]),
        case(
            "sender from settings",
            with(msg("msg_from", "bob@example.com"), |m| m.from = None),
            ok("msg_from"),
        )
        .spec(|s| {
            s.settings
                .insert("from".into(), "Shop <noreply@shop.example>".into());
        })
        .mail(vec![
            Header("From", "Shop <noreply@shop.example>"),
            Envelope("noreply@shop.example", "bob@example.com"),
        ]),
        case(
            "auth plain ok",
            msg("msg_auth", "bob@example.com"),
            ok("msg_auth"),
        )
        .sink(SinkConfig::default().with_credentials(USER, PASS))
        .spec(creds)
        .mail(vec![AuthUser(Some(USER)), RawLacks(PASS)]),
        case(
            "auth login ok",
            msg("msg_login", "bob@example.com"),
            ok("msg_login"),
        )
        .sink(SinkConfig {
            auth_mechanisms: vec!["LOGIN".into()],
            ..SinkConfig::default().with_credentials(USER, PASS)
        })
        .spec(|s| {
            creds(s);
            s.settings.insert("auth_mechanism".into(), "login".into());
        })
        .mail(vec![AuthUser(Some(USER))]),
        case(
            "auth failure 535",
            msg("msg_535", "bob@example.com"),
            SendExpect::Err {
                retryable: false,
                code: "auth",
                provider_code: Some("535".into()),
                reason: Some(ProviderAuth),
                retry_after: None,
            },
        )
        .sink(SinkConfig::default().with_credentials(USER, PASS))
        .spec(|s| {
            s.credentials.insert("username", USER);
            s.credentials.insert("password", WRONG);
        }),
        case(
            "auth required 530",
            msg("msg_530", "bob@example.com"),
            SendExpect::Err {
                retryable: false,
                code: "auth",
                provider_code: Some("530".into()),
                reason: None,
                retry_after: None,
            },
        )
        .sink(SinkConfig::default().with_credentials(USER, PASS))
        .spec(|s| s.credentials = Default::default()),
        case(
            "no common auth mechanism",
            msg("msg_mech", "bob@example.com"),
            SendExpect::Err {
                retryable: false,
                code: "config",
                provider_code: None,
                reason: None,
                retry_after: None,
            },
        )
        .sink(SinkConfig {
            auth_mechanisms: vec!["LOGIN".into()],
            ..SinkConfig::default().with_credentials(USER, PASS)
        })
        .spec(|s| {
            creds(s);
            s.settings.insert("auth_mechanism".into(), "plain".into());
        }),
        case(
            "rcpt 451 retries",
            msg("msg_r451", "bob@example.com"),
            SendExpect::retry("transient", Some("451")),
        )
        .faults(|f| f.set_rcpt_reply(Some(451))),
        case(
            "rcpt 450 retries",
            msg("msg_r450", "bob@example.com"),
            SendExpect::retry("transient", Some("450")),
        )
        .faults(|f| f.set_rcpt_reply(Some(450))),
        case(
            "rcpt 452 retries",
            msg("msg_r452", "bob@example.com"),
            SendExpect::retry("transient", Some("452")),
        )
        .faults(|f| f.set_rcpt_reply(Some(452))),
        case(
            "data 451 retries",
            msg("msg_d451", "bob@example.com"),
            SendExpect::retry("transient", Some("451")),
        )
        .faults(|f| f.set_data_reply(Some(451))),
        case(
            "busy recipient 451",
            msg("msg_busy", "busy@example.com"),
            SendExpect::retry("transient", Some("451")),
        ),
        case(
            "greeting 421 is throttled",
            msg("msg_g421", "bob@example.com"),
            SendExpect::retry("throttled", Some("421")),
        )
        .faults(|f| f.set_greeting_reply(Some(421))),
        case(
            "throttle recipient 421",
            msg("msg_thr421", "throttle@example.com"),
            SendExpect::retry("throttled", Some("421")),
        ),
        case(
            "error rate answers 451",
            msg("msg_rate", "bob@example.com"),
            SendExpect::retry("transient", Some("451")),
        )
        .faults(|f| f.common().set_error_rate(1.0)),
        case(
            "reject recipient 550",
            msg("msg_550", "reject@example.com"),
            perm("rejected", InvalidAddress, "550"),
        ),
        case(
            "rcpt 553 policy",
            msg("msg_553", "bob@example.com"),
            perm("rejected", ProviderRejected, "553"),
        )
        .faults(|f| f.set_rcpt_reply(Some(553))),
        case(
            "data 552 too big",
            msg("msg_552", "bob@example.com"),
            perm("rejected", ProviderRejected, "552"),
        )
        .faults(|f| f.set_data_reply(Some(552))),
        case(
            "spam recipient 554",
            msg("msg_554", "spam@example.com"),
            perm("rejected", ProviderRejected, "554"),
        ),
        case(
            "greeting 554 permanent",
            msg("msg_g554", "bob@example.com"),
            perm("rejected", ProviderRejected, "554"),
        )
        .faults(|f| f.set_greeting_reply(Some(554))),
        case(
            "connection refused",
            msg("msg_refused", "bob@example.com"),
            SendExpect::retry("transient", None),
        )
        .refused()
        .connections(0),
        case(
            "slow relay times out",
            msg("msg_slow", "bob@example.com"),
            SendExpect::retry("timeout", None),
        )
        .faults(|f| f.set_latency(Duration::from_secs(3)))
        .spec(|s| s.request_timeout = Duration::from_millis(300)),
        case(
            "data never answered times out",
            msg("msg_hang", "bob@example.com"),
            SendExpect::retry("timeout", None),
        )
        .faults(|f| f.common().set_timeout_rate(1.0))
        .spec(|s| s.request_timeout = Duration::from_millis(500)),
        case(
            "dropped after data",
            msg("msg_drop", "bob@example.com"),
            SendExpect::retry("transient", None),
        )
        .faults(|f| f.set_drop_at(Some(Stage::EndOfData))),
        case(
            "dropped before greeting",
            msg("msg_drop0", "bob@example.com"),
            SendExpect::retry("transient", None),
        )
        .faults(|f| f.set_drop_at(Some(Stage::Greeting))),
        case(
            "missing subject, no connection",
            with(msg("msg_nosub", "bob@example.com"), |m| m.subject = None),
            SendExpect::permanent("rejected", ProviderRejected, None),
        )
        .connections(0),
        case(
            "invalid recipient, no connection",
            msg("msg_bad", "not-an-address"),
            SendExpect::permanent("rejected", InvalidAddress, None),
        )
        .connections(0),
        case(
            "no sender, no connection",
            with(msg("msg_nofrom", "bob@example.com"), |m| m.from = None),
            SendExpect::Err {
                retryable: false,
                code: "config",
                provider_code: None,
                reason: None,
                retry_after: None,
            },
        )
        .connections(0),
        case(
            "starttls required against plaintext sink",
            msg("msg_tls", "bob@example.com"),
            SendExpect::Err {
                retryable: false,
                code: "config",
                provider_code: None,
                reason: None,
                retry_after: None,
            },
        )
        .spec(|s| {
            s.settings.insert("tls".into(), "starttls".into());
            creds(s);
        })
        .connections(1),
        case(
            "implicit tls against plaintext sink",
            msg("msg_tls2", "bob@example.com"),
            SendExpect::Err {
                retryable: false,
                code: "config",
                provider_code: None,
                reason: None,
                retry_after: None,
            },
        )
        .spec(|s| {
            s.settings.insert("tls".into(), "implicit".into());
        }),
    ]
}

#[tokio::test]
async fn send_cases() {
    let cases = cases();
    assert!(cases.len() >= 25, "only {} cases", cases.len());
    for case in cases {
        run(case).await;
    }
}

/// The runner notices a wrong expectation: a 550 case expected as a success panics.
#[test]
#[should_panic(expected = "inverted: expected Ok")]
fn a_table_case_can_fail() {
    let bad = case(
        "inverted",
        msg("msg_inv", "reject@example.com"),
        ok("msg_inv"),
    );
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(bad));
}
