//! `twilio-sim`: weft's in-process Twilio simulator (`weft-twilio`, feature `simulator`) as a
//! standalone process, for load tests and crash tests that run the real `weft` binary.
//!
//! It serves Twilio's REST shape on `127.0.0.1:--port` and sends signed status callbacks
//! (`sent`, then `delivered` by default) to the `StatusCallback` URL weft gives it. A small
//! control server (`--control-port`) answers `GET /stats` (a summary) and `GET /messages`
//! (how many sends each weft message id got). On SIGTERM or SIGINT it prints the summary as
//! one JSON line on stdout (and writes the per-message counts to `--dump` if given).

use anyhow::Context;
use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use clap::{Parser, ValueEnum};
use serde::Serialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use weft_load::cli::parse_duration;
use weft_twilio::simulator::{MessageOutcome, Simulator, SimulatorConfig};

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Outcome {
    Delivered,
    Undelivered,
    Failed,
}

#[derive(Debug, Parser)]
#[command(
    name = "twilio-sim",
    version,
    about = "Twilio API simulator for weft load and crash tests; runs until SIGTERM/SIGINT."
)]
struct Args {
    /// Port on 127.0.0.1 for the Twilio API (0 = any free port; the ready line tells which).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Port on 127.0.0.1 for GET /stats and GET /messages (omit for none).
    #[arg(long)]
    control_port: Option<u16>,
    #[arg(long, default_value = "AC00000000000000000000000000000000")]
    account_sid: String,
    /// Checks REST Basic auth and signs callbacks.
    #[arg(
        long,
        env = "TWILIO_SIM_AUTH_TOKEN",
        hide_env_values = true,
        default_value = "sim-auth-token-0123456789abcdef"
    )]
    auth_token: String,
    /// Delay before each status callback.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    callback_delay: Duration,
    /// Delay before answering each send.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    latency: Duration,
    /// Share of sends answered 500.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    /// Share of sends answered 429 (with Retry-After: --retry-after).
    #[arg(long, default_value_t = 0.0)]
    throttle_rate: f64,
    #[arg(long, default_value_t = 1)]
    retry_after: u32,
    /// Share of sends never answered in time.
    #[arg(long, default_value_t = 0.0)]
    timeout_rate: f64,
    /// How messages end.
    #[arg(long, value_enum, default_value = "delivered")]
    outcome: Outcome,
    /// Attempts per callback while weft is down or answers 5xx (0.25 s apart, growing to 1 s).
    #[arg(long, default_value_t = 40)]
    callback_max_attempts: u32,
    /// On exit, write `{"received":N,"counts":{weft_message_id: sends}}` here.
    #[arg(long)]
    dump: Option<PathBuf>,
}

#[derive(Debug, Serialize)]
struct Summary {
    /// Sends accepted (201) in all.
    received: u64,
    /// Distinct weft message ids among them.
    distinct_messages: u64,
    /// Sends that carried no weft message id.
    without_id: u64,
    /// Message ids sent more than once, and the extra sends.
    duplicated_messages: u64,
    extra_sends: u64,
    max_sends_per_message: u64,
    /// Status callbacks weft answered 2xx / refused or given up on.
    callbacks_delivered: u32,
    callbacks_failed: u32,
    duplicated_sample: Vec<String>,
}

fn counts(sim: &Simulator) -> BTreeMap<String, u64> {
    sim.recorder()
        .per_message()
        .into_iter()
        .map(|(k, v)| (k, u64::from(v)))
        .collect()
}

fn summary(sim: &Simulator) -> Summary {
    let received = sim.recorder().count() as u64;
    let per = counts(sim);
    let with_id: u64 = per.values().sum();
    let dups: Vec<(&String, &u64)> = per.iter().filter(|(_, n)| **n > 1).collect();
    Summary {
        received,
        distinct_messages: per.len() as u64,
        without_id: received.saturating_sub(with_id),
        duplicated_messages: dups.len() as u64,
        extra_sends: dups.iter().map(|(_, n)| **n - 1).sum(),
        max_sends_per_message: per.values().copied().max().unwrap_or(0),
        callbacks_delivered: sim.callbacks().delivered(),
        callbacks_failed: sim.callbacks().failed(),
        duplicated_sample: dups.iter().take(20).map(|(k, _)| (*k).clone()).collect(),
    }
}

async fn stats(State(sim): State<Arc<Simulator>>) -> Json<Summary> {
    Json(summary(&sim))
}

async fn messages(State(sim): State<Arc<Simulator>>) -> Json<serde_json::Value> {
    Json(json!({ "received": sim.recorder().count(), "counts": counts(&sim) }))
}

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let a = Args::parse();
    for (name, rate) in [
        ("--error-rate", a.error_rate),
        ("--throttle-rate", a.throttle_rate),
        ("--timeout-rate", a.timeout_rate),
    ] {
        anyhow::ensure!(
            (0.0..=1.0).contains(&rate),
            "{name} must be between 0 and 1"
        );
    }
    let config = SimulatorConfig {
        port: a.port,
        account_sid: a.account_sid.clone(),
        auth_token: a.auth_token.clone(),
        ..SimulatorConfig::default()
    };
    let sim = Simulator::start(config)
        .await
        .with_context(|| format!("starting the simulator on 127.0.0.1:{}", a.port))?;
    sim.faults().set_latency(a.latency);
    sim.faults().set_error_rate(a.error_rate);
    sim.faults()
        .set_throttle_rate(a.throttle_rate, a.retry_after);
    sim.faults().set_timeout_rate(a.timeout_rate);
    sim.callbacks().set_delay(a.callback_delay);
    sim.callbacks().set_max_attempts(a.callback_max_attempts);
    sim.set_message_outcome(match a.outcome {
        Outcome::Delivered => MessageOutcome::Delivered,
        Outcome::Undelivered => MessageOutcome::Undelivered,
        Outcome::Failed => MessageOutcome::Failed,
    });
    let sim = Arc::new(sim);

    let control_url = match a.control_port {
        Some(port) => {
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .with_context(|| format!("binding the control port 127.0.0.1:{port}"))?;
            let url = format!("http://{}", listener.local_addr()?);
            let app = Router::new()
                .route("/stats", get(stats))
                .route("/messages", get(messages))
                .with_state(sim.clone());
            tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    eprintln!("twilio-sim: control server stopped: {e}");
                }
            });
            Some(url)
        }
        None => None,
    };

    eprintln!(
        "twilio-sim: listening on {} (account {}){}",
        sim.base_url(),
        sim.account_sid(),
        control_url
            .as_deref()
            .map(|u| format!(", control on {u}"))
            .unwrap_or_default()
    );
    println!(
        "{}",
        json!({"event": "ready", "base_url": sim.base_url(), "control_url": control_url, "pid": std::process::id()})
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let signal = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = tokio::signal::ctrl_c() => "SIGINT",
    };
    let s = summary(&sim);
    eprintln!(
        "twilio-sim: {signal}: received {} sends for {} messages ({} duplicated, {} extra sends, {} without id); callbacks delivered {}, failed {}",
        s.received,
        s.distinct_messages,
        s.duplicated_messages,
        s.extra_sends,
        s.without_id,
        s.callbacks_delivered,
        s.callbacks_failed
    );
    if let Some(path) = &a.dump {
        let body = json!({ "received": s.received, "counts": counts(&sim) });
        std::fs::write(path, body.to_string())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let mut line = serde_json::to_value(&s)?;
    if let Some(o) = line.as_object_mut() {
        o.insert("event".into(), json!("exit"));
        o.insert("signal".into(), json!(signal));
    }
    println!("{line}");
    Ok(())
}
