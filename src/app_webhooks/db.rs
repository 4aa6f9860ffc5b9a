//! The SQL of endpoints (the delivery queue is in `queue.rs`). Plain `$n` placeholders
//! run on both engines through sqlx `Any`.

use super::views::EndpointView;
use crate::domain::rfc3339;
use crate::store::db::{query, Db};
use crate::store::Store;
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};
use std::collections::HashSet;

fn endpoint_view(r: &AnyRow) -> Result<EndpointView, sqlx::Error> {
    let events: String = r.try_get("events")?;
    Ok(EndpointView {
        id: r.try_get("id")?,
        url: r.try_get("url")?,
        events: serde_json::from_str(&events).unwrap_or_default(),
        secret: None,
        created_at: rfc3339(r.try_get("created_at")?),
    })
}

/// How a create call ended.
pub enum Created {
    /// Stored; the body is the JSON answer (with the secret).
    New(String),
    /// The Idempotency-Key was seen with the same request: the original answer.
    Replay(String),
    /// The Idempotency-Key was seen with a different request.
    Conflict,
}

/// Idempotency keys of this resource live beside the messages' under their own prefix.
const IDEM_PREFIX: &str = "webhook-endpoints:";

/// Stores a new endpoint (and its idempotency key) in one transaction. `answer` is the
/// JSON body of the 201, remembered for replays.
pub async fn create_endpoint(
    store: &Store,
    tenant_id: &str,
    view: &EndpointView,
    secret: &str,
    answer: &str,
    idempotency: Option<(&str, &str)>,
    now: i64,
) -> Result<Created, sqlx::Error> {
    // Two concurrent first uses of one key on PostgreSQL: the loser's insert fails on the
    // key's primary key and its retry finds the winner's answer.
    let mut tries = 0;
    loop {
        tries += 1;
        match try_create(store, tenant_id, view, secret, answer, idempotency, now).await {
            Err(sqlx::Error::Database(_)) if tries < 2 && idempotency.is_some() => continue,
            other => return other,
        }
    }
}

async fn try_create(
    store: &Store,
    tenant_id: &str,
    view: &EndpointView,
    secret: &str,
    answer: &str,
    idempotency: Option<(&str, &str)>,
    now: i64,
) -> Result<Created, sqlx::Error> {
    let mut conn = store.side_write_conn().await?;
    let mut tx = conn.begin().await?;
    if let Some((key, hash)) = idempotency {
        let key = format!("{IDEM_PREFIX}{key}");
        let row = sqlx::query("SELECT request_hash, response_body, created_at FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2")
            .bind(tenant_id)
            .bind(&key)
            .fetch_optional(&mut *tx)
            .await?;
        if let Some(row) = row {
            let created: i64 = row.try_get("created_at")?;
            if created > now - crate::store::accept::IDEMPOTENCY_TTL_MS {
                let stored: String = row.try_get("request_hash")?;
                let body: String = row.try_get("response_body")?;
                tx.commit().await?;
                return Ok(if stored == hash {
                    Created::Replay(body)
                } else {
                    Created::Conflict
                });
            }
            sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND idem_key = $2")
                .bind(tenant_id)
                .bind(&key)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("INSERT INTO idempotency_keys (tenant_id, idem_key, request_hash, response_status, response_body, created_at) VALUES ($1, $2, $3, 201, $4, $5)")
            .bind(tenant_id)
            .bind(&key)
            .bind(hash)
            .bind(answer)
            .bind(now)
            .execute(&mut *tx)
            .await?;
    }
    let events = serde_json::to_string(&view.events).unwrap_or_else(|_| "[]".into());
    sqlx::query("INSERT INTO webhook_endpoints (id, tenant_id, url, events, secret, created_at) VALUES ($1, $2, $3, $4, $5, $6)")
        .bind(&view.id)
        .bind(tenant_id)
        .bind(&view.url)
        .bind(events)
        .bind(secret)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(Created::New(answer.to_string()))
}

pub async fn endpoint(
    store: &Store,
    tenant_id: &str,
    id: &str,
) -> Result<Option<EndpointView>, sqlx::Error> {
    sqlx::query("SELECT id, url, events, created_at FROM webhook_endpoints WHERE id = $1 AND tenant_id = $2 AND deleted_at IS NULL")
        .bind(id)
        .bind(tenant_id)
        .fetch_optional(store.reader())
        .await?
        .map(|r| endpoint_view(&r))
        .transpose()
}

/// A page of live endpoints, newest first; the cursor is the last id of the previous page.
pub async fn endpoints(
    store: &Store,
    tenant_id: &str,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<EndpointView>, Option<String>), sqlx::Error> {
    let sql = format!(
        "SELECT id, url, events, created_at FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL{} ORDER BY id DESC LIMIT {}",
        if cursor.is_some() { " AND id < $2" } else { "" },
        limit + 1
    );
    let mut q = sqlx::query(&sql).bind(tenant_id);
    if let Some(c) = cursor {
        q = q.bind(c);
    }
    let rows = q.fetch_all(store.reader()).await?;
    page(
        rows.iter().map(endpoint_view).collect::<Result<_, _>>()?,
        limit,
        |e| e.id.clone(),
    )
}

pub(super) fn page<T>(
    mut items: Vec<T>,
    limit: i64,
    id: fn(&T) -> String,
) -> Result<(Vec<T>, Option<String>), sqlx::Error> {
    let limit = usize::try_from(limit).unwrap_or(50);
    if items.len() > limit {
        items.truncate(limit);
        let next = items.last().map(id);
        Ok((items, next))
    } else {
        Ok((items, None))
    }
}

/// Soft-deletes an endpoint and fails its pending deliveries. Answers `None` if there was
/// no such live endpoint, else whether the tenant still has other live endpoints.
pub async fn delete_endpoint(
    store: &Store,
    tenant_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<bool>, sqlx::Error> {
    let mut conn = store.side_write_conn().await?;
    let mut tx = conn.begin().await?;
    let done = sqlx::query("UPDATE webhook_endpoints SET deleted_at = $1 WHERE id = $2 AND tenant_id = $3 AND deleted_at IS NULL")
        .bind(now)
        .bind(id)
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    if done.rows_affected() == 0 {
        return Ok(None);
    }
    sqlx::query("UPDATE app_webhook_deliveries SET status = 'failed', last_error = 'endpoint deleted', lease_token = NULL, lease_until = 0 WHERE endpoint_id = $1 AND status = 'pending'")
        .bind(id)
        .execute(&mut *tx)
        .await?;
    let others = sqlx::query(
        "SELECT id FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL LIMIT 1",
    )
    .bind(tenant_id)
    .fetch_optional(&mut *tx)
    .await?
    .is_some();
    tx.commit().await?;
    Ok(Some(others))
}

/// Tenants with at least one live endpoint.
pub async fn live_tenants(store: &Store) -> Result<HashSet<String>, sqlx::Error> {
    let rows =
        sqlx::query("SELECT DISTINCT tenant_id FROM webhook_endpoints WHERE deleted_at IS NULL")
            .fetch_all(store.reader())
            .await?;
    rows.iter().map(|r| r.try_get("tenant_id")).collect()
}

/// Live endpoints of a tenant: (id, subscribed events).
pub async fn subscribers(
    conn: &mut Db<'_>,
    tenant_id: &str,
) -> Result<Vec<(String, Vec<String>)>, sqlx::Error> {
    let rows = query(
        "SELECT id, events FROM webhook_endpoints WHERE tenant_id = $1 AND deleted_at IS NULL",
    )
    .bind(tenant_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let events: String = r.try_get("events")?;
        out.push((
            r.try_get("id")?,
            serde_json::from_str(&events).unwrap_or_default(),
        ));
    }
    Ok(out)
}
