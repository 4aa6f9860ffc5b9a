//! A PostgreSQL writer's attempt starts, many at once.
//!
//! One at a time ([`super::delivery::begin`]) an attempt's start is two statements: the
//! lease's extension (which proves this process still holds the message) and the attempt
//! row. A batch's starts are the same two statements for all of them, with arrays
//! (`unnest`), in one round trip — as [`super::receipts`] does for receipts, and for the
//! same reason: PostgreSQL's cost is mostly per statement. The rows are the batch's own
//! writer's to lock: a message's jobs all go to one writer ([`super::intake`]); claims
//! skip locked rows.

use super::db::Db;
use super::delivery::AttemptBegin;
use super::script::{Script, Val};
use super::writer::Job;
use sqlx::Row;
use std::collections::{HashMap, HashSet};

/// Per job: whether it is an attempt start that joins the batch's group (one per message:
/// a second start of one message in a batch, which a lost lease could cause, goes alone).
pub(super) fn grouped<'a>(jobs: impl Iterator<Item = &'a Job>) -> Vec<bool> {
    let mut seen = HashSet::new();
    jobs.map(|j| match j {
        Job::Begin(b) => seen.insert(b.message_id.as_str()),
        _ => false,
    })
    .collect()
}

const LEASE_ALL: &str = "UPDATE outbox o SET lease_until = u.lease_until, tries = o.tries + 1
     FROM unnest($1::text[], $2::text[], $3::int8[]) AS u(message_id, lease_token, lease_until)
     WHERE o.message_id = u.message_id AND o.lease_token = u.lease_token
     RETURNING o.message_id, o.tries";

const ATTEMPTS_ALL: &str = "INSERT INTO attempts (id, message_id, seq, channel, provider, connection_id, sender, outcome, started_at)
     SELECT u.id, u.message_id, (SELECT COUNT(*) + 1 FROM attempts a WHERE a.message_id = u.message_id),
            u.channel, u.provider, u.connection_id, u.sender, 'in_flight', u.started_at
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::int8[], $8::text[])
          AS u(id, message_id, channel, provider, connection_id, sender, started_at, lease_token)
     WHERE EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = u.message_id AND o.lease_token = u.lease_token)";

/// Starts the attempts `jobs` (all [`grouped`]): per job the attempt's number on the current
/// channel, or `None` where this process no longer holds the lease (as [`super::delivery::begin`]).
pub(super) async fn begin_all(
    conn: &mut Db<'_>,
    jobs: &[&Job],
) -> Result<Vec<Option<i64>>, sqlx::Error> {
    let begins: Vec<&AttemptBegin> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Begin(b) => Some(b),
            _ => None,
        })
        .collect();
    let texts = |f: &dyn Fn(&AttemptBegin) -> Option<String>| {
        Val::Texts(begins.iter().map(|b| f(b)).collect())
    };
    let ints =
        |f: &dyn Fn(&AttemptBegin) -> i64| Val::Ints(begins.iter().map(|b| Some(f(b))).collect());
    let mut script = Script::new();
    script.add(
        LEASE_ALL,
        vec![
            texts(&|b| Some(b.message_id.clone())),
            texts(&|b| Some(b.lease_token.clone())),
            ints(&|b| b.lease_until),
        ],
    );
    script.add(
        ATTEMPTS_ALL,
        vec![
            texts(&|b| Some(b.attempt_id.clone())),
            texts(&|b| Some(b.message_id.clone())),
            texts(&|b| Some(b.channel.as_str().to_string())),
            texts(&|b| Some(b.provider.to_string())),
            texts(&|b| Some(b.connection_id.clone())),
            texts(&|b| b.sender.clone()),
            ints(&|b| b.now),
            texts(&|b| Some(b.lease_token.clone())),
        ],
    );
    let leased = script.run(conn).await?.into_iter().next().map(|o| o.rows);
    let mut tries: HashMap<String, i64> = HashMap::new();
    for row in leased.unwrap_or_default() {
        tries.insert(row.try_get("message_id")?, row.try_get("tries")?);
    }
    Ok(begins
        .iter()
        .map(|b| tries.get(&b.message_id).copied())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::Channel;

    fn begin(message_id: &str, lease_token: &str) -> Job {
        Job::Begin(AttemptBegin {
            message_id: message_id.into(),
            lease_token: lease_token.into(),
            lease_until: 99,
            attempt_id: crate::domain::ids::new_id(crate::domain::ids::IdKind::Attempt),
            channel: Channel::Sms,
            provider: "twilio",
            connection_id: "c".into(),
            sender: None,
            now: 1,
        })
    }

    /// Starts with the lease get their attempt (numbered on from the message's earlier
    /// ones) and their try count; one whose lease another process took gets neither.
    #[tokio::test]
    async fn attempts_start_together_where_the_lease_holds_on_postgres() {
        let db = crate::store::pg::TestDb::new().await;
        let setup = "INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at) VALUES
              ('msg_1', 0, 0, 'mine', 10, 0), ('msg_2', 0, 3, 'theirs', 10, 0);";
        sqlx::raw_sql(setup).execute(&db.pool).await.expect("setup");
        let mut conn = db.writer().await;
        let mut pg = Db::Pg(&mut conn);
        let jobs = || {
            [
                begin("msg_1", "mine"),
                begin("msg_2", "mine"),
                begin("msg_1", "mine"),
            ]
        };
        assert_eq!(grouped(jobs().iter()), [true, true, false]);
        for want in [1, 2] {
            let jobs = jobs();
            let group: Vec<&Job> = jobs[..2].iter().collect();
            let tries = begin_all(&mut pg, &group).await.expect("begin");
            assert_eq!(tries, [Some(want), None]);
        }
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT message_id, seq FROM attempts ORDER BY seq")
                .fetch_all(&db.pool)
                .await
                .expect("attempts");
        assert_eq!(rows, [("msg_1".into(), 1), ("msg_1".into(), 2)]);
        let outbox: Vec<(String, i64, i64)> =
            sqlx::query_as("SELECT message_id, tries, lease_until FROM outbox ORDER BY message_id")
                .fetch_all(&db.pool)
                .await
                .expect("outbox");
        assert_eq!(outbox, [("msg_1".into(), 2, 99), ("msg_2".into(), 3, 10)]);
        db.drop_db().await;
    }
}
