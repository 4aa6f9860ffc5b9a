//! Signing and verifying sandbox callbacks. Pure: the clock is a parameter.
//!
//! `X-Weft-Sandbox-Timestamp: <unix seconds>` and
//! `X-Weft-Sandbox-Signature: v1=<lower-case hex HMAC-SHA256(secret, "<timestamp>.<raw body>")>`.
//! Signing the timestamp with the body stops a captured callback from being replayed later
//! than [`TOLERANCE_SECS`]. Like svix, the signature header may carry several space- or
//! comma-separated `v1=` values (during a secret change); one match is enough.

use weft_provider::verify::{constant_time_eq, hmac_sha256_hex, timestamp_fresh};
use weft_provider::VerifyError;

/// Header holding `v1=<hex>`.
pub const SIGNATURE_HEADER: &str = "x-weft-sandbox-signature";
/// Header holding the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-weft-sandbox-timestamp";
/// How far a callback's timestamp may be from the verifier's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// The signature header value for `body` signed at `timestamp`: `v1=<hex>`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1={}", signature_hex(secret, timestamp, body))
}

/// Lower-case hex HMAC-SHA256 of `"<timestamp>.<body>"`.
fn signature_hex(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut payload = format!("{timestamp}.").into_bytes();
    payload.extend_from_slice(body);
    hmac_sha256_hex(secret.as_bytes(), &payload)
}

/// Checks the two headers against `body` at time `now_unix`: freshness first, then the
/// signature in constant time.
pub fn verify(
    secret: &str,
    signature: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), VerifyError> {
    if secret.is_empty() {
        return Err(VerifyError::NotConfigured);
    }
    let signature = signature.ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let timestamp = timestamp.ok_or(VerifyError::Missing(TIMESTAMP_HEADER))?;
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::Malformed("timestamp is not Unix seconds".into()))?;
    if !timestamp_fresh(ts, now_unix, TOLERANCE_SECS) {
        return Err(VerifyError::Stale);
    }
    let candidates: Vec<&str> = signature
        .split(|c: char| c == ',' || c.is_ascii_whitespace())
        .filter_map(|part| part.strip_prefix("v1="))
        .collect();
    if candidates.is_empty() {
        return Err(VerifyError::Malformed("no v1= signature".into()));
    }
    let expected = signature_hex(secret, ts, body);
    // Check every candidate (no early exit) so timing says nothing about which one matched.
    let matched = candidates.iter().fold(false, |acc, c| {
        acc | constant_time_eq(c.to_ascii_lowercase().as_bytes(), expected.as_bytes())
    });
    if matched {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "weft-sandbox-secret";
    const NOW: i64 = 1_767_225_600;
    const BODY: &[u8] = br#"{"type":"status"}"#;

    fn check(sig: Option<&str>, ts: Option<&str>, now: i64) -> Result<(), VerifyError> {
        verify(SECRET, sig, ts, BODY, now)
    }

    #[test]
    fn signs_timestamp_dot_body() {
        let sig = sign(SECRET, NOW, BODY);
        let mut msg = format!("{NOW}.").into_bytes();
        msg.extend_from_slice(BODY);
        assert_eq!(
            sig,
            format!("v1={}", hmac_sha256_hex(SECRET.as_bytes(), &msg))
        );
        assert_eq!(sig.len(), 3 + 64);
        assert_eq!(sig, sig.to_ascii_lowercase());
    }

    #[test]
    fn accepts_a_good_signature_within_the_window() {
        let sig = sign(SECRET, NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(check(Some(&sig), Some(&ts), NOW), Ok(()));
        assert_eq!(check(Some(&sig), Some(&ts), NOW + TOLERANCE_SECS), Ok(()));
        assert_eq!(check(Some(&sig), Some(&ts), NOW - TOLERANCE_SECS), Ok(()));
        assert_eq!(
            check(
                Some(&sig.to_ascii_uppercase().replace("V1=", "v1=")),
                Some(&ts),
                NOW
            ),
            Ok(())
        );
        // Rotation: any one of several signatures.
        let two = format!("v1={} {sig}", "0".repeat(64));
        assert_eq!(check(Some(&two), Some(&ts), NOW), Ok(()));
        assert_eq!(
            check(Some(&format!("v0=abc,{sig}")), Some(&ts), NOW),
            Ok(())
        );
    }

    #[test]
    fn rejects_forged_unsigned_stale_and_malformed() {
        let sig = sign(SECRET, NOW, BODY);
        let ts = NOW.to_string();
        assert_eq!(
            check(None, Some(&ts), NOW),
            Err(VerifyError::Missing(SIGNATURE_HEADER))
        );
        assert_eq!(
            check(Some(&sig), None, NOW),
            Err(VerifyError::Missing(TIMESTAMP_HEADER))
        );
        assert!(matches!(
            check(Some(&sig), Some("soon"), NOW),
            Err(VerifyError::Malformed(_))
        ));
        assert!(matches!(
            check(Some("deadbeef"), Some(&ts), NOW),
            Err(VerifyError::Malformed(_))
        ));
        assert_eq!(
            check(Some(&sig), Some(&ts), NOW + TOLERANCE_SECS + 1),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            check(Some(&sig), Some(&ts), NOW - TOLERANCE_SECS - 1),
            Err(VerifyError::Stale)
        );
        // Wrong secret, changed body, moved timestamp.
        let forged = sign("not-the-secret", NOW, BODY);
        assert_eq!(
            check(Some(&forged), Some(&ts), NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify(SECRET, Some(&sig), Some(&ts), b"{}", NOW),
            Err(VerifyError::Mismatch)
        );
        let later = (NOW + 1).to_string();
        assert_eq!(
            check(Some(&sig), Some(&later), NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            check(Some("v1="), Some(&ts), NOW),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify("", Some(&sig), Some(&ts), BODY, NOW),
            Err(VerifyError::NotConfigured)
        );
    }
}
