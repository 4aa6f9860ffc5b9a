//! Conversations: explicit creation, reads, timeline, closing, and the idle sweeper.

use super::db::Db;
use super::{json_col, Store, StoreError};
use crate::domain::ids::{self, IdKind};
use crate::domain::{now_ms, rfc3339};
use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};
use utoipa::ToSchema;

/// A conversation as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationView {
    pub id: String,
    /// `open`, `inactive` or `closed`.
    pub state: String,
    pub contact_id: Option<String>,
    /// The contact with its identities.
    #[schema(value_type = Option<Object>)]
    pub contact: Option<serde_json::Value>,
    /// Channels used so far.
    pub channels: Vec<String>,
    /// The channel the customer was last reached on or wrote from: the channel of the latest
    /// successful attempt (after a fallback, the channel that worked) or inbound message.
    pub active_channel: Option<String>,
    pub previous_conversation_id: Option<String>,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    pub created_at: String,
    pub last_activity_at: String,
    pub closed_at: Option<String>,
}

/// One entry of a timeline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TimelineEntry {
    /// `message` or `call`.
    #[serde(rename = "type")]
    pub kind: String,
    pub id: String,
    pub direction: String,
    pub channel: String,
    pub from: Option<String>,
    pub to: String,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub status: String,
    #[schema(value_type = Option<Object>)]
    pub threading: Option<serde_json::Value>,
    pub created_at: String,
}

pub enum CreateOutcome {
    Created(Box<ConversationView>),
    UnknownContact,
}

const COLS: &str = "id, state, contact_id, previous_conversation_id, metadata, created_at, last_activity_at, closed_at";

fn view(r: &AnyRow) -> Result<ConversationView, sqlx::Error> {
    Ok(ConversationView {
        id: r.try_get("id")?,
        state: r.try_get("state")?,
        contact_id: r.try_get("contact_id")?,
        contact: None,
        channels: Vec::new(),
        active_channel: None,
        previous_conversation_id: r.try_get("previous_conversation_id")?,
        metadata: json_col(r, "metadata"),
        created_at: rfc3339(r.try_get("created_at")?),
        last_activity_at: rfc3339(r.try_get("last_activity_at")?),
        closed_at: r.try_get::<Option<i64>, _>("closed_at")?.map(rfc3339),
    })
}

impl Store {
    /// Opens a conversation explicitly (not bound to the contact's default thread, so an app
    /// can run several topics with one customer).
    pub async fn create_conversation(
        &self,
        tenant_id: &str,
        contact_id: &str,
        metadata: Option<&serde_json::Value>,
    ) -> Result<CreateOutcome, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let found = sqlx::query("SELECT id FROM contacts WHERE id = $1 AND tenant_id = $2")
            .bind(contact_id)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
        if found.is_none() {
            return Ok(CreateOutcome::UnknownContact);
        }
        let id = ids::new_id(IdKind::Conversation);
        let now = now_ms();
        sqlx::query(
            "INSERT INTO conversations (id, tenant_id, contact_id, state, metadata, created_at, last_activity_at) VALUES ($1, $2, $3, 'open', $4, $5, $6)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(contact_id)
        .bind(metadata.map(|m| m.to_string()))
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        crate::threading::conversation_created(&mut Db::Any(&mut tx), tenant_id, &id, now).await?;
        tx.commit().await?;
        drop(conn);
        match self.conversation(tenant_id, &id).await? {
            Some(v) => Ok(CreateOutcome::Created(Box::new(v))),
            None => Err(StoreError::Corrupt(
                "conversation vanished after insert".into(),
            )),
        }
    }

    /// One conversation with its contact and channels.
    pub async fn conversation(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<ConversationView>, StoreError> {
        let sql = format!("SELECT {COLS} FROM conversations WHERE id = $1 AND tenant_id = $2");
        let Some(row) = sqlx::query(&sql)
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await?
        else {
            return Ok(None);
        };
        let mut v = view(&row)?;
        let rows = sqlx::query(
            "SELECT channel FROM messages WHERE conversation_id = $1
             UNION SELECT a.channel FROM attempts a JOIN messages m ON m.id = a.message_id WHERE m.conversation_id = $2 AND a.outcome = 'queued'",
        )
        .bind(id)
        .bind(id)
        .fetch_all(self.reader())
        .await?;
        v.channels = rows
            .iter()
            .filter_map(|r| r.try_get::<String, _>("channel").ok())
            .collect();
        let active = sqlx::query(
            "SELECT channel FROM (
                SELECT channel, created_at AS t FROM messages WHERE conversation_id = $1 AND direction = 'inbound'
                UNION ALL
                SELECT a.channel, a.started_at AS t FROM attempts a JOIN messages m ON m.id = a.message_id WHERE m.conversation_id = $2 AND a.outcome = 'queued'
             ) x ORDER BY t DESC LIMIT 1",
        )
        .bind(id)
        .bind(id)
        .fetch_optional(self.reader())
        .await?;
        v.active_channel = active.map(|r| r.try_get("channel")).transpose()?;
        v.channels.sort();
        if let Some(c) = &v.contact_id {
            v.contact = self
                .contact(tenant_id, c)
                .await?
                .and_then(|c| serde_json::to_value(c).ok());
        }
        Ok(Some(v))
    }

    /// Conversations, newest first.
    pub async fn conversations(
        &self,
        tenant_id: &str,
        contact_id: Option<&str>,
        state: Option<&str>,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<ConversationView>, Option<String>), StoreError> {
        let sql = format!(
            "SELECT {COLS} FROM conversations WHERE tenant_id = $1 AND ($2 = '' OR contact_id = $3) AND ($4 = '' OR state = $5) AND ($6 = '' OR id < $7)
             ORDER BY id DESC LIMIT {}",
            limit + 1
        );
        let c = contact_id.unwrap_or_default();
        let s = state.unwrap_or_default();
        let k = cursor.unwrap_or_default();
        let rows = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(c)
            .bind(c)
            .bind(s)
            .bind(s)
            .bind(k)
            .bind(k)
            .fetch_all(self.reader())
            .await?;
        let mut out = Vec::new();
        for r in rows.iter().take(usize::try_from(limit).unwrap_or(50)) {
            out.push(view(r)?);
        }
        let next = if rows.len() > out.len() {
            out.last().map(|v| v.id.clone())
        } else {
            None
        };
        Ok((out, next))
    }

    /// Every message and call of a conversation, oldest first.
    pub async fn timeline(
        &self,
        tenant_id: &str,
        id: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<Option<(Vec<TimelineEntry>, Option<String>)>, StoreError> {
        let exists = sqlx::query("SELECT id FROM conversations WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(self.reader())
            .await?;
        if exists.is_none() {
            return Ok(None);
        }
        let sql = format!(
            "SELECT id, direction, channel, from_addr, to_addr, body, subject, status, threading, metadata, created_at FROM messages
             WHERE conversation_id = $1 AND tenant_id = $2 AND ($3 = '' OR id > $4) ORDER BY id LIMIT {}",
            limit + 1
        );
        let k = cursor.unwrap_or_default();
        let rows = sqlx::query(&sql)
            .bind(id)
            .bind(tenant_id)
            .bind(k)
            .bind(k)
            .fetch_all(self.reader())
            .await?;
        let mut out = Vec::new();
        for r in rows.iter().take(usize::try_from(limit).unwrap_or(50)) {
            let meta: Option<serde_json::Value> = json_col(r, "metadata");
            let is_call = meta
                .as_ref()
                .and_then(|m| m.get("kind"))
                .and_then(|k| k.as_str())
                == Some("call");
            out.push(TimelineEntry {
                kind: if is_call { "call" } else { "message" }.into(),
                id: r.try_get("id")?,
                direction: r.try_get("direction")?,
                channel: r.try_get("channel")?,
                from: r.try_get("from_addr")?,
                to: r.try_get("to_addr")?,
                body: r.try_get("body")?,
                subject: r.try_get("subject")?,
                status: r.try_get("status")?,
                threading: json_col(r, "threading"),
                created_at: rfc3339(r.try_get("created_at")?),
            });
        }
        let next = if rows.len() > out.len() {
            out.last().map(|v| v.id.clone())
        } else {
            None
        };
        Ok(Some((out, next)))
    }

    /// Closes a conversation; a later reply starts a new, linked one. `false`: not found.
    pub async fn close_conversation(&self, tenant_id: &str, id: &str) -> Result<bool, StoreError> {
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let row = sqlx::query("SELECT state FROM conversations WHERE id = $1 AND tenant_id = $2")
            .bind(id)
            .bind(tenant_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else { return Ok(false) };
        let state: String = row.try_get("state")?;
        if state != "closed" {
            close_in(&mut tx, tenant_id, id, now_ms()).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Moves idle conversations to inactive and closes stale ones. Returns how many changed.
    pub async fn sweep_conversations(
        &self,
        inactive_after_ms: i64,
        close_after_ms: i64,
    ) -> Result<u64, StoreError> {
        let now = now_ms();
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let n = sqlx::query("UPDATE conversations SET state = 'inactive' WHERE state = 'open' AND last_activity_at < $1")
            .bind(now - inactive_after_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        let stale = sqlx::query("SELECT id, tenant_id FROM conversations WHERE state IN ('open', 'inactive') AND last_activity_at < $1 LIMIT 1000")
            .bind(now - close_after_ms)
            .fetch_all(&mut *tx)
            .await?;
        for r in &stale {
            let id: String = r.try_get("id")?;
            let tenant: String = r.try_get("tenant_id")?;
            close_in(&mut tx, &tenant, &id, now).await?;
        }
        tx.commit().await?;
        Ok(n + stale.len() as u64)
    }
}

/// Deletes up to `$2` applied webhook events with ids below `$1` (the floor id of the cutoff).
pub(crate) const PRUNE_EVENTS: &str = "DELETE FROM webhook_events WHERE id IN (SELECT id FROM webhook_events WHERE id < $1 AND processed = 1 LIMIT $2)";

/// Where [`Store::prune`] cuts a table: below an id, or before a time.
enum Cutoff {
    Id(String),
    Ms(i64),
}

impl Store {
    /// Deletes applied webhook events received before `events_before` and finished
    /// app-webhook deliveries created before `deliveries_before` (ms; `None` keeps them), in
    /// chunks so the writing connection is never held for long. Returns the rows deleted.
    pub async fn prune(
        &self,
        events_before: Option<i64>,
        deliveries_before: Option<i64>,
    ) -> Result<u64, StoreError> {
        const CHUNK: i64 = 5000;
        let mut deleted = 0;
        // Webhook events are found by id (made on arrival, ordered by time): no index on
        // `received_at` to keep up at every receipt.
        let jobs = [
            (
                events_before.map(|t| Cutoff::Id(ids::floor_id(IdKind::Event, t))),
                PRUNE_EVENTS,
            ),
            (
                deliveries_before.map(Cutoff::Ms),
                "DELETE FROM app_webhook_deliveries WHERE id IN (SELECT id FROM app_webhook_deliveries WHERE status <> 'pending' AND created_at < $1 LIMIT $2)",
            ),
        ];
        for (before, sql) in jobs {
            let Some(before) = before else { continue };
            // Bounded: at most 20 chunks per sweep; the next sweep takes the rest.
            for _ in 0..20 {
                let mut conn = self.write_conn().await?;
                let q = sqlx::query(sql);
                let q = match &before {
                    Cutoff::Id(id) => q.bind(id.clone()),
                    Cutoff::Ms(t) => q.bind(*t),
                };
                let n = q.bind(CHUNK).execute(&mut *conn).await?.rows_affected();
                deleted += n;
                if n < u64::try_from(CHUNK).unwrap_or(0) {
                    break;
                }
            }
        }
        Ok(deleted)
    }

    /// Ends undelivered messages whose `valid_until` has passed as `expired`.
    pub async fn expire_messages(&self) -> Result<Vec<super::StatusChange>, StoreError> {
        let now = now_ms();
        let mut conn = self.write_conn().await?;
        let mut tx = conn.begin().await?;
        let rows = sqlx::query(
            "SELECT id FROM messages WHERE valid_until IS NOT NULL AND valid_until < $1 AND status IN ('accepted', 'queued', 'sending', 'sent') LIMIT 1000",
        )
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let mut changes = Vec::new();
        for r in rows {
            let id: String = r.try_get("id")?;
            let input = super::status::StatusInput {
                status: weft_provider::DeliveryStatus::Expired,
                raw_status: None,
                connection_id: None,
                provider_message_id: None,
                error: Some(super::status::ErrorFields {
                    reason: "expired",
                    code: None,
                    detail: Some("valid_until passed before delivery"),
                }),
                at: now,
                dedupe_key: None,
            };
            changes.extend(super::status::apply(&mut Db::Any(&mut tx), &id, &input).await?);
            super::delivery::delete_outbox(&mut Db::Any(&mut tx), &id).await?;
        }
        tx.commit().await?;
        Ok(changes)
    }
}

async fn close_in(
    conn: &mut sqlx::AnyConnection,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE conversations SET state = 'closed', closed_at = $1, binding_key = NULL WHERE id = $2")
        .bind(now)
        .bind(id)
        .execute(&mut *conn)
        .await?;
    let data = || serde_json::json!({ "id": id, "state": "closed", "closed_at": rfc3339(now) });
    crate::events::app_event(
        &mut Db::Any(&mut *conn),
        tenant_id,
        "conversation.closed",
        data,
        now,
    )
    .await
}
