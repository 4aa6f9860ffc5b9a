//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use crate::helpers::*;
use serde_json::Value;

backend_tests!(
    health_and_readiness,
    openapi_lists_the_api,
    metrics_count_messages,
    retention_prunes_old_bookkeeping_only
);

async fn health_and_readiness(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    for path in ["/healthz", "/readyz"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        let v: Value = resp.json().await.unwrap();
        assert!(v["status"].is_string(), "{path}: {v}");
    }
    // Unknown paths and methods are problems too.
    let resp = app.client.get(app.url("/nope")).send().await.unwrap();
    assert_problem(resp, 404, "not-found").await;
    let resp = app
        .client
        .delete(app.url("/v1/messages"))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 405, "method-not-allowed").await;
}

async fn openapi_lists_the_api(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let doc: Value = resp.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "openapi version"
    );
    let paths = doc["paths"].as_object().expect("paths");
    for p in [
        "/v1/messages",
        "/v1/messages/{id}",
        "/healthz",
        "/readyz",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(paths["/v1/messages"]["post"].is_object());
    assert!(paths["/v1/messages"]["get"].is_object());
    assert!(paths["/v1/messages"]["post"]["responses"]["202"].is_object());
}

async fn metrics_count_messages(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let series = "weft_messages_accepted_total{channel=\"sms\"}";
    let before = app.metric(series).await;
    let v = app.send_sms(TO, "counted").await;
    app.wait_for_status(v["id"].as_str().unwrap(), "delivered", SOON)
        .await;
    let text = app.metrics_text().await;
    assert!(metric_value(&text, series) >= before + 1.0, "{series}");
    for name in [
        "weft_http_requests_total",
        "weft_http_request_duration_seconds",
        "weft_dispatch_attempts_total",
        "weft_dispatch_duration_seconds",
        "weft_message_status_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    // Closed label sets: no phone number or id ever appears.
    assert!(
        !text.contains("+1415"),
        "a phone number leaked into a label"
    );
    assert!(!text.contains("msg_"), "an id leaked into a label");
}

/// `[retention]`: applied webhook events and finished deliveries older than the limit are
/// deleted by the sweep; recent ones, parked (unapplied) events and messages are kept.
async fn retention_prunes_old_bookkeeping_only(b: Backend) {
    let setup = Setup {
        extra_toml: "[retention]\nwebhook_events_days = 1\napp_webhook_deliveries_days = 1\n\n[conversations]\nsweep_interval_seconds = 1\n".into(),
        ..Setup::twilio()
    };
    let app = spawn_app(b, setup).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        let m = app.send_sms(TO, &format!("retention {i}")).await;
        ids.push(m["id"].as_str().unwrap().to_string());
    }
    for id in &ids {
        app.wait_for_status(id, "delivered", SOON).await;
    }
    // Receipts that found their message keep their keys in its history, not in events (a
    // receipt that raced its send's answer has one).
    let before = app.count("SELECT COUNT(*) FROM webhook_events").await;
    // Events stored for the rest (failures, parked receipts, inbound messages): four applied
    // now and four applied two days ago, then one parked two days ago. An event's id is
    // made when it arrives (pruning goes by id): an aged event gets the id it would have had
    // then (the floor id of that millisecond, made unique by a suffix).
    let old = weft::domain::now_ms() - 2 * 86_400_000;
    let old_id = weft::domain::ids::floor_id(weft::domain::ids::IdKind::Event, old);
    for i in 0..4 {
        let recent = weft::domain::ids::new_id(weft::domain::ids::IdKind::Event);
        for (id, at) in [
            (recent, weft::domain::now_ms()),
            (format!("{old_id}{i}"), old),
        ] {
            app.exec(&format!(
                "INSERT INTO webhook_events (id, connection_id, kind, dedupe_key, event, provider_message_id, processed, received_at)
                 VALUES ('{id}', 'twilio-test', 'status', '{id}', '', 'SMx{i}', 1, {at})"
            ))
            .await;
        }
    }
    let (events, aged) = (before + 9, 4);
    app.exec(&format!(
        "INSERT INTO webhook_events (id, connection_id, kind, dedupe_key, event, provider_message_id, processed, received_at)
         VALUES ('{old_id}parked', 'twilio-test', 'status', 'parked-1', '{{}}', 'SMnothing', 0, {old})"
    ))
    .await;
    for (id, status) in [
        ("dlv_old_done", "delivered"),
        ("dlv_old_pending", "pending"),
    ] {
        app.exec(&format!(
            "INSERT INTO app_webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, attempts, next_attempt_at, lease_until, status, created_at, url, secret)
             VALUES ('{id}', NULL, 't', 'evt_x', 'message.status_updated', '{{}}', 1, {far}, 0, '{status}', {old}, 'http://127.0.0.1:9/', 'whsec_AAAA')",
            far = old + 10 * 86_400_000
        ))
        .await;
    }

    let deadline = std::time::Instant::now() + SOON;
    while app
        .count(&format!(
            "SELECT COUNT(*) FROM webhook_events WHERE received_at = {old} AND processed = 1"
        ))
        .await
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "old applied events never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    while app
        .count("SELECT COUNT(*) FROM app_webhook_deliveries WHERE id = 'dlv_old_done'")
        .await
        > 0
    {
        assert!(
            std::time::Instant::now() < deadline,
            "old finished delivery never pruned"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let left = app.count("SELECT COUNT(*) FROM webhook_events").await;
    assert_eq!(left, events - aged, "recent and parked events stay");
    assert_eq!(
        app.count(&format!(
            "SELECT COUNT(*) FROM webhook_events WHERE id = '{old_id}parked'"
        ))
        .await,
        1
    );
    assert_eq!(
        app.count("SELECT COUNT(*) FROM app_webhook_deliveries WHERE id = 'dlv_old_pending'")
            .await,
        1,
        "a pending delivery is never pruned"
    );
    assert_eq!(app.count("SELECT COUNT(*) FROM messages").await, 4);
    for id in &ids {
        assert_eq!(app.get_message(id).await["status"], "delivered");
    }
}
