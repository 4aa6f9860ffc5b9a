//! Limits and scheduling: a provider's `Retry-After`, the tenant rate limit, `send_at`,
//! `valid_until`, connection pins and priority; bulk traffic never starves transactional
//! traffic on a rate-limited connection.

use super::*;
use futures::StreamExt;
use serde_json::json;
use std::collections::BTreeSet;

/// `POST /v1/messages`, insisting on 422 naming `field`.
pub(super) async fn send_invalid(app: &TestApp, body: Value, field: &str) {
    let p = assert_problem(app.post_message(&body).await, 422, "validation").await;
    assert!(
        error_fields(&p).iter().any(|f| f == field),
        "422 for {body} should name {field}: {p}"
    );
}

fn rfc3339_in(d: Duration) -> (String, i128) {
    let t = time::OffsetDateTime::now_utc() + d;
    let s = t
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    (s, t.unix_timestamp_nanos() / 1_000_000)
}

// --- rate limits ---------------------------------------------------------------------------------

pub(super) async fn provider_retry_after_is_honoured(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // 429 with Retry-After: 2 (the harness caps back-off at 2 s; its base is 50 ms).
    app.sim().faults().set_throttle_rate(1.0, 2);
    let id = id_of(&app.send_sms(TO, "slow down").await);
    app.wait_until(&id, SOON, "throttled once", |m| {
        attempts(m).first().is_some_and(|a| a["outcome"] == "retry")
    })
    .await;
    app.sim().faults().set_throttle_rate(0.0, 0);
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let at = attempts(&m);
    assert_eq!(at.len(), 2, "one throttled attempt, one success: {m:#}");
    assert_eq!(at[0]["error_code"], "20429", "{m:#}");
    let gap = unix_ms(&at[1]["started_at"]) - unix_ms(&at[0]["finished_at"]);
    assert!(gap >= 1990, "retried after {gap} ms despite Retry-After: 2");
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);
}

pub(super) async fn tenant_rate_limit_is_429_with_retry_after(b: Backend) {
    let extra = "[api]\ntenant_rate_limit_per_second = 2\ntenant_rate_limit_burst = 2\n";
    let app = spawn_app(b, with_extra(extra.into())).await;
    let other = app.second_tenant("globex").await;
    let body = json!({"to": TO, "body": "burst"});
    let mut codes = Vec::new();
    let mut limited = None;
    for _ in 0..6 {
        let resp = app.post_message(&body).await;
        codes.push(resp.status().as_u16());
        if resp.status() == 429 && limited.is_none() {
            limited = Some(resp);
        }
    }
    assert_eq!(&codes[..2], [202, 202], "the burst passes: {codes:?}");
    assert!(codes.contains(&429), "{codes:?}");
    let resp = limited.expect("a 429");
    let retry_after: u64 = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!((1..=2).contains(&retry_after), "Retry-After {retry_after}");
    assert_problem(resp, 429, "rate-limited").await;

    // Another tenant has its own budget.
    let resp = app.post_message_with(&body, &other, None).await;
    assert_eq!(resp.status(), 202);
    // After Retry-After the tenant may send again.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let resp = app.post_message(&body).await;
    assert_eq!(resp.status(), 202, "after Retry-After");
}

// --- scheduling, validity, pin, priority ------------------------------------------------------

pub(super) async fn send_at_valid_until_pin_and_priority(b: Backend) {
    let sim_b = twilio_sim().await;
    let extra = format!(
        "{}\n[[routes]]\nchannel = \"sms\"\nconnections = [\"{TWILIO_CONN}\"]\n",
        twilio_conn("twilio-b", &sim_b.base_url(), &sim_b, &["sms"])
    );
    let app = spawn_app(b, with_extra(extra)).await;
    let sims = [app.sim(), &sim_b];

    // valid_until: the pinned connection throttles (Retry-After 2 s) past the deadline.
    sim_b.faults().set_throttle_rate(1.0, 2);
    let (until, _) = rfc3339_in(Duration::from_millis(800));
    let expiring = send(
        &app,
        json!({"to": TO, "body": "only for a second", "connection": "twilio-b", "valid_until": until}),
    )
    .await;
    let m = app.wait_for_status(&expiring, "expired", SOON).await;
    assert_eq!(m["error"]["reason"], "expired", "{m:#}");
    let at_b = attempts(&m);
    assert_eq!(at_b.len(), 1, "{m:#}");
    assert_eq!(at_b[0]["outcome"], "retry", "{m:#}");
    assert_eq!(provider_copies(&sims, &expiring), 0);
    sim_b.faults().set_throttle_rate(0.0, 0);

    // send_at: not before its time.
    let (at, at_ms) = rfc3339_in(Duration::from_millis(1500));
    let scheduled = send(&app, json!({"to": TO, "body": "later", "send_at": at})).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let m = app.get_message(&scheduled).await;
    if time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000 < at_ms - 50 {
        assert_eq!(m["status"], "accepted", "{m:#}");
        assert!(attempts(&m).is_empty(), "{m:#}");
        assert_eq!(provider_copies(&sims, &scheduled), 0);
    }
    let m = app.wait_for_status(&scheduled, "delivered", SOON).await;
    let first = unix_ms(&attempts(&m)[0]["started_at"]);
    assert!(first >= at_ms, "sent at {first}, send_at {at_ms}: {m:#}");

    // The pin wins over the route.
    let pinned = assert_delivered_via(
        &app,
        json!({"to": TO, "body": "pinned", "connection": "twilio-b"}),
        "twilio-b",
    )
    .await;
    assert_eq!(sim_b.recorder().find_by_message(&pinned).len(), 1);
    assert_delivered_via(&app, json!({"to": TO, "body": "routed"}), TWILIO_CONN).await;
    send_invalid(
        &app,
        json!({"to": TO, "body": "x", "connection": "nope"}),
        "connection",
    )
    .await;

    // Priority.
    assert_delivered_via(
        &app,
        json!({"to": TO, "body": "newsletter", "priority": "bulk"}),
        TWILIO_CONN,
    )
    .await;
    assert_delivered_via(
        &app,
        json!({"to": TO, "body": "otp", "priority": "transactional"}),
        TWILIO_CONN,
    )
    .await;
    send_invalid(
        &app,
        json!({"to": TO, "body": "x", "priority": "urgent"}),
        "priority",
    )
    .await;
    let (past, _) = rfc3339_in(Duration::ZERO);
    send_invalid(
        &app,
        json!({"to": TO, "body": "x", "valid_until": past}),
        "valid_until",
    )
    .await;
}

/// A connection limited to 5/s and a backlog of 40 bulk messages: three transactional
/// messages sent after the whole backlog was accepted overtake it, reaching the provider
/// while at least half of what was still waiting is waiting still; then the backlog drains,
/// every message exactly once.
pub(super) async fn bulk_never_starves_transactional(b: Backend) {
    const BULK: usize = 40;
    const URGENT: usize = 3;
    let sim = twilio_sim().await;
    let setup = Setup {
        twilio: false,
        extra_toml: sms_conn("twilio-5ps", &sim, &[SENDER], "rate_limit_per_second = 5\n"),
        ..Setup::default()
    };
    let app = spawn_app(b, setup).await;
    let bulk: BTreeSet<String> = futures::stream::iter(0..BULK)
        .map(|i| {
            let app = &app;
            async move {
                let body = json!({"to": TO, "body": format!("newsletter {i}"), "priority": "bulk"});
                send(app, body).await
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    let before = sim.recorder().count();
    let backlog = BULK - before;
    assert!(
        backlog >= 10,
        "no backlog formed: {before} of {BULK} bulk messages already sent at 5/s"
    );
    let mut urgent = BTreeSet::new();
    for i in 0..URGENT {
        let body =
            json!({"to": CUSTOMER, "body": format!("code {i}"), "priority": "transactional"});
        urgent.insert(send(&app, body).await);
    }
    eventually("the transactional messages sent", SOON, || {
        urgent
            .iter()
            .all(|id| !sim.recorder().find_by_message(id).is_empty())
    })
    .await;
    // Arrival order at the provider: how much bulk went out before the last transactional.
    let order: Vec<String> = sim
        .recorder()
        .all()
        .into_iter()
        .filter_map(|r| r.weft_message_id)
        .collect();
    let last_urgent = order
        .iter()
        .rposition(|id| urgent.contains(id))
        .expect("a transactional message arrived");
    let bulk_first = order[..last_urgent]
        .iter()
        .filter(|id| bulk.contains(*id))
        .count();
    let overtaken = bulk_first - before;
    assert!(
        overtaken <= backlog / 2,
        "{overtaken} of a backlog of {backlog} bulk messages went out before the last \
         transactional one: {order:?}"
    );

    // The backlog drains (40 at 5/s ≈ 8 s), nothing lost or doubled.
    eventually("every message sent", Duration::from_secs(45), || {
        sim.recorder().count() >= BULK + URGENT
    })
    .await;
    for id in bulk.iter().chain(&urgent) {
        let m = app.wait_for_status(id, "delivered", SOON).await;
        assert_eq!(sim.recorder().find_by_message(id).len(), 1, "{m:#}");
    }
    assert_eq!(sim.recorder().count(), BULK + URGENT);
}
