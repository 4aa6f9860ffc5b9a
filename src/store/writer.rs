//! Group commit. Callers submit write jobs; writer tasks take everything queued (up to
//! `batch_max`), run it in one transaction and answer each caller after the commit. One slow
//! fsync is shared by hundreds of requests. If any job in a batch fails, the batch is rolled
//! back and its jobs are retried one transaction each, so one bad job never sinks the others.
//!
//! PostgreSQL runs several writer tasks on pooled connections. SQLite has one writer: a
//! thread of its own with a synchronous connection ([`Db::Lite`]), so a batch runs there
//! without a hand-off per statement; it holds the store's SQLite write gate for each batch,
//! which the few writes outside the writer take too (one writer at a time, as SQLite wants).

use super::db::{lite_error, Db};
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

/// Where the writer runs.
pub enum Engine {
    /// `writers` tasks on this pool (PostgreSQL).
    Pool { pool: AnyPool, writers: usize },
    /// One thread with its own connection to this SQLite file, holding `gate` per batch.
    Sqlite { path: String, gate: Arc<Mutex<()>> },
}

impl Writer {
    pub fn start(engine: Engine, batch_max: usize) -> Result<Writer, StoreError> {
        let lanes = match &engine {
            Engine::Pool { writers, .. } => *writers,
            Engine::Sqlite { .. } => 1,
        };
        let (tx, rx) = mpsc::channel::<Envelope>(batch_max * lanes * 4);
        let rx = Arc::new(Mutex::new(rx));
        let (stop, stop_rx) = watch::channel(false);
        let tasks = match engine {
            Engine::Pool { pool, writers } => (0..writers)
                .map(|_| {
                    let rx = rx.clone();
                    let pool = pool.clone();
                    let stop_rx = stop_rx.clone();
                    tokio::spawn(run(pool, rx, stop_rx, batch_max))
                })
                .collect(),
            Engine::Sqlite { path, gate } => {
                let conn = open_lite(&path).map_err(|e| StoreError::Db(lite_error(e)))?;
                let (done_tx, done_rx) = oneshot::channel::<()>();
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(|e| StoreError::Corrupt(format!("writer runtime: {e}")))?;
                std::thread::Builder::new()
                    .name("weft-sqlite-writer".into())
                    .spawn(move || {
                        rt.block_on(run_lite(conn, gate, rx, stop_rx, batch_max));
                        let _ = done_tx.send(());
                    })
                    .map_err(|e| StoreError::Corrupt(format!("writer thread: {e}")))?;
                vec![tokio::spawn(async move {
                    let _ = done_rx.await;
                })]
            }
        };
        Ok(Writer {
            tx,
            stop,
            tasks: std::sync::Mutex::new(tasks),
        })
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

/// The next batch: waits for one job, then takes what else is queued (up to `batch_max`).
/// None once stopped and drained.
async fn next_batch(
    rx: &Mutex<mpsc::Receiver<Envelope>>,
    stop: &mut watch::Receiver<bool>,
    batch_max: usize,
) -> Option<Vec<Envelope>> {
    let mut rx = rx.lock().await;
    let first = if *stop.borrow() {
        rx.try_recv().ok()
    } else {
        tokio::select! {
            e = rx.recv() => e,
            _ = stop.changed() => rx.try_recv().ok(),
        }
    };
    let mut batch = vec![first?];
    while batch.len() < batch_max {
        match rx.try_recv() {
            Ok(e) => batch.push(e),
            Err(_) => break,
        }
    }
    Some(batch)
}

async fn run(
    pool: AnyPool,
    rx: Arc<Mutex<mpsc::Receiver<Envelope>>>,
    mut stop: watch::Receiver<bool>,
    batch_max: usize,
) {
    while let Some(mut batch) = next_batch(&rx, &mut stop, batch_max).await {
        // Stable: jobs of one message keep their arrival order.
        batch.sort_by_cached_key(|e| e.job.lock_key());
        run_batch(&pool, batch).await;
    }
}

fn open_lite(path: &str) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

async fn run_lite(
    mut conn: rusqlite::Connection,
    gate: Arc<Mutex<()>>,
    rx: Arc<Mutex<mpsc::Receiver<Envelope>>>,
    mut stop: watch::Receiver<bool>,
    batch_max: usize,
) {
    while let Some(batch) = next_batch(&rx, &mut stop, batch_max).await {
        let _gate = gate.lock().await;
        metrics::histogram!(crate::metrics::STORE_BATCH_SIZE).record(batch.len() as f64);
        if batch.len() > 1 {
            match lite_together(&mut conn, &batch).await {
                Ok(results) => {
                    for (env, r) in batch.into_iter().zip(results) {
                        let _ = env.reply.send(Ok(r));
                    }
                    continue;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "Group commit failed; retrying jobs one by one.")
                }
            }
        }
        for env in batch {
            let r = lite_together(&mut conn, std::slice::from_ref(&env))
                .await
                .map(|mut d| d.remove(0));
            let _ = env.reply.send(r);
        }
    }
}

/// Runs jobs in one SQLite transaction (`BEGIN IMMEDIATE`: the write lock up front).
async fn lite_together(
    conn: &mut rusqlite::Connection,
    batch: &[Envelope],
) -> Result<Vec<Done>, StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")
        .map_err(|e| StoreError::Db(lite_error(e)))?;
    let mut out = Vec::with_capacity(batch.len());
    for env in batch {
        match apply(&mut Db::Lite(&mut *conn), Backend::Sqlite, &env.job).await {
            Ok(d) => out.push(d),
            Err(e) => {
                let _ = conn.execute_batch("ROLLBACK");
                return Err(e);
            }
        }
    }
    if let Err(e) = conn.execute_batch("COMMIT") {
        let _ = conn.execute_batch("ROLLBACK");
        return Err(StoreError::Db(lite_error(e)));
    }
    Ok(out)
}

async fn run_batch(pool: &AnyPool, batch: Vec<Envelope>) {
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
        match try_together(&mut conn, &batch).await {
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
        let r = alone(&mut conn, &env.job).await;
        let _ = env.reply.send(r);
    }
}

async fn try_together(
    conn: &mut AnyConnection,
    batch: &[Envelope],
) -> Result<Vec<Done>, StoreError> {
    let mut tx = conn.begin().await?;
    let mut out = Vec::with_capacity(batch.len());
    for env in batch {
        out.push(apply(&mut Db::Any(&mut tx), Backend::Postgres, &env.job).await?);
    }
    tx.commit().await?;
    Ok(out)
}

async fn alone(conn: &mut AnyConnection, job: &Job) -> Result<Done, StoreError> {
    let mut tx = conn.begin().await?;
    let done = apply(&mut Db::Any(&mut tx), Backend::Postgres, job).await?;
    tx.commit().await?;
    Ok(done)
}

async fn apply(conn: &mut Db<'_>, backend: Backend, job: &Job) -> Result<Done, StoreError> {
    Ok(match job {
        Job::Accept(j) => Done::Accept(accept::run(conn, j).await?),
        Job::Begin(j) => Done::Begin(delivery::begin(conn, j).await?),
        Job::End(j) => Done::End(delivery::end(conn, j).await?),
        Job::Claim(j) => Done::Claim(claim::claim(conn, backend, j).await?),
        Job::Webhook(j) => Done::Webhook(webhooks::run(conn, j).await?),
        Job::Admin(j) => Done::Admin(tenants::run(conn, j).await?),
    })
}
