//! The consent ledger (DESIGN.md §4): STOP / START / HELP keywords per scope (channel, sender,
//! contact) and provider opt-outs (Twilio 21610); an opted-out send ends `rejected` /
//! `opted_out` and never reaches a provider.

use super::*;
use serde_json::json;

/// Another number of the business (sender scope).
const OTHER_SENDER: &str = "+15005550010";
/// Twilio's magic unsubscribed recipient (21610).
const MAGIC_OPTED_OUT: &str = "+15005550004";

/// The contact a message's conversation belongs to.
async fn contact_of(app: &TestApp, message_id: &str) -> String {
    let m = app.get_message(message_id).await;
    let conv = m["conversation_id"].as_str().expect("conversation_id");
    let c = get_json(app, &format!("/v1/conversations/{conv}")).await;
    c["contact_id"].as_str().expect("contact_id").to_string()
}

/// `GET /v1/contacts/{id}/consent`.
async fn ledger(app: &TestApp, contact: &str) -> Vec<Value> {
    get_json(app, &format!("/v1/contacts/{contact}/consent")).await["data"]
        .as_array()
        .cloned()
        .expect("consent data")
}

/// The one ledger entry with this subject and scope.
fn entry<'a>(entries: &'a [Value], subject: &str, scope: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["subject"] == subject && e["scope"] == scope)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {scope} entry for {subject}: {entries:#?}"
    );
    found[0]
}

// --- consent -------------------------------------------------------------------------------------

/// The harness's Twilio for SMS, a second connection on the same simulator for WhatsApp.
async fn consent_app(b: Backend, scope: Option<&str>) -> TestApp {
    let sim = twilio_sim().await;
    let extra = format!(
        "{}{}",
        twilio_conn(TWILIO_WA, &sim.base_url(), &sim, &["whatsapp"]),
        consent_toml(scope)
    );
    spawn_app_with(b, with_extra(extra), Some(sim)).await
}

pub(super) async fn stop_on_sms_blocks_sms_only_with_channel_scope(b: Backend) {
    let app = consent_app(b, None).await;
    let sim = app.sim();
    let wa_to = format!("whatsapp:{CUSTOMER}");
    whatsapp_in(&app, sim, TWILIO_WA, CUSTOMER).await;
    let first =
        assert_delivered_via(&app, json!({"to": CUSTOMER, "body": "hello"}), TWILIO_CONN).await;
    let contact = contact_of(&app, &first).await;

    // STOP (any case, trimmed): the ledger learns it and the confirmation goes out.
    sms_in(&app, sim, TWILIO_CONN, "  stop ").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;
    assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "promo"})).await;
    // Channel scope: WhatsApp to the same number still goes out.
    assert_delivered_via(&app, json!({"to": wa_to, "body": "on WhatsApp"}), TWILIO_WA).await;

    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "channel");
    assert_eq!(e["scope_value"], "sms", "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["source"], "keyword", "{e}");
    assert_eq!(e["keyword"], "STOP", "{e}");

    // HELP is answered and changes nothing.
    sms_in(&app, sim, TWILIO_CONN, "HELP").await;
    wait_received(sim, CUSTOMER, HELP_REPLY, 1).await;
    assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "still no"})).await;

    // START lifts it.
    sms_in(&app, sim, TWILIO_CONN, "Start").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "channel");
    assert_eq!(e["status"], "opted_in", "{e}");
    assert_eq!(e["keyword"], "START", "{e}");
    assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "body": "welcome back"}),
        TWILIO_CONN,
    )
    .await;

    // Twilio refuses a recipient who opted out with it (21610): the ledger learns that too,
    // and the next send to that number never reaches Twilio.
    let id = send(&app, json!({"to": MAGIC_OPTED_OUT, "body": "hi"})).await;
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "opted_out", "{m:#}");
    assert_eq!(m["error"]["code"], "21610", "{m:#}");
    assert_eq!(attempts(&m).len(), 1, "{m:#}");
    let other = contact_of(&app, &id).await;
    let entries = ledger(&app, &other).await;
    let e = entry(&entries, &format!("tel:{MAGIC_OPTED_OUT}"), "sender");
    assert_eq!(e["scope_value"], format!("tel:{SENDER}"), "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["source"], "provider", "{e}");
    assert_eq!(e["keyword"], "21610", "{e}");
    assert_blocked(
        &app,
        &[sim],
        json!({"to": MAGIC_OPTED_OUT, "body": "again"}),
    )
    .await;
}

pub(super) async fn stop_with_sender_scope_blocks_only_that_number(b: Backend) {
    let app = consent_app(b, Some("sender")).await;
    let sim = app.sim();
    sms_in(&app, sim, TWILIO_CONN, "UNSUBSCRIBE").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;

    let blocked = assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "promo"})).await;
    // Another number of the business may still write.
    let id = assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "from": OTHER_SENDER, "body": "from the other line"}),
        TWILIO_CONN,
    )
    .await;
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got[0].from.as_deref(), Some(OTHER_SENDER));

    let contact = contact_of(&app, &blocked).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "sender");
    assert_eq!(e["scope_value"], format!("tel:{SENDER}"), "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");

    sms_in(&app, sim, TWILIO_CONN, "UNSTOP").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    assert_delivered_via(&app, json!({"to": CUSTOMER, "body": "back"}), TWILIO_CONN).await;
}

pub(super) async fn stop_with_contact_scope_blocks_every_channel(b: Backend) {
    let app = consent_app(b, Some("contact")).await;
    let sim = app.sim();
    let wa_to = format!("whatsapp:{CUSTOMER}");
    whatsapp_in(&app, sim, TWILIO_WA, CUSTOMER).await;
    sms_in(&app, sim, TWILIO_CONN, "STOPP").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;

    let blocked = assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "sms"})).await;
    assert_blocked(&app, &[sim], json!({"to": wa_to, "body": "whatsapp"})).await;
    assert_blocked(
        &app,
        &[sim],
        json!({"to": CUSTOMER, "from": OTHER_SENDER, "body": "other line"}),
    )
    .await;

    let contact = contact_of(&app, &blocked).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &contact, "contact");
    assert_eq!(e["scope_value"], "*", "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["keyword"], "STOPP", "{e}");

    sms_in(&app, sim, TWILIO_CONN, "START").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "body": "sms again"}),
        TWILIO_CONN,
    )
    .await;
    assert_delivered_via(
        &app,
        json!({"to": wa_to, "body": "whatsapp again"}),
        TWILIO_WA,
    )
    .await;
}

/// A fresh ledger (no opt-out anywhere, so sends skip the lookup) learns a Twilio 21610 and
/// the very next send to that number is blocked, not only after the next ledger refresh.
pub(super) async fn provider_opt_out_blocks_the_very_next_send(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // Let the outbox poller see the empty ledger.
    assert_delivered_via(&app, json!({"to": TO, "body": "warm up"}), TWILIO_CONN).await;
    let id = send(&app, json!({"to": MAGIC_OPTED_OUT, "body": "first"})).await;
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["code"], "21610", "{m:#}");
    assert_blocked(
        &app,
        &[app.sim()],
        json!({"to": MAGIC_OPTED_OUT, "body": "second"}),
    )
    .await;
}
