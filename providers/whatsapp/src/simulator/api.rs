//! The simulated Graph API endpoints.

use super::callbacks;
use super::{
    Shared, NOT_ON_WHATSAPP_NUMBER, OPTED_OUT_NUMBER, PAIR_LIMIT_NUMBER, WINDOW_CLOSED_NUMBER,
};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use rand::Rng;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use weft_simkit::{Fault, Received};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{version}/{phone_number_id}/messages", post(send))
        .route("/{version}/{phone_number_id}", get(number))
        .with_state(shared)
}

fn trace_id() -> String {
    let bytes: [u8; 9] = rand::thread_rng().gen();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An answer in Meta's error envelope.
pub(super) struct GraphError {
    status: StatusCode,
    body: Value,
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

/// Meta's error envelope.
pub(super) fn graph_error(
    status: StatusCode,
    code: i64,
    kind: &str,
    message: &str,
    details: Option<&str>,
) -> GraphError {
    let mut error =
        json!({"message": message, "type": kind, "code": code, "fbtrace_id": trace_id()});
    if let Some(d) = details {
        error["error_data"] = json!({"messaging_product": "whatsapp", "details": d});
    }
    GraphError {
        status,
        body: json!({ "error": error }),
    }
}

fn bad_parameter(message: &str) -> GraphError {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        "OAuthException",
        message,
        None,
    )
}

/// `wamid.` + base64 of a protobuf-ish header, the recipient and random bytes.
pub(super) fn new_wamid(shared: &Shared, wa_id: &str) -> String {
    let n = shared.counter.fetch_add(1, Ordering::Relaxed);
    let mut bytes = vec![0x1c, 0x18, wa_id.len().min(255) as u8];
    bytes.extend_from_slice(wa_id.as_bytes());
    bytes.extend_from_slice(&n.to_be_bytes());
    let noise: [u8; 10] = rand::thread_rng().gen();
    bytes.extend_from_slice(&noise);
    format!(
        "wamid.{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

fn version_ok(v: &str) -> bool {
    v.strip_prefix('v')
        .and_then(|d| d.split_once('.'))
        .is_some_and(|(a, b)| {
            !a.is_empty() && !b.is_empty() && (a.to_owned() + b).bytes().all(|c| c.is_ascii_digit())
        })
}

/// Checks the version, the Bearer token and the phone-number id.
fn check(
    shared: &Shared,
    headers: &HeaderMap,
    version: &str,
    pnid: &str,
) -> Result<(), GraphError> {
    if !version_ok(version) {
        return Err(graph_error(
            StatusCode::BAD_REQUEST,
            2500,
            "OAuthException",
            &format!("Unknown path components: /{version}"),
            None,
        ));
    }
    let want = format!("Bearer {}", shared.cfg.access_token);
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth != Some(want.as_str()) {
        return Err(graph_error(
            StatusCode::UNAUTHORIZED,
            190,
            "OAuthException",
            "Invalid OAuth access token - Cannot parse access token",
            None,
        ));
    }
    if pnid != shared.cfg.phone_number_id {
        return Err(bad_parameter(&format!(
            "Unsupported post request. Object with ID '{pnid}' does not exist, cannot be loaded \
             due to missing permissions, or does not support this operation."
        )));
    }
    Ok(())
}

async fn number(
    State(shared): State<Arc<Shared>>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check(&shared, &headers, &version, &pnid) {
        return r.into_response();
    }
    let display = &shared.cfg.display_phone_number;
    Json(json!({"id": pnid, "display_phone_number": display, "verified_name": "weft simulator"}))
        .into_response()
}

/// Validates a send body; `Err` is the Graph error to answer.
fn validate(v: &Value) -> Result<(), GraphError> {
    if v["messaging_product"].as_str() != Some("whatsapp") {
        return Err(bad_parameter(
            "(#100) The parameter messaging_product is required.",
        ));
    }
    let to = v["to"].as_str().unwrap_or_default();
    if to.is_empty()
        || !to
            .trim_start_matches('+')
            .bytes()
            .all(|b| b.is_ascii_digit())
    {
        return Err(bad_parameter("(#100) Invalid parameter: to"));
    }
    match v["type"].as_str().unwrap_or("text") {
        "text" => {
            let body = v["text"]["body"].as_str().unwrap_or_default();
            if body.is_empty() {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    131008,
                    "OAuthException",
                    "(#131008) Required parameter is missing",
                    Some("text.body is required"),
                ));
            }
            if body.chars().count() > 4096 {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    131009,
                    "OAuthException",
                    "(#131009) Parameter value is not valid",
                    Some("text.body is too long"),
                ));
            }
        }
        "template" => {
            if v["template"]["name"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
                || v["template"]["language"]["code"]
                    .as_str()
                    .unwrap_or_default()
                    .is_empty()
            {
                return Err(graph_error(
                    StatusCode::BAD_REQUEST,
                    131008,
                    "OAuthException",
                    "(#131008) Required parameter is missing",
                    Some("template.name and template.language.code are required"),
                ));
            }
        }
        "image" | "audio" | "video" | "document" | "sticker" | "location" | "contacts"
        | "interactive" | "reaction" => {}
        other => {
            return Err(graph_error(
                StatusCode::BAD_REQUEST,
                131051,
                "OAuthException",
                "(#131051) Unsupported message type",
                Some(&format!("type {other} is not supported")),
            ));
        }
    }
    Ok(())
}

/// The error a special recipient gets: (code, title, details).
pub(super) fn special(to: &str) -> Option<(i64, &'static str, &'static str)> {
    match to {
        WINDOW_CLOSED_NUMBER => Some((
            131047,
            "Re-engagement message",
            "Message failed to send because more than 24 hours have passed since the customer last replied to this number.",
        )),
        NOT_ON_WHATSAPP_NUMBER => Some((131026, "Message undeliverable", "Unable to deliver message.")),
        OPTED_OUT_NUMBER => Some((
            131050,
            "Unable to deliver the message",
            "This recipient has chosen to stop receiving marketing messages on WhatsApp from your business.",
        )),
        _ => None,
    }
}

async fn send(
    State(shared): State<Arc<Shared>>,
    Path((version, pnid)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let fault = shared.faults.draw();
    shared.faults.delay(fault).await;
    if let Err(r) = check(&shared, &headers, &version, &pnid) {
        return r.into_response();
    }
    match fault {
        Fault::ServerError => {
            return graph_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                131000,
                "OAuthException",
                "(#131000) Something went wrong",
                Some("Something went wrong"),
            )
            .into_response();
        }
        Fault::Throttle(_) => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                130429,
                "OAuthException",
                "(#130429) Rate limit hit",
                Some("Cloud API message throughput has been reached."),
            )
            .into_response();
        }
        Fault::None | Fault::Timeout => {}
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return bad_parameter("(#100) Invalid parameter").into_response();
    };
    if v["status"].as_str() == Some("read") && v["messaging_product"].as_str() == Some("whatsapp") {
        // Mark as read.
        return Json(json!({"success": true})).into_response();
    }
    if let Err(r) = validate(&v) {
        return r.into_response();
    }
    let input = v["to"].as_str().unwrap_or_default().to_string();
    let wa_id = input.trim_start_matches('+').to_string();
    if wa_id == PAIR_LIMIT_NUMBER {
        let details = "Too many messages sent from this phone number to the same phone number \
                       in a short period of time.";
        let message = "(#131056) (Business Account, Consumer Account) pair rate limit hit";
        return graph_error(
            StatusCode::BAD_REQUEST,
            131056,
            "OAuthException",
            message,
            Some(details),
        )
        .into_response();
    }
    let failure = special(&wa_id);
    if let (Some((code, title, details)), true) = (failure, shared.synchronous_failures()) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            code,
            "OAuthException",
            &format!("(#{code}) {title}"),
            Some(details),
        )
        .into_response();
    }

    let wamid = new_wamid(&shared, &wa_id);
    let opaque = v["biz_opaque_callback_data"].as_str().map(String::from);
    let weft_message_id = opaque
        .as_deref()
        .map(|o| o.split_once(':').map_or(o, |(m, _)| m).to_string());
    let body_text = v["text"]["body"]
        .as_str()
        .or(v["template"]["name"].as_str())
        .map(String::from);
    shared.recorder.record(Received {
        provider_id: wamid.clone(),
        weft_message_id,
        to: wa_id.clone(),
        from: Some(pnid),
        body: body_text,
        raw: v.clone(),
    });
    if let Some(url) = shared.webhook_url() {
        let calls =
            callbacks::status_sequence(&shared, &url, &wamid, &wa_id, opaque.as_deref(), failure);
        shared.callbacks.spawn_sequence(calls);
    }
    let mut message = json!({"id": wamid});
    if v["type"].as_str() == Some("template") {
        message["message_status"] = json!("accepted");
    }
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [{"input": input, "wa_id": wa_id}],
        "messages": [message],
    }))
    .into_response()
}
