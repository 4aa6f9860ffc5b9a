//! Operational behaviour of the real binary: `/readyz` answers 503 while PostgreSQL is
//! unreachable or migrations are pending, and recovers by itself; `weft --version`.

use crate::crash::{cli, free_port, serve, wait_ready, weft_cmd};
use crate::helpers::*;
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn readyz_follows_the_database() {
        super::readyz_follows_the_database().await
    }
}

#[test]
fn version_flag_prints_the_version() {
    let dir = tempfile::tempdir().expect("temp dir");
    let config = dir.path().join("weft.toml");
    std::fs::write(&config, "").expect("config");
    let out = weft_cmd(&config)
        .arg("--version")
        .output()
        .expect("run weft --version");
    assert!(out.status.success(), "weft --version: {}", out.status);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        text.trim(),
        format!("weft {}", env!("CARGO_PKG_VERSION")),
        "weft --version printed {text:?}"
    );
}

/// A TCP front for PostgreSQL that can be cut (every connection dropped, new ones refused)
/// and restored on the same port.
struct PgProxy {
    port: u16,
    target: String,
    tasks: Arc<Mutex<Vec<tokio::task::JoinHandle<()>>>>,
}

impl PgProxy {
    async fn start(target: String) -> PgProxy {
        let proxy = PgProxy {
            port: free_port(),
            target,
            tasks: Arc::new(Mutex::new(Vec::new())),
        };
        proxy.up().await;
        proxy
    }

    async fn up(&self) {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the PostgreSQL proxy");
        let (target, tasks) = (self.target.clone(), self.tasks.clone());
        let accept = tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                let target = target.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                tasks.lock().expect("tasks").push(conn);
            }
        });
        self.tasks.lock().expect("tasks").push(accept);
    }

    /// Drops the listener and every proxied connection.
    fn down(&self) {
        for t in self.tasks.lock().expect("tasks").drain(..) {
            t.abort();
        }
    }
}

impl Drop for PgProxy {
    fn drop(&mut self) {
        self.down();
    }
}

async fn readyz(client: &reqwest::Client, base: &str) -> (u16, Value) {
    match client.get(format!("{base}/readyz")).send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            (status, r.json().await.unwrap_or(Value::Null))
        }
        Err(e) => panic!("/readyz did not answer: {e}"),
    }
}

/// Polls `/readyz` until it answers `want` (bounded); returns the body and how long it took.
async fn wait_readyz(client: &reqwest::Client, base: &str, want: u16, what: &str) -> Value {
    let start = Instant::now();
    let deadline = start + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(client, base).await;
        if status == want {
            eprintln!("readyz: {what}: {want} after {:?}: {body}", start.elapsed());
            return body;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: /readyz still {status} {body}, expected {want}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn db_admin(sql: &str) {
    use sqlx::{Connection, Executor};
    let mut conn = sqlx::PgConnection::connect(&pg_base_url())
        .await
        .expect("connect to PostgreSQL");
    conn.execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.close().await;
}

async fn readyz_follows_the_database() {
    let db = TestDb::create(Backend::Postgres).await;
    let mut url = url::Url::parse(&db.url).expect("database URL");
    let db_name = url.path().trim_start_matches('/').to_string();
    let target = format!(
        "{}:{}",
        url.host_str().expect("host"),
        url.port().unwrap_or(5432)
    );
    let proxy = PgProxy::start(target).await;
    url.set_host(Some("127.0.0.1")).expect("host");
    url.set_port(Some(proxy.port)).expect("port");

    let dir = tempfile::tempdir().expect("temp dir");
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = dir.path().join("weft.toml");
    std::fs::write(
        &config,
        format!(
            r#"
listen = "127.0.0.1:{port}"
public_url = "{base}"
database_url = "{url}"

[log]
format = "json"
level = "error"

[store]
pool_size = 2
writers = 1

[shutdown]
drain_seconds = 1

[sandbox]
enabled = true
"#
        ),
    )
    .expect("write config");
    cli(&config, &["migrate"]);

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let mut weft = serve(&config, dir.path(), 1);
    wait_ready(&client, &base, &mut weft, dir.path()).await;
    let body = wait_readyz(&client, &base, 200, "started").await;
    assert_eq!(body["status"], "ready", "{body}");

    // The build-info metric carries the same version as --version.
    let metrics = client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .expect("GET /metrics")
        .text()
        .await
        .expect("metrics");
    let series = format!(
        "weft_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(metric_value(&metrics, &series), 1.0, "{series} in /metrics");

    // PostgreSQL unreachable: not ready (liveness is unaffected), then back by itself.
    proxy.down();
    let body = wait_readyz(&client, &base, 503, "database unreachable").await;
    assert_eq!(body["status"], "unavailable", "{body}");
    let live = client
        .get(format!("{base}/healthz"))
        .send()
        .await
        .expect("GET /healthz");
    assert_eq!(
        live.status(),
        200,
        "liveness does not depend on the database"
    );
    proxy.up().await;
    wait_readyz(&client, &base, 200, "database reachable again").await;

    // The database dropped and recreated empty: migrations pending, not ready; `weft migrate`
    // (as the Helm chart's Job runs it) makes it ready without touching the server.
    db_admin(&format!("DROP DATABASE \"{db_name}\" WITH (FORCE)")).await;
    wait_readyz(&client, &base, 503, "database dropped").await;
    db_admin(&format!("CREATE DATABASE \"{db_name}\"")).await;
    let body = wait_readyz(&client, &base, 503, "migrations pending").await;
    assert!(
        body["detail"]
            .as_str()
            .is_some_and(|d| d.contains("migrat")),
        "503 names the pending migrations: {body}"
    );
    cli(&config, &["migrate"]);
    wait_readyz(&client, &base, 200, "migrated").await;
    assert!(
        weft.child.try_wait().expect("try_wait").is_none(),
        "weft serve kept running throughout"
    );
    drop(weft);
    drop(proxy);
    drop(db);
}
