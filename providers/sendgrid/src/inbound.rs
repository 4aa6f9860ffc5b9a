//! Inbound Parse (`multipart/form-data`) -> [`InboundMessage`].
//!
//! Fields used: `headers` (the raw header block: `Message-ID`, `In-Reply-To`, `References`,
//! `Reply-To`, `Date`; folded lines and encoded words handled by `mailparse`), `from`, `to`,
//! `subject`, `text` (else `html`), `envelope` (JSON `{to:[…], from}`), `charsets` (JSON, per
//! field) and file parts `attachment1..N`. Raw mode (the whole MIME message in `email`) is read
//! too. `from` is the `From` header's address, `to` the first envelope recipient (the address
//! weft's `reply+token@…` lives in), both as `mailto:<lower-case>`. The provider id is the
//! `Message-ID` (a SHA-256 of the body when there is none); the dedupe key adds the recipient,
//! since one mail sent to two of our addresses is posted once per address.

use crate::email;
use crate::multipart::{self, Part};
use weft_mailkit::inbound::{self, InboundEmail};
use weft_provider::{InboundMessage, ParseError, WebhookRequest};

fn err(detail: impl std::fmt::Display) -> ParseError {
    ParseError::new("sendgrid inbound parse", detail)
}

/// The text fields of a form, each decoded with the charset `charsets` names for it.
struct Form {
    parts: Vec<Part>,
    charsets: serde_json::Map<String, serde_json::Value>,
}

impl Form {
    fn get(&self, name: &str) -> Option<String> {
        let part = self
            .parts
            .iter()
            .find(|p| p.name == name && p.filename.is_none())?;
        let label = self
            .charsets
            .get(name)
            .and_then(|v| v.as_str())
            .unwrap_or("utf-8");
        let text = match charset::Charset::for_label(label.as_bytes()) {
            Some(cs) => cs.decode_without_bom_handling(&part.data).0.into_owned(),
            None => part.text(),
        };
        Some(text).filter(|t| !t.trim().is_empty())
    }
}

/// The `(name, value)` pairs of a raw header block (folding undone, encoded words decoded).
fn header_pairs(raw: &str) -> Result<Vec<(String, String)>, ParseError> {
    let (headers, _) = mailparse::parse_headers(raw.as_bytes()).map_err(err)?;
    Ok(headers
        .iter()
        .map(|h| (h.get_key(), h.get_value()))
        .collect())
}

/// Header lookups over `(name, value)` pairs, case-insensitive, first wins.
struct Headers(Vec<(String, String)>);

impl Headers {
    fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim().to_string())
    }
}

fn first_text_plain(mail: &mailparse::ParsedMail<'_>) -> Option<String> {
    if mail.subparts.is_empty() {
        let ct = mail.ctype.mimetype.to_ascii_lowercase();
        return (ct == "text/plain").then(|| mail.get_body().ok()).flatten();
    }
    mail.subparts.iter().find_map(first_text_plain)
}

/// Parses one Inbound Parse post.
pub fn parse(req: &WebhookRequest) -> Result<InboundMessage, ParseError> {
    let ct = req.header("content-type").unwrap_or_default();
    let boundary = multipart::boundary(ct).ok_or_else(|| err("not multipart/form-data"))?;
    let parts = multipart::parse(&req.body, &boundary).map_err(err)?;
    let charsets = parts
        .iter()
        .find(|p| p.name == "charsets")
        .and_then(|p| serde_json::from_slice::<serde_json::Value>(&p.data).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default();
    let form = Form { parts, charsets };

    let (headers, raw_text) = if let Some(raw) = form.get("headers") {
        (Headers(header_pairs(&raw)?), None)
    } else if let Some(raw) = form.get("email") {
        let mail = mailparse::parse_mail(raw.as_bytes()).map_err(err)?;
        let pairs = mail
            .headers
            .iter()
            .map(|h| (h.get_key(), h.get_value()))
            .collect();
        (Headers(pairs), first_text_plain(&mail))
    } else {
        return Err(err("neither a headers nor an email field"));
    };
    let envelope: serde_json::Value = form
        .get("envelope")
        .and_then(|e| serde_json::from_str(&e).ok())
        .unwrap_or_default();

    let from = form
        .get("from")
        .or_else(|| headers.get("From"))
        .and_then(|f| email::mailto(&f))
        .or_else(|| envelope["from"].as_str().and_then(email::mailto))
        .ok_or_else(|| err("no sender address"))?;
    let to = envelope["to"]
        .as_array()
        .and_then(|a| a.iter().filter_map(|v| v.as_str()).find_map(email::mailto))
        .or_else(|| {
            form.get("to")
                .or_else(|| headers.get("To"))
                .and_then(|t| email::mailto(&t))
        })
        .ok_or_else(|| err("no recipient address"))?;

    let received_at_ms = headers
        .get("Date")
        .and_then(|d| mailparse::dateparse(&d).ok())
        .map(|s| s * 1000);
    let media = form
        .parts
        .iter()
        .filter(|p| {
            p.filename.is_some() || p.name.starts_with("attachment") && p.name != "attachment-info"
        })
        .filter(|p| p.name != "attachments")
        .map(inbound::media)
        .collect();

    Ok(InboundEmail {
        from,
        to,
        body: form.get("text").or(raw_text).or_else(|| form.get("html")),
        subject: form.get("subject").or_else(|| headers.get("Subject")),
        headers: inbound::threading(|name| headers.get(name)),
        media,
        received_at_ms,
    }
    .into_message(&req.body))
}
