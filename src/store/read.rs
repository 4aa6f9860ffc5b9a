//! Reads, always scoped to a tenant.

use super::db::Db;
use super::{json_col, Store, StoreError};
use crate::domain::message::{AttemptView, MessageError, MessageView, StatusEntry};
use crate::domain::rfc3339;
use sqlx::any::AnyRow;
use sqlx::Row;

/// Filters of `GET /v1/messages`.
#[derive(Debug, Default, Clone)]
pub struct ListFilter {
    pub conversation_id: Option<String>,
    pub status: Option<String>,
    /// Only messages created after this time (Unix ms).
    pub after_ms: Option<i64>,
    /// Keyset cursor: the last id of the previous page.
    pub cursor: Option<String>,
    pub limit: i64,
}

#[derive(Debug, Default, Clone, Copy)]
pub struct OutboxStats {
    pub depth: i64,
    /// How long the longest-waiting due row has been due. Rows not due yet (a `send_at`
    /// ahead, a retry's back-off, a throttled connection's slot) do not count: a message
    /// scheduled for tomorrow is not a sign that the outbox is stuck.
    pub oldest_age_seconds: f64,
    /// Receipts kept but not matched to any message.
    pub parked_events: i64,
}

/// Depth, and the earliest `available_at` among rows due by `$1`: one bounded index search
/// per priority (`outbox_due_priority`; the priorities the claim takes,
/// [`super::claim::PRIORITIES`]), not a walk over rows scheduled for later.
const OUTBOX_STATS: &str = "SELECT COUNT(*) AS n, (SELECT MIN(due.a) FROM (
       SELECT MIN(available_at) AS a FROM outbox WHERE priority = 0 AND available_at <= $1
       UNION ALL
       SELECT MIN(available_at) AS a FROM outbox WHERE priority = 1 AND available_at <= $1
     ) due) AS oldest FROM outbox";

const MESSAGE_COLS: &str = "id, conversation_id, direction, channel, to_addr, from_addr, body, subject, template, metadata, callback_url, encoding, segments, status, error_reason, error_code, error_detail, threading, created_at, updated_at";

fn message_view(r: &AnyRow) -> Result<MessageView, sqlx::Error> {
    let reason: Option<String> = r.try_get("error_reason")?;
    Ok(MessageView {
        id: r.try_get("id")?,
        conversation_id: r.try_get("conversation_id")?,
        direction: r.try_get("direction")?,
        channel: r.try_get("channel")?,
        to: r.try_get("to_addr")?,
        from: r.try_get("from_addr")?,
        body: r.try_get("body")?,
        subject: r.try_get("subject")?,
        template: json_col(r, "template"),
        status: r.try_get("status")?,
        encoding: r.try_get("encoding")?,
        segments: r.try_get("segments")?,
        metadata: json_col(r, "metadata"),
        callback_url: r.try_get("callback_url")?,
        error: match reason {
            Some(reason) => Some(MessageError {
                reason,
                code: r.try_get("error_code")?,
                detail: r.try_get("error_detail")?,
            }),
            None => None,
        },
        threading: json_col(r, "threading"),
        created_at: rfc3339(r.try_get("created_at")?),
        updated_at: rfc3339(r.try_get("updated_at")?),
        status_history: None,
        attempts: None,
    })
}

/// A message's status history, oldest first (`$1`: the message id).
pub(crate) const HISTORY: &str = "SELECT status, raw_status, applied, connection_id, provider_message_id, error_code, occurred_at FROM status_history WHERE message_id = $1 ORDER BY id";

impl Store {
    /// The tenant owning an API key hash, if the key is live.
    pub async fn tenant_for_key(&self, key_hash: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT tenant_id FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
        )
        .bind(key_hash)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| r.try_get("tenant_id")).transpose()?)
    }

    /// A tenant's name by id.
    pub async fn tenant_name(&self, tenant_id: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT name FROM tenants WHERE id = $1")
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await?;
        Ok(row.map(|r| r.try_get("name")).transpose()?)
    }

    /// One message with its history and attempts.
    pub async fn message(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<MessageView>, StoreError> {
        let sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE id = $1 AND tenant_id = $2");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let mut view = message_view(&row)?;
        let mut history = vec![StatusEntry {
            status: "accepted".into(),
            raw_status: None,
            applied: true,
            connection: None,
            provider_message_id: None,
            error_code: None,
            at: view.created_at.clone(),
        }];
        let rows = sqlx::query(HISTORY)
            .bind(id)
            .fetch_all(self.reader())
            .await?;
        for r in rows {
            history.push(StatusEntry {
                status: r.try_get("status")?,
                raw_status: r.try_get("raw_status")?,
                applied: r.try_get::<i64, _>("applied")? != 0,
                connection: r.try_get("connection_id")?,
                provider_message_id: r.try_get("provider_message_id")?,
                error_code: r.try_get("error_code")?,
                at: rfc3339(r.try_get("occurred_at")?),
            });
        }
        if view.direction == "inbound" {
            history.truncate(0);
            history.push(StatusEntry {
                status: "received".into(),
                raw_status: None,
                applied: true,
                connection: None,
                provider_message_id: None,
                error_code: None,
                at: view.created_at.clone(),
            });
        }
        view.status_history = Some(history);
        let rows = sqlx::query(
            "SELECT id, seq, channel, provider, connection_id, sender, provider_ids, outcome, error_code, error_detail, started_at, finished_at FROM attempts WHERE message_id = $1 ORDER BY seq, started_at",
        )
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        let mut attempts = Vec::with_capacity(rows.len());
        for r in rows {
            attempts.push(AttemptView {
                id: r.try_get("id")?,
                seq: r.try_get("seq")?,
                channel: r.try_get("channel")?,
                provider: r.try_get("provider")?,
                connection: r.try_get("connection_id")?,
                sender: r.try_get("sender")?,
                provider_ids: json_col(&r, "provider_ids").unwrap_or_default(),
                outcome: r.try_get("outcome")?,
                error_code: r.try_get("error_code")?,
                error_detail: r.try_get("error_detail")?,
                started_at: rfc3339(r.try_get("started_at")?),
                finished_at: r.try_get::<Option<i64>, _>("finished_at")?.map(rfc3339),
            });
        }
        view.attempts = Some(attempts);
        Ok(Some(view))
    }

    /// A page of messages, newest first, and the cursor of the next page.
    pub async fn messages(
        &self,
        tenant_id: &str,
        f: &ListFilter,
    ) -> Result<(Vec<MessageView>, Option<String>), StoreError> {
        let mut sql = format!("SELECT {MESSAGE_COLS} FROM messages WHERE tenant_id = $1");
        let mut binds: Vec<String> = Vec::new();
        let mut n = 1;
        let mut push = |sql: &mut String, clause: &str, v: String| {
            n += 1;
            sql.push_str(&clause.replace("$?", &format!("${n}")));
            binds.push(v);
        };
        if let Some(c) = &f.conversation_id {
            push(&mut sql, " AND conversation_id = $?", c.clone());
        }
        if let Some(s) = &f.status {
            push(&mut sql, " AND status = $?", s.clone());
        }
        if let Some(c) = &f.cursor {
            push(&mut sql, " AND id < $?", c.clone());
        }
        let after = f.after_ms;
        if after.is_some() {
            sql.push_str(&format!(" AND created_at > ${}", n + 1));
        }
        sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", f.limit + 1));
        let mut q = sqlx::query(&sql).bind(tenant_id);
        for b in &binds {
            q = q.bind(b);
        }
        if let Some(a) = after {
            q = q.bind(a);
        }
        let rows = q.fetch_all(self.reader()).await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows.iter().take(usize::try_from(f.limit).unwrap_or(50)) {
            out.push(message_view(r)?);
        }
        let next = if rows.len() > out.len() {
            out.last().map(|m| m.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// A live identity of the given scheme (`mailto:`) of the contact owning `identity`.
    pub async fn identity_of_kind(
        &self,
        tenant_id: &str,
        identity: &str,
        scheme: &str,
    ) -> Result<Option<String>, StoreError> {
        let row = sqlx::query(
            "SELECT b.address FROM identities a JOIN identities b ON b.contact_id = a.contact_id
             WHERE a.tenant_id = $1 AND a.address = $2 AND a.valid_to IS NULL AND b.valid_to IS NULL AND b.address LIKE $3
             ORDER BY b.created_at DESC LIMIT 1",
        )
        .bind(tenant_id)
        .bind(identity)
        .bind(format!("{scheme}%"))
        .fetch_optional(self.reader())
        .await?;
        Ok(row.map(|r| r.try_get("address")).transpose()?)
    }

    /// Whether the customer wrote on WhatsApp within the last 24 hours (the window in which
    /// free-form messages are allowed).
    pub async fn whatsapp_window_open(
        &self,
        tenant_id: &str,
        customer: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM messages WHERE tenant_id = $1 AND customer_identity = $2 AND direction = 'inbound' AND channel = 'whatsapp' AND created_at > $3 LIMIT 1",
        )
        .bind(tenant_id)
        .bind(customer)
        .bind(now - 24 * 3600 * 1000)
        .fetch_optional(self.reader())
        .await?;
        Ok(row.is_some())
    }

    /// Whether the consent ledger blocks this send.
    pub async fn opted_out(
        &self,
        tenant_id: &str,
        customer: &str,
        channel: weft_provider::Channel,
        sender: Option<&str>,
    ) -> Result<bool, StoreError> {
        let mut conn = self.reader().acquire().await?;
        Ok(crate::policy::consent::opted_out(
            &mut Db::Any(&mut conn),
            tenant_id,
            customer,
            channel,
            sender,
        )
        .await?)
    }

    /// Whether the ledger holds any opt-out.
    pub async fn any_opt_out(&self) -> Result<bool, StoreError> {
        let mut conn = self.reader().acquire().await?;
        Ok(crate::policy::consent::any_opt_out(&mut Db::Any(&mut conn)).await?)
    }

    /// The consent ledger entries of a contact.
    pub async fn consent_of(
        &self,
        tenant_id: &str,
        contact_id: &str,
    ) -> Result<Vec<crate::policy::consent::ConsentEntry>, StoreError> {
        let mut conn = self.reader().acquire().await?;
        Ok(crate::policy::consent::entries(&mut Db::Any(&mut conn), tenant_id, contact_id).await?)
    }

    /// Outbox depth and the age of its oldest due row.
    pub async fn outbox_stats(&self, now: i64) -> Result<OutboxStats, StoreError> {
        let r = sqlx::query(OUTBOX_STATS)
            .bind(now)
            .fetch_one(self.reader())
            .await?;
        let depth: i64 = r.try_get("n")?;
        let oldest: Option<i64> = r.try_get("oldest")?;
        Ok(OutboxStats {
            depth,
            oldest_age_seconds: oldest
                .map(|o| ((now - o).max(0)) as f64 / 1000.0)
                .unwrap_or(0.0),
            parked_events: sqlx::query(
                "SELECT COUNT(*) AS n FROM webhook_events WHERE processed = 0",
            )
            .fetch_one(self.reader())
            .await?
            .try_get("n")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::OUTBOX_STATS;

    const NOW: i64 = 10_000_000;

    /// A due row (10 s late), a due bulk row (5 s late), and a row created long ago but
    /// scheduled an hour ahead: three deep, the oldest due since `NOW - 10 s`.
    const ROWS: &str = "INSERT INTO outbox (message_id, available_at, tries, lease_token, lease_until, created_at, priority) VALUES
        ('msg_due', 9990000, 0, NULL, 0, 9990000, 0),
        ('msg_bulk', 9995000, 0, NULL, 0, 9995000, 1),
        ('msg_later', 13600000, 0, NULL, 0, 1000, 0)";

    #[test]
    fn scheduled_rows_count_in_depth_but_not_in_age_on_sqlite() {
        let conn = crate::store::migrated_in_memory();
        conn.execute_batch(ROWS).expect("rows");
        let (n, oldest): (i64, Option<i64>) = conn
            .query_row(OUTBOX_STATS, [NOW], |r| Ok((r.get(0)?, r.get(1)?)))
            .expect("stats");
        assert_eq!((n, oldest), (3, Some(9_990_000)));
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {OUTBOX_STATS}"))
            .expect("explain")
            .query_map([NOW], |r| r.get::<_, String>(3))
            .expect("plan")
            .filter_map(Result::ok)
            .collect();
        let searches = plan
            .iter()
            .filter(|p| p.contains("outbox_due_priority (priority=? AND available_at<?)"))
            .count();
        assert_eq!(searches, 2, "{plan:?}");
        conn.execute_batch("DELETE FROM outbox WHERE available_at <= 10000000")
            .expect("delete");
        let oldest: Option<i64> = conn
            .query_row(OUTBOX_STATS, [NOW], |r| r.get(1))
            .expect("stats");
        assert_eq!(oldest, None, "nothing due");
    }

    #[tokio::test]
    async fn scheduled_rows_count_in_depth_but_not_in_age_on_postgres() {
        use sqlx::Row;
        let db = crate::store::pg::TestDb::new().await;
        sqlx::raw_sql(ROWS).execute(&db.pool).await.expect("rows");
        let r = sqlx::query(OUTBOX_STATS)
            .bind(NOW)
            .fetch_one(&db.pool)
            .await
            .expect("stats");
        let got: (i64, Option<i64>) = (r.get("n"), r.get("oldest"));
        assert_eq!(got, (3, Some(9_990_000)));
        db.drop_db().await;
    }
}
