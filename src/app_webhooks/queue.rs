//! The delivery queue: rows written by `enqueue`, claimed by the worker under a lease,
//! and the results of each attempt.

use super::db::page;
use super::views::{AttemptEntry, DeliveryView};
use crate::domain::rfc3339;
use crate::store::db::{query, Db};
use crate::store::{Backend, Store};
use sqlx::any::AnyRow;
use sqlx::{Connection, Row};

/// A claimed delivery with what it takes to send it.
pub struct Claimed {
    pub id: String,
    pub event_id: String,
    pub payload: String,
    pub attempts: i64,
    pub log: Vec<AttemptEntry>,
    pub url: String,
    pub secret: String,
    pub endpoint_live: bool,
}

/// What became of a delivery attempt.
pub struct Recorded {
    pub id: String,
    /// The lease token the delivery was claimed with.
    pub token: String,
    pub status: &'static str,
    pub attempts: i64,
    pub log: Vec<AttemptEntry>,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub next_attempt_at: i64,
    pub delivered_at: Option<i64>,
}

const DELIVERY_COLS: &str = "id, endpoint_id, event_id, event_type, status, attempts, attempt_log, last_status_code, last_error, next_attempt_at, created_at, delivered_at, payload";

fn delivery_view(r: &AnyRow) -> Result<DeliveryView, sqlx::Error> {
    let status: String = r.try_get("status")?;
    let log: Option<String> = r.try_get("attempt_log")?;
    let payload: String = r.try_get("payload")?;
    Ok(DeliveryView {
        id: r.try_get("id")?,
        endpoint_id: r.try_get("endpoint_id")?,
        event_id: r.try_get("event_id")?,
        event_type: r.try_get("event_type")?,
        attempts: r.try_get("attempts")?,
        last_status_code: r.try_get("last_status_code")?,
        last_error: r.try_get("last_error")?,
        next_attempt_at: (status == "pending")
            .then(|| r.try_get("next_attempt_at").map(rfc3339))
            .transpose()?,
        created_at: rfc3339(r.try_get("created_at")?),
        delivered_at: r.try_get::<Option<i64>, _>("delivered_at")?.map(rfc3339),
        attempt_history: log
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default(),
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status,
    })
}

/// A page of an endpoint's deliveries, newest first.
pub async fn deliveries(
    store: &Store,
    endpoint_id: &str,
    status: Option<&str>,
    cursor: Option<&str>,
    limit: i64,
) -> Result<(Vec<DeliveryView>, Option<String>), sqlx::Error> {
    let mut sql =
        format!("SELECT {DELIVERY_COLS} FROM app_webhook_deliveries WHERE endpoint_id = $1");
    let mut n = 1;
    if status.is_some() {
        n += 1;
        sql.push_str(&format!(" AND status = ${n}"));
    }
    if cursor.is_some() {
        n += 1;
        sql.push_str(&format!(" AND id < ${n}"));
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT {}", limit + 1));
    let mut q = sqlx::query(&sql).bind(endpoint_id);
    for v in [status, cursor].into_iter().flatten() {
        q = q.bind(v);
    }
    let rows = q.fetch_all(store.reader()).await?;
    page(
        rows.iter().map(delivery_view).collect::<Result<_, _>>()?,
        limit,
        |d| d.id.clone(),
    )
}

/// Where a delivery goes: a subscribed endpoint, or a message's own `callback_url`.
pub enum Target<'a> {
    Endpoint(&'a str),
    Callback(&'a super::Callback<'a>),
}

/// A new delivery row, due now.
pub struct NewDelivery<'a> {
    pub target: Target<'a>,
    pub tenant_id: &'a str,
    pub event_id: &'a str,
    pub event_type: &'a str,
    pub payload: &'a str,
    pub now: i64,
}

pub async fn insert_delivery(conn: &mut Db<'_>, d: &NewDelivery<'_>) -> Result<(), sqlx::Error> {
    let (endpoint, callback) = match &d.target {
        Target::Endpoint(e) => (Some(*e), None),
        Target::Callback(c) => (None, Some(*c)),
    };
    query("INSERT INTO app_webhook_deliveries (id, endpoint_id, tenant_id, event_id, event_type, payload, attempts, next_attempt_at, lease_until, status, created_at, url, secret, message_id) VALUES ($1, $2, $3, $4, $5, $6, 0, $7, 0, 'pending', $8, $9, $10, $11)")
        .bind(format!("dlv_{}", ulid::Ulid::new()))
        .bind(endpoint)
        .bind(d.tenant_id)
        .bind(d.event_id)
        .bind(d.event_type)
        .bind(d.payload)
        .bind(d.now)
        .bind(d.now)
        .bind(callback.map(|c| c.url))
        .bind(callback.map(|c| c.secret))
        .bind(callback.map(|c| c.message_id))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Leases up to `limit` due deliveries to `token` until `lease_until`.
pub async fn claim(
    store: &Store,
    token: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<Claimed>, sqlx::Error> {
    let lock = match store.backend() {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    };
    // Most polls find nothing: ask a reader first and leave the writing connection (SQLite
    // has one, shared with the group-commit writer) alone.
    let due = sqlx::query("SELECT id FROM app_webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 AND lease_until < $2 LIMIT 1")
        .bind(now)
        .bind(now)
        .fetch_optional(store.reader())
        .await?;
    if due.is_none() {
        return Ok(Vec::new());
    }
    let mut conn = store.side_write_conn().await?;
    let mut tx = conn.begin().await?;
    let sql = format!(
        "UPDATE app_webhook_deliveries SET lease_token = $1, lease_until = $2 WHERE id IN (
            SELECT id FROM app_webhook_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 AND lease_until < $4
            ORDER BY next_attempt_at LIMIT $5{lock}
         ) RETURNING id"
    );
    let ids: Vec<String> = sqlx::query(&sql)
        .bind(token)
        .bind(lease_until)
        .bind(now)
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(|r| r.try_get("id"))
        .collect::<Result<_, _>>()?;
    if ids.is_empty() {
        tx.commit().await?;
        return Ok(Vec::new());
    }
    let marks = (1..=ids.len())
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT d.id, d.event_id, d.payload, d.attempts, d.attempt_log,
                COALESCE(d.url, e.url) AS url, COALESCE(d.secret, e.secret) AS secret,
                CASE WHEN d.url IS NOT NULL OR e.deleted_at IS NULL THEN 1 ELSE 0 END AS live
         FROM app_webhook_deliveries d LEFT JOIN webhook_endpoints e ON e.id = d.endpoint_id WHERE d.id IN ({marks})"
    );
    let mut q = sqlx::query(&sql);
    for id in &ids {
        q = q.bind(id);
    }
    let rows = q.fetch_all(&mut *tx).await?;
    tx.commit().await?;
    let mut out = Vec::with_capacity(rows.len());
    for r in rows {
        let log: Option<String> = r.try_get("attempt_log")?;
        out.push(Claimed {
            id: r.try_get("id")?,
            event_id: r.try_get("event_id")?,
            payload: r.try_get("payload")?,
            attempts: r.try_get("attempts")?,
            log: log
                .and_then(|l| serde_json::from_str(&l).ok())
                .unwrap_or_default(),
            url: r.try_get("url")?,
            secret: r.try_get("secret")?,
            endpoint_live: r.try_get::<i64, _>("live")? != 0,
        });
    }
    Ok(out)
}

/// Records attempt results in one transaction; a row whose lease was taken over is left alone.
pub async fn record(store: &Store, results: &[Recorded]) -> Result<(), sqlx::Error> {
    let mut conn = store.side_write_conn().await?;
    let mut tx = conn.begin().await?;
    for r in results {
        let log = serde_json::to_string(&r.log).unwrap_or_else(|_| "[]".into());
        sqlx::query("UPDATE app_webhook_deliveries SET status = $1, attempts = $2, attempt_log = $3, last_status_code = $4, last_error = $5, next_attempt_at = $6, delivered_at = $7, lease_token = NULL, lease_until = 0 WHERE id = $8 AND lease_token = $9")
            .bind(r.status)
            .bind(r.attempts)
            .bind(log)
            .bind(r.status_code)
            .bind(&r.error)
            .bind(r.next_attempt_at)
            .bind(r.delivered_at)
            .bind(&r.id)
            .bind(&r.token)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(())
}
