//! App webhooks: endpoints, signed deliveries (checked here and by the official
//! `standardwebhooks` Python library), retries with back-off, the SSRF guard, tenant scoping.

mod harness;

use crate::helpers::*;
use harness::*;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

backend_tests!(
    signed_status_events_reach_the_endpoint,
    verified_by_the_standardwebhooks_library,
    a_failing_receiver_gets_each_event_once,
    private_urls_are_refused_without_the_flag,
    two_replicas_deliver_each_event_once,
    callback_url_gets_the_messages_own_signed_status_updates,
);

const ALLOW_PRIVATE: &str = "[app_webhooks]\nallow_private_urls = true\nretry_base_ms = 50\n";

async fn signed_status_events_reach_the_endpoint(b: Backend) {
    let app = spawn_app(
        b,
        Setup {
            extra_toml: ALLOW_PRIVATE.into(),
            ..Setup::sandbox()
        },
    )
    .await;
    let rx = receiver(0).await;
    let ep = app
        .create_endpoint(&rx.url, &["message.status_updated"])
        .await;
    let id = ep["id"].as_str().unwrap();
    let secret = ep["secret"].as_str().unwrap();
    assert!(id.starts_with("wh_"), "{ep}");
    assert!(secret.starts_with("whsec_"), "{ep}");
    assert_eq!(ep["url"], rx.url.as_str());
    assert_eq!(ep["events"], json!(["message.status_updated"]));
    unix_ms(&ep["created_at"]);

    let sent = app.send_sms(TO, "hello, webhooks").await;
    let msg = sent["id"].as_str().unwrap();
    let got = rx
        .wait("the delivered status", |g| {
            status_event(g, msg, "delivered").is_some()
        })
        .await;
    for g in &got {
        assert_signed(g, secret);
        assert_eq!(
            body_json(g)["type"],
            "message.status_updated",
            "only subscribed types: {}",
            g.body
        );
    }
    let delivered = body_json(status_event(&got, msg, "delivered").unwrap());
    assert_eq!(
        delivered["data"]["conversation_id"], sent["conversation_id"],
        "{delivered}"
    );
    let ids: std::collections::HashSet<&String> =
        got.iter().map(|g| &g.headers["webhook-id"]).collect();
    assert_eq!(
        ids.len(),
        got.len(),
        "one webhook-id per event, none sent twice: {got:#?}"
    );

    // Each delivery is visible.
    let ds = app
        .wait_deliveries(id, "all delivered", |d| {
            d.len() >= got.len() && d.iter().all(|d| d["status"] == "delivered")
        })
        .await;
    for d in &ds {
        assert_eq!(d["attempts"], 1, "{d}");
        assert_eq!(d["last_status_code"], 204, "{d}");
        assert!(d["last_error"].is_null(), "{d}");
        assert_eq!(d["event_type"], "message.status_updated");
        assert!(d["event_id"].as_str().unwrap().starts_with("evt_"));
        assert_eq!(d["attempt_history"].as_array().unwrap().len(), 1, "{d}");
        assert!(
            unix_ms(&d["delivered_at"]) >= unix_ms(&d["created_at"]),
            "{d}"
        );
        assert!(d["next_attempt_at"].is_null(), "{d}");
    }
    assert!(
        app.metric("weft_app_webhook_deliveries_total{outcome=\"ok\"}")
            .await
            >= ds.len() as f64
    );

    // The API document lists the resource.
    let (_, doc) = app.get_json("/openapi.json", &app.key).await;
    for path in [
        "/v1/webhook-endpoints",
        "/v1/webhook-endpoints/{id}",
        "/v1/webhook-endpoints/{id}/deliveries",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    assert!(doc["components"]["schemas"]["DeliveryView"].is_object());

    // Reads never show the secret; another tenant sees nothing.
    let (s, one) = app
        .get_json(&format!("/v1/webhook-endpoints/{id}"), &app.key)
        .await;
    assert_eq!(s, 200, "{one}");
    assert_eq!(one["id"], id);
    assert!(one.get("secret").is_none(), "{one}");
    let (s, list) = app.get_json("/v1/webhook-endpoints", &app.key).await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    assert!(list["next_cursor"].is_null());
    assert!(list["data"][0].get("secret").is_none(), "{list}");
    let other = app.second_tenant("globex").await;
    for path in [
        format!("/v1/webhook-endpoints/{id}"),
        format!("/v1/webhook-endpoints/{id}/deliveries"),
    ] {
        let resp = app
            .client
            .get(app.url(&path))
            .bearer_auth(&other)
            .send()
            .await
            .unwrap();
        assert_problem(resp, 404, "not-found").await;
    }
    let (_, theirs) = app.get_json("/v1/webhook-endpoints", &other).await;
    assert_eq!(theirs["data"], json!([]), "{theirs}");
    let resp = app
        .client
        .delete(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_problem(resp, 404, "not-found").await;

    // Delete: gone from reads, and no further events.
    let resp = app
        .client
        .delete(app.url(&format!("/v1/webhook-endpoints/{id}")))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let (s, _) = app
        .get_json(&format!("/v1/webhook-endpoints/{id}"), &app.key)
        .await;
    assert_eq!(s, 404);
    let before = rx.got().len();
    let again = app.send_sms(TO, "nobody listens").await;
    app.wait_for_status(again["id"].as_str().unwrap(), "delivered", SOON)
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got().len(), before, "a deleted endpoint gets nothing");
}

async fn verified_by_the_standardwebhooks_library(b: Backend) {
    let app = spawn_app(
        b,
        Setup {
            extra_toml: ALLOW_PRIVATE.into(),
            ..Setup::sandbox()
        },
    )
    .await;
    let rx = receiver(0).await;
    let ep = app.create_endpoint(&rx.url, &["*"]).await;
    let secret = ep["secret"].as_str().unwrap();
    let sent = app.send_sms(TO, "verify me in Python").await;
    let msg = sent["id"].as_str().unwrap();
    let got = rx
        .wait("the delivered status", |g| {
            status_event(g, msg, "delivered").is_some()
        })
        .await;
    let types: std::collections::HashSet<String> = got
        .iter()
        .map(|g| body_json(g)["type"].as_str().unwrap().to_string())
        .collect();
    assert!(types.contains("message.status_updated"), "{types:?}");
    let deliveries: Vec<Value> = got
        .iter()
        .map(|g| json!({"headers": g.headers, "body": g.body}))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("deliveries.json");
    std::fs::write(
        &file,
        json!({"secret": secret, "deliveries": deliveries}).to_string(),
    )
    .unwrap();
    verify_with_python(&file).await;
}

async fn a_failing_receiver_gets_each_event_once(b: Backend) {
    let app = spawn_app(
        b,
        Setup {
            extra_toml: ALLOW_PRIVATE.into(),
            ..Setup::sandbox()
        },
    )
    .await;
    let retries_before = app
        .metric("weft_app_webhook_deliveries_total{outcome=\"retry\"}")
        .await;
    let rx = receiver(3).await;
    let ep = app
        .create_endpoint(&rx.url, &["message.status_updated"])
        .await;
    let (id, secret) = (ep["id"].as_str().unwrap(), ep["secret"].as_str().unwrap());
    let sent = app.send_sms(TO, "try, try again").await;
    let msg = sent["id"].as_str().unwrap();
    app.wait_for_status(msg, "delivered", SOON).await;

    let ds = app
        .wait_deliveries(id, "delivered after retries", |d| {
            !d.is_empty() && d.iter().all(|d| d["status"] == "delivered")
        })
        .await;
    let got = rx.got();
    for d in &ds {
        let evt = d["event_id"].as_str().unwrap();
        let to_evt: Vec<&Got> = got
            .iter()
            .filter(|g| g.headers["webhook-id"] == evt)
            .collect();
        let ok = to_evt.iter().filter(|g| g.answered < 300).count();
        assert_eq!(ok, 1, "{evt} accepted exactly once: {to_evt:#?}");
        assert_eq!(
            to_evt.len(),
            4,
            "three failures, then the success: {to_evt:#?}"
        );
        assert!(
            to_evt.iter().all(|g| g.body == to_evt[0].body),
            "retries carry the same body"
        );
        to_evt.iter().for_each(|g| assert_signed(g, secret));

        assert_eq!(d["attempts"], 4, "{d}");
        assert_eq!(d["last_status_code"], 204, "{d}");
        let hist = d["attempt_history"].as_array().unwrap();
        let codes: Vec<&Value> = hist.iter().map(|a| &a["status_code"]).collect();
        assert_eq!(
            codes,
            [&json!(500), &json!(500), &json!(500), &json!(204)],
            "{d}"
        );
        for a in &hist[..3] {
            assert!(a["error"].as_str().unwrap().contains("500"), "{a}");
        }
        // Back-off: each wait at least half its nominal 50·2^(n-1) ms.
        let at: Vec<i128> = hist.iter().map(|a| unix_ms(&a["attempted_at"])).collect();
        for (n, w) in at.windows(2).enumerate() {
            let min = 25 << n;
            assert!(
                w[1] - w[0] >= min,
                "attempt {} came {} ms after the previous, < {min}: {d}",
                n + 2,
                w[1] - w[0]
            );
        }
    }
    assert!(status_event(&got, msg, "delivered").is_some(), "{got:#?}");
    let retries = app
        .metric("weft_app_webhook_deliveries_total{outcome=\"retry\"}")
        .await;
    assert!(
        retries - retries_before >= 3.0 * ds.len() as f64,
        "retry metric {retries_before} → {retries}"
    );
}

async fn private_urls_are_refused_without_the_flag(b: Backend) {
    let app = spawn_app(
        b,
        Setup {
            extra_toml: "[app_webhooks]\nmax_attempts = 2\nretry_base_ms = 50\n".into(),
            ..Setup::sandbox()
        },
    )
    .await;
    for url in [
        "http://127.0.0.1:9/hook",
        "http://localhost:9/hook",
        "http://[::1]/hook",
        "http://[::ffff:10.0.0.1]/hook",
        "http://10.1.2.3/hook",
        "http://192.168.0.10/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://0.0.0.0/hook",
        "ftp://93.184.216.34/hook",
        "not a url",
    ] {
        let resp = app
            .create_endpoint_as(&app.key, &json!({"url": url, "events": ["*"]}))
            .await;
        let p = assert_problem(resp, 422, "validation").await;
        assert_eq!(error_fields(&p), ["url"], "{url}: {p}");
    }
    let resp = app
        .create_endpoint_as(
            &app.key,
            &json!({"url": "http://93.184.216.34/hook", "events": ["message.sent", "*"]}),
        )
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["events"], "{p}");
    let resp = app
        .create_endpoint_as(
            &app.key,
            &json!({"url": "http://93.184.216.34/hook", "events": []}),
        )
        .await;
    assert_problem(resp, 422, "validation").await;
    let resp = app
        .create_endpoint_as(&app.key, &json!({"url": "http://93.184.216.34/hook"}))
        .await;
    assert_problem(resp, 422, "validation").await;
    let (s, list) = app.get_json("/v1/webhook-endpoints", &app.key).await;
    assert_eq!(
        (s, &list["data"]),
        (200, &json!([])),
        "nothing was stored: {list}"
    );

    // A public address is fine (deleted at once: no test reaches the internet); creation
    // honours Idempotency-Key.
    let create = |body: Value| {
        app.client
            .post(app.url("/v1/webhook-endpoints"))
            .bearer_auth(&app.key)
            .header("Idempotency-Key", "wh-once")
            .json(&body)
            .send()
    };
    let body = json!({"url": "http://93.184.216.34/hook", "events": ["conversation.closed"]});
    let first = create(body.clone()).await.unwrap();
    assert_eq!(first.status(), 201);
    let first_location = first.headers()["location"].clone();
    let ep: Value = first.json().await.unwrap();
    let location = format!(
        "/v1/webhook-endpoints/{}",
        ep["id"].as_str().unwrap_or_default()
    );
    assert_eq!(first_location, location.as_str());
    let again = create(body).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(again.headers()["location"], location.as_str());
    assert_eq!(
        again.json::<Value>().await.unwrap(),
        ep,
        "the same answer again"
    );
    let other = create(json!({"url": "http://93.184.216.34/other", "events": ["*"]}));
    assert_problem(other.await.unwrap(), 422, "idempotency-conflict").await;
    let (_, list) = app.get_json("/v1/webhook-endpoints", &app.key).await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    let resp = app
        .client
        .delete(app.url(&format!(
            "/v1/webhook-endpoints/{}",
            ep["id"].as_str().unwrap()
        )))
        .bearer_auth(&app.key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);

    // An endpoint that reached the database anyway is re-checked at delivery time.
    let rx = receiver(0).await;
    let wh = weft::domain::ids::new_id(weft::domain::ids::IdKind::WebhookEndpoint);
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(app.db_url()).await.unwrap();
    sqlx::query("INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret, created_at) VALUES ($1, $2, $3, '[\"*\"]', $4, 0)")
        .bind(&wh)
        .bind(&app.tenant_id)
        .bind(&rx.url)
        .bind(weft::app_webhooks::sign::new_secret())
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // Written behind the app's back: wait for its tenant cache to notice (refresh ~2 s).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let sent = app.send_sms(TO, "not to a private address").await;
    app.wait_for_status(sent["id"].as_str().unwrap(), "delivered", SOON)
        .await;
    let ds = app
        .wait_deliveries(&wh, "failed", |d| {
            !d.is_empty() && d.iter().all(|d| d["status"] == "failed")
        })
        .await;
    for d in &ds {
        assert_eq!(d["attempts"], 2, "{d}");
        assert!(d["last_status_code"].is_null(), "{d}");
        assert!(d["last_error"].as_str().unwrap().contains("refused"), "{d}");
    }
    assert!(
        rx.got().is_empty(),
        "the private receiver was never called: {:#?}",
        rx.got()
    );
    assert!(
        app.metric("weft_app_webhook_deliveries_total{outcome=\"failed\"}")
            .await
            >= ds.len() as f64
    );
}

/// Two weft processes on one PostgreSQL database share the queue: leases and
/// `FOR UPDATE SKIP LOCKED` let each event reach the endpoint once. (SQLite is single-node.)
async fn two_replicas_deliver_each_event_once(b: Backend) {
    if b == Backend::Sqlite {
        return;
    }
    let app = spawn_app(
        b,
        Setup {
            extra_toml: ALLOW_PRIVATE.into(),
            ..Setup::sandbox()
        },
    )
    .await;
    let toml = format!(
        "listen = \"127.0.0.1:0\"\ndatabase_url = \"{}\"\n{ALLOW_PRIVATE}poll_interval_ms = 20\n[log]\nlevel = \"warn\"\n[shutdown]\ndrain_seconds = 1\n[sandbox]\nenabled = false\n",
        app.db_url()
    );
    let cfg = weft::config::Config::from_toml(&toml).unwrap_or_else(|e| panic!("{e}"));
    let replica = weft::app::Application::build(cfg).await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let replica = tokio::spawn(replica.run_until(async move {
        let _ = stopped.await;
    }));

    let rx = receiver(0).await;
    let ep = app
        .create_endpoint(&rx.url, &["message.status_updated"])
        .await;
    let id = ep["id"].as_str().unwrap();
    let mut sent = Vec::new();
    for i in 0..20 {
        sent.push(
            app.send_sms(TO, &format!("fan-out {i}")).await["id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    for m in &sent {
        app.wait_for_status(m, "delivered", SOON).await;
    }
    let ds = app
        .wait_deliveries(id, "all delivered", |d| {
            // The sandbox may overtake its own `queued`, so count the `delivered` events.
            let done = d
                .iter()
                .filter(|d| d["payload"]["data"]["status"] == "delivered")
                .count();
            done == sent.len() && d.iter().all(|d| d["status"] == "delivered")
        })
        .await;
    let got = rx.got();
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for g in &got {
        *per_id.entry(g.headers["webhook-id"].as_str()).or_default() += 1;
    }
    assert_eq!(
        per_id.len(),
        ds.len(),
        "every delivery reached the endpoint"
    );
    let twice: Vec<_> = per_id.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent more than once: {twice:?}");
    assert!(ds.iter().all(|d| d["attempts"] == 1), "{ds:#?}");
    let _ = stop.send(());
    let _ = replica.await;
}

/// `callback_url` of `POST /v1/messages`: that message's status updates are POSTed there,
/// signed with `whsec_` + base64(SHA-256 of the API key), retried like any app webhook; no
/// endpoint is needed and other messages' updates do not go there.
async fn callback_url_gets_the_messages_own_signed_status_updates(b: Backend) {
    use base64::Engine;
    use sha2::Digest;
    let app = spawn_app(
        b,
        Setup {
            extra_toml: ALLOW_PRIVATE.into(),
            ..Setup::sandbox()
        },
    )
    .await;
    // The first try of every event gets a 500: each must still arrive, once retried.
    let rx = receiver(1).await;
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(app.key.as_bytes()))
    );
    let body = json!({"to": TO, "body": "call me back", "callback_url": rx.url});
    let r = app.post_message(&body).await;
    assert_eq!(r.status(), 202);
    let sent: Value = r.json().await.unwrap();
    assert_eq!(sent["callback_url"], rx.url.as_str(), "{sent}");
    let msg = sent["id"].as_str().unwrap();
    let other = app.send_sms(TO, "no callback for me").await;
    let other = other["id"].as_str().unwrap();

    rx.wait("the delivered callback, retried to success", |g| {
        let ok: Vec<Got> = g.iter().filter(|g| g.answered == 204).cloned().collect();
        status_event(&ok, msg, "delivered").is_some()
    })
    .await;
    app.wait_for_status(other, "delivered", SOON).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got: Vec<Got> = rx.got().into_iter().filter(|g| g.answered == 204).collect();
    let statuses: Vec<String> = got
        .iter()
        .map(|g| {
            assert_signed(g, &secret);
            let v = body_json(g);
            assert_eq!(v["type"], "message.status_updated", "{v}");
            assert_eq!(v["data"]["id"], msg, "only this message's updates: {v}");
            assert_eq!(v["data"]["conversation_id"], sent["conversation_id"], "{v}");
            v["data"]["status"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(statuses.contains(&"delivered".to_string()), "{statuses:?}");
    let mut unique = statuses.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        statuses.len(),
        "each update once: {statuses:?}"
    );
    assert!(
        rx.got().iter().filter(|g| g.answered != 204).count() >= statuses.len(),
        "every callback was retried after the first 500"
    );
}
