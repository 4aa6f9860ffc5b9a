//! A PostgreSQL writer's accepts, many at once.
//!
//! One at a time ([`super::accept::run`]) an accept is two or three round trips and six or
//! seven statements: the address's owner; for a new address its contact, identity and first
//! conversation, else the contact's open conversation (an upsert); the message and its
//! outbox row. A batch's plain accepts (no `Idempotency-Key`, no `conversation_id`) are the
//! same statements for all of them, with arrays (`unnest`), in three round trips — as
//! [`super::receipts`] and [`super::begins`] do, and for the same reason: PostgreSQL's cost
//! is mostly per statement.
//!
//! Several messages to one address share its contact and conversation, as they would one
//! after another. An address another writer's open transaction claims meanwhile makes the
//! identity insert wait for that commit and do nothing: this batch's contact and
//! conversation for it are deleted again and its messages take the one-at-a-time way after
//! the group (which then finds the winner's contact), as [`super::accept::run`] does.
//! Addresses are claimed in address order, as the one-at-a-time accepts of a sorted batch
//! claim them.

use super::accept::{
    answer, message_row, outbox_row, AcceptJob, AcceptOutcome, MESSAGE_COLUMNS, OUTBOX_COLUMNS,
};
use super::db::Db;
use super::script::{columns, insert_unnest, Col, Script, Val};
use super::writer::Job;
use crate::domain::ids::{new_id, IdKind};
use crate::threading::contacts::binding_key;
use sqlx::Row;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;

/// Whether the job is an accept that joins the batch's group (see the module's notes).
pub(super) fn grouped(job: &Job) -> bool {
    matches!(job, Job::Accept(a) if a.idempotency.is_none() && a.msg.conversation_id.is_none())
}

/// Each address's live owner, looked up one by one: a lateral subquery with a `LIMIT` is
/// not flattened into a join, so the plan cannot scan the table once for all of them (a
/// generic plan made while the table was small did, and took 40–60 ms per batch once it
/// held 12,000 identities).
const OWNERS: &str = "SELECT u.tenant_id, u.address, i.contact_id
     FROM unnest($1::text[], $2::text[]) AS u(tenant_id, address)
     CROSS JOIN LATERAL (
       SELECT contact_id FROM identities
       WHERE tenant_id = u.tenant_id AND address = u.address AND valid_to IS NULL LIMIT 1
     ) i";

const CONTACTS: &str = "INSERT INTO contacts (id, tenant_id, created_at)
     SELECT * FROM unnest($1::text[], $2::text[], $3::int8[])";

const IDENTITIES: &str = "INSERT INTO identities (id, tenant_id, contact_id, address, valid_from, created_at)
     SELECT u.id, u.tenant_id, u.contact_id, u.address, u.now, u.now
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[]) AS u(id, tenant_id, contact_id, address, now)
     ON CONFLICT (tenant_id, address) WHERE valid_to IS NULL DO NOTHING
     RETURNING contact_id";

const FIRST_CONVERSATIONS: &str = "INSERT INTO conversations (id, tenant_id, contact_id, binding_key, state, created_at, last_activity_at)
     SELECT u.id, u.tenant_id, u.contact_id, u.binding_key, 'open', u.now, u.last
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[]) AS u(id, tenant_id, contact_id, binding_key, now, last)";

/// [`crate::threading::contacts::open_conversation`]'s upsert for many contacts.
const OPEN_CONVERSATIONS: &str = "INSERT INTO conversations (id, tenant_id, contact_id, binding_key, state, previous_conversation_id, created_at, last_activity_at)
     SELECT u.id, u.tenant_id, u.contact_id, u.binding_key, 'open',
            (SELECT p.id FROM conversations p WHERE p.contact_id = u.contact_id AND p.state = 'closed' ORDER BY p.closed_at DESC LIMIT 1),
            u.now, u.last
     FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[], $6::int8[]) AS u(id, tenant_id, contact_id, binding_key, now, last)
     ON CONFLICT (binding_key) DO UPDATE SET last_activity_at = excluded.last_activity_at, state = 'open'
     RETURNING id, binding_key";

static MESSAGES: LazyLock<String> = LazyLock::new(|| insert_unnest("messages", &MESSAGE_COLUMNS));
static OUTBOX: LazyLock<String> = LazyLock::new(|| insert_unnest("outbox", &OUTBOX_COLUMNS));

/// A contact (new or found) and the conversation this batch's messages to it go to.
struct Thread<'a> {
    tenant_id: &'a str,
    contact_id: String,
    /// The address a new contact is made for; `None` for a known contact.
    new_address: Option<&'a str>,
    conversation_id: String,
    /// The time of the batch's first and last message to it.
    now: i64,
    last: i64,
}

const CONTACT_COLUMNS: [(&str, Col); 3] = [
    ("id", Col::Text),
    ("tenant_id", Col::Text),
    ("now", Col::Int),
];
const IDENTITY_COLUMNS: [(&str, Col); 5] = [
    ("id", Col::Text),
    ("tenant_id", Col::Text),
    ("contact_id", Col::Text),
    ("address", Col::Text),
    ("now", Col::Int),
];
const CONVERSATION_COLUMNS: [(&str, Col); 6] = [
    ("id", Col::Text),
    ("tenant_id", Col::Text),
    ("contact_id", Col::Text),
    ("binding_key", Col::Text),
    ("now", Col::Int),
    ("last", Col::Int),
];

impl Thread<'_> {
    fn contact_row(&self) -> Vec<Val> {
        vec![
            (&self.contact_id).into(),
            self.tenant_id.into(),
            self.now.into(),
        ]
    }

    fn identity_row(&self) -> Vec<Val> {
        vec![
            new_id(IdKind::Identity).into(),
            self.tenant_id.into(),
            (&self.contact_id).into(),
            self.new_address.into(),
            self.now.into(),
        ]
    }

    fn conversation_row(&self) -> Vec<Val> {
        vec![
            (&self.conversation_id).into(),
            self.tenant_id.into(),
            (&self.contact_id).into(),
            binding_key(self.tenant_id, &self.contact_id).into(),
            self.now.into(),
            self.last.into(),
        ]
    }
}

/// Accepts `jobs` (all [`grouped`]): one outcome per job, in order.
pub(super) async fn accept_all(
    conn: &mut Db<'_>,
    jobs: &[&Job],
) -> Result<Vec<AcceptOutcome>, sqlx::Error> {
    let accepts: Vec<&AcceptJob> = jobs
        .iter()
        .filter_map(|j| match j {
            Job::Accept(a) => Some(a.as_ref()),
            _ => None,
        })
        .collect();
    // Each address once, in address order, with the times of its first and last message.
    let mut addresses: BTreeMap<(&str, &str), (i64, i64)> = BTreeMap::new();
    for a in &accepts {
        let key = (a.msg.tenant_id.as_str(), a.msg.identity.as_str());
        let at = a.msg.created_at;
        let span = addresses.entry(key).or_insert((at, at));
        *span = (span.0.min(at), span.1.max(at));
    }
    let owners = owners(conn, addresses.keys().copied()).await?;

    // Per address the thread its messages join: a new contact, or a known contact's open
    // conversation (an upsert, once per contact: two addresses of one contact share it).
    let mut threads: Vec<Thread> = Vec::new();
    let mut known: HashMap<(&str, &str), usize> = HashMap::new();
    let mut thread_of: HashMap<(&str, &str), usize> = HashMap::new();
    for (&(tenant_id, address), &(now, last)) in &addresses {
        let at = match owners.get(&(tenant_id, address)) {
            Some(contact) => {
                let at = *known.entry((tenant_id, contact)).or_insert_with(|| {
                    threads.push(Thread {
                        tenant_id,
                        contact_id: contact.to_string(),
                        new_address: None,
                        conversation_id: new_id(IdKind::Conversation),
                        now,
                        last,
                    });
                    threads.len() - 1
                });
                // Two addresses of one contact: the conversation spans both.
                if let Some(t) = threads.get_mut(at) {
                    t.now = t.now.min(now);
                    t.last = t.last.max(last);
                }
                at
            }
            None => {
                threads.push(Thread {
                    tenant_id,
                    contact_id: new_id(IdKind::Contact),
                    new_address: Some(address),
                    conversation_id: new_id(IdKind::Conversation),
                    now,
                    last,
                });
                threads.len() - 1
            }
        };
        thread_of.insert((tenant_id, address), at);
    }

    let (new, old): (Vec<&Thread>, Vec<&Thread>) =
        threads.iter().partition(|t| t.new_address.is_some());
    fn rows<'t>(ts: &[&Thread<'t>], f: impl Fn(&Thread<'t>) -> Vec<Val>) -> Vec<Vec<Val>> {
        ts.iter().map(|t| f(t)).collect()
    }
    let mut script = Script::new();
    let mut identities = None;
    if !new.is_empty() {
        script.add(
            CONTACTS,
            columns(&CONTACT_COLUMNS, &rows(&new, Thread::contact_row))?,
        );
        let ids = columns(&IDENTITY_COLUMNS, &rows(&new, Thread::identity_row))?;
        identities = Some(script.add(IDENTITIES, ids));
        let convs = columns(&CONVERSATION_COLUMNS, &rows(&new, Thread::conversation_row))?;
        script.add(FIRST_CONVERSATIONS, convs);
    }
    let mut upserts = None;
    if !old.is_empty() {
        let convs = columns(&CONVERSATION_COLUMNS, &rows(&old, Thread::conversation_row))?;
        upserts = Some(script.add(OPEN_CONVERSATIONS, convs));
    }
    let out = script.run(conn).await?;

    // New contacts whose identity insert did nothing lost their address to another writer.
    let mut claimed: HashSet<String> = HashSet::new();
    for r in identities
        .and_then(|i| out.get(i))
        .map_or(&[][..], |o| &o.rows)
    {
        claimed.insert(r.try_get("contact_id")?);
    }
    // A known contact's conversation: the one the upsert found, or the new one it made.
    let mut found: HashMap<String, String> = HashMap::new();
    for r in upserts
        .and_then(|i| out.get(i))
        .map_or(&[][..], |o| &o.rows)
    {
        found.insert(r.try_get("binding_key")?, r.try_get("id")?);
    }
    let mut created: Vec<usize> = Vec::new();
    let mut lost: Vec<usize> = Vec::new();
    for (i, t) in threads.iter_mut().enumerate() {
        if t.new_address.is_some() {
            if claimed.contains(&t.contact_id) {
                created.push(i);
            } else {
                lost.push(i);
            }
            continue;
        }
        match found.get(&binding_key(t.tenant_id, &t.contact_id)) {
            Some(id) if *id == t.conversation_id => created.push(i),
            Some(id) => t.conversation_id = id.clone(),
            None => return Err(sqlx::Error::RowNotFound),
        }
    }

    // Every job's thread, or `None` for the one-at-a-time way (its address was lost).
    let thread: Vec<Option<&Thread>> = accepts
        .iter()
        .map(|a| {
            thread_of
                .get(&(a.msg.tenant_id.as_str(), a.msg.identity.as_str()))
                .filter(|i| !lost.contains(i))
                .and_then(|i| threads.get(*i))
        })
        .collect();
    let placed: Vec<(&AcceptJob, &Thread)> = accepts
        .iter()
        .zip(&thread)
        .filter_map(|(a, t)| t.map(|t| (*a, t)))
        .collect();
    let mut script = Script::new();
    if !placed.is_empty() {
        let messages: Vec<Vec<Val>> = placed
            .iter()
            .map(|(a, t)| message_row(a, &t.conversation_id))
            .collect();
        let outbox: Vec<Vec<Val>> = placed.iter().map(|(a, _)| outbox_row(a)).collect();
        script.add(MESSAGES.as_str(), columns(&MESSAGE_COLUMNS, &messages)?);
        script.add(OUTBOX.as_str(), columns(&OUTBOX_COLUMNS, &outbox)?);
    }
    if !lost.is_empty() {
        let undone = || lost.iter().filter_map(|i| threads.get(*i));
        script.add(
            "DELETE FROM conversations WHERE id = ANY($1::text[])",
            vec![Val::Texts(
                undone().map(|t| Some(t.conversation_id.clone())).collect(),
            )],
        );
        script.add(
            "DELETE FROM contacts WHERE id = ANY($1::text[])",
            vec![Val::Texts(
                undone().map(|t| Some(t.contact_id.clone())).collect(),
            )],
        );
    }
    script.run(conn).await?;
    for t in created.iter().filter_map(|i| threads.get(*i)) {
        crate::threading::conversation_created(conn, t.tenant_id, &t.conversation_id, t.now)
            .await?;
    }

    let mut outcomes = Vec::with_capacity(accepts.len());
    for (a, t) in accepts.iter().zip(thread) {
        outcomes.push(match t {
            Some(t) => AcceptOutcome::Accepted {
                body: answer(&a.msg, &t.conversation_id),
                conversation_id: t.conversation_id.clone(),
            },
            None => super::accept::run(conn, a).await?,
        });
    }
    Ok(outcomes)
}

/// The live owner of each `(tenant, address)` that has one.
async fn owners<'a>(
    conn: &mut Db<'_>,
    addresses: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<HashMap<(&'a str, &'a str), String>, sqlx::Error> {
    let keys: Vec<(&str, &str)> = addresses.collect();
    let tenants = Val::Texts(keys.iter().map(|(t, _)| Some(t.to_string())).collect());
    let addrs = Val::Texts(keys.iter().map(|(_, a)| Some(a.to_string())).collect());
    let mut script = Script::new();
    script.add(OWNERS, vec![tenants, addrs]);
    let rows = script.run(conn).await?.into_iter().next().map(|o| o.rows);
    let mut by_key: HashMap<(String, String), String> = HashMap::new();
    for r in rows.unwrap_or_default() {
        by_key.insert(
            (r.try_get("tenant_id")?, r.try_get("address")?),
            r.try_get("contact_id")?,
        );
    }
    Ok(keys
        .into_iter()
        .filter_map(|k| {
            by_key
                .remove(&(k.0.to_string(), k.1.to_string()))
                .map(|c| (k, c))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::accept::{first_claim, run, test_job};
    use super::*;

    fn accepted(o: &AcceptOutcome) -> &str {
        match o {
            AcceptOutcome::Accepted {
                conversation_id, ..
            } => conversation_id,
            _ => panic!("not accepted"),
        }
    }

    /// New addresses get a contact, identity and conversation each (once, however many of
    /// the batch's messages go to them); a known contact's messages join its open
    /// conversation, or a new one linked to its last closed one; two addresses of one
    /// contact share its conversation. Every message is stored as the one-at-a-time
    /// accept stores it, with its leased outbox row.
    #[tokio::test]
    async fn plain_accepts_thread_together_on_postgres() {
        let db = crate::store::pg::TestDb::new().await;
        let setup = "INSERT INTO tenants (id, name, created_at) VALUES ('t', 't', 0);
            INSERT INTO contacts (id, tenant_id, created_at) VALUES ('ct_open', 't', 0), ('ct_closed', 't', 0);
            INSERT INTO identities (id, tenant_id, contact_id, address, valid_from, created_at) VALUES
              ('id_1', 't', 'ct_open', 'tel:+12025550101', 0, 0),
              ('id_2', 't', 'ct_open', 'mailto:a@example.com', 0, 0),
              ('id_3', 't', 'ct_closed', 'tel:+12025550102', 0, 0);
            INSERT INTO conversations (id, tenant_id, contact_id, binding_key, state, created_at, last_activity_at) VALUES
              ('cv_open', 't', 'ct_open', 't|ct_open', 'open', 0, 0);
            INSERT INTO conversations (id, tenant_id, contact_id, state, created_at, last_activity_at, closed_at) VALUES
              ('cv_closed', 't', 'ct_closed', 'closed', 0, 0, 5);";
        sqlx::raw_sql(setup).execute(&db.pool).await.expect("setup");
        let mut email = test_job("a@example.com");
        email.msg.identity = "mailto:a@example.com".into();
        let jobs: Vec<Job> = [
            test_job("+12025550103"),
            test_job("+12025550101"),
            test_job("+12025550103"),
            test_job("+12025550102"),
            email,
        ]
        .into_iter()
        .zip([1_000, 3_000, 2_000, 1_000, 2_000])
        .map(|(mut j, at)| {
            j.msg.created_at = at;
            Job::Accept(Box::new(j))
        })
        .collect();
        assert!(jobs.iter().all(grouped));
        let mut conn = db.writer().await;
        let mut pg = Db::Pg(&mut conn);
        pg.simple("BEGIN").await.expect("begin");
        let refs: Vec<&Job> = jobs.iter().collect();
        let out = accept_all(&mut pg, &refs).await.expect("accept");
        pg.simple("COMMIT").await.expect("commit");
        let conv: Vec<&str> = out.iter().map(accepted).collect();
        assert_eq!(conv[0], conv[2], "one new address, one conversation");
        assert_eq!(conv[1], "cv_open");
        assert_eq!(conv[4], "cv_open", "the contact's other address");
        let linked: (String,) = sqlx::query_as(
            "SELECT previous_conversation_id FROM conversations WHERE contact_id = 'ct_closed' AND state = 'open'",
        )
        .fetch_one(&db.pool)
        .await
        .expect("reopened");
        assert_eq!(linked.0, "cv_closed");
        assert_ne!(conv[3], "cv_closed");
        // A conversation's activity is its batch's last message to it (either address).
        let times: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT id, created_at, last_activity_at FROM conversations WHERE id IN ($1, $2)",
        )
        .bind(conv[0])
        .bind("cv_open")
        .fetch_all(&db.pool)
        .await
        .expect("times");
        let times: HashMap<String, (i64, i64)> =
            times.into_iter().map(|(id, c, l)| (id, (c, l))).collect();
        assert_eq!(times.get(conv[0]), Some(&(1_000, 2_000)));
        assert_eq!(times.get("cv_open"), Some(&(0, 3_000)));
        db.assert_counts(&[
            ("SELECT COUNT(*) FROM contacts", 3),
            (
                "SELECT COUNT(*) FROM identities WHERE address = 'tel:+12025550103'",
                1,
            ),
            ("SELECT COUNT(*) FROM conversations", 4),
            ("SELECT COUNT(*) FROM messages", 5),
            (
                "SELECT COUNT(*) FROM outbox WHERE lease_token = 'lease' AND tries = 0",
                5,
            ),
        ])
        .await;
        // The same message accepted one at a time is stored alike.
        pg.simple("BEGIN").await.expect("begin");
        let alone = test_job("+12025550103");
        let alone_id = alone.msg.id.clone();
        assert_eq!(accepted(&run(&mut pg, &alone).await.expect("run")), conv[0]);
        pg.simple("COMMIT").await.expect("commit");
        let row = |id: String| {
            let pool = db.pool.clone();
            async move {
                let r: (String,) = sqlx::query_as(
                    "SELECT (to_jsonb(m) - 'id' - 'created_at' - 'updated_at')::text FROM messages m WHERE id = $1",
                )
                .bind(id)
                .fetch_one(&pool)
                .await
                .expect("row");
                r.0
            }
        };
        let Job::Accept(first) = &jobs[0] else {
            panic!("accept")
        };
        assert_eq!(row(first.msg.id.clone()).await, row(alone_id).await);
        db.drop_db().await;
    }

    /// Another writer's open transaction claims a new address first: the group's identity
    /// insert waits for its commit and does nothing; the group's contact and conversation
    /// for it are deleted again and its message joins the winner's conversation. The
    /// batch's other messages are stored as usual.
    #[tokio::test]
    async fn a_lost_address_joins_the_winners_conversation_on_postgres() {
        let (db, first, winner) = first_claim("+12025550199").await;
        let mut second = db.writer().await;
        let behind = tokio::spawn(async move {
            let jobs = [test_job("+12025550199"), test_job("+12025550198")]
                .map(|j| Job::Accept(Box::new(j)));
            let refs: Vec<&Job> = jobs.iter().collect();
            let mut pg = Db::Pg(&mut second);
            pg.simple("BEGIN").await.expect("begin");
            let out = accept_all(&mut pg, &refs).await.expect("accept");
            pg.simple("COMMIT").await.expect("commit");
            out.iter()
                .map(|o| accepted(o).to_string())
                .collect::<Vec<_>>()
        });
        // Long enough for the second writer to reach the identity insert and wait there.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        first.simple("COMMIT").await.expect("commit");
        let got = behind.await.expect("second writer");
        assert_eq!(got[0], winner);
        assert_ne!(got[1], winner);
        db.assert_counts(&[
            ("SELECT COUNT(*) FROM contacts", 2),
            ("SELECT COUNT(*) FROM identities", 2),
            ("SELECT COUNT(*) FROM conversations", 2),
            ("SELECT COUNT(*) FROM messages", 3),
            ("SELECT COUNT(*) FROM outbox", 3),
        ])
        .await;
        db.drop_db().await;
    }
}
