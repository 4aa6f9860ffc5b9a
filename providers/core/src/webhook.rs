//! A webhook request as received, and the answer an adapter wants sent back.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

/// A provider's webhook call, with the exact bytes received.
#[derive(Debug, Clone)]
pub struct WebhookRequest {
    pub method: Method,
    /// The full URL as the provider called it, rebuilt from the configured public base URL
    /// (scheme, host, port, path and query) — what signatures such as Twilio's cover.
    pub url: String,
    /// The last path segment: `status`, `inbound`, `voice`, …
    pub kind: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The verifier's clock (Unix seconds), for timestamp windows. A parameter, not
    /// `SystemTime::now()`, so tests can pin it.
    pub now_unix: i64,
}

impl WebhookRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as `application/x-www-form-urlencoded` pairs, in order, repeats kept.
    pub fn form_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(&self.body).into_owned().collect()
    }

    /// The URL's query as pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        match url::Url::parse(&self.url) {
            Ok(u) => u.query_pairs().into_owned().collect(),
            Err(_) => Vec::new(),
        }
    }

    /// The first value of a query parameter.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_pairs()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }
}

/// The answer to a webhook once its events are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookAck {
    pub status: StatusCode,
    pub content_type: Option<&'static str>,
    pub body: Bytes,
}

impl WebhookAck {
    /// `200` with no body.
    pub fn empty_ok() -> Self {
        WebhookAck {
            status: StatusCode::OK,
            content_type: None,
            body: Bytes::new(),
        }
    }

    pub fn xml(body: impl Into<Bytes>) -> Self {
        WebhookAck {
            status: StatusCode::OK,
            content_type: Some("text/xml"),
            body: body.into(),
        }
    }

    pub fn text(body: impl Into<Bytes>) -> Self {
        WebhookAck {
            status: StatusCode::OK,
            content_type: Some("text/plain"),
            body: body.into(),
        }
    }
}
