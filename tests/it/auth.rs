//! Bearer keys and tenant scoping: no key or a wrong key → 401; another tenant's message → 404.

use crate::helpers::*;
use serde_json::json;

backend_tests!(missing_or_invalid_key_is_401, other_tenants_message_is_404);

async fn missing_or_invalid_key_is_401(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let body = json!({"to": TO, "body": "hi"});
    let send = |auth: Option<String>| {
        let mut req = app.client.post(app.url("/v1/messages")).json(&body);
        if let Some(a) = auth {
            req = req.header("Authorization", a);
        }
        req.send()
    };
    let cases = [
        None,
        Some("Bearer ".to_string()),
        Some("Bearer weft_0000000000000000000000000000000000000000000000".to_string()),
        Some(format!("Bearer {}x", app.key)),
        Some(format!("Basic {}", app.key)),
        Some(app.key.clone()),
        Some(format!("Bearer {}", "a".repeat(500))),
    ];
    for auth in cases {
        let resp = send(auth.clone()).await.unwrap();
        assert_problem(resp, 401, "unauthorized").await;
        // Reads are guarded too.
        let mut req = app.client.get(app.url("/v1/messages"));
        if let Some(a) = &auth {
            req = req.header("Authorization", a);
        }
        assert_problem(req.send().await.unwrap(), 401, "unauthorized").await;
    }
    let resp = app
        .client
        .get(app.url("/v1/messages/msg_01HZZZZZZZZZZZZZZZZZZZZZZZ"))
        .send()
        .await
        .unwrap();
    assert_problem(resp, 401, "unauthorized").await;
    // Nothing stored; the real key works.
    let (status, page) = app.list("").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]));
    let resp = send(Some(format!("Bearer {}", app.key))).await.unwrap();
    assert_eq!(resp.status(), 202);
}

async fn other_tenants_message_is_404(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let mine = app.send_sms(TO, "for acme only").await;
    let id = mine["id"].as_str().unwrap();
    let key_b = app.second_tenant("globex").await;

    let (status, v) = app.get_message_as(id, &key_b).await;
    assert_eq!(status, 404, "another tenant's message: {v}");
    assert!(v["type"].as_str().unwrap().ends_with("/not-found"), "{v}");
    assert!(
        !v.to_string().contains("for acme only"),
        "the 404 leaks nothing: {v}"
    );
    // The same answer as for an id that does not exist at all.
    let (status, unknown) = app
        .get_message_as("msg_01HZZZZZZZZZZZZZZZZZZZZZZZ", &key_b)
        .await;
    assert_eq!(status, 404);
    assert_eq!(unknown["type"], v["type"]);
    let (status, _) = app.get_message_as("not-an-id", &key_b).await;
    assert_eq!(status, 404);

    // Globex's list is empty, and filters cannot reach across either.
    let resp = app
        .client
        .get(app.url(&format!(
            "/v1/messages?conversation_id={}",
            mine["conversation_id"].as_str().unwrap()
        )))
        .bearer_auth(&key_b)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let page: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(page["data"], json!([]), "{page}");

    // A conversation of another tenant cannot be written to either.
    let resp = app
        .post_message_with(
            &json!({"to": TO, "body": "sneak", "conversation_id": mine["conversation_id"]}),
            &key_b,
            None,
        )
        .await;
    assert_eq!(
        resp.status().as_u16(),
        422,
        "unknown conversation for globex"
    );

    // The owner still sees it.
    let (status, v) = app.get_message_as(id, &app.key).await;
    assert_eq!(status, 200);
    assert_eq!(v["body"], "for acme only");
}
