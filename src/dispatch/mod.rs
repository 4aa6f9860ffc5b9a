//! The dispatcher: claim → rate-limit → record the attempt → send → record the result.
//!
//! A freshly accepted message is handed over in memory (its outbox row is already leased to
//! this process). Polling the outbox is the recovery path: retries that are due, rows whose
//! lease expired because a process died, and rows of other replicas.

mod backoff;
mod send;

use crate::config::{Config, DispatchConfig};
use crate::domain::message::DispatchItem;
use crate::domain::now_ms;
use crate::metrics;
use crate::policy::consent::ConsentPolicy;
use crate::providers::Registry;
use crate::store::{ClaimJob, Store};
use dashmap::DashMap;
use send::process;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};

/// Hands messages to workers; cheap to clone.
#[derive(Clone)]
pub struct Dispatcher {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    registry: Registry,
    cfg: DispatchConfig,
    public_base: String,
    email: Arc<crate::threading::EmailThreading>,
    consent: Arc<ConsentPolicy>,
    breaker_open_ms: u64,
    /// Prefix of every lease token this process takes.
    node: String,
    claims: AtomicU64,
    tx: mpsc::Sender<(DispatchItem, i64)>,
    /// Bulk traffic waits in its own queue; transactional is always taken first.
    tx_bulk: mpsc::Sender<(DispatchItem, i64)>,
    permits: Arc<Semaphore>,
    tenant_names: DashMap<String, String>,
    stop: watch::Sender<bool>,
}

impl Dispatcher {
    /// Starts the intake loop and the outbox poller.
    pub fn start(
        cfg: &Config,
        store: Store,
        registry: Registry,
        email: Arc<crate::threading::EmailThreading>,
        consent: Arc<ConsentPolicy>,
    ) -> Dispatcher {
        let (tx, rx) = mpsc::channel(65_536);
        let (tx_bulk, rx_bulk) = mpsc::channel(65_536);
        let (stop, _) = watch::channel(false);
        let public_base = cfg.public_base();
        let inner = Arc::new(Inner {
            store,
            registry,
            cfg: cfg.dispatch.clone(),
            public_base,
            email,
            consent,
            breaker_open_ms: cfg.breaker.open_seconds * 1000,
            node: format!("n{}", ulid::Ulid::new()),
            claims: AtomicU64::new(0),
            tx,
            tx_bulk,
            permits: Arc::new(Semaphore::new(cfg.dispatch.concurrency)),
            tenant_names: DashMap::new(),
            stop,
        });
        tokio::spawn(intake(inner.clone(), rx, rx_bulk));
        tokio::spawn(poll(inner.clone()));
        Dispatcher { inner }
    }

    /// The lease token for messages accepted by this process.
    pub fn accept_lease(&self) -> (String, i64) {
        (format!("{}:a", self.inner.node), now_ms() + self.lease_ms())
    }

    fn lease_ms(&self) -> i64 {
        i64::try_from(self.inner.cfg.lease_seconds * 1000).unwrap_or(60_000)
    }

    /// Hands a freshly committed message to a worker. If the queue is full the message
    /// stays in the outbox and the poller sends it once the lease runs out.
    pub fn handoff(&self, item: DispatchItem) {
        let queue = if item.policy.bulk {
            &self.inner.tx_bulk
        } else {
            &self.inner.tx
        };
        if queue.try_send((item, 0)).is_err() {
            tracing::warn!("Dispatch queue full; message left to the outbox poller.");
        }
    }

    /// Stops taking work, waits up to `drain` for in-flight sends, gives back idle leases.
    pub async fn shutdown(&self, drain: Duration) {
        let _ = self.inner.stop.send(true);
        let all = u32::try_from(self.inner.cfg.concurrency).unwrap_or(u32::MAX);
        match tokio::time::timeout(drain, self.inner.permits.acquire_many(all)).await {
            Ok(_) => tracing::info!("In-flight sends drained."),
            Err(_) => tracing::warn!(
                "Drain time ran out with sends still in flight; their leases will expire."
            ),
        }
        match self.inner.store.release_leases(&self.inner.node).await {
            Ok(n) if n > 0 => {
                tracing::info!(released = n, "Gave back outbox leases for other replicas.")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "Could not give back outbox leases."),
        }
    }
}

async fn intake(
    inner: Arc<Inner>,
    mut rx: mpsc::Receiver<(DispatchItem, i64)>,
    mut rx_bulk: mpsc::Receiver<(DispatchItem, i64)>,
) {
    let mut stop = inner.stop.subscribe();
    loop {
        let next = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            n = rx.recv() => n,
            n = rx_bulk.recv() => n,
        };
        let Some((item, tries)) = next else { return };
        let permit = tokio::select! {
            p = inner.permits.clone().acquire_owned() => p,
            _ = stop.wait_for(|s| *s) => return,
        };
        let Ok(permit) = permit else { return };
        let inner = inner.clone();
        tokio::spawn(async move {
            process(&inner, item, tries).await;
            drop(permit);
        });
    }
}

async fn poll(inner: Arc<Inner>) {
    let mut stop = inner.stop.subscribe();
    let every = Duration::from_millis(inner.cfg.poll_interval_ms);
    let mut last_stats = Instant::now() - Duration::from_secs(60);
    loop {
        if *stop.borrow() {
            return;
        }
        let now = now_ms();
        let job = ClaimJob {
            token: format!(
                "{}:{}",
                inner.node,
                inner.claims.fetch_add(1, Ordering::Relaxed)
            ),
            now,
            lease_until: now + i64::try_from(inner.cfg.lease_seconds * 1000).unwrap_or(60_000),
            limit: 256,
            reconcile_ms: i64::try_from(inner.cfg.reconcile_seconds * 1000).unwrap_or(30_000),
        };
        let mut full = false;
        match inner.store.claim_due(job).await {
            Ok(claimed) => {
                full = claimed.len() >= 256;
                for c in claimed {
                    let queue = if c.item.policy.bulk {
                        &inner.tx_bulk
                    } else {
                        &inner.tx
                    };
                    if queue.send((c.item, c.tries)).await.is_err() {
                        return;
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "Outbox poll failed."),
        }
        if last_stats.elapsed() >= Duration::from_secs(2) {
            last_stats = Instant::now();
            if let Ok(s) = inner.store.outbox_stats(now_ms()).await {
                ::metrics::gauge!(metrics::OUTBOX_DEPTH).set(s.depth as f64);
                ::metrics::gauge!(metrics::OUTBOX_OLDEST_AGE).set(s.oldest_age_seconds);
                ::metrics::gauge!(metrics::WEBHOOK_EVENTS_PARKED).set(s.parked_events as f64);
            }
            let epoch = inner.consent.epoch();
            if let Ok(any) = inner.store.any_opt_out().await {
                inner.consent.refreshed(epoch, any);
            }
        }
        if !full {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
        }
    }
}
