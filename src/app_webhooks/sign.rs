//! Standard Webhooks signing (<https://www.standardwebhooks.com>): secrets are
//! `whsec_<base64 of 32 random bytes>`; the HMAC-SHA256 key is the decoded part, and the
//! signed content is `"{webhook-id}.{webhook-timestamp}.{body}"`.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

const PREFIX: &str = "whsec_";

/// A new signing secret (shown once, when the endpoint is created).
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut key);
    format!("{PREFIX}{}", STANDARD.encode(key))
}

/// The HMAC key inside a `whsec_…` secret (the prefix is optional, as in the spec).
fn key(secret: &str) -> Result<Vec<u8>, base64::DecodeError> {
    STANDARD.decode(secret.strip_prefix(PREFIX).unwrap_or(secret))
}

/// The `webhook-signature` header value: `v1,<base64 HMAC-SHA256>`.
pub fn signature(
    secret: &str,
    id: &str,
    timestamp_secs: i64,
    body: &[u8],
) -> Result<String, SignError> {
    let key = key(secret).map_err(|_| SignError)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|_| SignError)?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_secs.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Ok(format!(
        "v1,{}",
        STANDARD.encode(mac.finalize().into_bytes())
    ))
}

/// A stored secret that is not valid base64 (never produced by [`new_secret`]).
#[derive(Debug, thiserror::Error)]
#[error("the endpoint's signing secret is not valid base64")]
pub struct SignError;

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The example of the Standard Webhooks spec and the svix docs ("Verifying manually").
    #[test]
    fn signs_the_spec_vector() {
        let sig = signature(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn other_content_signs_differently() {
        let s = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let a = signature(s, "evt_1", 1, b"{}").unwrap();
        assert_ne!(a, signature(s, "evt_2", 1, b"{}").unwrap());
        assert_ne!(a, signature(s, "evt_1", 2, b"{}").unwrap());
        assert_ne!(a, signature(s, "evt_1", 1, b"{ }").unwrap());
    }

    #[test]
    fn new_secrets_hold_32_random_bytes() {
        let a = new_secret();
        assert!(a.starts_with("whsec_"));
        assert_eq!(key(&a).unwrap().len(), 32);
        assert_ne!(a, new_secret());
        assert!(signature("whsec_not base64!", "evt_1", 1, b"{}").is_err());
    }
}
