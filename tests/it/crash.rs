//! `kill -9` mid-dispatch: the real `weft` binary, 2,000 messages, SIGKILL while sends are in
//! flight, restart. Every accepted message must reach the (in-process) Twilio simulator
//! exactly once and end `delivered`.
//!
//! How weft gets "exactly once to the provider" (src/store/delivery.rs): an attempt is
//! committed `in_flight` before the provider call. After a crash the outbox lease runs out; the
//! next claimer turns the attempt `unknown` and holds the message for `reconcile_seconds`. The
//! provider's status callback carries weft's message and attempt ids (`?m=…&a=…`): it proves
//! the provider has it, the attempt becomes `queued` and the outbox row goes away. Only
//! without proof is the message sent again. Senders here retry lost answers with the same
//! `Idempotency-Key`, so a request committed just before the kill is answered with its
//! original id after the restart.

use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use weft_twilio::simulator::{Simulator, SimulatorConfig};

backend_tests!(kill_9_mid_dispatch_loses_nothing_and_doubles_nothing);

const TOTAL: usize = 2_000;
const SENDERS: usize = 32;
const KILL_AFTER_ACCEPTED: usize = 800;
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// The `weft` child process; killed (SIGKILL) when dropped.
pub(crate) struct Weft {
    pub(crate) child: Child,
}

impl Drop for Weft {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(crate) fn weft_cmd(config: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_weft"));
    cmd.arg("--config").arg(config);
    // The suite's own WEFT_TEST_* variables are not weft configuration.
    for (k, _) in std::env::vars() {
        if k.starts_with("WEFT_") {
            cmd.env_remove(k);
        }
    }
    cmd
}

/// The top of every real-binary test's config: where it listens (and is called back), its
/// database, JSON logs at `log_level`, a small store pool. Tests append their own sections.
pub(crate) fn config_head(port: u16, db_url: &str, log_level: &str) -> String {
    format!(
        r#"
listen = "127.0.0.1:{port}"
public_url = "http://127.0.0.1:{port}"
database_url = "{db_url}"

[log]
format = "json"
level = "{log_level}"

[store]
pool_size = 4
writers = 2
"#
    )
}

/// How a real binary's Twilio configuration differs between tests.
pub(crate) struct BinaryOpts<'a> {
    pub tenant: &'a str,
    /// The simulator's URL, or a proxy's in front of it.
    pub sim_url: &'a str,
    pub rate_limit: u32,
    pub concurrency: usize,
    pub drain_seconds: u64,
    pub log_level: &'a str,
}

/// A real binary's configuration: one Twilio connection, fast retries and reconciliation.
pub(crate) fn twilio_binary_config(
    port: u16,
    db_url: &str,
    sim: &Simulator,
    o: &BinaryOpts<'_>,
) -> String {
    format!(
        r#"{head}
[dispatch]
concurrency = {concurrency}
max_attempts = 8
retry_base_ms = 100
retry_max_ms = 1000
lease_seconds = 8
poll_interval_ms = 100
reconcile_seconds = 4
request_timeout_seconds = 3

[shutdown]
drain_seconds = {drain}

[sandbox]
enabled = false

[[connections]]
id = "{TWILIO_CONN}"
provider = "twilio"
tenant = "{tenant}"
base_url = "{sim_url}"
senders = ["{SENDER}"]
channels = ["sms"]
rate_limit_per_second = {rate}
[connections.credentials]
account_sid = "{sid}"
auth_token = "{token}"
"#,
        head = config_head(port, db_url, o.log_level),
        concurrency = o.concurrency,
        drain = o.drain_seconds,
        tenant = o.tenant,
        sim_url = o.sim_url,
        rate = o.rate_limit,
        sid = sim.account_sid(),
        token = sim.auth_token(),
    )
}

/// `weft tenant create` and `weft api-key create` on the real binary; returns the new key
/// (printed alone on the last line).
pub(crate) fn create_tenant_key(config: &Path, tenant: &str) -> String {
    cli(config, &["tenant", "create", tenant]);
    let out = cli(config, &["api-key", "create", "--tenant", tenant]);
    let key = out
        .lines()
        .rfind(|l| !l.trim().is_empty())
        .expect("a key line")
        .trim()
        .to_string();
    assert!(key.starts_with("weft_"), "key on the last line: {out}");
    key
}

/// Runs a CLI command to completion; returns its stdout.
pub(crate) fn cli(config: &Path, args: &[&str]) -> String {
    let out = weft_cmd(config)
        .args(args)
        .output()
        .expect("run the weft binary");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "weft {args:?} failed: {}\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

pub(crate) fn serve(config: &Path, dir: &Path, run: u32) -> Weft {
    let log = |name: &str| {
        std::fs::File::create(dir.join(format!("{name}-{run}.log"))).expect("log file")
    };
    let child = weft_cmd(config)
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(log("stdout"))
        .stderr(log("stderr"))
        .spawn()
        .expect("spawn weft serve");
    Weft { child }
}

pub(crate) async fn wait_ready(client: &reqwest::Client, base: &str, weft: &mut Weft, dir: &Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Some(status)) = weft.child.try_wait() {
            let logs: String = ["stderr-1.log", "stderr-2.log"]
                .iter()
                .map(|f| std::fs::read_to_string(dir.join(f)).unwrap_or_default())
                .collect();
            panic!("weft serve exited early with {status}: {logs}");
        }
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            if r.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "weft did not become ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

/// Every message of the tenant by status, following cursors.
pub(crate) async fn statuses(
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{base}/v1/messages?limit=200");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: Value = match client.get(&url).bearer_auth(key).send().await {
            Ok(r) if r.status() == 200 => r.json().await.unwrap_or(Value::Null),
            _ => return out,
        };
        for m in page["data"].as_array().cloned().unwrap_or_default() {
            out.insert(
                m["id"].as_str().unwrap_or_default().to_string(),
                m["status"].as_str().unwrap_or_default().to_string(),
            );
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

async fn kill_9_mid_dispatch_loses_nothing_and_doubles_nothing(b: Backend) {
    let started = Instant::now();
    let sim = Simulator::start(SimulatorConfig::default())
        .await
        .expect("simulator");
    // Sends are in flight when the kill lands: some still on their way to the provider (its
    // 20 ms latency: it never records them), some taken by it but with the answer held back
    // 80 ms by a proxy (weft never learns the provider id; only the callback can tell).
    sim.faults().set_latency(Duration::from_millis(20));
    let proxy = flaky_proxy(sim.base_url(), 0, Duration::from_millis(80)).await;
    let db = TestDb::create(b).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config: PathBuf = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        twilio_binary_config(
            port,
            &db.url,
            &sim,
            &BinaryOpts {
                tenant: "crash",
                sim_url: &proxy.base_url,
                rate_limit: 500,
                concurrency: 64,
                drain_seconds: 2,
                log_level: "warn",
            },
        ),
    )
    .expect("write config");

    let key = create_tenant_key(&config, "crash");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(SENDERS)
        .build()
        .expect("client");
    let mut weft = serve(&config, dir.path(), 1);
    wait_ready(&client, &base, &mut weft, dir.path()).await;

    // Senders: each request retried with its own Idempotency-Key until it gets a 202.
    let next = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let ids: Arc<Mutex<HashMap<usize, String>>> = Arc::new(Mutex::new(HashMap::new()));
    let retries = Arc::new(AtomicUsize::new(0));
    let replayed = Arc::new(AtomicUsize::new(0));
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (client, base, key) = (client.clone(), base.clone(), key.clone());
        let (next, accepted, ids, retries, replayed) = (
            next.clone(),
            accepted.clone(),
            ids.clone(),
            retries.clone(),
            replayed.clone(),
        );
        senders.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    return;
                }
                let body = json!({"to": TO, "body": format!("crash test {i}")});
                loop {
                    assert!(Instant::now() < deadline, "request {i} never accepted");
                    let r = client
                        .post(format!("{base}/v1/messages"))
                        .bearer_auth(&key)
                        .header("Idempotency-Key", format!("crash-{i}"))
                        .json(&body)
                        .send()
                        .await;
                    match r {
                        Ok(r) if r.status() == 202 => {
                            if r.headers().get("idempotent-replayed").is_some() {
                                replayed.fetch_add(1, Ordering::SeqCst);
                            }
                            let v: Value = match r.json().await {
                                Ok(v) => v,
                                Err(_) => {
                                    retries.fetch_add(1, Ordering::SeqCst);
                                    continue;
                                }
                            };
                            let id = v["id"].as_str().expect("id").to_string();
                            ids.lock().expect("ids").insert(i, id);
                            accepted.fetch_add(1, Ordering::SeqCst);
                            break;
                        }
                        Ok(r) if r.status().is_client_error() => {
                            let status = r.status();
                            let text = r.text().await.unwrap_or_default();
                            panic!("request {i} refused: {status} {text}");
                        }
                        _ => {
                            retries.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                    }
                }
            }
        }));
    }

    // Kill once enough are accepted, at a moment when the provider holds answers weft has not
    // seen yet (given up on after a while: then any moment will do).
    let kill_deadline = Instant::now() + Duration::from_secs(60);
    while accepted.load(Ordering::SeqCst) < KILL_AFTER_ACCEPTED {
        assert!(Instant::now() < kill_deadline, "accepting stalled");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let in_flight_deadline = Instant::now() + Duration::from_secs(5);
    while proxy.holding.load(Ordering::SeqCst) == 0 && Instant::now() < in_flight_deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let answers_lost = proxy.holding.load(Ordering::SeqCst);
    weft.child.kill().expect("SIGKILL weft");
    let _ = weft.child.wait();
    let accepted_at_kill = accepted.load(Ordering::SeqCst);
    let sim_at_kill = sim.recorder().count();
    let killed_at = started.elapsed();
    assert!(
        answers_lost > 0 || sim_at_kill < accepted_at_kill,
        "the kill should land mid-dispatch: the provider had {sim_at_kill} of {accepted_at_kill}"
    );
    assert!(sim_at_kill > 0, "dispatch had started before the kill");

    // Down for a moment (callbacks and sends fail meanwhile), then back on the same port.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut weft = serve(&config, dir.path(), 2);
    let restarted = Instant::now();
    wait_ready(&client, &base, &mut weft, dir.path()).await;
    for s in senders {
        s.await.expect("sender");
    }
    let ids = ids.lock().expect("ids").clone();
    assert_eq!(ids.len(), TOTAL, "every request was finally accepted");
    let distinct: std::collections::BTreeSet<&String> = ids.values().collect();
    assert_eq!(distinct.len(), TOTAL, "one message per idempotency key");

    // Everything ends delivered.
    let wait_deadline = Instant::now() + DELIVERY_TIMEOUT;
    let mut last: BTreeMap<String, String>;
    loop {
        last = statuses(&client, &base, &key).await;
        let delivered = last.values().filter(|s| *s == "delivered").count();
        if delivered == TOTAL && last.len() == TOTAL {
            break;
        }
        if Instant::now() >= wait_deadline {
            let mut by_status: BTreeMap<&str, usize> = BTreeMap::new();
            for s in last.values() {
                *by_status.entry(s.as_str()).or_default() += 1;
            }
            let stuck: Vec<_> = last
                .iter()
                .filter(|(_, s)| *s != "delivered")
                .take(5)
                .collect();
            panic!(
                "not all delivered after {DELIVERY_TIMEOUT:?}: {by_status:?} (stored {}), e.g. {stuck:?}",
                last.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let all_delivered_after = restarted.elapsed();

    // The provider saw every accepted message exactly once, and nothing else.
    let per_message = sim.recorder().per_message();
    let missing: Vec<&String> = distinct
        .iter()
        .copied()
        .filter(|id| !per_message.contains_key(*id))
        .collect();
    let twice: Vec<(&String, &u32)> = per_message.iter().filter(|(_, n)| **n > 1).collect();
    let unknown: Vec<&String> = per_message
        .keys()
        .filter(|id| !distinct.contains(id))
        .collect();

    // What the crash did to attempts (reconciled by callback vs. sent again).
    let mut multi_attempt = 0usize;
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    let id_list: Vec<String> = distinct.iter().map(|s| s.to_string()).collect();
    for chunk in id_list.chunks(64) {
        let futs = chunk.iter().map(|id| {
            let client = client.clone();
            let url = format!("{base}/v1/messages/{id}");
            let key = key.clone();
            async move {
                client
                    .get(url)
                    .bearer_auth(key)
                    .send()
                    .await
                    .expect("GET message")
                    .json::<Value>()
                    .await
                    .expect("message JSON")
            }
        });
        for m in futures::future::join_all(futs).await {
            let attempts = m["attempts"].as_array().cloned().unwrap_or_default();
            if attempts.len() > 1 {
                multi_attempt += 1;
            }
            for a in attempts {
                *outcomes
                    .entry(a["outcome"].as_str().unwrap_or("?").to_string())
                    .or_default() += 1;
            }
        }
    }

    let report = format!(
        "crash test [{b:?}]: sent {TOTAL} with {SENDERS} senders; SIGKILL at {killed_at:?} after {accepted_at_kill} accepted \
         while the provider had {sim_at_kill} ({answers_lost} of them with the answer still held back); {} client retries, {} idempotent replays; restarted, all {TOTAL} delivered \
         {all_delivered_after:?} after restart; provider received {} sends for {} messages: missing {}, twice {}, unknown {}; \
         messages with >1 attempt: {multi_attempt}; attempt outcomes {outcomes:?}; total {:?}",
        retries.load(Ordering::SeqCst),
        replayed.load(Ordering::SeqCst),
        sim.recorder().count(),
        per_message.len(),
        missing.len(),
        twice.len(),
        unknown.len(),
        started.elapsed(),
    );
    println!("{report}");
    eprintln!("{report}");
    assert!(
        missing.is_empty(),
        "never reached the provider: {missing:?}\n{report}"
    );
    assert!(twice.is_empty(), "sent twice: {twice:?}\n{report}");
    assert!(
        unknown.is_empty(),
        "sent but never acknowledged: {unknown:?}\n{report}"
    );
    assert_eq!(sim.recorder().count(), TOTAL, "{report}");
    assert!(sim.recorder().duplicates().is_empty());
    drop(weft);
    drop(db);
}
