//! Delivery policy (DESIGN.md §4, issue 6): routes by country, prefix and weight; the circuit
//! breaker with failover and recovery; channel fallback WhatsApp → SMS on a permanent failure
//! and on a timeout, with a late receipt that is recorded but never sent again; the consent
//! ledger (STOP / START / HELP per scope, provider opt-outs); a provider's `Retry-After` and the
//! tenant rate limit; `send_at`, `valid_until`, connection pins and priority.
//!
//! Simulators: Twilio (one per connection where a test needs to tell connections apart),
//! WhatsApp Cloud. Connection ids that appear in `/metrics` carry the backend in their name:
//! the metrics registry is process-wide and both backends run at once.

use crate::helpers::*;
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_simkit::CallbackBehaviour;
use weft_twilio::simulator::{Simulator, SimulatorConfig, WhatsappInbound};

backend_tests!(
    country_and_prefix_routes_pick_the_connection,
    weights_split_traffic_seventy_thirty,
    circuit_opens_fails_over_and_closes_after_recovery,
    circuit_closes_when_the_probe_is_refused_or_skipped,
    fallback_whatsapp_to_sms_on_permanent_failure,
    fallback_whatsapp_to_sms_on_timeout_and_late_receipt_is_only_recorded,
    stop_on_sms_blocks_sms_only_with_channel_scope,
    stop_with_sender_scope_blocks_only_that_number,
    stop_with_contact_scope_blocks_every_channel,
    provider_opt_out_blocks_the_very_next_send,
    provider_retry_after_is_honoured,
    tenant_rate_limit_is_429_with_retry_after,
    send_at_valid_until_pin_and_priority,
);

/// The customer who answers STOP, START and HELP.
const CUSTOMER: &str = "+14155550123";
const DE_MOBILE: &str = "+4915112345678";
const GB_MOBILE: &str = "+447911123456";
const FR_MOBILE: &str = "+33612345678";
/// Another number of the business (sender scope).
const OTHER_SENDER: &str = "+15005550010";
/// Twilio's magic recipients: invalid number (21211), unsubscribed (21610).
const MAGIC_INVALID: &str = "+15005550001";
const MAGIC_OPTED_OUT: &str = "+15005550004";
/// A Twilio connection on the harness's simulator that sends WhatsApp.
const TWILIO_WA: &str = "twilio-wa";
const WA_CONN: &str = "wa-sim";

const STOP_REPLY: &str = "policy-test: unsubscribed, reply START to come back";
const START_REPLY: &str = "policy-test: subscribed again";
const HELP_REPLY: &str = "policy-test: reply STOP to unsubscribe";

// --- harness ---------------------------------------------------------------------------------

async fn twilio_sim() -> Simulator {
    Simulator::start(SimulatorConfig::default())
        .await
        .expect("start a Twilio simulator")
}

/// A `[[connections]]` entry for a Twilio simulator reached at `base_url`.
fn twilio_conn(id: &str, base_url: &str, sim: &Simulator, channels: &[&str]) -> String {
    let channels = channels
        .iter()
        .map(|c| format!("\"{c}\""))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        r#"
[[connections]]
id = "{id}"
provider = "twilio"
tenant = "{TENANT}"
base_url = "{base_url}"
senders = ["{SENDER}"]
channels = [{channels}]
[connections.credentials]
account_sid = "{sid}"
auth_token = "{token}"
"#,
        sid = sim.account_sid(),
        token = sim.auth_token(),
    )
}

/// The WhatsApp Cloud connection (sender: the number itself, as threading expects).
fn whatsapp_conn(sim: &weft_whatsapp::simulator::Simulator) -> String {
    let c = sim.config();
    format!(
        r#"
[[connections]]
id = "{WA_CONN}"
provider = "whatsapp_cloud"
tenant = "{TENANT}"
base_url = "{base}"
senders = ["+{display}"]
channels = ["whatsapp"]
[connections.credentials]
access_token = "{token}"
app_secret = "{secret}"
verify_token = "{verify}"
[connections.settings]
phone_number_id = "{pnid}"
"#,
        base = sim.base_url(),
        display = c.display_phone_number,
        token = c.access_token,
        secret = c.app_secret,
        verify = c.verify_token,
        pnid = c.phone_number_id,
    )
}

/// Consent replies of these tests, and a scope override for the tenant if given.
fn consent_toml(scope: Option<&str>) -> String {
    let mut t = format!(
        r#"
[consent]
stop_reply = "{STOP_REPLY}"
start_reply = "{START_REPLY}"
help_reply = "{HELP_REPLY}"
"#
    );
    if let Some(s) = scope {
        t.push_str(&format!("[consent.tenants.{TENANT}]\nscope = \"{s}\"\n"));
    }
    t
}

fn with_extra(extra: String) -> Setup {
    Setup {
        extra_toml: extra,
        ..Setup::twilio()
    }
}

/// A connection id unique to this backend's run (metrics are process-wide).
fn conn_id(b: Backend, name: &str) -> String {
    let suffix = match b {
        Backend::Sqlite => "lite",
        Backend::Postgres => "pg",
    };
    format!("{name}-{suffix}")
}

fn circuit(conn: &str) -> String {
    format!("weft_connection_circuit_open{{connection=\"{conn}\"}}")
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_string()
}

fn attempts(m: &Value) -> Vec<Value> {
    m["attempts"].as_array().cloned().unwrap_or_default()
}

/// The connection of every attempt, in order.
fn connections_of(m: &Value) -> Vec<String> {
    attempts(m)
        .iter()
        .map(|a| a["connection"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// `POST /v1/messages`, insisting on 202.
async fn send(app: &TestApp, body: Value) -> String {
    let resp = app.post_message(&body).await;
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 202, "send {body}: {v}");
    id_of(&v)
}

/// `POST /v1/messages`, insisting on 422 naming `field`.
async fn send_invalid(app: &TestApp, body: Value, field: &str) {
    let p = assert_problem(app.post_message(&body).await, 422, "validation").await;
    assert!(
        error_fields(&p).iter().any(|f| f == field),
        "422 for {body} should name {field}: {p}"
    );
}

/// `GET path`, insisting on 200.
async fn get_json(app: &TestApp, path: &str) -> Value {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(&app.key)
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "GET {path}: {v}");
    v
}

/// Polls `cond` every 20 ms until it holds; panics after `timeout`.
async fn eventually(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "not {what} after {timeout:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
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

/// How many times the simulators accepted a message (across all of them).
fn provider_copies(sims: &[&Simulator], id: &str) -> usize {
    sims.iter()
        .map(|s| s.recorder().find_by_message(id).len())
        .sum()
}

/// A front for a simulator that answers 503 (Twilio's error JSON) while `down` is set and
/// forwards everything otherwise.
struct OutageProxy {
    base_url: String,
    down: Arc<AtomicBool>,
    served_503: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for OutageProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OutageProxy {
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

async fn outage_proxy(target: String) -> OutageProxy {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaders, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    #[derive(Clone)]
    struct S {
        target: String,
        down: Arc<AtomicBool>,
        served: Arc<AtomicU32>,
        client: reqwest::Client,
    }

    async fn handle(
        State(s): State<S>,
        method: Method,
        uri: Uri,
        headers: AxHeaders,
        body: Bytes,
    ) -> axum::response::Response {
        if s.down.load(Ordering::SeqCst) {
            s.served.fetch_add(1, Ordering::SeqCst);
            let body = json!({"code": 20503, "message": "Service Unavailable", "more_info": "https://www.twilio.com/docs/errors/20503", "status": 503});
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("content-type", "application/json")],
                body.to_string(),
            )
                .into_response();
        }
        let url = format!(
            "{}{}",
            s.target,
            uri.path_and_query().map(|p| p.as_str()).unwrap_or("/")
        );
        let mut req = s
            .client
            .request(
                reqwest::Method::from_bytes(method.as_str().as_bytes()).expect("method"),
                url,
            )
            .body(body.to_vec());
        for name in ["authorization", "content-type", "user-agent"] {
            if let Some(v) = headers.get(name).and_then(|v| v.to_str().ok()) {
                req = req.header(name, v);
            }
        }
        match req.send().await {
            Ok(r) => {
                let status = StatusCode::from_u16(r.status().as_u16()).expect("status");
                let ct = r
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("application/json")
                    .to_string();
                let bytes = r.bytes().await.unwrap_or_default();
                (status, [("content-type", ct)], bytes.to_vec()).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }

    let down = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU32::new(0));
    let state = S {
        target,
        down: down.clone(),
        served: served.clone(),
        client: reqwest::Client::new(),
    };
    let router = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    OutageProxy {
        base_url: format!("http://{addr}"),
        down,
        served_503: served,
        task,
    }
}

/// Posts a signed inbound SMS from the customer to the business number on `conn`.
async fn sms_in(app: &TestApp, sim: &Simulator, conn: &str, body: &str) {
    let url = app.url(&format!("/webhooks/twilio/{conn}/inbound"));
    let r = sim
        .send_inbound_sms(&url, CUSTOMER, SENDER, body, &[])
        .await
        .expect("post the inbound SMS");
    assert_eq!(r.status, 200, "inbound {body:?}: {}", r.body);
}

/// The customer writes on WhatsApp through Twilio on `conn` (opens the 24-hour window in
/// which free-form WhatsApp messages may go out).
async fn whatsapp_in(app: &TestApp, sim: &Simulator, conn: &str, from: &str) {
    let url = app.url(&format!("/webhooks/twilio/{conn}/inbound"));
    let r = sim
        .send_inbound_whatsapp(&url, from, SENDER, "hi", WhatsappInbound::default())
        .await
        .expect("post the inbound WhatsApp");
    assert_eq!(r.status, 200, "inbound WhatsApp: {}", r.body);
}

/// How many sends reached `sim` for `to` with exactly `body`.
fn received(sim: &Simulator, to: &str, body: &str) -> usize {
    sim.recorder()
        .all()
        .iter()
        .filter(|r| r.to.trim_start_matches("whatsapp:") == to && r.body.as_deref() == Some(body))
        .count()
}

/// Waits until the simulator got `n` sends of `body` to `to` (auto-replies).
async fn wait_received(sim: &Simulator, to: &str, body: &str, n: usize) {
    eventually(&format!("{n} × {body:?} to {to}"), SOON, || {
        received(sim, to, body) >= n
    })
    .await;
    assert_eq!(received(sim, to, body), n, "{body:?} to {to} sent once");
}

/// The contact a message's conversation belongs to.
async fn contact_of(app: &TestApp, message_id: &str) -> String {
    let m = app.get_message(message_id).await;
    let conv = m["conversation_id"].as_str().expect("conversation_id");
    let c = get_json(app, &format!("/v1/conversations/{conv}")).await;
    c["contact_id"].as_str().expect("contact_id").to_string()
}

/// `GET /v1/contacts/{id}/consent`.
async fn ledger(app: &TestApp, contact: &str) -> Vec<Value> {
    get_json(app, &format!("/v1/contacts/{contact}/consent")).await["data"]
        .as_array()
        .cloned()
        .expect("consent data")
}

/// The one ledger entry with this subject and scope.
fn entry<'a>(entries: &'a [Value], subject: &str, scope: &str) -> &'a Value {
    let found: Vec<&Value> = entries
        .iter()
        .filter(|e| e["subject"] == subject && e["scope"] == scope)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "one {scope} entry for {subject}: {entries:#?}"
    );
    found[0]
}

/// Sends `body` and insists it ends `rejected` / `opted_out` without any provider call.
async fn assert_blocked(app: &TestApp, sims: &[&Simulator], body: Value) -> String {
    let id = send(app, body).await;
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "opted_out", "{m:#}");
    assert!(
        attempts(&m).is_empty(),
        "an opted-out send makes no attempt: {m:#}"
    );
    assert_eq!(provider_copies(sims, &id), 0, "no provider saw {id}");
    id
}

/// Sends `body` and insists it is delivered through `conn`.
async fn assert_delivered_via(app: &TestApp, body: Value, conn: &str) -> String {
    let id = send(app, body).await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_eq!(connections_of(&m), [conn], "{m:#}");
    id
}

fn rfc3339_in(d: Duration) -> (String, i128) {
    let t = time::OffsetDateTime::now_utc() + d;
    let s = t
        .format(&time::format_description::well_known::Rfc3339)
        .expect("format");
    (s, t.unix_timestamp_nanos() / 1_000_000)
}

// --- routing ---------------------------------------------------------------------------------

async fn country_and_prefix_routes_pick_the_connection(b: Backend) {
    let de = twilio_sim().await;
    let mut extra = twilio_conn("twilio-de", &de.base_url(), &de, &["sms"]);
    extra.push_str(&twilio_conn(
        "twilio-de-wa",
        &de.base_url(),
        &de,
        &["whatsapp"],
    ));
    extra.push_str(&format!(
        r#"
[[routes]]
channel = "sms"
country = "de"
connections = ["twilio-de"]

[[routes]]
prefix = "+44"
connections = ["twilio-de", "{TWILIO_CONN}"]

[[routes]]
country = "FR"
connections = ["twilio-de-wa"]

[[routes]]
channel = "sms"
connections = ["{TWILIO_CONN}"]
"#
    ));
    let app = spawn_app(b, with_extra(extra)).await;
    let cases = [
        (DE_MOBILE, "twilio-de"),
        (GB_MOBILE, "twilio-de"),
        (TO, TWILIO_CONN),
        (CUSTOMER, TWILIO_CONN),
    ];
    let mut ids = Vec::new();
    for (to, _) in cases {
        ids.push(id_of(&app.send_sms(to, "routed").await));
    }
    for ((to, want), id) in cases.iter().zip(&ids) {
        let m = app.wait_for_status(id, "delivered", SOON).await;
        assert_eq!(connections_of(&m), [*want], "{to}: {m:#}");
        let (on, off) = if *want == "twilio-de" {
            (&de, app.sim())
        } else {
            (app.sim(), &de)
        };
        let got = on.recorder().find_by_message(id);
        assert_eq!(got.len(), 1, "{to} reached {want} once");
        assert_eq!(got[0].to, *to);
        assert!(off.recorder().find_by_message(id).is_empty(), "{to}");
    }
    // France: the rule's only connection cannot send SMS, so there is no route.
    let id = id_of(&app.send_sms(FR_MOBILE, "nowhere to go").await);
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "no_route", "{m:#}");
    assert!(attempts(&m).is_empty(), "{m:#}");
    assert_eq!(provider_copies(&[&de, app.sim()], &id), 0);
}

/// Weights [70, 30]: 10,000 route decisions through a `Registry` built from the same config
/// (±3 %), and 300 real sends through the API (a looser ±10 %, ≈ 3.8 σ).
async fn weights_split_traffic_seventy_thirty(b: Backend) {
    let sim_b = twilio_sim().await;
    let routes = format!(
        r#"
[[routes]]
channel = "sms"
connections = ["{TWILIO_CONN}", "twilio-b"]
weights = [70, 30]
"#
    );
    let extra = format!(
        "{}{routes}",
        twilio_conn("twilio-b", &sim_b.base_url(), &sim_b, &["sms"])
    );
    let app = spawn_app(b, with_extra(extra.clone())).await;

    // 1. Route decisions alone.
    let toml = format!(
        "[sandbox]\nenabled = false\n{}{extra}",
        twilio_conn(TWILIO_CONN, &app.sim().base_url(), app.sim(), &["sms"])
    );
    let cfg = weft::config::Config::from_toml(&toml).expect("routing config");
    let registry = weft::providers::Registry::new(
        cfg.connections().expect("connections"),
        &cfg.routes,
        &cfg.breaker,
    )
    .expect("registry");
    let tenant = [TENANT];
    let target = weft::policy::routing::Target {
        tenant: &tenant,
        channel: weft_provider::Channel::Sms,
        to: TO,
        sender: None,
    };
    let n = 10_000;
    let mut first_a = 0usize;
    for _ in 0..n {
        let order: Vec<String> = registry
            .select(&target, None)
            .iter()
            .map(|l| l.id().to_string())
            .collect();
        assert_eq!(order.len(), 2, "the other connection stays as failover");
        assert_ne!(order[0], order[1]);
        if order[0] == TWILIO_CONN {
            first_a += 1;
        }
    }
    let share = first_a as f64 / n as f64;
    assert!(
        (0.67..=0.73).contains(&share),
        "{TWILIO_CONN} got {share:.4} of {n} decisions, expected 0.70 ± 0.03"
    );

    // 2. Real sends.
    let total = 300usize;
    let ids: Vec<String> = futures::stream::iter(0..total)
        .map(|i| {
            let app = &app;
            async move { send(app, json!({"to": TO, "body": format!("split {i}")})).await }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    let (sa, sb) = (app.sim(), &sim_b);
    eventually("every split send taken", SOON, || {
        sa.recorder().count() + sb.recorder().count() >= total
    })
    .await;
    assert_eq!(sa.recorder().count() + sb.recorder().count(), total);
    assert!(sa.recorder().duplicates().is_empty() && sb.recorder().duplicates().is_empty());
    let per_conn: Vec<String> = futures::stream::iter(ids.iter())
        .map(|id| {
            let app = &app;
            async move {
                let m = app
                    .wait_until(id, SOON, "taken", |m| {
                        attempts(m)
                            .first()
                            .is_some_and(|a| a["outcome"] == "queued")
                    })
                    .await;
                let conns = connections_of(&m);
                assert_eq!(conns.len(), 1, "{m:#}");
                let sim = if conns[0] == TWILIO_CONN { sa } else { sb };
                assert_eq!(sim.recorder().find_by_message(id).len(), 1, "{m:#}");
                conns[0].clone()
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let mut tally: HashMap<String, usize> = HashMap::new();
    for c in per_conn {
        *tally.entry(c).or_default() += 1;
    }
    let a = tally.get(TWILIO_CONN).copied().unwrap_or(0);
    let real_share = a as f64 / total as f64;
    assert_eq!(a, sa.recorder().count(), "{tally:?}");
    assert!(
        (0.60..=0.80).contains(&real_share),
        "{TWILIO_CONN} got {a} of {total} sends ({tally:?}), expected 0.70 ± 0.10"
    );
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

async fn circuit_opens_fails_over_and_closes_after_recovery(backend: Backend) {
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
async fn circuit_closes_when_the_probe_is_refused_or_skipped(backend: Backend) {
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

// --- channel fallback --------------------------------------------------------------------------

type WaSim = weft_whatsapp::simulator::Simulator;

/// A WhatsApp Cloud connection that never reports a status by itself, and the harness's
/// Twilio for SMS.
async fn fallback_app(b: Backend) -> (TestApp, WaSim) {
    let wa = WaSim::start(weft_whatsapp::simulator::SimulatorConfig::default())
        .await
        .expect("start the WhatsApp Cloud simulator");
    wa.callbacks().set_behaviour(CallbackBehaviour::Silent);
    let app = spawn_app(b, with_extra(whatsapp_conn(&wa))).await;
    wa.set_webhook_url(Some(
        app.url(&format!("/webhooks/whatsapp_cloud/{WA_CONN}/webhook")),
    ));
    // The customer wrote first: free-form WhatsApp messages are allowed.
    let r = wa
        .send_inbound_text(CUSTOMER.trim_start_matches('+'), "hi", None, false)
        .await
        .expect("post the inbound WhatsApp");
    assert_eq!(r.status, 200, "inbound WhatsApp: {}", r.body);
    (app, wa)
}

/// A signed Cloud API status webhook for the message the simulator accepted for `message_id`.
async fn wa_status(wa: &WaSim, message_id: &str, status: &str, error_code: Option<i64>) {
    let got = wa.recorder().find_by_message(message_id);
    let sent = got.first().expect("the simulator has the WhatsApp message");
    let c = wa.config();
    let mut s = json!({
        "id": sent.provider_id,
        "status": status,
        "timestamp": (time::OffsetDateTime::now_utc().unix_timestamp()).to_string(),
        "recipient_id": sent.to,
        "biz_opaque_callback_data": sent.raw["biz_opaque_callback_data"],
    });
    if let Some(code) = error_code {
        s["errors"] = json!([{
            "code": code,
            "title": "Message undeliverable",
            "message": "Message undeliverable",
            "error_data": {"details": "Unable to deliver message."},
        }]);
    }
    let body = json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": c.waba_id, "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": c.display_phone_number, "phone_number_id": c.phone_number_id},
            "statuses": [s],
        }}]}],
    });
    let r = wa.post_webhook(body).await.expect("post the status");
    assert_eq!(r.status, 200, "status webhook: {}", r.body);
}

/// The attempts of a fallen-back message: `wa_tries` on the WhatsApp Cloud connection, then
/// one SMS on Twilio, numbered in order; each provider took it once.
fn assert_whatsapp_then_sms(app: &TestApp, wa: &WaSim, m: &Value, wa_tries: usize) {
    let at = attempts(m);
    assert_eq!(at.len(), wa_tries + 1, "{m:#}");
    for (i, a) in at.iter().enumerate() {
        assert_eq!(
            a["seq"],
            i as i64 + 1,
            "attempts are numbered per message: {m:#}"
        );
    }
    for a in &at[..wa_tries] {
        assert_eq!(a["channel"], "whatsapp", "{m:#}");
        assert_eq!(a["connection"], WA_CONN, "{m:#}");
    }
    assert!(at[wa_tries - 1]["provider_ids"][0].is_string(), "{m:#}");
    let sms = &at[wa_tries];
    assert_eq!(sms["channel"], "sms", "{m:#}");
    assert_eq!(sms["connection"], TWILIO_CONN, "{m:#}");
    assert_eq!(sms["outcome"], "queued", "{m:#}");
    let id = m["id"].as_str().unwrap_or_default();
    assert_eq!(wa.recorder().find_by_message(id).len(), 1);
    let got = app.sim().recorder().find_by_message(id);
    assert_eq!(got.len(), 1, "one SMS");
    assert_eq!(got[0].to, CUSTOMER, "the SMS goes to the same number");
    assert!(m["error"].is_null(), "{m:#}");
}

/// Exactly one `delivered` changed the message.
fn assert_delivered_once(m: &Value) {
    let hist = m["status_history"].as_array().expect("history");
    assert_eq!(
        hist.iter()
            .filter(|h| h["status"] == "delivered" && h["applied"] == true)
            .count(),
        1,
        "delivered counts once: {m:#}"
    );
}

async fn fallback_whatsapp_to_sms_on_permanent_failure(b: Backend) {
    // 1. Meta takes the message (after one 500), then reports it failed for good (131026:
    //    not a WhatsApp user).
    let (app, wa) = fallback_app(b).await;
    wa.faults().set_error_rate(1.0);
    let body = json!({
        "to": format!("whatsapp:{CUSTOMER}"),
        "body": "your code is 1234",
        "fallback": ["sms"],
    });
    let id = send(&app, body).await;
    app.wait_until(&id, SOON, "retried on WhatsApp", |m| {
        attempts(m).first().is_some_and(|a| a["outcome"] == "retry")
    })
    .await;
    wa.faults().set_error_rate(0.0);
    app.wait_until(&id, SOON, "taken by WhatsApp", |m| {
        attempts(m).last().is_some_and(|a| a["outcome"] == "queued")
    })
    .await;
    wa_status(&wa, &id, "failed", Some(131026)).await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_whatsapp_then_sms(&app, &wa, &m, 2);
    assert_eq!(attempts(&m)[0]["outcome"], "retry", "{m:#}");
    let hist = m["status_history"].as_array().expect("history");
    assert!(
        hist.iter().any(|h| h["raw_status"]
            .as_str()
            .is_some_and(|r| r.starts_with("fallback:"))
            && h["error_code"] == "131026"
            && h["applied"] == false),
        "the WhatsApp failure stays in the history: {m:#}"
    );
    assert_delivered_once(&m);
    drop(app);

    // 2. Refused at submit: WhatsApp through Twilio to its magic "not reachable" number
    //    (21612); the SMS goes through the sandbox, which delivers that number.
    let sim = twilio_sim().await;
    let extra = format!(
        "{}\n[[routes]]\nchannel = \"sms\"\nconnections = [\"sandbox\"]\n",
        twilio_conn(TWILIO_WA, &sim.base_url(), &sim, &["whatsapp"])
    );
    let setup = Setup {
        sandbox: true,
        extra_toml: extra,
        ..Setup::twilio()
    };
    let app = spawn_app_with(b, setup, Some(sim)).await;
    whatsapp_in(&app, app.sim(), TWILIO_WA, "+15005550002").await;
    let id = send(
        &app,
        json!({"to": "whatsapp:+15005550002", "body": "refused at submit", "fallback": ["sms"]}),
    )
    .await;
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    let at = attempts(&m);
    assert_eq!(at.len(), 2, "{m:#}");
    assert_eq!(
        (
            &at[0]["channel"],
            &at[0]["connection"],
            &at[0]["outcome"],
            &at[0]["error_code"]
        ),
        (
            &json!("whatsapp"),
            &json!(TWILIO_WA),
            &json!("rejected"),
            &json!("21612")
        ),
        "{m:#}"
    );
    assert_eq!(
        (&at[1]["channel"], &at[1]["connection"], &at[1]["outcome"]),
        (&json!("sms"), &json!("sandbox"), &json!("queued")),
        "{m:#}"
    );
    assert!(app.sim().recorder().find_by_message(&id).is_empty());
    assert!(m["error"].is_null(), "{m:#}");
    assert_delivered_once(&m);
}

async fn fallback_whatsapp_to_sms_on_timeout_and_late_receipt_is_only_recorded(b: Backend) {
    let (app, wa) = fallback_app(b).await;
    let body = json!({
        "to": format!("whatsapp:{CUSTOMER}"),
        "body": "your parcel arrives today",
        "fallback": ["sms"],
        "fallback_after": 1,
    });
    let id = send(&app, body).await;
    // WhatsApp takes it but never says `delivered`: after 1 s the SMS goes out.
    let m = app.wait_for_status(&id, "delivered", SOON).await;
    assert_whatsapp_then_sms(&app, &wa, &m, 1);
    let at = attempts(&m);
    let waited = unix_ms(&at[1]["started_at"]) - unix_ms(&at[0]["finished_at"]);
    assert!(
        waited >= 990,
        "the SMS waited fallback_after (1 s), not {waited} ms: {m:#}"
    );
    assert!(
        m["status_history"]
            .as_array()
            .expect("history")
            .iter()
            .any(|h| h["raw_status"] == "fallback: no_delivery"),
        "{m:#}"
    );

    // The WhatsApp receipt arrives late: recorded, not applied again, nothing resent.
    wa_status(&wa, &id, "delivered", None).await;
    let m = app
        .wait_until(&id, SOON, "late receipt recorded", |m| {
            m["status_history"].as_array().is_some_and(|h| {
                h.iter()
                    .any(|e| e["status"] == "delivered" && e["connection"] == WA_CONN)
            })
        })
        .await;
    let hist = m["status_history"].as_array().expect("history");
    let late = hist
        .iter()
        .find(|e| e["status"] == "delivered" && e["connection"] == WA_CONN)
        .expect("late entry");
    assert_eq!(late["applied"], false, "{m:#}");
    assert_delivered_once(&m);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let m = app.get_message(&id).await;
    assert_eq!(m["status"], "delivered");
    assert_eq!(attempts(&m).len(), 2, "no third attempt: {m:#}");
    assert_eq!(wa.recorder().find_by_message(&id).len(), 1);
    assert_eq!(app.sim().recorder().find_by_message(&id).len(), 1);
}

// --- consent -------------------------------------------------------------------------------------

/// The harness's Twilio for SMS, a second connection on the same simulator for WhatsApp.
async fn consent_app(b: Backend, scope: Option<&str>) -> TestApp {
    let sim = twilio_sim().await;
    let extra = format!(
        "{}{}",
        twilio_conn(TWILIO_WA, &sim.base_url(), &sim, &["whatsapp"]),
        consent_toml(scope)
    );
    spawn_app_with(b, with_extra(extra), Some(sim)).await
}

async fn stop_on_sms_blocks_sms_only_with_channel_scope(b: Backend) {
    let app = consent_app(b, None).await;
    let sim = app.sim();
    let wa_to = format!("whatsapp:{CUSTOMER}");
    whatsapp_in(&app, sim, TWILIO_WA, CUSTOMER).await;
    let first =
        assert_delivered_via(&app, json!({"to": CUSTOMER, "body": "hello"}), TWILIO_CONN).await;
    let contact = contact_of(&app, &first).await;

    // STOP (any case, trimmed): the ledger learns it and the confirmation goes out.
    sms_in(&app, sim, TWILIO_CONN, "  stop ").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;
    assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "promo"})).await;
    // Channel scope: WhatsApp to the same number still goes out.
    assert_delivered_via(&app, json!({"to": wa_to, "body": "on WhatsApp"}), TWILIO_WA).await;

    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "channel");
    assert_eq!(e["scope_value"], "sms", "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["source"], "keyword", "{e}");
    assert_eq!(e["keyword"], "STOP", "{e}");

    // HELP is answered and changes nothing.
    sms_in(&app, sim, TWILIO_CONN, "HELP").await;
    wait_received(sim, CUSTOMER, HELP_REPLY, 1).await;
    assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "still no"})).await;

    // START lifts it.
    sms_in(&app, sim, TWILIO_CONN, "Start").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "channel");
    assert_eq!(e["status"], "opted_in", "{e}");
    assert_eq!(e["keyword"], "START", "{e}");
    assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "body": "welcome back"}),
        TWILIO_CONN,
    )
    .await;

    // Twilio refuses a recipient who opted out with it (21610): the ledger learns that too,
    // and the next send to that number never reaches Twilio.
    let id = send(&app, json!({"to": MAGIC_OPTED_OUT, "body": "hi"})).await;
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["reason"], "opted_out", "{m:#}");
    assert_eq!(m["error"]["code"], "21610", "{m:#}");
    assert_eq!(attempts(&m).len(), 1, "{m:#}");
    let other = contact_of(&app, &id).await;
    let entries = ledger(&app, &other).await;
    let e = entry(&entries, &format!("tel:{MAGIC_OPTED_OUT}"), "sender");
    assert_eq!(e["scope_value"], format!("tel:{SENDER}"), "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["source"], "provider", "{e}");
    assert_eq!(e["keyword"], "21610", "{e}");
    assert_blocked(
        &app,
        &[sim],
        json!({"to": MAGIC_OPTED_OUT, "body": "again"}),
    )
    .await;
}

async fn stop_with_sender_scope_blocks_only_that_number(b: Backend) {
    let app = consent_app(b, Some("sender")).await;
    let sim = app.sim();
    sms_in(&app, sim, TWILIO_CONN, "UNSUBSCRIBE").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;

    let blocked = assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "promo"})).await;
    // Another number of the business may still write.
    let id = assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "from": OTHER_SENDER, "body": "from the other line"}),
        TWILIO_CONN,
    )
    .await;
    let got = sim.recorder().find_by_message(&id);
    assert_eq!(got[0].from.as_deref(), Some(OTHER_SENDER));

    let contact = contact_of(&app, &blocked).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &format!("tel:{CUSTOMER}"), "sender");
    assert_eq!(e["scope_value"], format!("tel:{SENDER}"), "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");

    sms_in(&app, sim, TWILIO_CONN, "UNSTOP").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    assert_delivered_via(&app, json!({"to": CUSTOMER, "body": "back"}), TWILIO_CONN).await;
}

async fn stop_with_contact_scope_blocks_every_channel(b: Backend) {
    let app = consent_app(b, Some("contact")).await;
    let sim = app.sim();
    let wa_to = format!("whatsapp:{CUSTOMER}");
    whatsapp_in(&app, sim, TWILIO_WA, CUSTOMER).await;
    sms_in(&app, sim, TWILIO_CONN, "STOPP").await;
    wait_received(sim, CUSTOMER, STOP_REPLY, 1).await;

    let blocked = assert_blocked(&app, &[sim], json!({"to": CUSTOMER, "body": "sms"})).await;
    assert_blocked(&app, &[sim], json!({"to": wa_to, "body": "whatsapp"})).await;
    assert_blocked(
        &app,
        &[sim],
        json!({"to": CUSTOMER, "from": OTHER_SENDER, "body": "other line"}),
    )
    .await;

    let contact = contact_of(&app, &blocked).await;
    let entries = ledger(&app, &contact).await;
    let e = entry(&entries, &contact, "contact");
    assert_eq!(e["scope_value"], "*", "{e}");
    assert_eq!(e["status"], "opted_out", "{e}");
    assert_eq!(e["keyword"], "STOPP", "{e}");

    sms_in(&app, sim, TWILIO_CONN, "START").await;
    wait_received(sim, CUSTOMER, START_REPLY, 1).await;
    assert_delivered_via(
        &app,
        json!({"to": CUSTOMER, "body": "sms again"}),
        TWILIO_CONN,
    )
    .await;
    assert_delivered_via(
        &app,
        json!({"to": wa_to, "body": "whatsapp again"}),
        TWILIO_WA,
    )
    .await;
}

/// A fresh ledger (no opt-out anywhere, so sends skip the lookup) learns a Twilio 21610 and
/// the very next send to that number is blocked, not only after the next ledger refresh.
async fn provider_opt_out_blocks_the_very_next_send(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    // Let the outbox poller see the empty ledger.
    assert_delivered_via(&app, json!({"to": TO, "body": "warm up"}), TWILIO_CONN).await;
    let id = send(&app, json!({"to": MAGIC_OPTED_OUT, "body": "first"})).await;
    let m = app.wait_for_status(&id, "rejected", SOON).await;
    assert_eq!(m["error"]["code"], "21610", "{m:#}");
    assert_blocked(
        &app,
        &[app.sim()],
        json!({"to": MAGIC_OPTED_OUT, "body": "second"}),
    )
    .await;
}

// --- rate limits ---------------------------------------------------------------------------------

async fn provider_retry_after_is_honoured(b: Backend) {
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

async fn tenant_rate_limit_is_429_with_retry_after(b: Backend) {
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

async fn send_at_valid_until_pin_and_priority(b: Backend) {
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
