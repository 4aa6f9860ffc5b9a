//! The simulator's REST side: `Messages.json` and `Calls.json`, Twilio's shapes and codes.

use super::callbacks;
use super::Shared;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use serde_json::{json, Value};
use std::sync::Arc;
use weft_simkit::{Fault, Received};

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/2010-04-01/Accounts/{account}/Messages.json",
            post(messages),
        )
        .route("/2010-04-01/Accounts/{account}/Calls.json", post(calls))
        .fallback(not_found)
        .with_state(shared)
}

/// Twilio's legacy error body.
pub(super) fn twilio_error(status: u16, code: u32, message: &str) -> Response {
    let body = json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn not_found(uri: axum::http::Uri) -> Response {
    twilio_error(
        404,
        20404,
        &format!("The requested resource {} was not found", uri.path()),
    )
}

/// Fault injection, auth and account checks shared by both resources.
async fn gate(shared: &Shared, account: &str, headers: &HeaderMap) -> Result<(), Response> {
    let fault = shared.faults.draw();
    shared.faults.delay(fault).await;
    match fault {
        Fault::ServerError | Fault::Timeout => {
            return Err(twilio_error(500, 20500, "Internal Server Error"))
        }
        Fault::Throttle(after) => {
            let mut r = twilio_error(429, 20429, "Too Many Requests");
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(after));
            return Err(r);
        }
        Fault::None => {}
    }
    if !authorized(shared, headers) {
        let mut r = twilio_error(401, 20003, "Authenticate");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"Twilio API\""),
        );
        return Err(r);
    }
    if account != shared.cfg.account_sid {
        return Err(twilio_error(
            404,
            20404,
            &format!("The requested resource /2010-04-01/Accounts/{account} was not found"),
        ));
    }
    Ok(())
}

fn authorized(shared: &Shared, headers: &HeaderMap) -> bool {
    let Some(encoded) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
    else {
        return false;
    };
    let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Ok(pair) = String::from_utf8(decoded) else {
        return false;
    };
    let Some((user, pass)) = pair.split_once(':') else {
        return false;
    };
    let cfg = &shared.cfg;
    let account = user == cfg.account_sid && pass == cfg.auth_token;
    let key =
        cfg.api_key_sid.as_deref() == Some(user) && cfg.api_key_secret.as_deref() == Some(pass);
    account || key
}

/// The request's form fields, repeats kept.
pub(super) struct Form(pub(super) Vec<(String, String)>);

impl Form {
    fn parse(body: &[u8]) -> Self {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }
    pub(super) fn all(&self, k: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(n, _)| n == k)
            .map(|(_, v)| v.as_str())
            .collect()
    }
    /// `{name: value}`, repeated names as arrays: the recorder's raw view.
    fn to_json(&self) -> Value {
        let mut map = serde_json::Map::new();
        for (k, v) in &self.0 {
            match map.get_mut(k) {
                Some(Value::Array(a)) => a.push(Value::String(v.clone())),
                Some(prev) => *prev = Value::Array(vec![prev.clone(), Value::String(v.clone())]),
                None => {
                    map.insert(k.clone(), Value::String(v.clone()));
                }
            }
        }
        Value::Object(map)
    }
}

fn bare(addr: &str) -> &str {
    addr.strip_prefix("whatsapp:").unwrap_or(addr)
}

/// A `StatusCallback` parameter, parsed once: `Err` if present but not an http(s) URL.
fn parse_callback(callback: Option<&str>) -> Result<Option<url::Url>, ()> {
    match callback {
        None => Ok(None),
        Some(c) => match url::Url::parse(c) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Ok(Some(u)),
            _ => Err(()),
        },
    }
}

/// weft's message id from the `m` query parameter of a callback URL.
fn weft_id(callback: Option<&url::Url>) -> Option<String> {
    callback?
        .query_pairs()
        .find(|(k, _)| k == "m")
        .map(|(_, v)| v.into_owned())
}

/// `SM`/`MM`/`CA` followed by 32 lower-case hex digits.
pub(super) fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(rand::random::<[u8; 16]>()))
}

pub(super) fn now_rfc2822() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc2822)
        .unwrap_or_default()
}

/// Checks on the `From` test numbers for messages: `0001` invalid, `0007` cannot send
/// there, `0008` queue full.
fn message_from_error(from: &str) -> Option<(u32, String)> {
    match bare(from) {
        "+15005550001" => Some((21212, format!("The 'From' number {from} is not a valid phone number, shortcode, or alphanumeric sender ID."))),
        "+15005550007" => Some((21606, format!("The 'From' phone number provided ({from}) is not a valid message-capable Twilio phone number for this destination/account."))),
        "+15005550008" => Some((21611, "This 'From' number has exceeded the maximum number of queued messages.".to_string())),
        _ => None,
    }
}

fn message_to_error(to: &str, from: &str) -> Option<(u32, String)> {
    match bare(to) {
        "+15005550001" => Some((21211, format!("The 'To' number {to} is not a valid phone number."))),
        "+15005550002" => Some((21612, format!("The 'To' phone number: {to}, is not currently reachable using the 'From' phone number: {from} via SMS."))),
        "+15005550003" => Some((21408, format!("Permission to send an SMS has not been enabled for the region indicated by the 'To' number: {to}."))),
        "+15005550004" => Some((21610, "Attempt to send to unsubscribed recipient".to_string())),
        "+15005550009" => Some((21614, format!("'To' number {to} is not a valid mobile number"))),
        _ => None,
    }
}

fn call_to_error(to: &str) -> Option<(u32, String)> {
    match to {
        "+15005550001" => Some((21217, "Phone number does not appear to be valid".to_string())),
        "+15005550002" => Some((21214, "'To' phone number cannot be reached".to_string())),
        "+15005550003" => Some((21215, format!("Account not authorized to call {to}. Perhaps you need to enable some international permissions."))),
        "+15005550004" => Some((21216, format!("Account not allowed to call {to}"))),
        _ => None,
    }
}

/// GSM-7 basic set (the extension set counts two septets); anything else means UCS-2.
const GSM_BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
const GSM_EXT: &str = "^{}\\[~]|€\u{c}";

pub(super) fn segments(body: &str) -> u32 {
    let mut septets = 0usize;
    for c in body.chars() {
        if GSM_BASIC.contains(c) {
            septets += 1;
        } else if GSM_EXT.contains(c) {
            septets += 2;
        } else {
            let units = body.encode_utf16().count();
            return if units <= 70 {
                1
            } else {
                units.div_ceil(67) as u32
            };
        }
    }
    if septets <= 160 {
        1
    } else {
        septets.div_ceil(153) as u32
    }
}

async fn messages(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&shared, &account, &headers).await {
        return r;
    }
    let form = Form::parse(&body);
    let Some(to) = form.get("To") else {
        return twilio_error(400, 21604, "A 'To' phone number is required.");
    };
    let from = form.get("From");
    let service = form.get("MessagingServiceSid");
    if from.is_none() && service.is_none() {
        return twilio_error(400, 21603, "A 'From' phone number is required.");
    }
    let text = form.get("Body");
    let media = form.all("MediaUrl");
    let content = form.get("ContentSid");
    if text.is_none() && media.is_empty() && content.is_none() {
        return twilio_error(400, 21602, "Message body is required.");
    }
    if text.is_some_and(|t| t.chars().count() > 1600) {
        return twilio_error(
            400,
            21617,
            "The concatenated message body exceeds the 1600 character limit.",
        );
    }
    let callback = form.get("StatusCallback");
    let Ok(callback_url) = parse_callback(callback) else {
        return twilio_error(400, 21609, "The StatusCallback URL is not a valid URL.");
    };
    if let Some((code, msg)) = from.and_then(message_from_error) {
        return twilio_error(400, code, &msg);
    }
    if let Some((code, msg)) = message_to_error(to, from.unwrap_or_default()) {
        return twilio_error(400, code, &msg);
    }

    let sid = new_sid(if media.is_empty() { "SM" } else { "MM" });
    let now = now_rfc2822();
    let account_sid = &shared.cfg.account_sid;
    // Through a Messaging Service without a From: "accepted", segments not known yet.
    let (status, num_segments) = match from {
        None => ("accepted", "0".to_string()),
        Some(_) => ("queued", segments(text.unwrap_or_default()).to_string()),
    };
    let resource = json!({
        "account_sid": account_sid,
        "api_version": "2010-04-01",
        "body": text.unwrap_or_default(),
        "date_created": now,
        "date_sent": null,
        "date_updated": now,
        "direction": "outbound-api",
        "error_code": null,
        "error_message": null,
        "from": from,
        "messaging_service_sid": service,
        "num_media": media.len().to_string(),
        "num_segments": num_segments,
        "price": null,
        "price_unit": "USD",
        "sid": sid,
        "status": status,
        "subresource_uris": {"media": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}/Media.json")},
        "to": to,
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    shared.recorder.record(Received {
        provider_id: sid.clone(),
        weft_message_id: weft_id(callback_url.as_ref()),
        to: to.to_string(),
        from: from.map(String::from),
        body: text.map(String::from),
        raw: form.to_json(),
    });
    if let Some(cb) = callback {
        let calls = callbacks::message_sequence(&shared, cb, &sid, &form);
        shared.callbacks.spawn_sequence(calls);
    }
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        resource.to_string(),
    )
        .into_response()
}

async fn calls(
    State(shared): State<Arc<Shared>>,
    Path(account): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = gate(&shared, &account, &headers).await {
        return r;
    }
    let form = Form::parse(&body);
    let Some(to) = form.get("To") else {
        return twilio_error(400, 21201, "No 'To' number is specified");
    };
    let Some(from) = form.get("From") else {
        return twilio_error(400, 21213, "No 'From' number is specified");
    };
    let twiml = form.get("Twiml");
    if twiml.is_none() && form.get("Url").is_none() && form.get("ApplicationSid").is_none() {
        return twilio_error(400, 21205, "Url, Twiml or ApplicationSid is required.");
    }
    if twiml.is_some_and(|t| !t.contains("<Response")) {
        return twilio_error(400, 12100, "Document parse failure");
    }
    let callback = form.get("StatusCallback");
    let Ok(callback_url) = parse_callback(callback) else {
        return twilio_error(400, 21609, "The StatusCallback URL is not a valid URL.");
    };
    if from == "+15005550001" {
        return twilio_error(
            400,
            21212,
            &format!("The 'From' number {from} is not a valid phone number."),
        );
    }
    if let Some((code, msg)) = call_to_error(to) {
        return twilio_error(400, code, &msg);
    }

    let sid = new_sid("CA");
    let now = now_rfc2822();
    let account_sid = &shared.cfg.account_sid;
    let resource = json!({
        "account_sid": account_sid,
        "annotation": null,
        "answered_by": null,
        "api_version": "2010-04-01",
        "caller_name": null,
        "date_created": now,
        "date_updated": now,
        "direction": "outbound-api",
        "duration": null,
        "end_time": null,
        "forwarded_from": null,
        "from": from,
        "from_formatted": from,
        "group_sid": null,
        "parent_call_sid": null,
        "phone_number_sid": null,
        "price": null,
        "price_unit": "USD",
        "queue_time": "0",
        "sid": sid,
        "start_time": null,
        "status": "queued",
        "subresource_uris": {"notifications": format!("/2010-04-01/Accounts/{account_sid}/Calls/{sid}/Notifications.json")},
        "to": to,
        "to_formatted": to,
        "trunk_sid": null,
        "uri": format!("/2010-04-01/Accounts/{account_sid}/Calls/{sid}.json"),
    });
    shared.recorder.record(Received {
        provider_id: sid.clone(),
        weft_message_id: weft_id(callback_url.as_ref()),
        to: to.to_string(),
        from: Some(from.to_string()),
        body: twiml.map(String::from),
        raw: form.to_json(),
    });
    if let Some(cb) = callback {
        let calls = callbacks::call_sequence(&shared, cb, &sid, &form);
        shared.callbacks.spawn_sequence(calls);
    }
    (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/json")],
        resource.to_string(),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_counts() {
        assert_eq!(segments("hello"), 1);
        assert_eq!(segments(&"a".repeat(160)), 1);
        assert_eq!(segments(&"a".repeat(161)), 2);
        assert_eq!(segments(&"€".repeat(80)), 1);
        assert_eq!(segments(&"€".repeat(81)), 2);
        assert_eq!(segments(&"ж".repeat(70)), 1);
        assert_eq!(segments(&"ж".repeat(71)), 2);
    }

    #[test]
    fn sids_look_like_twilio() {
        let s = new_sid("SM");
        assert_eq!(s.len(), 34);
        assert!(s[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
