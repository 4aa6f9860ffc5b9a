//! Contracts other tools rely on:
//! * `/metrics` against `helm/metric-names.txt` (the names the Grafana dashboard and the alert
//!   rules are checked against): every listed metric is exported with its type and labels, and
//!   every `weft_*` family exported is listed (or allowlisted here as internal);
//! * `/openapi.json` against the running API, with schemathesis (PyPI, pinned in
//!   tests/requirements.txt, run in the venv of scripts/py-env.sh; `WEFT_SKIP_PY=1` skips):
//!   no server errors, every answer conforms to its documented schema.

use crate::helpers::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

backend_tests!(
    metrics_match_the_helm_contract,
    schemathesis_finds_nothing,
    nul_characters_get_a_client_error
);

/// `weft_*` families weft exports on purpose that are not part of the dashboard/alert contract.
const INTERNAL_METRICS: &[&str] = &[
    // writer batch sizes (tuning aid)
    "weft_store_batch_size",
    // provider webhook events parked until their message is known
    "weft_webhook_events_parked",
];

/// Labels Prometheus itself puts on histogram samples.
const SAMPLE_LABELS: &[&str] = &["le", "quantile"];

struct Listed {
    kind: String,
    labels: BTreeSet<String>,
}

fn listed_metrics() -> BTreeMap<String, Listed> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/helm/metric-names.txt");
    let text = std::fs::read_to_string(path).expect("read helm/metric-names.txt");
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "bad line in metric-names.txt: {line:?}");
        let labels = if parts[2] == "-" {
            BTreeSet::new()
        } else {
            parts[2].split(',').map(str::to_string).collect()
        };
        out.insert(
            parts[0].to_string(),
            Listed {
                kind: parts[1].to_string(),
                labels,
            },
        );
    }
    out
}

#[derive(Default, Debug)]
struct Family {
    kind: String,
    labels: BTreeSet<String>,
    samples: usize,
}

/// Families of a Prometheus text scrape: `# TYPE` plus the label names of their samples.
fn parse_scrape(text: &str) -> BTreeMap<String, Family> {
    let mut fams: BTreeMap<String, Family> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut it = rest.split_whitespace();
            let (Some(name), Some(kind)) = (it.next(), it.next()) else {
                continue;
            };
            fams.entry(name.to_string()).or_default().kind = kind.to_string();
            continue;
        }
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, _value) = line.rsplit_once(' ').expect("sample line");
        let (name, labels) = match series.split_once('{') {
            Some((n, l)) => (n, l.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = [
            name.strip_suffix("_bucket"),
            name.strip_suffix("_sum"),
            name.strip_suffix("_count"),
        ]
        .into_iter()
        .flatten()
        .find(|base| fams.contains_key(*base))
        .unwrap_or(name)
        .to_string();
        let f = fams.entry(family).or_default();
        f.samples += 1;
        // Label values are quoted and may hold commas: take the names before each `="`.
        for part in labels.split("\",") {
            if let Some((k, _)) = part.split_once("=\"") {
                let k = k.trim_start_matches(',').trim();
                if !SAMPLE_LABELS.contains(&k) {
                    f.labels.insert(k.to_string());
                }
            }
        }
    }
    fams
}

/// A local endpoint that accepts every app webhook.
async fn sink() -> String {
    let router = axum::Router::new().fallback(|| async { axum::http::StatusCode::NO_CONTENT });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}/hook")
}

async fn metrics_match_the_helm_contract(b: Backend) {
    let sim = weft_twilio::simulator::Simulator::start(Default::default())
        .await
        .expect("start the Twilio simulator");
    // A second, slow connection (1/s) for +1303…: a burst to it is throttled.
    let slow = format!(
        r#"[app_webhooks]
allow_private_urls = true
retry_base_ms = 50

[[routes]]
prefix = "+1303"
connections = ["twilio-slow"]
{conn}"#,
        conn = twilio_conn_toml(
            "twilio-slow",
            &sim.base_url(),
            &sim,
            &["sms"],
            &[SENDER],
            "rate_limit_per_second = 1",
        ),
    );
    let setup = Setup {
        extra_toml: slow,
        ..Setup::twilio()
    };
    let app = spawn_app_with(b, setup, Some(sim)).await;
    for i in 0..3 {
        app.send_sms(&format!("+1303555010{i}"), "throttled").await;
    }
    // Traffic so every family has series: an app webhook endpoint, a send delivered, a forged
    // status callback, a signed inbound SMS (threading, inbound, app webhook deliveries).
    let r = app
        .client
        .post(app.url("/v1/webhook-endpoints"))
        .bearer_auth(&app.key)
        .json(&json!({"url": sink().await, "events": ["*"]}))
        .send()
        .await
        .expect("POST /v1/webhook-endpoints");
    assert_eq!(r.status(), 201, "{}", r.text().await.unwrap_or_default());
    let v = app.send_sms(TO, "metrics contract").await;
    let id = v["id"].as_str().expect("id").to_string();
    app.wait_for_status(&id, "delivered", SOON).await;
    let url = app.status_callback_url(&id);
    let forged = app
        .post_twilio_status(
            &url,
            &twilio_status_params(app.sim(), "SM0000", "delivered", TO),
            Some("not-the-auth-token"),
            &[],
        )
        .await;
    assert!(
        forged.status().is_client_error(),
        "forged webhook answered {}",
        forged.status()
    );
    let r = app
        .sim()
        .send_inbound_sms(
            &app.url(&format!("/webhooks/twilio/{TWILIO_CONN}/inbound")),
            "+14155550123",
            SENDER,
            "hello",
            &[],
        )
        .await
        .expect("inbound SMS");
    assert_eq!(r.status, 200, "inbound: {}", r.body);

    let listed = listed_metrics();
    let deadline = Instant::now() + SOON;
    let (text, fams) = loop {
        let text = app.metrics_text().await;
        let fams = parse_scrape(&text);
        let all_there = listed
            .keys()
            .all(|n| fams.get(n).is_some_and(|f| f.samples > 0));
        if all_there || Instant::now() >= deadline {
            break (text, fams);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let mut problems = Vec::new();
    for (name, want) in &listed {
        let Some(got) = fams.get(name).filter(|f| f.samples > 0) else {
            problems.push(format!(
                "{name}: listed in helm/metric-names.txt, not in /metrics"
            ));
            continue;
        };
        if got.kind != want.kind {
            problems.push(format!(
                "{name}: type {} in /metrics, {} in metric-names.txt",
                got.kind, want.kind
            ));
        }
        let extra: Vec<&String> = got.labels.difference(&want.labels).collect();
        if !extra.is_empty() {
            problems.push(format!(
                "{name}: labels {extra:?} in /metrics are not listed ({:?})",
                want.labels
            ));
        }
    }
    for name in fams.keys().filter(|n| n.starts_with("weft_")) {
        if !listed.contains_key(name) && !INTERNAL_METRICS.contains(&name.as_str()) {
            problems.push(format!(
                "{name}: exported, but neither in helm/metric-names.txt nor allowlisted"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "metrics contract mismatches:\n  {}\n--- scrape ---\n{text}",
        problems.join("\n  ")
    );
}

/// The venv's python from scripts/py-env.sh, or None when `WEFT_SKIP_PY=1`.
async fn py_env() -> Option<String> {
    if std::env::var("WEFT_SKIP_PY").as_deref() == Ok("1") {
        eprintln!("\n!!! WEFT_SKIP_PY=1: NOT running schemathesis against /openapi.json !!!\n");
        return None;
    }
    let root = env!("CARGO_MANIFEST_DIR");
    let env = tokio::process::Command::new("bash")
        .arg(format!("{root}/scripts/py-env.sh"))
        .output()
        .await
        .expect("run scripts/py-env.sh");
    assert!(
        env.status.success(),
        "scripts/py-env.sh failed (WEFT_SKIP_PY=1 skips this check):\n{}",
        String::from_utf8_lossy(&env.stderr)
    );
    let stdout = String::from_utf8_lossy(&env.stdout).to_string();
    Some(
        stdout
            .lines()
            .last()
            .expect("py-env.sh prints the python path")
            .trim()
            .to_string(),
    )
}

async fn schemathesis_finds_nothing(b: Backend) {
    let Some(python) = py_env().await else {
        return;
    };
    let app = spawn_app(
        b,
        Setup {
            extra_toml: "[app_webhooks]\nallow_private_urls = true\n".into(),
            ..Setup::twilio()
        },
    )
    .await;
    // Something to read: a message, so the GET routes answer with real bodies too.
    let v = app.send_sms(TO, "schemathesis").await;
    app.wait_for_status(v["id"].as_str().expect("id"), "delivered", SOON)
        .await;

    let st = std::path::Path::new(&python)
        .parent()
        .expect("venv bin")
        .join("st");
    let started = Instant::now();
    let mut cmd = tokio::process::Command::new(st);
    cmd.arg("run")
        .arg(app.url("/openapi.json"))
        .args(["--base-url", &app.base])
        .args(["-H", &format!("Authorization: Bearer {}", app.key)])
        .args(["--checks", "not_a_server_error,response_schema_conformance"])
        .args(["--hypothesis-max-examples", "25"])
        .arg("--hypothesis-derandomize")
        .args(["--hypothesis-deadline", "5000"])
        // Free-form path parameters of the provider webhook route make Hypothesis discard
        // many candidates; that is a property of the generator, not a finding.
        .arg("--hypothesis-suppress-health-check=filter_too_much")
        .args(["--request-timeout", "10000"])
        // One worker: with four, schemathesis once crashed inside itself ("IndexError:
        // list index out of range", upstream's multi-worker bugs) and then hung with its
        // workers waiting, failing this test after 300 s while weft answered fine.
        .args(["--workers", "1"])
        // utoipa writes OpenAPI 3.1.
        .arg("--experimental=openapi-3.1")
        .arg("--no-color")
        .env("SCHEMATHESIS_TELEMETRY", "false")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("run schemathesis");
    let stdout = read_all(child.stdout.take());
    let stderr = read_all(child.stderr.take());
    // Locally it takes 5–15 s; the limit only stops a hang, and then says what it was doing.
    let status = tokio::time::timeout(Duration::from_secs(300), child.wait()).await;
    if status.is_err() {
        let _ = child.kill().await;
    }
    let text = format!(
        "{}{}",
        stdout.await.unwrap_or_default(),
        stderr.await.unwrap_or_default()
    );
    let status = match status {
        Ok(s) => s.expect("wait for schemathesis"),
        Err(_) => panic!(
            "schemathesis did not finish within 300 s; weft answers /healthz: {:?}; its output so far:\n{text}",
            app.client.get(app.url("/healthz")).timeout(Duration::from_secs(5)).send().await.map(|r| r.status())
        ),
    };
    eprintln!(
        "schemathesis [{b:?}] took {:?}, {status}",
        started.elapsed()
    );
    assert!(
        status.success(),
        "schemathesis found problems in the API against /openapi.json:\n{text}"
    );
}

/// Collects a child's pipe to the end, in its own task (so a full pipe never blocks it).
fn read_all<R>(pipe: Option<R>) -> tokio::task::JoinHandle<String>
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut buf = Vec::new();
        if let Some(mut p) = pipe {
            let _ = tokio::io::AsyncReadExt::read_to_end(&mut p, &mut buf).await;
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// NUL (U+0000) cannot be stored in PostgreSQL text: found by schemathesis as 500s on
/// PostgreSQL. It must get a client error (and change nothing) on every route and backend.
async fn nul_characters_get_a_client_error(b: Backend) {
    let app = spawn_app(b, Setup::twilio()).await;
    let posts = [
        ("/v1/messages", json!({"to": TO, "body": "a\u{0}b"})),
        ("/v1/contacts", json!({"name": "a\u{0}b"})),
        ("/v1/conversations", json!({"contact_id": "ct_\u{0}"})),
        (
            "/v1/messages",
            json!({"to": TO, "body": "x", "metadata": {"k\u{0}": "v"}}),
        ),
    ];
    for (path, body) in posts {
        let r = app
            .client
            .post(app.url(path))
            .bearer_auth(&app.key)
            .json(&body)
            .send()
            .await
            .expect("POST");
        assert_problem(r, 422, "validation").await;
    }
    for path in [
        "/v1/conversations?contact_id=%00",
        "/v1/messages?cursor=%00",
        "/v1/contacts/%00/consent",
        "/v1/conversations/%00",
        "/v1/contacts/%00",
    ] {
        let r = app
            .client
            .get(app.url(path))
            .bearer_auth(&app.key)
            .send()
            .await
            .expect("GET");
        let status = r.status();
        let text = r.text().await.unwrap_or_default();
        assert!(status.is_client_error(), "GET {path}: {status} {text}");
    }
    let (status, page) = app.list("limit=10").await;
    assert_eq!(status, 200);
    assert_eq!(page["data"], json!([]), "nothing was stored");
}
