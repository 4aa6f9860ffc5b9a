//! The simulated Bot API methods.

use super::{Shared, BLOCKED_CHAT, DEACTIVATED_CHAT, UNKNOWN_CHAT};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use weft_simkit::{Fault, Received};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{bot}/{method}", any(method))
        .with_state(shared)
}

pub(super) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `{"ok":false,"error_code":N,"description":…}` on HTTP N.
fn failure(code: u16, description: &str, parameters: Option<Value>) -> Response {
    let mut body = json!({"ok": false, "error_code": code, "description": description});
    if let Some(p) = parameters {
        body["parameters"] = p;
    }
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn ok(result: Value) -> Response {
    Json(json!({"ok": true, "result": result})).into_response()
}

/// Parameters from a JSON or form body (form values that hold JSON objects are decoded).
fn params(headers: &HeaderMap, body: &[u8]) -> Option<Map<String, Value>> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if body.is_empty() {
        return Some(Map::new());
    }
    if ct.starts_with("application/json") {
        return serde_json::from_slice::<Value>(body)
            .ok()?
            .as_object()
            .cloned();
    }
    let mut m = Map::new();
    for (k, v) in url::form_urlencoded::parse(body) {
        let value = if v.starts_with('{') {
            serde_json::from_str(&v).unwrap_or(Value::String(v.into_owned()))
        } else {
            Value::String(v.into_owned())
        };
        m.insert(k.into_owned(), value);
    }
    Some(m)
}

async fn method(
    State(shared): State<Arc<Shared>>,
    Path((bot, method)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let Some(token) = bot.strip_prefix("bot") else {
        return failure(404, "Not Found", None);
    };
    if token != shared.cfg.bot_token {
        return failure(401, "Unauthorized", None);
    }
    let Some(p) = params(&headers, &body) else {
        return failure(400, "Bad Request: can't parse JSON object", None);
    };
    match method.as_str() {
        "sendMessage" => send_message(&shared, p).await,
        "getMe" => ok(bot_user(&shared)),
        "setWebhook" => set_webhook(&shared, &p),
        _ => failure(404, "Not Found: method not found", None),
    }
}

pub(super) fn bot_user(shared: &Shared) -> Value {
    json!({"id": shared.bot_id(), "is_bot": true, "first_name": "weft sim", "username": shared.cfg.bot_username})
}

fn set_webhook(shared: &Shared, p: &Map<String, Value>) -> Response {
    let url = p
        .get("url")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let secret = p
        .get("secret_token")
        .and_then(Value::as_str)
        .map(String::from);
    if let Some(s) = &secret {
        if !crate::config::secret_token_ok(s) {
            return failure(
                400,
                "Bad Request: secret token contains unallowed characters",
                None,
            );
        }
    }
    if let Ok(mut g) = shared.webhook.lock() {
        g.url = (!url.is_empty()).then_some(url.clone());
        if let Some(s) = secret {
            g.secret = s;
        }
    }
    let description = if url.is_empty() {
        "Webhook was deleted"
    } else {
        "Webhook was set"
    };
    Json(json!({"ok": true, "result": true, "description": description})).into_response()
}

/// Resolves `chat_id` (a number, a numeric string or `@username`).
fn resolve_chat(shared: &Shared, v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.starts_with('@') && s.len() > 1 => {
            let mut g = shared.usernames.lock().ok()?;
            let next = -1_001_000_000_000 - g.len() as i64 - 1;
            Some(*g.entry(s.to_ascii_lowercase()).or_insert(next))
        }
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

async fn send_message(shared: &Shared, p: Map<String, Value>) -> Response {
    let fault = shared.faults.draw();
    shared.faults.delay(fault).await;
    match fault {
        Fault::ServerError => return failure(500, "Internal Server Error", None),
        Fault::Throttle(n) => {
            let n = n.max(1);
            return failure(
                429,
                &format!("Too Many Requests: retry after {n}"),
                Some(json!({"retry_after": n})),
            );
        }
        Fault::None | Fault::Timeout => {}
    }
    let Some(chat) = resolve_chat(shared, p.get("chat_id")) else {
        return failure(400, "Bad Request: chat_id is empty", None);
    };
    match chat {
        BLOCKED_CHAT => return failure(403, "Forbidden: bot was blocked by the user", None),
        DEACTIVATED_CHAT => return failure(403, "Forbidden: user is deactivated", None),
        UNKNOWN_CHAT => return failure(400, "Bad Request: chat not found", None),
        c if shared.is_blocked(c) => {
            return failure(403, "Forbidden: bot was blocked by the user", None)
        }
        _ => {}
    }
    let text = p
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    if text.trim().is_empty() {
        return failure(400, "Bad Request: message text is empty", None);
    }
    if text.chars().count() > 4096 {
        return failure(400, "Bad Request: message is too long", None);
    }
    let rp = p.get("reply_parameters").cloned().unwrap_or(Value::Null);
    let reply_to = rp["message_id"]
        .as_i64()
        .or_else(|| p.get("reply_to_message_id").and_then(Value::as_i64));
    let reply_chat = rp["chat_id"].as_i64().unwrap_or(chat);
    let lenient = rp["allow_sending_without_reply"].as_bool().unwrap_or(false);
    let replied = reply_to.filter(|id| shared.message_exists(reply_chat, *id));
    if reply_to.is_some() && replied.is_none() && !lenient {
        return failure(400, "Bad Request: message to be replied not found", None);
    }

    let message_id = shared.next_message_id(chat);
    let chat_type = if chat > 0 { "private" } else { "supergroup" };
    let mut result = json!({
        "message_id": message_id,
        "from": bot_user(shared),
        "chat": {"id": chat, "type": chat_type},
        "date": now(),
        "text": text,
    });
    if let Some(r) = replied {
        result["reply_to_message"] =
            json!({"message_id": r, "chat": {"id": reply_chat, "type": chat_type}, "date": now()});
    }
    shared.recorder.record(Received {
        provider_id: format!("{chat}:{message_id}"),
        weft_message_id: None,
        to: chat.to_string(),
        from: Some(shared.cfg.bot_username.clone()),
        body: Some(text),
        raw: Value::Object(p),
    });
    ok(result)
}
