//! One end-to-end test per channel and provider: `POST /v1/messages` → the provider's simulator
//! → its signed callbacks → the message's final status, on SQLite and PostgreSQL. Each test
//! checks which connection carried the attempt and that the simulator got exactly one send.

use crate::helpers::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use weft_simkit::CallbackBehaviour;

backend_tests!(
    vonage_sms_is_delivered,
    vonage_two_part_sms_is_delivered_when_both_parts_are,
    sendgrid_email_is_delivered_then_read,
    mailgun_email_is_delivered,
    whatsapp_template_is_read,
    whatsapp_text_in_window_is_read,
    telegram_message_is_sent,
    smtp_email_is_queued,
    twilio_voice_call_completes,
);

const VONAGE_CONN: &str = "vonage-sim";
const VONAGE_SENDER: &str = "+4915100000001";
const SENDGRID_CONN: &str = "sendgrid-sim";
const MAILGUN_CONN: &str = "mailgun-sim";
const TELEGRAM_CONN: &str = "telegram-sim";
const SMTP_CONN: &str = "smtp-sink";
const VOICE_CONN: &str = "twilio-voice";
const MAIL_TO: &str = "jo@customer.example";
/// A customer's WhatsApp number (digits, as Meta's `wa_id`).
const WA_CUSTOMER: &str = "14155550123";
const TG_CHAT: i64 = 4242;

fn setup(extra: String) -> Setup {
    Setup {
        twilio: false,
        extra_toml: extra,
        ..Setup::default()
    }
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// Sends `body`, insisting on 202; returns the message id.
async fn send(app: &TestApp, body: Value) -> String {
    let resp = app.post_message(&body).await;
    let status = resp.status();
    let v: Value = resp.json().await.expect("JSON answer");
    assert_eq!(status, 202, "send {body} answered {status}: {v}");
    s(&v["id"])
}

/// The first attempt went through `conn` of `provider` and was taken by the provider.
fn assert_attempt(m: &Value, provider: &str, conn: &str) {
    let attempts = m["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "one attempt: {m:#}");
    assert_eq!(attempts[0]["provider"], provider, "{m:#}");
    assert_eq!(attempts[0]["connection"], conn, "{m:#}");
    assert!(
        attempts[0]["provider_ids"]
            .as_array()
            .is_some_and(|ids| !ids.is_empty()),
        "the provider's id is stored: {m:#}"
    );
}

/// Waits (bounded) until the attempt has a provider id, so the send has been recorded.
async fn wait_provider_ids(app: &TestApp, id: &str, n: usize) -> Value {
    app.wait_until(id, SOON, "recorded with its provider ids", |m| {
        m["attempts"][0]["provider_ids"]
            .as_array()
            .is_some_and(|a| a.len() >= n)
    })
    .await
}

/// Polls `f` until it is true, for at most `SOON`.
async fn eventually(what: &str, f: impl Fn() -> bool) {
    let deadline = Instant::now() + SOON;
    while !f() {
        assert!(Instant::now() < deadline, "not {what} after {SOON:?}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A free local port for a simulator that must know weft's URL before it starts.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

// ---------------------------------------------------------------------------------------------
// Vonage SMS API

fn vonage_toml(port: u16, c: &weft_vonage::simulator::SimulatorConfig) -> String {
    format!(
        r#"
[[connections]]
id = "{VONAGE_CONN}"
provider = "vonage"
tenant = "{TENANT}"
base_url = "http://127.0.0.1:{port}"
senders = ["{VONAGE_SENDER}"]
channels = ["sms"]
[connections.credentials]
api_key = "{key}"
api_secret = "{secret}"
signature_secret = "{sig}"
"#,
        key = c.api_key,
        secret = c.api_secret,
        sig = c.signature_secret,
    )
}

/// A weft with a Vonage connection and the simulator behind it, DLRs pointed at weft.
async fn vonage_app(b: Backend) -> (TestApp, weft_vonage::simulator::Simulator) {
    let port = free_port();
    let mut cfg = weft_vonage::simulator::SimulatorConfig {
        port,
        ..Default::default()
    };
    let app = spawn_app(b, setup(vonage_toml(port, &cfg))).await;
    cfg.dlr_url = Some(app.url(&format!("/webhooks/vonage/{VONAGE_CONN}/status")));
    let sim = weft_vonage::simulator::Simulator::start(cfg)
        .await
        .expect("start the Vonage simulator");
    (app, sim)
}

async fn vonage_sms_is_delivered(b: Backend) {
    let (app, sim) = vonage_app(b).await;
    let id = send(
        &app,
        json!({"to": TO, "body": "Your code is 1234", "connection": VONAGE_CONN}),
    )
    .await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_attempt(&m, "vonage", VONAGE_CONN);
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got.len(), 1, "one send: {got:#?}");
    assert_eq!(sim.recorder().count(), 1);
    assert_eq!(
        m["attempts"][0]["provider_ids"],
        json!([got[0].provider_id]),
        "{m:#}"
    );
}

/// A signed SMS API DLR for one part, as the simulator would post it.
fn vonage_dlr(
    cfg: &weft_vonage::simulator::SimulatorConfig,
    message_id: &str,
    weft_id: &str,
    status: &str,
) -> String {
    let now = time::OffsetDateTime::now_utc();
    let mut p: Vec<(String, String)> = [
        ("msisdn", TO.trim_start_matches('+')),
        ("to", VONAGE_SENDER.trim_start_matches('+')),
        ("network-code", "23410"),
        ("messageId", message_id),
        ("price", "0.03330000"),
        ("status", status),
        ("scts", "2601010000"),
        ("err-code", "0"),
        ("message-timestamp", "2026-01-01 00:00:00"),
        ("client-ref", weft_id),
        ("api-key", cfg.api_key.as_str()),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.push(("timestamp".into(), now.unix_timestamp().to_string()));
    p.push(("nonce".into(), ulid::Ulid::new().to_string()));
    let sig =
        weft_vonage::verify::sign_params(cfg.signature_method, cfg.signature_secret.as_bytes(), &p);
    p.push(("sig".into(), sig));
    let mut f = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &p {
        f.append_pair(k, v);
    }
    f.finish()
}

async fn post_vonage_dlr(app: &TestApp, body: String) {
    let r = app
        .client
        .post(app.url(&format!("/webhooks/vonage/{VONAGE_CONN}/status")))
        .header(
            reqwest::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .body(body)
        .send()
        .await
        .expect("POST the DLR");
    let status = r.status();
    assert!(
        status.is_success(),
        "DLR answered {status}: {}",
        r.text().await.unwrap_or_default()
    );
}

async fn vonage_two_part_sms_is_delivered_when_both_parts_are(b: Backend) {
    let (app, sim) = vonage_app(b).await;
    // The test posts the DLRs itself, part by part.
    sim.callbacks().set_behaviour(CallbackBehaviour::Silent);
    let body = "Two parts. ".repeat(20); // 220 GSM-7 characters: 2 parts of 153
    let id = send(
        &app,
        json!({"to": TO, "body": body, "connection": VONAGE_CONN}),
    )
    .await;
    let m = wait_provider_ids(&app, &id, 2).await;
    assert_eq!(m["segments"], 2, "{m:#}");
    assert_attempt(&m, "vonage", VONAGE_CONN);
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got.len(), 1, "one send: {got:#?}");
    assert_eq!(sim.recorder().count(), 1);
    let parts: Vec<String> = got[0].raw["message-ids"]
        .as_array()
        .expect("message-ids")
        .iter()
        .map(s)
        .collect();
    assert_eq!(parts.len(), 2, "{got:#?}");
    let mut stored: Vec<String> = m["attempts"][0]["provider_ids"]
        .as_array()
        .expect("provider_ids")
        .iter()
        .map(s)
        .collect();
    stored.sort();
    let mut want = parts.clone();
    want.sort();
    assert_eq!(stored, want, "both part ids are stored: {m:#}");

    let cfg = sim.config();
    for part in &parts {
        post_vonage_dlr(&app, vonage_dlr(cfg, part, &id, "accepted")).await;
    }
    post_vonage_dlr(&app, vonage_dlr(cfg, &parts[0], &id, "delivered")).await;
    // One part delivered is not the message delivered.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = app.get_message(&id).await;
    assert_ne!(m["status"], "delivered", "only one part is: {m:#}");
    post_vonage_dlr(&app, vonage_dlr(cfg, &parts[1], &id, "delivered")).await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(
        m["status_history"]
            .as_array()
            .expect("history")
            .iter()
            .filter(|h| h["status"] == "delivered" && h["applied"] == true)
            .count(),
        1,
        "{m:#}"
    );
}

// ---------------------------------------------------------------------------------------------
// SendGrid

fn email_toml() -> String {
    r#"
[email]
domain = "weft.test"
inbound_domain = "in.weft.test"
reply_token_secret = "channels-test-reply-token-secret"
"#
    .to_string()
}

async fn sendgrid_email_is_delivered_then_read(b: Backend) {
    let sim =
        weft_sendgrid::simulator::Simulator::start(weft_sendgrid::simulator::SimulatorConfig {
            open_events: true,
            ..Default::default()
        })
        .await
        .expect("start the SendGrid simulator");
    let extra = format!(
        r#"{email}
[[connections]]
id = "{SENDGRID_CONN}"
provider = "sendgrid"
tenant = "{TENANT}"
base_url = "{base}"
senders = ["notifications@sim.weft.example"]
channels = ["email"]
[connections.credentials]
api_key = "{key}"
webhook_public_key = "{pk}"
"#,
        email = email_toml(),
        base = sim.base_url(),
        key = sim.config().api_key,
        pk = sim.public_key_base64(),
    );
    let app = spawn_app(b, setup(extra)).await;
    sim.set_events_url(Some(
        app.url(&format!("/webhooks/sendgrid/{SENDGRID_CONN}/events")),
    ));
    let id = send(
        &app,
        json!({"to": MAIL_TO, "subject": "Your order", "body": "It ships today.", "connection": SENDGRID_CONN}),
    )
    .await;
    let m = app.wait_for_status(&id, "read", SOON).await;
    assert_eq!(m["channel"], "email");
    assert_attempt(&m, "sendgrid", SENDGRID_CONN);
    assert!(
        history_statuses(&m).iter().any(|h| h == "delivered"),
        "delivered before read: {m:#}"
    );
    assert_eq!(sim.recorder().find_by_message(&id).len(), 1);
    assert_eq!(sim.recorder().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Mailgun

async fn mailgun_email_is_delivered(b: Backend) {
    let sim = weft_mailgun::simulator::Simulator::start(
        weft_mailgun::simulator::SimulatorConfig::default(),
    )
    .await
    .expect("start the Mailgun simulator");
    let c = sim.config();
    let extra = format!(
        r#"{email}
[[connections]]
id = "{MAILGUN_CONN}"
provider = "mailgun"
tenant = "{TENANT}"
base_url = "{base}"
senders = ["notifications@{domain}"]
channels = ["email"]
[connections.credentials]
api_key = "{key}"
webhook_signing_key = "{signing}"
[connections.settings]
domain = "{domain}"
"#,
        email = email_toml(),
        base = sim.base_url(),
        domain = c.domain,
        key = c.api_key,
        signing = c.webhook_signing_key,
    );
    let app = spawn_app(b, setup(extra)).await;
    sim.set_events_url(Some(
        app.url(&format!("/webhooks/mailgun/{MAILGUN_CONN}/events")),
    ));
    let id = send(
        &app,
        json!({"to": MAIL_TO, "subject": "Your invoice", "body": "Attached.", "connection": MAILGUN_CONN}),
    )
    .await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(m["channel"], "email");
    assert_attempt(&m, "mailgun", MAILGUN_CONN);
    assert_eq!(sim.recorder().find_by_message(&id).len(), 1);
    assert_eq!(sim.recorder().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// WhatsApp Cloud API

async fn whatsapp_app(b: Backend) -> (TestApp, weft_whatsapp::simulator::Simulator) {
    let sim =
        weft_whatsapp::simulator::Simulator::start(weft_whatsapp::simulator::SimulatorConfig {
            read_receipts: true,
            ..Default::default()
        })
        .await
        .expect("start the WhatsApp Cloud simulator");
    let extra = whatsapp_toml(&sim);
    let app = spawn_app(b, setup(extra)).await;
    sim.set_webhook_url(Some(
        app.url(&format!("/webhooks/whatsapp_cloud/{WHATSAPP_CONN}/webhook")),
    ));
    (app, sim)
}

async fn whatsapp_template_is_read(b: Backend) {
    let (app, sim) = whatsapp_app(b).await;
    // No message from the customer yet: free-form text is refused before any provider call.
    let refused = send(
        &app,
        json!({
            "to": format!("whatsapp:+{WA_CUSTOMER}"),
            "body": "Hello out of the blue.",
            "connection": WHATSAPP_CONN,
        }),
    )
    .await;
    let m = app.wait_for_status(&refused, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "window_closed", "{m:#}");
    assert_eq!(sim.recorder().count(), 0, "nothing reached the provider");
    let id = send(
        &app,
        json!({
            "to": format!("whatsapp:+{WA_CUSTOMER}"),
            "template": "order_update",
            "variables": {"1": "A-1042"},
            "connection": WHATSAPP_CONN,
        }),
    )
    .await;
    let m = app.wait_for_status(&id, "read", SOON).await;
    assert_eq!(m["channel"], "whatsapp");
    assert_attempt(&m, "whatsapp_cloud", WHATSAPP_CONN);
    let statuses = history_statuses(&m);
    assert!(statuses.iter().any(|h| h == "delivered"), "{m:#}");
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got.len(), 1, "one send: {got:#?}");
    assert_eq!(sim.recorder().count(), 1);
    assert_eq!(got[0].raw["type"], "template", "{:#}", got[0].raw);
    assert_eq!(got[0].raw["template"]["name"], "order_update");
}

async fn whatsapp_text_in_window_is_read(b: Backend) {
    let (app, sim) = whatsapp_app(b).await;
    // The customer writes first: the 24-hour window opens.
    let r = sim
        .send_inbound_text(WA_CUSTOMER, "Is my order on its way?", None, false)
        .await
        .expect("post the inbound");
    assert_eq!(r.status, 200, "inbound: {}", r.body);
    let id = send(
        &app,
        json!({
            "to": format!("whatsapp:+{WA_CUSTOMER}"),
            "body": "Yes, it ships today.",
            "connection": WHATSAPP_CONN,
        }),
    )
    .await;
    let m = app.wait_for_status(&id, "read", SOON).await;
    assert_eq!(m["channel"], "whatsapp");
    assert_attempt(&m, "whatsapp_cloud", WHATSAPP_CONN);
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got.len(), 1, "one send: {got:#?}");
    assert_eq!(sim.recorder().count(), 1);
    assert_eq!(got[0].raw["type"], "text", "{:#}", got[0].raw);
}

// ---------------------------------------------------------------------------------------------
// Telegram

async fn telegram_message_is_sent(b: Backend) {
    let sim =
        weft_telegram::simulator::Simulator::start(weft_telegram::simulator::SimulatorConfig {
            secret_token: "tg-channels-secret-0123456789".into(),
            ..Default::default()
        })
        .await
        .expect("start the Telegram simulator");
    let c = sim.config();
    let extra = format!(
        r#"
[[connections]]
id = "{TELEGRAM_CONN}"
provider = "telegram"
tenant = "{TENANT}"
base_url = "{base}"
channels = ["telegram"]
[connections.credentials]
bot_token = "{token}"
secret_token = "{secret}"
"#,
        base = sim.base_url(),
        token = c.bot_token,
        secret = c.secret_token,
    );
    let app = spawn_app(b, setup(extra)).await;
    let id = send(
        &app,
        json!({"to": format!("telegram:{TG_CHAT}"), "body": "Your table is ready.", "connection": TELEGRAM_CONN}),
    )
    .await;
    // Bots get no delivery receipts: `sent` (the Bot API accepted it) is final.
    let m = app.wait_for_status(&id, "sent", SOON).await;
    assert_eq!(m["channel"], "telegram");
    assert_attempt(&m, "telegram", TELEGRAM_CONN);
    eventually("recorded by the simulator", || sim.recorder().count() == 1).await;
    let got = sim.recorder().all();
    assert_eq!(got.len(), 1, "one send: {got:#?}");
    assert_eq!(
        m["attempts"][0]["provider_ids"],
        json!([got[0].provider_id]),
        "{m:#}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "sent", "{m:#}");
    assert_eq!(sim.recorder().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// SMTP

async fn smtp_email_is_queued(b: Backend) {
    let sink = weft_smtp::SmtpSink::start(weft_smtp::SinkConfig::default())
        .await
        .expect("start the SMTP sink");
    let extra = format!(
        r#"{email}
[[connections]]
id = "{SMTP_CONN}"
provider = "smtp"
tenant = "{TENANT}"
base_url = "{base}"
senders = ["notifications@weft.test"]
channels = ["email"]
[connections.settings]
tls = "none"
"#,
        email = email_toml(),
        base = sink.base_url(),
    );
    let app = spawn_app(b, setup(extra)).await;
    let id = send(
        &app,
        json!({"to": MAIL_TO, "subject": "Welcome", "body": "Hello from weft.", "connection": SMTP_CONN}),
    )
    .await;
    // SMTP has no receipts: the relay's `250` is as far as it goes, and the adapter maps it to
    // `queued` (a relay holds the mail; see weft_smtp::status_map). Nothing moves it later.
    app.wait_for_status(&id, "queued", SOON).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "queued", "{m:#}");
    assert_eq!(history_statuses(&m), vec!["accepted", "queued"], "{m:#}");
    assert_eq!(m["channel"], "email");
    assert_attempt(&m, "smtp", SMTP_CONN);
    let mails = sink.mails();
    assert_eq!(mails.len(), 1, "one mail: {mails:#?}");
    assert_eq!(mails[0].rcpt_to, vec![MAIL_TO.to_string()]);
    assert!(
        mails[0].raw.contains("Subject: Welcome"),
        "{}",
        mails[0].raw
    );
    assert_eq!(sink.recorder().count(), 1);
}

// ---------------------------------------------------------------------------------------------
// Twilio voice

async fn twilio_voice_call_completes(b: Backend) {
    let sim = weft_twilio::simulator::Simulator::start(
        weft_twilio::simulator::SimulatorConfig::default(),
    )
    .await
    .expect("start the Twilio simulator");
    let extra = twilio_conn_toml(VOICE_CONN, &sim.base_url(), &sim, &["voice"], &[SENDER], "");
    let app = spawn_app(b, setup(extra)).await;
    let id = send(
        &app,
        json!({"to": TO, "channel": "voice", "body": "Your appointment is tomorrow at nine.", "connection": VOICE_CONN}),
    )
    .await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(m["channel"], "voice");
    // The call's progress came from Twilio's signed call status callbacks.
    let raw: Vec<&str> = m["status_history"]
        .as_array()
        .expect("history")
        .iter()
        .filter_map(|h| h["raw_status"].as_str())
        .collect();
    assert!(
        raw.iter().any(|r| *r == "in-progress" || *r == "completed"),
        "call statuses in the history: {m:#}"
    );
    assert_attempt(&m, "twilio", VOICE_CONN);
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got.len(), 1, "one call: {got:#?}");
    assert_eq!(sim.recorder().count(), 1);
    assert!(got[0].provider_id.starts_with("CA"), "a call sid: {got:#?}");
    assert_eq!(
        m["attempts"][0]["provider_ids"],
        json!([got[0].provider_id]),
        "{m:#}"
    );
}
