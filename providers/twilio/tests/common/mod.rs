//! Helpers shared by the webhook test files: fixed ids, a provider, and Twilio-style signing.
#![allow(dead_code, clippy::unwrap_used)]

use weft_provider::{ConnectionSpec, Provider, ProviderKind, WebhookRequest};
use weft_testkit::request;
use weft_twilio::verify::{sign, Algorithm, SIGNATURE_HEADER};

pub const AC: &str = "ACf7e90ff5618a9866758d6ace58f22b9a";
pub const TOKEN: &str = "a5dbfc1cbd89a22101c9d4c6797eab9c";
pub const SHARED: &str = "08716f4e6e50b532bd7f4ad761dcbe9a";
pub const BASE: &str = "https://weft.example.com/webhooks/twilio/tw";
pub const SM: &str = "SM5366b918259e6326de47c2397616cfeb";
pub const CA: &str = "CA0ee8a6bed1f8c64d81daeceb296d7ed0";
pub const NOW: i64 = 1_767_225_600;

pub fn status_url() -> String {
    format!("{BASE}/status?m=msg_01KDX3Z8Q4V9W2N5T7R6P1M0YA&a=att_7")
}

pub fn provider(shared_key: bool) -> std::sync::Arc<dyn Provider> {
    let mut s = ConnectionSpec::new("tw", ProviderKind::Twilio);
    s.credentials.insert("account_sid", AC);
    s.credentials.insert("auth_token", TOKEN);
    if shared_key {
        s.credentials.insert("webhook_shared_key", SHARED);
    }
    weft_twilio::build(&s).unwrap()
}

pub fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn encode(p: &[(String, String)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in p {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A POST signed with the auth token over `url` + params, with extra headers.
pub fn signed_with(
    kind: &str,
    url: &str,
    p: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> WebhookRequest {
    let params = pairs(p);
    let sig = sign(Algorithm::HmacSha1, TOKEN, url, &params);
    let mut headers = vec![
        (SIGNATURE_HEADER, sig.as_str()),
        ("content-type", "application/x-www-form-urlencoded"),
    ];
    headers.extend_from_slice(extra);
    request("POST", url, kind, &headers, encode(&params), NOW)
}

pub fn signed(kind: &str, url: &str, p: &[(&str, &str)]) -> WebhookRequest {
    signed_with(kind, url, p, &[])
}
