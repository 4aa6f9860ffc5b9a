//! Threading (DESIGN.md §5): a customer who gets an SMS, answers by SMS and WhatsApp, calls the
//! hotline and replies to an e-mail stays in one conversation, and every inbound message says
//! which rung of the ladder placed it. Also: parallel conversations by lease and quoted reply,
//! inactive → reopen, closed → new and linked, retired numbers, concurrent ingest, merge and
//! unmerge, and forged inbound webhooks on every route.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::HashSet;
use std::time::{Duration, Instant};
use weft_simkit::CallbackBehaviour;
use weft_twilio::simulator::WhatsappInbound;

backend_tests!(
    whole_story_is_one_conversation,
    parallel_conversations_thread_by_lease_and_quote,
    inactive_reopens_closed_links_and_retired_number_starts_fresh,
    concurrent_copies_of_one_webhook_store_one_message,
    concurrent_first_messages_make_one_contact_and_conversation,
    merge_then_unmerge_restores_both_contacts,
    forged_inbound_webhooks_are_rejected_and_store_nothing,
    timeline_keeps_an_inbound_before_its_auto_reply,
    idle_conversation_closes_and_a_reply_starts_a_linked_one,
);

/// The customer's phone.
const CUSTOMER: &str = "+14155550123";
/// The customer's e-mail address, as the app adds it.
const CUSTOMER_EMAIL: &str = "Jo@Customer.example";
/// A second business number of the Twilio account (number pool).
const SECOND_NUMBER: &str = "+15005550010";
/// The hotline the customer calls; never used to send.
const HOTLINE: &str = "+15005550011";
/// `Message-ID` domain and reply-token domain.
const EMAIL_DOMAIN: &str = "weft.test";
const INBOUND_DOMAIN: &str = "in.weft.test";

const MAILGUN_CONN: &str = "mailgun-sim";
const SENDGRID_CONN: &str = "sendgrid-in";
const TELEGRAM_CONN: &str = "telegram-bot";
const VONAGE_CONN: &str = "vonage-sms";
const SENDGRID_INBOUND_SECRET: &str = "sg-inbound-secret-0123456789";
const TELEGRAM_SECRET: &str = "tg-secret-token-0123456789";

fn email_toml() -> String {
    format!(
        r#"
[email]
domain = "{EMAIL_DOMAIN}"
inbound_domain = "{INBOUND_DOMAIN}"
reply_token_secret = "threading-test-reply-token-secret"
"#
    )
}

fn mailgun_toml(sim: &weft_mailgun::simulator::Simulator) -> String {
    let c = sim.config();
    format!(
        r#"
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
        base = sim.base_url(),
        domain = c.domain,
        key = c.api_key,
        signing = c.webhook_signing_key,
    )
}

/// Inbound-only connections of the other providers (never sent through).
fn other_inbound_toml() -> String {
    format!(
        r#"
[[connections]]
id = "{SENDGRID_CONN}"
provider = "sendgrid"
tenant = "{TENANT}"
channels = ["email"]
[connections.credentials]
api_key = "SG.threading-test-key"
inbound_secret = "{SENDGRID_INBOUND_SECRET}"

[[connections]]
id = "{TELEGRAM_CONN}"
provider = "telegram"
tenant = "{TENANT}"
channels = ["telegram"]
[connections.credentials]
bot_token = "123456789:AAthreading-test_bot-token"
secret_token = "{TELEGRAM_SECRET}"

[[connections]]
id = "{VONAGE_CONN}"
provider = "vonage"
tenant = "{TENANT}"
channels = ["sms"]
senders = ["+4915100000001"]
[connections.credentials]
api_key = "abc12345"
api_secret = "vonage-api-secret-1"
signature_secret = "vonage-signature-secret-0123456789"
"#
    )
}

async fn mailgun_sim() -> weft_mailgun::simulator::Simulator {
    weft_mailgun::simulator::Simulator::start(weft_mailgun::simulator::SimulatorConfig::default())
        .await
        .expect("start the Mailgun simulator")
}

async fn whatsapp_sim() -> weft_whatsapp::simulator::Simulator {
    weft_whatsapp::simulator::Simulator::start(weft_whatsapp::simulator::SimulatorConfig::default())
        .await
        .expect("start the WhatsApp Cloud simulator")
}

fn with_extra(extra: String) -> Setup {
    Setup {
        extra_toml: extra,
        ..Setup::twilio()
    }
}

fn webhook_url(app: &TestApp, provider: &str, conn: &str, kind: &str) -> String {
    app.url(&format!("/webhooks/{provider}/{conn}/{kind}"))
}

fn twilio_url(app: &TestApp, kind: &str) -> String {
    webhook_url(app, "twilio", TWILIO_CONN, kind)
}

fn s(v: &Value) -> String {
    v.as_str()
        .unwrap_or_else(|| panic!("expected a string, got {v}"))
        .to_string()
}

/// `GET path`, insisting on 200.
async fn get_json(app: &TestApp, path: &str) -> Value {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

async fn send_json(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> (u16, Value) {
    let resp = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&app.key)
        .json(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn post_json(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    send_json(app, reqwest::Method::POST, path, body).await
}

/// `POST /v1/messages`, insisting on 202.
async fn send(app: &TestApp, body: Value) -> Value {
    let resp = app.post_message(&body).await;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.expect("JSON");
    assert_eq!(status, 202, "send {body}: {v}");
    v
}

/// Waits until the provider took the message (which also records its business address) and
/// returns its first provider id.
async fn provider_id(app: &TestApp, message_id: &str) -> String {
    let m = app
        .wait_until(message_id, SOON, "taken by the provider", |m| {
            m["attempts"][0]["provider_ids"][0].is_string()
        })
        .await;
    s(&m["attempts"][0]["provider_ids"][0])
}

async fn create_contact(app: &TestApp, body: Value) -> Value {
    let (status, v) = post_json(app, "/v1/contacts", &body).await;
    assert_eq!(status, 201, "create contact {body}: {v}");
    v
}

async fn create_conversation(app: &TestApp, contact_id: &str, metadata: Value) -> String {
    let (status, v) = post_json(
        app,
        "/v1/conversations",
        &json!({"contact_id": contact_id, "metadata": metadata}),
    )
    .await;
    assert_eq!(status, 201, "open conversation: {v}");
    assert_eq!(v["state"], "open", "{v}");
    s(&v["id"])
}

async fn conversation(app: &TestApp, id: &str) -> Value {
    get_json(app, &format!("/v1/conversations/{id}")).await
}

/// The whole timeline of a conversation, following cursors with pages of `page`.
async fn timeline(app: &TestApp, id: &str, page: usize) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/conversations/{id}/timeline?limit={page}&cursor={c}"),
            None => format!("/v1/conversations/{id}/timeline?limit={page}"),
        };
        let v = get_json(app, &path).await;
        out.extend(v["data"].as_array().cloned().unwrap_or_default());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

/// Ids of every inbound message of the tenant.
async fn inbound_ids(app: &TestApp) -> HashSet<String> {
    app.list_all()
        .await
        .into_iter()
        .filter(|m| m["direction"] == "inbound")
        .map(|m| s(&m["id"]))
        .collect()
}

/// Runs `post` (which must deliver one inbound webhook) and returns the one inbound message
/// it stored, as `GET /v1/messages/{id}` shows it.
async fn one_new_inbound<F: std::future::Future<Output = u16>>(app: &TestApp, post: F) -> Value {
    let before = inbound_ids(app).await;
    let status = post.await;
    assert_eq!(status, 200, "the inbound webhook was not accepted");
    let after = inbound_ids(app).await;
    let new: Vec<&String> = after.difference(&before).collect();
    assert_eq!(
        new.len(),
        1,
        "expected exactly one new inbound message: {new:?}"
    );
    app.get_message(new[0]).await
}

async fn twilio_sms_in(app: &TestApp, from: &str, to: &str, body: &str) -> Value {
    let url = twilio_url(app, "inbound");
    one_new_inbound(app, async {
        app.sim()
            .send_inbound_sms(&url, from, to, body, &[])
            .await
            .expect("post inbound SMS")
            .status
    })
    .await
}

async fn twilio_whatsapp_in(
    app: &TestApp,
    from: &str,
    to: &str,
    body: &str,
    quoted_sid: Option<&str>,
) -> Value {
    let url = twilio_url(app, "inbound");
    one_new_inbound(app, async {
        let opts = WhatsappInbound {
            profile_name: Some("Jo"),
            quoted_sid,
            ..WhatsappInbound::default()
        };
        app.sim()
            .send_inbound_whatsapp(&url, from, to, body, opts)
            .await
            .expect("post inbound WhatsApp")
            .status
    })
    .await
}

/// Asserts where and why an inbound message landed.
fn assert_threaded(m: &Value, conversation_id: &str, rule: &str) {
    assert_eq!(
        m["conversation_id"], conversation_id,
        "landed on the wrong conversation: {m:#}"
    );
    assert_eq!(m["threading"]["rule"], rule, "wrong rule: {m:#}");
    assert!(
        m["threading"]["candidates"]
            .as_array()
            .is_some_and(|c| c.iter().any(|x| x == conversation_id)),
        "the chosen conversation is among the candidates: {m:#}"
    );
}

const RULES: [&str; 5] = ["explicit", "reply_ref", "lease", "contact", "new"];

async fn rule_counts(app: &TestApp) -> Vec<f64> {
    let text = app.metrics_text().await;
    RULES
        .iter()
        .map(|r| {
            metric_value(
                &text,
                &format!("weft_threading_decisions_total{{rule=\"{r}\"}}"),
            )
        })
        .collect()
}

async fn wait_for_state(app: &TestApp, id: &str, state: &str) -> Value {
    let deadline = Instant::now() + SOON;
    loop {
        let c = conversation(app, id).await;
        if c["state"] == state {
            return c;
        }
        assert!(
            Instant::now() < deadline,
            "{id} never became {state}; last seen {c:#}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

// ---------------------------------------------------------------------------------------------

async fn whole_story_is_one_conversation(b: Backend) {
    let mg = mailgun_sim().await;
    let app = spawn_app(
        b,
        with_extra(format!("{}{}", email_toml(), mailgun_toml(&mg))),
    )
    .await;
    mg.set_events_url(Some(webhook_url(&app, "mailgun", MAILGUN_CONN, "events")));
    let rules_before = rule_counts(&app).await;

    // 1. The app texts the customer.
    let sms = send(
        &app,
        json!({"to": CUSTOMER, "body": "Your order has shipped."}),
    )
    .await;
    let sms_id = s(&sms["id"]);
    let conv = s(&sms["conversation_id"]);
    provider_id(&app, &sms_id).await;

    // 2. The customer answers by SMS, to the number that texted them: lease.
    let reply = twilio_sms_in(&app, CUSTOMER, SENDER, "Where is it now?").await;
    assert_threaded(&reply, &conv, "lease");
    assert_eq!(reply["channel"], "sms");
    assert_eq!(
        reply["threading"]["matched_key"],
        format!("tel:{CUSTOMER}|tel:{SENDER}")
    );
    assert_eq!(reply["threading"]["ambiguous"], false);

    // 3. ... then on WhatsApp, to the same number: `whatsapp:+X` is the same `tel:` identity,
    // and the (customer, business) pair is the same, so the lease still holds.
    let wa = twilio_whatsapp_in(&app, CUSTOMER, SENDER, "Can I change the address?", None).await;
    assert_threaded(&wa, &conv, "lease");
    assert_eq!(wa["channel"], "whatsapp");
    assert_eq!(wa["from"], CUSTOMER);

    // 4. ... then calls the hotline, a number weft never sent from: no lease, but the caller's
    // identity is the contact's, whose open conversation this is. weft answers TwiML.
    let voice_url = twilio_url(&app, "voice");
    let mut twiml = None;
    let call = one_new_inbound(&app, async {
        let r = app
            .sim()
            .place_inbound_call(&voice_url, CUSTOMER, HOTLINE)
            .await
            .expect("ring weft");
        let status = r.status;
        twiml = Some(r);
        status
    })
    .await;
    let twiml = twiml.expect("a reply");
    assert!(
        twiml
            .content_type
            .as_deref()
            .is_some_and(|c| c.contains("xml")),
        "TwiML content type: {twiml:?}"
    );
    assert!(
        twiml.body.contains("<Response>") && twiml.body.contains("</Response>"),
        "weft answers the call with TwiML: {twiml:?}"
    );
    assert_threaded(&call, &conv, "contact");
    assert_eq!(call["channel"], "voice");
    assert_eq!(call["threading"]["matched_key"], format!("tel:{CUSTOMER}"));
    // Twilio then reports the end of that same call on the status route: still one call.
    let token = app.sim().auth_token().to_string();
    let ended = app
        .post_twilio_status(
            &twilio_url(&app, "status"),
            &[
                ("AccountSid", app.sim().account_sid()),
                ("CallDuration", "42"),
                ("CallSid", &twiml.sid),
                ("CallStatus", "completed"),
                ("Direction", "inbound"),
                ("From", CUSTOMER),
                ("To", HOTLINE),
            ],
            Some(&token),
            &[],
        )
        .await;
    assert_eq!(ended.status(), 200);
    let calls: Vec<Value> = app
        .list_all()
        .await
        .into_iter()
        .filter(|m| m["channel"] == "voice")
        .collect();
    assert_eq!(calls.len(), 1, "one call, one entry: {calls:#?}");
    let call_now = app.get_message(&s(&call["id"])).await;
    assert_eq!(call_now["metadata"]["kind"], "call", "{call_now:#}");
    assert_eq!(
        call_now["metadata"]["call_status"], "completed",
        "{call_now:#}"
    );
    assert_eq!(call_now["metadata"]["duration_seconds"], 42, "{call_now:#}");
    assert_eq!(call_now["conversation_id"], conv.as_str());

    // 5. The app adds the customer's e-mail address to the contact and mails them.
    let c = conversation(&app, &conv).await;
    assert_eq!(c["state"], "open");
    let contact_id = s(&c["contact"]["id"]);
    assert_eq!(c["contact_id"], contact_id.as_str());
    assert!(
        c["contact"]["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .any(|i| i["address"] == format!("tel:{CUSTOMER}")),
        "{c:#}"
    );
    for ch in ["sms", "voice", "whatsapp"] {
        assert!(
            c["channels"]
                .as_array()
                .expect("channels")
                .iter()
                .any(|x| x == ch),
            "channels of {c:#}"
        );
    }
    let (status, ident) = post_json(
        &app,
        &format!("/v1/contacts/{contact_id}/identities"),
        &json!({"address": format!("mailto:{CUSTOMER_EMAIL}")}),
    )
    .await;
    assert_eq!(status, 201, "{ident}");
    assert_eq!(
        ident["address"],
        format!("mailto:{}", CUSTOMER_EMAIL.to_lowercase())
    );
    let mail = send(
        &app,
        json!({"to": CUSTOMER_EMAIL.to_lowercase(), "subject": "Your address change", "body": "Which address should we use?"}),
    )
    .await;
    let mail_id = s(&mail["id"]);
    assert_eq!(
        mail["conversation_id"], conv,
        "a send to the contact's e-mail address joins its open conversation"
    );
    provider_id(&app, &mail_id).await;
    let sent = mg.recorder().find_by_message(&mail_id);
    let raw = &sent.first().expect("Mailgun got the mail").raw;
    let message_id = format!("{mail_id}@{EMAIL_DOMAIN}");
    assert_eq!(raw["h:Message-Id"], format!("<{message_id}>"), "{raw:#}");
    let reply_to = s(&raw["h:Reply-To"]);
    // `addr` or `Name <addr>`.
    let token_addr = match reply_to.split_once('<') {
        Some((_, rest)) => rest.trim_end_matches('>').to_string(),
        None => reply_to.clone(),
    };
    assert!(
        token_addr.starts_with("reply+") && token_addr.ends_with(&format!("@{INBOUND_DOMAIN}")),
        "Reply-To {reply_to:?}"
    );

    // 6. The customer's mail client dropped the reply token (replied to the plain support
    // address) but kept In-Reply-To: reply_ref against the stored Message-ID.
    let inbound_email_url = webhook_url(&app, "mailgun", MAILGUN_CONN, "inbound");
    let from = format!("Jo <{CUSTOMER_EMAIL}>");
    let mut first_mail_id = String::new();
    let email_reply = one_new_inbound(&app, async {
        let r = mg
            .send_inbound_email(
                &inbound_email_url,
                &from,
                &format!("support@{INBOUND_DOMAIN}"),
                "Re: Your address change",
                "The new one, please.",
                Some(&message_id),
                &[&message_id],
            )
            .await
            .expect("post inbound mail");
        first_mail_id = r.message_id.clone();
        r.status
    })
    .await;
    assert!(!first_mail_id.is_empty());
    assert_threaded(&email_reply, &conv, "reply_ref");
    assert_eq!(email_reply["channel"], "email");
    assert!(
        email_reply["threading"]["matched_key"]
            .as_str()
            .is_some_and(|k| k.contains(&mail_id)),
        "{email_reply:#}"
    );

    // 7. A reply to the token address: explicit.
    let explicit = one_new_inbound(&app, async {
        mg.send_inbound_email(
            &inbound_email_url,
            &from,
            &token_addr,
            "Re: Your address change",
            "And ring before delivery.",
            None,
            &[],
        )
        .await
        .expect("post inbound mail")
        .status
    })
    .await;
    assert_threaded(&explicit, &conv, "explicit");

    // 8. A token whose HMAC does not check is no token: the sender's contact places it.
    let (token, _) = token_addr
        .trim_start_matches("reply+")
        .split_once('@')
        .expect("token@domain");
    let (ulid_part, _) = token.split_once('-').expect("ulid-mac");
    let forged_addr = format!("reply+{ulid_part}-0000000000000000@{INBOUND_DOMAIN}");
    let forged = one_new_inbound(&app, async {
        mg.send_inbound_email(
            &inbound_email_url,
            &from,
            &forged_addr,
            "Re: Your address change",
            "Forged token.",
            None,
            &[],
        )
        .await
        .expect("post inbound mail")
        .status
    })
    .await;
    assert_threaded(&forged, &conv, "contact");

    // 9. A mail that only references the customer's own earlier mail (References, no
    // In-Reply-To): Message-IDs of inbound mail count too.
    let follow_up = one_new_inbound(&app, async {
        mg.send_inbound_email(
            &inbound_email_url,
            &from,
            &format!("support@{INBOUND_DOMAIN}"),
            "Re: Your address change",
            "Did you see my last mail?",
            None,
            &[&first_mail_id],
        )
        .await
        .expect("post inbound mail")
        .status
    })
    .await;
    assert_threaded(&follow_up, &conv, "reply_ref");
    assert!(
        follow_up["threading"]["matched_key"]
            .as_str()
            .is_some_and(|k| k.contains(&first_mail_id)),
        "{follow_up:#}"
    );

    // The timeline: every message and the call, in order, both directions, all channels.
    let ids: Vec<String> = vec![
        sms_id.clone(),
        s(&reply["id"]),
        s(&wa["id"]),
        s(&call["id"]),
        mail_id.clone(),
        s(&email_reply["id"]),
        s(&explicit["id"]),
        s(&forged["id"]),
        s(&follow_up["id"]),
    ];
    let kinds = [
        ("message", "outbound", "sms"),
        ("message", "inbound", "sms"),
        ("message", "inbound", "whatsapp"),
        ("call", "inbound", "voice"),
        ("message", "outbound", "email"),
        ("message", "inbound", "email"),
        ("message", "inbound", "email"),
        ("message", "inbound", "email"),
        ("message", "inbound", "email"),
    ];
    let tl = timeline(&app, &conv, 200).await;
    let got: Vec<(String, String, String, String)> = tl
        .iter()
        .map(|e| {
            (
                s(&e["type"]),
                s(&e["direction"]),
                s(&e["channel"]),
                s(&e["id"]),
            )
        })
        .collect();
    let want: Vec<(String, String, String, String)> = kinds
        .iter()
        .zip(&ids)
        .map(|((t, d, c), id)| (t.to_string(), d.to_string(), c.to_string(), id.clone()))
        .collect();
    assert_eq!(got, want, "timeline of {conv}: {tl:#?}");
    assert_eq!(tl[1]["threading"]["rule"], "lease");
    assert_eq!(tl[3]["threading"]["rule"], "contact");
    // Cursor pages give the same sequence.
    let paged: Vec<String> = timeline(&app, &conv, 3)
        .await
        .iter()
        .map(|e| s(&e["id"]))
        .collect();
    assert_eq!(paged, ids, "paged timeline");

    // Nothing else was made: one contact, one conversation.
    let convs = get_json(&app, &format!("/v1/conversations?contact_id={contact_id}")).await;
    assert_eq!(
        convs["data"].as_array().map(Vec::len),
        Some(1),
        "one conversation for the contact: {convs:#}"
    );
    let contacts = get_json(&app, "/v1/contacts").await;
    assert_eq!(
        contacts["data"].as_array().map(Vec::len),
        Some(1),
        "{contacts:#}"
    );

    // weft_threading_decisions_total{rule} counted each decision (the counter is per process,
    // so other tests running at the same time can only add to it).
    let rules_after = rule_counts(&app).await;
    let delta: Vec<f64> = rules_after
        .iter()
        .zip(&rules_before)
        .map(|(a, b)| a - b)
        .collect();
    let want_at_least = [1.0, 2.0, 2.0, 2.0, 0.0];
    for ((rule, d), w) in RULES.iter().zip(&delta).zip(want_at_least) {
        assert!(
            *d >= w,
            "weft_threading_decisions_total{{rule=\"{rule}\"}} grew by {d}, expected at least {w}"
        );
    }
}

async fn parallel_conversations_thread_by_lease_and_quote(b: Backend) {
    let wa = whatsapp_sim().await;
    let app = spawn_app(b, with_extra(whatsapp_toml(&wa))).await;
    wa.set_webhook_url(Some(webhook_url(
        &app,
        "whatsapp_cloud",
        WHATSAPP_CONN,
        "webhook",
    )));

    let contact = create_contact(
        &app,
        json!({"name": "Jo", "identities": [{"address": format!("tel:{CUSTOMER}")}]}),
    )
    .await;
    let contact_id = s(&contact["id"]);
    let order = create_conversation(&app, &contact_id, json!({"topic": "order"})).await;
    let billing = create_conversation(&app, &contact_id, json!({"topic": "billing"})).await;
    assert_ne!(order, billing);
    let listed = get_json(
        &app,
        &format!("/v1/conversations?contact_id={contact_id}&state=open"),
    )
    .await;
    assert_eq!(
        listed["data"].as_array().map(Vec::len),
        Some(2),
        "{listed:#}"
    );

    // Each topic texts from its own number of the pool.
    let m_order = send(
        &app,
        json!({"to": CUSTOMER, "body": "Order 1234 ships Monday.", "conversation_id": order, "from": SENDER}),
    )
    .await;
    assert_eq!(m_order["conversation_id"], order.as_str());
    let m_billing = send(
        &app,
        json!({"to": CUSTOMER, "body": "Invoice 99 is due.", "conversation_id": billing, "from": SECOND_NUMBER}),
    )
    .await;
    assert_eq!(m_billing["conversation_id"], billing.as_str());
    let sid_order = provider_id(&app, &s(&m_order["id"])).await;
    provider_id(&app, &s(&m_billing["id"])).await;
    let froms: Vec<Option<String>> = app
        .sim()
        .recorder()
        .all()
        .iter()
        .map(|r| r.from.clone())
        .collect();
    assert!(
        froms.contains(&Some(SENDER.to_string()))
            && froms.contains(&Some(SECOND_NUMBER.to_string())),
        "each send used its own number: {froms:?}"
    );

    // Replies land by lease on the conversation that used that number, whichever is newer.
    let to_order = twilio_sms_in(&app, CUSTOMER, SENDER, "Monday is fine.").await;
    assert_threaded(&to_order, &order, "lease");
    assert_eq!(to_order["threading"]["ambiguous"], false);
    let to_billing = twilio_sms_in(&app, CUSTOMER, SECOND_NUMBER, "Paid yesterday.").await;
    assert_threaded(&to_billing, &billing, "lease");
    let again = twilio_sms_in(&app, CUSTOMER, SENDER, "Actually, Tuesday?").await;
    assert_threaded(&again, &order, "lease");

    // A Twilio WhatsApp reply quoting the order SMS, sent to the billing number: the quote
    // (reply_ref) outranks the lease.
    let quoted = twilio_whatsapp_in(
        &app,
        CUSTOMER,
        SECOND_NUMBER,
        "About this one",
        Some(&sid_order),
    )
    .await;
    assert_threaded(&quoted, &order, "reply_ref");
    assert_eq!(quoted["threading"]["matched_key"], sid_order.as_str());

    // WhatsApp Cloud: both topics message the customer from the one WhatsApp number.
    let w_order = send(
        &app,
        json!({"to": format!("whatsapp:{CUSTOMER}"), "body": "Pick a delivery slot.", "conversation_id": order}),
    )
    .await;
    let wamid_order = provider_id(&app, &s(&w_order["id"])).await;
    let w_billing = send(
        &app,
        json!({"to": format!("whatsapp:{CUSTOMER}"), "body": "Your receipt.", "conversation_id": billing}),
    )
    .await;
    let wamid_billing = provider_id(&app, &s(&w_billing["id"])).await;
    assert!(wamid_order.starts_with("wamid."), "{wamid_order}");
    assert_ne!(wamid_order, wamid_billing);
    let wa_id = CUSTOMER.trim_start_matches('+');

    // Unquoted: the pair leases both conversations; the most recent wins, flagged ambiguous.
    let plain = one_new_inbound(&app, async {
        wa.send_inbound_text(wa_id, "Thanks!", None, false)
            .await
            .expect("post WhatsApp inbound")
            .status
    })
    .await;
    assert_threaded(&plain, &billing, "lease");
    assert_eq!(plain["threading"]["ambiguous"], true, "{plain:#}");
    assert_eq!(
        plain["threading"]["candidates"],
        json!([billing, order]),
        "{plain:#}"
    );

    // Quoting the order message (context.id): reply_ref to its conversation.
    let quote = one_new_inbound(&app, async {
        wa.send_inbound_text(wa_id, "Slot 2 please", Some(&wamid_order), false)
            .await
            .expect("post WhatsApp inbound")
            .status
    })
    .await;
    assert_threaded(&quote, &order, "reply_ref");
    assert_eq!(quote["threading"]["matched_key"], wamid_order.as_str());
    assert_eq!(quote["channel"], "whatsapp");

    // A forward that carries the order message's id is not a reply: back to the lease.
    let c = wa.config().clone();
    let forwarded_body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": c.waba_id, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": c.display_phone_number, "phone_number_id": c.phone_number_id},
            "contacts": [{"profile": {"name": "Jo"}, "wa_id": wa_id}],
            "messages": [{
                "from": wa_id, "id": "wamid.forwarded-threading-test", "timestamp": "1700000000",
                "type": "text", "text": {"body": "look at this"},
                "context": {"forwarded": true, "id": wamid_order},
            }],
        }}]}],
    });
    let fwd = one_new_inbound(&app, async {
        wa.post_webhook(forwarded_body)
            .await
            .expect("post WhatsApp inbound")
            .status
    })
    .await;
    assert_threaded(&fwd, &billing, "lease");

    // A call to the hotline has no lease and no quote: the contact rung places it on the
    // contact's open conversation — with two open, the most recently active, flagged
    // ambiguous — rather than opening a third.
    let voice_url = twilio_url(&app, "voice");
    let call = one_new_inbound(&app, async {
        app.sim()
            .place_inbound_call(&voice_url, CUSTOMER, HOTLINE)
            .await
            .expect("ring weft")
            .status
    })
    .await;
    assert_threaded(&call, &billing, "contact");
    assert_eq!(call["threading"]["ambiguous"], true, "{call:#}");
    assert_eq!(
        call["threading"]["candidates"],
        json!([billing, order]),
        "{call:#}"
    );

    // Still two open conversations for the one contact, nothing new.
    let listed = get_json(&app, &format!("/v1/conversations?contact_id={contact_id}")).await;
    let states: Vec<String> = listed["data"]
        .as_array()
        .expect("data")
        .iter()
        .map(|c| s(&c["state"]))
        .collect();
    assert_eq!(states, vec!["open", "open"], "{listed:#}");
    let all = get_json(&app, "/v1/conversations").await;
    assert_eq!(all["data"].as_array().map(Vec::len), Some(2), "{all:#}");
}

async fn inactive_reopens_closed_links_and_retired_number_starts_fresh(b: Backend) {
    let app = spawn_app(
        b,
        with_extra(
            "\n[conversations]\ninactive_after_seconds = 1\nsweep_interval_seconds = 1\n".into(),
        ),
    )
    .await;
    let sms = send(
        &app,
        json!({"to": CUSTOMER, "body": "Hello from the shop."}),
    )
    .await;
    let first = s(&sms["conversation_id"]);
    provider_id(&app, &s(&sms["id"])).await;

    // Idle → inactive; a reply reopens it (same conversation, by lease).
    let c = wait_for_state(&app, &first, "inactive").await;
    let contact_id = s(&c["contact_id"]);
    let inactive = get_json(&app, "/v1/conversations?state=inactive").await;
    assert!(
        inactive["data"]
            .as_array()
            .expect("data")
            .iter()
            .any(|c| c["id"] == first.as_str()),
        "{inactive:#}"
    );
    let reply = twilio_sms_in(&app, CUSTOMER, SENDER, "Hi again").await;
    assert_threaded(&reply, &first, "lease");
    let c = conversation(&app, &first).await;
    assert_eq!(
        c["state"], "open",
        "a reply reopens an inactive conversation: {c:#}"
    );

    // Closed by the app: the next reply starts a new conversation linked to it.
    let (status, closed) = post_json(
        &app,
        &format!("/v1/conversations/{first}/close"),
        &json!({}),
    )
    .await;
    assert_eq!(status, 200, "{closed}");
    assert_eq!(closed["state"], "closed");
    assert!(closed["closed_at"].is_string(), "{closed}");
    let after_close = twilio_sms_in(&app, CUSTOMER, SENDER, "One more question").await;
    let second = s(&after_close["conversation_id"]);
    assert_ne!(
        second, first,
        "a reply to a closed conversation starts a new one"
    );
    assert_eq!(after_close["threading"]["rule"], "new", "{after_close:#}");
    let c2 = conversation(&app, &second).await;
    assert_eq!(c2["previous_conversation_id"], first.as_str(), "{c2:#}");
    assert_eq!(c2["contact_id"], contact_id.as_str());
    assert_eq!(c2["state"], "open");
    let follow = twilio_sms_in(&app, CUSTOMER, SENDER, "Hello?").await;
    assert_threaded(&follow, &second, "contact");
    let closed_list = get_json(
        &app,
        &format!("/v1/conversations?contact_id={contact_id}&state=closed"),
    )
    .await;
    assert_eq!(
        closed_list["data"]
            .as_array()
            .map(|d| d.iter().map(|c| s(&c["id"])).collect::<Vec<_>>()),
        Some(vec![first.clone()])
    );

    // The app answers on the new conversation, so the (customer, number) pair leases it.
    let answer = send(
        &app,
        json!({"to": CUSTOMER, "body": "Sure, ask away.", "conversation_id": second}),
    )
    .await;
    assert_eq!(answer["conversation_id"], second.as_str());
    provider_id(&app, &s(&answer["id"])).await;
    let leased = twilio_sms_in(&app, CUSTOMER, SENDER, "Thanks").await;
    assert_threaded(&leased, &second, "lease");

    // The number is recycled: the app retires the identity. The next sender from it is a
    // stranger: a fresh contact and conversation, nothing of the old owner's — not even the
    // lease the old owner's conversation holds on this very pair.
    let contact = get_json(&app, &format!("/v1/contacts/{contact_id}")).await;
    let ident = contact["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .find(|i| i["address"] == format!("tel:{CUSTOMER}"))
        .cloned()
        .expect("the phone identity");
    let (status, retired) = send_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/v1/contacts/{contact_id}/identities/{}", s(&ident["id"])),
        &json!({"valid_to": "now"}),
    )
    .await;
    assert_eq!(status, 200, "{retired}");
    assert!(retired["valid_to"].is_string(), "{retired}");
    let stranger = twilio_sms_in(&app, CUSTOMER, SENDER, "Who is this?").await;
    let third = s(&stranger["conversation_id"]);
    assert_eq!(stranger["threading"]["rule"], "new", "{stranger:#}");
    assert_ne!(third, first);
    assert_ne!(third, second);
    let c3 = conversation(&app, &third).await;
    let new_contact = s(&c3["contact_id"]);
    assert_ne!(
        new_contact, contact_id,
        "the recycled number gets a contact of its own"
    );
    assert!(c3["previous_conversation_id"].is_null(), "{c3:#}");
    let nc = get_json(&app, &format!("/v1/contacts/{new_contact}")).await;
    assert_eq!(
        nc["identities"].as_array().map(|a| a
            .iter()
            .map(|i| (s(&i["address"]), i["valid_to"].is_null()))
            .collect::<Vec<_>>()),
        Some(vec![(format!("tel:{CUSTOMER}"), true)]),
        "{nc:#}"
    );
    let old = get_json(&app, &format!("/v1/contacts/{contact_id}")).await;
    assert!(old["identities"][0]["valid_to"].is_string(), "{old:#}");
    // The stranger's next message follows their own contact, not the old owner's lease.
    let stranger_again = twilio_sms_in(&app, CUSTOMER, SENDER, "Hello? Who is this?").await;
    assert_threaded(&stranger_again, &third, "contact");
    // The old owner's open conversation got nothing from the stranger.
    let tl = timeline(&app, &second, 200).await;
    assert!(
        tl.iter()
            .all(|e| e["id"] != stranger["id"] && e["id"] != stranger_again["id"]),
        "the old owner's conversation must not get the stranger's message"
    );
}

/// The params of a Twilio inbound SMS with a fixed sid.
fn inbound_sms_params(sid: &str, from: &str, to: &str, body: &str) -> Vec<(String, String)> {
    [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("ApiVersion", "2010-04-01"),
        ("Body", body),
        ("From", from),
        ("MessageSid", sid),
        ("NumMedia", "0"),
        ("NumSegments", "1"),
        ("SmsMessageSid", sid),
        ("SmsSid", sid),
        ("SmsStatus", "received"),
        ("To", to),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

fn borrowed(p: &[(String, String)]) -> Vec<(&str, &str)> {
    p.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

async fn concurrent_copies_of_one_webhook_store_one_message(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let url = twilio_url(&app, "inbound");
    let token = app.sim().auth_token().to_string();
    let params = inbound_sms_params(
        "SM0123456789abcdef0123456789abcdef",
        "+14155550177",
        SENDER,
        "Is anyone there?",
    );
    let p = borrowed(&params);
    let answers = futures::future::join_all(
        (0..50).map(|_| app.post_twilio_status(&url, &p, Some(&token), &[])),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(
        statuses.iter().all(|s| *s == 200),
        "every copy is acknowledged: {statuses:?}"
    );
    let msgs = app.list_all().await;
    assert_eq!(msgs.len(), 1, "one message: {msgs:#?}");
    assert_eq!(msgs[0]["direction"], "inbound");
    assert_eq!(msgs[0]["threading"]["rule"], "new", "{:#}", msgs[0]);
    let convs = get_json(&app, "/v1/conversations").await;
    assert_eq!(convs["data"].as_array().map(Vec::len), Some(1), "{convs:#}");
    assert_eq!(convs["data"][0]["id"], msgs[0]["conversation_id"]);
    let contacts = get_json(&app, "/v1/contacts").await;
    assert_eq!(
        contacts["data"].as_array().map(Vec::len),
        Some(1),
        "{contacts:#}"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM webhook_events").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 1);

    // A late re-delivery changes nothing either.
    let again = app.post_twilio_status(&url, &p, Some(&token), &[]).await;
    assert_eq!(again.status(), 200);
    assert_eq!(app.list_all().await.len(), 1);
}

async fn concurrent_first_messages_make_one_contact_and_conversation(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let url = twilio_url(&app, "inbound");
    let token = app.sim().auth_token().to_string();
    let params: Vec<Vec<(String, String)>> = (0..50)
        .map(|i| {
            inbound_sms_params(
                &format!("SM{i:032x}"),
                "+14155550188",
                SENDER,
                &format!("message {i}"),
            )
        })
        .collect();
    let borrowed_params: Vec<Vec<(&str, &str)>> = params.iter().map(|p| borrowed(p)).collect();
    let answers = futures::future::join_all(
        borrowed_params
            .iter()
            .map(|p| app.post_twilio_status(&url, p, Some(&token), &[])),
    )
    .await;
    let statuses: Vec<u16> = answers.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let msgs = app.list_all().await;
    assert_eq!(msgs.len(), 50);
    let convs: HashSet<String> = msgs.iter().map(|m| s(&m["conversation_id"])).collect();
    assert_eq!(
        convs.len(),
        1,
        "one conversation for one new customer: {convs:?}"
    );
    let rules: Vec<String> = msgs.iter().map(|m| s(&m["threading"]["rule"])).collect();
    assert_eq!(
        rules.iter().filter(|r| *r == "new").count(),
        1,
        "exactly one message created the conversation: {rules:?}"
    );
    assert!(
        rules.iter().all(|r| r == "new" || r == "contact"),
        "{rules:?}"
    );
    let contacts = get_json(&app, "/v1/contacts").await;
    assert_eq!(
        contacts["data"].as_array().map(Vec::len),
        Some(1),
        "{contacts:#}"
    );
    assert_eq!(
        contacts["data"][0]["identities"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM contacts").await, 1);
    assert_eq!(app.count("SELECT COUNT(*) FROM conversations").await, 1);
}

async fn merge_then_unmerge_restores_both_contacts(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let a = create_contact(
        &app,
        json!({"name": "Jo", "metadata": {"tier": "gold"}, "identities": [
            {"address": "tel:+14155550123"}, {"address": "mailto:Jo@Example.com"}]}),
    )
    .await;
    let a_id = s(&a["id"]);
    let (status, _) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/identities"),
        &json!({"address": "telegram:4242"}),
    )
    .await;
    assert_eq!(status, 201);
    let bc = create_contact(
        &app,
        json!({"name": "Jo (work)", "identities": [
            {"address": "+14155550124"}, {"address": "whatsapp:US.13491208655302741918"}, {"address": "mailto:jo@work.example"}]}),
    )
    .await;
    let b_id = s(&bc["id"]);
    // One of B's identities is retired; it must stay retired and with B throughout.
    let retired_id = bc["identities"]
        .as_array()
        .expect("identities")
        .iter()
        .find(|i| i["address"] == "mailto:jo@work.example")
        .map(|i| s(&i["id"]))
        .expect("work mail identity");
    let (status, _) = send_json(
        &app,
        reqwest::Method::PATCH,
        &format!("/v1/contacts/{b_id}/identities/{retired_id}"),
        &json!({"valid_to": "now"}),
    )
    .await;
    assert_eq!(status, 200);

    // The app texts B's number: B's conversation holds the lease on that pair.
    let to_b = send(
        &app,
        json!({"to": "+14155550124", "body": "Your work order is ready."}),
    )
    .await;
    let b_conv = s(&to_b["conversation_id"]);
    assert_eq!(
        conversation(&app, &b_conv).await["contact_id"],
        b_id.as_str()
    );
    provider_id(&app, &s(&to_b["id"])).await;

    let a_before = get_json(&app, &format!("/v1/contacts/{a_id}")).await;
    let b_before = get_json(&app, &format!("/v1/contacts/{b_id}")).await;

    let (status, merged) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/merge"),
        &json!({"contact_id": b_id}),
    )
    .await;
    assert_eq!(status, 200, "{merged}");
    let addrs = |c: &Value| -> Vec<String> {
        c["identities"]
            .as_array()
            .expect("identities")
            .iter()
            .map(|i| s(&i["address"]))
            .collect()
    };
    let merged_addrs: HashSet<String> = addrs(&merged).into_iter().collect();
    let expect: HashSet<String> = [
        "tel:+14155550123",
        "mailto:jo@example.com",
        "telegram:4242",
        "tel:+14155550124",
        "whatsapp:US.13491208655302741918",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(merged_addrs, expect, "{merged:#}");
    let b_merged = get_json(&app, &format!("/v1/contacts/{b_id}")).await;
    assert_eq!(b_merged["merged_into"], a_id.as_str(), "{b_merged:#}");
    assert_eq!(addrs(&b_merged), vec!["mailto:jo@work.example".to_string()]);

    // While merged, B's number belongs to A, and so do B's conversations: a reply to the
    // text still lands on B's conversation by lease, and A's own number, with no conversation
    // of A's open, finds it through the contact.
    let while_merged = twilio_sms_in(&app, "+14155550124", SENDER, "from the work phone").await;
    assert_threaded(&while_merged, &b_conv, "lease");
    let from_a = twilio_sms_in(&app, "+14155550123", HOTLINE, "from the home phone").await;
    assert_threaded(&from_a, &b_conv, "contact");

    // A second merge of the same pair, or a self-merge, is refused.
    let (status, _) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/merge"),
        &json!({"contact_id": b_id}),
    )
    .await;
    assert_eq!(status, 422);
    let (status, _) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/merge"),
        &json!({"contact_id": a_id}),
    )
    .await;
    assert_eq!(status, 422);

    let (status, unmerged) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/unmerge"),
        &json!({"contact_id": b_id}),
    )
    .await;
    assert_eq!(status, 200, "{unmerged}");
    let a_after = get_json(&app, &format!("/v1/contacts/{a_id}")).await;
    let b_after = get_json(&app, &format!("/v1/contacts/{b_id}")).await;
    assert_eq!(a_after, a_before, "A is restored exactly");
    assert_eq!(b_after, b_before, "B is restored exactly");
    assert_eq!(
        unmerged, a_before,
        "the unmerge answers the restored survivor"
    );

    // Nothing left to undo.
    let (status, _) = post_json(
        &app,
        &format!("/v1/contacts/{a_id}/unmerge"),
        &json!({"contact_id": b_id}),
    )
    .await;
    assert_eq!(status, 422);

    // After the unmerge B's number leads to B's conversation again, and A's number no longer
    // reaches it: A gets a conversation of its own.
    let after = twilio_sms_in(&app, "+14155550124", SENDER, "work phone again").await;
    assert_threaded(&after, &b_conv, "lease");
    let from_a = twilio_sms_in(&app, "+14155550123", HOTLINE, "home phone again").await;
    assert_eq!(from_a["threading"]["rule"], "new", "{from_a:#}");
    let conv = conversation(&app, &s(&from_a["conversation_id"])).await;
    assert_eq!(conv["contact_id"], a_id.as_str(), "{conv:#}");
}

fn multipart(fields: &[(&str, &str)], boundary: &str) -> Vec<u8> {
    let mut out = String::new();
    for (k, v) in fields {
        out.push_str(&format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    out.push_str(&format!("--{boundary}--\r\n"));
    out.into_bytes()
}

fn form(fields: &[(String, String)]) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        s.append_pair(k, v);
    }
    s.finish()
}

async fn post_raw_to(
    app: &TestApp,
    url: &str,
    content_type: &str,
    body: Vec<u8>,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = app
        .client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, content_type)
        .body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("POST webhook")
}

async fn forged_inbound_webhooks_are_rejected_and_store_nothing(b: Backend) {
    let mg = mailgun_sim().await;
    let wa = whatsapp_sim().await;
    let extra = format!(
        "{}{}{}{}",
        email_toml(),
        mailgun_toml(&mg),
        whatsapp_toml(&wa),
        other_inbound_toml()
    );
    let app = spawn_app(b, with_extra(extra)).await;
    let sig_metric = |p: &str| format!("weft_webhook_signature_failures_total{{provider=\"{p}\"}}");
    let providers = [
        "twilio",
        "mailgun",
        "whatsapp_cloud",
        "sendgrid",
        "telegram",
        "vonage",
    ];
    let text = app.metrics_text().await;
    let before: Vec<f64> = providers
        .iter()
        .map(|p| metric_value(&text, &sig_metric(p)))
        .collect();
    let mut rejected = [0.0f64; 6];
    let token = app.sim().auth_token().to_string();

    // Twilio: inbound SMS/WhatsApp, voice, and the status route (inbound call statuses).
    let sms = inbound_sms_params("SMforged0000000000000000000000000", CUSTOMER, SENDER, "hi");
    let call: Vec<(String, String)> = [
        ("AccountSid", "AC00000000000000000000000000000000"),
        ("CallSid", "CAforged000000000000000000000000"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
        ("From", CUSTOMER),
        ("To", HOTLINE),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (kind, params) in [("inbound", &sms), ("voice", &call), ("status", &call)] {
        let url = twilio_url(&app, kind);
        let p = borrowed(params);
        let r = app.post_twilio_status(&url, &p, None, &[]).await;
        assert_problem(r, 403, "invalid-signature").await;
        let r = app
            .post_twilio_status(&url, &p, Some("not-the-auth-token"), &[])
            .await;
        assert_problem(r, 403, "invalid-signature").await;
        // A genuine signature for another URL.
        let other = weft_twilio::verify::sign(
            weft_twilio::verify::Algorithm::HmacSha1,
            &token,
            &format!("{url}?x=1"),
            params,
        );
        let r = app
            .post_twilio_status(
                &url,
                &p,
                None,
                &[(weft_twilio::verify::SIGNATURE_HEADER, &other)],
            )
            .await;
        assert_problem(r, 403, "invalid-signature").await;
        rejected[0] += 3.0;
    }

    // Mailgun inbound route: no signature, a spoiled one, one made with another key.
    let mg_url = webhook_url(&app, "mailgun", MAILGUN_CONN, "inbound");
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let genuine = mg.signature(ts);
    let mail_fields = |sig: Option<(&str, &str, &str)>| -> Vec<(String, String)> {
        let mut f: Vec<(String, String)> = [
            ("recipient", format!("support@{INBOUND_DOMAIN}")),
            ("sender", "jo@customer.example".to_string()),
            ("from", "Jo <jo@customer.example>".to_string()),
            ("subject", "forged".to_string()),
            ("body-plain", "forged mail".to_string()),
            ("Message-Id", "<forged-1@mail.example>".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        if let Some((t, tok, sig)) = sig {
            f.push(("timestamp".into(), t.into()));
            f.push(("token".into(), tok.into()));
            f.push(("signature".into(), sig.into()));
        }
        f
    };
    let t = s(&genuine["timestamp"]);
    let tok = s(&genuine["token"]);
    let sig = s(&genuine["signature"]);
    let spoiled = format!(
        "{}{}",
        &sig[..sig.len() - 1],
        if sig.ends_with('0') { "1" } else { "0" }
    );
    let other_key = weft_provider::verify::hmac_sha256_hex(
        b"another-signing-key",
        format!("{t}{tok}").as_bytes(),
    );
    for fields in [
        mail_fields(None),
        mail_fields(Some((&t, &tok, &spoiled))),
        mail_fields(Some((&t, &tok, &other_key))),
    ] {
        let r = post_raw_to(
            &app,
            &mg_url,
            "application/x-www-form-urlencoded",
            form(&fields).into_bytes(),
            &[],
        )
        .await;
        assert_eq!(
            r.status(),
            403,
            "mailgun forged: {}",
            r.text().await.unwrap_or_default()
        );
        rejected[1] += 1.0;
    }

    // WhatsApp Cloud, on the webhook URL and its `inbound` alias: unsigned and forged.
    for kind in ["webhook", "inbound"] {
        wa.set_webhook_url(Some(webhook_url(
            &app,
            "whatsapp_cloud",
            WHATSAPP_CONN,
            kind,
        )));
        for behaviour in [CallbackBehaviour::Unsigned, CallbackBehaviour::Forged] {
            wa.callbacks().set_behaviour(behaviour);
            let r = wa
                .send_inbound_text("14155550123", "forged hello", None, false)
                .await
                .expect("post");
            assert_eq!(r.status, 403, "whatsapp {kind} {behaviour:?}: {}", r.body);
            rejected[2] += 1.0;
        }
    }

    // SendGrid Inbound Parse: the URL secret missing or wrong.
    let sg_fields = [
        ("headers", "Message-ID: <sg-forged@mail.example>\r\nFrom: Jo <jo@customer.example>\r\nTo: support@in.weft.test\r\nSubject: forged\r\n"),
        ("from", "Jo <jo@customer.example>"),
        ("to", "support@in.weft.test"),
        ("subject", "forged"),
        ("text", "forged parse"),
        ("envelope", r#"{"to":["support@in.weft.test"],"from":"jo@customer.example"}"#),
    ];
    let boundary = "xYzZY-threading-test";
    let sg_ct = format!("multipart/form-data; boundary={boundary}");
    let sg_base = webhook_url(&app, "sendgrid", SENDGRID_CONN, "inbound");
    for url in [
        sg_base.clone(),
        format!("{sg_base}?secret=not-the-inbound-secret"),
        format!("{sg_base}?secret="),
    ] {
        let r = post_raw_to(&app, &url, &sg_ct, multipart(&sg_fields, boundary), &[]).await;
        assert_eq!(r.status(), 403, "sendgrid {url}");
        rejected[3] += 1.0;
    }

    // Telegram updates (and the `inbound` alias): secret header missing or wrong.
    let update = json!({"update_id": 90001, "message": {"message_id": 7, "from": {"id": 4242, "is_bot": false, "first_name": "Jo"}, "chat": {"id": 4242, "type": "private"}, "date": 1700000000, "text": "hi from telegram"}});
    for kind in ["updates", "inbound"] {
        let url = webhook_url(&app, "telegram", TELEGRAM_CONN, kind);
        for headers in [
            vec![],
            vec![(weft_telegram::verify::SECRET_HEADER, "wrong-secret")],
        ] {
            let r = post_raw_to(
                &app,
                &url,
                "application/json",
                update.to_string().into_bytes(),
                &headers,
            )
            .await;
            assert_eq!(r.status(), 403, "telegram {kind}");
            rejected[4] += 1.0;
        }
    }

    // Vonage inbound SMS: unsigned and with a wrong `sig`.
    let vonage_url = webhook_url(&app, "vonage", VONAGE_CONN, "inbound");
    let now = ts.to_string();
    let mut vfields: Vec<(String, String)> = [
        ("msisdn", "14155550123"),
        ("to", "4915100000001"),
        ("messageId", "0A0000000123ABCD1"),
        ("text", "forged vonage"),
        ("type", "text"),
        ("keyword", "FORGED"),
        ("message-timestamp", "2026-01-01 00:00:00"),
        ("timestamp", now.as_str()),
        ("nonce", "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let r = post_raw_to(
        &app,
        &vonage_url,
        "application/x-www-form-urlencoded",
        form(&vfields).into_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 403, "vonage unsigned");
    vfields.push(("sig".into(), "0".repeat(64)));
    let r = post_raw_to(
        &app,
        &vonage_url,
        "application/x-www-form-urlencoded",
        form(&vfields).into_bytes(),
        &[],
    )
    .await;
    assert_eq!(r.status(), 403, "vonage forged");
    rejected[5] += 2.0;

    // Nothing of any of it was stored.
    for table in [
        "webhook_events",
        "messages",
        "contacts",
        "conversations",
        "identities",
    ] {
        assert_eq!(
            app.count(&format!("SELECT COUNT(*) FROM {table}")).await,
            0,
            "{table} after forged webhooks"
        );
    }
    assert!(app.list_all().await.is_empty());
    let text = app.metrics_text().await;
    for (i, p) in providers.iter().enumerate() {
        let d = metric_value(&text, &sig_metric(p)) - before[i];
        assert!(
            d >= rejected[i],
            "{p}: {d} signature failures counted, expected {}",
            rejected[i]
        );
    }

    // The same routes and bodies, genuinely signed, are accepted and stored: the rejections
    // above were the signatures' doing.
    let url = twilio_url(&app, "inbound");
    let r = app
        .post_twilio_status(&url, &borrowed(&sms), Some(&token), &[])
        .await;
    assert_eq!(r.status(), 200);
    let url = twilio_url(&app, "voice");
    let r = app
        .post_twilio_status(&url, &borrowed(&call), Some(&token), &[])
        .await;
    assert_eq!(r.status(), 200);
    let r = post_raw_to(
        &app,
        &mg_url,
        "application/x-www-form-urlencoded",
        form(&mail_fields(Some((&t, &tok, &sig)))).into_bytes(),
        &[],
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "mailgun genuine: {}",
        r.text().await.unwrap_or_default()
    );
    // Mailgun signs only timestamp + token: the captured signature on another body is a replay.
    let mut tampered = mail_fields(Some((&t, &tok, &sig)));
    tampered[4].1 = "tampered body".into();
    let r = post_raw_to(
        &app,
        &mg_url,
        "application/x-www-form-urlencoded",
        form(&tampered).into_bytes(),
        &[],
    )
    .await;
    assert_eq!(
        r.status(),
        403,
        "a replayed Mailgun signature on another body"
    );
    wa.callbacks().set_behaviour(CallbackBehaviour::Normal);
    let r = wa
        .send_inbound_text("14155550123", "genuine hello", None, false)
        .await
        .expect("post");
    assert_eq!(r.status, 200, "whatsapp genuine: {}", r.body);
    let r = post_raw_to(
        &app,
        &format!("{sg_base}?secret={SENDGRID_INBOUND_SECRET}"),
        &sg_ct,
        multipart(&sg_fields, boundary),
        &[],
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "sendgrid genuine: {}",
        r.text().await.unwrap_or_default()
    );
    let r = post_raw_to(
        &app,
        &webhook_url(&app, "telegram", TELEGRAM_CONN, "updates"),
        "application/json",
        update.to_string().into_bytes(),
        &[(weft_telegram::verify::SECRET_HEADER, TELEGRAM_SECRET)],
    )
    .await;
    assert_eq!(
        r.status(),
        200,
        "telegram genuine: {}",
        r.text().await.unwrap_or_default()
    );
    let stored = app.list_all().await;
    let mut channels: Vec<String> = stored.iter().map(|m| s(&m["channel"])).collect();
    channels.sort();
    assert_eq!(
        channels,
        vec!["email", "email", "sms", "telegram", "voice", "whatsapp"],
        "{stored:#?}"
    );
}

async fn timeline_keeps_an_inbound_before_its_auto_reply(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let sms = send(&app, json!({"to": CUSTOMER, "body": "Welcome!"})).await;
    let conv = s(&sms["conversation_id"]);
    provider_id(&app, &s(&sms["id"])).await;
    // HELP is answered in the same transaction as the inbound is stored: the answer must still
    // come after the question on the timeline, every time.
    let mut helps = Vec::new();
    for i in 0..8 {
        let m = twilio_sms_in(
            &app,
            CUSTOMER,
            SENDER,
            if i % 2 == 0 { "HELP" } else { "help" },
        )
        .await;
        assert_threaded(&m, &conv, "lease");
        helps.push(s(&m["id"]));
    }
    let tl = timeline(&app, &conv, 200).await;
    assert_eq!(tl.len(), 1 + 2 * helps.len(), "{tl:#?}");
    let ids: Vec<String> = tl.iter().map(|e| s(&e["id"])).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(ids, sorted, "the timeline is in id order");
    for (i, help) in helps.iter().enumerate() {
        let at = 1 + 2 * i;
        assert_eq!(&ids[at], help, "question {i} in place: {tl:#?}");
        assert_eq!(
            tl[at + 1]["direction"],
            "outbound",
            "its answer follows it: {tl:#?}"
        );
        assert_eq!(tl[at + 1]["channel"], "sms");
    }
}

async fn idle_conversation_closes_and_a_reply_starts_a_linked_one(b: Backend) {
    let app = spawn_app(
        b,
        with_extra(
            "\n[conversations]\ninactive_after_seconds = 1\nclose_after_seconds = 2\nsweep_interval_seconds = 1\n"
                .into(),
        ),
    )
    .await;
    let sms = send(
        &app,
        json!({"to": CUSTOMER, "body": "Hello from the shop."}),
    )
    .await;
    let first = s(&sms["conversation_id"]);
    provider_id(&app, &s(&sms["id"])).await;
    let closed = wait_for_state(&app, &first, "closed").await;
    assert!(closed["closed_at"].is_string(), "{closed:#}");
    // The lease died with the conversation: the reply starts a new one, linked to it.
    let reply = twilio_sms_in(&app, CUSTOMER, SENDER, "Still there?").await;
    let second = s(&reply["conversation_id"]);
    assert_ne!(second, first);
    assert_eq!(reply["threading"]["rule"], "new", "{reply:#}");
    let c = conversation(&app, &second).await;
    assert_eq!(c["previous_conversation_id"], first.as_str(), "{c:#}");
    assert_eq!(c["contact_id"], closed["contact_id"]);
}
