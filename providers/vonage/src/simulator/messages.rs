//! The simulated Messages API v1: `POST /v1/messages`.

use super::{iso_now, special, Shared, DLR_FAIL_PREFIX, REJECT_PREFIX};
use crate::jwt::random_uuid;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use std::sync::Arc;
use weft_simkit::{Fault, Received};

/// An `application/problem+json` answer as the Messages API gives it.
fn problem(status: StatusCode, code: &str, title: &str, detail: &str) -> Response {
    let body = serde_json::json!({
        "type": format!("https://developer.nexmo.com/api-errors/messages-olympus#{code}"),
        "title": title,
        "detail": detail,
        "instance": random_uuid(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

fn unauthorized() -> Response {
    problem(
        StatusCode::UNAUTHORIZED,
        "unauthorized",
        "Unauthorized",
        "You did not provide correct credentials.",
    )
}

/// A bearer JWT: RS256 against the configured public key (or, without one, only its shape),
/// with our `application_id`, an `iat`, a `jti` and an unexpired `exp`.
fn jwt_ok(sim: &Shared, token: &str) -> bool {
    let mut v = Validation::new(Algorithm::RS256);
    v.set_required_spec_claims(&["exp"]);
    v.leeway = 60;
    let decoded = match &sim.decoding_key {
        Some(key) => jsonwebtoken::decode::<serde_json::Value>(token, key, &v),
        None => {
            v.insecure_disable_signature_validation();
            match jsonwebtoken::decode_header(token) {
                Ok(h) if h.alg == Algorithm::RS256 => jsonwebtoken::decode::<serde_json::Value>(
                    token,
                    &DecodingKey::from_secret(b""),
                    &v,
                ),
                _ => return false,
            }
        }
    };
    match decoded {
        Ok(data) => {
            let c = &data.claims;
            c.get("application_id").and_then(|a| a.as_str())
                == Some(sim.cfg.application_id.as_str())
                && c.get("iat").is_some_and(|i| i.is_i64())
                && c.get("jti")
                    .and_then(|j| j.as_str())
                    .is_some_and(|j| !j.is_empty())
        }
        Err(_) => false,
    }
}

fn authorized(sim: &Shared, headers: &HeaderMap) -> bool {
    let Some(auth) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    if let Some(token) = auth.strip_prefix("Bearer ") {
        return jwt_ok(sim, token.trim());
    }
    auth.strip_prefix("Basic ")
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|b| b == format!("{}:{}", sim.cfg.api_key, sim.cfg.api_secret))
}

pub(super) async fn send(
    State(sim): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = sim.faults.draw();
    sim.faults.delay(fault).await;
    match fault {
        Fault::ServerError => {
            return problem(
                StatusCode::INTERNAL_SERVER_ERROR,
                "1010",
                "Internal Error",
                "Please retry later.",
            )
        }
        Fault::Throttle(n) => {
            let mut resp = problem(
                StatusCode::TOO_MANY_REQUESTS,
                "1000",
                "Throttled",
                "Too many requests, please slow down.",
            );
            if let Ok(v) = HeaderValue::from_str(&n.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
            return resp;
        }
        Fault::None | Fault::Timeout => {}
    }
    if !authorized(&sim, &headers) {
        return unauthorized();
    }
    let Ok(serde_json::Value::Object(req)) = serde_json::from_slice::<serde_json::Value>(&body)
    else {
        return problem(
            StatusCode::BAD_REQUEST,
            "1020",
            "Invalid JSON",
            "The request body is not a JSON object.",
        );
    };
    let s = |k: &str| {
        req.get(k)
            .and_then(|v| v.as_str())
            .map(str::to_string)
            .filter(|v| !v.is_empty())
    };
    let missing = ["channel", "message_type", "to", "from"]
        .into_iter()
        .find(|k| s(k).is_none());
    if let Some(k) = missing {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "1150",
            "Invalid params",
            &format!("{k} is required"),
        );
    }
    let (channel, message_type) = (
        s("channel").unwrap_or_default(),
        s("message_type").unwrap_or_default(),
    );
    let (to, from) = (s("to").unwrap_or_default(), s("from").unwrap_or_default());
    let text = match message_type.as_str() {
        "text" => s("text"),
        "template" if channel == "whatsapp" => req
            .get("template")
            .and_then(|t| t.get("name"))
            .map(|n| n.to_string()),
        _ => None,
    };
    let Some(text) = text else {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "1150",
            "Invalid params",
            "unsupported message",
        );
    };
    if !to.chars().all(|c| c.is_ascii_digit()) || special(&to, REJECT_PREFIX).is_some() {
        return problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "1150",
            "Invalid params",
            "The value of one or more parameters is invalid.",
        );
    }

    let uuid = random_uuid();
    let client_ref = s("client_ref");
    let mut raw = req.clone();
    raw.insert("message_uuid".into(), uuid.clone().into());
    sim.recorder.record(Received {
        provider_id: uuid.clone(),
        weft_message_id: client_ref.clone(),
        to: to.clone(),
        from: Some(from.clone()),
        body: Some(text),
        raw: serde_json::Value::Object(raw),
    });

    if let Some(url) = &sim.cfg.dlr_url {
        let status_body = |status: &str, error: Option<&str>| {
            let mut b = serde_json::json!({
                "message_uuid": uuid,
                "to": to,
                "from": from,
                "timestamp": iso_now(),
                "status": status,
                "channel": channel,
                "usage": {"currency": "EUR", "price": "0.0333"},
            });
            if let Some(obj) = b.as_object_mut() {
                if let Some(r) = &client_ref {
                    obj.insert("client_ref".into(), r.clone().into());
                }
                if let Some(code) = error {
                    obj.insert(
                        "error".into(),
                        serde_json::json!({
                            "type": format!("https://developer.nexmo.com/api-errors/messages-olympus#{code}"),
                            "title": code,
                            "detail": "The message could not be delivered.",
                            "instance": random_uuid(),
                        }),
                    );
                }
            }
            sim.messages_callback(url, &b)
        };
        let mut calls = vec![status_body("submitted", None)];
        match special(&to, DLR_FAIL_PREFIX).filter(|c| c != "0") {
            Some(code) => calls.push(status_body("undeliverable", Some(&code))),
            None => {
                calls.push(status_body("delivered", None));
                if channel == "whatsapp" {
                    calls.push(status_body("read", None));
                }
            }
        }
        sim.dispatch(calls).await;
    }
    let body = serde_json::json!({"message_uuid": uuid});
    (
        StatusCode::ACCEPTED,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
