//! Bearer keys and tenant scoping: no key or a wrong key → 401; another tenant's message → 404;
//! a revoked key is refused once the key cache's TTL has passed.

use crate::helpers::*;
use serde_json::json;
use weft::api::auth::hash_key;

backend_tests!(
    missing_or_invalid_key_is_401,
    other_tenants_message_is_404,
    a_revoked_key_is_refused_within_the_cache_ttl
);

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

async fn a_revoked_key_is_refused_within_the_cache_ttl(b: Backend) {
    let setup = Setup {
        extra_toml: "[api]\nkey_cache_seconds = 1\n".into(),
        ..Setup::twilio()
    };
    let app = spawn_app(b, setup).await;
    let other = app.second_tenant("revocable").await;
    let list = |key: String| {
        let req = app
            .client
            .get(app.url("/v1/messages"))
            .header("Authorization", format!("Bearer {key}"));
        async move { req.send().await.unwrap().status().as_u16() }
    };
    // Used (and so cached) before it is revoked.
    assert_eq!(list(other.clone()).await, 200);
    assert_eq!(
        app.store.revoke_api_key(&hash_key(&other)).await.unwrap(),
        1
    );
    assert_eq!(
        app.store.revoke_api_key(&hash_key(&other)).await.unwrap(),
        0,
        "already revoked"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        if list(other.clone()).await == 401 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "a revoked key still works after 5 s with key_cache_seconds = 1"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    // Stays refused, and the other keys are untouched.
    assert_eq!(list(other).await, 401);
    assert_eq!(list(app.key.clone()).await, 200);
}

/// `weft api-key revoke` on the real binary: by key or by id; a second revoke, or an unknown
/// key, is an error that says so.
#[test]
fn the_cli_revokes_keys_by_key_or_id() {
    use crate::crash::{cli, weft_cmd};
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("weft.toml");
    let db = dir.path().join("weft.db");
    std::fs::write(
        &config,
        format!("database_url = \"sqlite://{}\"\n", db.display()),
    )
    .expect("write config");
    cli(&config, &["tenant", "create", "cli"]);
    let created = |out: String| {
        let key = out.lines().last().unwrap_or_default().trim().to_string();
        let id = out
            .split_whitespace()
            .find(|w| w.starts_with("key_"))
            .unwrap_or_default()
            .to_string();
        assert!(key.starts_with("weft_") && !id.is_empty(), "{out}");
        (key, id)
    };
    let (key, _) = created(cli(&config, &["api-key", "create", "--tenant", "cli"]));
    let (_, id) = created(cli(&config, &["api-key", "create", "--tenant", "cli"]));
    assert!(cli(&config, &["api-key", "revoke", &key]).contains("revoked"));
    assert!(cli(&config, &["api-key", "revoke", &id]).contains("revoked"));
    for gone in [key.as_str(), id.as_str(), "key_nothing"] {
        let out = weft_cmd(&config)
            .args(["api-key", "revoke", gone])
            .output()
            .expect("run weft");
        assert!(!out.status.success(), "revoking {gone} again must fail");
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("nothing revoked"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
