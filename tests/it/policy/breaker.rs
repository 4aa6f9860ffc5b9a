//! The circuit breaker: failures open it and traffic fails over to the route's next connection;
//! after the cool-down one probe goes to the first connection, and a probe that fails, is
//! refused (the provider is up) or never reaches the provider (opted out) never leaves the
//! circuit half-open for ever.

use super::*;
use serde_json::json;
use std::sync::atomic::Ordering;

/// Twilio's magic invalid number (21211).
const MAGIC_INVALID: &str = "+15005550001";

fn circuit(conn: &str) -> String {
    format!("weft_connection_circuit_open{{connection=\"{conn}\"}}")
}

async fn wait_metric(app: &TestApp, series: &str, want: f64) {
    let deadline = Instant::now() + SOON;
    loop {
        let v = app.metric(series).await;
        if v == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{series} is {v}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A front for a simulator that answers 503 (Twilio's error JSON) while it is set down and
/// forwards everything otherwise.
type OutageProxy = FlakyProxy;

async fn outage_proxy(target: String) -> OutageProxy {
    flaky_proxy(target, 0, Duration::ZERO).await
}

// --- failover on exhausted retries -------------------------------------------------------------

/// With a breaker that never opens, a connection that keeps failing uses up its
/// `max_attempts` (6 in the test config) and the message fails over to the route's next
/// connection; a route of one connection ends `failed` after its 6.
pub(super) async fn exhausted_retries_fail_over_to_the_next_connection(backend: Backend) {
    let sim_a = twilio_sim().await;
    let sim_b = twilio_sim().await;
    let sim_c = twilio_sim().await;
    let proxy = outage_proxy(sim_a.base_url()).await;
    let proxy_c = outage_proxy(sim_c.base_url()).await;
    proxy.set_down(true);
    proxy_c.set_down(true);
    let a = conn_id(backend, "exh-a");
    let b = conn_id(backend, "exh-b");
    let c = conn_id(backend, "exh-c");
    let extra = format!(
        r#"{}{}{}
[[routes]]
prefix = "+1415"
connections = ["{a}", "{b}"]

[[routes]]
prefix = "+1303"
connections = ["{c}"]

[breaker]
failure_threshold = 1000
open_seconds = 30
"#,
        twilio_conn(&a, &proxy.base_url, &sim_a, &["sms"]),
        twilio_conn(&b, &sim_b.base_url(), &sim_b, &["sms"]),
        twilio_conn(&c, &proxy_c.base_url, &sim_c, &["sms"]),
    );
    let setup = Setup {
        twilio: false,
        extra_toml: extra,
        ..Setup::default()
    };
    let app = spawn_app(backend, setup).await;

    let id = id_of(&app.send_sms(TO, "fail over after retries").await);
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let at = attempts(&m);
    assert_eq!(at.len(), 7, "six tries on A, then B: {m:#}");
    for x in &at[..6] {
        assert_eq!(x["connection"], a.as_str(), "{m:#}");
        assert_eq!(x["outcome"], "retry", "{m:#}");
    }
    assert_eq!(at[6]["connection"], b.as_str(), "{m:#}");
    assert_eq!(at[6]["outcome"], "queued", "{m:#}");
    assert!(
        at[5]["error_detail"]
            .as_str()
            .is_some_and(|d| d.contains("failing over")),
        "{m:#}"
    );
    assert_eq!(sim_b.recorder().find_by_message(&id).len(), 1);
    assert!(sim_a.recorder().find_by_message(&id).is_empty());
    assert_eq!(proxy.served_503.load(Ordering::SeqCst), 6);

    // Nowhere left to go: the budget is the route's, not more.
    let lone = id_of(&app.send_sms("+13035550100", "no second connection").await);
    let m = app.wait_for_status(&lone, "failed", SOON).await;
    assert_eq!(attempts(&m).len(), 6, "{m:#}");
    assert_eq!(m["error"]["reason"], "retries_exhausted", "{m:#}");
    assert!(sim_c.recorder().find_by_message(&lone).is_empty());
}

// --- circuit breaker ---------------------------------------------------------------------------

struct BreakerRig {
    app: TestApp,
    sim_a: Simulator,
    sim_b: Simulator,
    proxy: OutageProxy,
    a: String,
    b: String,
}

/// Two Twilio connections in one route, the first behind an outage proxy; the breaker opens
/// after 3 failures for 2 s.
async fn breaker_rig(backend: Backend, name: &str) -> BreakerRig {
    let sim_a = twilio_sim().await;
    let sim_b = twilio_sim().await;
    let proxy = outage_proxy(sim_a.base_url()).await;
    let a = conn_id(backend, &format!("{name}-a"));
    let b = conn_id(backend, &format!("{name}-b"));
    let extra = format!(
        r#"{}{}
[[routes]]
channel = "sms"
connections = ["{a}", "{b}"]

[breaker]
failure_threshold = 3
open_seconds = 2
{}"#,
        twilio_conn(&a, &proxy.base_url, &sim_a, &["sms"]),
        twilio_conn(&b, &sim_b.base_url(), &sim_b, &["sms"]),
        consent_toml(None),
    );
    let setup = Setup {
        twilio: false,
        extra_toml: extra,
        ..Setup::default()
    };
    let app = spawn_app(backend, setup).await;
    BreakerRig {
        app,
        sim_a,
        sim_b,
        proxy,
        a,
        b,
    }
}

impl BreakerRig {
    /// Takes the first connection down until three sends failed on it and its circuit is
    /// open; returns those sends' ids and when the circuit was seen open.
    async fn open_circuit(&self, tag: &str) -> (Vec<String>, Instant) {
        self.proxy.set_down(true);
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(id_of(
                &self.app.send_sms(TO, &format!("{tag} outage {i}")).await,
            ));
        }
        wait_metric(&self.app, &circuit(&self.a), 1.0).await;
        (ids, Instant::now())
    }

    /// Each message delivered, reached a provider exactly once, A only ever failing.
    async fn assert_failed_over(&self, ids: &[String]) {
        for id in ids {
            let m = self.app.wait_for_status(id, "delivered", SOON).await;
            let at = attempts(&m);
            let last = at.last().expect("an attempt");
            assert_eq!(last["connection"], self.b.as_str(), "{m:#}");
            assert_eq!(last["outcome"], "queued", "{m:#}");
            for x in &at[..at.len() - 1] {
                assert_eq!(x["connection"], self.a.as_str(), "{m:#}");
                assert_eq!(x["outcome"], "retry", "{m:#}");
            }
            assert_eq!(self.sim_b.recorder().find_by_message(id).len(), 1);
            assert!(self.sim_a.recorder().find_by_message(id).is_empty());
        }
    }
}

pub(super) async fn circuit_opens_fails_over_and_closes_after_recovery(backend: Backend) {
    let rig = breaker_rig(backend, "brk").await;
    let app = &rig.app;
    let (a, b) = (rig.a.as_str(), rig.b.as_str());
    let mut all = Vec::new();

    // Healthy: the route's first connection takes the traffic.
    for i in 0..3 {
        let id =
            assert_delivered_via(app, json!({"to": TO, "body": format!("healthy {i}")}), a).await;
        all.push(id);
    }
    assert_eq!(app.metric(&circuit(a)).await, 0.0);

    // Outage: 503s open the circuit; the failed messages are retried on the second one.
    let (outage, opened) = rig.open_circuit("main").await;
    // While open, new traffic goes straight to the second connection.
    let mut while_open = Vec::new();
    for i in 0..3 {
        while_open.push(id_of(&app.send_sms(TO, &format!("while open {i}")).await));
    }
    let sent_open = opened.elapsed();
    rig.assert_failed_over(&outage).await;
    let with_a_attempt = {
        let mut n = 0;
        for id in &outage {
            if connections_of(&app.get_message(id).await).contains(&a.to_string()) {
                n += 1;
            }
        }
        n
    };
    assert!(with_a_attempt >= 3, "three failures opened the circuit");
    if sent_open < Duration::from_millis(1500) {
        for id in &while_open {
            let m = app.wait_for_status(id, "delivered", SOON).await;
            assert_eq!(
                connections_of(&m),
                [b],
                "no attempt on an open circuit: {m:#}"
            );
        }
    }
    all.extend(outage);
    all.extend(while_open);

    // After the cool-down one probe goes to the first connection; still down, it fails and the
    // circuit opens again; the message fails over.
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(opened.elapsed())).await;
    let probe = id_of(&app.send_sms(TO, "probe while down").await);
    let m = app.wait_for_status(&probe, "delivered", SOON).await;
    assert_eq!(connections_of(&m), [a, b], "{m:#}");
    assert_eq!(
        app.metric(&circuit(a)).await,
        1.0,
        "the failed probe re-opened it"
    );
    let reopened = Instant::now();
    all.push(probe);

    // Recovery: the next probe succeeds, the circuit closes, traffic returns.
    rig.proxy.set_down(false);
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(reopened.elapsed())).await;
    all.push(assert_delivered_via(app, json!({"to": TO, "body": "probe after recovery"}), a).await);
    wait_metric(app, &circuit(a), 0.0).await;
    for i in 0..3 {
        all.push(
            assert_delivered_via(app, json!({"to": TO, "body": format!("recovered {i}")}), a).await,
        );
    }

    // Nothing lost, nothing doubled.
    for id in &all {
        app.wait_for_status(id, "delivered", SOON).await;
        assert_eq!(
            provider_copies(&[&rig.sim_a, &rig.sim_b], id),
            1,
            "{id} reached a provider exactly once"
        );
    }
    assert!(rig.sim_a.recorder().duplicates().is_empty());
    assert!(rig.sim_b.recorder().duplicates().is_empty());
    assert!(rig.proxy.served_503.load(Ordering::SeqCst) >= 4);
}

/// A half-open probe answered with a permanent error (the provider is up) closes the circuit,
/// and a probe slot taken by a send that never reached the provider (opted out) is given back:
/// neither leaves the connection half-open for ever.
pub(super) async fn circuit_closes_when_the_probe_is_refused_or_skipped(backend: Backend) {
    let rig = breaker_rig(backend, "probe").await;
    let app = &rig.app;
    let a = rig.a.as_str();

    // The customer opts out (the STOP reply goes out through the first connection).
    sms_in(app, &rig.sim_a, a, "STOP").await;
    wait_received(&rig.sim_a, CUSTOMER, STOP_REPLY, 1).await;

    // 1. The probe hits Twilio's magic invalid number: 400, code 21211.
    let (ids, opened) = rig.open_circuit("refused").await;
    rig.assert_failed_over(&ids).await;
    rig.proxy.set_down(false);
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(opened.elapsed())).await;
    let refused = id_of(&app.send_sms(MAGIC_INVALID, "the probe").await);
    let m = app.wait_for_status(&refused, "rejected", SOON).await;
    assert_eq!(
        connections_of(&m),
        [a],
        "the probe went to the first connection: {m:#}"
    );
    assert_eq!(m["error"]["code"], "21211", "{m:#}");
    assert_delivered_via(app, json!({"to": TO, "body": "after a refused probe"}), a).await;
    wait_metric(app, &circuit(a), 0.0).await;

    // 2. The first send after the cool-down is to the opted-out customer: no provider call.
    let (ids, opened) = rig.open_circuit("skipped").await;
    rig.assert_failed_over(&ids).await;
    rig.proxy.set_down(false);
    tokio::time::sleep(Duration::from_millis(2500).saturating_sub(opened.elapsed())).await;
    assert_blocked(
        app,
        &[&rig.sim_a, &rig.sim_b],
        json!({"to": CUSTOMER, "body": "blocked"}),
    )
    .await;
    assert_delivered_via(app, json!({"to": TO, "body": "after a skipped probe"}), a).await;
    wait_metric(app, &circuit(a), 0.0).await;
}
