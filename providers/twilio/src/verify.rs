//! `X-Twilio-Signature` verification (PROVIDERS.md §1 "Signature"), pure and synchronous.
//!
//! 1. Start from the full URL Twilio called (`WebhookRequest.url`, rebuilt by the gateway from
//!    its public base URL).
//! 2. Form bodies: distinct parameter names in byte order; for each, its distinct values in
//!    byte order; append `name + value`. `GET`: no parameters (they are in the URL).
//! 3. `base64(HMAC-SHA1(auth token, url + that string))`.
//! 4. Accept the URL as received, with its port removed, or with the scheme's default port
//!    added (Twilio's signer is inconsistent about ports).
//! 5. JSON bodies: the URL carries `bodySHA256=<hex SHA-256 of the raw body>`; the URL is signed
//!    with no parameters and the hash must match too.
//! 6. `X-Twilio-Webhooks-Signature-Settings: key=<id>,algorithm=HMAC_SHA256` switches to
//!    HMAC-SHA256 keyed with that SharedKey's secret, over the same string.
//!
//! The simulator signs with [`sign`], so both ends share one formula.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};
use std::borrow::Cow;
use weft_provider::verify::constant_time_eq;
use weft_provider::VerifyError;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
/// Names the signing algorithm and SharedKey (twilio-python 9.13 `RequestValidator`).
pub const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// The HMAC a signature was made with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// The classic scheme, keyed with the account's auth token.
    HmacSha1,
    /// The SharedKey scheme, keyed with the SharedKey secret.
    HmacSha256,
}

/// The secrets a connection can verify with.
#[derive(Debug, Clone, Copy)]
pub struct Keys<'a> {
    /// Account auth token (HMAC-SHA1).
    pub auth_token: &'a str,
    /// SharedKey secret (HMAC-SHA256 mode); without it that mode is refused.
    pub shared_key: Option<&'a str>,
    /// If set, the settings header's `key=` must name this SharedKey.
    pub shared_key_id: Option<&'a str>,
}

/// What was received, borrowed from the request.
#[derive(Debug, Clone, Copy)]
pub struct Signed<'a> {
    /// `POST`, `GET`, …
    pub method: &'a str,
    pub url: &'a str,
    pub body: &'a [u8],
    /// `X-Twilio-Signature`, if present.
    pub signature: Option<&'a str>,
    /// `X-Twilio-Webhooks-Signature-Settings`, if present.
    pub settings: Option<&'a str>,
}

/// The parameter part of the HMAC input: `name + value` for each distinct name in byte
/// order and each of its distinct values in byte order.
fn params_string<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>) -> String {
    let mut sorted: Vec<(&str, &str)> = pairs.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut s = String::with_capacity(sorted.iter().map(|(k, v)| k.len() + v.len()).sum());
    for (k, v) in sorted {
        s.push_str(k);
        s.push_str(v);
    }
    s
}

/// The exact HMAC input: `url` followed by [`params_string`].
pub fn signing_string(url: &str, params: &[(String, String)]) -> String {
    let tail = params_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    format!("{url}{tail}")
}

/// `base64(HMAC(key, signing_string(url, params)))`: the value of `X-Twilio-Signature`.
pub fn sign(algorithm: Algorithm, key: &str, url: &str, params: &[(String, String)]) -> String {
    let tail = params_string(params.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    KeyedMac::new(algorithm, key).sign(url, &tail)
}

/// An HMAC keyed once, signing `url + tail` for several URL variants.
#[derive(Clone)]
enum KeyedMac {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    /// Not reachable: HMAC takes keys of any length.
    Invalid,
}

impl KeyedMac {
    fn new(algorithm: Algorithm, key: &str) -> Self {
        let key = key.as_bytes();
        let mac = match algorithm {
            Algorithm::HmacSha1 => Hmac::<Sha1>::new_from_slice(key).map(KeyedMac::Sha1),
            Algorithm::HmacSha256 => Hmac::<Sha256>::new_from_slice(key).map(KeyedMac::Sha256),
        };
        mac.unwrap_or(KeyedMac::Invalid)
    }

    /// `base64(HMAC(url + tail))`.
    fn sign(&self, url: &str, tail: &str) -> String {
        fn run<M: Mac + Clone>(mac: &M, url: &str, tail: &str) -> String {
            let mut mac = mac.clone();
            mac.update(url.as_bytes());
            mac.update(tail.as_bytes());
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
        }
        match self {
            KeyedMac::Sha1(m) => run(m, url, tail),
            KeyedMac::Sha256(m) => run(m, url, tail),
            KeyedMac::Invalid => base64::engine::general_purpose::STANDARD.encode([]),
        }
    }
}

/// Reads the settings header: `None` means HMAC-SHA1; otherwise the algorithm and key id.
pub fn parse_settings(header: Option<&str>) -> Result<(Algorithm, Option<String>), VerifyError> {
    let Some(h) = header.map(str::trim).filter(|h| !h.is_empty()) else {
        return Ok((Algorithm::HmacSha1, None));
    };
    let (mut alg, mut key) = (None, None);
    for part in h.split(',') {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        match k.trim() {
            "algorithm" => alg = Some(v.trim()),
            "key" => key = Some(v.trim().to_string()),
            _ => {}
        }
    }
    match alg {
        None | Some("HMAC_SHA1") => Ok((Algorithm::HmacSha1, key)),
        Some("HMAC_SHA256") => Ok((Algorithm::HmacSha256, key)),
        Some(other) => Err(VerifyError::Malformed(format!(
            "unknown signature algorithm {other:?}"
        ))),
    }
}

/// The URL variants Twilio may have signed: as received, without its port, and with the
/// scheme's default port added (when it has none). Duplicates removed, order kept.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    if let Some((scheme, authority, rest)) = split_url(url) {
        let (userinfo, host, port) = split_authority(authority);
        match port {
            Some(_) => out.push(format!("{scheme}://{userinfo}{host}{rest}")),
            None => {
                let default = if scheme.eq_ignore_ascii_case("https") {
                    443
                } else {
                    80
                };
                out.push(format!("{scheme}://{userinfo}{host}:{default}{rest}"));
            }
        }
    }
    out.dedup();
    out
}

/// `scheme`, authority, and the rest (path, query, fragment) of an absolute URL, byte-exact.
fn split_url(url: &str) -> Option<(&str, &str, &str)> {
    let (scheme, after) = url.split_once("://")?;
    let end = after.find(['/', '?', '#']).unwrap_or(after.len());
    Some((scheme, &after[..end], &after[end..]))
}

/// `userinfo@` (kept as is), host, and port of an authority.
fn split_authority(authority: &str) -> (&str, &str, Option<&str>) {
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (&authority[..=i], &authority[i + 1..]),
        None => ("", authority),
    };
    // An IPv6 literal's colons are inside the brackets.
    let search_from = hostport.rfind(']').unwrap_or(0);
    match hostport[search_from..].rfind(':') {
        Some(i) => {
            let i = search_from + i;
            (userinfo, &hostport[..i], Some(&hostport[i + 1..]))
        }
        None => (userinfo, hostport, None),
    }
}

fn query_value(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Checks one request. `Ok` only if the signature matches one URL variant under the
/// algorithm the settings header names, and (for JSON bodies) the body hash matches.
pub fn verify(req: &Signed<'_>, keys: &Keys<'_>) -> Result<(), VerifyError> {
    Verifier::new(keys).verify(req, None)
}

/// A connection's keys, keyed once: an HMAC's keying hashes the key (two hash blocks), which
/// was a tenth of each receipt's verification when done per request.
#[derive(Clone)]
pub struct Verifier {
    auth: KeyedMac,
    shared: Option<KeyedMac>,
    shared_key_id: Option<String>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("shared_key_id", &self.shared_key_id)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    pub fn new(keys: &Keys<'_>) -> Self {
        Verifier {
            auth: KeyedMac::new(Algorithm::HmacSha1, keys.auth_token),
            shared: keys
                .shared_key
                .map(|k| KeyedMac::new(Algorithm::HmacSha256, k)),
            shared_key_id: keys.shared_key_id.map(str::to_string),
        }
    }

    /// [`verify`] with these keys. `form`: the body's form fields, if the caller parsed them
    /// already (they must come from `req.body`); otherwise the body is parsed here.
    pub fn verify(
        &self,
        req: &Signed<'_>,
        form: Option<&[(Cow<'_, str>, Cow<'_, str>)]>,
    ) -> Result<(), VerifyError> {
        let signature = req
            .signature
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(VerifyError::Missing(SIGNATURE_HEADER))?;
        let (algorithm, key_id) = parse_settings(req.settings)?;
        let mac = match algorithm {
            Algorithm::HmacSha1 => &self.auth,
            Algorithm::HmacSha256 => {
                let mac = self.shared.as_ref().ok_or(VerifyError::NotConfigured)?;
                if let Some(want) = &self.shared_key_id {
                    if key_id.as_deref() != Some(want.as_str()) {
                        return Err(VerifyError::Mismatch);
                    }
                }
                mac
            }
        };

        let is_get =
            req.method.eq_ignore_ascii_case("GET") || req.method.eq_ignore_ascii_case("HEAD");
        let mut body_ok = true;
        let tail = if is_get {
            String::new()
        } else if let Some(want) = query_value(req.url, "bodySHA256") {
            let got = hex::encode(Sha256::digest(req.body));
            body_ok = constant_time_eq(got.as_bytes(), want.to_ascii_lowercase().as_bytes());
            String::new()
        } else {
            let parsed: Vec<_>;
            let pairs = match form {
                Some(f) => f,
                None => {
                    parsed = form_urlencoded::parse(req.body).collect();
                    &parsed
                }
            };
            params_string(pairs.iter().map(|(k, v)| (k.as_ref(), v.as_ref())))
        };

        // Each comparison is constant-time. Stopping at the first matching variant tells a
        // caller only which spelling of its own URL matched; a forgery is compared against
        // every variant, so its timing does not depend on how close it came. The URL as
        // received is tried first; the other spellings are made only if it does not match.
        let matches =
            |url: &str| constant_time_eq(mac.sign(url, &tail).as_bytes(), signature.as_bytes());
        let matched =
            matches(req.url) || url_variants(req.url).iter().skip(1).any(|url| matches(url));
        if matched && body_ok {
            Ok(())
        } else {
            Err(VerifyError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sdk_unit_test_value() {
        let params = p(&[
            ("CallSid", "CA1234567890ABCDE"),
            ("Caller", "+14158675309"),
            ("Digits", "1234"),
            ("From", "+14158675309"),
            ("To", "+18005551212"),
        ]);
        let sig = sign(
            Algorithm::HmacSha1,
            "12345",
            "https://mycompany.com/myapp.php?foo=1&bar=2",
            &params,
        );
        assert_eq!(sig, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
    }

    #[test]
    fn repeated_keys_sort_values_and_drop_duplicates() {
        let s = signing_string("u", &p(&[("b", "2"), ("a", "9"), ("b", "1"), ("b", "2")]));
        assert_eq!(s, "ua9b1b2");
    }

    #[test]
    fn port_variants() {
        assert_eq!(
            url_variants("https://h.example:1234/p?q=1"),
            vec!["https://h.example:1234/p?q=1", "https://h.example/p?q=1"]
        );
        assert_eq!(
            url_variants("http://h.example/p"),
            vec!["http://h.example/p", "http://h.example:80/p"]
        );
        assert_eq!(
            url_variants("https://h.example"),
            vec!["https://h.example", "https://h.example:443"]
        );
        assert_eq!(
            url_variants("http://u:pw@[::1]:8080/x"),
            vec!["http://u:pw@[::1]:8080/x", "http://u:pw@[::1]/x"]
        );
    }

    #[test]
    fn settings_header() {
        assert_eq!(parse_settings(None), Ok((Algorithm::HmacSha1, None)));
        assert_eq!(
            parse_settings(Some("key=k1,algorithm=HMAC_SHA256")),
            Ok((Algorithm::HmacSha256, Some("k1".into())))
        );
        assert!(parse_settings(Some("algorithm=MD5")).is_err());
    }

    #[test]
    fn sha256_mode_needs_a_shared_key_and_the_right_id() {
        let url = "https://x.example/s";
        let sig = sign(Algorithm::HmacSha256, "shared", url, &[]);
        let req = Signed {
            method: "POST",
            url,
            body: b"",
            signature: Some(&sig),
            settings: Some("key=k1,algorithm=HMAC_SHA256"),
        };
        let none = Keys {
            auth_token: "tok",
            shared_key: None,
            shared_key_id: None,
        };
        assert_eq!(verify(&req, &none), Err(VerifyError::NotConfigured));
        let ok = Keys {
            shared_key: Some("shared"),
            ..none
        };
        assert_eq!(verify(&req, &ok), Ok(()));
        let other_id = Keys {
            shared_key_id: Some("k2"),
            ..ok
        };
        assert_eq!(verify(&req, &other_id), Err(VerifyError::Mismatch));
        let missing = Signed {
            signature: None,
            ..req
        };
        assert_eq!(
            verify(&missing, &ok),
            Err(VerifyError::Missing(SIGNATURE_HEADER))
        );
    }
}
