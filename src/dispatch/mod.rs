//! The dispatcher: claim → rate-limit → record the attempt → send → record the result.
//!
//! A freshly accepted message is handed over in memory (its outbox row is already leased to
//! this process). Polling the outbox is the recovery path: retries that are due, rows whose
//! lease expired because a process died, and rows of other replicas.

mod backoff;

use crate::config::{Config, DispatchConfig};
use crate::domain::message::DispatchItem;
use crate::domain::{ids, now_ms};
use crate::metrics::{self, Outcome};
use crate::providers::{Live, Registry};
use crate::store::{AttemptBegin, AttemptEnd, AttemptResult, ClaimJob, Store};
use dashmap::DashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use weft_provider::{DeliveryStatus, EmailHeaders, FailureReason, OutboundMessage, SendError};

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
    /// Prefix of every lease token this process takes.
    node: String,
    claims: AtomicU64,
    tx: mpsc::Sender<(DispatchItem, i64)>,
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
    ) -> Dispatcher {
        let (tx, rx) = mpsc::channel(65_536);
        let (stop, _) = watch::channel(false);
        let public_base = cfg.public_base();
        let inner = Arc::new(Inner {
            store,
            registry,
            cfg: cfg.dispatch.clone(),
            public_base,
            email,
            node: format!("n{}", ulid::Ulid::new()),
            claims: AtomicU64::new(0),
            tx,
            permits: Arc::new(Semaphore::new(cfg.dispatch.concurrency)),
            tenant_names: DashMap::new(),
            stop,
        });
        tokio::spawn(intake(inner.clone(), rx));
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
        if self.inner.tx.try_send((item, 0)).is_err() {
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

async fn intake(inner: Arc<Inner>, mut rx: mpsc::Receiver<(DispatchItem, i64)>) {
    let mut stop = inner.stop.subscribe();
    loop {
        let next = tokio::select! {
            n = rx.recv() => n,
            _ = stop.wait_for(|s| *s) => None,
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
                    if inner.tx.send((c.item, c.tries)).await.is_err() {
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

async fn tenant_name(inner: &Inner, tenant_id: &str) -> String {
    if let Some(n) = inner.tenant_names.get(tenant_id) {
        return n.clone();
    }
    match inner.store.tenant_name(tenant_id).await {
        Ok(Some(n)) => {
            inner.tenant_names.insert(tenant_id.to_string(), n.clone());
            n
        }
        _ => tenant_id.to_string(),
    }
}

#[tracing::instrument(skip_all, fields(message_id = %item.message_id, conversation_id = %item.conversation_id))]
async fn process(inner: &Inner, item: DispatchItem, _tries: i64) {
    let name = tenant_name(inner, &item.tenant_id).await;
    let routes = inner
        .registry
        .routes(&[item.tenant_id.as_str(), name.as_str()], item.channel);
    let Some(live) = routes.first().cloned() else {
        let end = AttemptEnd {
            message_id: item.message_id.clone(),
            attempt_id: None,
            sender: None,
            connection_id: None,
            result: AttemptResult::Final {
                status: DeliveryStatus::Rejected,
                reason: FailureReason::NoRoute.as_str(),
                code: None,
                detail: format!("no connection serves {} for this tenant", item.channel),
            },
            now: now_ms(),
        };
        record_end(inner, end).await;
        return;
    };
    if let Some(l) = &live.limiter {
        l.until_ready().await;
    }
    let attempt_id = ids::new_id(ids::IdKind::Attempt);
    let sender = live.sender_for(item.channel, item.from.as_deref());
    let now = now_ms();
    let begin = AttemptBegin {
        message_id: item.message_id.clone(),
        lease_token: item.lease_token.clone(),
        lease_until: now + i64::try_from(inner.cfg.lease_seconds * 1000).unwrap_or(60_000),
        attempt_id: attempt_id.clone(),
        channel: item.channel,
        provider: live.spec.provider.as_str(),
        connection_id: live.spec.id.clone(),
        sender: sender.clone(),
        now,
    };
    let tries = match inner.store.begin_attempt(begin).await {
        Ok(Some(seq)) => seq,
        Ok(None) => {
            tracing::debug!("Lease lost before sending; another worker owns the message.");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Could not record the attempt; the outbox will retry.");
            return;
        }
    };
    let sender_identity = sender.as_deref().map(crate::threading::contacts::normalize);
    let msg = outbound(inner, &live, &item, &attempt_id, sender);
    let started = Instant::now();
    let limit = live.spec.request_timeout + Duration::from_secs(5);
    let result = match tokio::time::timeout(limit, live.provider.send(&msg)).await {
        Ok(r) => r,
        Err(_) => Err(SendError::timeout(
            "provider call exceeded the request timeout",
        )),
    };
    let provider = live.spec.provider.as_str();
    ::metrics::histogram!(metrics::DISPATCH_DURATION, "provider" => provider)
        .record(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) => Outcome::Ok,
        Err(e) if e.is_ambiguous() => Outcome::Timeout,
        Err(e) if e.code() == "throttled" => Outcome::Throttled,
        Err(e) if e.is_retryable() => Outcome::Retryable,
        Err(_) => Outcome::Permanent,
    };
    ::metrics::counter!(metrics::DISPATCH_ATTEMPTS, "provider" => provider, "channel" => item.channel.as_str(), "outcome" => outcome.as_str())
        .increment(1);
    let now = now_ms();
    let result = match result {
        Ok(r) => AttemptResult::Sent {
            provider_ids: r.provider_ids,
            status: r.status,
            segments: r.segments,
        },
        Err(e) => classify(&inner.cfg, &e, tries, now),
    };
    if let AttemptResult::Retry { detail, .. } = &result {
        tracing::info!(attempt = tries, provider, %detail, "Send failed; will retry.");
    }
    let end = AttemptEnd {
        message_id: item.message_id.clone(),
        attempt_id: Some(attempt_id),
        sender: sender_identity,
        connection_id: Some(live.spec.id.clone()),
        result,
        now,
    };
    record_end(inner, end).await;
}

/// What a failed send means for the message.
fn classify(cfg: &DispatchConfig, e: &SendError, tries: i64, now: i64) -> AttemptResult {
    let code = e.provider_code().map(str::to_string);
    if !e.is_retryable() {
        return AttemptResult::Final {
            status: DeliveryStatus::Rejected,
            reason: e.reason().as_str(),
            code,
            detail: e.detail().to_string(),
        };
    }
    if tries >= i64::from(cfg.max_attempts) {
        return AttemptResult::Final {
            status: DeliveryStatus::Failed,
            reason: FailureReason::RetriesExhausted.as_str(),
            code,
            detail: format!("{} attempts failed; last: {}", tries, e.detail()),
        };
    }
    let mut wait = backoff::delay(
        u32::try_from(tries).unwrap_or(1),
        Duration::from_millis(cfg.retry_base_ms),
        Duration::from_millis(cfg.retry_max_ms),
        e.retry_after(),
    );
    if e.is_ambiguous() {
        // The provider may have it: give its callback time to prove so before resending.
        wait = wait.max(Duration::from_secs(cfg.reconcile_seconds));
    }
    let outcome = if e.is_ambiguous() { "timeout" } else { "retry" };
    AttemptResult::Retry {
        retry_at: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX / 2),
        outcome,
        code,
        detail: e.detail().to_string(),
    }
}

fn outbound(
    inner: &Inner,
    live: &Live,
    item: &DispatchItem,
    attempt_id: &str,
    sender: Option<String>,
) -> OutboundMessage {
    let callback = format!(
        "{}/webhooks/{}/{}/status?m={}&a={}",
        inner.public_base,
        live.spec.provider.as_str(),
        live.spec.id,
        item.message_id,
        attempt_id
    );
    let email = (item.channel == weft_provider::Channel::Email).then(|| EmailHeaders {
        message_id: Some(format!("{}@{}", item.message_id, inner.email.domain)),
        reply_to: Some(inner.email.reply_to(&item.conversation_id)),
        ..EmailHeaders::default()
    });
    OutboundMessage {
        message_id: item.message_id.clone(),
        attempt_id: attempt_id.to_string(),
        channel: item.channel,
        to: item.to.clone(),
        from: sender,
        body: item.body.clone(),
        subject: item.subject.clone(),
        template: item.template.clone(),
        email,
        reply_to_provider_id: None,
        voice: None,
        status_callback_url: callback,
    }
}

async fn record_end(inner: &Inner, end: AttemptEnd) {
    match inner.store.end_attempt(end).await {
        Ok(changes) => crate::events::status_changed(&changes, now_ms()),
        // The outbox row stays leased; after the lease the poller finds the in-flight
        // attempt and reconciles instead of blindly resending.
        Err(e) => tracing::error!(error = %e, "Could not record the send's result."),
    }
}
