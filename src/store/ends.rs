//! A PostgreSQL writer's send results, many at once.
//!
//! One at a time ([`super::delivery::end`]) a send the provider took is two round trips and
//! five statements: the attempt's outcome, the provider id, the message's current state
//! (locked); the history row with the message's update, the outbox row's removal with the
//! lookup of receipts parked for the provider id. A batch's plain results — the provider
//! took it under one id, no fallback channel waits, the message has no other job in the
//! batch but its attempt start and plain receipts (which run before and after this group)
//! — are the same statements for all of them, with arrays (`unnest`), in two round trips,
//! as [`super::begins`] and [`super::receipts`] do. The state machine still decides each
//! message in Rust.
//!
//! Row locks: the messages are locked in id order after the batch's other jobs locked
//! theirs; a message's jobs all go to one writer ([`super::intake`]), so no other writer
//! locks them.

use super::db::Db;
use super::delivery::{sender_addr, AttemptEnd, AttemptResult};
use super::parked::apply_parked;
use super::script::{columns, Col, Script, Val};
use super::status::{self, Planned, StatusChange, StatusInput, CURRENT_COLUMNS};
use super::writer::Job;
use crate::domain::now_ms;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

/// A plain send result: its job and the provider's one id.
fn plain(job: &Job) -> Option<(&AttemptEnd, &str)> {
    let Job::End(e) = job else { return None };
    match &e.result {
        AttemptResult::Sent {
            provider_ids,
            fallback_check_at: None,
            ..
        } if e.attempt_id.is_some() && e.connection_id.is_some() => match provider_ids.as_slice() {
            [pid] => Some((e, pid.as_str())),
            _ => None,
        },
        _ => None,
    }
}

/// The message a job is about, where it names one.
fn message_of(job: &Job) -> Option<&str> {
    match job {
        Job::Begin(b) => Some(&b.message_id),
        Job::End(e) => Some(&e.message_id),
        Job::Webhook(w) => match w.events.first() {
            Some(weft_provider::InboundEvent::Status(s)) => s.correlation.message_id.as_deref(),
            _ => None,
        },
        _ => None,
    }
}

/// Per job: whether it joins the group of plain send results. `grouped_elsewhere` marks the
/// jobs that run in the attempt-start or receipt groups (before and after this one).
pub(super) fn grouped(jobs: &[&Job], grouped_elsewhere: &[bool]) -> Vec<bool> {
    // Messages with a job that runs alone, or with two results: all their results go alone.
    let mut results: HashMap<&str, usize> = HashMap::new();
    let mut apart: HashSet<&str> = HashSet::new();
    for (j, elsewhere) in jobs.iter().zip(grouped_elsewhere) {
        let Some(m) = message_of(j) else { continue };
        match plain(j) {
            Some(_) => *results.entry(m).or_default() += 1,
            None if !elsewhere => {
                apart.insert(m);
            }
            None => {}
        }
    }
    jobs.iter()
        .map(|j| {
            plain(j).is_some_and(|(e, _)| {
                !apart.contains(e.message_id.as_str())
                    && results.get(e.message_id.as_str()) == Some(&1)
            })
        })
        .collect()
}

const ATTEMPTS: &str = "UPDATE attempts a SET outcome = 'queued', provider_ids = u.provider_ids, error_code = NULL, error_detail = NULL, finished_at = u.now
     FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(id, provider_ids, now)
     WHERE a.id = u.id";

const REFS: &str = "INSERT INTO provider_refs (connection_id, provider_message_id, message_id, attempt_id, part, status)
     SELECT u.connection_id, u.pid, u.message_id, u.attempt_id, 0, 'queued'
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) AS u(connection_id, pid, message_id, attempt_id)
     ON CONFLICT (connection_id, provider_message_id) DO NOTHING";

/// The messages' [`CURRENT_COLUMNS`], locked in id order.
static CURRENT: LazyLock<String> = LazyLock::new(|| {
    format!("SELECT id, {CURRENT_COLUMNS} FROM messages WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE")
});

/// The history rows, and every message's sent columns with its status where it moves.
const APPLY: &str = "WITH history AS (
       INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, occurred_at)
       SELECT u.id, u.status, NULL, u.moved, u.connection_id, u.pid, u.at
       FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $5::text[], $6::int8[]) AS u(id, status, moved, connection_id, pid, at)
     )
     UPDATE messages m SET connection_id = u.connection_id, business_addr = u.sender,
            from_addr = COALESCE(m.from_addr, u.sender_addr), segments = COALESCE(m.segments, u.segments),
            status = CASE WHEN u.moved = 1 THEN u.status ELSE m.status END,
            updated_at = CASE WHEN u.moved = 1 THEN u.updated_at ELSE m.updated_at END
     FROM unnest($1::text[], $2::text[], $3::int8[], $4::text[], $7::text[], $8::text[], $9::int8[], $10::int8[])
          AS u(id, status, moved, connection_id, sender, sender_addr, segments, updated_at)
     WHERE m.id = u.id";

/// [`APPLY`]'s parameters, `$1`…`$10`.
const APPLY_COLUMNS: [(&str, Col); 10] = [
    ("id", Col::Text),
    ("status", Col::Text),
    ("moved", Col::Int),
    ("connection_id", Col::Text),
    ("pid", Col::Text),
    ("at", Col::Int),
    ("sender", Col::Text),
    ("sender_addr", Col::Text),
    ("segments", Col::Int),
    ("updated_at", Col::Int),
];

const DELETE_OUTBOX: &str = "DELETE FROM outbox WHERE message_id = ANY($1::text[])";

/// Receipts parked for the provider ids, one id after the other (a subquery with `ORDER BY`
/// is not flattened into a join: each lookup uses the parked index).
const PARKED: &str = "SELECT u.connection_id, u.pid, w.id, w.event
     FROM unnest($1::text[], $2::text[]) AS u(connection_id, pid)
     CROSS JOIN LATERAL (
       SELECT id, event, received_at FROM webhook_events
       WHERE connection_id = u.connection_id AND provider_message_id = u.pid AND processed = 0
       ORDER BY received_at
     ) w";

/// Records the send results `jobs` (all [`grouped`]): per job its status changes, as
/// [`super::delivery::end`] returns them.
pub(super) async fn end_all(
    conn: &mut Db<'_>,
    jobs: &[&Job],
) -> Result<Vec<Vec<StatusChange>>, sqlx::Error> {
    let ends: Vec<(&AttemptEnd, &str)> = jobs.iter().filter_map(|j| plain(j)).collect();
    let texts = |f: &dyn Fn(&AttemptEnd, &str) -> Option<String>| {
        Val::Texts(ends.iter().map(|(e, p)| f(e, p)).collect())
    };
    let ids = texts(&|e, _| Some(e.message_id.clone()));
    let conns = texts(&|e, _| e.connection_id.clone());
    let pids = texts(&|_, p| Some(p.to_string()));
    let mut first = Script::new();
    first.add(
        ATTEMPTS,
        vec![
            texts(&|e, _| e.attempt_id.clone()),
            texts(&|_, p| serde_json::to_string(&[p]).ok()),
            Val::Ints(ends.iter().map(|(e, _)| Some(e.now)).collect()),
        ],
    );
    first.add(
        REFS,
        vec![
            conns.clone(),
            pids.clone(),
            ids.clone(),
            texts(&|e, _| e.attempt_id.clone()),
        ],
    );
    let read = first.add(CURRENT.as_str(), vec![ids.clone()]);
    let mut out = first.run(&mut *conn).await?;
    let mut current: HashMap<String, AnyRow> = HashMap::new();
    for row in out
        .get_mut(read)
        .map(|o| std::mem::take(&mut o.rows))
        .unwrap_or_default()
    {
        current.insert(row.try_get("id")?, row);
    }

    // The state machine per message (one result each: no message twice). Messages that
    // are gone get no history and no update (as one at a time).
    let mut planned: Vec<Option<Planned>> = Vec::with_capacity(ends.len());
    let mut applied: Vec<Vec<Val>> = Vec::with_capacity(ends.len());
    for (e, pid) in &ends {
        let AttemptResult::Sent {
            status, segments, ..
        } = &e.result
        else {
            return Err(sqlx::Error::Protocol(
                "a grouped result that is not a send".into(),
            ));
        };
        let Some(row) = current.get(&e.message_id) else {
            planned.push(None);
            continue;
        };
        let input = StatusInput {
            status: *status,
            raw_status: None,
            connection_id: e.connection_id.as_deref(),
            provider_message_id: Some(pid),
            error: None,
            at: e.now,
            dedupe_key: None,
        };
        let updated_at = now_ms().max(e.now);
        let moves = status::moves(&row.try_get::<String, _>("status")?, *status);
        planned.push(Some(Planned::new(
            &e.message_id,
            row,
            &input,
            moves,
            updated_at,
        )?));
        applied.push(vec![
            (&e.message_id).into(),
            status.as_str().into(),
            i64::from(moves).into(),
            (&e.connection_id).into(),
            (*pid).into(),
            e.now.into(),
            (&e.sender).into(),
            sender_addr(e.sender.as_deref()).into(),
            segments.map(i64::from).into(),
            updated_at.into(),
        ]);
    }
    let mut second = Script::new();
    if !applied.is_empty() {
        second.add(APPLY, columns(&APPLY_COLUMNS, &applied)?);
    }
    second.add(DELETE_OUTBOX, vec![ids]);
    let parked = second.add(PARKED, vec![conns, pids]);
    let mut out = second.run(&mut *conn).await?;
    let mut waiting: HashMap<(String, String), Vec<AnyRow>> = HashMap::new();
    for row in out
        .get_mut(parked)
        .map(|o| std::mem::take(&mut o.rows))
        .unwrap_or_default()
    {
        let key = (row.try_get("connection_id")?, row.try_get("pid")?);
        waiting.entry(key).or_default().push(row);
    }

    let mut results = Vec::with_capacity(ends.len());
    for ((e, pid), p) in ends.iter().zip(planned) {
        let mut changes = Vec::new();
        if let Some(p) = p {
            changes.push(p.finish(&mut *conn).await?);
        }
        let conn_id = e.connection_id.clone().unwrap_or_default();
        if let Some(rows) = waiting.remove(&(conn_id.clone(), pid.to_string())) {
            changes.extend(apply_parked(conn, &conn_id, rows).await?);
        }
        results.push(changes);
    }
    Ok(results)
}

#[cfg(test)]
mod tests {
    use super::super::receipts::{run_plain, tests::job as receipt};
    use super::*;
    use weft_provider::{Channel, DeliveryStatus};

    fn end(message_id: &str, pids: &[&str], fallback_check_at: Option<i64>) -> Job {
        Job::End(Box::new(AttemptEnd {
            message_id: message_id.into(),
            sender: Some("tel:+15005550006".into()),
            attempt_id: Some(message_id.replace("msg", "att")),
            connection_id: Some("c".into()),
            result: AttemptResult::Sent {
                provider_ids: pids.iter().map(|p| p.to_string()).collect(),
                status: DeliveryStatus::Queued,
                segments: Some(1),
                fallback_check_at,
            },
            now: 1_000,
        }))
    }

    fn begin(message_id: &str) -> Job {
        Job::Begin(super::super::delivery::AttemptBegin {
            message_id: message_id.into(),
            lease_token: "lease".into(),
            lease_until: 99,
            attempt_id: message_id.replace("msg", "att"),
            channel: Channel::Sms,
            provider: "twilio",
            connection_id: "c".into(),
            sender: None,
            now: 1,
        })
    }

    /// A result joins the group when its message's other jobs in the batch run in the
    /// attempt-start or receipt groups; a message with a job that runs alone, two results,
    /// a result in two parts or one that waits for a fallback check goes one by one.
    #[test]
    fn a_messages_other_jobs_keep_its_result_apart() {
        let jobs = [
            begin("msg_1"),
            end("msg_1", &["SM1"], None),
            receipt("SM1", Some("msg_1"), DeliveryStatus::Sent, "a"),
            end("msg_2", &["SM2"], None),
            end("msg_2", &["SM2"], None),
            end("msg_3", &["SM3a", "SM3b"], None),
            receipt("SM4", Some("msg_4"), DeliveryStatus::Undeliverable, "b"),
            end("msg_4", &["SM4"], None),
            end("msg_5", &["SM5"], Some(5_000)),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        let elsewhere: Vec<bool> = super::super::begins::grouped(refs.iter().copied())
            .into_iter()
            .zip(super::super::receipts::grouped(refs.iter().copied()))
            .map(|(b, r)| b || r)
            .collect();
        assert_eq!(
            elsewhere,
            [true, false, true, false, false, false, false, false, false]
        );
        let got = grouped(&refs, &elsewhere);
        assert_eq!(
            got,
            [false, true, false, false, false, false, false, false, false]
        );
    }

    /// One group: a result that moves its message; one for a message a receipt already
    /// moved past it (history only, the sent columns still set); one with a receipt parked
    /// for its provider id (applied after it); one for a message that is gone (nothing but
    /// its attempt, ref and outbox row). Every outbox row is gone.
    #[tokio::test]
    async fn send_results_apply_together_on_postgres() {
        let db = crate::store::pg::TestDb::new().await;
        let setup = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
            INSERT INTO messages (id, tenant_id, conversation_id, direction, channel, to_addr, status, created_at, updated_at) VALUES
              ('msg_1', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'accepted', 0, 0),
              ('msg_2', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'delivered', 0, 0),
              ('msg_3', 't', 'cnv_1', 'outbound', 'sms', '+12025550100', 'accepted', 0, 0);
            INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at)
              SELECT m, 0, 1, 'lease', 99, 0 FROM unnest(ARRAY['msg_1', 'msg_2', 'msg_3', 'msg_gone']) AS m;
            INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, outcome, started_at)
              SELECT replace(m, 'msg', 'att'), m, 1, 'sms', 'twilio', 'c', 'in_flight', 0
              FROM unnest(ARRAY['msg_1', 'msg_2', 'msg_3', 'msg_gone']) AS m;";
        sqlx::raw_sql(setup).execute(&db.pool).await.expect("setup");
        let mut conn = db.writer().await;
        let mut pg = Db::Pg(&mut conn);
        // A receipt for SM3 before the send's answer: parked.
        pg.simple("BEGIN").await.expect("begin");
        let early = receipt("SM3", None, DeliveryStatus::Delivered, "early");
        let parked = run_plain(&mut pg, &[&early]).await.expect("park");
        pg.simple("COMMIT").await.expect("commit");
        assert_eq!(parked[0].parked, 1);

        let jobs = [
            end("msg_1", &["SM1"], None),
            end("msg_2", &["SM2"], None),
            end("msg_3", &["SM3"], None),
            end("msg_gone", &["SMG"], None),
        ];
        let refs: Vec<&Job> = jobs.iter().collect();
        assert!(grouped(&refs, &[false; 4]).iter().all(|g| *g));
        pg.simple("BEGIN").await.expect("begin");
        let out = end_all(&mut pg, &refs).await.expect("group");
        pg.simple("COMMIT").await.expect("commit");
        let changes: Vec<Vec<(String, bool)>> = out
            .iter()
            .map(|c| {
                c.iter()
                    .map(|c| (c.status.as_str().to_string(), c.moved))
                    .collect()
            })
            .collect();
        let change = |s: &str, moved: bool| (s.to_string(), moved);
        assert_eq!(
            changes,
            [
                vec![change("queued", true)],
                vec![change("queued", false)],
                vec![change("queued", true), change("delivered", true)],
                vec![],
            ]
        );
        type Row = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<i64>,
        );
        let messages: Vec<Row> = sqlx::query_as(
            "SELECT id, status, connection_id, business_addr, from_addr, segments FROM messages ORDER BY id",
        )
        .fetch_all(&db.pool)
        .await
        .expect("messages");
        let sent = |id: &str, status: &str| -> Row {
            (
                id.into(),
                status.into(),
                Some("c".into()),
                Some("tel:+15005550006".into()),
                Some("+15005550006".into()),
                Some(1),
            )
        };
        assert_eq!(
            messages,
            [
                sent("msg_1", "queued"),
                sent("msg_2", "delivered"),
                sent("msg_3", "delivered")
            ]
        );
        let history: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT message_id, status, applied FROM status_history ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .expect("history");
        let h = |m: &str, s: &str, a: i64| (m.to_string(), s.to_string(), a);
        assert_eq!(
            history,
            [
                h("msg_1", "queued", 1),
                h("msg_2", "queued", 0),
                h("msg_3", "queued", 1),
                h("msg_3", "delivered", 1),
            ]
        );
        let attempts: Vec<(String, String, Option<String>)> =
            sqlx::query_as("SELECT id, outcome, provider_ids FROM attempts ORDER BY id")
                .fetch_all(&db.pool)
                .await
                .expect("attempts");
        assert_eq!(
            attempts[0],
            ("att_1".into(), "queued".into(), Some(r#"["SM1"]"#.into()))
        );
        assert!(attempts.iter().all(|a| a.1 == "queued"), "{attempts:?}");
        db.assert_counts(&[
            ("SELECT COUNT(*) FROM provider_refs", 4),
            ("SELECT COUNT(*) FROM outbox", 0),
            ("SELECT COUNT(*) FROM webhook_events WHERE processed = 0", 0),
        ])
        .await;
        db.drop_db().await;
    }
}
