//! What the API shows of endpoints and deliveries.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A webhook endpoint as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EndpointView {
    /// `wh_…`
    pub id: String,
    pub url: String,
    /// Subscribed event types, or `["*"]`.
    pub events: Vec<String>,
    /// The signing secret (`whsec_…`): only in the answer to the create call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_at: String,
}

/// One event on its way to one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryView {
    pub id: String,
    pub endpoint_id: String,
    /// `evt_…`, also the `webhook-id` header (the same on every retry).
    pub event_id: String,
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i64,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<String>,
    pub created_at: String,
    pub delivered_at: Option<String>,
    /// Every attempt, oldest first.
    pub attempt_history: Vec<AttemptEntry>,
    /// The body POSTed to the endpoint.
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
}

/// One POST to an endpoint.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AttemptEntry {
    pub attempted_at: String,
    /// The HTTP status answered, if any.
    pub status_code: Option<u16>,
    /// Why the attempt failed (no answer, a non-2xx status, a refused address).
    pub error: Option<String>,
    pub duration_ms: i64,
}
