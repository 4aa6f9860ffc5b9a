//! Pure verification of SendGrid webhooks.
//!
//! **Event Webhook**: ECDSA P-256 / SHA-256 over the bytes `timestamp header + raw body`
//! (a trailing `\r\n` is part of the body). The signature header is base64 DER; the key is
//! base64 DER SubjectPublicKeyInfo. SendGrid's signatures are randomized and about half are
//! high-S, so S is normalized to low-S before verifying. By default the timestamp's age is not
//! checked, like SendGrid's own SDKs: the signature covers the whole body, so a replay can only
//! repeat events the gateway already de-duplicates on `sg_event_id`, while an age limit could
//! refuse SendGrid's own retries (whether it re-signs them is not documented). Set
//! `signature_max_age_seconds` to enforce one.
//!
//! **Inbound Parse** has no signature: its URL must carry `?secret=<inbound_secret>`, compared
//! in constant time.

use base64::Engine;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;
use weft_provider::verify::{constant_time_eq, timestamp_fresh};
use weft_provider::VerifyError;

/// Header with the base64 DER signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Email-Event-Webhook-Signature";
/// Header with the Unix timestamp that prefixes the signed bytes.
pub const TIMESTAMP_HEADER: &str = "X-Twilio-Email-Event-Webhook-Timestamp";
/// Query parameter carrying the Inbound Parse secret.
pub const INBOUND_SECRET_PARAM: &str = "secret";

/// Reads a public key given as base64 DER SPKI (or a PEM block of it).
pub fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let b64: String = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .concat();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64.as_bytes())
        .map_err(|e| format!("not base64: {e}"))?;
    VerifyingKey::from_public_key_der(&der)
        .map_err(|e| format!("not a P-256 public key (DER SPKI): {e}"))
}

/// Verifies one Event Webhook request.
pub fn verify_event(
    key: &VerifyingKey,
    signature_b64: Option<&str>,
    timestamp: Option<&str>,
    body: &[u8],
    now_unix: i64,
    max_age_seconds: Option<u64>,
) -> Result<(), VerifyError> {
    let sig_b64 = signature_b64
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
    let ts = timestamp
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or(VerifyError::Missing(TIMESTAMP_HEADER))?;
    let der = base64::engine::general_purpose::STANDARD
        .decode(sig_b64.as_bytes())
        .map_err(|_| VerifyError::Malformed("signature is not base64".into()))?;
    let sig = Signature::from_der(&der)
        .map_err(|_| VerifyError::Malformed("signature is not DER ECDSA".into()))?;
    let sig = sig.normalize_s().unwrap_or(sig);
    let mut signed = Vec::with_capacity(ts.len() + body.len());
    signed.extend_from_slice(ts.as_bytes());
    signed.extend_from_slice(body);
    key.verify(&signed, &sig)
        .map_err(|_| VerifyError::Mismatch)?;
    if let Some(max_age) = max_age_seconds {
        let ts: i64 = ts
            .parse()
            .map_err(|_| VerifyError::Malformed("timestamp is not a number".into()))?;
        if !timestamp_fresh(ts, now_unix, i64::try_from(max_age).unwrap_or(i64::MAX)) {
            return Err(VerifyError::Stale);
        }
    }
    Ok(())
}

/// Checks the Inbound Parse `?secret=` against the configured one.
pub fn verify_inbound_secret(expected: &str, given: Option<&str>) -> Result<(), VerifyError> {
    let given = given
        .filter(|g| !g.is_empty())
        .ok_or(VerifyError::Missing("?secret="))?;
    if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
        Ok(())
    } else {
        Err(VerifyError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SDK_KEY: &str = "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe62gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g==";
    const SDK_SIG: &str = "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15TluLtEZtM=";
    const SDK_BODY: &str = "[{\"email\":\"hello@world.com\",\"event\":\"dropped\",\"reason\":\"Bounced Address\",\"sg_event_id\":\"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA\",\"sg_message_id\":\"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0\",\"smtp-id\":\"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>\",\"timestamp\":1600112492}]\r\n";

    fn key() -> VerifyingKey {
        match parse_public_key(SDK_KEY) {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn sdk_vector_and_its_variants() {
        let k = key();
        assert_eq!(
            verify_event(
                &k,
                Some(SDK_SIG),
                Some("1600112502"),
                SDK_BODY.as_bytes(),
                0,
                None
            ),
            Ok(())
        );
        assert_eq!(
            verify_event(
                &k,
                Some(SDK_SIG),
                Some("1600112503"),
                SDK_BODY.as_bytes(),
                0,
                None
            ),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            verify_event(&k, None, Some("1600112502"), SDK_BODY.as_bytes(), 0, None),
            Err(VerifyError::Missing(_))
        ));
        assert!(matches!(
            verify_event(&k, Some(SDK_SIG), None, SDK_BODY.as_bytes(), 0, None),
            Err(VerifyError::Missing(_))
        ));
        assert!(matches!(
            verify_event(
                &k,
                Some("!!!"),
                Some("1600112502"),
                SDK_BODY.as_bytes(),
                0,
                None
            ),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn age_is_checked_only_when_configured() {
        let k = key();
        let late = 1_600_112_502 + 3600;
        assert_eq!(
            verify_event(
                &k,
                Some(SDK_SIG),
                Some("1600112502"),
                SDK_BODY.as_bytes(),
                late,
                None
            ),
            Ok(())
        );
        assert_eq!(
            verify_event(
                &k,
                Some(SDK_SIG),
                Some("1600112502"),
                SDK_BODY.as_bytes(),
                late,
                Some(600)
            ),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_event(
                &k,
                Some(SDK_SIG),
                Some("1600112502"),
                SDK_BODY.as_bytes(),
                1_600_112_600,
                Some(600)
            ),
            Ok(())
        );
    }

    #[test]
    fn keys_in_pem_and_garbage() {
        let pem = format!(
            "-----BEGIN PUBLIC KEY-----\n{}\n{}\n-----END PUBLIC KEY-----\n",
            &SDK_KEY[..64],
            &SDK_KEY[64..]
        );
        assert!(parse_public_key(&pem).is_ok());
        assert!(parse_public_key("bm90IGEga2V5").is_err());
        assert!(parse_public_key("%%%").is_err());
    }

    #[test]
    fn inbound_secret() {
        assert_eq!(
            verify_inbound_secret("s3cret-s3cret-s3cret", Some("s3cret-s3cret-s3cret")),
            Ok(())
        );
        assert_eq!(
            verify_inbound_secret("s3cret-s3cret-s3cret", Some("s3cret-s3cret-s3creT")),
            Err(VerifyError::Mismatch)
        );
        assert!(matches!(
            verify_inbound_secret("s3cret", None),
            Err(VerifyError::Missing(_))
        ));
        assert!(matches!(
            verify_inbound_secret("s3cret", Some("")),
            Err(VerifyError::Missing(_))
        ));
    }
}
