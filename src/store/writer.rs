//! Group commit. Callers submit write jobs; writer tasks take everything queued (up to
//! `batch_max`), run it in one transaction and answer each caller after the commit. One slow
//! fsync is shared by hundreds of requests. If any job in a batch fails, the batch is rolled
//! back and its jobs are retried one transaction each, so one bad job never sinks the others.
//!
//! PostgreSQL runs several writer tasks, each with a connection and a queue of its own
//! ([`Db::Pg`], [`super::intake`]); there a batch's plain accepts, attempt starts, send
//! results and receipts each run as one group ([`super::accepts`], [`super::begins`],
//! [`super::ends`], [`super::receipts`]). SQLite has one writer: a thread of its own with a
//! synchronous connection ([`Db::Lite`]), so a batch runs there without a hand-off per
//! statement; it holds the store's SQLite write gate for each batch, which the few writes
//! outside the writer take too (one writer at a time, as SQLite wants).

use super::checkpoint::{checkpoints, WAL_LIMIT_BYTES};
use super::db::{lite_error, Db};
use super::intake::{next_batch, queues, Intake, Linger, Router, LINGER, LINGER_MIN};
use super::pg::PgConn;
use super::pg_tls::PgTarget;
use super::{
    accept, accepts, begins, claim, delivery, ends, receipts, tenants, webhooks, Backend,
    StoreError,
};
use futures::FutureExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{oneshot, watch, Mutex};
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
    /// Panics when run: lets tests check that the writer survives a job's panic.
    #[cfg(test)]
    Panic,
}

impl Job {
    /// The rows a job locks mostly belong to one message or one customer: this names them.
    /// A batch runs in key order, and a message's attempts, results and receipts (and the
    /// requests sharing an `Idempotency-Key`) go to the one PostgreSQL writer their key
    /// picks ([`super::intake`]), so writers do not wait for each other's locks on those
    /// rows. A deadlock between writers would cost PostgreSQL's `deadlock_timeout` (1 s by
    /// default) and a retry. An accept with an `Idempotency-Key` is keyed by it: a client's
    /// retries claim it in one writer, one after the other (in two, one could hold the key
    /// and wait for a conversation the other held).
    pub(super) fn lock_key(&self) -> String {
        use crate::threading::contacts::normalize;
        match self {
            Job::Accept(j) => match &j.idempotency {
                Some((key, _)) => format!("{}\u{1f}{key}", j.msg.tenant_id),
                None => j.msg.identity.clone(),
            },
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
            #[cfg(test)]
            Job::Panic => String::new(),
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

pub(super) struct Envelope {
    pub(super) job: Job,
    pub(super) reply: oneshot::Sender<Result<Done, StoreError>>,
}

pub struct Writer {
    tx: Router,
    stop: watch::Sender<bool>,
    tasks: std::sync::Mutex<Vec<JoinHandle<()>>>,
}

/// Where the writer runs.
pub enum Engine {
    /// `writers` tasks, each with its own connection to this PostgreSQL URL.
    Postgres { url: String, writers: usize },
    /// One thread with its own connection to this SQLite file, holding `gate` per batch.
    Sqlite { path: String, gate: Arc<Mutex<()>> },
}

impl Writer {
    pub fn start(engine: Engine, batch_max: usize) -> Result<Writer, StoreError> {
        let lanes = match &engine {
            Engine::Postgres { writers, .. } => *writers,
            Engine::Sqlite { .. } => 1,
        };
        let (tx, intakes) = queues(lanes, batch_max * 4);
        let mut intakes = intakes.into_iter();
        let (stop, stop_rx) = watch::channel(false);
        let tasks = match engine {
            Engine::Postgres { url, .. } => {
                let target = Arc::new(PgTarget::from_url(&url)?);
                let busy = Arc::new(AtomicUsize::new(0));
                intakes
                    .map(|intake| {
                        let target = target.clone();
                        let stop_rx = stop_rx.clone();
                        tokio::spawn(run(target, intake, stop_rx, batch_max, busy.clone()))
                    })
                    .collect()
            }
            Engine::Sqlite { path, gate } => {
                let conn = open_lite(&path).map_err(|e| StoreError::Db(lite_error(e)))?;
                // Checkpoints copy the WAL back into the database file; done at commit time
                // they cost the writer ~12 % of its time. A thread of their own does them.
                conn.execute_batch("PRAGMA wal_autocheckpoint = 0")
                    .map_err(|e| StoreError::Db(lite_error(e)))?;
                let checkpointer = open_lite(&path).map_err(|e| StoreError::Db(lite_error(e)))?;
                // Its restarts wait for readers of old frames while the writer is gated: only
                // briefly (a slower reader means another try at the next round, 250 ms on).
                checkpointer
                    .busy_timeout(std::time::Duration::from_millis(200))
                    .map_err(|e| StoreError::Db(lite_error(e)))?;
                let (alive, gone) = std::sync::mpsc::channel::<()>();
                std::thread::Builder::new()
                    .name("weft-sqlite-checkpoint".into())
                    .spawn({
                        let wal = std::path::PathBuf::from(format!("{path}-wal"));
                        let gate = gate.clone();
                        move || checkpoints(&checkpointer, &wal, &gate, &gone)
                    })
                    .map_err(|e| StoreError::Corrupt(format!("checkpoint thread: {e}")))?;
                let (done_tx, done_rx) = oneshot::channel::<()>();
                let intake = intakes
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("no queue for the SQLite writer".into()))?;
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .map_err(|e| StoreError::Corrupt(format!("writer runtime: {e}")))?;
                std::thread::Builder::new()
                    .name("weft-sqlite-writer".into())
                    .spawn(move || {
                        rt.block_on(run_lite(conn, gate, intake, stop_rx, batch_max));
                        drop(alive);
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

/// Counts a writer as busy while it lives.
struct Busy<'a>(&'a AtomicUsize);

impl<'a> Busy<'a> {
    fn start(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::Relaxed);
        Busy(n)
    }
}

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

async fn run(
    target: Arc<PgTarget>,
    mut intake: Intake,
    mut stop: watch::Receiver<bool>,
    batch_max: usize,
    busy: Arc<AtomicUsize>,
) {
    let mut conn: Option<PgConn> = None;
    let linger = Linger {
        busy: &busy,
        min: LINGER_MIN,
        wait: LINGER,
    };
    while let Some(mut batch) = next_batch(&mut intake, &mut stop, batch_max, Some(linger)).await {
        let _busy = Busy::start(&busy);
        // Stable: jobs of one message keep their arrival order.
        batch.sort_by_cached_key(|e| e.job.lock_key());
        if conn.as_ref().is_none_or(PgConn::is_closed) {
            match PgConn::connect(&target).await {
                Ok(c) => conn = Some(c),
                Err(e) => {
                    let msg = e.to_string();
                    for env in batch {
                        let _ = env
                            .reply
                            .send(Err(StoreError::Db(sqlx::Error::Protocol(msg.clone()))));
                    }
                    continue;
                }
            }
        }
        if let Some(c) = conn.as_mut() {
            run_batch(&mut Db::Pg(c), Backend::Postgres, batch).await;
        }
    }
}

pub(super) fn open_lite(path: &str) -> Result<rusqlite::Connection, rusqlite::Error> {
    let conn = rusqlite::Connection::open(path)?;
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;
         PRAGMA journal_size_limit = {WAL_LIMIT_BYTES};"
    ))?;
    conn.set_prepared_statement_cache_capacity(256);
    Ok(conn)
}

async fn run_lite(
    mut conn: rusqlite::Connection,
    gate: Arc<Mutex<()>>,
    mut intake: Intake,
    mut stop: watch::Receiver<bool>,
    batch_max: usize,
) {
    while let Some(batch) = next_batch(&mut intake, &mut stop, batch_max, None).await {
        let _gate = gate.lock().await;
        run_batch(&mut Db::Lite(&mut conn), Backend::Sqlite, batch).await;
    }
}

/// Runs a batch in one transaction; if that fails, each job in a transaction of its own.
async fn run_batch(db: &mut Db<'_>, backend: Backend, batch: Vec<Envelope>) {
    metrics::histogram!(crate::metrics::STORE_BATCH_SIZE).record(batch.len() as f64);
    if batch.len() > 1 {
        match together(db, backend, &batch).await {
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
        let r = together(db, backend, std::slice::from_ref(&env))
            .await
            .and_then(|d| {
                d.into_iter()
                    .next()
                    .ok_or_else(|| StoreError::Corrupt("a job without a result".into()))
            });
        let _ = env.reply.send(r);
    }
}

/// Runs jobs in one transaction (on SQLite `BEGIN IMMEDIATE`: the write lock up front). On
/// a PostgreSQL writer's connection plain accepts, attempt starts, send results and
/// receipts run in groups ([`Way`]).
async fn together(
    db: &mut Db<'_>,
    backend: Backend,
    batch: &[Envelope],
) -> Result<Vec<Done>, StoreError> {
    db.simple(match backend {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        Backend::Postgres => "BEGIN",
    })
    .await?;
    let ways = if matches!(db, Db::Pg(_)) {
        ways(batch)
    } else {
        vec![Way::Alone; batch.len()]
    };
    match run_jobs(db, backend, batch, &ways).await {
        Ok(out) => match db.simple("COMMIT").await {
            Ok(()) => Ok(out),
            Err(e) => {
                let _ = db.simple("ROLLBACK").await;
                Err(e.into())
            }
        },
        Err(e) => {
            let _ = db.simple("ROLLBACK").await;
            Err(e)
        }
    }
}

/// How a job of a batch runs: alone, or in one of the groups of a PostgreSQL batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Way {
    Alone,
    /// With the batch's other plain accepts ([`accepts`]).
    Accepts,
    /// With the batch's other attempt starts ([`begins`]).
    Begins,
    /// With the batch's other plain send results ([`ends`]).
    Ends,
    /// With the batch's other plain receipts ([`receipts`]).
    Receipts,
}

/// Each job's [`Way`] in a PostgreSQL batch.
fn ways(batch: &[Envelope]) -> Vec<Way> {
    let jobs: Vec<&Job> = batch.iter().map(|e| &e.job).collect();
    let begins = begins::grouped(jobs.iter().copied());
    let receipts = receipts::grouped(jobs.iter().copied());
    let elsewhere: Vec<bool> = begins
        .iter()
        .zip(&receipts)
        .map(|(b, r)| *b || *r)
        .collect();
    let ends = ends::grouped(&jobs, &elsewhere);
    jobs.iter()
        .zip(begins.iter().zip(ends.iter().zip(&receipts)))
        .map(|(job, flags)| match flags {
            (true, _) => Way::Begins,
            (_, (true, _)) => Way::Ends,
            (_, (_, true)) => Way::Receipts,
            _ if accepts::grouped(job) => Way::Accepts,
            _ => Way::Alone,
        })
        .collect()
}

/// The jobs' results, in order: each group runs after the jobs that run alone (accepts,
/// attempt starts, send results, then receipts: a message's attempt start, send result and
/// receipts may all be in one batch, in that order).
async fn run_jobs(
    db: &mut Db<'_>,
    backend: Backend,
    batch: &[Envelope],
    ways: &[Way],
) -> Result<Vec<Done>, StoreError> {
    let mut out: Vec<Option<Done>> = Vec::with_capacity(batch.len());
    for (env, way) in batch.iter().zip(ways) {
        out.push(if *way == Way::Alone {
            Some(caught(apply(db, backend, &env.job)).await?)
        } else {
            None
        });
    }
    let members = |group: Way| -> Vec<&Job> {
        batch
            .iter()
            .zip(ways)
            .filter(|(_, w)| **w == group)
            .map(|(e, _)| &e.job)
            .collect()
    };
    let slots = |out: &mut Vec<Option<Done>>, group: Way, done: Vec<Done>| {
        let mut done = done.into_iter();
        for (slot, _) in out.iter_mut().zip(ways).filter(|(_, w)| **w == group) {
            *slot = done.next();
        }
    };
    for group in [Way::Accepts, Way::Begins, Way::Ends, Way::Receipts] {
        let jobs = members(group);
        if !jobs.is_empty() {
            let done = caught(run_group(db, group, &jobs)).await?;
            slots(&mut out, group, done);
        }
    }
    out.into_iter()
        .map(|d| d.ok_or_else(|| StoreError::Corrupt("a job without a result".into())))
        .collect()
}

/// Runs one group's jobs together: one [`Done`] per job, in order.
async fn run_group(db: &mut Db<'_>, group: Way, jobs: &[&Job]) -> Result<Vec<Done>, StoreError> {
    Ok(match group {
        Way::Accepts => accepts::accept_all(db, jobs)
            .await?
            .into_iter()
            .map(Done::Accept)
            .collect(),
        Way::Begins => begins::begin_all(db, jobs)
            .await?
            .into_iter()
            .map(Done::Begin)
            .collect(),
        Way::Ends => ends::end_all(db, jobs)
            .await?
            .into_iter()
            .map(Done::End)
            .collect(),
        Way::Receipts => receipts::run_plain(db, jobs)
            .await?
            .into_iter()
            .map(Done::Webhook)
            .collect(),
        Way::Alone => Vec::new(),
    })
}

/// A job's future, with a panic (a bug) turned into an error: on SQLite a panic would end
/// the one writer thread and every later write would wait forever. Its transaction is
/// rolled back like a failed job's; the batch is retried one by one.
async fn caught<T>(
    job: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    std::panic::AssertUnwindSafe(job)
        .catch_unwind()
        .await
        .unwrap_or_else(|panic| {
            let what = panic_text(panic.as_ref());
            tracing::error!(panic = %what, "A write job panicked; its transaction is rolled back.");
            Err(StoreError::Panicked(what))
        })
}

/// A panic's message, if it has one.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(no message)".into(),
    }
}

async fn apply(conn: &mut Db<'_>, backend: Backend, job: &Job) -> Result<Done, StoreError> {
    Ok(match job {
        Job::Accept(j) => Done::Accept(accept::run(conn, j).await?),
        Job::Begin(j) => Done::Begin(delivery::begin(conn, j).await?),
        Job::End(j) => Done::End(delivery::end(conn, j).await?),
        Job::Claim(j) => Done::Claim(claim::claim(conn, backend, j).await?),
        Job::Webhook(j) => Done::Webhook(webhooks::run(conn, j).await?),
        Job::Admin(j) => Done::Admin(tenants::run(conn, j).await?),
        #[cfg(test)]
        Job::Panic => panic!("a test job panics"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The writer's own connection must be as durable as sqlx's: WAL, `synchronous=FULL`.
    #[test]
    fn the_writer_connection_is_durable() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db");
        let conn = open_lite(&path.to_string_lossy()).expect("open");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        let sync: i64 = conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .expect("synchronous");
        let fks: i64 = conn
            .query_row("PRAGMA foreign_keys", [], |r| r.get(0))
            .expect("foreign_keys");
        assert_eq!(mode, "wal");
        assert_eq!(sync, 2, "synchronous=FULL");
        assert_eq!(fks, 1);
    }

    /// A job that panics gets an error; its batch-mates are committed and the writer
    /// thread goes on taking jobs.
    #[tokio::test]
    async fn the_sqlite_writer_survives_a_panicking_job() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("w.db").to_string_lossy().into_owned();
        super::super::migrate_lite(&open_lite(&path).expect("open"));
        let gate = Arc::new(Mutex::new(()));
        let writer = Writer::start(Engine::Sqlite { path, gate }, 64).expect("writer");
        let tenant = |name: &str| {
            Job::Admin(tenants::AdminJob::CreateTenant {
                name: name.to_string(),
            })
        };
        let created = |d: Done| match d {
            Done::Admin(tenants::AdminDone::Tenant { created, .. }) => Some(created),
            _ => None,
        };
        let (a, p, b) = tokio::join!(
            writer.submit(tenant("a"), created),
            writer.submit(Job::Panic, |_| Some(())),
            writer.submit(tenant("b"), created),
        );
        assert!(matches!(p, Err(StoreError::Panicked(_))), "{p:?}");
        assert!(a.expect("a") && b.expect("b"));
        for _ in 0..3 {
            let p = writer.submit(Job::Panic, |_| Some(())).await;
            assert!(matches!(p, Err(StoreError::Panicked(_))), "{p:?}");
        }
        assert!(writer.submit(tenant("c"), created).await.expect("c"));
        writer.close().await;
    }
}
