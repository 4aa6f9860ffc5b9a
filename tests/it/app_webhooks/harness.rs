//! The app webhook tests' harness: a recording receiver, an independent Standard Webhooks
//! check, endpoint calls, and the run of the official Python library.

use crate::helpers::*;
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One request the receiver got.
#[derive(Debug, Clone)]
pub(super) struct Got {
    pub(super) headers: HashMap<String, String>,
    pub(super) body: String,
    /// What the receiver answered.
    pub(super) answered: u16,
}

/// A local endpoint that records every request; it answers 500 to the first `fail_first`
/// requests of each `webhook-id`, then 204.
pub(super) struct Receiver {
    pub(super) url: String,
    got: Arc<Mutex<Vec<Got>>>,
    _task: tokio::task::JoinHandle<()>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self._task.abort();
    }
}

pub(super) async fn receiver(fail_first: usize) -> Receiver {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};

    type Log = Arc<Mutex<Vec<Got>>>;
    async fn hook(
        State((log, fail)): State<(Log, usize)>,
        headers: HeaderMap,
        body: Bytes,
    ) -> StatusCode {
        let headers: HashMap<String, String> = headers
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_string(),
                    v.to_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let id = headers.get("webhook-id").cloned().unwrap_or_default();
        let mut log = log.lock().unwrap();
        let seen = log
            .iter()
            .filter(|g| g.headers.get("webhook-id") == Some(&id))
            .count();
        let status = if seen < fail {
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        };
        log.push(Got {
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
            answered: status.as_u16(),
        });
        status
    }

    let got: Log = Arc::default();
    let router = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((got.clone(), fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    Receiver {
        url: format!("http://{addr}/hook"),
        got,
        _task: task,
    }
}

impl Receiver {
    pub(super) fn got(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `done` holds for what was received.
    pub(super) async fn wait(&self, what: &str, done: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + SOON;
        loop {
            let got = self.got();
            if done(&got) {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver: not {what} after {SOON:?}; got {got:#?}"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }
}

pub(super) fn body_json(g: &Got) -> Value {
    serde_json::from_str(&g.body).unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", g.body))
}

/// The `message.status_updated` event of `message_id` reporting `status`, if received.
pub(super) fn status_event<'a>(got: &'a [Got], message_id: &str, status: &str) -> Option<&'a Got> {
    got.iter().find(|g| {
        let v = body_json(g);
        v["type"] == "message.status_updated"
            && v["data"]["id"] == message_id
            && v["data"]["status"] == status
    })
}

/// Checks a request against the Standard Webhooks spec, computed independently of weft.
pub(super) fn assert_signed(g: &Got, secret: &str) {
    let id = &g.headers["webhook-id"];
    let ts = &g.headers["webhook-timestamp"];
    assert!(id.starts_with("evt_"), "webhook-id {id}");
    let ts_secs: i64 = ts.parse().expect("webhook-timestamp is integer seconds");
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        (now - ts_secs).abs() < 300,
        "webhook-timestamp {ts} is not now ({now})"
    );
    assert_eq!(
        g.headers.get("content-type").map(String::as_str),
        Some("application/json")
    );
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").expect("whsec_ prefix"))
        .unwrap();
    assert_eq!(key.len(), 32, "the secret holds 32 random bytes");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", g.body).as_bytes());
    let want = format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()));
    let sigs: Vec<&str> = g.headers["webhook-signature"].split(' ').collect();
    assert!(
        sigs.contains(&want.as_str()),
        "signature {sigs:?}, expected {want}"
    );
    let v = body_json(g);
    let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 3, "payload is {{type, timestamp, data}}: {v}");
    assert!(
        g.body.starts_with(r#"{"type":"#),
        "type comes first: {}",
        g.body
    );
    unix_ms(&v["timestamp"]);
    assert!(v["data"].is_object(), "{v}");
}

impl TestApp {
    pub(super) async fn create_endpoint_as(&self, key: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(self.url("/v1/webhook-endpoints"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .expect("POST /v1/webhook-endpoints")
    }

    /// Creates an endpoint, insisting on 201; returns the answer (with the secret).
    pub(super) async fn create_endpoint(&self, url: &str, events: &[&str]) -> Value {
        let resp = self
            .create_endpoint_as(&self.key, &json!({"url": url, "events": events}))
            .await;
        let status = resp.status();
        let v: Value = resp.json().await.unwrap();
        assert_eq!(status, 201, "create endpoint: {v}");
        v
    }

    pub(super) async fn get_json(&self, path: &str, key: &str) -> (u16, Value) {
        let resp = self
            .client
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    /// The endpoint's deliveries once `done` holds for them.
    pub(super) async fn wait_deliveries(
        &self,
        endpoint: &str,
        what: &str,
        done: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let deadline = Instant::now() + SOON;
        loop {
            let (status, page) = self
                .get_json(
                    &format!("/v1/webhook-endpoints/{endpoint}/deliveries?limit=200"),
                    &self.key,
                )
                .await;
            assert_eq!(status, 200, "deliveries: {page}");
            let data = page["data"].as_array().cloned().unwrap_or_default();
            if done(&data) {
                return data;
            }
            assert!(
                Instant::now() < deadline,
                "deliveries not {what} after {SOON:?}: {page:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Runs `tests/app_webhooks_verify.py FILE` in the venv `scripts/py-env.sh` prepares.
pub(super) async fn verify_with_python(file: &std::path::Path) {
    if std::env::var("WEFT_SKIP_PY").as_deref() == Ok("1") {
        eprintln!("\n!!! WEFT_SKIP_PY=1: NOT verifying app webhooks with the official standardwebhooks library !!!\n");
        return;
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
    let stdout = String::from_utf8_lossy(&env.stdout);
    let python = stdout
        .lines()
        .last()
        .expect("py-env.sh prints the python path")
        .trim();
    let out = tokio::process::Command::new(python)
        .arg(format!("{root}/tests/app_webhooks_verify.py"))
        .arg(file)
        .output()
        .await
        .expect("run tests/app_webhooks_verify.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "standardwebhooks rejected weft's deliveries:\n{text}"
    );
    assert!(text.contains("deliveries verified"), "{text}");
}
