//! `Idempotency-Key` on POSTs: the key and a hash of the request it guards, and the answer
//! (first or replayed) with its `Location` and `Idempotent-Replayed` headers.

use super::problem::ApiError;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};

/// `(key, sha256 of the canonical request)`, if the request carries a key.
pub fn key(
    headers: &HeaderMap,
    request: &serde_json::Value,
) -> Result<Option<(String, String)>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let k = v
        .to_str()
        .map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
    if k.is_empty() || k.len() > 255 {
        return Err(ApiError::field(
            "Idempotency-Key",
            "must be 1 to 255 characters",
        ));
    }
    let hash = hex::encode(Sha256::digest(request.to_string().as_bytes()));
    Ok(Some((k.to_string(), hash)))
}

/// Where a stored answer comes from.
pub enum Answered<'a> {
    /// Just created: the resource's id is at hand.
    New { id: &'a str },
    /// A replay of the answer stored under the idempotency key.
    Replay,
}

/// A stored JSON answer: `Location: {collection}/{id}`, and `Idempotent-Replayed: true` for
/// a replay. A replayed answer's id is read back from its body; a new one's is passed in
/// (parsing every accepted message's answer cost ~1.5 % of weft's instructions).
pub fn answer(status: StatusCode, body: String, collection: &str, from: Answered<'_>) -> Response {
    let (id, replayed) = match from {
        Answered::New { id } => (Some(id.to_string()), false),
        Answered::Replay => (
            serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["id"].as_str().map(str::to_string)),
            true,
        ),
    };
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(loc) = id.and_then(|id| HeaderValue::from_str(&format!("{collection}/{id}")).ok()) {
        h.insert(header::LOCATION, loc);
    }
    if replayed {
        h.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    resp
}
