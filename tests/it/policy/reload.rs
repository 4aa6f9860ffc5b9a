//! SIGHUP reloads the routing rules (src/cli.rs `reload_routes_on_sighup`), on the real `weft`
//! binary: a rule sends +1202… to connection A; the config file is rewritten to send it to B
//! and SIGHUP makes new sends land on B. A configuration with problems (a rule naming an
//! unknown connection next to one that would send to A again; then a file that is not TOML)
//! is refused on SIGHUP: the process stays up and the rules in force keep working.

use super::*;
use crate::crash::{config_head, create_tenant_key, free_port, serve, wait_ready, Weft};
use serde_json::json;
use std::path::Path;
use std::process::Command;

const A: &str = "twilio-a";
const B: &str = "twilio-b";
/// A Washington, DC number: matched by the `+1202` prefix rule.
const DC: &str = "+12025550123";
const RELOADED: &str = "Reloaded routing rules.";
const REFUSED: &str = "Configuration reload refused";

/// The whole config file: both connections, and `routes` (TOML) at the end.
fn config_file(port: u16, db_url: &str, a: &Simulator, b: &Simulator, routes: &str) -> String {
    format!(
        r#"{head}
[dispatch]
concurrency = 8
max_attempts = 6
retry_base_ms = 50
retry_max_ms = 1000
lease_seconds = 10
poll_interval_ms = 50
reconcile_seconds = 2
request_timeout_seconds = 5

[sandbox]
enabled = false
{a_conn}{b_conn}
{routes}"#,
        head = config_head(port, db_url, "info"),
        a_conn = twilio_conn(A, &a.base_url(), a, &["sms"]),
        b_conn = twilio_conn(B, &b.base_url(), b, &["sms"]),
    )
}

/// The one rule: `+1202` → `conn`.
fn dc_route(conn: &str) -> String {
    format!("[[routes]]\nprefix = \"+1202\"\nconnections = [\"{conn}\"]\n")
}

/// Overwrites the config file and sends SIGHUP to weft.
fn rewrite_and_hup(weft: &Weft, path: &Path, content: &str) {
    std::fs::write(path, content).expect("rewrite the config");
    let pid = weft.child.id().to_string();
    let status = Command::new("kill")
        .args(["-HUP", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -HUP {pid}");
}

/// How many log lines of this run contain `what`.
fn log_count(dir: &Path, what: &str) -> usize {
    std::fs::read_to_string(dir.join("stderr-1.log"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains(what))
        .count()
}

struct Rig {
    client: reqwest::Client,
    base: String,
    key: String,
    a: Simulator,
    b: Simulator,
    sent: Vec<String>,
}

impl Rig {
    /// Sends to the DC number and waits until one of the simulators has it; returns which.
    async fn send_dc(&mut self, body: &str) -> &'static str {
        let r = self
            .client
            .post(format!("{}/v1/messages", self.base))
            .bearer_auth(&self.key)
            .json(&json!({"to": DC, "body": body}))
            .send()
            .await
            .expect("POST /v1/messages");
        let status = r.status();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 202, "send {body:?}: {v}");
        let id = id_of(&v);
        self.sent.push(id.clone());
        let (a, b) = (&self.a, &self.b);
        eventually(&format!("{body:?} sent"), SOON, || {
            provider_copies(&[a, b], &id) > 0
        })
        .await;
        if a.recorder().find_by_message(&id).is_empty() {
            B
        } else {
            A
        }
    }

    /// `n` sends, each of which must land on `want`.
    async fn all_land_on(&mut self, want: &str, n: usize, tag: &str) {
        for i in 0..n {
            let got = self.send_dc(&format!("{tag} {i}")).await;
            assert_eq!(got, want, "{tag} {i} went to {got}");
        }
    }
}

/// Waits until `what` appears once more in the log (`seen` times so far).
async fn wait_log(dir: &Path, what: &str, seen: usize) {
    eventually(&format!("{what:?} logged"), SOON, || {
        log_count(dir, what) > seen
    })
    .await;
}

/// The process is still running.
fn assert_alive(weft: &mut Weft, dir: &Path) {
    if let Ok(Some(status)) = weft.child.try_wait() {
        let logs = std::fs::read_to_string(dir.join("stderr-1.log")).unwrap_or_default();
        panic!("weft exited with {status} after SIGHUP\n{logs}");
    }
}

pub(super) async fn sighup_reloads_routes_and_refuses_a_bad_config(b: Backend) {
    let db = TestDb::create(b).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let (sim_a, sim_b) = (twilio_sim().await, twilio_sim().await);
    let path = dir.path().join("weft.toml");
    let cfg = |routes: &str| config_file(port, &db.url, &sim_a, &sim_b, routes);
    let (a_cfg, b_cfg) = (cfg(&dc_route(A)), cfg(&dc_route(B)));
    weft::config::Config::from_toml(&b_cfg).expect("the rewritten config is good");
    // A rule naming an unknown connection, next to one that would send to A again.
    let bad = cfg(&format!(
        "{}\n[[routes]]\nprefix = \"+44\"\nconnections = [\"nope\"]\n",
        dc_route(A)
    ));
    let problems = weft::config::Config::from_toml(&bad).expect_err("the bad config is bad");
    assert!(problems.to_string().contains("nope"), "{problems}");
    std::fs::write(&path, &a_cfg).expect("write the config");
    let key = create_tenant_key(&path, TENANT);
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let base = format!("http://127.0.0.1:{port}");
    let mut weft = serve(&path, dir.path(), 1);
    wait_ready(&client, &base, &mut weft, dir.path()).await;
    let mut rig = Rig {
        client,
        base,
        key,
        a: sim_a,
        b: sim_b,
        sent: Vec::new(),
    };

    // The rule in the file at start: A.
    rig.all_land_on(A, 2, "at start").await;

    // Rewrite: B. After SIGHUP new sends land on B (bounded), and stay there.
    rewrite_and_hup(&weft, &path, &b_cfg);
    let deadline = Instant::now() + SOON;
    let mut before_reload = 0;
    while rig.send_dc(&format!("after SIGHUP {before_reload}")).await == A {
        before_reload += 1;
        assert!(
            Instant::now() < deadline,
            "still routed to {A} {SOON:?} after SIGHUP ({before_reload} sends)"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_log(dir.path(), RELOADED, 0).await;
    rig.all_land_on(B, 3, "reloaded").await;

    // The bad rules: refused, weft stays up, the rules in force (B) keep working.
    rewrite_and_hup(&weft, &path, &bad);
    wait_log(dir.path(), REFUSED, 0).await;
    assert_alive(&mut weft, dir.path());
    rig.all_land_on(B, 3, "after a refused reload").await;

    // Not TOML at all: refused too.
    rewrite_and_hup(&weft, &path, &format!("{a_cfg}\n[[routes\nprefix = "));
    wait_log(dir.path(), REFUSED, 1).await;
    assert_alive(&mut weft, dir.path());
    rig.all_land_on(B, 2, "after an unreadable config").await;
    assert_eq!(
        log_count(dir.path(), RELOADED),
        1,
        "only one reload applied"
    );

    // Every send reached exactly one provider, once.
    for id in &rig.sent {
        assert_eq!(provider_copies(&[&rig.a, &rig.b], id), 1, "{id}");
    }
    drop(weft);
    drop(db);
}
