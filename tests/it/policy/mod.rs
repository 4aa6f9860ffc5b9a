//! Delivery policy (DESIGN.md §4, issue 6), one file per concern:
//!
//! - `routing`: routes by country, prefix and weight;
//! - `breaker`: the circuit breaker with failover and recovery;
//! - `fallback`: channel fallback WhatsApp → SMS on a permanent failure and on a timeout, with a
//!   late receipt that is recorded but never sent again;
//! - `consent`: the consent ledger (STOP / START / HELP per scope, provider opt-outs);
//! - `limits`: a provider's `Retry-After` and the tenant rate limit; `send_at`, `valid_until`,
//!   connection pins and priority; bulk never starving transactional traffic;
//! - `senders`: sender pools (sticky per conversation, `from` wins) and the per-sender rate
//!   limit;
//! - `reload`: SIGHUP reloads the routing rules of the real `weft` binary.
//!
//! This file holds the shared harness and the one `backend_tests!` list, so every test keeps
//! its name `policy::{sqlite,postgres}::<test>`.
//!
//! Simulators: Twilio (one per connection where a test needs to tell connections apart),
//! WhatsApp Cloud. Connection ids that appear in `/metrics` carry the backend in their name:
//! the metrics registry is process-wide and both backends run at once.

mod breaker;
mod consent;
mod fallback;
mod limits;
mod reload;
mod routing;
mod senders;

use crate::helpers::*;
use serde_json::Value;
use std::time::{Duration, Instant};
use weft_twilio::simulator::{Simulator, SimulatorConfig, WhatsappInbound};

use breaker::{
    circuit_closes_when_the_probe_is_refused_or_skipped,
    circuit_opens_fails_over_and_closes_after_recovery,
    exhausted_retries_fail_over_to_the_next_connection,
};
use consent::{
    provider_opt_out_blocks_the_very_next_send, stop_on_sms_blocks_sms_only_with_channel_scope,
    stop_with_contact_scope_blocks_every_channel, stop_with_sender_scope_blocks_only_that_number,
};
use fallback::{
    fallback_success_criteria_per_step, fallback_whatsapp_to_sms_on_permanent_failure,
    fallback_whatsapp_to_sms_on_timeout_and_late_receipt_is_only_recorded,
};
use limits::{
    bulk_never_starves_transactional, provider_retry_after_is_honoured,
    send_at_valid_until_pin_and_priority, tenant_rate_limit_is_429_with_retry_after,
};
use reload::sighup_reloads_routes_and_refuses_a_bad_config;
use routing::{
    country_and_prefix_routes_pick_the_connection, weights_split_traffic_seventy_thirty,
};
use senders::{
    sender_pool_is_sticky_per_conversation_and_from_wins,
    sender_rate_limit_spaces_one_number_and_spares_the_others,
};

backend_tests!(
    exhausted_retries_fail_over_to_the_next_connection,
    fallback_success_criteria_per_step,
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
    bulk_never_starves_transactional,
    sender_pool_is_sticky_per_conversation_and_from_wins,
    sender_rate_limit_spaces_one_number_and_spares_the_others,
    sighup_reloads_routes_and_refuses_a_bad_config,
);

/// The customer who answers STOP, START and HELP.
const CUSTOMER: &str = "+14155550123";
/// A Twilio connection on the harness's simulator that sends WhatsApp.
const TWILIO_WA: &str = "twilio-wa";

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
    twilio_conn_toml(id, base_url, sim, channels, &[SENDER], "")
}

/// An SMS `[[connections]]` entry for `sim` with its own `senders` and `extra` keys (rate
/// limits) before its credentials.
fn sms_conn(id: &str, sim: &Simulator, senders: &[&str], extra: &str) -> String {
    twilio_conn_toml(id, &sim.base_url(), sim, &["sms"], senders, extra)
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

/// How many times the simulators accepted a message (across all of them).
fn provider_copies(sims: &[&Simulator], id: &str) -> usize {
    sims.iter()
        .map(|s| s.recorder().find_by_message(id).len())
        .sum()
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
