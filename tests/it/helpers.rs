//! Test harness: a weft per test (own database, own port), an in-process Twilio simulator,
//! an HTTP client with the tenant's key, and bounded polling helpers.

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use weft::api::auth::{hash_key, new_key};
use weft::app::Application;
use weft::config::Config;
use weft::store::{AdminDone, Store};
use weft_twilio::simulator::{Simulator, SimulatorConfig};

/// The Twilio connection every Twilio-backed app gets.
pub const TWILIO_CONN: &str = "twilio-sim";
/// The connection's (and the simulator's) sender.
pub const SENDER: &str = "+15005550006";
/// The tenant every app is created with.
pub const TENANT: &str = "acme";
/// An ordinary, valid destination.
pub const TO: &str = "+14155550100";

/// Which database an app runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// What an app is started with.
#[derive(Debug, Clone)]
pub struct Setup {
    /// Start a Twilio simulator and configure a `[[connections]]` for it.
    pub twilio: bool,
    /// Put this base URL in front of the simulator instead (a fault proxy); needs `twilio`.
    pub twilio_base_override: Option<String>,
    /// The built-in sandbox connection.
    pub sandbox: bool,
    /// More top-level TOML (only keys and tables the harness does not write itself).
    pub extra_toml: String,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            twilio: true,
            twilio_base_override: None,
            sandbox: false,
            extra_toml: String::new(),
        }
    }
}

impl Setup {
    pub fn twilio() -> Self {
        Setup::default()
    }
    pub fn sandbox() -> Self {
        Setup {
            twilio: false,
            sandbox: true,
            ..Setup::default()
        }
    }
}

/// Initialises test logging once (`RUST_LOG=weft=debug cargo test --test it` to see it).
fn init_tracing() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off")),
            )
            .with_test_writer()
            .try_init();
    });
}

/// The PostgreSQL server the suite uses (a database on it is only the base for fresh ones).
pub fn pg_base_url() -> String {
    std::env::var("WEFT_TEST_PG_URL")
        .or_else(|_| std::env::var("WEFT_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database that exists for one app (or one crash test) and is removed afterwards.
pub struct TestDb {
    pub url: String,
    /// PostgreSQL: (server URL to connect to for the drop, database name).
    pg: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn create(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("weft.db").display());
                TestDb {
                    url,
                    pg: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                use sqlx::{Connection, Executor};
                let base = pg_base_url();
                let name = format!("weft_it_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut conn = sqlx::PgConnection::connect(&base)
                    .await
                    .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
                conn.execute(format!("CREATE DATABASE \"{name}\"").as_str())
                    .await
                    .expect("create database");
                let _ = conn.close().await;
                let mut url = url::Url::parse(&base).expect("WEFT_TEST_PG_URL is a URL");
                url.set_path(&format!("/{name}"));
                TestDb {
                    url: url.to_string(),
                    pg: Some((base, name)),
                    _dir: None,
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((base, name)) = self.pg.take() else {
            return;
        };
        // Drop runs inside the test's runtime: do the async drop on a thread of its own.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                use sqlx::{Connection, Executor};
                if let Ok(mut conn) = sqlx::PgConnection::connect(&base).await {
                    let _ = conn
                        .execute(
                            format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)").as_str(),
                        )
                        .await;
                    let _ = conn.close().await;
                }
            });
        })
        .join();
    }
}

/// A running weft with one tenant, one key and (usually) a Twilio simulator behind it.
pub struct TestApp {
    #[allow(dead_code)]
    pub addr: SocketAddr,
    /// `http://127.0.0.1:PORT`, also weft's public URL.
    pub base: String,
    pub key: String,
    pub tenant_id: String,
    pub client: reqwest::Client,
    pub sim: Option<Simulator>,
    pub store: Store,
    shutdown: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
    // Last: the database goes after the app has stopped using it.
    _db: TestDb,
}

/// The harness's fixed part of every app's config.
fn config_toml(db_url: &str, setup: &Setup, sim: Option<&Simulator>) -> String {
    let mut toml = format!(
        r#"
listen = "127.0.0.1:0"
database_url = "{db_url}"
{extra}

[log]
format = "pretty"
level = "warn"

[store]
pool_size = 4
writers = 2

[dispatch]
concurrency = 32
max_attempts = 6
retry_base_ms = 50
retry_max_ms = 2000
lease_seconds = 10
poll_interval_ms = 50
reconcile_seconds = 2
request_timeout_seconds = 5

[shutdown]
drain_seconds = 1

[sandbox]
enabled = {sandbox}
echo = false
"#,
        extra = setup.extra_toml,
        sandbox = setup.sandbox,
    );
    if let Some(sim) = sim {
        let base_url = setup
            .twilio_base_override
            .clone()
            .unwrap_or_else(|| sim.base_url());
        toml.push_str(&format!(
            r#"
[[connections]]
id = "{TWILIO_CONN}"
provider = "twilio"
tenant = "{TENANT}"
base_url = "{base_url}"
senders = ["{SENDER}"]
channels = ["sms"]
[connections.credentials]
account_sid = "{sid}"
auth_token = "{token}"
"#,
            sid = sim.account_sid(),
            token = sim.auth_token(),
        ));
    }
    toml
}

/// Starts a weft on `backend` as `setup` says.
pub async fn spawn_app(backend: Backend, setup: Setup) -> TestApp {
    init_tracing();
    let sim = if setup.twilio {
        Some(
            Simulator::start(SimulatorConfig::default())
                .await
                .expect("start the Twilio simulator"),
        )
    } else {
        None
    };
    spawn_app_with(backend, setup, sim).await
}

/// Starts a weft in front of an already running simulator (fault proxies need its URL first).
pub async fn spawn_app_with(backend: Backend, setup: Setup, sim: Option<Simulator>) -> TestApp {
    init_tracing();
    let db = TestDb::create(backend).await;
    let toml = config_toml(&db.url, &setup, sim.as_ref());
    let cfg = Config::from_toml(&toml).unwrap_or_else(|e| panic!("test config: {e}\n{toml}"));
    let app = Application::build(cfg).await.expect("build the app");
    let addr = app.local_addr().expect("bound address");
    let store = app.store();
    let tenant_id = match store.create_tenant(TENANT).await.expect("create tenant") {
        AdminDone::Tenant { id, .. } => id,
        _ => panic!("create_tenant answered something else"),
    };
    let key = new_key();
    match store
        .create_api_key(TENANT, &hash_key(&key))
        .await
        .expect("create key")
    {
        AdminDone::ApiKey { .. } => {}
        _ => panic!("create_api_key answered something else"),
    }
    let (tx, rx) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = app
            .run_until(async move {
                let _ = rx.await;
            })
            .await;
    });
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client");
    TestApp {
        addr,
        base: format!("http://{addr}"),
        key,
        tenant_id,
        client,
        sim,
        store,
        shutdown: Some(tx),
        server: Some(server),
        _db: db,
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.server.take() {
            h.abort();
        }
    }
}

impl TestApp {
    pub fn sim(&self) -> &Simulator {
        self.sim.as_ref().expect("this app has a Twilio simulator")
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Another tenant with its own key, in the same app.
    pub async fn second_tenant(&self, name: &str) -> String {
        self.store.create_tenant(name).await.expect("tenant");
        let key = new_key();
        match self
            .store
            .create_api_key(name, &hash_key(&key))
            .await
            .expect("key")
        {
            AdminDone::ApiKey { .. } => key,
            _ => panic!("no such tenant {name}"),
        }
    }

    /// `POST /v1/messages` with this app's key and a JSON body.
    pub async fn post_message(&self, body: &Value) -> reqwest::Response {
        self.post_message_with(body, &self.key, None).await
    }

    pub async fn post_message_with(
        &self,
        body: &Value,
        key: &str,
        idempotency_key: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/messages"))
            .bearer_auth(key)
            .json(body);
        if let Some(k) = idempotency_key {
            req = req.header("Idempotency-Key", k);
        }
        req.send().await.expect("POST /v1/messages")
    }

    /// `POST /v1/messages` with raw bytes and headers of the test's choosing.
    pub async fn post_raw(&self, body: Vec<u8>, content_type: Option<&str>) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.url("/v1/messages"))
            .bearer_auth(&self.key)
            .body(body);
        if let Some(ct) = content_type {
            req = req.header(CONTENT_TYPE, ct);
        }
        req.send().await.expect("POST /v1/messages")
    }

    /// Sends an SMS and insists on 202; returns the answer.
    pub async fn send_sms(&self, to: &str, body: &str) -> Value {
        let resp = self.post_message(&json!({"to": to, "body": body})).await;
        let status = resp.status();
        let v: Value = resp.json().await.expect("JSON answer");
        assert_eq!(status, 202, "send to {to} answered {status}: {v}");
        v
    }

    /// `GET /v1/messages/{id}`: (HTTP status, body).
    pub async fn get_message_as(&self, id: &str, key: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(&format!("/v1/messages/{id}")))
            .bearer_auth(key)
            .send()
            .await
            .expect("GET /v1/messages/{id}");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// `GET /v1/messages/{id}`, insisting on 200.
    pub async fn get_message(&self, id: &str) -> Value {
        let (status, v) = self.get_message_as(id, &self.key).await;
        assert_eq!(status, 200, "GET {id}: {v}");
        v
    }

    /// `GET /v1/messages?{query}`: (HTTP status, body).
    pub async fn list(&self, query: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(&format!("/v1/messages?{query}")))
            .bearer_auth(&self.key)
            .send()
            .await
            .expect("GET /v1/messages");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// Every message of the tenant, following cursors.
    pub async fn list_all(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let q = match &cursor {
                Some(c) => format!("limit=200&cursor={c}"),
                None => "limit=200".to_string(),
            };
            let (status, page) = self.list(&q).await;
            assert_eq!(status, 200, "list: {page}");
            out.extend(page["data"].as_array().cloned().unwrap_or_default());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return out,
            }
        }
    }

    /// Polls the message until `done` holds, for at most `timeout`; panics with the last
    /// state seen otherwise.
    pub async fn wait_until(
        &self,
        id: &str,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.get_message(id).await;
            if done(&m) {
                return m;
            }
            if Instant::now() >= deadline {
                panic!(
                    "{id} not {what} after {timeout:?}; last seen:\n{}",
                    serde_json::to_string_pretty(&m).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// Polls until the message's status is `status` (bounded by `timeout`).
    pub async fn wait_for_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        self.wait_until(id, timeout, status, |m| m["status"] == status)
            .await
    }

    /// The Prometheus text.
    pub async fn metrics_text(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one exact series (`name{labels}`), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        metric_value(&self.metrics_text().await, series)
    }

    /// The `StatusCallback` URL weft gave the simulator for a message.
    pub fn status_callback_url(&self, message_id: &str) -> String {
        let got = self.sim().recorder().find_by_message(message_id);
        let first = got
            .first()
            .unwrap_or_else(|| panic!("the simulator never received {message_id}"));
        first.raw["StatusCallback"]
            .as_str()
            .expect("StatusCallback in the form")
            .to_string()
    }

    /// Posts a Twilio message status callback to `url`, signed with `token` (or unsigned).
    pub async fn post_twilio_status(
        &self,
        url: &str,
        params: &[(&str, &str)],
        token: Option<&str>,
        extra_headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let mut body = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in &params {
            body.append_pair(k, v);
        }
        let mut headers = HeaderMap::new();
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        if let Some(token) = token {
            let sig = weft_twilio::verify::sign(
                weft_twilio::verify::Algorithm::HmacSha1,
                token,
                url,
                &params,
            );
            headers.insert(
                weft_twilio::verify::SIGNATURE_HEADER,
                HeaderValue::from_str(&sig).expect("header"),
            );
        }
        for (k, v) in extra_headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(k.as_bytes()).expect("name"),
                HeaderValue::from_str(v).expect("value"),
            );
        }
        self.client
            .post(url)
            .headers(headers)
            .body(body.finish())
            .send()
            .await
            .expect("POST the callback")
    }
}

/// The value of one exact series in Prometheus text, 0 if absent.
pub fn metric_value(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (name, value) = l.rsplit_once(' ')?;
            (name == series)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .unwrap_or(0.0)
}

/// The form of a Twilio message status callback.
pub fn twilio_status_params<'a>(
    sim: &'a Simulator,
    sid: &'a str,
    status: &'a str,
    to: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("AccountSid", sim.account_sid()),
        ("ApiVersion", "2010-04-01"),
        ("From", SENDER),
        ("MessageSid", sid),
        ("MessageStatus", status),
        ("SmsSid", sid),
        ("SmsStatus", status),
        ("To", to),
    ]
}

/// Asserts an RFC 9457 problem answer: status, content type, `type` slug, a `detail`.
pub async fn assert_problem(resp: reqwest::Response, status: u16, slug: &str) -> Value {
    let got = resp.status().as_u16();
    let ct = resp
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = resp.text().await.unwrap_or_default();
    assert_eq!(got, status, "expected {status} {slug}, got {got}: {text}");
    assert!(
        ct.starts_with("application/problem+json"),
        "content type {ct:?} for {text}"
    );
    let v: Value = serde_json::from_str(&text).expect("problem body is JSON");
    let kind = v["type"].as_str().unwrap_or_default();
    assert!(
        kind.ends_with(&format!("/{slug}")),
        "type {kind:?} should end with /{slug}: {v}"
    );
    assert!(
        v["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "problem needs a detail: {v}"
    );
    assert_eq!(v["status"], status, "problem status field: {v}");
    v
}

/// The fields named in a problem's `errors[]`.
pub fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["field"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Statuses in a message's history, in order, with their `applied` flag.
pub fn history(m: &Value) -> Vec<(String, bool)> {
    m["status_history"]
        .as_array()
        .expect("status_history")
        .iter()
        .map(|h| {
            (
                h["status"].as_str().unwrap_or_default().to_string(),
                h["applied"].as_bool().unwrap_or(false),
            )
        })
        .collect()
}

/// Just the statuses of a message's history, in order.
pub fn history_statuses(m: &Value) -> Vec<String> {
    history(m).into_iter().map(|(s, _)| s).collect()
}

/// Unix ms of an RFC 3339 time.
pub fn unix_ms(t: &Value) -> i128 {
    let s = t.as_str().unwrap_or_else(|| panic!("not a time: {t}"));
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("{s:?} is not RFC 3339: {e}"))
        .unix_timestamp_nanos()
        / 1_000_000
}

/// Delay before the simulator's callbacks that keeps them behind weft's recording of the
/// send, for tests asserting the exact order of `status_history`.
pub const ORDERED: Duration = Duration::from_millis(100);

/// A tiny HTTP front for the simulator (see [`flaky_proxy`]).
pub struct FlakyProxy {
    pub base_url: String,
    down: Arc<std::sync::atomic::AtomicBool>,
    pub served_503: Arc<AtomicU32>,
    /// Answers the provider gave that are being held back right now.
    pub holding: Arc<AtomicU32>,
    _task: tokio::task::JoinHandle<()>,
}

impl FlakyProxy {
    /// While down, every request gets a 503.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self._task.abort();
    }
}

/// A front for the simulator: the first `fail_first` requests (and every request while
/// [`FlakyProxy::set_down`] is on) get Twilio's 503, the others are forwarded and their
/// answers held back for `answer_delay` (so the simulator's callbacks can overtake the answer).
pub async fn flaky_proxy(target: String, fail_first: u32, answer_delay: Duration) -> FlakyProxy {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap as AxHeaders, Method, StatusCode, Uri};
    use axum::response::IntoResponse;

    #[derive(Clone)]
    struct S {
        target: String,
        remaining: Arc<AtomicU32>,
        down: Arc<std::sync::atomic::AtomicBool>,
        served: Arc<AtomicU32>,
        holding: Arc<AtomicU32>,
        client: reqwest::Client,
        answer_delay: Duration,
    }

    /// Counts a held answer until it is released or its request is dropped.
    struct Held(Arc<AtomicU32>);
    impl Drop for Held {
        fn drop(&mut self) {
            self.0.fetch_sub(1, Ordering::SeqCst);
        }
    }

    async fn handle(
        State(s): State<S>,
        method: Method,
        uri: Uri,
        headers: AxHeaders,
        body: Bytes,
    ) -> axum::response::Response {
        let fail = s.down.load(Ordering::SeqCst)
            || s.remaining
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok();
        if fail {
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
                s.holding.fetch_add(1, Ordering::SeqCst);
                let held = Held(s.holding.clone());
                tokio::time::sleep(s.answer_delay).await;
                drop(held);
                (status, [("content-type", ct)], bytes.to_vec()).into_response()
            }
            Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }

    let served = Arc::new(AtomicU32::new(0));
    let holding = Arc::new(AtomicU32::new(0));
    let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let state = S {
        target,
        remaining: Arc::new(AtomicU32::new(fail_first)),
        down: down.clone(),
        served: served.clone(),
        holding: holding.clone(),
        client: reqwest::Client::new(),
        answer_delay,
    };
    let router = axum::Router::new().fallback(handle).with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind proxy");
    let addr = listener.local_addr().expect("proxy addr");
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    FlakyProxy {
        base_url: format!("http://{addr}"),
        down,
        served_503: served,
        holding,
        _task: task,
    }
}

/// Upper bound for "this should happen soon" waits.
pub const SOON: Duration = Duration::from_secs(15);

impl TestApp {
    /// The URL of this app's database, for tests that count rows directly.
    pub fn db_url(&self) -> &str {
        &self._db.url
    }

    /// A number read from the app's database directly (`SELECT COUNT(*) …`).
    pub async fn count(&self, sql: &str) -> i64 {
        db_count(self.db_url(), sql).await
    }

    /// Runs one statement on the app's database directly; returns the rows it changed.
    pub async fn exec(&self, sql: &str) -> u64 {
        use sqlx::Connection;
        let mut c = db_connect(self.db_url()).await;
        let n = sqlx::query(sql)
            .execute(&mut c)
            .await
            .expect(sql)
            .rows_affected();
        let _ = c.close().await;
        n
    }
}

async fn db_connect(url: &str) -> sqlx::AnyConnection {
    use sqlx::Connection;
    sqlx::any::install_default_drivers();
    sqlx::AnyConnection::connect(url)
        .await
        .unwrap_or_else(|e| panic!("open {url}: {e}"))
}

/// One `SELECT COUNT(*) …` on a database directly.
pub async fn db_count(url: &str, sql: &str) -> i64 {
    use sqlx::Connection;
    let mut c = db_connect(url).await;
    let n = sqlx::query_scalar::<_, i64>(sql)
        .fetch_one(&mut c)
        .await
        .expect(sql);
    let _ = c.close().await;
    n
}

/// The connection id tests give their WhatsApp Cloud simulator.
pub const WHATSAPP_CONN: &str = "wa-sim";

/// A Twilio `[[connections]]` entry of the test tenant for `sim`, reached at `base_url` (the
/// simulator or a proxy in front of it), with `extra` keys (rate limits) before its
/// credentials.
pub fn twilio_conn_toml(
    id: &str,
    base_url: &str,
    sim: &Simulator,
    channels: &[&str],
    senders: &[&str],
    extra: &str,
) -> String {
    let quoted = |xs: &[&str]| {
        xs.iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    format!(
        r#"
[[connections]]
id = "{id}"
provider = "twilio"
tenant = "{TENANT}"
base_url = "{base_url}"
senders = [{senders}]
channels = [{channels}]
{extra}
[connections.credentials]
account_sid = "{sid}"
auth_token = "{token}"
"#,
        senders = quoted(senders),
        channels = quoted(channels),
        sid = sim.account_sid(),
        token = sim.auth_token(),
    )
}

/// A WhatsApp Cloud connection on `sim`. It sends from its phone-number id (settings) and
/// names the number itself as its sender, so outbound messages lease the same `tel:`
/// business address inbound webhooks carry (`metadata.display_phone_number`).
pub fn whatsapp_toml(sim: &weft_whatsapp::simulator::Simulator) -> String {
    let c = sim.config();
    format!(
        r#"
[[connections]]
id = "{WHATSAPP_CONN}"
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
