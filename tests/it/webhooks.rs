//! Provider callbacks: signatures (forged / unsigned → 403, counted, nothing changed), the
//! monotonic state machine with late receipts, deduplication, unknown connections.

use crate::helpers::*;
use serde_json::Value;
use std::time::Duration;
use weft_simkit::CallbackBehaviour;

backend_tests!(
    forged_and_unsigned_callbacks_are_403,
    out_of_order_callbacks_keep_delivered,
    reversed_simulator_callbacks_end_delivered,
    duplicate_callbacks_are_deduplicated,
    unknown_webhook_connection_is_404,
    failure_callback_sets_error,
    callbacks_overtaking_the_send_answer_are_matched,
);

const SIG_FAILURES: &str = "weft_webhook_signature_failures_total{provider=\"twilio\"}";

/// An app whose simulator stays silent; one message sent and `queued`. Returns the app,
/// the message id, its Twilio sid and the callback URL weft gave Twilio.
async fn queued_message(b: Backend) -> (TestApp, String, String, String) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim()
        .callbacks()
        .set_behaviour(CallbackBehaviour::Silent);
    let v = app.send_sms(TO, "callbacks by hand").await;
    let id = v["id"].as_str().unwrap().to_string();
    let m = app.wait_for_status(&id, "queued", SOON).await;
    let sid = m["attempts"][0]["provider_ids"][0]
        .as_str()
        .expect("provider id")
        .to_string();
    let url = app.status_callback_url(&id);
    assert!(
        url.starts_with(&format!(
            "{}/webhooks/twilio/{TWILIO_CONN}/status?",
            app.base
        )),
        "callback URL {url}"
    );
    assert!(url.contains(&format!("m={id}")), "{url}");
    (app, id, sid, url)
}

async fn forged_and_unsigned_callbacks_are_403(b: Backend) {
    let (app, id, sid, url) = queued_message(b).await;
    let before = app.get_message(&id).await;
    let params = twilio_status_params(app.sim(), &sid, "delivered", TO);
    let token = app.sim().auth_token().to_string();

    let sign = |url: &str, params: &[(&str, &str)], key: &str| {
        let owned: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        weft_twilio::verify::sign(weft_twilio::verify::Algorithm::HmacSha1, key, url, &owned)
    };
    let other_url = url.replace(&format!("m={id}"), "m=msg_01HZZZZZZZZZZZZZZZZZZZZZZZ");
    let cases: [(&str, Option<String>); 4] = [
        (
            "signed with another token",
            Some(sign(&url, &params, "not-the-auth-token")),
        ),
        ("no signature at all", None),
        // A genuine signature, but for another URL (another message's callback).
        (
            "signed for another URL",
            Some(sign(&other_url, &params, &token)),
        ),
        // Signed correctly, then tampered with: the status changed after signing.
        (
            "tampered after signing",
            Some(sign(
                &url,
                &twilio_status_params(app.sim(), &sid, "sent", TO),
                &token,
            )),
        ),
    ];
    for (what, signature) in cases {
        // The counter is process-wide (other tests may add to it): each rejection adds one.
        let counted = app.metric(SIG_FAILURES).await;
        let headers: Vec<(&str, &str)> = signature
            .as_deref()
            .map(|sig| vec![(weft_twilio::verify::SIGNATURE_HEADER, sig)])
            .unwrap_or_default();
        let resp = app.post_twilio_status(&url, &params, None, &headers).await;
        let p = assert_problem(resp, 403, "invalid-signature").await;
        assert!(
            !p.to_string().contains(&token),
            "{what}: the answer leaks nothing: {p}"
        );
        let after = app.metric(SIG_FAILURES).await;
        assert!(
            after >= counted + 1.0,
            "{what}: counted ({counted} → {after})"
        );
    }

    // Nothing changed.
    let after = app.get_message(&id).await;
    assert_eq!(after["status"], "queued");
    assert_eq!(after["status_history"], before["status_history"]);
    assert_eq!(after["attempts"], before["attempts"]);

    // The genuine callback still works afterwards.
    let resp = app
        .post_twilio_status(&url, &params, Some(&token), &[])
        .await;
    assert_eq!(resp.status(), 200);
    app.wait_for_status(&id, "delivered", SOON).await;
}

async fn out_of_order_callbacks_keep_delivered(b: Backend) {
    let (app, id, sid, url) = queued_message(b).await;
    let token = app.sim().auth_token().to_string();
    let delivered = twilio_status_params(app.sim(), &sid, "delivered", TO);
    let resp = app
        .post_twilio_status(&url, &delivered, Some(&token), &[])
        .await;
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let updated = m["updated_at"].clone();

    // The late `sent`, then a late `queued`: recorded, not applied.
    for late in ["sent", "queued"] {
        let params = twilio_status_params(app.sim(), &sid, late, TO);
        let resp = app
            .post_twilio_status(&url, &params, Some(&token), &[])
            .await;
        assert_eq!(resp.status(), 200);
    }
    let m = app
        .wait_until(&id, SOON, "holding both late receipts", |m| {
            history(m).len() >= 5
        })
        .await;
    assert_eq!(m["status"], "delivered", "status never moves back: {m}");
    assert_eq!(
        m["updated_at"], updated,
        "a late receipt changes nothing: {m}"
    );
    let h = history(&m);
    assert_eq!(
        h,
        [
            ("accepted".to_string(), true),
            ("queued".to_string(), true),
            ("delivered".to_string(), true),
            ("sent".to_string(), false),
            ("queued".to_string(), false),
        ],
        "{m}"
    );
    let late = &m["status_history"][3];
    assert_eq!(late["raw_status"], "sent");
    assert_eq!(late["provider_message_id"], sid.as_str());

    // A failure after delivery does not undo it either.
    let mut failed = twilio_status_params(app.sim(), &sid, "undelivered", TO);
    failed.push(("ErrorCode", "30003"));
    let resp = app
        .post_twilio_status(&url, &failed, Some(&token), &[])
        .await;
    assert_eq!(resp.status(), 200);
    let m = app
        .wait_until(&id, SOON, "holding the late failure", |m| {
            history(m).len() >= 6
        })
        .await;
    assert_eq!(m["status"], "delivered", "{m}");
    assert!(m["error"].is_null(), "{m}");
    assert_eq!(history(&m)[5], ("undeliverable".to_string(), false), "{m}");
}

async fn reversed_simulator_callbacks_end_delivered(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim()
        .callbacks()
        .set_behaviour(CallbackBehaviour::Reversed);
    let v = app.send_sms(TO, "backwards").await;
    let id = v["id"].as_str().unwrap();
    let m = app
        .wait_until(id, SOON, "delivered with the late sent", |m| {
            history(m).len() >= 4
        })
        .await;
    assert_eq!(m["status"], "delivered", "{m}");
    let h = history(&m);
    let delivered_at = h.iter().position(|(s, _)| s == "delivered").unwrap();
    let sent_at = h.iter().position(|(s, _)| s == "sent").unwrap();
    assert!(delivered_at < sent_at, "delivered came first: {h:?}");
    assert!(h[delivered_at].1 && !h[sent_at].1, "{h:?}");
}

async fn duplicate_callbacks_are_deduplicated(b: Backend) {
    // The simulator delivers every callback twice (same idempotency token).
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim().callbacks().set_delay(ORDERED);
    app.sim()
        .callbacks()
        .set_behaviour(CallbackBehaviour::Duplicate);
    let v = app.send_sms(TO, "twice").await;
    let id = v["id"].as_str().unwrap().to_string();
    app.wait_for_status(&id, "delivered", SOON).await;
    // Let the second copy of `delivered` land.
    let deadline = std::time::Instant::now() + SOON;
    while app.sim().callbacks().delivered() < 4 && std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        app.sim().callbacks().delivered(),
        4,
        "all four answered 2xx"
    );
    let m = app.get_message(&id).await;
    let statuses: Vec<String> = history(&m).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["accepted", "queued", "sent", "delivered"], "{m}");

    // By hand, without an idempotency token: deduplicated on sid + status.
    let (app, id, sid, url) = queued_message(b).await;
    let token = app.sim().auth_token().to_string();
    let params = twilio_status_params(app.sim(), &sid, "sent", TO);
    for _ in 0..3 {
        let resp = app
            .post_twilio_status(&url, &params, Some(&token), &[])
            .await;
        assert_eq!(resp.status(), 200, "a duplicate is still acknowledged");
    }
    let m = app.wait_for_status(&id, "sent", SOON).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let m2 = app.get_message(&id).await;
    assert_eq!(m2["status_history"], m["status_history"]);
    let statuses: Vec<String> = history(&m2).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["accepted", "queued", "sent"], "{m2}");
    // With the same idempotency token but another status: still the same delivery.
    let delivered = twilio_status_params(app.sim(), &sid, "delivered", TO);
    for _ in 0..2 {
        let resp = app
            .post_twilio_status(
                &url,
                &delivered,
                Some(&token),
                &[("I-Twilio-Idempotency-Token", "tok-1")],
            )
            .await;
        assert_eq!(resp.status(), 200);
    }
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let statuses: Vec<String> = history(&m).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["accepted", "queued", "sent", "delivered"], "{m}");
}

async fn unknown_webhook_connection_is_404(b: Backend) {
    let (app, id, sid, url) = queued_message(b).await;
    let token = app.sim().auth_token().to_string();
    let params = twilio_status_params(app.sim(), &sid, "delivered", TO);
    for path in [
        "/webhooks/twilio/no-such-connection/status",
        // The connection exists, but is not a Vonage one.
        &format!("/webhooks/vonage/{TWILIO_CONN}/status"),
        // A kind the provider does not have.
        &format!("/webhooks/twilio/{TWILIO_CONN}/bogus"),
    ] {
        let u = url.replacen(&format!("/webhooks/twilio/{TWILIO_CONN}/status"), path, 1);
        let resp = app.post_twilio_status(&u, &params, Some(&token), &[]).await;
        assert_problem(resp, 404, "not-found").await;
    }
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "queued", "{m}");
}

async fn failure_callback_sets_error(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim().callbacks().set_delay(ORDERED);
    app.sim()
        .set_message_outcome(weft_twilio::simulator::MessageOutcome::Undelivered);
    let v = app.send_sms(TO, "nobody home").await;
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "undeliverable", SOON).await;
    let err: &Value = &m["error"];
    assert_eq!(err["code"], "30003", "{m}");
    assert!(err["reason"].as_str().is_some_and(|r| !r.is_empty()), "{m}");
    let statuses: Vec<String> = history(&m).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        statuses,
        ["accepted", "queued", "sent", "undeliverable"],
        "{m}"
    );
    assert_eq!(m["status_history"][3]["error_code"], "30003");
}

async fn callbacks_overtaking_the_send_answer_are_matched(b: Backend) {
    // Twilio's answer is held back 300 ms; its `sent` and `delivered` callbacks arrive first,
    // before weft knows the provider id. They must be parked (or reconciled through the ids
    // in the callback URL) and applied, and the message must not be sent again.
    let sim = weft_twilio::simulator::Simulator::start(Default::default())
        .await
        .unwrap();
    let proxy = flaky_proxy(sim.base_url(), 0, Duration::from_millis(300)).await;
    let setup = Setup {
        twilio_base_override: Some(proxy.base_url.clone()),
        ..Setup::twilio()
    };
    let app = spawn_app_with(b, setup, Some(sim)).await;
    let v = app.send_sms(TO, "overtaken").await;
    let id = v["id"].as_str().unwrap();
    app.wait_for_status(id, "delivered", SOON).await;
    // Let the held-back answer be recorded too.
    let m = app
        .wait_until(id, SOON, "with its answer recorded", |m| {
            m["attempts"][0]["outcome"] == "queued" && history(m).len() >= 4
        })
        .await;
    assert_eq!(m["status"], "delivered", "{m}");
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "sent once: {m}");
    let sid = app.sim().recorder().find_by_message(id)[0]
        .provider_id
        .clone();
    assert_eq!(attempts[0]["provider_ids"], serde_json::json!([sid]), "{m}");
    let h = history(&m);
    assert!(h.contains(&("sent".into(), true)), "{m}");
    assert!(h.contains(&("delivered".into(), true)), "{m}");
    assert!(
        h.contains(&("queued".into(), false)),
        "the late answer is history, not a step back: {m}"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sim().recorder().find_by_message(id).len(), 1);
    assert_eq!(app.get_message(id).await["status"], "delivered");
}
