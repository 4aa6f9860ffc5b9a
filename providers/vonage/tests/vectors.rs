//! Every shared Vonage signature vector through the pure verifiers and through the adapter's
//! `verify`, with the parameters delivered as a GET query, a POST form and a POST JSON body.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use weft_provider::{ConnectionSpec, Provider, ProviderKind};
use weft_testkit::{request, vectors};
use weft_vonage::verify::{verify_jwt, verify_sig, SigMethod};

/// The vectors' fixed clock (vectors/README.md).
const CLOCK: i64 = 1_767_225_600;
const URL: &str = "https://weft.example/webhooks/vonage/vonage-main/status";

fn params(case: &serde_json::Value) -> Vec<(String, String)> {
    case["params"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn adapter(api: &str, method: &str, secret: &str) -> Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("vonage-main", ProviderKind::Vonage);
    spec.settings.insert("api".into(), api.into());
    spec.settings
        .insert("signature_method".into(), method.into());
    spec.credentials.insert("api_key", "9e831e45");
    spec.credentials
        .insert("api_secret", "not-the-signature-secret");
    spec.credentials.insert("signature_secret", secret);
    weft_vonage::build(&spec).unwrap()
}

#[test]
fn sms_sig_vectors_pure() {
    vectors::check_all("vonage_sms_sig.json", |case| {
        let method: SigMethod = case["method"].as_str().unwrap().parse().unwrap();
        let secret = case["signature_secret"].as_str().unwrap();
        verify_sig(&params(case), method, secret.as_bytes(), CLOCK, 300).is_ok()
    });
}

#[test]
fn sms_sig_vectors_signing_string() {
    for case in vectors::cases("vonage_sms_sig.json") {
        if let Some(want) = case["signing_string"].as_str() {
            assert_eq!(
                weft_vonage::verify::signing_string(&params(&case)),
                want,
                "{}",
                case["name"]
            );
        }
    }
}

#[test]
fn sms_sig_vectors_through_the_adapter_in_every_transport() {
    for transport in ["get", "form", "json"] {
        vectors::check_all("vonage_sms_sig.json", |case| {
            let p = adapter(
                "sms",
                case["method"].as_str().unwrap(),
                case["signature_secret"].as_str().unwrap(),
            );
            let pairs = params(case);
            let req = match transport {
                "get" => {
                    let q = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs.iter())
                        .finish();
                    request("GET", &format!("{URL}?{q}"), "status", &[], "", CLOCK)
                }
                "form" => {
                    let body = form_urlencoded::Serializer::new(String::new())
                        .extend_pairs(pairs.iter())
                        .finish();
                    request(
                        "POST",
                        URL,
                        "status",
                        &[("content-type", "application/x-www-form-urlencoded")],
                        body,
                        CLOCK,
                    )
                }
                _ => {
                    let obj: serde_json::Map<String, serde_json::Value> =
                        pairs.into_iter().map(|(k, v)| (k, v.into())).collect();
                    let body = serde_json::Value::Object(obj).to_string();
                    request(
                        "POST",
                        URL,
                        "status",
                        &[("content-type", "application/json")],
                        body,
                        CLOCK,
                    )
                }
            };
            p.verify(&req).is_ok()
        });
    }
}

#[test]
fn signed_webhook_jwt_vectors_pure() {
    vectors::check_all("vonage_signed_webhook_jwt.json", |case| {
        let auth = case["headers"]["Authorization"].as_str();
        let body = case["body"].as_str().unwrap();
        let secret = case["signature_secret"].as_str().unwrap();
        verify_jwt(auth, body.as_bytes(), secret.as_bytes(), None, CLOCK, 300).is_ok()
    });
}

#[test]
fn signed_webhook_jwt_vectors_through_the_adapter() {
    vectors::check_all("vonage_signed_webhook_jwt.json", |case| {
        let p = adapter(
            "messages",
            "sha256",
            case["signature_secret"].as_str().unwrap(),
        );
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = case["headers"]["Authorization"].as_str() {
            headers.push(("Authorization", a));
        }
        let req = request(
            "POST",
            URL,
            "status",
            &headers,
            case["body"].as_str().unwrap().to_string(),
            CLOCK,
        );
        p.verify(&req).is_ok()
    });
}

#[test]
fn sms_sig_is_stale_outside_the_window() {
    let case = vectors::cases("vonage_sms_sig.json")
        .into_iter()
        .find(|c| c["name"] == "dlr_sha256")
        .unwrap();
    let secret = case["signature_secret"].as_str().unwrap().as_bytes();
    assert!(verify_sig(&params(&case), SigMethod::Sha256, secret, CLOCK + 300, 300).is_ok());
    assert_eq!(
        verify_sig(&params(&case), SigMethod::Sha256, secret, CLOCK + 301, 300),
        Err(weft_provider::VerifyError::Stale)
    );
    assert_eq!(
        verify_sig(&params(&case), SigMethod::Sha256, secret, CLOCK - 301, 300),
        Err(weft_provider::VerifyError::Stale)
    );
}
