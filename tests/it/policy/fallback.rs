//! Channel fallback WhatsApp → SMS (DESIGN.md §4): on a permanent failure (reported later or
//! refused at submit) and on a timeout without `delivered`, with a late receipt from the first
//! attempt that is recorded but never sent again nor counted twice.

use super::*;
use serde_json::json;
use weft_simkit::CallbackBehaviour;

/// The WhatsApp Cloud connection.
const WA_CONN: &str = WHATSAPP_CONN;

// --- channel fallback --------------------------------------------------------------------------

type WaSim = weft_whatsapp::simulator::Simulator;

/// A WhatsApp Cloud connection that never reports a status by itself, and the harness's
/// Twilio for SMS.
async fn fallback_app(b: Backend) -> (TestApp, WaSim) {
    let wa = WaSim::start(weft_whatsapp::simulator::SimulatorConfig::default())
        .await
        .expect("start the WhatsApp Cloud simulator");
    wa.callbacks().set_behaviour(CallbackBehaviour::Silent);
    let app = spawn_app(b, with_extra(whatsapp_toml(&wa))).await;
    wa.set_webhook_url(Some(
        app.url(&format!("/webhooks/whatsapp_cloud/{WA_CONN}/webhook")),
    ));
    // The customer wrote first: free-form WhatsApp messages are allowed.
    let r = wa
        .send_inbound_text(CUSTOMER.trim_start_matches('+'), "hi", None, false)
        .await
        .expect("post the inbound WhatsApp");
    assert_eq!(r.status, 200, "inbound WhatsApp: {}", r.body);
    (app, wa)
}

/// A signed Cloud API status webhook for the message the simulator accepted for `message_id`.
async fn wa_status(wa: &WaSim, message_id: &str, status: &str, error_code: Option<i64>) {
    let got = wa.recorder().find_by_message(message_id);
    let sent = got.first().expect("the simulator has the WhatsApp message");
    let c = wa.config();
    let mut s = json!({
        "id": sent.provider_id,
        "status": status,
        "timestamp": (time::OffsetDateTime::now_utc().unix_timestamp()).to_string(),
        "recipient_id": sent.to,
        "biz_opaque_callback_data": sent.raw["biz_opaque_callback_data"],
    });
    if let Some(code) = error_code {
        s["errors"] = json!([{
            "code": code,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Unable to deliver message."},
        }]);
    }
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": c.waba_id, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": c.display_phone_number, "phone_number_id": c.phone_number_id},
            "statuses": [s],
        }}]}],
    });
    let r = wa.post_webhook(body).await.expect("post the status");
    assert_eq!(r.status, 200, "status webhook: {}", r.body);
}

/// The attempts of a fallen-back message: `wa_tries` on the WhatsApp Cloud connection, then
/// one SMS on Twilio, numbered in order; each provider took it once.
fn assert_whatsapp_then_sms(app: &TestApp, wa: &WaSim, m: &Value, wa_tries: usize) {
    let at = attempts(m);
    assert_eq!(at.len(), wa_tries + 1, "{m:#}");
    for (i, a) in at.iter().enumerate() {
        assert_eq!(
            a["seq"],
            i as i64 + 1,
            "attempts are numbered per message: {m:#}"
        );
    }
    for a in &at[..wa_tries] {
        assert_eq!(a["channel"], "whatsapp", "{m:#}");
        assert_eq!(a["connection"], WA_CONN, "{m:#}");
    }
    assert!(at[wa_tries - 1]["provider_ids"][0].is_string(), "{m:#}");
    let sms = &at[wa_tries];
    assert_eq!(sms["channel"], "sms", "{m:#}");
    assert_eq!(sms["connection"], TWILIO_CONN, "{m:#}");
    assert_eq!(sms["outcome"], "queued", "{m:#}");
    let id = m["id"].as_str().unwrap_or_default();
    assert_eq!(wa.recorder().find_by_message(id).len(), 1);
    let got = app.sim().recorder().find_by_message(id);
    assert_eq!(got.len(), 1, "one SMS");
    assert_eq!(got[0].to, CUSTOMER, "the SMS goes to the same number");
    assert!(m["error"].is_null(), "{m:#}");
}

/// Exactly one `delivered` changed the message.
fn assert_delivered_once(m: &Value) {
    let hist = m["status_history"].as_array().expect("history");
    assert_eq!(
        hist.iter()
            .filter(|h| h["status"] == "delivered" && h["applied"] == true)
            .count(),
        1,
        "delivered counts once: {m:#}"
    );
}

pub(super) async fn fallback_whatsapp_to_sms_on_permanent_failure(b: Backend) {
    // 1. Meta takes the message (after one 500), then reports it failed for good (131026:
    //    not a WhatsApp user).
    let (app, wa) = fallback_app(b).await;
    wa.faults().set_error_rate(1.0);
    let body = json!({
        "to": format!("whatsapp:{CUSTOMER}"),
        "body": "your code is 1234",
        "fallback": ["sms"],
    });
    let id = send(&app, body).await;
    app.wait_until(&id, SOON, "retried on WhatsApp", |m| {
        attempts(m).first().is_some_and(|a| a["outcome"] == "retry")
    })
    .await;
    wa.faults().set_error_rate(0.0);
    app.wait_until(&id, SOON, "taken by WhatsApp", |m| {
        attempts(m).last().is_some_and(|a| a["outcome"] == "queued")
    })
    .await;
    wa_status(&wa, &id, "failed", Some(131026)).await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_whatsapp_then_sms(&app, &wa, &m, 2);
    assert_eq!(attempts(&m)[0]["outcome"], "retry", "{m:#}");
    let hist = m["status_history"].as_array().expect("history");
    assert!(
        hist.iter().any(|h| h["raw_status"]
            .as_str()
            .is_some_and(|r| r.starts_with("fallback:"))
            && h["error_code"] == "131026"
            && h["applied"] == false),
        "the WhatsApp failure stays in the history: {m:#}"
    );
    assert_delivered_once(&m);
    drop(app);

    // 2. Refused at submit: WhatsApp through Twilio to its magic "not reachable" number
    //    (21612); the SMS goes through the sandbox, which delivers that number.
    let sim = twilio_sim().await;
    let extra = format!(
        "{}\n[[routes]]\nchannel = \"sms\"\nconnections = [\"sandbox\"]\n",
        twilio_conn(TWILIO_WA, &sim.base_url(), &sim, &["whatsapp"])
    );
    let setup = Setup {
        sandbox: true,
        extra_toml: extra,
        ..Setup::twilio()
    };
    let app = spawn_app_with(b, setup, Some(sim)).await;
    whatsapp_in(&app, app.sim(), TWILIO_WA, "+15005550002").await;
    let id = send(
        &app,
        json!({"to": "whatsapp:+15005550002", "body": "refused at submit", "fallback": ["sms"]}),
    )
    .await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let at = attempts(&m);
    assert_eq!(at.len(), 2, "{m:#}");
    assert_eq!(
        (
            &at[0]["channel"],
            &at[0]["connection"],
            &at[0]["outcome"],
            &at[0]["error_code"]
        ),
        (
            &json!("whatsapp"),
            &json!(TWILIO_WA),
            &json!("rejected"),
            &json!("21612")
        ),
        "{m:#}"
    );
    assert_eq!(
        (&at[1]["channel"], &at[1]["connection"], &at[1]["outcome"]),
        (&json!("sms"), &json!("sandbox"), &json!("queued")),
        "{m:#}"
    );
    assert!(app.sim().recorder().find_by_message(&id).is_empty());
    assert!(m["error"].is_null(), "{m:#}");
    assert_delivered_once(&m);
}

pub(super) async fn fallback_whatsapp_to_sms_on_timeout_and_late_receipt_is_only_recorded(
    b: Backend,
) {
    let (app, wa) = fallback_app(b).await;
    let body = json!({
        "to": format!("whatsapp:{CUSTOMER}"),
        "body": "your parcel arrives today",
        "fallback": ["sms"],
        "fallback_after": 1,
    });
    let id = send(&app, body).await;
    // WhatsApp takes it but never says `delivered`: after 1 s the SMS goes out.
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_whatsapp_then_sms(&app, &wa, &m, 1);
    let at = attempts(&m);
    let waited = unix_ms(&at[1]["started_at"]) - unix_ms(&at[0]["finished_at"]);
    assert!(
        waited >= 990,
        "the SMS waited fallback_after (1 s), not {waited} ms: {m:#}"
    );
    assert!(
        m["status_history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|h| h["raw_status"] == "fallback: no_delivery"),
        "{m:#}"
    );

    // The WhatsApp receipt arrives late: recorded, not applied again, nothing resent.
    wa_status(&wa, &id, "delivered", None).await;
    let m = app
        .wait_until(&id, SOON, "late receipt recorded", |m| {
            m["status_history"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|e| e["status"] == "delivered" && e["connection"] == WA_CONN)
            })
        })
        .await;
    let hist = m["status_history"].as_array().expect("history");
    let late = hist
        .iter()
        .find(|e| e["status"] == "delivered" && e["connection"] == WA_CONN)
        .expect("late entry");
    assert_eq!(late["applied"], false, "{m:#}");
    assert_delivered_once(&m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(attempts(&m).len(), 2, "no third attempt: {m:#}");
    assert_eq!(wa.recorder().find_by_message(&id).len(), 1);
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);
}

/// `fallback_success` sets each step's bar: WhatsApp must be *read* (delivered but unread
/// moves on to SMS), or only *sent* (then a `sent` receipt is enough and nothing moves on).
pub(super) async fn fallback_success_criteria_per_step(b: Backend) {
    let (app, wa) = fallback_app(b).await;
    let to = format!("whatsapp:{CUSTOMER}");

    // Bar `read`: WhatsApp says delivered within fallback_after, never read → SMS.
    let body = json!({
        "to": to, "body": "please confirm", "fallback": ["sms"], "fallback_after": 1,
        "fallback_success": {"whatsapp": "read"},
    });
    let id = send(&app, body).await;
    eventually("the WhatsApp message sent", SOON, || {
        !wa.recorder().find_by_message(&id).is_empty()
    })
    .await;
    wa_status(&wa, &id, "delivered", None).await;
    // Sent, not only begun: an attempt is recorded `in_flight` before the provider call.
    let m = app
        .wait_until(&id, SOON, "the SMS step sent", |m| {
            attempts(m)
                .iter()
                .any(|a| a["channel"] == "sms" && a["outcome"] != "in_flight")
        })
        .await;
    assert_eq!(m["status"], "delivered", "{m:#}");
    let at = attempts(&m);
    assert_eq!(at.len(), 2, "{m:#}");
    assert_eq!(at[1]["connection"], TWILIO_CONN, "{m:#}");
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);
    assert!(
        m["status_history"]
            .as_array()
            .is_some_and(|h| h.iter().any(|e| e["raw_status"] == "fallback: no_delivery")),
        "{m:#}"
    );

    // Bar `sent`: a `sent` receipt is success; no SMS, however long we wait.
    let body = json!({
        "to": to, "body": "fyi", "fallback": ["sms"], "fallback_after": 1,
        "fallback_success": {"whatsapp": "sent"},
    });
    let id = send(&app, body).await;
    eventually("the WhatsApp message sent", SOON, || {
        !wa.recorder().find_by_message(&id).is_empty()
    })
    .await;
    wa_status(&wa, &id, "sent", None).await;
    app.wait_for_status(&id, "sent", SOON).await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let m = app.get_message(&id).await;
    assert_eq!(
        attempts(&m).len(),
        1,
        "no fallback after a sent receipt: {m:#}"
    );
    assert!(app.sim().recorder().find_by_message(&id).is_empty());

    // Bad criteria are a 422 naming the field; nothing is stored.
    let bad = [
        json!({"to": to, "body": "x", "fallback": ["sms"], "fallback_success": {"whatsapp": "read"}}),
        json!({"to": to, "body": "x", "fallback": ["sms"], "fallback_after": 5, "fallback_success": {"email": "read"}}),
        json!({"to": to, "body": "x", "fallback": ["sms"], "fallback_after": 5, "fallback_success": {"whatsapp": "seen"}}),
        json!({"to": to, "body": "x", "fallback": ["sms"], "fallback_after": 5, "fallback_success": {"pigeon": "sent"}}),
    ];
    for body in bad {
        super::limits::send_invalid(&app, body, "fallback_success").await;
    }
}
