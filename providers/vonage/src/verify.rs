//! Pure signature checks for Vonage webhooks (PROVIDERS.md §2.1, §2.2; vectors
//! `vonage_sms_sig.json` and `vonage_signed_webhook_jwt.json`).
//!
//! - SMS API: the `sig` parameter. Every other parameter, sorted by key in byte order, as
//!   `&key=value` with `&` and `=` inside values replaced by `_`; `md5hash` is hex MD5 of that
//!   string followed by the secret, the other methods hex HMAC keyed with the secret. Compared
//!   case-insensitively in constant time. A `timestamp` parameter, when present, must be within
//!   the tolerance of the clock.
//! - Messages API: `Authorization: Bearer <JWT>`, HS256 only, keyed with the signature secret;
//!   the `payload_hash` claim must be the hex SHA-256 of the raw body. Extra claims are fine.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use std::str::FromStr;
use weft_provider::verify::{constant_time_eq, hmac_sha256, timestamp_fresh};
use weft_provider::VerifyError;

/// The dashboard's signature method for SMS API webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigMethod {
    /// Legacy: hex MD5 of the signing string followed by the secret.
    Md5Hash,
    Md5,
    Sha1,
    Sha256,
    Sha512,
}

impl SigMethod {
    pub const ALL: [SigMethod; 5] = [
        SigMethod::Md5Hash,
        SigMethod::Md5,
        SigMethod::Sha1,
        SigMethod::Sha256,
        SigMethod::Sha512,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SigMethod::Md5Hash => "md5hash",
            SigMethod::Md5 => "md5",
            SigMethod::Sha1 => "sha1",
            SigMethod::Sha256 => "sha256",
            SigMethod::Sha512 => "sha512",
        }
    }
}

impl FromStr for SigMethod {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SigMethod::ALL
            .into_iter()
            .find(|m| m.as_str().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| format!("unknown signature method {s:?}"))
    }
}

/// The string that is hashed: `&key=value` for every parameter but `sig`, sorted by key.
pub fn signing_string(params: &[(String, String)]) -> String {
    let mut sorted: Vec<&(String, String)> = params.iter().filter(|(k, _)| k != "sig").collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::new();
    for (k, v) in sorted {
        out.push('&');
        out.push_str(k);
        out.push('=');
        out.push_str(&v.replace(['&', '='], "_"));
    }
    out
}

fn hmac_hex<M: Mac + hmac::digest::KeyInit>(secret: &[u8], msg: &[u8]) -> String {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(msg);
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; an empty string never matches a real sig.
        Err(_) => String::new(),
    }
}

/// The lower-case hex `sig` for `params` (any `sig` among them is ignored).
pub fn sign_params(method: SigMethod, secret: &[u8], params: &[(String, String)]) -> String {
    let s = signing_string(params);
    match method {
        SigMethod::Md5Hash => {
            let mut h = Md5::new();
            h.update(s.as_bytes());
            h.update(secret);
            hex::encode(h.finalize())
        }
        SigMethod::Md5 => hmac_hex::<Hmac<Md5>>(secret, s.as_bytes()),
        SigMethod::Sha1 => hmac_hex::<Hmac<Sha1>>(secret, s.as_bytes()),
        SigMethod::Sha256 => hmac_hex::<Hmac<Sha256>>(secret, s.as_bytes()),
        SigMethod::Sha512 => hmac_hex::<Hmac<Sha512>>(secret, s.as_bytes()),
    }
}

/// Checks an SMS API webhook's `sig` over its parameters (as received: query, form or JSON).
/// A repeated parameter is refused: what was signed would be ambiguous.
pub fn verify_sig(
    params: &[(String, String)],
    method: SigMethod,
    secret: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    for (i, (k, _)) in params.iter().enumerate() {
        if params[..i].iter().any(|(p, _)| p == k) {
            return Err(VerifyError::Malformed(format!(
                "parameter {k} appears more than once"
            )));
        }
    }
    let sig = params
        .iter()
        .find(|(k, _)| k == "sig")
        .map(|(_, v)| v.trim().to_ascii_lowercase())
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::Missing("sig"))?;
    let expected = sign_params(method, secret, params);
    if !constant_time_eq(sig.as_bytes(), expected.as_bytes()) {
        return Err(VerifyError::Mismatch);
    }
    if let Some((_, ts)) = params.iter().find(|(k, _)| k == "timestamp") {
        let ts: i64 = ts
            .trim()
            .parse()
            .map_err(|_| VerifyError::Malformed("timestamp is not a number".into()))?;
        if !timestamp_fresh(ts, now, tolerance_secs) {
            return Err(VerifyError::Stale);
        }
    }
    Ok(())
}

fn b64url(part: &str, what: &str) -> Result<Vec<u8>, VerifyError> {
    URL_SAFE_NO_PAD
        .decode(part.trim_end_matches('='))
        .map_err(|_| VerifyError::Malformed(format!("JWT {what} is not base64url")))
}

fn json_object(
    bytes: &[u8],
    what: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, VerifyError> {
    match serde_json::from_slice::<serde_json::Value>(bytes) {
        Ok(serde_json::Value::Object(m)) => Ok(m),
        _ => Err(VerifyError::Malformed(format!(
            "JWT {what} is not a JSON object"
        ))),
    }
}

/// Checks a Messages API signed webhook: `Authorization: Bearer <JWT>` (HS256 with the
/// signature secret), `payload_hash` over the raw body, `iat` not in the future and `exp` (if
/// any) not passed beyond the tolerance, and — when both are known — the `application_id`.
pub fn verify_jwt(
    authorization: Option<&str>,
    body: &[u8],
    secret: &[u8],
    application_id: Option<&str>,
    now: i64,
    tolerance_secs: i64,
) -> Result<(), VerifyError> {
    let value = authorization
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::Missing("Authorization"))?;
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => {
            return Err(VerifyError::Malformed(
                "Authorization is not a Bearer token".into(),
            ))
        }
    };
    let parts: Vec<&str> = token.split('.').collect();
    let [header_b64, claims_b64, sig_b64] = parts.as_slice() else {
        return Err(VerifyError::Malformed("JWT must have three parts".into()));
    };
    let header = json_object(&b64url(header_b64, "header")?, "header")?;
    match header.get("alg").and_then(|a| a.as_str()) {
        Some("HS256") => {}
        other => {
            return Err(VerifyError::Malformed(format!(
                "JWT alg {} is not accepted (HS256 only)",
                other.unwrap_or("missing")
            )))
        }
    }
    let sig = b64url(sig_b64, "signature")?;
    let expected = hmac_sha256(secret, format!("{header_b64}.{claims_b64}").as_bytes());
    if !constant_time_eq(&sig, &expected) {
        return Err(VerifyError::Mismatch);
    }
    let claims = json_object(&b64url(claims_b64, "claims")?, "claims")?;
    let hash = claims
        .get("payload_hash")
        .and_then(|h| h.as_str())
        .ok_or_else(|| VerifyError::Malformed("JWT has no payload_hash claim".into()))?
        .to_ascii_lowercase();
    if !constant_time_eq(hash.as_bytes(), crate::jwt::payload_hash(body).as_bytes()) {
        return Err(VerifyError::Mismatch);
    }
    let number = |name: &str| -> Result<Option<i64>, VerifyError> {
        match claims.get(name) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(v) => v
                .as_i64()
                .or_else(|| v.as_f64().map(|f| f as i64))
                .map(Some)
                .ok_or_else(|| VerifyError::Malformed(format!("JWT claim {name} is not a number"))),
        }
    };
    if let Some(iat) = number("iat")? {
        if iat > now + tolerance_secs {
            return Err(VerifyError::Stale);
        }
    }
    if let Some(exp) = number("exp")? {
        if now > exp + tolerance_secs {
            return Err(VerifyError::Stale);
        }
    }
    if let (Some(want), Some(got)) = (
        application_id,
        claims.get("application_id").and_then(|a| a.as_str()),
    ) {
        if want != got {
            return Err(VerifyError::Mismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn signing_string_sorts_and_replaces() {
        let params = p(&[("b", "x=y&z"), ("a", "1"), ("sig", "ignored")]);
        assert_eq!(signing_string(&params), "&a=1&b=x_y_z");
    }

    #[test]
    fn round_trips_every_method() {
        for m in SigMethod::ALL {
            let mut params = p(&[
                ("messageId", "1"),
                ("status", "delivered"),
                ("timestamp", "1000"),
            ]);
            let sig = sign_params(m, b"secret", &params);
            params.push(("sig".into(), sig.to_ascii_uppercase()));
            assert_eq!(
                verify_sig(&params, m, b"secret", 1000, 300),
                Ok(()),
                "{m:?}"
            );
            assert_eq!(
                verify_sig(&params, m, b"secret", 1400, 300),
                Err(VerifyError::Stale),
                "{m:?}"
            );
            assert_eq!(
                verify_sig(&params, m, b"wrong", 1000, 300),
                Err(VerifyError::Mismatch),
                "{m:?}"
            );
        }
    }

    #[test]
    fn repeated_parameters_are_refused() {
        let mut params = p(&[("status", "delivered"), ("status", "failed")]);
        let sig = sign_params(SigMethod::Sha256, b"s", &params);
        params.push(("sig".into(), sig));
        assert!(matches!(
            verify_sig(&params, SigMethod::Sha256, b"s", 0, 300),
            Err(VerifyError::Malformed(_))
        ));
    }

    #[test]
    fn jwt_rejects_other_algs_and_future_tokens() {
        let body = b"{}";
        let none = format!(
            "Bearer {}.{}.",
            URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#),
            URL_SAFE_NO_PAD.encode(crate::jwt::webhook_claims("k", "a", 0, body).to_string())
        );
        assert!(matches!(
            verify_jwt(Some(&none), body, b"s", None, 0, 300),
            Err(VerifyError::Malformed(_))
        ));
        let token =
            crate::jwt::sign_hs256(b"s", &crate::jwt::webhook_claims("k", "a", 10_000, body));
        let auth = format!("Bearer {token}");
        assert_eq!(
            verify_jwt(Some(&auth), body, b"s", None, 0, 300),
            Err(VerifyError::Stale)
        );
        assert_eq!(
            verify_jwt(Some(&auth), body, b"s", Some("other-app"), 10_000, 300),
            Err(VerifyError::Mismatch)
        );
        assert_eq!(
            verify_jwt(Some(&auth), body, b"s", Some("a"), 10_000, 300),
            Ok(())
        );
        assert_eq!(
            verify_jwt(None, body, b"s", None, 0, 300),
            Err(VerifyError::Missing("Authorization"))
        );
    }
}
