//! The writers' queues, and how a writer takes its next batch.
//!
//! Each writer has a queue of its own; a job whose rows belong to one message (an attempt,
//! its result, the message's receipts) or one `Idempotency-Key` goes to the queue its key
//! hashes to ([`Job::affine`]), so one writer handles all of them: writers do not wait for
//! each other's row locks on those rows, and on PostgreSQL a batch's receipts can be applied
//! together ([`super::receipts`]) without crossing another writer's lock order. Every other
//! job (accepts, claims, admin jobs) waits in one shared queue that any writer free takes
//! from, so a writer busy with a long batch does not hold up requests another could serve.

use super::writer::{Envelope, Job};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch, Mutex};

/// Where jobs are sent.
pub struct Router {
    own: Vec<mpsc::Sender<Envelope>>,
    shared: mpsc::Sender<Envelope>,
}

/// What one writer takes jobs from.
pub struct Intake {
    own: mpsc::Receiver<Envelope>,
    shared: Arc<Mutex<mpsc::Receiver<Envelope>>>,
}

/// Queues for `writers` writers, `capacity` jobs each.
pub fn queues(writers: usize, capacity: usize) -> (Router, Vec<Intake>) {
    let (shared, shared_rx) = mpsc::channel(capacity * writers.max(1));
    let shared_rx = Arc::new(Mutex::new(shared_rx));
    let (own, intakes) = (0..writers.max(1))
        .map(|_| {
            let (tx, rx) = mpsc::channel(capacity);
            (
                tx,
                Intake {
                    own: rx,
                    shared: shared_rx.clone(),
                },
            )
        })
        .unzip();
    (Router { own, shared }, intakes)
}

impl Router {
    /// Queues a job; `Err` once the writers are gone.
    pub async fn send(&self, env: Envelope) -> Result<(), ()> {
        let tx = match env.job.affine() {
            Some(key) if self.own.len() > 1 => {
                let mut h = std::hash::DefaultHasher::new();
                std::hash::Hash::hash(&key, &mut h);
                let n = std::hash::Hasher::finish(&h) % self.own.len() as u64;
                self.own.get(usize::try_from(n).unwrap_or_default())
            }
            _ => None,
        };
        tx.unwrap_or(&self.shared).send(env).await.map_err(|_| ())
    }
}

impl Intake {
    /// A queued job, from this writer's queue first.
    fn try_next(&mut self) -> Option<Envelope> {
        self.own
            .try_recv()
            .ok()
            .or_else(|| self.shared.try_lock().ok()?.try_recv().ok())
    }

    /// Takes queued jobs into `batch` (up to `max`), one from each queue in turn: neither
    /// queue's jobs wait behind all of the other's.
    fn take_queued(&mut self, batch: &mut Vec<Envelope>, max: usize) {
        let mut shared = self.shared.try_lock().ok();
        let (mut own_open, mut shared_open) = (true, shared.is_some());
        while batch.len() < max && (own_open || shared_open) {
            if own_open {
                match self.own.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => own_open = false,
                }
            }
            if shared_open && batch.len() < max {
                match shared.as_mut().map(|q| q.try_recv()) {
                    Some(Ok(e)) => batch.push(e),
                    _ => shared_open = false,
                }
            }
        }
    }

    /// Waits for a job from either queue; `None` once both are closed.
    async fn next(&mut self) -> Option<Envelope> {
        let shared = self.shared.clone();
        tokio::select! {
            Some(e) = self.own.recv() => Some(e),
            e = async move { shared.lock().await.recv().await } => e,
        }
    }
}

/// The next batch: waits for one job, then takes what else is queued (up to `batch_max`).
/// None once stopped and drained.
///
/// `linger` (PostgreSQL): while another writer is mid-batch, a batch smaller than
/// [`LINGER_MIN`] jobs waits up to [`LINGER`] for more: a waiting writer would otherwise start a
/// transaction for every job or two that arrives while the others commit, and each
/// transaction costs PostgreSQL a `BEGIN`, a `COMMIT` and a WAL flush. With no other writer
/// busy nothing is waited for: a quiet gateway answers at once.
pub async fn next_batch(
    intake: &mut Intake,
    stop: &mut watch::Receiver<bool>,
    batch_max: usize,
    linger: Option<Linger<'_>>,
) -> Option<Vec<Envelope>> {
    let first = if *stop.borrow() {
        intake.try_next()
    } else {
        tokio::select! {
            e = intake.next() => e,
            _ = stop.changed() => intake.try_next(),
        }
    };
    let mut batch = vec![first?];
    intake.take_queued(&mut batch, batch_max);
    let Some(linger) = linger else {
        return Some(batch);
    };
    let fill = linger.min.min(batch_max);
    if linger.busy.load(Ordering::Relaxed) > 0 && batch.len() < fill {
        let deadline = tokio::time::Instant::now() + linger.wait;
        while batch.len() < fill && !*stop.borrow() {
            match tokio::time::timeout_at(deadline, intake.next()).await {
                Ok(Some(e)) => batch.push(e),
                _ => break,
            }
        }
    }
    Some(batch)
}

/// See [`next_batch`]: the batch size a PostgreSQL writer waits for while another writer is
/// busy, and for how long at most. Measured (4 writers, e2e at ~1,000 msgs/s): batches of
/// ~20 jobs became ~46 with 32 and 1 ms, ~64 with 64 and 2 ms; delivered/s +6–15 %, accept
/// p99 ~150–200 → ~110–130 ms (`load-tests/RESULTS.md`).
pub const LINGER_MIN: usize = 64;
pub const LINGER: std::time::Duration = std::time::Duration::from_millis(2);

/// How a PostgreSQL writer waits for a fuller batch: while `busy` (writers mid-batch) is
/// not zero, up to `wait` for `min` jobs.
#[derive(Clone, Copy)]
pub struct Linger<'a> {
    pub busy: &'a AtomicUsize,
    pub min: usize,
    pub wait: std::time::Duration,
}

impl Job {
    /// The key that sends this job to one writer's own queue, if it has one (see the
    /// module's notes); the others go to the shared queue.
    fn affine(&self) -> Option<String> {
        match self {
            Job::Begin(_) | Job::End(_) | Job::Webhook(_) => Some(self.lock_key()),
            Job::Accept(j) if j.idempotency.is_some() => Some(self.lock_key()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn job() -> Envelope {
        let (reply, _) = oneshot::channel();
        Envelope {
            job: Job::Panic,
            reply,
        }
    }

    /// A PostgreSQL writer's batch waits for more jobs only while another writer is busy, and
    /// only until it has `min` of them (not for all of `wait`).
    #[tokio::test]
    async fn a_batch_lingers_only_while_another_writer_is_busy() {
        let (router, mut intakes) = queues(1, 16);
        let mut intake = intakes.pop().expect("a writer's intake");
        let (_stop, mut stop_rx) = watch::channel(false);
        let tx = router.shared.clone();
        let later = |tx: mpsc::Sender<Envelope>| {
            tokio::spawn(async move {
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                for _ in 0..3 {
                    let _ = tx.send(job()).await;
                }
            })
        };
        let busy = AtomicUsize::new(0);
        let linger = Linger {
            busy: &busy,
            min: 4,
            wait: std::time::Duration::from_secs(30),
        };
        // No other writer busy: the one queued job goes at once.
        tx.send(job()).await.expect("send");
        let sender = later(tx.clone());
        let batch = next_batch(&mut intake, &mut stop_rx, 64, Some(linger)).await;
        assert_eq!(batch.map(|b| b.len()), Some(1));
        sender.await.expect("sender");
        let rest = next_batch(&mut intake, &mut stop_rx, 64, Some(linger)).await;
        assert_eq!(rest.map(|b| b.len()), Some(3));
        // Another writer busy: the batch waits for the later jobs, and ends once it has four.
        busy.store(1, Ordering::Relaxed);
        tx.send(job()).await.expect("send");
        let sender = later(tx.clone());
        let waited = std::time::Instant::now();
        let batch = next_batch(&mut intake, &mut stop_rx, 64, Some(linger)).await;
        assert_eq!(batch.map(|b| b.len()), Some(4));
        assert!(waited.elapsed() < std::time::Duration::from_secs(20));
        sender.await.expect("sender");
    }

    /// A message's jobs all reach one writer's own queue, whichever writer that is; a job
    /// without such a key (an admin job here) goes to the shared queue.
    #[tokio::test]
    async fn one_messages_jobs_reach_one_writer() {
        let (router, mut intakes) = queues(4, 16);
        let begin = |message_id: &str| {
            let (reply, _) = oneshot::channel();
            Envelope {
                job: Job::Begin(super::super::delivery::AttemptBegin {
                    message_id: message_id.into(),
                    lease_token: "l".into(),
                    lease_until: 0,
                    attempt_id: "a".into(),
                    channel: weft_provider::Channel::Sms,
                    provider: "twilio",
                    connection_id: "c".into(),
                    sender: None,
                    now: 0,
                }),
                reply,
            }
        };
        let ids: Vec<String> = (0..8).map(|i| format!("msg_{i}")).collect();
        for id in ids.iter().chain(&ids) {
            router.send(begin(id)).await.expect("send");
        }
        let (reply, _) = oneshot::channel();
        let admin = Job::Admin(super::super::tenants::AdminJob::CreateTenant { name: "t".into() });
        router
            .send(Envelope { job: admin, reply })
            .await
            .expect("send");
        let mut writers_of: std::collections::HashMap<String, Vec<usize>> = Default::default();
        for (w, intake) in intakes.iter_mut().enumerate() {
            while let Ok(e) = intake.own.try_recv() {
                if let Job::Begin(b) = &e.job {
                    writers_of.entry(b.message_id.clone()).or_default().push(w);
                }
            }
        }
        assert_eq!(writers_of.len(), ids.len());
        for (id, writers) in &writers_of {
            assert!(
                writers.len() == 2 && writers[0] == writers[1],
                "{id} went to {writers:?}"
            );
        }
        let shared = intakes[0].shared.lock().await.try_recv();
        assert!(matches!(shared.map(|e| e.job), Ok(Job::Admin(_))));
    }

    /// A writer takes its own queue's jobs and the shared queue's; another writer's queue
    /// is not its to take.
    #[tokio::test]
    async fn a_writer_takes_its_own_and_the_shared_jobs() {
        let (router, mut intakes) = queues(2, 16);
        let (_stop, mut stop_rx) = watch::channel(false);
        router.own[1].send(job()).await.expect("own");
        router.shared.send(job()).await.expect("shared");
        let first = next_batch(&mut intakes[0], &mut stop_rx, 64, None).await;
        assert_eq!(first.map(|b| b.len()), Some(1), "the shared job only");
        let second = intakes[1].try_next();
        assert!(second.is_some(), "its own job waits for writer 1");
    }
}
