//! `Idempotency-Key`: same key + same body → the original answer (`Idempotent-Replayed: true`)
//! and still one message; same key + another body → 422.

use crate::helpers::*;
use serde_json::json;

backend_tests!(
    replay_returns_the_original_answer,
    same_key_other_body_conflicts,
    concurrent_replays_store_one_message,
);

async fn replay_returns_the_original_answer(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let body = json!({"to": TO, "body": "pay €5", "metadata": {"k": 1}});
    let first = app
        .post_message_with(&body, &app.key, Some("order-42"))
        .await;
    assert_eq!(first.status(), 202);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: serde_json::Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_string();
    app.wait_for_status(&id, "delivered", SOON).await;

    // Replayed after delivery: the very same answer (the original 202 body), flagged.
    let again = app
        .post_message_with(&body, &app.key, Some("order-42"))
        .await;
    assert_eq!(again.status(), 202);
    assert_eq!(
        again
            .headers()
            .get("idempotent-replayed")
            .and_then(|v| v.to_str().ok()),
        Some("true")
    );
    // The replay's Location is read back from the stored answer.
    assert_eq!(
        again
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok()),
        Some(format!("/v1/messages/{id}").as_str())
    );
    let again: serde_json::Value = again.json().await.unwrap();
    assert_eq!(again, first, "a replay answers the original response");

    // Keys are compared on the JSON, not on its bytes: reordered fields are the same request.
    let reordered = json!({"metadata": {"k": 1}, "body": "pay €5", "to": TO});
    let third = app
        .post_message_with(&reordered, &app.key, Some("order-42"))
        .await;
    assert_eq!(third.status(), 202);
    let third: serde_json::Value = third.json().await.unwrap();
    assert_eq!(third["id"], first["id"]);

    // Only one message, sent once.
    let all = app.list_all().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);

    // Another key is another message; keys are per tenant.
    let other = app
        .post_message_with(&body, &app.key, Some("order-43"))
        .await;
    assert_eq!(other.status(), 202);
    let other: serde_json::Value = other.json().await.unwrap();
    assert_ne!(other["id"], first["id"]);
    let key_b = app.second_tenant("globex").await;
    let theirs = app.post_message_with(&body, &key_b, Some("order-42")).await;
    assert_eq!(theirs.status(), 202, "another tenant may use the same key");
    assert!(theirs.headers().get("idempotent-replayed").is_none());
    let theirs: serde_json::Value = theirs.json().await.unwrap();
    assert_ne!(theirs["id"], first["id"]);
    assert_eq!(app.list_all().await.len(), 2);
}

async fn same_key_other_body_conflicts(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let first = app
        .post_message_with(&json!({"to": TO, "body": "one"}), &app.key, Some("k-1"))
        .await;
    assert_eq!(first.status(), 202);
    let first: serde_json::Value = first.json().await.unwrap();
    let resp = app
        .post_message_with(&json!({"to": TO, "body": "two"}), &app.key, Some("k-1"))
        .await;
    let p = assert_problem(resp, 422, "idempotency-conflict").await;
    assert!(
        p["detail"].as_str().unwrap().contains("Idempotency-Key"),
        "{p}"
    );
    let resp = app
        .post_message_with(
            &json!({"to": "+14155550199", "body": "one"}),
            &app.key,
            Some("k-1"),
        )
        .await;
    assert_problem(resp, 422, "idempotency-conflict").await;
    // Nothing new stored; the original is untouched.
    let all = app.list_all().await;
    assert_eq!(all.len(), 1, "{all:?}");
    assert_eq!(all[0]["id"], first["id"]);
    assert_eq!(all[0]["body"], "one");
    // An empty key is refused.
    let resp = app
        .post_message_with(&json!({"to": TO, "body": "x"}), &app.key, Some(""))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["Idempotency-Key"]);
    assert_eq!(app.list_all().await.len(), 1);
}

async fn concurrent_replays_store_one_message(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let body = json!({"to": TO, "body": "race"});
    let futs = (0..16).map(|_| app.post_message_with(&body, &app.key, Some("race-1")));
    let answers = futures::future::join_all(futs).await;
    let mut ids = std::collections::BTreeSet::new();
    let mut replayed = 0;
    for r in answers {
        assert_eq!(r.status(), 202);
        if r.headers().get("idempotent-replayed").is_some() {
            replayed += 1;
        }
        let v: serde_json::Value = r.json().await.unwrap();
        ids.insert(v["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "one message for one key: {ids:?}");
    assert_eq!(replayed, 15);
    let id = ids.into_iter().next().unwrap();
    app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(app.list_all().await.len(), 1);
    assert_eq!(app.sim().recorder().count(), 1);
}
