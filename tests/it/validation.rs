//! Bad input gets a clear problem+json and changes nothing: no message stored, nothing sent.

use crate::helpers::*;
use serde_json::json;

backend_tests!(
    bad_numbers,
    empty_or_missing_body,
    unknown_channel,
    unknown_field,
    several_problems_at_once,
    oversize_body_is_413,
    malformed_json_is_400,
    wrong_content_type_is_415,
);

/// Nothing was stored for the tenant and nothing reached the provider.
async fn assert_nothing_stored(app: &TestApp) {
    let (status, page) = app.list("limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]), "nothing may be stored: {page}");
    assert!(page["next_cursor"].is_null());
    // Give a wrongly accepted message a moment to reach the simulator.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    if let Some(sim) = &app.sim {
        assert_eq!(sim.recorder().count(), 0, "nothing may be sent");
    }
}

async fn bad_numbers(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    for to in [
        "+1",
        "+123",
        "4155550100",
        "not a number",
        "+1415555010012345678",
        "+99912345678",
        "",
    ] {
        let resp = app
            .post_message(&json!({"to": to, "body": "hi", "channel": "sms"}))
            .await;
        let p = assert_problem(resp, 422, "validation").await;
        assert_eq!(error_fields(&p), ["to"], "to={to:?}: {p}");
        let detail = p["errors"][0]["detail"].as_str().unwrap();
        assert!(!detail.is_empty(), "{p}");
    }
    // Without `channel`, a bare number cannot even tell its channel.
    let resp = app
        .post_message(&json!({"to": "4155550100", "body": "hi"}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["to"], "{p}");
    // `to` missing altogether.
    let resp = app.post_message(&json!({"body": "hi"})).await;
    let p = assert_problem(resp, 422, "validation").await;
    assert!(p["detail"].as_str().unwrap().contains("to"), "{p}");
    assert_nothing_stored(&app).await;
}

async fn empty_or_missing_body(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    for req in [
        json!({"to": TO, "body": ""}),
        json!({"to": TO}),
        json!({"to": TO, "body": null}),
    ] {
        let resp = app.post_message(&req).await;
        let p = assert_problem(resp, 422, "validation").await;
        assert_eq!(error_fields(&p), ["body"], "{req}: {p}");
    }
    // Longer than the SMS maximum (1600 characters).
    let resp = app
        .post_message(&json!({"to": TO, "body": "x".repeat(1601)}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["body"], "{p}");
    // A body of the wrong JSON type.
    let resp = app.post_message(&json!({"to": TO, "body": 42})).await;
    assert_problem(resp, 422, "validation").await;
    assert_nothing_stored(&app).await;
}

async fn unknown_channel(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    for channel in ["fax", "pigeon", ""] {
        let resp = app
            .post_message(&json!({"to": TO, "body": "hi", "channel": channel}))
            .await;
        let p = assert_problem(resp, 422, "validation").await;
        assert_eq!(error_fields(&p), ["channel"], "channel={channel:?}: {p}");
    }
    let resp = app
        .post_message(&json!({"to": TO, "body": "hi", "fallback": ["whatsapp", "fax"]}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["fallback"], "{p}");
    // A channel that cannot reach this address.
    let resp = app
        .post_message(&json!({"to": "someone@example.com", "body": "hi", "channel": "sms"}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["to"], "{p}");
    assert_nothing_stored(&app).await;
}

async fn unknown_field(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let resp = app
        .post_message(&json!({"to": TO, "body": "hi", "bdoy": "typo"}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert!(
        p["detail"].as_str().unwrap().contains("bdoy"),
        "the detail names the unknown field: {p}"
    );
    assert!(!error_fields(&p).is_empty(), "{p}");
    assert_nothing_stored(&app).await;
}

async fn several_problems_at_once(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let resp = app
        .post_message(&json!({
            "to": "+1", "body": "", "subject": "not on sms", "callback_url": "ftp://x",
            "channel": "sms",
        }))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    let mut fields = error_fields(&p);
    fields.sort();
    assert_eq!(fields, ["body", "callback_url", "subject", "to"], "{p}");
    for e in p["errors"].as_array().unwrap() {
        assert!(e["detail"].as_str().is_some_and(|d| !d.is_empty()), "{e}");
    }
    assert_nothing_stored(&app).await;
}

async fn oversize_body_is_413(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // Valid JSON, just over 1 MiB.
    let big = json!({"to": TO, "body": "hi", "metadata": {"pad": "x".repeat(1024 * 1024)}});
    let bytes = serde_json::to_vec(&big).unwrap();
    assert!(bytes.len() > 1024 * 1024);
    let resp = app.post_raw(bytes, Some("application/json")).await;
    let p = assert_problem(resp, 413, "payload-too-large").await;
    assert!(p["errors"].is_null(), "{p}");
    // Far beyond, too.
    let resp = app
        .post_raw(vec![b' '; 3 * 1024 * 1024], Some("application/json"))
        .await;
    assert_problem(resp, 413, "payload-too-large").await;
    assert_nothing_stored(&app).await;
}

async fn malformed_json_is_400(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    for body in [
        &b"{\"to\": \"+14155550100\", \"body\": "[..],
        b"{to: +14155550100}",
        b"",
        b"not json",
        b"[1, 2, 3]",
        b"\"a string\"",
        b"{\"to\": \"+14155550100\", \"body\": \"hi\"} trailing",
    ] {
        let resp = app.post_raw(body.to_vec(), Some("application/json")).await;
        let p = assert_problem(resp, 400, "malformed-json").await;
        assert!(p["errors"].is_null(), "{p}");
    }
    assert_nothing_stored(&app).await;
}

async fn wrong_content_type_is_415(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let json_body = serde_json::to_vec(&json!({"to": TO, "body": "hi"})).unwrap();
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/xml",
    ] {
        let resp = app.post_raw(json_body.clone(), Some(ct)).await;
        assert_problem(resp, 415, "unsupported-media-type").await;
    }
    // With a charset it is still JSON.
    let resp = app
        .post_raw(json_body.clone(), Some("application/json; charset=utf-8"))
        .await;
    assert_eq!(resp.status(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    let all = app.list_all().await;
    assert_eq!(all.len(), 1, "only the JSON one is stored");
    assert_eq!(all[0]["id"], v["id"]);
}
