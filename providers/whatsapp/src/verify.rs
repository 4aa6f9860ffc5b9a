//! Pure webhook checks: the `X-Hub-Signature-256` HMAC of POSTs and the `hub.verify_token` of
//! the GET subscription handshake.
//!
//! Signature: `sha256=` + hex `HMAC-SHA256(key = app secret, msg = raw body)`, compared in
//! constant time over the lower-case hex digest. Re-serialized bodies, a missing prefix or a legacy
//! SHA-1 `X-Hub-Signature` alone are rejected (vectors `meta_x_hub_signature_256.json`).

use weft_provider::verify::{constant_time_eq, hmac_sha256};
use weft_provider::VerifyError;

/// The signature header of every webhook POST.
pub const SIGNATURE_HEADER: &str = "X-Hub-Signature-256";

/// Checks `header` (the value of `X-Hub-Signature-256`, if any) against `body`.
pub fn verify_signature(
    app_secret: &str,
    header: Option<&str>,
    body: &[u8],
) -> Result<(), VerifyError> {
    if app_secret.is_empty() {
        return Err(VerifyError::NotConfigured);
    }
    let header = header
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let hex_digest = header
        .strip_prefix("sha256=")
        .ok_or_else(|| VerifyError::Malformed("expected sha256=<hex>".into()))?;
    if hex_digest.len() != 64 || !hex_digest.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(VerifyError::Malformed("expected 64 hex digits".into()));
    }
    // Meta sends lower-case hex; the digest is compared as text, so an upper-cased digit is a
    // different (forged) signature.
    let expected = hex::encode(hmac_sha256(app_secret.as_bytes(), body));
    if constant_time_eq(hex_digest.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

/// The GET handshake: `hub.mode=subscribe`, `hub.verify_token` equal to ours (constant time)
/// and a `hub.challenge` to echo. Returns the challenge.
pub fn check_handshake(
    verify_token: &str,
    mode: Option<&str>,
    token: Option<&str>,
    challenge: Option<&str>,
) -> Result<String, VerifyError> {
    if verify_token.is_empty() {
        return Err(VerifyError::NotConfigured);
    }
    if mode != Some("subscribe") {
        return Err(VerifyError::Malformed("hub.mode must be subscribe".into()));
    }
    let token = token.ok_or(VerifyError::Missing("hub.verify_token"))?;
    if !constant_time_eq(token.as_bytes(), verify_token.as_bytes()) {
        return Err(VerifyError::Mismatch);
    }
    match challenge {
        Some(c) if !c.is_empty() && c.len() <= 1024 && !c.chars().any(char::is_control) => {
            Ok(c.to_string())
        }
        Some(_) => Err(VerifyError::Malformed(
            "hub.challenge is empty or too long".into(),
        )),
        None => Err(VerifyError::Missing("hub.challenge")),
    }
}

/// `sha256=<hex>` for `body`: what Meta sends (simulators sign with it).
pub fn sign(app_secret: &str, body: &[u8]) -> String {
    format!(
        "sha256={}",
        hex::encode(hmac_sha256(app_secret.as_bytes(), body))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies() {
        let sig = sign("s3cret", b"{}");
        assert_eq!(sig.len(), 71);
        assert_eq!(verify_signature("s3cret", Some(&sig), b"{}"), Ok(()));
        let upper = sig.to_uppercase().replace("SHA256", "sha256");
        assert_eq!(
            verify_signature("s3cret", Some(&upper), b"{}"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature("other", Some(&sig), b"{}"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature("s3cret", Some(&sig), b"{ }"),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_signature("s3cret", None, b"{}"),
            Err(VerifyError::Missing(SIGNATURE_HEADER))
        );
        assert!(matches!(
            verify_signature("s3cret", Some(&sig[7..]), b"{}"),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            verify_signature("s3cret", Some("sha256=zz"), b"{}"),
            Err(VerifyError::Malformed(_))
        ));
        assert_eq!(
            verify_signature("", Some(&sig), b"{}"),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn handshake() {
        let ok = check_handshake("tok", Some("subscribe"), Some("tok"), Some("1158201444"));
        assert_eq!(ok.as_deref(), Ok("1158201444"));
        assert_eq!(
            check_handshake("tok", Some("subscribe"), Some("tok2"), Some("1")),
            Err(VerifyError::Mismatch)
        );
        assert!(check_handshake("tok", Some("unsubscribe"), Some("tok"), Some("1")).is_err());
        assert!(check_handshake("tok", None, Some("tok"), Some("1")).is_err());
        assert!(check_handshake("tok", Some("subscribe"), None, Some("1")).is_err());
        assert!(check_handshake("tok", Some("subscribe"), Some("tok"), None).is_err());
        assert!(check_handshake("tok", Some("subscribe"), Some("tok"), Some("")).is_err());
    }
}
