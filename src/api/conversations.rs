//! `/v1/conversations`: open explicitly, read, list, timeline, close.

use super::auth::Tenant;
use super::problem::{ApiError, FieldError, Problem};
use super::{json_body, AppState, ListPage};
use crate::domain::ids::{self, IdKind};
use crate::store::{ConversationView, CreateOutcome, TimelineEntry};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    pub contact_id: String,
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListConversations {
    pub contact_id: Option<String>,
    /// `open`, `inactive` or `closed`.
    pub state: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct Page {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

pub(crate) fn limit(l: Option<i64>) -> Result<i64, ApiError> {
    let l = l.unwrap_or(50);
    if (1..=200).contains(&l) {
        Ok(l)
    } else {
        Err(ApiError::field("limit", "must be 1 to 200"))
    }
}

pub(crate) fn cursor(c: &Option<String>, kind: IdKind) -> Result<Option<&str>, ApiError> {
    match c {
        Some(c) if !ids::is_id(kind, c) => Err(ApiError::field(
            "cursor",
            "not a cursor from a previous page",
        )),
        other => Ok(other.as_deref()),
    }
}

/// Open a conversation explicitly (several topics with one customer).
#[utoipa::path(post, path = "/v1/conversations", tag = "conversations", request_body = CreateConversation,
    responses((status = 201, body = ConversationView), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<ConversationView>), ApiError> {
    let v = json_body(&headers, &body)?;
    let req: CreateConversation =
        serde_json::from_value(v).map_err(|e| ApiError::field("body", e.to_string()))?;
    if req.metadata.as_ref().is_some_and(|m| !m.is_object()) {
        return Err(ApiError::field("metadata", "must be a JSON object"));
    }
    match state
        .store
        .create_conversation(&tenant.id, &req.contact_id, req.metadata.as_ref())
        .await?
    {
        CreateOutcome::Created(c) => Ok((StatusCode::CREATED, Json(*c))),
        CreateOutcome::UnknownContact => Err(ApiError::field("contact_id", "no such contact")),
    }
}

/// Read a conversation.
#[utoipa::path(get, path = "/v1/conversations/{id}", tag = "conversations", params(("id" = String, Path)),
    responses((status = 200, body = ConversationView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Conversation, &id) {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .conversation(&tenant.id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

/// List conversations, newest first.
#[utoipa::path(get, path = "/v1/conversations", tag = "conversations", params(ListConversations),
    responses((status = 200, body = ListPage<ConversationView>), (status = 422, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<ListConversations>,
) -> Result<Json<ListPage<ConversationView>>, ApiError> {
    let mut errs = Vec::new();
    if let Some(s) = &q.state {
        if !matches!(s.as_str(), "open" | "inactive" | "closed") {
            errs.push(FieldError {
                field: "state".into(),
                detail: "must be open, inactive or closed".into(),
            });
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let (data, next_cursor) = state
        .store
        .conversations(
            &tenant.id,
            q.contact_id.as_deref(),
            q.state.as_deref(),
            cursor(&q.cursor, IdKind::Conversation)?,
            limit(q.limit)?,
        )
        .await?;
    Ok(Json(ListPage { data, next_cursor }))
}

/// Every message and call of a conversation, both directions, all channels, oldest first.
#[utoipa::path(get, path = "/v1/conversations/{id}/timeline", tag = "conversations", params(("id" = String, Path), Page),
    responses((status = 200, body = ListPage<TimelineEntry>), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn timeline(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
    Query(p): Query<Page>,
) -> Result<Json<ListPage<TimelineEntry>>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Conversation, &id) {
        return Err(ApiError::NotFound);
    }
    let (data, next_cursor) = state
        .store
        .timeline(
            &tenant.id,
            &id,
            cursor(&p.cursor, IdKind::Message)?,
            limit(p.limit)?,
        )
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(ListPage { data, next_cursor }))
}

/// Close a conversation; a later reply starts a new one linked to it.
#[utoipa::path(post, path = "/v1/conversations/{id}/close", tag = "conversations", params(("id" = String, Path)),
    responses((status = 200, body = ConversationView), (status = 404, body = Problem, content_type = "application/problem+json")),
    security(("bearer" = [])))]
pub async fn close(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<ConversationView>, ApiError> {
    if !crate::domain::ids::is_id(IdKind::Conversation, &id) {
        return Err(ApiError::NotFound);
    }
    if !state.store.close_conversation(&tenant.id, &id).await? {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .conversation(&tenant.id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}
