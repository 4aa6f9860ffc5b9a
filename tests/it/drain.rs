//! SIGTERM drains (issue 7): the real `weft` binary, 200 accepted messages, a slow in-process
//! Twilio simulator so sends are in flight, then SIGTERM. weft must exit by itself with status 0
//! within `shutdown.drain_seconds` plus a margin, leave no attempt `in_flight` (every send that
//! had started finished and was recorded), and after a restart every message ends `delivered`
//! with the simulator having received each exactly once.

use crate::crash::{
    create_tenant_key, free_port, serve, statuses, twilio_binary_config, wait_ready, BinaryOpts,
};
use crate::helpers::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};
use weft_twilio::simulator::{Simulator, SimulatorConfig};

backend_tests!(sigterm_drains_in_flight_sends_and_exits_cleanly);

const TOTAL: usize = 200;
const CONCURRENCY: usize = 8;
const DRAIN_SECONDS: u64 = 3;
/// How long every provider call takes while weft is being stopped (well under the drain time).
const SLOW: Duration = Duration::from_millis(400);
/// Exit must come within the drain time plus this (store close, process teardown).
const EXIT_MARGIN: Duration = Duration::from_secs(4);

async fn sigterm_drains_in_flight_sends_and_exits_cleanly(b: Backend) {
    let started = Instant::now();
    let sim = Simulator::start(SimulatorConfig::default())
        .await
        .expect("simulator");
    sim.faults().set_latency(SLOW);
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
                tenant: "drain",
                sim_url: &sim.base_url(),
                rate_limit: 500,
                concurrency: CONCURRENCY,
                drain_seconds: DRAIN_SECONDS,
                log_level: "info",
            },
        ),
    )
    .expect("write config");

    let key = create_tenant_key(&config, "drain");

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let mut weft = serve(&config, dir.path(), 1);
    wait_ready(&client, &base, &mut weft, dir.path()).await;

    // Accept all of them (fast); dispatch is slow: CONCURRENCY sends of SLOW each at a time.
    let mut ids = BTreeSet::new();
    for chunk in (0..TOTAL).collect::<Vec<_>>().chunks(25) {
        let futs = chunk.iter().map(|i| {
            let (client, base, key) = (client.clone(), base.clone(), key.clone());
            async move {
                let r = client
                    .post(format!("{base}/v1/messages"))
                    .bearer_auth(&key)
                    .json(&json!({"to": TO, "body": format!("drain test {i}")}))
                    .send()
                    .await
                    .expect("POST /v1/messages");
                assert_eq!(r.status(), 202, "message {i} accepted");
                let v: Value = r.json().await.expect("JSON");
                v["id"].as_str().expect("id").to_string()
            }
        });
        ids.extend(futures::future::join_all(futs).await);
    }
    assert_eq!(ids.len(), TOTAL);

    // SIGTERM once some sends have completed and more are surely on their way.
    let deadline = Instant::now() + Duration::from_secs(15);
    while sim.recorder().count() < CONCURRENCY {
        assert!(Instant::now() < deadline, "dispatch never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let in_flight_before = db_count(
        &db.url,
        "SELECT COUNT(*) FROM attempts WHERE outcome = 'in_flight'",
    )
    .await;
    let pid = weft.child.id().to_string();
    let sim_at_term = sim.recorder().count();
    let termed = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM {pid}");

    // weft exits by itself, in time, with status 0.
    let exit_deadline = termed + Duration::from_secs(DRAIN_SECONDS) + EXIT_MARGIN;
    let exit = loop {
        if let Some(s) = weft.child.try_wait().expect("try_wait") {
            break s;
        }
        if Instant::now() >= exit_deadline {
            let logs = std::fs::read_to_string(dir.path().join("stderr-1.log")).unwrap_or_default();
            panic!(
                "weft still running {:?} after SIGTERM (drain {DRAIN_SECONDS}s)\n{logs}",
                termed.elapsed()
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let exit_took = termed.elapsed();
    let logs = std::fs::read_to_string(dir.path().join("stderr-1.log")).unwrap_or_default();
    assert!(exit.success(), "weft exited with {exit}\n{logs}");
    assert!(
        logs.contains("In-flight sends drained."),
        "the drain finished within drain_seconds\n{logs}"
    );

    // Nothing was left half-done: every send that had started finished and was recorded.
    let sim_at_exit = sim.recorder().count();
    let in_flight_after = db_count(
        &db.url,
        "SELECT COUNT(*) FROM attempts WHERE outcome = 'in_flight'",
    )
    .await;
    let attempts_after = db_count(&db.url, "SELECT COUNT(*) FROM attempts").await;
    assert_eq!(
        in_flight_after, 0,
        "attempts left in_flight after the drain"
    );
    assert!(
        sim_at_exit < TOTAL,
        "SIGTERM should land mid-run: the provider already had {sim_at_exit} of {TOTAL}"
    );
    assert_eq!(
        usize::try_from(attempts_after).expect("count"),
        sim_at_exit,
        "one recorded attempt per send the provider received"
    );

    // Restart (provider fast again): everything ends delivered, each sent exactly once.
    sim.faults().set_latency(Duration::from_millis(5));
    let mut weft = serve(&config, dir.path(), 2);
    let restarted = Instant::now();
    wait_ready(&client, &base, &mut weft, dir.path()).await;
    let wait_deadline = Instant::now() + Duration::from_secs(20);
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
            panic!("not all delivered after restart: {by_status:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let stored: BTreeSet<String> = last.keys().cloned().collect();
    assert_eq!(stored, ids, "exactly the accepted messages are stored");

    let per_message = sim.recorder().per_message();
    let missing: Vec<&String> = ids
        .iter()
        .filter(|id| !per_message.contains_key(*id))
        .collect();
    let twice: Vec<(&String, &u32)> = per_message.iter().filter(|(_, n)| **n > 1).collect();
    let report = format!(
        "drain test [{b:?}]: {TOTAL} accepted; SIGTERM with {sim_at_term} at the provider and \
         {in_flight_before} attempts in_flight; exited {exit} after {exit_took:?} (drain {DRAIN_SECONDS}s) \
         with {sim_at_exit} at the provider, {attempts_after} attempts recorded, {in_flight_after} in_flight; \
         restarted, all delivered {:?} later; provider: {} sends, missing {}, twice {}; total {:?}",
        restarted.elapsed(),
        sim.recorder().count(),
        missing.len(),
        twice.len(),
        started.elapsed(),
    );
    println!("{report}");
    eprintln!("{report}");
    assert!(missing.is_empty(), "never sent: {missing:?}\n{report}");
    assert!(twice.is_empty(), "sent twice: {twice:?}\n{report}");
    assert_eq!(sim.recorder().count(), TOTAL, "{report}");
    assert!(
        exit_took <= Duration::from_secs(DRAIN_SECONDS) + EXIT_MARGIN,
        "{report}"
    );
    drop(weft);
    drop(db);
}
