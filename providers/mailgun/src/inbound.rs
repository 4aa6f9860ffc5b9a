//! Inbound route posts (url-encoded or multipart) -> [`InboundMessage`].
//!
//! Fields used: `recipient` (the route address, weft's `reply+token@…`), `sender` (envelope),
//! `from`, `subject`, `body-plain` (else `stripped-text`, else `body-html`), the flattened header
//! fields `Message-Id`, `In-Reply-To`, `References`, `Reply-To`, `Date` (falling back to the
//! `message-headers` JSON list), `timestamp`, file parts `attachment-1..n`. `from` is the `From`
//! header's address (else `sender`), `to` the first `recipient`, both `mailto:<lower-case>`.
//! The provider id is the `Message-Id` (a SHA-256 of the body when there is none); the dedupe
//! key adds the recipient, since one mail to two of our addresses is posted once per address.

use crate::body::Body;
use crate::email;
use weft_mailkit::inbound::{self, InboundEmail};
use weft_provider::{InboundMessage, ParseError};

fn err(detail: impl std::fmt::Display) -> ParseError {
    ParseError::new("mailgun inbound route", detail)
}

/// A header: its own form field, else the `message-headers` list, case-insensitive.
fn header(body: &Body, list: &[(String, String)], name: &str) -> Option<String> {
    body.field(name).map(String::from).or_else(|| {
        list.iter()
            .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
            .map(|(_, v)| v.clone())
    })
}

/// `message-headers`: a JSON list of `[name, value]` pairs.
fn header_list(body: &Body) -> Vec<(String, String)> {
    let Some(raw) = body.field("message-headers") else {
        return Vec::new();
    };
    let v: serde_json::Value = serde_json::from_str(raw).unwrap_or_default();
    v.as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| Some((p[0].as_str()?.to_string(), p[1].as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Parses one verified route post.
pub fn parse(body: &Body, raw: &[u8]) -> Result<InboundMessage, ParseError> {
    let Body::Form { parts, .. } = body else {
        return Err(err("expected a form body"));
    };
    let list = header_list(body);
    let from = body
        .field("from")
        .and_then(email::mailto)
        .or_else(|| body.field("sender").and_then(email::mailto))
        .ok_or_else(|| err("no sender address"))?;
    let to = body
        .field("recipient")
        .and_then(email::mailto)
        .or_else(|| header(body, &list, "To").and_then(|t| email::mailto(&t)))
        .ok_or_else(|| err("no recipient address"))?;
    let received_at_ms = header(body, &list, "Date")
        .and_then(|d| mailparse::dateparse(&d).ok())
        .or_else(|| {
            body.field("timestamp")
                .and_then(|t| t.trim().parse::<i64>().ok())
        })
        .map(|s| s * 1000);
    let media = parts
        .iter()
        .filter(|p| p.filename.is_some())
        .map(inbound::media)
        .collect();
    let text = |k: &str| body.field(k).map(String::from);
    Ok(InboundEmail {
        from,
        to,
        body: text("body-plain")
            .or_else(|| text("stripped-text"))
            .or_else(|| text("body-html")),
        subject: text("subject").or_else(|| header(body, &list, "Subject")),
        headers: inbound::threading(|name| header(body, &list, name)),
        media,
        received_at_ms,
    }
    .into_message(raw))
}
