//! A PostgreSQL writer's receipts, many at once.
//!
//! PostgreSQL spends most of a receipt's cost per statement (executor start-up, plan-cache
//! checks, protocol), not per row: one at a time a receipt is three statements (the
//! provider-id lookup with the message lock, its history's receipt keys, the history row
//! with the message update). A batch's plain receipts — one status event, a status that
//! is not a failure — are applied together with three statements for all of them, each
//! taking arrays (`unnest`). The state machine still decides each receipt in Rust, in
//! arrival order, from the status the previous receipt of the same message left. A
//! provider's retry is recognised by the key on the history row ([`super::receipt_keys`]).
//!
//! What plain receipts cannot settle alone goes the one-at-a-time way after them, stored
//! in `webhook_events`: a receipt whose provider id weft has not recorded (parked, or
//! matched by the ids in its callback), one of a message sent in parts. Failures (fallback
//! channels, opt-outs) never join the group, nor any receipt of a message that has another
//! webhook job in the batch that does not: a message's receipts keep their order.
//!
//! Row locks: the group locks its messages (in id order) after the batch's other jobs
//! locked theirs, an order another writer could cross — but a message's attempts, send
//! results and receipts all go to one writer's queue ([`super::intake`]), so no other
//! writer locks those rows. Only a receipt without weft's ids in its callback is queued by
//! the provider's id and may meet its message in another writer; a deadlock then costs
//! PostgreSQL's `deadlock_timeout` (1 s) and the batch's retry, job by job. (Without the
//! per-writer queues PostgreSQL found 29 deadlocks in one run; locking all of a batch's
//! messages up front instead held every lock for whole batches: msgs/s fell by 12–15 % end
//! to end and by ~35 % in `accept` mode.)

use super::db::Db;
use super::receipt_keys::{self, SEEN_ALL};
use super::script::{Script, Val};
use super::status::{self, Planned, StatusInput};
use super::webhooks::{refs_where, run_event, WebhookJob, WebhookOutcome};
use super::writer::Job;
use crate::domain::now_ms;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;
use weft_provider::{DeliveryStatus, InboundEvent, StatusEvent};

/// A plain receipt: its job, its event, the event's status part, and its status.
type Plain<'a> = (
    &'a WebhookJob,
    &'a InboundEvent,
    &'a StatusEvent,
    DeliveryStatus,
);

/// The job's receipt, if it can be applied with others (see the module's notes).
fn plain(job: &Job) -> Option<Plain<'_>> {
    let Job::Webhook(j) = job else { return None };
    match j.events.as_slice() {
        [ev @ InboundEvent::Status(s)] => match s.status {
            Some(st) if !st.is_failure() => Some((j, ev, s, st)),
            _ => None,
        },
        _ => None,
    }
}

/// The message a webhook job's first status event is about, as the callback named it.
fn named_message(job: &WebhookJob) -> Option<&str> {
    match job.events.first() {
        Some(InboundEvent::Status(s)) => s.correlation.message_id.as_deref(),
        _ => None,
    }
}

/// Per job: whether it joins the group of plain receipts.
pub(super) fn grouped<'a>(jobs: impl Iterator<Item = &'a Job> + Clone) -> Vec<bool> {
    // Messages with a webhook job that is not plain: all their receipts go one by one.
    let apart: HashSet<&str> = jobs
        .clone()
        .filter_map(|j| match j {
            Job::Webhook(w) if plain(j).is_none() => named_message(w),
            _ => None,
        })
        .collect();
    jobs.map(|j| {
        plain(j).is_some_and(|(w, ..)| named_message(w).is_none_or(|m| !apart.contains(m)))
    })
    .collect()
}

/// The refs of many provider ids (`$1` connections, `$2` provider ids; see
/// [`refs_where`]), their messages locked in id order.
static REFS_SQL: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} ORDER BY m.id FOR UPDATE OF m",
        refs_where("(r.connection_id, r.provider_message_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))")
    )
});

/// The history rows and the message updates of all the group's receipts, as one statement.
const APPLY: &str = "WITH history AS (
       INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, occurred_at, dedupe_key)
       SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::text[], $7::int8[], $8::text[])
     )
     UPDATE messages m SET status = u.status, updated_at = u.updated_at
     FROM unnest($9::text[], $10::text[], $11::int8[]) AS u(id, status, updated_at)
     WHERE m.id = u.id";

/// Columns of [`APPLY`]'s history rows.
#[derive(Default)]
struct History {
    message_id: Vec<Option<String>>,
    status: Vec<Option<String>>,
    raw_status: Vec<Option<String>>,
    applied: Vec<Option<i64>>,
    connection_id: Vec<Option<String>>,
    provider_message_id: Vec<Option<String>>,
    occurred_at: Vec<Option<i64>>,
    dedupe_key: Vec<Option<String>>,
}

/// Stores and applies the plain receipts `jobs` (all [`grouped`]): one outcome per job.
pub(super) async fn run_plain(
    conn: &mut Db<'_>,
    jobs: &[&Job],
) -> Result<Vec<WebhookOutcome>, sqlx::Error> {
    let receipts: Vec<Plain<'_>> = jobs.iter().filter_map(|j| plain(j)).collect();
    let now = now_ms();
    let texts = |f: &dyn Fn(&WebhookJob, &StatusEvent) -> String| {
        Val::Texts(receipts.iter().map(|(j, _, s, _)| Some(f(j, s))).collect())
    };
    let (conns, pids) = (
        texts(&|j, _| j.connection_id.clone()),
        texts(&|_, s| s.provider_message_id.clone()),
    );
    // The refs (locking their messages), then the receipts' keys already seen: read after
    // the locks, they include those of copies other writers applied.
    let mut script = Script::new();
    script.add(REFS_SQL.as_str(), vec![conns.clone(), pids.clone()]);
    script.add(
        SEEN_ALL,
        vec![
            conns,
            pids,
            texts(&|_, s| s.dedupe_key.clone()),
            texts(&|_, s| receipt_keys::stored_status_key(s)),
        ],
    );
    let mut answers = script.run(&mut *conn).await?.into_iter();
    let mut refs: HashMap<(String, String), AnyRow> = HashMap::new();
    for row in answers.next().map(|o| o.rows).unwrap_or_default() {
        let key = (row.try_get("ref_connection")?, row.try_get("ref_pid")?);
        refs.insert(key, row);
    }
    // (connection, provider id, receipt key): those in the history, then the group's own.
    let mut seen: HashSet<(String, String, String)> = HashSet::new();
    for row in answers.next().map(|o| o.rows).unwrap_or_default() {
        seen.insert((
            row.try_get("ref_connection")?,
            row.try_get("ref_pid")?,
            row.try_get("dedupe_key")?,
        ));
    }

    let mut outcomes: Vec<WebhookOutcome> = Vec::with_capacity(receipts.len());
    let mut history = History::default();
    // Per message: the status the group left it in, and its `updated_at`.
    let mut moved: HashMap<String, (DeliveryStatus, i64)> = HashMap::new();
    let mut planned: Vec<(usize, Planned)> = Vec::new();
    let mut apart: Vec<usize> = Vec::new();
    for (i, (job, _, s, incoming)) in receipts.iter().enumerate() {
        let incoming = *incoming;
        let mut out = WebhookOutcome::default();
        let key = (job.connection_id.clone(), s.provider_message_id.clone());
        let row = match refs.get(&key) {
            Some(row) if receipt_keys::keyed(s, Some(row))? => row,
            _ => {
                outcomes.push(out);
                apart.push(i);
                continue;
            }
        };
        if !seen.insert((key.0, key.1, s.dedupe_key.clone())) {
            out.duplicates = 1;
            outcomes.push(out);
            continue;
        }
        out.stored = 1;
        outcomes.push(out);
        let message_id: String = row.try_get("message_id")?;
        let current = match moved.get(&message_id) {
            Some((st, _)) => st.as_str().to_string(),
            None => row.try_get("status")?,
        };
        let input = StatusInput {
            status: incoming,
            raw_status: Some(&s.raw_status),
            connection_id: Some(&job.connection_id),
            provider_message_id: Some(&s.provider_message_id),
            error: None,
            at: s.occurred_at_ms.unwrap_or(now),
            dedupe_key: Some(&s.dedupe_key),
        };
        let moves = status::moves(&current, incoming);
        let updated_at = now_ms().max(input.at);
        if moves {
            moved.insert(message_id.clone(), (incoming, updated_at));
        }
        history.message_id.push(Some(message_id.clone()));
        history.status.push(Some(incoming.as_str().to_string()));
        history.raw_status.push(Some(s.raw_status.clone()));
        history.applied.push(Some(i64::from(moves)));
        history.connection_id.push(Some(job.connection_id.clone()));
        history
            .provider_message_id
            .push(Some(s.provider_message_id.clone()));
        history.occurred_at.push(Some(input.at));
        history.dedupe_key.push(Some(s.dedupe_key.clone()));
        planned.push((
            i,
            Planned::new(&message_id, row, &input, moves, updated_at)?,
        ));
    }

    if !history.message_id.is_empty() {
        let mut ids = Vec::with_capacity(moved.len());
        let mut statuses = Vec::with_capacity(moved.len());
        let mut updated = Vec::with_capacity(moved.len());
        for (id, (st, at)) in moved {
            ids.push(Some(id));
            statuses.push(Some(st.as_str().to_string()));
            updated.push(Some(at));
        }
        let mut apply = Script::new();
        apply.add(
            APPLY,
            vec![
                Val::Texts(history.message_id),
                Val::Texts(history.status),
                Val::Texts(history.raw_status),
                Val::Ints(history.applied),
                Val::Texts(history.connection_id),
                Val::Texts(history.provider_message_id),
                Val::Ints(history.occurred_at),
                Val::Texts(history.dedupe_key),
                Val::Texts(ids),
                Val::Texts(statuses),
                Val::Ints(updated),
            ],
        );
        apply.run(&mut *conn).await?;
    }
    for (i, p) in planned {
        let change = p.finish(&mut *conn).await?;
        if let Some(out) = outcomes.get_mut(i) {
            out.changes.push(change);
        }
    }
    // After the group's writes: these read the messages as the group left them. They are
    // stored in `webhook_events` (parked, or a part of a long message).
    for i in apart {
        let (job, ev, ..) = receipts[i];
        if let Some(out) = outcomes.get_mut(i) {
            run_event(conn, job, ev, now, out).await?;
        }
    }
    Ok(outcomes)
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use weft_provider::Correlation;

    pub(in crate::store) fn job(
        pid: &str,
        message: Option<&str>,
        status: DeliveryStatus,
        key: &str,
    ) -> Job {
        Job::Webhook(Box::new(webhook_job(pid, message, status, key)))
    }

    /// One receipt for provider id `pid` on connection `c` (tenant `t`), keyed `key`.
    pub(in crate::store) fn webhook_job(
        pid: &str,
        message: Option<&str>,
        status: DeliveryStatus,
        key: &str,
    ) -> WebhookJob {
        let cfg = crate::config::Config::from_toml("").expect("default config");
        WebhookJob {
            connection_id: "c".into(),
            kind: "status".into(),
            tenant: "t".into(),
            events: vec![InboundEvent::Status(StatusEvent {
                provider_message_id: pid.into(),
                correlation: Correlation {
                    message_id: message.map(String::from),
                    attempt_id: None,
                },
                status: Some(status),
                raw_status: status.as_str().into(),
                error_code: None,
                error_detail: None,
                occurred_at_ms: None,
                dedupe_key: key.into(),
                opted_out: false,
            })],
            email: std::sync::Arc::new(crate::threading::EmailThreading {
                domain: "example.com".into(),
                inbound_domain: "example.com".into(),
                secret: vec![1; 32],
            }),
            consent: crate::policy::consent::ConsentPolicy::new(cfg.consent),
        }
    }

    /// [`run_plain`] over `jobs` in a transaction of its own.
    async fn committed(pg: &mut Db<'_>, jobs: &[Job]) -> Vec<WebhookOutcome> {
        pg.simple("BEGIN").await.expect("begin");
        let refs: Vec<&Job> = jobs.iter().collect();
        let out = run_plain(pg, &refs).await.expect("group");
        pg.simple("COMMIT").await.expect("commit");
        out
    }

    /// A failure (fallback, opt-out) goes one by one, and so does every other receipt of its
    /// message in the batch; other messages' plain receipts stay grouped.
    #[test]
    fn a_failure_keeps_its_messages_receipts_in_order() {
        let jobs = [
            job("SM1", Some("msg_1"), DeliveryStatus::Sent, "a"),
            job("SM1", Some("msg_1"), DeliveryStatus::Undeliverable, "b"),
            job("SM2", Some("msg_2"), DeliveryStatus::Sent, "c"),
            job("SM3", None, DeliveryStatus::Delivered, "d"),
        ];
        assert_eq!(grouped(jobs.iter()), [false, false, true, true]);
    }

    /// One group: a message's `sent` and `delivered` (and a late `sent`, kept in history
    /// only), a provider's retry (a duplicate), a part of a message sent in two parts and a
    /// receipt for an id weft has not recorded (both one by one: part rules, parked).
    #[tokio::test]
    async fn plain_receipts_apply_together_on_postgres() {
        let db = crate::store::pg::TestDb::new().await;
        let setup = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
            INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, created_at, updated_at) VALUES
              ('msg_1', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'queued', 0, 0),
              ('msg_2', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'queued', 0, 0);
            INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status) VALUES
              ('c', 'SM1', 'msg_1', 'att_1', 0, 'queued'),
              ('c', 'SM2a', 'msg_2', 'att_2', 0, 'queued'),
              ('c', 'SM2b', 'msg_2', 'att_2', 1, 'queued');";
        sqlx::raw_sql(setup).execute(&db.pool).await.expect("setup");
        let jobs = [
            job("SM1", Some("msg_1"), DeliveryStatus::Sent, "sent"),
            job("SM1", Some("msg_1"), DeliveryStatus::Delivered, "delivered"),
            job("SM1", Some("msg_1"), DeliveryStatus::Sent, "sent"),
            job("SM1", Some("msg_1"), DeliveryStatus::Sent, "sent-again"),
            job("SM2a", Some("msg_2"), DeliveryStatus::Delivered, "part"),
            job("SMX", None, DeliveryStatus::Delivered, "unknown"),
        ];
        assert!(grouped(jobs.iter()).iter().all(|g| *g));
        let mut conn = db.writer().await;
        let mut pg = Db::Pg(&mut conn);
        let out = committed(&mut pg, &jobs).await;

        let counts: Vec<(usize, usize, usize)> = out
            .iter()
            .map(|o| (o.stored, o.duplicates, o.parked))
            .collect();
        assert_eq!(
            counts,
            [
                (1, 0, 0),
                (1, 0, 0),
                (0, 1, 0),
                (1, 0, 0),
                (1, 0, 0),
                (1, 0, 1)
            ]
        );
        let moved: Vec<bool> = out
            .iter()
            .map(|o| o.changes.iter().any(|c| c.moved))
            .collect();
        assert_eq!(moved, [true, true, false, false, false, false]);
        let history: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT message_id, status, applied FROM status_history ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .expect("history");
        let history: Vec<(&str, &str, i64)> = history
            .iter()
            .map(|(m, s, a)| (m.as_str(), s.as_str(), *a))
            .collect();
        assert_eq!(
            history,
            [
                ("msg_1", "sent", 1),
                ("msg_1", "delivered", 1),
                ("msg_1", "sent", 0),
                // One part of two delivered: the message is as far as its slowest part.
                ("msg_2", "queued", 0),
            ]
        );
        let statuses: Vec<(String, String)> =
            sqlx::query_as("SELECT id, status FROM messages ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .expect("statuses");
        assert_eq!(
            statuses,
            [
                ("msg_1".to_string(), "delivered".to_string()),
                ("msg_2".to_string(), "queued".to_string())
            ]
        );
        // Only the part and the parked receipt have rows of their own; the others' keys are
        // on their history rows.
        let events: Vec<(String, i64)> =
            sqlx::query_as("SELECT dedupe_key, processed FROM webhook_events ORDER BY dedupe_key")
                .fetch_all(&db.pool)
                .await
                .expect("events");
        let events: Vec<(&str, i64)> = events.iter().map(|(k, p)| (k.as_str(), *p)).collect();
        assert_eq!(events, [("msg_2/part", 1), ("unknown", 0)]);
        let keys: Vec<(Option<String>,)> =
            sqlx::query_as("SELECT dedupe_key FROM status_history ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .expect("keys");
        let keys: Vec<Option<&str>> = keys.iter().map(|(k,)| k.as_deref()).collect();
        assert_eq!(
            keys,
            [Some("sent"), Some("delivered"), Some("sent-again"), None]
        );

        // The provider retries every one of them, in another batch: all duplicates.
        let again = committed(&mut pg, &jobs).await;
        assert!(
            again.iter().all(|o| (o.stored, o.duplicates) == (0, 1)),
            "{:?}",
            again
                .iter()
                .map(|o| (o.stored, o.duplicates, o.parked))
                .collect::<Vec<_>>()
        );
        let rows: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM status_history), (SELECT COUNT(*) FROM webhook_events)",
        )
        .fetch_one(&db.pool)
        .await
        .expect("counts");
        assert_eq!(rows, (4, 2), "nothing written twice");
        db.drop_db().await;
    }

    /// The grouped path also drops the retry of a receipt applied before migration 0013.
    #[tokio::test]
    async fn a_receipt_applied_before_the_upgrade_is_a_duplicate_in_a_group() {
        let db = crate::store::pg::TestDb::new().await;
        sqlx::raw_sql(crate::store::receipt_keys::tests::LEGACY)
            .execute(&db.pool)
            .await
            .expect("setup");
        let jobs = [
            job("SM1", Some("msg_1"), DeliveryStatus::Delivered, "tok-1"),
            job("SM1", Some("msg_1"), DeliveryStatus::Sent, "tok-2"),
        ];
        let mut conn = db.writer().await;
        let mut pg = Db::Pg(&mut conn);
        let out = committed(&mut pg, &jobs).await;
        let counts: Vec<(usize, usize)> = out.iter().map(|o| (o.stored, o.duplicates)).collect();
        assert_eq!(counts, [(0, 1), (1, 0)]);
        let history: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM status_history")
            .fetch_one(&db.pool)
            .await
            .expect("history");
        assert_eq!(history.0, 2);
        db.drop_db().await;
    }
}
