//! Group commit. Callers submit write jobs; writer tasks take everything queued (up to
//! `batch_max`), run it in one transaction and answer each caller after the commit. One slow
//! fsync is shared by hundreds of requests. If any job in a batch fails, the batch is rolled
//! back and its jobs are retried one transaction each, so one bad job never sinks the others.

use super::{accept, claim, delivery, tenants, webhooks, Backend, StoreError};
use sqlx::{AnyConnection, AnyPool, Connection};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Mutex};
use tokio::task::JoinHandle;
use weft_provider::InboundEvent;

/// A unit of write work.
pub enum Job {
    Accept(Box<accept::AcceptJob>),
    Begin(delivery::AttemptBegin),
    End(Box<delivery::AttemptEnd>),
    Claim(claim::ClaimJob),
    Webhook(Box<webhooks::WebhookJob>),
    Admin(tenants::AdminJob),
}

impl Job {
    /// The rows a job locks mostly belong to one message or one customer: this names them.
    /// PostgreSQL writers run their batches in key order, so two batches that touch the same
    /// messages take the row locks in the same order and cannot deadlock (a deadlock costs
    /// PostgreSQL's `deadlock_timeout`, 1 s by default, and a retry).
    fn lock_key(&self) -> String {
        use crate::threading::contacts::normalize;
        match self {
            Job::Accept(j) => j.msg.identity.clone(),
            Job::Begin(j) => j.message_id.clone(),
            Job::End(j) => j.message_id.clone(),
            Job::Webhook(j) => match j.events.first() {
                Some(InboundEvent::Status(s)) => s
                    .correlation
                    .message_id
                    .clone()
                    .unwrap_or_else(|| s.provider_message_id.clone()),
                Some(InboundEvent::Message(m)) => normalize(&m.from),
                Some(InboundEvent::Call(c)) => normalize(&c.from),
                Some(InboundEvent::Consent(c)) => normalize(&c.address),
                None => String::new(),
            },
            Job::Claim(_) | Job::Admin(_) => String::new(),
        }
    }
}

/// What a job produced.
pub enum Done {
    Accept(accept::AcceptOutcome),
    Begin(Option<i64>),
    End(Vec<super::StatusChange>),
    Claim(Vec<claim::Claimed>),
    Webhook(webhooks::WebhookOutcome),
    Admin(tenants::AdminDone),
}

struct Envelope {
    job: Job,
    reply: oneshot::Sender<Result<Done, StoreError>>,
}

pub struct Writer {
    tx: mpsc::Sender<Envelope>,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

impl Writer {
    pub fn start(pool: AnyPool, backend: Backend, writers: usize, batch_max: usize) -> Writer {
        let (tx, rx) = mpsc::channel::<Envelope>(batch_max * writers * 4);
        let rx = Arc::new(Mutex::new(rx));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = (0..writers)
            .map(|_| {
                let rx = rx.clone();
                let pool = pool.clone();
                let stop_rx = stop_rx.clone();
                tokio::spawn(run(pool, backend, rx, stop_rx, batch_max))
            })
            .collect();
        Writer {
            tx,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        }
    }

    pub async fn submit<T>(&self, job: Job, pick: fn(Done) -> Option<T>) -> Result<T, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Envelope { job, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        let done = rx.await.map_err(|_| StoreError::Closed)??;
        pick(done).ok_or_else(|| StoreError::Corrupt("writer answered with the wrong kind".into()))
    }

    /// Commits what is queued, then stops the writer tasks.
    pub async fn close(&self) {
        let _ = self.stop.send(true);
        let tasks: Vec<_> = match self.tasks.lock() {
            Ok(mut t) => t.drain(..).collect(),
            Err(_) => Vec::new(),
        };
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn run(
    pool: AnyPool,
    backend: Backend,
    rx: Arc<Mutex<mpsc::Receiver<Envelope>>>,
    mut stop: watch::Receiver<bool>,
    batch_max: usize,
) {
    loop {
        let mut batch = {
            let mut rx = rx.lock().await;
            let first = if *stop.borrow() {
                rx.try_recv().ok()
            } else {
                tokio::select! {
                    e = rx.recv() => e,
                    _ = stop.changed() => rx.try_recv().ok(),
                }
            };
            let Some(first) = first else { return };
            let mut batch = vec![first];
            while batch.len() < batch_max {
                match rx.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            batch
        };
        if backend == Backend::Postgres {
            // Stable: jobs of one message keep their arrival order.
            batch.sort_by_cached_key(|e| e.job.lock_key());
        }
        run_batch(&pool, backend, batch).await;
    }
}

async fn run_batch(pool: &AnyPool, backend: Backend, batch: Vec<Envelope>) {
    let mut conn = match pool.acquire().await {
        Ok(c) => c,
        Err(e) => {
            let msg = e.to_string();
            for env in batch {
                let _ = env
                    .reply
                    .send(Err(StoreError::Db(sqlx::Error::Protocol(msg.clone()))));
            }
            return;
        }
    };
    metrics::histogram!(crate::metrics::STORE_BATCH_SIZE).record(batch.len() as f64);
    if batch.len() > 1 {
        match try_together(&mut conn, backend, &batch).await {
            Ok(results) => {
                for (env, r) in batch.into_iter().zip(results) {
                    let _ = env.reply.send(Ok(r));
                }
                return;
            }
            Err(e) => tracing::debug!(error = %e, "Group commit failed; retrying jobs one by one."),
        }
    }
    for env in batch {
        let r = alone(&mut conn, backend, &env.job).await;
        let _ = env.reply.send(r);
    }
}

async fn try_together(
    conn: &mut AnyConnection,
    backend: Backend,
    batch: &[Envelope],
) -> Result<Vec<Done>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for env in batch {
        out.push(apply(&mut tx, backend, &env.job).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn alone(conn: &mut AnyConnection, backend: Backend, job: &Job) -> Result<Done, StoreError> {
    let mut tx = conn.begin().await?;
    let done = apply(&mut tx, backend, job).await?;
    tx.commit().await?;
    Ok(done)
}

async fn apply(conn: &mut AnyConnection, backend: Backend, job: &Job) -> Result<Done, StoreError> {
    Ok(match job {
        Job::Accept(j) => Done::Accept(accept::run(conn, j).await?),
        Job::Begin(j) => Done::Begin(delivery::begin(conn, j).await?),
        Job::End(j) => Done::End(delivery::end(conn, j).await?),
        Job::Claim(j) => Done::Claim(claim::claim(conn, backend, j).await?),
        Job::Webhook(j) => Done::Webhook(webhooks::run(conn, j).await?),
        Job::Admin(j) => Done::Admin(tenants::run(conn, j).await?),
    })
}
