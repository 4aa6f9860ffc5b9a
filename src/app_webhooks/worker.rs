//! The delivery worker: claim due deliveries under a lease → sign → POST → record.
//!
//! Three tasks: a claimer that leases as many due rows as it has free permits (PostgreSQL
//! `FOR UPDATE SKIP LOCKED`, so replicas share the queue), one task per POST holding a
//! permit, and a recorder that writes finished attempts in batches. A fourth refreshes
//! the tenant cache every ~2 s. Nothing spins: the claimer sleeps until the poll interval,
//! the earliest local retry, or a wake-up from `enqueue`.

use super::queue::{self, Claimed, Recorded};
use super::views::AttemptEntry;
use super::{cache, db, sign, ssrf};
use crate::config::AppWebhooksConfig;
use crate::domain::now_ms;
use crate::metrics;
use crate::store::Store;
use rand::Rng;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch, Notify, Semaphore};
use tokio::task::JoinHandle;

/// How often the tenant cache is refreshed from the database.
const REFRESH: Duration = Duration::from_secs(2);
/// At most this many rows per claim.
const CLAIM_MAX: usize = 64;
/// Attempts kept in a delivery's history.
const LOG_MAX: usize = 50;

/// The running worker; cheap to clone. Also what the API needs to know about app webhooks.
#[derive(Clone)]
pub struct AppWebhooks {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    cfg: AppWebhooksConfig,
    client: Result<reqwest::Client, String>,
    node: String,
    claims: AtomicU64,
    permits: Arc<Semaphore>,
    /// The earliest retry this process scheduled (Unix ms), `i64::MAX` when none.
    soonest: AtomicI64,
    kick: Notify,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Starts the worker: tenant-cache refresh, claimer and recorder.
pub fn start(store: Store, cfg: &AppWebhooksConfig) -> AppWebhooks {
    let mut b = reqwest::Client::builder()
        .timeout(Duration::from_secs(cfg.request_timeout_seconds))
        .connect_timeout(Duration::from_secs(cfg.request_timeout_seconds.min(10)))
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(concat!("weft/", env!("CARGO_PKG_VERSION")));
    if !cfg.allow_private_urls {
        b = b.dns_resolver(Arc::new(ssrf::PublicResolver));
    }
    let client = b.build().map_err(|e| {
        tracing::error!(error = %e, "Cannot build the app webhook HTTP client; deliveries will fail.");
        e.to_string()
    });
    let (stop, _) = watch::channel(false);
    let inner = Arc::new(Inner {
        store,
        cfg: cfg.clone(),
        client,
        node: format!("w{}", ulid::Ulid::new()),
        claims: AtomicU64::new(0),
        permits: Arc::new(Semaphore::new(cfg.concurrency)),
        soonest: AtomicI64::new(i64::MAX),
        kick: Notify::new(),
        stop,
        tasks: std::sync::Mutex::new(Vec::new()),
    });
    let (tx, rx) = mpsc::channel(cfg.concurrency * 2);
    let tasks = vec![
        tokio::spawn(refresh(inner.clone(), cache::register())),
        tokio::spawn(claimer(inner.clone(), tx)),
        tokio::spawn(recorder(inner.clone(), rx)),
    ];
    if let Ok(mut t) = inner.tasks.lock() {
        *t = tasks;
    }
    AppWebhooks { inner }
}

impl AppWebhooks {
    /// Whether endpoint URLs may resolve to private or loopback addresses.
    pub fn allow_private_urls(&self) -> bool {
        self.inner.cfg.allow_private_urls
    }

    /// Stops claiming, waits up to `drain` for POSTs in flight and their records. A POST
    /// still running after that keeps its lease until it expires; it is then sent again.
    pub async fn shutdown(&self, drain: Duration) {
        let _ = self.inner.stop.send(true);
        let tasks: Vec<_> = match self.inner.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        let all = async {
            for t in tasks {
                let _ = t.await;
            }
        };
        if tokio::time::timeout(drain, all).await.is_err() {
            tracing::warn!(
                "App webhook deliveries still in flight at shutdown; their leases will expire."
            );
        }
    }
}

async fn refresh(inner: Arc<Inner>, source: cache::SourceGuard) {
    let mut stop = inner.stop.subscribe();
    loop {
        match db::live_tenants(&inner.store).await {
            Ok(set) => source.replace(set),
            Err(e) => tracing::warn!(error = %e, "Cannot refresh the app webhook tenant cache."),
        }
        tokio::select! {
            _ = tokio::time::sleep(REFRESH) => {}
            _ = stopped(&mut stop) => return,
        }
    }
}

async fn claimer(inner: Arc<Inner>, tx: mpsc::Sender<Recorded>) {
    let mut stop = inner.stop.subscribe();
    let poll = Duration::from_millis(inner.cfg.poll_interval_ms);
    let lease_ms =
        i64::try_from(inner.cfg.request_timeout_seconds * 1000 + 30_000).unwrap_or(60_000);
    loop {
        if *stop.borrow() {
            return;
        }
        // A permit free, or wait for one.
        let free = inner.permits.available_permits().min(CLAIM_MAX);
        if free == 0 {
            tokio::select! {
                p = inner.permits.acquire() => drop(p),
                _ = stopped(&mut stop) => return,
            }
            continue;
        }
        let now = now_ms();
        if inner.soonest.load(Ordering::Relaxed) <= now {
            inner.soonest.store(i64::MAX, Ordering::Relaxed);
        }
        let token = format!(
            "{}:{}",
            inner.node,
            inner.claims.fetch_add(1, Ordering::Relaxed)
        );
        let claimed =
            match queue::claim(&inner.store, &token, now, now + lease_ms, free as i64).await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "Cannot claim app webhook deliveries.");
                    Vec::new()
                }
            };
        let full = claimed.len() == free;
        for c in claimed {
            let Ok(permit) = inner.permits.clone().acquire_owned().await else {
                return;
            };
            let (inner, tx, token) = (inner.clone(), tx.clone(), token.clone());
            tokio::spawn(async move {
                let rec = deliver(&inner, c, token).await;
                let _ = tx.send(rec).await;
                drop(permit);
            });
        }
        if full {
            continue;
        }
        // Sleep until the poll interval, the earliest local retry, or a wake-up.
        loop {
            let due = inner.soonest.load(Ordering::Relaxed);
            let wait = u64::try_from(due.saturating_sub(now_ms())).unwrap_or(0);
            let wait = poll.min(Duration::from_millis(wait));
            tokio::select! {
                _ = tokio::time::sleep(wait) => break,
                _ = inner.kick.notified() => continue,
                _ = super::woken() => {
                    // `enqueue` runs inside a transaction not yet committed: give it a moment.
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    break;
                }
                _ = stopped(&mut stop) => return,
            }
        }
    }
}

async fn recorder(inner: Arc<Inner>, mut rx: mpsc::Receiver<Recorded>) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut tries = 0;
        loop {
            tries += 1;
            match queue::record(&inner.store, &batch).await {
                Ok(()) => break,
                Err(e) if tries < 3 => {
                    tracing::warn!(error = %e, "Cannot record app webhook attempts; retrying.");
                    tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                }
                Err(e) => {
                    tracing::error!(error = %e, "Cannot record app webhook attempts; their leases will expire and they will be sent again.");
                    break;
                }
            }
        }
        let retry = batch
            .iter()
            .filter(|r| r.status == "pending")
            .map(|r| r.next_attempt_at)
            .min();
        if let Some(at) = retry {
            inner.soonest.fetch_min(at, Ordering::Relaxed);
            inner.kick.notify_one();
        }
    }
}

/// Resolves once shutdown began (the `watch` guard is not held across an await).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

/// One POST and what it means for the delivery.
#[tracing::instrument(skip_all, fields(delivery_id = %c.id, event_id = %c.event_id))]
async fn deliver(inner: &Inner, c: Claimed, token: String) -> Recorded {
    let started = now_ms();
    let clock = std::time::Instant::now();
    let result = if c.endpoint_live {
        post(inner, &c, started / 1000).await
    } else {
        Err((None, "endpoint deleted".to_string()))
    };
    let attempts = c.attempts + 1;
    let mut log = c.log;
    let (code, error) = match &result {
        Ok(code) => (Some(*code), None),
        Err((code, e)) => (*code, Some(e.clone())),
    };
    log.push(AttemptEntry {
        attempted_at: crate::domain::rfc3339(started),
        status_code: code,
        error: error.clone(),
        duration_ms: i64::try_from(clock.elapsed().as_millis()).unwrap_or(i64::MAX),
    });
    if log.len() > LOG_MAX {
        log.drain(..log.len() - LOG_MAX);
    }
    let max = i64::from(inner.cfg.max_attempts);
    let (status, outcome, next, delivered_at) = match &result {
        Ok(_) => ("delivered", "ok", started, Some(now_ms())),
        Err(_) if attempts < max && c.endpoint_live => {
            let d = backoff(attempts, inner.cfg.retry_base_ms, inner.cfg.retry_max_ms);
            (
                "pending",
                "retry",
                now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 2),
                None,
            )
        }
        Err(_) => ("failed", "failed", started, None),
    };
    ::metrics::counter!(metrics::APP_WEBHOOK_DELIVERIES, "outcome" => outcome).increment(1);
    match &error {
        Some(e) => tracing::info!(attempts, outcome, error = %e, "App webhook attempt failed."),
        None => tracing::debug!(attempts, "App webhook delivered."),
    }
    Recorded {
        id: c.id,
        token,
        status,
        attempts,
        log,
        status_code: code.map(i64::from),
        error,
        next_attempt_at: next,
        delivered_at,
    }
}

/// POSTs the payload, signed. `Ok` with a 2xx status, else the status (if any) and why.
async fn post(inner: &Inner, c: &Claimed, ts: i64) -> Result<u16, (Option<u16>, String)> {
    let client = inner.client.as_ref().map_err(|e| (None, e.clone()))?;
    let url = url::Url::parse(&c.url).map_err(|e| (None, format!("bad URL: {e}")))?;
    if !inner.cfg.allow_private_urls {
        // Names are checked by the resolver; address literals here.
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if let Some(ip) = literal {
            ssrf::check_ip(ip).map_err(|e| (None, format!("refused: {e}")))?;
        }
    }
    let sig = sign::signature(&c.secret, &c.event_id, ts, c.payload.as_bytes())
        .map_err(|e| (None, e.to_string()))?;
    let resp = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", &c.event_id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig)
        .body(c.payload.clone())
        .send()
        .await
        .map_err(|e| (None, describe(&e.without_url())))?;
    let code = resp.status().as_u16();
    if resp.status().is_success() {
        Ok(code)
    } else {
        Err((Some(code), format!("endpoint answered HTTP {code}")))
    }
}

/// A reqwest error with its causes (the URL is already stripped: it may hold a token).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out.chars().take(500).collect()
}

/// The wait before attempt `attempts + 1`: `base * 2^(attempts-1)`, capped at `max`, with
/// jitter over its upper half.
pub fn backoff(attempts: i64, base_ms: u64, max_ms: u64) -> Duration {
    let shift = u32::try_from(attempts.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
    let ceiling = base_ms.saturating_mul(1u64 << shift).min(max_ms).max(1);
    Duration::from_millis(rand::thread_rng().gen_range(ceiling / 2..=ceiling))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_and_caps() {
        for _ in 0..200 {
            let d = |n| backoff(n, 1000, 60_000).as_millis() as u64;
            assert!((500..=1000).contains(&d(1)));
            assert!((1000..=2000).contains(&d(2)));
            assert!((4000..=8000).contains(&d(4)));
            assert!((30_000..=60_000).contains(&d(7)));
            assert!((30_000..=60_000).contains(&d(1000)));
            assert!(d(0) <= 1000);
        }
    }

    #[test]
    fn error_text_keeps_causes() {
        let e = std::io::Error::other("connection refused");
        assert_eq!(describe(&e), "connection refused");
    }
}
