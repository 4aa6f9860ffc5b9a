//! The provider test harness: one table format for every adapter.
//!
//! - [`SendCase`]: an outgoing message, the answer a mock provider gives, what the request must
//!   contain, and the expected receipt or classified error. The mock must be called exactly
//!   once (an unused mock fails the case), every request stays on 127.0.0.1, and no
//!   configured secret may show up in anything the adapter logged or returned.
//! - [`WebhookCase`]: an incoming request and the expected normalized events, or rejection.
//! - [`vectors`]: the shared signature test vectors.
//!
//! Expected JSON is matched as a subset: every key the case names must be present and equal,
//! extra keys in the actual value are allowed.

#![allow(clippy::unwrap_used)] // a test harness: a failed expectation is a panic by design

mod logs;
mod send;
pub mod vectors;
mod webhook;

pub use logs::LogCapture;
pub use send::{run_send_cases, MockAnswer, RequestMatch, SendCase, SendExpect};
pub use webhook::{request, run_webhook_cases, WebhookCase, WebhookExpect};

/// True if `expected` is contained in `actual`: objects by key (recursively), arrays
/// element-wise with equal length, scalars by equality.
pub fn json_contains(actual: &serde_json::Value, expected: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => e
            .iter()
            .all(|(k, ev)| a.get(k).is_some_and(|av| json_contains(av, ev))),
        (Value::Array(a), Value::Array(e)) => {
            a.len() == e.len() && a.iter().zip(e).all(|(av, ev)| json_contains(av, ev))
        }
        (a, e) => a == e,
    }
}

#[cfg(test)]
mod tests {
    use super::json_contains;
    use serde_json::json;

    #[test]
    fn subset_matching() {
        assert!(json_contains(
            &json!({"a": 1, "b": {"c": 2, "d": 3}}),
            &json!({"b": {"c": 2}})
        ));
        assert!(!json_contains(&json!({"a": 1}), &json!({"a": 2})));
        assert!(!json_contains(&json!({"a": 1}), &json!({"z": 1})));
        assert!(!json_contains(&json!([1, 2]), &json!([1])));
    }
}
