//! Runs the real `weft-load` and `twilio-sim` binaries against a stand-in for weft: a tiny
//! server that answers `POST /v1/messages` with 202 (or 422 for every Nth), forwards each
//! message to twilio-sim with a `StatusCallback` to itself, counts the `delivered`
//! callbacks and exposes them on `/metrics` as `weft_message_status_total`.
//! Nothing here asserts speed; only that every mode measures what it claims.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::Router;
use serde_json::Value;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const KEY: &str = "test-key";
const SID: &str = "ACload0000000000000000000000000000";
const TOKEN: &str = "load-token";

struct Mock {
    next: AtomicU64,
    delivered: AtomicU64,
    sent: AtomicU64,
    reject_every: u64,
    sim_base: Option<String>,
    me: OnceLock<String>,
    client: reqwest::Client,
}

async fn send(
    State(m): State<Arc<Mock>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer test-key") {
        return (StatusCode::UNAUTHORIZED, "no key").into_response();
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "bad json").into_response();
    };
    let n = m.next.fetch_add(1, Ordering::Relaxed);
    if m.reject_every > 0 && n % m.reject_every == m.reject_every - 1 {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            [("content-type", "application/problem+json")],
            r#"{"type":"invalid_address","detail":"mock says no"}"#,
        )
            .into_response();
    }
    let id = format!("msg_{n:08}");
    if let (Some(sim), Some(me)) = (&m.sim_base, m.me.get()) {
        let form = [
            ("To", v["to"].as_str().unwrap_or_default().to_string()),
            ("From", "+15005550006".to_string()),
            ("Body", v["body"].as_str().unwrap_or_default().to_string()),
            (
                "StatusCallback",
                format!("{me}/webhooks/twilio/load/status?m={id}"),
            ),
        ];
        let req = m
            .client
            .post(format!("{sim}/2010-04-01/Accounts/{SID}/Messages.json"))
            .basic_auth(SID, Some(TOKEN))
            .form(&form);
        tokio::spawn(async move {
            let _ = req.send().await;
        });
    } else {
        m.delivered.fetch_add(1, Ordering::Relaxed);
    }
    (
        StatusCode::ACCEPTED,
        [("content-type", "application/json")],
        format!(r#"{{"id":"{id}","status":"accepted"}}"#),
    )
        .into_response()
}

async fn status(State(m): State<Arc<Mock>>, body: String) -> StatusCode {
    for (k, v) in form_pairs(&body) {
        if k == "MessageStatus" {
            match v.as_str() {
                "delivered" => m.delivered.fetch_add(1, Ordering::Relaxed),
                _ => m.sent.fetch_add(1, Ordering::Relaxed),
            };
        }
    }
    StatusCode::OK
}

fn form_pairs(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn metrics(State(m): State<Arc<Mock>>) -> String {
    format!(
        "# TYPE weft_message_status_total counter\n\
         weft_message_status_total{{channel=\"sms\",status=\"sent\"}} {}\n\
         weft_message_status_total{{channel=\"sms\",status=\"delivered\"}} {}\n\
         weft_outbox_depth 0\n",
        m.sent.load(Ordering::Relaxed),
        m.delivered.load(Ordering::Relaxed)
    )
}

async fn start_mock(reject_every: u64, sim_base: Option<String>) -> (String, Arc<Mock>) {
    let m = Arc::new(Mock {
        next: AtomicU64::new(0),
        delivered: AtomicU64::new(0),
        sent: AtomicU64::new(0),
        reject_every,
        sim_base,
        me: OnceLock::new(),
        client: reqwest::Client::new(),
    });
    let app = Router::new()
        .route("/v1/messages", post(send))
        .route("/webhooks/twilio/load/status", post(status))
        .route("/metrics", get(metrics))
        .with_state(m.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let _ = m.me.set(url.clone());
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, m)
}

/// Starts twilio-sim; returns the child, its stdout lines and (base_url, control_url).
async fn start_sim() -> (
    Child,
    tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    String,
    String,
) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_twilio-sim"))
        .args([
            "--port",
            "0",
            "--control-port",
            "0",
            "--account-sid",
            SID,
            "--auth-token",
            TOKEN,
        ])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("twilio-sim starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("ready line in time")
        .expect("read")
        .expect("a line");
    let v: Value = serde_json::from_str(&ready).expect("ready JSON");
    assert_eq!(v["event"], "ready");
    let base = v["base_url"].as_str().expect("base_url").to_string();
    let control = v["control_url"].as_str().expect("control_url").to_string();
    (child, lines, base, control)
}

async fn weft_load(args: &[&str]) -> Value {
    let out = tokio::time::timeout(
        Duration::from_secs(120),
        Command::new(env!("CARGO_BIN_EXE_weft-load"))
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("weft-load finishes in time")
    .expect("weft-load runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "weft-load {args:?} failed:\n{stderr}");
    eprintln!("weft-load {}:\n{stderr}", args.join(" "));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().expect("a summary line");
    assert!(stderr.contains("=="), "a human table on stderr:\n{stderr}");
    serde_json::from_str(line).expect("JSON summary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baseline_measures_the_trivial_server() {
    let v = weft_load(&[
        "baseline",
        "--concurrency",
        "4",
        "--duration",
        "500ms",
        "--warmup",
        "100ms",
        "--threads",
        "1",
        "--server-threads",
        "1",
    ])
    .await;
    assert_eq!(v["mode"], "baseline");
    assert!(v["ok"].as_u64().expect("ok") > 0);
    assert_eq!(v["ok"], v["requests"]);
    assert_eq!(v["non_ok"], 0);
    assert!(v["latency_ms"]["p99_ms"].as_f64().expect("p99") > 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_counts_statuses_errors_and_rss() {
    let (url, _m) = start_mock(10, None).await;
    let pid = std::process::id().to_string();
    let v = weft_load(&[
        "accept",
        "--url",
        &url,
        "--api-key",
        KEY,
        "--concurrency",
        "4",
        "--duration",
        "700ms",
        "--warmup",
        "100ms",
        "--pid",
        &pid,
        "--label",
        "mock",
    ])
    .await;
    assert_eq!(v["mode"], "accept");
    assert_eq!(v["label"], "mock");
    let ok = v["statuses"]["202"].as_u64().expect("202s");
    let rejected = v["statuses"]["422"].as_u64().expect("422s");
    assert!(ok > 0 && rejected > 0, "{v}");
    assert_eq!(v["non_ok"].as_u64(), Some(rejected));
    assert!(v["first_error"]
        .as_str()
        .expect("first error")
        .contains("mock says no"));
    assert!(v["rss"]["peak_rss_kb"].as_u64().expect("rss") > 0);

    // A wrong key: every answer is a 401, reported with its body.
    let v = weft_load(&[
        "accept",
        "--url",
        &url,
        "--api-key",
        "wrong",
        "--concurrency",
        "2",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(v["ok"], 0);
    assert!(v["statuses"]["401"].as_u64().expect("401s") > 0);
    assert!(v["first_error"].as_str().expect("body").contains("401"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accept_against_nothing_reports_connect_errors() {
    // A port that was free a moment ago.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let v = weft_load(&[
        "accept",
        "--url",
        &url,
        "--api-key",
        KEY,
        "--concurrency",
        "2",
        "--duration",
        "300ms",
        "--warmup",
        "0s",
    ])
    .await;
    assert_eq!(v["ok"], 0);
    assert!(v["connect_errors"].as_u64().expect("connect errors") > 0);
    assert!(v["first_transport_error"].as_str().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_through_twilio_sim_counts_deliveries_and_checks_the_provider() {
    let (mut sim, mut sim_lines, sim_base, control) = start_sim().await;
    let (url, mock) = start_mock(50, Some(sim_base)).await;
    let v = weft_load(&[
        "e2e",
        "--url",
        &url,
        "--api-key",
        KEY,
        "--count",
        "400",
        "--concurrency",
        "8",
        "--timeout",
        "60s",
        "--stall-timeout",
        "10s",
        "--sim-control",
        &control,
        "--label",
        "mock/twilio-sim",
    ])
    .await;
    assert_eq!(v["mode"], "e2e");
    assert_eq!(v["requests"], 400);
    assert_eq!(v["ok"], 392, "{v}");
    assert_eq!(v["accepted"], 392);
    assert!(v["accepted_per_s"].as_f64().expect("accepted/s") > 0.0);
    assert_eq!(v["statuses"]["422"], 8);
    assert_eq!(v["delivered"], 392, "{v}");
    assert_eq!(v["complete"], true);
    assert_eq!(v["wait_end"], "complete");
    assert!(v["delivered_per_s"].as_f64().expect("rate") > 0.0);
    assert_eq!(v["sim"]["lost"], 0, "{v}");
    assert_eq!(v["sim"]["duplicated"], 0);
    assert_eq!(v["sim"]["unchecked"], 0);
    assert_eq!(v["sim"]["received_total"], 392);
    let series = v["series"].as_array().expect("series");
    assert!(!series.is_empty());
    assert_eq!(series.last().expect("a point")["delivered"], 392);
    assert_eq!(mock.delivered.load(Ordering::Relaxed), 392);

    // SIGTERM: twilio-sim prints its per-message summary and exits cleanly.
    let pid = sim.id().expect("pid").to_string();
    let st = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill");
    assert!(st.success());
    let exit = tokio::time::timeout(Duration::from_secs(10), sim_lines.next_line())
        .await
        .expect("exit line in time")
        .expect("read")
        .expect("a line");
    let e: Value = serde_json::from_str(&exit).expect("exit JSON");
    assert_eq!(e["event"], "exit");
    assert_eq!(e["signal"], "SIGTERM");
    assert_eq!(e["received"], 392);
    assert_eq!(e["distinct_messages"], 392);
    assert_eq!(e["duplicated_messages"], 0);
    assert_eq!(e["callbacks_delivered"], 784);
    let status = tokio::time::timeout(Duration::from_secs(10), sim.wait())
        .await
        .expect("exits in time")
        .expect("wait");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn e2e_stops_at_the_timeout_when_nothing_is_delivered() {
    // Forwarding to a simulator that is not there: nothing is ever delivered.
    let (url, _m) = start_mock(0, Some("http://127.0.0.1:9".into())).await;
    let v = weft_load(&[
        "e2e",
        "--url",
        &url,
        "--api-key",
        KEY,
        "--count",
        "50",
        "--concurrency",
        "4",
        "--timeout",
        "3s",
        "--stall-timeout",
        "1s",
        "--settle-timeout",
        "0s",
    ])
    .await;
    assert_eq!(v["ok"], 50);
    assert_eq!(v["delivered"], 0);
    assert_eq!(v["complete"], false);
    assert_eq!(v["wait_end"], "stalled");
    assert_eq!(v["delivered_per_s"], 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_turns_lines_into_markdown() {
    let v = weft_load(&[
        "baseline",
        "--concurrency",
        "2",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
        "--label",
        "ceiling",
    ])
    .await;
    let path = std::env::temp_dir().join(format!("weft-load-report-{}.jsonl", std::process::id()));
    std::fs::write(&path, format!("junk\n{v}\n")).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_weft-load"))
        .arg("report")
        .arg(&path)
        .output()
        .await
        .expect("report runs");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(md.starts_with("| run | mode |"), "{md}");
    assert!(md.contains("| ceiling | baseline | 2 |"), "{md}");
}
