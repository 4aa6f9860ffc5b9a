//! The simulated SMS API: `POST /sms/json`.

use super::{
    scts_now, special, vonage_now, Shared, DLR_FAIL_PREFIX, PART_FAIL_PREFIX, REJECT_PREFIX,
};
use crate::gsm::{self, Encoding};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use bytes::Bytes;
use std::sync::Arc;
use weft_simkit::{Fault, Received};

/// Vonage's words for its SMS API status codes.
fn error_text(code: &str) -> &'static str {
    match code {
        "1" => "Throughput Rate Exceeded - please wait [ 1000 ] and retry",
        "2" => "Missing params",
        "3" => "Invalid params",
        "4" => "Bad Credentials",
        "5" => "Internal Error",
        "6" => "Invalid Message",
        "7" => "Number barred.",
        "8" => "Partner account barred.",
        "9" => "Partner quota violation, include event type (Quota Exceeded)",
        "10" => "Too many existing binds",
        "11" => "Account not enabled for HTTP",
        "12" => "Message too long",
        "14" => "Invalid Signature",
        "15" => "Invalid sender address",
        "22" => "Invalid network code",
        "23" => "Invalid callback URL",
        "29" => "Non-Whitelisted Destination",
        "32" => "Signature And API Secret Disallowed",
        "33" => "Number de-activated",
        _ => "Error",
    }
}

fn error_part(code: &str, text: &str) -> serde_json::Value {
    serde_json::json!({"status": code, "error-text": text})
}

/// HTTP 200, every value a string — whatever happened.
fn answer(parts: Vec<serde_json::Value>) -> Response {
    let body = serde_json::json!({"message-count": parts.len().to_string(), "messages": parts});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn params(headers: &HeaderMap, body: &[u8]) -> Vec<(String, String)> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if json {
        match serde_json::from_slice::<serde_json::Value>(body) {
            Ok(serde_json::Value::Object(m)) => m
                .into_iter()
                .filter_map(|(k, v)| crate::request::json_str(Some(&v)).map(|s| (k, s)))
                .collect(),
            _ => Vec::new(),
        }
    } else {
        form_urlencoded::parse(body).into_owned().collect()
    }
}

/// `api_key` + `api_secret` in the body, or Basic.
fn authorized(sim: &Shared, headers: &HeaderMap, get: &dyn Fn(&str) -> Option<String>) -> bool {
    if let (Some(k), Some(s)) = (get("api_key"), get("api_secret")) {
        return k == sim.cfg.api_key && s == sim.cfg.api_secret;
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    basic.is_some_and(|b| b == format!("{}:{}", sim.cfg.api_key, sim.cfg.api_secret))
}

pub(super) async fn send(
    State(sim): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let fault = sim.faults.draw();
    sim.faults.delay(fault).await;
    match fault {
        Fault::ServerError => return answer(vec![error_part("5", error_text("5"))]),
        Fault::Throttle(n) => {
            // Vonage states the wait in milliseconds.
            let ms = u64::from(n) * 1000;
            let text = format!("Throughput Rate Exceeded - please wait [ {ms} ] and retry");
            return answer(vec![error_part("1", &text)]);
        }
        Fault::None | Fault::Timeout => {}
    }
    let params = params(&headers, &body);
    let get = |k: &str| {
        params
            .iter()
            .find(|(pk, _)| pk == k)
            .map(|(_, v)| v.clone())
    };
    if !authorized(&sim, &headers, &get) {
        return answer(vec![error_part("4", error_text("4"))]);
    }
    let (Some(from), Some(to), Some(text)) = (get("from"), get("to"), get("text")) else {
        let missing = ["from", "to", "text"]
            .into_iter()
            .find(|k| get(k).is_none())
            .unwrap_or("text");
        return answer(vec![error_part("2", &format!("Missing {missing} param"))]);
    };
    if to.is_empty() || !to.chars().all(|c| c.is_ascii_digit()) {
        return answer(vec![error_part("3", "Invalid to param")]);
    }
    let encoding = if get("type").as_deref() == Some("unicode") {
        Encoding::Ucs2
    } else {
        Encoding::Gsm7
    };
    let parts = gsm::split_parts(&text, encoding);
    let client_ref = get("client-ref");

    let reject = special(&to, REJECT_PREFIX);
    let part_fail = special(&to, PART_FAIL_PREFIX);
    let mut entries = Vec::new();
    let mut ids = Vec::new();
    for i in 0..parts.len() {
        let refused = reject
            .clone()
            .or_else(|| part_fail.clone().filter(|_| i > 0))
            .filter(|c| c != "0");
        if let Some(code) = refused {
            entries.push(error_part(&code, error_text(&code)));
            continue;
        }
        let id = sim.next_sms_id();
        let mut entry = serde_json::json!({
            "to": to,
            "message-id": id,
            "status": "0",
            "remaining-balance": "3.14159265",
            "message-price": "0.03330000",
            "network": "23410",
        });
        if let (Some(r), Some(obj)) = (&client_ref, entry.as_object_mut()) {
            obj.insert("client-ref".into(), r.clone().into());
        }
        entries.push(entry);
        ids.push(id);
    }

    if let Some(first) = ids.first() {
        let mut raw: serde_json::Map<String, serde_json::Value> = params
            .iter()
            .filter(|(k, _)| k != "api_secret")
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        raw.insert("message-ids".into(), serde_json::json!(ids));
        sim.recorder.record(Received {
            provider_id: first.clone(),
            weft_message_id: client_ref.clone(),
            to: to.clone(),
            from: Some(from.clone()),
            body: Some(text.clone()),
            raw: serde_json::Value::Object(raw),
        });
    }

    if let Some(url) = &sim.cfg.dlr_url {
        let fail = special(&to, DLR_FAIL_PREFIX);
        let dlr = |id: &str, status: &str, err: &str| {
            let mut p: Vec<(String, String)> = vec![
                ("msisdn".into(), to.clone()),
                ("to".into(), from.clone()),
                ("network-code".into(), "23410".into()),
                ("messageId".into(), id.into()),
                ("price".into(), "0.03330000".into()),
                ("status".into(), status.into()),
                ("scts".into(), scts_now()),
                ("err-code".into(), err.into()),
                ("message-timestamp".into(), vonage_now()),
            ];
            if let Some(r) = &client_ref {
                p.push(("client-ref".into(), r.clone()));
            }
            sim.sms_callback(url, p)
        };
        let mut calls: Vec<_> = ids.iter().map(|id| dlr(id, "accepted", "0")).collect();
        for id in &ids {
            calls.push(match &fail {
                Some(code) if code != "0" => dlr(id, "failed", code),
                _ => dlr(id, "delivered", "0"),
            });
        }
        sim.dispatch(calls).await;
    }
    answer(entries)
}
