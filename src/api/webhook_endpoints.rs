//! `/v1/webhook-endpoints`: app webhook subscriptions and their deliveries (DESIGN.md §6).

use super::auth::Tenant;
use super::problem::{ApiError, FieldError, Problem};
use super::{json_body, AppState, ListPage};
use crate::app_webhooks::db::{self, Created};
use crate::app_webhooks::views::{DeliveryView, EndpointView};
use crate::app_webhooks::{queue, sign, ssrf, EVENT_TYPES};
use crate::domain::ids::{self, IdKind};
use crate::domain::{now_ms, rfc3339};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

/// The body of `POST /v1/webhook-endpoints`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateEndpoint {
    /// Where events are POSTed: an absolute http(s) URL on a public address.
    pub url: String,
    /// `message.received`, `message.status_updated`, `conversation.created`,
    /// `conversation.closed`, or `*` for all.
    pub events: Vec<String>,
}

const MAX_EVENTS: usize = 16;

async fn validate(
    req: CreateEndpoint,
    allow_private: bool,
) -> Result<(String, Vec<String>), ApiError> {
    let mut errs = Vec::new();
    let mut err = |f: &str, d: String| {
        errs.push(FieldError {
            field: f.into(),
            detail: d,
        })
    };
    let url = match ssrf::check_url(req.url.trim(), allow_private).await {
        Ok(u) => Some(u.to_string()),
        Err(e) => {
            err("url", e.to_string());
            None
        }
    };
    let mut events: Vec<String> = Vec::new();
    if req.events.is_empty() {
        err(
            "events",
            "subscribe to at least one event type (or \"*\")".into(),
        );
    }
    if req.events.len() > MAX_EVENTS {
        err("events", format!("at most {MAX_EVENTS} entries"));
    }
    for e in &req.events {
        if e == "*" || EVENT_TYPES.contains(&e.as_str()) {
            if !events.contains(e) {
                events.push(e.clone());
            }
        } else {
            err(
                "events",
                format!(
                    "unknown event type {e:?}; use one of {} or \"*\"",
                    EVENT_TYPES.join(", ")
                ),
            );
        }
    }
    match url {
        Some(url) if errs.is_empty() => Ok((url, events)),
        _ => Err(ApiError::Validation(errs)),
    }
}

/// Subscribe an endpoint to events. The answer carries the signing secret, shown only here.
#[utoipa::path(
    post, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    request_body = CreateEndpoint,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 h; 1 to 255 visible ASCII characters", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 201, description = "Created; `secret` is shown only in this answer", body = EndpointView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields (a private URL, an unknown event type) or idempotency conflict", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value = json_body(&headers, &body)?;
    let idem = super::idempotency::key(&headers, &value)?;
    let req: CreateEndpoint =
        serde_json::from_value(value).map_err(|e| ApiError::field("body", e.to_string()))?;
    let (url, events) = validate(req, state.app_webhooks.allow_private_urls()).await?;
    let now = now_ms();
    let secret = sign::new_secret();
    let view = EndpointView {
        id: ids::new_id(IdKind::WebhookEndpoint),
        url,
        events,
        secret: Some(secret.clone()),
        created_at: rfc3339(now),
    };
    let answer = serde_json::to_string(&view).map_err(|e| ApiError::Internal(e.to_string()))?;
    // Before the insert: a cache refresh racing it cannot then hide the new endpoint.
    crate::app_webhooks::tenant_gains_endpoint(&tenant.id);
    let idem = idem.as_ref().map(|(k, h)| (k.as_str(), h.as_str()));
    let created = db::create_endpoint(&state.store, &tenant.id, &view, &secret, &answer, idem, now)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    use super::idempotency::Answered;
    let (body, from) = match created {
        Created::New(b) => (b, Answered::New { id: &view.id }),
        Created::Replay(b) => (b, Answered::Replay),
        Created::Conflict => return Err(ApiError::IdempotencyConflict),
    };
    Ok(super::idempotency::answer(
        StatusCode::CREATED,
        body,
        "/v1/webhook-endpoints",
        from,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

fn page_params(
    limit: Option<i64>,
    cursor: &Option<String>,
    cursor_ok: fn(&str) -> bool,
) -> Result<i64, ApiError> {
    let mut errs = Vec::new();
    let limit = limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errs.push(FieldError {
            field: "limit".into(),
            detail: "must be 1 to 200".into(),
        });
    }
    if cursor.as_deref().is_some_and(|c| !cursor_ok(c)) {
        errs.push(FieldError {
            field: "cursor".into(),
            detail: "not a cursor from a previous page".into(),
        });
    }
    if errs.is_empty() {
        Ok(limit)
    } else {
        Err(ApiError::Validation(errs))
    }
}

/// List the tenant's endpoints, newest first (without their secrets).
#[utoipa::path(
    get, path = "/v1/webhook-endpoints", tag = "webhook-endpoints",
    params(ListQuery),
    responses(
        (status = 200, body = ListPage<EndpointView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListPage<EndpointView>>, ApiError> {
    let limit = page_params(q.limit, &q.cursor, |c| {
        ids::is_id(IdKind::WebhookEndpoint, c)
    })?;
    let (data, next_cursor) = db::endpoints(&state.store, &tenant.id, q.cursor.as_deref(), limit)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ListPage { data, next_cursor }))
}

async fn find(state: &AppState, tenant: &Tenant, id: &str) -> Result<EndpointView, ApiError> {
    if !ids::is_id(IdKind::WebhookEndpoint, id) {
        return Err(ApiError::NotFound);
    }
    db::endpoint(&state.store, &tenant.id, id)
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
        .ok_or(ApiError::NotFound)
}

/// Read one endpoint (without its secret).
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    params(("id" = String, Path, description = "Endpoint id (wh_…)")),
    responses(
        (status = 200, body = EndpointView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<EndpointView>, ApiError> {
    find(&state, &tenant, &id).await.map(Json)
}

/// Unsubscribe an endpoint; its pending deliveries end `failed`.
#[utoipa::path(
    delete, path = "/v1/webhook-endpoints/{id}", tag = "webhook-endpoints",
    params(("id" = String, Path, description = "Endpoint id (wh_…)")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    if !ids::is_id(IdKind::WebhookEndpoint, &id) {
        return Err(ApiError::NotFound);
    }
    match db::delete_endpoint(&state.store, &tenant.id, &id, now_ms())
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?
    {
        None => Err(ApiError::NotFound),
        Some(others) => {
            if !others {
                crate::app_webhooks::tenant_loses_endpoints(&tenant.id);
            }
            Ok(StatusCode::NO_CONTENT)
        }
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DeliveriesQuery {
    /// `pending`, `delivered` or `failed`.
    pub status: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// An endpoint's deliveries, newest first: event, attempts, outcome of each.
#[utoipa::path(
    get, path = "/v1/webhook-endpoints/{id}/deliveries", tag = "webhook-endpoints",
    params(("id" = String, Path, description = "Endpoint id (wh_…)"), DeliveriesQuery),
    responses(
        (status = 200, body = ListPage<DeliveryView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn deliveries(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(q): Query<DeliveriesQuery>,
) -> Result<Json<ListPage<DeliveryView>>, ApiError> {
    let endpoint = find(&state, &tenant, &id).await?;
    let limit = page_params(q.limit, &q.cursor, |c| {
        c.strip_prefix("dlv_")
            .is_some_and(|u| ulid::Ulid::from_string(u).is_ok())
    })?;
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "pending" | "delivered" | "failed") {
            return Err(ApiError::field(
                "status",
                "must be pending, delivered or failed",
            ));
        }
    }
    let (data, next_cursor) = queue::deliveries(
        &state.store,
        &endpoint.id,
        q.status.as_deref(),
        q.cursor.as_deref(),
        limit,
    )
    .await
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(ListPage { data, next_cursor }))
}
