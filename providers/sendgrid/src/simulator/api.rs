//! The simulator's HTTP side: `POST /v3/mail/send`.

use super::events::{now_unix, random_id, sequence};
use super::Shared;
use crate::email::valid_email;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use weft_simkit::{Fault, Received};

const RATE_LIMIT: u32 = 600;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v3/mail/send", post(mail_send))
        .with_state(shared)
}

/// Every SendGrid answer carries the rate-limit headers.
fn with_limits(mut resp: Response, remaining: u32, reset_in: i64) -> Response {
    let h = resp.headers_mut();
    let mut put = |k: &'static str, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    put("X-RateLimit-Limit", RATE_LIMIT.to_string());
    put("X-RateLimit-Remaining", remaining.to_string());
    put("X-RateLimit-Reset", (now_unix() + reset_in).to_string());
    resp
}

/// `{"errors":[{message, field, help}]}` with a status.
fn errors(status: StatusCode, message: &str, field: Option<&str>, help: Option<&str>) -> Response {
    let body = json!({"errors": [{"message": message, "field": field, "help": help}]});
    with_limits(
        (
            status,
            [("content-type", "application/json")],
            body.to_string(),
        )
            .into_response(),
        RATE_LIMIT - 1,
        60,
    )
}

fn bad(message: &str, field: &str) -> Response {
    errors(
        StatusCode::BAD_REQUEST,
        message,
        Some(field),
        Some("http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"),
    )
}

/// Checks a Mail Send body like SendGrid's validator does (the parts weft uses). Returns the
/// recipients on success.
fn validate(v: &Value) -> Result<Vec<String>, (String, String)> {
    let Some(ps) = v["personalizations"].as_array().filter(|a| !a.is_empty()) else {
        return Err((
            "The personalizations field is required and must have at least one personalization."
                .to_string(),
            "personalizations".to_string(),
        ));
    };
    let mut recipients = Vec::new();
    for (i, p) in ps.iter().enumerate() {
        let Some(tos) = p["to"].as_array().filter(|a| !a.is_empty()) else {
            return Err(("The to array is required for all personalization objects, and must have at least one email object with a valid email address.".to_string(), format!("personalizations.{i}.to")));
        };
        for (j, to) in tos.iter().enumerate() {
            match to["email"].as_str() {
                Some(e) if valid_email(e) => recipients.push(e.to_string()),
                _ => {
                    return Err((
                        "Does not contain a valid address.".to_string(),
                        format!("personalizations.{i}.to.{j}.email"),
                    ));
                }
            }
        }
    }
    if !v["from"]["email"].as_str().is_some_and(valid_email) {
        return Err((
            "The from email does not contain a valid address.".to_string(),
            "from.email".to_string(),
        ));
    }
    let has_template = v["template_id"].as_str().is_some_and(|t| !t.is_empty());
    let has_subject = v["subject"].as_str().is_some_and(|s| !s.is_empty())
        || ps
            .iter()
            .all(|p| p["subject"].as_str().is_some_and(|s| !s.is_empty()));
    if !has_subject && !has_template {
        return Err(("The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.".to_string(), "subject".to_string()));
    }
    let has_content = v["content"].as_array().is_some_and(|c| {
        c.iter()
            .any(|c| c["value"].as_str().is_some_and(|s| !s.is_empty()))
    });
    if !has_content && !has_template {
        return Err((
            "Unless a valid template_id is provided, the content parameter is required."
                .to_string(),
            "content".to_string(),
        ));
    }
    Ok(recipients)
}

fn custom_args(v: &Value) -> Map<String, Value> {
    let mut args = v["custom_args"].as_object().cloned().unwrap_or_default();
    if let Some(p) = v["personalizations"][0]["custom_args"].as_object() {
        args.extend(p.clone());
    }
    args
}

async fn mail_send(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let fault = shared.core.faults.draw();
    shared.core.faults.delay(fault).await;
    match fault {
        Fault::ServerError => {
            return errors(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                None,
                None,
            );
        }
        Fault::Throttle(secs) => {
            let body =
                json!({"errors": [{"field": null, "message": "too many requests"}]}).to_string();
            let resp = (
                StatusCode::TOO_MANY_REQUESTS,
                [("content-type", "application/json")],
                body,
            )
                .into_response();
            return with_limits(resp, 0, i64::from(secs.max(1)));
        }
        Fault::Timeout => return StatusCode::GATEWAY_TIMEOUT.into_response(),
        Fault::None => {}
    }
    let expected = format!("Bearer {}", shared.cfg.api_key);
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !weft_provider::verify::constant_time_eq(auth.as_bytes(), expected.as_bytes()) {
        return errors(
            StatusCode::UNAUTHORIZED,
            "The provided authorization grant is invalid, expired, or revoked",
            None,
            None,
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return errors(StatusCode::BAD_REQUEST, "Bad Request", None, None);
    };
    let recipients = match validate(&v) {
        Ok(r) => r,
        Err((message, field)) => return bad(&message, &field),
    };
    let x_message_id = random_id(22);
    let args = custom_args(&v);
    let text = v["content"]
        .as_array()
        .and_then(|c| c.iter().find(|c| c["type"] == "text/plain"))
        .and_then(|c| c["value"].as_str())
        .map(String::from);
    shared.core.recorder.record(Received {
        provider_id: x_message_id.clone(),
        weft_message_id: args
            .get(crate::request::ARG_MESSAGE_ID)
            .and_then(|m| m.as_str())
            .map(String::from),
        to: recipients.first().cloned().unwrap_or_default(),
        from: v["from"]["email"].as_str().map(String::from),
        body: text,
        raw: v.clone(),
    });
    if let Some(url) = shared.core.events_url() {
        for (n, email) in recipients.iter().enumerate() {
            let calls = sequence(&shared, &url, email, &x_message_id, n, &args);
            shared.core.callbacks.spawn_sequence(calls);
        }
    }
    let mut resp = StatusCode::ACCEPTED.into_response();
    if let Ok(id) = HeaderValue::from_str(&x_message_id) {
        resp.headers_mut().insert("X-Message-Id", id);
    }
    with_limits(resp, RATE_LIMIT - 1, 60)
}
