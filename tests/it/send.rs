//! Sending: accepted → queued → sent → delivered through the Twilio simulator's callbacks and
//! through the sandbox; what the stored message shows (history, attempts, segments, metadata).

use crate::helpers::*;
use serde_json::json;

backend_tests!(
    delivered_via_twilio_callbacks,
    delivered_via_sandbox,
    accepted_answer_shape,
    sms_segments_and_encoding,
    metadata_is_echoed,
);

async fn delivered_via_twilio_callbacks(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    app.sim().callbacks().set_delay(ORDERED);
    let sent = app.send_sms(TO, "Your code is 123456").await;
    let id = sent["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "delivered", SOON).await;

    // The provider got it exactly once, as weft said.
    let got = app.sim().recorder().find_by_message(id);
    assert_eq!(got.len(), 1, "simulator receipts for {id}: {got:?}");
    assert_eq!(got[0].to, TO);
    assert_eq!(got[0].from.as_deref(), Some(SENDER));
    assert_eq!(got[0].body.as_deref(), Some("Your code is 123456"));
    let sid = got[0].provider_id.clone();

    // History: every step, in order, all applied.
    let h = history(&m);
    let statuses: Vec<&str> = h.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        statuses,
        ["accepted", "queued", "sent", "delivered"],
        "history: {m}"
    );
    assert!(h.iter().all(|(_, applied)| *applied), "history: {m}");
    let hist = m["status_history"].as_array().unwrap();
    for entry in &hist[1..] {
        assert_eq!(entry["connection"], TWILIO_CONN, "{entry}");
        assert_eq!(entry["provider_message_id"], sid.as_str(), "{entry}");
    }
    assert_eq!(hist[2]["raw_status"], "sent");
    assert_eq!(hist[3]["raw_status"], "delivered");
    assert!(m["error"].is_null(), "no error on a delivered message: {m}");
    assert!(
        unix_ms(&m["updated_at"]) >= unix_ms(&m["created_at"]),
        "updated_at never precedes created_at: {m}"
    );

    // One attempt, with the provider's id.
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "attempts: {m}");
    let a = &attempts[0];
    assert_eq!(a["seq"], 1);
    assert_eq!(a["channel"], "sms");
    assert_eq!(a["provider"], "twilio");
    assert_eq!(a["connection"], TWILIO_CONN);
    assert_eq!(a["sender"], SENDER);
    assert_eq!(a["provider_ids"], json!([sid]));
    assert_eq!(a["outcome"], "queued");
    assert!(a["error_code"].is_null());
    assert!(a["finished_at"].is_string());
    assert_eq!(m["from"], SENDER, "the sender used is recorded: {m}");
}

async fn delivered_via_sandbox(b: Backend) {
    let app = spawn_app(b, Setup::sandbox()).await;
    let sent = app.send_sms(TO, "hello from the sandbox").await;
    let id = sent["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "delivered", SOON).await;
    // The sandbox calls back after 20 ms, which may beat the recording of its answer: then
    // `queued` comes late and is not applied. Either way every step is there.
    let mut statuses = history_statuses(&m);
    statuses.sort();
    assert_eq!(statuses, ["accepted", "delivered", "queued", "sent"], "{m}");
    assert!(history(&m).contains(&("delivered".into(), true)), "{m}");
    let attempts = m["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1, "{m}");
    assert_eq!(attempts[0]["provider"], "sandbox");
    assert_eq!(attempts[0]["connection"], "sandbox");
    let pid = attempts[0]["provider_ids"][0].as_str().unwrap();
    assert!(pid.starts_with("sbx_"), "sandbox id: {pid}");
}

async fn accepted_answer_shape(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // Silence callbacks so the stored message stays `queued` at most.
    app.sim()
        .callbacks()
        .set_behaviour(weft_simkit::CallbackBehaviour::Silent);
    let resp = app
        .post_message(&json!({"to": "+1 (415) 555-0100", "body": "hi", "channel": "sms"}))
        .await;
    assert_eq!(resp.status(), 202);
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json")));
    assert!(resp.headers().get("idempotent-replayed").is_none());
    let v: serde_json::Value = resp.json().await.unwrap();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("msg_"), "{v}");
    assert!(v["conversation_id"]
        .as_str()
        .is_some_and(|c| c.starts_with("conv_")));
    assert_eq!(v["status"], "accepted");
    assert_eq!(v["direction"], "outbound");
    assert_eq!(v["channel"], "sms");
    assert_eq!(v["to"], TO, "the number is stored in E.164: {v}");
    assert_eq!(v["body"], "hi");
    assert_eq!(
        location.as_deref(),
        Some(format!("/v1/messages/{id}").as_str())
    );
    // The stored message is the same one, readable at once (202 only after commit).
    let m = app.get_message(id).await;
    assert_eq!(m["id"], id);
    assert_eq!(m["conversation_id"], v["conversation_id"]);
    assert_eq!(m["created_at"], v["created_at"]);
    // A second message to the same number lands on the same conversation.
    let second = app.send_sms(TO, "again").await;
    assert_eq!(second["conversation_id"], v["conversation_id"]);
    assert_ne!(second["id"], v["id"]);
}

async fn sms_segments_and_encoding(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let cases = [
        ("hello".to_string(), "gsm7", 1),
        ("a".repeat(160), "gsm7", 1),
        ("a".repeat(161), "gsm7", 2),
        ("a".repeat(307), "gsm7", 3),
        // Extension characters take two septets: 80 € fill one part, 81 need two.
        ("€".repeat(80), "gsm7", 1),
        ("€".repeat(81), "gsm7", 2),
        ("☃".repeat(70), "ucs2", 1),
        ("Grüße ☃".to_string(), "ucs2", 1),
        ("☃".repeat(71), "ucs2", 2),
        // Outside the BMP: two UTF-16 units each.
        ("😀".repeat(36), "ucs2", 2),
    ];
    let mut ids = Vec::new();
    for (body, encoding, segments) in &cases {
        let v = app.send_sms(TO, body).await;
        assert_eq!(v["encoding"], *encoding, "202 for {body:?}: {v}");
        assert_eq!(v["segments"], *segments, "202 for {body:?}: {v}");
        ids.push((v["id"].as_str().unwrap().to_string(), encoding, segments));
    }
    for (id, encoding, segments) in ids {
        let m = app.wait_for_status(&id, "delivered", SOON).await;
        assert_eq!(m["encoding"], *encoding, "stored: {m}");
        assert_eq!(m["segments"], *segments, "stored: {m}");
    }
}

async fn metadata_is_echoed(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let metadata = json!({
        "order": "A-1001",
        "nested": {"list": [1, 2.5, "three", null, true], "empty": {}},
        "unicode": "Grüße ☃",
    });
    let resp = app
        .post_message(&json!({"to": TO, "body": "meta", "metadata": metadata}))
        .await;
    assert_eq!(resp.status(), 202);
    let v: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(v["metadata"], metadata, "202 echoes metadata");
    let id = v["id"].as_str().unwrap();
    let m = app.wait_for_status(id, "delivered", SOON).await;
    assert_eq!(m["metadata"], metadata, "stored metadata");
    let (_, page) = app.list("limit=10").await;
    assert_eq!(page["data"][0]["metadata"], metadata, "listed metadata");

    // Without metadata it is null, and a non-object is refused.
    let plain = app.send_sms(TO, "no meta").await;
    assert!(plain["metadata"].is_null(), "{plain}");
    let resp = app
        .post_message(&json!({"to": TO, "body": "x", "metadata": [1, 2]}))
        .await;
    let p = assert_problem(resp, 422, "validation").await;
    assert_eq!(error_fields(&p), ["metadata"], "{p}");
}
