//! `/webhooks/{provider}/{connection_id}/{kind}`: provider callbacks. Verify the signature over
//! the exact bytes (bad or missing → 403, counted, nothing stored), parse, store the raw
//! events durably, and only then answer what the provider expects.

use super::problem::ApiError;
use super::AppState;
use crate::domain::now_ms;
use crate::store::WebhookJob;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, Uri};
use axum::response::{IntoResponse, Response};
use weft_provider::{InboundEvent, WebhookAck, WebhookError, WebhookRequest};

/// Receive a provider webhook (status callback, inbound message, call).
#[utoipa::path(
    post, path = "/webhooks/{provider}/{connection_id}/{kind}", tag = "webhooks",
    params(
        ("provider" = String, Path, description = "twilio, vonage, sendgrid, mailgun, whatsapp_cloud, telegram, sandbox"),
        ("connection_id" = String, Path),
        ("kind" = String, Path, description = "status, inbound, voice, events, … (per provider)"),
    ),
    request_body(content = Object, description = "The provider's own format (form fields or JSON), signed", content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "Stored; the provider's expected answer"),
        (status = 400, description = "Verified but unreadable", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Bad or missing signature", body = super::problem::Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown connection or kind", body = super::problem::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn receive(
    State(state): State<AppState>,
    Path((provider, connection_id, kind)): Path<(String, String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let live = state
        .registry
        .get(&connection_id)
        .filter(|l| l.spec.provider.as_str() == provider)
        .ok_or(ApiError::NotFound)?;
    let caps = live.provider.capabilities();
    if !caps.webhook_kinds.contains(&kind.as_str()) {
        return Err(ApiError::NotFound);
    }
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or(uri.path());
    let req = WebhookRequest {
        method: method.clone(),
        url: format!("{}{}", state.public_base, path),
        kind: kind.clone(),
        headers,
        body,
        now_unix: now_ms() / 1000,
    };
    let label = live.spec.provider.as_str();
    if method == Method::GET {
        if let Some(hs) = live.provider.handshake(&req) {
            return match hs {
                Ok(ack) => Ok(ack_response(ack)),
                Err(e) => {
                    ::metrics::counter!(crate::metrics::WEBHOOK_SIGNATURE_FAILURES, "provider" => label).increment(1);
                    Err(ApiError::Forbidden(e.to_string()))
                }
            };
        }
    }
    let events = match live.provider.verify_then_parse(&req) {
        Ok(events) => events,
        Err(WebhookError::Verify(e)) => {
            ::metrics::counter!(crate::metrics::WEBHOOK_SIGNATURE_FAILURES, "provider" => label)
                .increment(1);
            tracing::warn!(connection = %connection_id, kind = %kind, error = %e, "Rejected a webhook with a bad signature.");
            return Err(ApiError::Forbidden(e.to_string()));
        }
        Err(WebhookError::Parse(e)) => return Err(ApiError::MalformedJson(e.to_string())),
    };
    for ev in &events {
        let channel = match ev {
            InboundEvent::Message(m) => Some(m.channel.as_str()),
            InboundEvent::Call(_) => Some("voice"),
            _ => None,
        };
        if let Some(channel) = channel {
            ::metrics::counter!(crate::metrics::INBOUND, "provider" => label, "channel" => channel)
                .increment(1);
        }
    }
    let ack = live.provider.ack(&req, &events);
    if !events.is_empty() {
        let job = WebhookJob {
            connection_id: connection_id.clone(),
            kind,
            tenant: live.spec.tenant.clone(),
            events,
            email: state.email.clone(),
            consent: state.consent.clone(),
        };
        let out = state
            .store
            .ingest_webhook(job)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        crate::events::status_changed(&out.changes, now_ms());
        if out.parked > 0 {
            tracing::debug!(
                parked = out.parked,
                "Receipts parked until their send is recorded."
            );
        }
    }
    Ok(ack_response(ack))
}

fn ack_response(ack: WebhookAck) -> Response {
    let mut resp = (ack.status, ack.body).into_response();
    if let Some(ct) = ack.content_type {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    resp
}
