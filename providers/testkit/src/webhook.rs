//! Webhook cases: an incoming request and the events it must become, or its rejection.

use crate::json_contains;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use weft_provider::{Provider, WebhookError, WebhookRequest};

/// Builds a [`WebhookRequest`].
pub fn request(
    method: &str,
    url: &str,
    kind: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
    now_unix: i64,
) -> WebhookRequest {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        map.append(
            HeaderName::from_bytes(k.as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    WebhookRequest {
        method: Method::from_bytes(method.as_bytes()).unwrap(),
        url: url.to_string(),
        kind: kind.to_string(),
        headers: map,
        body: body.into(),
        now_unix,
    }
}

#[derive(Debug, Clone)]
pub enum WebhookExpect {
    /// `verify` must fail.
    Rejected,
    /// `verify` passes, `parse` must fail.
    Unparseable,
    /// `verify` passes and `parse` yields events containing this JSON array (subset match,
    /// same length).
    Events(serde_json::Value),
}

#[derive(Debug, Clone)]
pub struct WebhookCase {
    pub name: &'static str,
    pub request: WebhookRequest,
    pub expect: WebhookExpect,
}

/// Runs every case through `verify` and `parse`, and through `verify_then_parse` (which the
/// gateway calls; an adapter may override it), which must agree with them.
pub fn run_webhook_cases(provider: &dyn Provider, cases: &[WebhookCase]) {
    assert!(!cases.is_empty(), "no webhook cases");
    for case in cases {
        let name = case.name;
        let verified = provider.verify(&case.request);
        let both = provider.verify_then_parse(&case.request);
        match &case.expect {
            WebhookExpect::Rejected => {
                assert!(
                    verified.is_err(),
                    "{name}: a forged or unsigned webhook was accepted"
                );
                assert!(
                    matches!(both, Err(WebhookError::Verify(_))),
                    "{name}: verify_then_parse did not reject it: {both:?}"
                );
            }
            WebhookExpect::Unparseable => {
                assert!(verified.is_ok(), "{name}: verify failed: {verified:?}");
                assert!(
                    provider.parse(&case.request).is_err(),
                    "{name}: expected a parse error"
                );
                assert!(
                    matches!(both, Err(WebhookError::Parse(_))),
                    "{name}: verify_then_parse did not fail to parse: {both:?}"
                );
            }
            WebhookExpect::Events(want) => {
                assert!(verified.is_ok(), "{name}: verify failed: {verified:?}");
                let events = provider
                    .parse(&case.request)
                    .unwrap_or_else(|e| panic!("{name}: parse failed: {e}"));
                let got = serde_json::to_value(&events).unwrap();
                assert!(
                    json_contains(&got, want),
                    "{name}: events\n  {got}\ndo not contain\n  {want}"
                );
                let one_pass = both.unwrap_or_else(|e| panic!("{name}: verify_then_parse: {e}"));
                assert_eq!(
                    serde_json::to_value(&one_pass).unwrap(),
                    got,
                    "{name}: verify_then_parse gave other events than parse"
                );
            }
        }
    }
}
