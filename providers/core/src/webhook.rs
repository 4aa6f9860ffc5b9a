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

    /// The URL's query string: after the first `?`, up to a `#`.
    fn query_str(&self) -> &str {
        match self.url.split_once('?') {
            Some((_, q)) => q.split('#').next().unwrap_or(q),
            None => "",
        }
    }

    /// The URL's query as pairs, in order.
    pub fn query_pairs(&self) -> Vec<(String, String)> {
        form_urlencoded::parse(self.query_str().as_bytes())
            .into_owned()
            .collect()
    }

    /// The first value of a query parameter (without parsing the whole URL: status callbacks
    /// read weft's ids from it on every receipt).
    pub fn query(&self, name: &str) -> Option<String> {
        form_urlencoded::parse(self.query_str().as_bytes())
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(url: &str) -> WebhookRequest {
        WebhookRequest {
            method: Method::POST,
            url: url.to_string(),
            kind: "status".into(),
            headers: HeaderMap::new(),
            body: Bytes::new(),
            now_unix: 0,
        }
    }

    #[test]
    fn query_reads_the_query_string_only() {
        let r = at("https://gw.example/webhooks/twilio/c1/status?m=msg_1&a=att%5F2&s=a+b#m=frag");
        assert_eq!(r.query("m").as_deref(), Some("msg_1"));
        assert_eq!(r.query("a").as_deref(), Some("att_2"));
        assert_eq!(r.query("s").as_deref(), Some("a b"));
        assert_eq!(r.query("x"), None);
        assert_eq!(r.query_pairs().len(), 3);
        assert_eq!(
            at("https://gw.example/webhooks/x/c1/status").query("m"),
            None
        );
        assert!(at("https://gw.example/p#a=1").query_pairs().is_empty());
    }

    proptest! {
        /// The same pairs as parsing the whole URL with the `url` crate.
        #[test]
        fn query_pairs_match_a_full_url_parse(
            pairs in proptest::collection::vec(("[a-z]{1,4}", "[ -~é]{0,8}"), 0..5),
        ) {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (k, v) in &pairs {
                q.append_pair(k, v);
            }
            let url = format!("https://gw.example:8443/webhooks/t/c/status?{}", q.finish());
            let full: Vec<(String, String)> = url::Url::parse(&url)
                .map(|u| u.query_pairs().into_owned().collect())
                .unwrap_or_default();
            prop_assert_eq!(at(&url).query_pairs(), full);
        }
    }
}
