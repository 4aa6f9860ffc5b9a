//! `/v1/messages`: send, read one, list.

use super::auth::Tenant;
use super::problem::{ApiError, FieldError, Problem};
use super::{json_body, AppState, ListPage};
use crate::domain::message::{DispatchItem, MessageView, NewMessage, Purpose, SendPolicy};
use crate::domain::{address, ids, now_ms, parse_rfc3339, segment};
use crate::store::{AcceptJob, AcceptOutcome, ListFilter};
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::str::FromStr;
use utoipa::{IntoParams, ToSchema};
use weft_provider::{Channel, DeliveryStatus, Template};

/// The body of `POST /v1/messages`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SendRequest {
    /// E.164 number, e-mail address, `whatsapp:+…` or `telegram:<chat id>`.
    pub to: String,
    /// `sms`, `voice`, `whatsapp`, `telegram`, `email`; inferred from `to` when omitted.
    pub channel: Option<String>,
    /// Sender to use; defaults to the connection's first sender for the channel.
    pub from: Option<String>,
    pub body: Option<String>,
    /// E-mail subject.
    pub subject: Option<String>,
    /// Provider template name (WhatsApp templates, SendGrid dynamic templates).
    pub template: Option<String>,
    pub variables: Option<BTreeMap<String, String>>,
    /// Put the message on this conversation instead of the recipient's open one.
    pub conversation_id: Option<String>,
    /// Free-form object, echoed back.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
    /// Channels to try next on permanent failure, in order.
    pub fallback: Option<Vec<String>>,
    /// Where to POST status updates of this message.
    pub callback_url: Option<String>,
    /// Seconds without `delivered` before the next `fallback` channel is tried.
    pub fallback_after: Option<u64>,
    /// Per-step success criteria: what a channel's step must reach within `fallback_after`
    /// for the message not to move on — `sent`, `delivered` (the default) or `read`, by
    /// channel, e.g. `{"whatsapp": "read", "telegram": "sent"}`.
    #[schema(value_type = Option<Object>)]
    pub fallback_success: Option<std::collections::BTreeMap<String, String>>,
    /// Send through this connection only (its id).
    pub connection: Option<String>,
    /// RFC 3339 time to send at (future sends).
    pub send_at: Option<String>,
    /// RFC 3339 time after which an undelivered message is `expired`.
    pub valid_until: Option<String>,
    /// `transactional` (default) or `bulk`; bulk never starves transactional traffic.
    pub priority: Option<String>,
}

const MAX_BODY_CHARS: usize = 1600;
const MAX_EMAIL_BODY_CHARS: usize = 200_000;
const MAX_METADATA_BYTES: usize = 16 * 1024;

fn validate(req: SendRequest, tenant: &Tenant) -> Result<NewMessage, ApiError> {
    let mut errs = Vec::new();
    let mut err = |f: &str, d: String| {
        errs.push(FieldError {
            field: f.into(),
            detail: d,
        })
    };
    let channel = match &req.channel {
        Some(c) => Channel::from_str(c).map_err(|e| err("channel", e)).ok(),
        None => address::infer_channel(&req.to)
            .map_err(|e| err("to", e.to_string()))
            .ok(),
    };
    let dest = channel.and_then(|ch| {
        address::parse(ch, &req.to)
            .map_err(|e| err("to", e.to_string()))
            .ok()
    });
    let body = req.body.clone().filter(|b| !b.is_empty());
    if body.is_none() && req.template.is_none() {
        err(
            "body",
            "a message needs a non-empty body or a template".into(),
        );
    }
    if req.variables.is_some() && req.template.is_none() {
        err("variables", "variables need a template".into());
    }
    if let (Some(b), Some(ch)) = (&body, channel) {
        let max = if ch == Channel::Email {
            MAX_EMAIL_BODY_CHARS
        } else {
            MAX_BODY_CHARS
        };
        if b.chars().count() > max {
            err("body", format!("at most {max} characters on {ch}"));
        }
    }
    if req.subject.is_some() && channel.is_some_and(|c| c != Channel::Email) {
        err("subject", "only e-mail has a subject".into());
    }
    if let Some(m) = &req.metadata {
        if !m.is_object() {
            err("metadata", "must be a JSON object".into());
        } else if m.to_string().len() > MAX_METADATA_BYTES {
            err("metadata", format!("at most {MAX_METADATA_BYTES} bytes"));
        }
    }
    if let Some(c) = &req.conversation_id {
        if !ids::is_id(ids::IdKind::Conversation, c) {
            err("conversation_id", "not a conversation id (conv_…)".into());
        }
    }
    let mut fallback = Vec::new();
    for f in req.fallback.iter().flatten() {
        match Channel::from_str(f) {
            Ok(c) if Some(c) == channel || fallback.contains(&c) => {
                err("fallback", format!("{c} appears twice"))
            }
            Ok(c) => fallback.push(c),
            Err(e) => err("fallback", e),
        }
    }
    if req.fallback_after.is_some() && fallback.is_empty() {
        err("fallback_after", "needs a fallback list".into());
    }
    if req.fallback_after == Some(0) {
        err("fallback_after", "must be at least 1 second".into());
    }
    let mut fallback_success = Vec::new();
    if let Some(map) = &req.fallback_success {
        if req.fallback_after.is_none() {
            err("fallback_success", "needs fallback_after".into());
        }
        for (c, s) in map {
            let Ok(c) = Channel::from_str(c) else {
                err("fallback_success", format!("{c}: not a channel"));
                continue;
            };
            if Some(c) != channel && !fallback.contains(&c) {
                err(
                    "fallback_success",
                    format!("{c} is not a step of this message"),
                );
            }
            match s.as_str() {
                "sent" => fallback_success.push((c, DeliveryStatus::Sent)),
                "delivered" => fallback_success.push((c, DeliveryStatus::Delivered)),
                "read" => fallback_success.push((c, DeliveryStatus::Read)),
                _ => err(
                    "fallback_success",
                    format!("{c}: must be sent, delivered or read"),
                ),
            }
        }
    }
    let now = now_ms();
    let mut time = |field: &str, v: &Option<String>| match v {
        Some(t) => match parse_rfc3339(t) {
            Some(ms) => Some(ms),
            None => {
                err(field, "must be an RFC 3339 time".into());
                None
            }
        },
        None => None,
    };
    let send_at = time("send_at", &req.send_at);
    let valid_until = time("valid_until", &req.valid_until);
    if valid_until.is_some_and(|v| v <= now) {
        err("valid_until", "must be in the future".into());
    }
    if let (Some(s), Some(v)) = (send_at, valid_until) {
        if v <= s {
            err("valid_until", "must be after send_at".into());
        }
    }
    let bulk = match req.priority.as_deref() {
        None | Some("transactional") => false,
        Some("bulk") => true,
        Some(_) => {
            err("priority", "must be transactional or bulk".into());
            false
        }
    };
    if channel == Some(Channel::Email)
        && req.subject.as_deref().is_none_or(str::is_empty)
        && req.template.is_none()
    {
        err("subject", "e-mail needs a subject".into());
    }
    if channel == Some(Channel::Telegram) && body.as_ref().is_some_and(|b| b.chars().count() > 4096)
    {
        err("body", "at most 4096 characters on telegram".into());
    }
    if channel == Some(Channel::Whatsapp) {
        if let Some(vars) = &req.variables {
            if vars.len() > 50
                || vars
                    .values()
                    .any(|v| v.is_empty() || v.chars().count() > 1024)
            {
                err(
                    "variables",
                    "WhatsApp template variables must be 1 to 1024 characters, at most 50".into(),
                );
            }
        }
    }
    if let Some(u) = &req.callback_url {
        match url::Url::parse(u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => {}
            _ => err("callback_url", "must be an absolute http(s) URL".into()),
        }
    }
    if let Some(f) = &req.from {
        if f.is_empty() || f.len() > 254 {
            err("from", "must be 1 to 254 characters".into());
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let (Some(channel), Some(dest)) = (channel, dest) else {
        return Err(ApiError::field("to", "invalid destination"));
    };
    let seg = (channel == Channel::Sms)
        .then(|| body.as_deref().map(segment::count))
        .flatten();
    Ok(NewMessage {
        id: ids::new_id(ids::IdKind::Message),
        tenant_id: tenant.id.clone(),
        conversation_id: req.conversation_id,
        channel,
        to: dest.address,
        identity: dest.identity,
        from: req.from,
        body,
        subject: req.subject,
        template: req.template.map(|name| Template {
            name,
            language: None,
            variables: req.variables.unwrap_or_default(),
        }),
        metadata: req.metadata,
        callback_secret: req
            .callback_url
            .as_ref()
            .and_then(|_| tenant.callback_secret()),
        callback_url: req.callback_url,
        encoding: seg.map(|s| s.encoding.as_str()),
        segments: seg.map(|s| s.count),
        email_message_id: None,
        created_at: now,
        policy: SendPolicy {
            pinned_connection: req.connection,
            fallback,
            fallback_success,
            fallback_after_ms: req
                .fallback_after
                .map(|s| i64::try_from(s.saturating_mul(1000)).unwrap_or(i64::MAX / 4)),
            send_at,
            valid_until,
            bulk,
            kind: None,
        },
    })
}

/// Send a message.
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Replays the first answer for 24 h; 1 to 255 visible ASCII characters", min_length = 1, max_length = 255, pattern = "^[!-~]+$")),
    responses(
        (status = 202, description = "Durably accepted", body = MessageView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid fields or idempotency conflict", body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn send(
    State(state): State<AppState>,
    tenant: Tenant,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let value: serde_json::Value = json_body(&headers, &body)?;
    let idem = super::idempotency::key(&headers, &value)?;
    let req: SendRequest =
        serde_json::from_value(value).map_err(|e| ApiError::field("body", e.to_string()))?;
    let mut msg = validate(req, &tenant)?;
    if let Some(c) = &msg.policy.pinned_connection {
        if state.registry.get(c).is_none() {
            return Err(ApiError::field(
                "connection",
                format!("no connection {c:?}"),
            ));
        }
    }
    if msg.channel == Channel::Email {
        msg.email_message_id = Some(format!("{}@{}", msg.id, state.email.domain));
    }
    let (lease_token, lease_until) = state.dispatcher.accept_lease();
    let job = AcceptJob {
        msg: msg.clone(),
        idempotency: idem,
        lease_token: lease_token.clone(),
        lease_until,
    };
    match state.store.accept(job).await? {
        AcceptOutcome::Accepted {
            conversation_id,
            body,
        } => {
            ::metrics::counter!(crate::metrics::MESSAGES_ACCEPTED, "channel" => msg.channel.as_str()).increment(1);
            let due_now = msg.policy.send_at.is_none_or(|t| t <= now_ms());
            if due_now {
                state.dispatcher.handoff(DispatchItem {
                    message_id: msg.id.clone(),
                    tenant_id: msg.tenant_id,
                    conversation_id,
                    channel: msg.channel,
                    to: msg.to,
                    from: msg.from,
                    body: msg.body,
                    subject: msg.subject,
                    template: msg.template,
                    lease_token,
                    created_at: msg.created_at,
                    policy: msg.policy.clone(),
                    step: 0,
                    purpose: Purpose::Send,
                });
            }
            Ok(super::idempotency::answer(
                StatusCode::ACCEPTED,
                body,
                "/v1/messages",
                super::idempotency::Answered::New { id: &msg.id },
            ))
        }
        AcceptOutcome::Replay { status, body } => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED);
            Ok(super::idempotency::answer(
                status,
                body,
                "/v1/messages",
                super::idempotency::Answered::Replay,
            ))
        }
        AcceptOutcome::Conflict => Err(ApiError::IdempotencyConflict),
        AcceptOutcome::UnknownConversation => {
            Err(ApiError::field("conversation_id", "no such conversation"))
        }
    }
}

/// Read one message with its status history and attempts.
#[utoipa::path(
    get, path = "/v1/messages/{id}", tag = "messages",
    params(("id" = String, Path, description = "Message id (msg_…)")),
    responses(
        (status = 200, body = MessageView),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn get(
    State(state): State<AppState>,
    tenant: Tenant,
    Path(id): Path<String>,
) -> Result<Json<MessageView>, ApiError> {
    if !ids::is_id(ids::IdKind::Message, &id) {
        return Err(ApiError::NotFound);
    }
    state
        .store
        .message(&tenant.id, &id)
        .await?
        .map(Json)
        .ok_or(ApiError::NotFound)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    pub conversation_id: Option<String>,
    pub status: Option<String>,
    /// Only messages created after this RFC 3339 time.
    pub after: Option<String>,
    /// 1–200, default 50.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// List messages, newest first.
#[utoipa::path(
    get, path = "/v1/messages", tag = "messages",
    params(ListQuery),
    responses(
        (status = 200, body = ListPage<MessageView>),
        (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 422, body = Problem, content_type = "application/problem+json"),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(state): State<AppState>,
    tenant: Tenant,
    Query(q): Query<ListQuery>,
) -> Result<Json<ListPage<MessageView>>, ApiError> {
    let mut errs = Vec::new();
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        errs.push(FieldError {
            field: "limit".into(),
            detail: "must be 1 to 200".into(),
        });
    }
    if let Some(s) = &q.status {
        if s != "received" && DeliveryStatus::from_str(s).is_err() {
            errs.push(FieldError {
                field: "status".into(),
                detail: format!("unknown status {s:?}"),
            });
        }
    }
    let after_ms = match &q.after {
        Some(a) => match parse_rfc3339(a) {
            Some(ms) => Some(ms),
            None => {
                errs.push(FieldError {
                    field: "after".into(),
                    detail: "must be an RFC 3339 time".into(),
                });
                None
            }
        },
        None => None,
    };
    if let Some(c) = &q.cursor {
        if !ids::is_id(ids::IdKind::Message, c) {
            errs.push(FieldError {
                field: "cursor".into(),
                detail: "not a cursor from a previous page".into(),
            });
        }
    }
    if !errs.is_empty() {
        return Err(ApiError::Validation(errs));
    }
    let f = ListFilter {
        conversation_id: q.conversation_id,
        status: q.status,
        after_ms,
        cursor: q.cursor,
        limit,
    };
    let (data, next_cursor) = state.store.messages(&tenant.id, &f).await?;
    Ok(Json(ListPage { data, next_cursor }))
}
