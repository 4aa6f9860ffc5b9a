//! The simulator's HTTP side: `POST /v3/{domain}/messages`.

use super::events::{random_hex, sequence, Sent};
use super::Shared;
use crate::email::{self, valid_email};
use crate::multipart;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine;
use serde_json::{json, Map, Value};
use std::sync::Arc;
use weft_simkit::{Fault, Received};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v3/{domain}/messages", post(messages))
        .with_state(shared)
}

fn message(status: StatusCode, text: &str) -> Response {
    (
        status,
        [("content-type", "application/json")],
        json!({"message": text}).to_string(),
    )
        .into_response()
}

/// The form of a send, url-encoded or multipart.
fn read_form(headers: &HeaderMap, body: &[u8]) -> Result<Vec<(String, String)>, String> {
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    match multipart::boundary(ct) {
        Some(b) => multipart::parse(body, &b).map(|p| multipart::text_fields(&p)),
        None => Ok(form_urlencoded::parse(body).into_owned().collect()),
    }
}

fn get<'a>(form: &'a [(String, String)], k: &str) -> Option<&'a str> {
    form.iter()
        .find(|(fk, v)| fk == k && !v.is_empty())
        .map(|(_, v)| v.as_str())
}

fn now_stamp() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path(domain): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = shared.core.faults.draw();
    shared.core.faults.delay(fault).await;
    match fault {
        Fault::ServerError => {
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
        }
        Fault::Throttle(secs) => {
            let mut resp = message(StatusCode::TOO_MANY_REQUESTS, "Too many requests");
            if let Ok(v) = secs.max(1).to_string().parse() {
                resp.headers_mut().insert("retry-after", v);
            }
            return resp;
        }
        Fault::Timeout => return StatusCode::GATEWAY_TIMEOUT.into_response(),
        Fault::None => {}
    }
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("api:{}", shared.cfg.api_key))
    );
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !weft_provider::verify::constant_time_eq(auth.as_bytes(), expected.as_bytes()) {
        return (StatusCode::UNAUTHORIZED, "Forbidden").into_response();
    }
    if !domain.eq_ignore_ascii_case(&shared.cfg.domain) {
        return message(
            StatusCode::NOT_FOUND,
            &format!("Domain not found: {domain}"),
        );
    }
    let form = match read_form(&headers, &body) {
        Ok(f) => f,
        Err(_) => return message(StatusCode::BAD_REQUEST, "Invalid form body"),
    };
    let Some(from) = get(&form, "from") else {
        return message(StatusCode::BAD_REQUEST, "'from' parameter is missing");
    };
    let Some(to) = get(&form, "to") else {
        return message(StatusCode::BAD_REQUEST, "'to' parameter is missing");
    };
    let recipients: Vec<String> = to
        .split(',')
        .map(|t| t.trim())
        .filter(|t| !t.is_empty())
        .map(String::from)
        .collect();
    if recipients
        .iter()
        .any(|r| !matches!(email::parse_mailbox(r), Some(a) if valid_email(&a.email)))
    {
        return message(
            StatusCode::BAD_REQUEST,
            "'to' parameter is not a valid address. please check documentation",
        );
    }
    if ["text", "html", "amp-html", "template"]
        .iter()
        .all(|k| get(&form, k).is_none())
    {
        return message(
            StatusCode::BAD_REQUEST,
            "Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified",
        );
    }
    let message_id = match get(&form, "h:Message-Id").map(email::strip_brackets) {
        Some(id) if shared.cfg.honour_message_id && email::valid_msg_id(id) => id.to_string(),
        _ => format!("{}.{}@{}", now_stamp(), random_hex(16), shared.cfg.domain),
    };
    let vars: Map<String, Value> = form
        .iter()
        .filter_map(|(k, v)| {
            k.strip_prefix("v:")
                .map(|name| (name.to_string(), Value::String(v.clone())))
        })
        .collect();
    shared.core.recorder.record(Received {
        provider_id: message_id.clone(),
        weft_message_id: vars
            .get(crate::request::VAR_MESSAGE_ID)
            .and_then(|v| v.as_str())
            .map(String::from),
        to: recipients.first().cloned().unwrap_or_default(),
        from: Some(from.to_string()),
        body: get(&form, "text").map(String::from),
        raw: Value::Object(
            form.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        ),
    });
    if let Some(url) = shared.core.events_url() {
        let subject = get(&form, "subject").unwrap_or_default();
        for r in &recipients {
            let recipient = email::bare_address(r);
            let sent = Sent {
                recipient: &recipient,
                message_id: &message_id,
                from,
                subject,
                vars: &vars,
            };
            shared
                .core
                .callbacks
                .spawn_sequence(sequence(&shared, &url, &sent));
        }
    }
    (
        StatusCode::OK,
        [("content-type", "application/json")],
        json!({"id": format!("<{message_id}>"), "message": "Queued. Thank you."}).to_string(),
    )
        .into_response()
}
