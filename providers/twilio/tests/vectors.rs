//! Every case of the shared `twilio_request_signature.json` vectors, through the pure verifier
//! and through the adapter's `Provider::verify` (header plumbing included).
#![allow(clippy::unwrap_used)]

use weft_provider::{ConnectionSpec, ProviderKind};
use weft_twilio::verify::{verify, Keys, Signed, SETTINGS_HEADER, SIGNATURE_HEADER};

const FILE: &str = "twilio_request_signature.json";

/// The raw body of a case: its JSON `body`, else its params form-encoded in order.
fn body_of(case: &serde_json::Value) -> Vec<u8> {
    if let Some(b) = case["body"].as_str() {
        return b.as_bytes().to_vec();
    }
    let mut s = form_urlencoded::Serializer::new(String::new());
    for pair in case["params"].as_array().unwrap() {
        s.append_pair(pair[0].as_str().unwrap(), pair[1].as_str().unwrap());
    }
    s.finish().into_bytes()
}

fn header<'a>(case: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

#[test]
fn pure_verifier_passes_every_vector() {
    weft_testkit::vectors::check_all(FILE, |case| {
        // The case's key is the auth token, and the SharedKey secret in HMAC-SHA256 mode.
        let key = case["auth_token"].as_str().unwrap();
        let body = body_of(case);
        let signed = Signed {
            method: case["method"].as_str().unwrap(),
            url: case["url"].as_str().unwrap(),
            body: &body,
            signature: header(case, SIGNATURE_HEADER),
            settings: header(case, SETTINGS_HEADER),
        };
        verify(
            &signed,
            &Keys {
                auth_token: key,
                shared_key: Some(key),
                shared_key_id: None,
            },
        )
        .is_ok()
    });
}

#[test]
fn adapter_verify_passes_every_vector() {
    weft_testkit::vectors::check_all(FILE, |case| {
        let key = case["auth_token"].as_str().unwrap();
        let mut spec = ConnectionSpec::new("conn_twilio", ProviderKind::Twilio);
        spec.credentials
            .insert("account_sid", "ACf7e90ff5618a9866758d6ace58f22b9a");
        spec.credentials.insert("auth_token", key);
        spec.credentials.insert("webhook_shared_key", key);
        let provider = weft_twilio::build(&spec).unwrap();
        let headers: Vec<(&str, &str)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let req = weft_testkit::request(
            case["method"].as_str().unwrap(),
            case["url"].as_str().unwrap(),
            "status",
            &headers,
            body_of(case),
            1_767_225_600,
        );
        let verified = provider.verify(&req).is_ok();
        // The gateway's one-pass path (the form read once) must judge the signature alike.
        let one_pass = !matches!(
            provider.verify_then_parse(&req),
            Err(weft_provider::WebhookError::Verify(_))
        );
        assert_eq!(
            one_pass, verified,
            "verify_then_parse disagrees with verify"
        );
        verified
    });
}

#[test]
fn valid_cases_reproduce_their_signing_string() {
    for case in weft_testkit::vectors::cases(FILE) {
        let (Some(want), Some(url)) = (
            case["signing_string"].as_str(),
            case["signed_url"].as_str().or(case["url"].as_str()),
        ) else {
            continue;
        };
        let params: Vec<(String, String)> = case["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p[0].as_str().unwrap().to_string(),
                    p[1].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert_eq!(
            weft_twilio::verify::signing_string(url, &params),
            want,
            "{}",
            case["name"]
        );
    }
}
