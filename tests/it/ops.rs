//! Operations endpoints: liveness, readiness, metrics, the OpenAPI document.

use crate::helpers::*;
use serde_json::Value;

backend_tests!(
    health_and_readiness,
    openapi_lists_the_api,
    metrics_count_messages
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
