//! The three body shapes Mailgun posts: JSON (event webhooks), url-encoded and multipart forms
//! (inbound routes).

use crate::multipart::{self, Part};
use weft_provider::WebhookRequest;

/// A webhook body, read once.
#[derive(Debug, Clone)]
pub enum Body {
    Json(serde_json::Value),
    /// Text fields in order (repeats kept) and, for multipart, every part (files included).
    Form {
        fields: Vec<(String, String)>,
        parts: Vec<Part>,
    },
}

impl Body {
    /// Reads the body by its content type (JSON is also recognized by a leading `{`).
    pub fn read(req: &WebhookRequest) -> Result<Body, String> {
        let ct = req
            .header("content-type")
            .unwrap_or_default()
            .to_ascii_lowercase();
        if let Some(boundary) = multipart::boundary(req.header("content-type").unwrap_or_default())
        {
            let parts = multipart::parse(&req.body, &boundary)?;
            return Ok(Body::Form {
                fields: multipart::text_fields(&parts),
                parts,
            });
        }
        let looks_json = req.body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        if ct.starts_with("application/json")
            || (looks_json && !ct.starts_with("application/x-www-form-urlencoded"))
        {
            return serde_json::from_slice(&req.body)
                .map(Body::Json)
                .map_err(|e| format!("invalid JSON: {e}"));
        }
        Ok(Body::Form {
            fields: req.form_pairs(),
            parts: Vec::new(),
        })
    }

    /// The first value of a form field, matched case-insensitively (empty values skipped).
    pub fn field(&self, name: &str) -> Option<&str> {
        match self {
            Body::Form { fields, .. } => fields
                .iter()
                .find(|(k, v)| k.eq_ignore_ascii_case(name) && !v.trim().is_empty())
                .map(|(_, v)| v.as_str()),
            Body::Json(_) => None,
        }
    }
}
