//! Provider errors: retryable ones (503, 5xx outage, 429) back off and retry until delivered;
//! permanent ones at submit end the message `rejected` with the provider's code. Also the
//! sandbox's magic numbers.

use crate::helpers::*;
use std::time::Duration;
use weft_twilio::simulator::{Simulator, SimulatorConfig};

backend_tests!(
    retry_on_503_then_delivered,
    retry_through_an_outage_then_delivered,
    permanent_400_at_submit_is_rejected,
    sandbox_invalid_number_is_rejected,
    sandbox_flaky_number_is_retried_then_delivered,
);

async fn retry_on_503_then_delivered(b: Backend) {
    let sim = Simulator::start(SimulatorConfig::default()).await.unwrap();
    sim.callbacks().set_delay(ORDERED);
    let proxy = flaky_proxy(sim.base_url(), 2, Duration::ZERO).await;
    let setup = Setup {
        twilio_base_override: Some(proxy.base_url.clone()),
        ..Setup::twilio()
    };
    let app = spawn_app_with(b, setup, Some(sim)).await;
    let v = app.send_sms(TO, "third time lucky").await;
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "delivered", SOON).await;
    assert_eq!(
        proxy.served_503.load(std::sync::atomic::Ordering::SeqCst),
        2
    );

    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 3, "two 503s and a success: {m}");
    for (i, a) in attempts.iter().enumerate() {
        assert_eq!(a["seq"], i as i64 + 1, "{a}");
        assert_eq!(a["connection"], TWILIO_CONN);
        assert!(a["finished_at"].is_string(), "{a}");
    }
    for a in &attempts[..2] {
        assert_eq!(a["outcome"], "retry", "{a}");
        assert_eq!(a["provider_ids"], serde_json::json!([]), "{a}");
        assert!(
            a["error_detail"].as_str().is_some_and(|d| !d.is_empty()),
            "a failed attempt says why: {a}"
        );
    }
    assert_eq!(attempts[2]["outcome"], "queued");
    assert_eq!(attempts[2]["provider_ids"].as_array().unwrap().len(), 1);
    // Only the successful attempt reached the provider; the message was not doubled.
    assert_eq!(app.sim().recorder().find_by_message(id).len(), 1);
    assert!(app.sim().recorder().duplicates().is_empty());
    assert!(m["error"].is_null(), "{m}");
    assert_eq!(
        history_statuses(&m),
        ["accepted", "queued", "sent", "delivered"],
        "{m}"
    );
}

async fn retry_through_an_outage_then_delivered(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim().faults().set_outage(true);
    let v = app.send_sms(TO, "after the outage").await;
    let id = v["id"].as_str().unwrap().to_string();
    // At least two failed attempts while the provider is down …
    app.wait_until(&id, SOON, "retried twice", |m| {
        m["attempts"]
            .as_array()
            .is_some_and(|a| a.iter().filter(|x| x["outcome"] == "retry").count() >= 2)
    })
    .await;
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "accepted", "still ours while retrying: {m}");
    // … then it recovers and the message goes through.
    app.sim().faults().set_outage(false);
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let attempts = m["attempts"].as_array().unwrap();
    assert!(attempts.len() >= 3, "{m}");
    assert_eq!(attempts.last().unwrap()["outcome"], "queued");
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);

    // Throttled (429 + Retry-After: 1) is retried as well, no sooner than asked.
    app.sim().faults().set_throttle_rate(1.0, 1);
    let started = std::time::Instant::now();
    let v = app.send_sms(TO, "slow down").await;
    let id = v["id"].as_str().unwrap().to_string();
    app.wait_until(&id, SOON, "throttled once", |m| {
        m["attempts"]
            .as_array()
            .is_some_and(|a| !a.is_empty() && a[0]["outcome"] == "retry")
    })
    .await;
    app.sim().faults().set_throttle_rate(0.0, 0);
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "Retry-After is honoured: {:?}",
        started.elapsed()
    );
    assert!(m["attempts"].as_array().unwrap().len() >= 2, "{m}");
}

async fn permanent_400_at_submit_is_rejected(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // Twilio's magic "invalid To" number: 400 with code 21211.
    let v = app.send_sms("+15005550001", "never").await;
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "rejected", SOON).await;
    let err = &m["error"];
    assert_eq!(err["code"], "21211", "the provider's code: {m}");
    assert_eq!(err["reason"], "invalid_address", "{m}");
    assert!(err["detail"].as_str().is_some_and(|d| !d.is_empty()), "{m}");
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "a permanent error is not retried: {m}");
    assert_eq!(attempts[0]["outcome"], "rejected");
    assert_eq!(attempts[0]["error_code"], "21211");
    let statuses: Vec<String> = history(&m).into_iter().map(|(s, _)| s).collect();
    assert_eq!(statuses, ["accepted", "rejected"], "{m}");
    assert_eq!(m["status_history"][1]["error_code"], "21211");
    assert_eq!(app.sim().recorder().count(), 0, "Twilio refused it");

    // Other permanent refusals carry their codes too: opted out (21610) is `opted_out`.
    let v = app.send_sms("+15005550004", "unsubscribed").await;
    let m = app
        .wait_for_status(v["id"].as_str().unwrap(), "rejected", SOON)
        .await;
    assert_eq!(m["error"]["code"], "21610", "{m}");
    assert_eq!(m["error"]["reason"], "opted_out", "{m}");
    // Stays rejected: nothing retries it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let m2 = app.get_message(v["id"].as_str().unwrap()).await;
    assert_eq!(m2["attempts"].as_array().unwrap().len(), 1);
}

async fn sandbox_invalid_number_is_rejected(b: Backend) {
    let app = spawn_app(b, Setup::sandbox()).await;
    let v = app.send_sms("+15005550001", "magic invalid").await;
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "invalid_address", "{m}");
    assert_eq!(m["error"]["code"], "21211", "{m}");
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{m}");
    assert_eq!(attempts[0]["provider"], "sandbox");
    assert_eq!(attempts[0]["outcome"], "rejected");
}

async fn sandbox_flaky_number_is_retried_then_delivered(b: Backend) {
    let app = spawn_app(b, Setup::sandbox()).await;
    let v = app.send_sms("+15005550009", "magic flaky").await;
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "delivered", SOON).await;
    let attempts = m["attempts"].as_array().unwrap();
    let outcomes: Vec<&str> = attempts
        .iter()
        .map(|a| a["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, ["retry", "retry", "queued"], "{m}");
    assert!(history(&m).contains(&("delivered".into(), true)), "{m}");
    assert_eq!(history(&m).len(), 4, "{m}");
}
