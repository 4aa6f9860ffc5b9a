//! Applying a status to a message through the one state machine, with history.

use super::db::{query, Db};
use super::script::Script;
use sqlx::any::AnyRow;
use sqlx::Row;
use std::str::FromStr;
use weft_provider::status::Transition;
use weft_provider::DeliveryStatus;

/// A status that reached a message (applied or only recorded).
#[derive(Debug, Clone)]
pub struct StatusChange {
    pub message_id: String,
    pub tenant_id: String,
    pub channel: String,
    pub status: DeliveryStatus,
    /// True when `status` became the message's status.
    pub moved: bool,
    pub created_at: i64,
}

/// What is being applied.
pub struct StatusInput<'a> {
    pub status: DeliveryStatus,
    pub raw_status: Option<&'a str>,
    pub connection_id: Option<&'a str>,
    pub provider_message_id: Option<&'a str>,
    pub error: Option<ErrorFields<'a>>,
    pub at: i64,
    /// A receipt's key, kept on its history row to recognise the provider's retries
    /// ([`super::receipt_keys`]).
    pub dedupe_key: Option<&'a str>,
}

pub struct ErrorFields<'a> {
    pub reason: &'a str,
    pub code: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// The columns of a message the state machine needs.
pub const CURRENT_COLUMNS: &str =
    "status, tenant_id, channel, conversation_id, created_at, callback_url, callback_secret";

/// A message's [`CURRENT_COLUMNS`] (`$1`: its id).
pub static CURRENT_SQL: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT {CURRENT_COLUMNS} FROM messages WHERE id = $1"));

/// [`CURRENT_SQL`] locking the row until the transaction ends (PostgreSQL).
pub static CURRENT_SQL_FOR_UPDATE: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{} FOR UPDATE", CURRENT_SQL.as_str()));

/// The statement reading a message's [`CURRENT_COLUMNS`] before a status is applied: where
/// transactions run concurrently ([`Db::concurrent`]) it locks the row, so that two receipts
/// of one message applied at once cannot both decide from the same old status (the later
/// commit would move a `delivered` message back to `sent`).
pub fn current_sql(conn: &Db<'_>) -> &'static str {
    conn.deciding_read(&CURRENT_SQL, &CURRENT_SQL_FOR_UPDATE)
}

/// Applies `input` to the message; always records history. `None` if there is no such message.
pub async fn apply(
    conn: &mut Db<'_>,
    message_id: &str,
    input: &StatusInput<'_>,
) -> Result<Option<StatusChange>, sqlx::Error> {
    let Some(row) = query(current_sql(conn))
        .bind(message_id)
        .fetch_optional(&mut *conn)
        .await?
    else {
        return Ok(None);
    };
    apply_to(conn, message_id, &row, input).await.map(Some)
}

/// [`apply`] for a message whose [`CURRENT_COLUMNS`] the caller already read (e.g. with the
/// `RETURNING` of an update it made anyway).
pub async fn apply_to(
    conn: &mut Db<'_>,
    message_id: &str,
    row: &AnyRow,
    input: &StatusInput<'_>,
) -> Result<StatusChange, sqlx::Error> {
    let mut script = Script::new();
    let planned = plan(message_id, row, input, &mut script)?;
    script.run(&mut *conn).await?;
    planned.finish(conn).await
}

/// A status change whose writes are in a [`Script`] the caller runs (with statements of its
/// own); after the script ran, [`Planned::finish`] tells app webhooks.
pub struct Planned {
    change: StatusChange,
    event: Option<serde_json::Value>,
    /// The message's own `callback_url` and its signing secret.
    callback: Option<(String, String)>,
    at: i64,
    /// The message's `updated_at` if the status moves.
    updated_at: i64,
}

/// Adds the history row and, if the state machine moves, the message update to `script`.
pub fn plan(
    message_id: &str,
    row: &AnyRow,
    input: &StatusInput<'_>,
    script: &mut Script,
) -> Result<Planned, sqlx::Error> {
    plan_then(message_id, row, input, script, true)
}

/// [`plan`] for a caller that updates the message row anyway: only the history row goes
/// into `script`, and the caller sets `status` and `updated_at` from [`Planned::moved`] in
/// its own `UPDATE` (one statement instead of two). Not for inputs with error fields.
pub fn plan_without_update(
    message_id: &str,
    row: &AnyRow,
    input: &StatusInput<'_>,
    script: &mut Script,
) -> Result<Planned, sqlx::Error> {
    debug_assert!(input.error.is_none(), "error fields need plan's own update");
    plan_then(message_id, row, input, script, false)
}

const INSERT_HISTORY: &str = "INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, error_code, detail, occurred_at, dedupe_key)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

fn plan_then(
    message_id: &str,
    row: &AnyRow,
    input: &StatusInput<'_>,
    script: &mut Script,
    update: bool,
) -> Result<Planned, sqlx::Error> {
    let moved = moves(&row.try_get::<String, _>("status")?, input.status);
    let history = history_args(message_id, input, moved);
    // `at` may be the provider's own time (minute precision, other clocks): `updated_at` is
    // when weft changed the message, so it never goes back before `created_at`.
    let updated_at = crate::domain::now_ms().max(input.at);
    if moved && update {
        let (sql, args) = match &input.error {
            Some(e) if input.status.is_failure() => (
                "UPDATE messages SET status = $1, updated_at = $2, error_reason = $3, error_code = $4, error_detail = $5 WHERE id = $6",
                vec![
                    input.status.as_str().into(),
                    updated_at.into(),
                    e.reason.into(),
                    e.code.into(),
                    e.detail.into(),
                    message_id.into(),
                ],
            ),
            _ => (
                "UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3",
                vec![input.status.as_str().into(), updated_at.into(), message_id.into()],
            ),
        };
        script.add(INSERT_HISTORY, history);
        script.add_joined(sql, args);
    } else {
        script.add(INSERT_HISTORY, history);
    }
    Planned::new(message_id, row, input, moved, updated_at)
}

/// Whether `incoming` moves a message whose status is `current` (the one state machine).
pub fn moves(current: &str, incoming: DeliveryStatus) -> bool {
    let current = DeliveryStatus::from_str(current).unwrap_or(DeliveryStatus::Accepted);
    matches!(current.apply(incoming), Transition::Moved(_))
}

/// [`INSERT_HISTORY`]'s arguments.
fn history_args(message_id: &str, input: &StatusInput<'_>, moved: bool) -> Vec<super::script::Val> {
    let code = input.error.as_ref().and_then(|e| e.code);
    let detail = input.error.as_ref().and_then(|e| e.detail);
    vec![
        message_id.into(),
        input.status.as_str().into(),
        input.raw_status.into(),
        i64::from(moved).into(),
        input.connection_id.into(),
        input.provider_message_id.into(),
        code.into(),
        detail.into(),
        input.at.into(),
        input.dedupe_key.into(),
    ]
}

/// The `message.status_updated` event's `data`.
fn event_data(
    message_id: &str,
    row: &AnyRow,
    input: &StatusInput<'_>,
) -> Result<serde_json::Value, sqlx::Error> {
    let mut data = serde_json::json!({
        "id": message_id,
        "conversation_id": row.try_get::<String, _>("conversation_id")?,
        "channel": row.try_get::<String, _>("channel")?,
        "status": input.status.as_str(),
        "raw_status": input.raw_status,
        "connection": input.connection_id,
        "provider_message_id": input.provider_message_id,
    });
    if let Some(e) = &input.error {
        data["error"] =
            serde_json::json!({ "reason": e.reason, "code": e.code, "detail": e.detail });
    }
    Ok(data)
}

impl Planned {
    /// `input` applied to the message whose [`CURRENT_COLUMNS`] are `row` (`moved`: the state
    /// machine moved it, its `updated_at` then being `updated_at`); the statements are the
    /// caller's.
    pub fn new(
        message_id: &str,
        row: &AnyRow,
        input: &StatusInput<'_>,
        moved: bool,
        updated_at: i64,
    ) -> Result<Planned, sqlx::Error> {
        let tenant_id: String = row.try_get("tenant_id")?;
        let callback = match (
            row.try_get::<Option<String>, _>("callback_url")?,
            row.try_get::<Option<String>, _>("callback_secret")?,
        ) {
            (Some(url), Some(secret)) => Some((url, secret)),
            _ => None,
        };
        // The event is built only if someone can receive it: the message's own callback, or
        // the tenant's app webhook endpoints (~20 allocations per status otherwise).
        let told = callback.is_some() || crate::app_webhooks::may_have_endpoints(&tenant_id);
        let event = if moved && told {
            Some(event_data(message_id, row, input)?)
        } else {
            None
        };
        Ok(Planned {
            change: StatusChange {
                message_id: message_id.to_string(),
                tenant_id,
                channel: row.try_get("channel")?,
                status: input.status,
                moved,
                created_at: row.try_get("created_at")?,
            },
            callback,
            event,
            at: input.at,
            updated_at,
        })
    }

    /// If the status moves: the new status and the message's `updated_at`.
    pub fn moved(&self) -> Option<(DeliveryStatus, i64)> {
        self.change
            .moved
            .then_some((self.change.status, self.updated_at))
    }

    /// Queues the `message.status_updated` app event (if anyone subscribed) and the
    /// message's own status callback, and returns the change. Call after the script ran.
    pub async fn finish(self, conn: &mut Db<'_>) -> Result<StatusChange, sqlx::Error> {
        if let (Some(data), Some((url, secret))) = (&self.event, &self.callback) {
            let callback = crate::app_webhooks::Callback {
                tenant_id: &self.change.tenant_id,
                message_id: &self.change.message_id,
                url,
                secret,
            };
            crate::app_webhooks::enqueue_callback(
                conn,
                &callback,
                "message.status_updated",
                data,
                self.at,
            )
            .await?;
        }
        if let Some(data) = &self.event {
            crate::events::app_event(
                conn,
                &self.change.tenant_id,
                "message.status_updated",
                || data.clone(),
                self.at,
            )
            .await?;
        }
        Ok(self.change)
    }
}

/// The failure reason a provider-reported end maps to.
pub fn reason_for(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Undeliverable => "undeliverable",
        DeliveryStatus::Expired => "expired",
        DeliveryStatus::Rejected => "provider_rejected",
        _ => "provider_failed",
    }
}
