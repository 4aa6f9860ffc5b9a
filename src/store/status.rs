//! Applying a status to a message through the one state machine, with history.

use sqlx::{AnyConnection, Row};
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
}

pub struct ErrorFields<'a> {
    pub reason: &'a str,
    pub code: Option<&'a str>,
    pub detail: Option<&'a str>,
}

/// Applies `input` to the message; always records history. `None` if there is no such message.
pub async fn apply(
    conn: &mut AnyConnection,
    message_id: &str,
    input: &StatusInput<'_>,
) -> Result<Option<StatusChange>, sqlx::Error> {
    let Some(row) = sqlx::query("SELECT status, tenant_id, channel, conversation_id, created_at FROM messages WHERE id = $1")
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?
    else {
        return Ok(None);
    };
    let current: String = row.try_get("status")?;
    let current = DeliveryStatus::from_str(&current).unwrap_or(DeliveryStatus::Accepted);
    let moved = matches!(current.apply(input.status), Transition::Moved(_));
    sqlx::query(
        "INSERT INTO status_history (message_id, status, raw_status, applied, connection_id, provider_message_id, error_code, detail, occurred_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
    )
    .bind(message_id)
    .bind(input.status.as_str())
    .bind(input.raw_status)
    .bind(i64::from(moved))
    .bind(input.connection_id)
    .bind(input.provider_message_id)
    .bind(input.error.as_ref().and_then(|e| e.code))
    .bind(input.error.as_ref().and_then(|e| e.detail))
    .bind(input.at)
    .execute(&mut *conn)
    .await?;
    // `at` may be the provider's own time (minute precision, other clocks): `updated_at` is
    // when weft changed the message, so it never goes back before `created_at`.
    let updated_at = crate::domain::now_ms().max(input.at);
    if moved {
        match &input.error {
            Some(e) if input.status.is_failure() => {
                sqlx::query("UPDATE messages SET status = $1, updated_at = $2, error_reason = $3, error_code = $4, error_detail = $5 WHERE id = $6")
                    .bind(input.status.as_str())
                    .bind(updated_at)
                    .bind(e.reason)
                    .bind(e.code)
                    .bind(e.detail)
                    .bind(message_id)
                    .execute(&mut *conn)
                    .await?;
            }
            _ => {
                sqlx::query("UPDATE messages SET status = $1, updated_at = $2 WHERE id = $3")
                    .bind(input.status.as_str())
                    .bind(updated_at)
                    .bind(message_id)
                    .execute(&mut *conn)
                    .await?;
            }
        }
    }
    let tenant_id: String = row.try_get("tenant_id")?;
    if moved {
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
        crate::events::app_event(conn, &tenant_id, "message.status_updated", &data, input.at)
            .await?;
    }
    Ok(Some(StatusChange {
        message_id: message_id.to_string(),
        tenant_id,
        channel: row.try_get("channel")?,
        status: input.status,
        moved,
        created_at: row.try_get("created_at")?,
    }))
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
