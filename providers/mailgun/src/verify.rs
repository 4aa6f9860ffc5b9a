//! Pure verification of Mailgun webhooks.
//!
//! Event webhooks carry `{"signature":{timestamp, token, signature}}` in the JSON body; inbound
//! routes carry `timestamp`, `token`, `signature` as top-level form fields. The signature is
//! lower-case `hex(HMAC-SHA256(key = webhook signing key, msg = timestamp + token))`, compared
//! in constant time. Timestamps further than `signature_max_age_seconds` (default 900 s, as
//! Mailgun's SDK) from the verifier's clock are stale.
//!
//! The signature does not cover the body, so a captured token could be pasted onto a forged
//! body: [`ReplayGuard`] remembers recent tokens with a hash of the body they came with and
//! refuses a token seen with a different body. The same token with the same body (Mailgun
//! retrying a delivery) is let through; the gateway de-duplicates its events.

use crate::body::Body;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use weft_provider::verify::{constant_time_eq, hmac_sha256_hex, timestamp_fresh};
use weft_provider::{VerifyError, WebhookRequest};

/// The signature fields of one webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub timestamp: String,
    pub token: String,
    pub signature: String,
}

fn json_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Finds the signature fields in a body of either shape.
pub fn extract(body: &Body) -> Result<Signed, VerifyError> {
    let (timestamp, token, signature) = match body {
        Body::Json(v) => {
            let s = &v["signature"];
            (
                json_text(&s["timestamp"]),
                json_text(&s["token"]),
                json_text(&s["signature"]),
            )
        }
        Body::Form { .. } => (
            body.field("timestamp").map(String::from),
            body.field("token").map(String::from),
            body.field("signature").map(String::from),
        ),
    };
    Ok(Signed {
        timestamp: timestamp.ok_or(VerifyError::Missing("signature.timestamp"))?,
        token: token.ok_or(VerifyError::Missing("signature.token"))?,
        signature: signature.ok_or(VerifyError::Missing("signature.signature"))?,
    })
}

/// Checks the HMAC and the timestamp's age.
pub fn check(
    key: &str,
    s: &Signed,
    now_unix: i64,
    max_age_seconds: u64,
) -> Result<(), VerifyError> {
    let expected = hmac_sha256_hex(
        key.as_bytes(),
        format!("{}{}", s.timestamp, s.token).as_bytes(),
    );
    if !constant_time_eq(expected.as_bytes(), s.signature.trim().as_bytes()) {
        return Err(VerifyError::Mismatch);
    }
    let ts: f64 = s
        .timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("timestamp is not a number".into()))?;
    if !ts.is_finite()
        || !timestamp_fresh(
            ts as i64,
            now_unix,
            i64::try_from(max_age_seconds).unwrap_or(i64::MAX),
        )
    {
        return Err(VerifyError::Stale);
    }
    Ok(())
}

/// Tokens by body hash, and the order they were first seen in.
type Seen = (HashMap<String, [u8; 32]>, VecDeque<String>);

/// Recently seen tokens and the body hash each came with; bounded, oldest forgotten first.
#[derive(Debug)]
pub struct ReplayGuard {
    capacity: usize,
    inner: Mutex<Seen>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        ReplayGuard::new(10_000)
    }
}

impl ReplayGuard {
    pub fn new(capacity: usize) -> Self {
        ReplayGuard {
            capacity: capacity.max(1),
            inner: Mutex::new((HashMap::new(), VecDeque::new())),
        }
    }

    /// Records `token` with `body`; refuses a token already seen with another body.
    pub fn check(&self, token: &str, body: &[u8]) -> Result<(), VerifyError> {
        let hash: [u8; 32] = Sha256::digest(body).into();
        // A poisoned lock only means another verify panicked; the map is still usable.
        let mut guard = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (seen, order) = &mut *guard;
        match seen.get(token) {
            Some(h) if h == &hash => Ok(()),
            Some(_) => Err(VerifyError::Mismatch),
            None => {
                seen.insert(token.to_string(), hash);
                order.push_back(token.to_string());
                while order.len() > self.capacity {
                    if let Some(old) = order.pop_front() {
                        seen.remove(&old);
                    }
                }
                Ok(())
            }
        }
    }
}

/// Verifies a webhook request end to end: fields, HMAC, age, replay.
pub fn verify_request(
    req: &WebhookRequest,
    key: &str,
    max_age_seconds: u64,
    replay: &ReplayGuard,
) -> Result<(), VerifyError> {
    let body = Body::read(req).map_err(VerifyError::Malformed)?;
    let signed = extract(&body)?;
    check(key, &signed, req.now_unix, max_age_seconds)?;
    replay.check(&signed.token, &req.body)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "9dba3544b1d5499e7be76f11fbf8abc7";

    fn signed() -> Signed {
        Signed {
            timestamp: "1767225600".into(),
            token: "5b2f684abb1240704c80611a40d306c6b868762a7d7cf27982".into(),
            signature: "73dec63ec91d85c884193a26e7674f5d746bd62f03f77412ce09da16215bd862".into(),
        }
    }

    #[test]
    fn hmac_and_age() {
        assert_eq!(check(KEY, &signed(), 1_767_225_605, 900), Ok(()));
        assert_eq!(
            check(KEY, &signed(), 1_767_225_600 + 901, 900),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(KEY, &signed(), 1_767_225_600 - 901, 900),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check("other-key", &signed(), 1_767_225_605, 900),
            Err(VerifyError::Mismatch)
        );
        let mut upper = signed();
        upper.signature = upper.signature.to_uppercase();
        assert_eq!(
            check(KEY, &upper, 1_767_225_605, 900),
            Err(VerifyError::Mismatch)
        );
    }

    #[test]
    fn replayed_tokens_need_the_same_body() {
        let g = ReplayGuard::new(2);
        assert_eq!(g.check("t1", b"a"), Ok(()));
        assert_eq!(g.check("t1", b"a"), Ok(()));
        assert_eq!(g.check("t1", b"b"), Err(VerifyError::Mismatch));
        assert_eq!(g.check("t2", b"x"), Ok(()));
        assert_eq!(g.check("t3", b"x"), Ok(()));
        // t1 fell out of the bounded window.
        assert_eq!(g.check("t1", b"b"), Ok(()));
    }

    #[test]
    fn fields_from_json_and_forms() {
        let json = Body::Json(
            serde_json::json!({"signature": {"timestamp": 1767225600, "token": "t", "signature": "s"}}),
        );
        assert_eq!(
            extract(&json),
            Ok(Signed {
                timestamp: "1767225600".into(),
                token: "t".into(),
                signature: "s".into()
            })
        );
        let form = Body::Form {
            fields: vec![
                ("timestamp".into(), "1".into()),
                ("token".into(), "t".into()),
            ],
            parts: vec![],
        };
        assert_eq!(
            extract(&form),
            Err(VerifyError::Missing("signature.signature"))
        );
        assert!(extract(&Body::Json(serde_json::json!({"event-data": {}}))).is_err());
    }
}
