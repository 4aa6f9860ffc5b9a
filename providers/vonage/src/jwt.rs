//! JWTs we make: the RS256 application token for Messages API requests, and HS256 tokens as
//! Vonage signs its webhooks (used by the simulator and tests; verification is in `verify`).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use sha2::{Digest, Sha256};
use weft_provider::SendError;

/// How long a minted application token lives (PROVIDERS.md §2.2: `exp` = `iat` + 15 min).
pub const TOKEN_LIFETIME_SECS: i64 = 15 * 60;

/// Mints RS256 application JWTs (`application_id`, `iat`, `jti`, `exp`).
#[derive(Clone)]
pub struct JwtSigner {
    application_id: String,
    key: EncodingKey,
}

impl std::fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtSigner")
            .field("application_id", &self.application_id)
            .finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// Reads a PKCS#8 or PKCS#1 RSA private key in PEM. A key pasted into one line with
    /// literal `\n` escapes (as environment variables often carry it) is accepted too.
    pub fn from_pem(application_id: &str, pem: &str) -> Result<Self, String> {
        let pem = if pem.contains('\n') {
            pem.to_string()
        } else {
            pem.replace("\\n", "\n")
        };
        let key = EncodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(JwtSigner {
            application_id: application_id.to_string(),
            key,
        })
    }

    pub fn application_id(&self) -> &str {
        &self.application_id
    }

    /// A fresh token issued at `now` (Unix seconds), with a random `jti`.
    pub fn mint(&self, now: i64) -> Result<String, SendError> {
        let claims = serde_json::json!({
            "application_id": self.application_id,
            "iat": now,
            "jti": random_uuid(),
            "exp": now + TOKEN_LIFETIME_SECS,
        });
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims, &self.key)
            .map_err(|e| SendError::config(format!("cannot sign the Vonage application JWT: {e}")))
    }
}

/// A random version-4 UUID string (for `jti`, nonces and simulated ids).
pub fn random_uuid() -> String {
    let mut b: [u8; 16] = rand::random();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Lower-case hex SHA-256, as in the `payload_hash` claim.
pub fn payload_hash(body: &[u8]) -> String {
    hex::encode(Sha256::digest(body))
}

/// An HS256 JWT over `claims`, as Vonage signs webhooks (header `{"alg":"HS256","typ":"JWT"}`).
pub fn sign_hs256(secret: &[u8], claims: &serde_json::Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    let signing_input = format!("{header}.{payload}");
    let sig = weft_provider::verify::hmac_sha256(secret, signing_input.as_bytes());
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

/// The claims Vonage puts in a signed webhook for `body`: `api_key`, `application_id`, `iat`,
/// `jti`, `payload_hash`.
pub fn webhook_claims(
    api_key: &str,
    application_id: &str,
    iat: i64,
    body: &[u8],
) -> serde_json::Value {
    serde_json::json!({
        "iat": iat,
        "jti": random_uuid(),
        "payload_hash": payload_hash(body),
        "api_key": api_key,
        "application_id": application_id,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn uuids_look_like_v4() {
        let u = random_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
        assert_ne!(u, random_uuid());
    }

    #[test]
    fn rejects_garbage_keys() {
        assert!(JwtSigner::from_pem(
            "app",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .is_err());
    }

    #[test]
    fn hs256_tokens_verify() {
        let body = br#"{"a":1}"#;
        let token = sign_hs256(b"secret", &webhook_claims("key", "app", 100, body));
        let auth = format!("Bearer {token}");
        assert!(crate::verify::verify_jwt(Some(&auth), body, b"secret", None, 100, 300).is_ok());
        assert!(crate::verify::verify_jwt(Some(&auth), body, b"other", None, 100, 300).is_err());
    }
}
