#![allow(clippy::unwrap_used)]
//! Every case of the shared `sendgrid_event_webhook.json` vectors, through the adapter's own
//! `verify` (kind `events` and its alias `status`).

use weft_provider::{ConnectionSpec, ProviderKind};
use weft_testkit::request;

fn accepts(case: &serde_json::Value, kind: &str) -> bool {
    let mut spec = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
    spec.credentials.insert("api_key", "SG.k");
    spec.credentials
        .insert("webhook_public_key", case["public_key"].as_str().unwrap());
    let provider = weft_sendgrid::build(&spec).unwrap();
    let headers: Vec<(&str, &str)> = case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
        .collect();
    let ts: i64 = case["headers"]["X-Twilio-Email-Event-Webhook-Timestamp"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let body = case["body"].as_str().unwrap().as_bytes().to_vec();
    let req = request(
        "POST",
        "https://weft.example.com/webhooks/sendgrid/sg/events",
        kind,
        &headers,
        body,
        ts,
    );
    provider.verify(&req).is_ok()
}

#[test]
fn shared_vectors_pass_for_events() {
    weft_testkit::vectors::check_all("sendgrid_event_webhook.json", |case| {
        accepts(case, "events")
    });
}

#[test]
fn shared_vectors_pass_for_the_status_alias() {
    weft_testkit::vectors::check_all("sendgrid_event_webhook.json", |case| {
        accepts(case, "status")
    });
}

#[test]
fn the_vector_private_key_signs_what_the_public_key_verifies() {
    // The simulator can be given the vectors' PKCS#8 key; make sure the pair matches.
    use p256::ecdsa::{signature::Signer, signature::Verifier, Signature, SigningKey};
    use p256::pkcs8::DecodePrivateKey;
    let case = weft_testkit::vectors::cases("sendgrid_event_webhook.json")
        .into_iter()
        .find(|c| c["private_key_pem"].is_string())
        .unwrap();
    let sk = SigningKey::from_pkcs8_pem(case["private_key_pem"].as_str().unwrap()).unwrap();
    let vk = weft_sendgrid::verify::parse_public_key(case["public_key"].as_str().unwrap()).unwrap();
    let sig: Signature = sk.sign(b"1767225600[]");
    assert!(vk.verify(b"1767225600[]", &sig).is_ok());
}
