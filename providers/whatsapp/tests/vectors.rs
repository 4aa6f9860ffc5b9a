//! Every case of the shared `meta_x_hub_signature_256.json` vectors, through the pure verifier
//! and through the adapter's `Provider::verify` (header plumbing included).
#![allow(clippy::unwrap_used)]

use weft_provider::{ConnectionSpec, InboundEvent, Provider, ProviderKind};
use weft_testkit::request;
use weft_whatsapp::verify::{verify_signature, SIGNATURE_HEADER};

const FILE: &str = "meta_x_hub_signature_256.json";

fn headers(case: &serde_json::Value) -> Vec<(String, String)> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_string()))
        .collect()
}

fn header<'a>(case: &'a serde_json::Value, name: &str) -> Option<&'a str> {
    case["headers"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .and_then(|(_, v)| v.as_str())
}

fn provider(secret: &str) -> std::sync::Arc<dyn Provider> {
    let mut spec = ConnectionSpec::new("wa", ProviderKind::WhatsappCloud);
    spec.credentials.insert("access_token", "EAAG-token");
    spec.credentials.insert("app_secret", secret);
    spec.credentials.insert("verify_token", "v");
    spec.settings
        .insert("phone_number_id".into(), "106540352242922".into());
    weft_whatsapp::build(&spec).unwrap()
}

fn webhook(case: &serde_json::Value) -> weft_provider::WebhookRequest {
    let h = headers(case);
    let refs: Vec<(&str, &str)> = h.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    request(
        "POST",
        "https://weft.example/webhooks/whatsapp_cloud/wa/webhook",
        "webhook",
        &refs,
        case["body"].as_str().unwrap().to_string(),
        1_767_225_600,
    )
}

#[test]
fn pure_verifier_passes_every_vector() {
    weft_testkit::vectors::check_all(FILE, |case| {
        let secret = case["app_secret"].as_str().unwrap();
        verify_signature(
            secret,
            header(case, SIGNATURE_HEADER),
            case["body"].as_str().unwrap().as_bytes(),
        )
        .is_ok()
    });
}

#[test]
fn adapter_verify_passes_every_vector() {
    weft_testkit::vectors::check_all(FILE, |case| {
        provider(case["app_secret"].as_str().unwrap())
            .verify(&webhook(case))
            .is_ok()
    });
}

#[test]
fn accepted_vector_bodies_parse() {
    for case in weft_testkit::vectors::cases(FILE)
        .iter()
        .filter(|c| c["valid"] == true)
    {
        let p = provider(case["app_secret"].as_str().unwrap());
        let events = p.parse(&webhook(case)).unwrap();
        assert_eq!(events.len(), 1, "{}", case["name"]);
        match &events[0] {
            InboundEvent::Message(m) => {
                // Both encodings of the same event read the same.
                assert_eq!(m.from, "tel:+4915112345678");
                assert_eq!(m.to, "tel:+15550783881");
                assert_eq!(m.profile_name.as_deref(), Some("Jana Müller"));
                assert_eq!(m.body.as_deref(), Some("Donnerstag passt — Café um 10? ☕"));
                assert_eq!(
                    m.reply_to_provider_id.as_deref(),
                    Some("wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjQ2QjFGNjE1RTcwMUQ0RkU4NgA=")
                );
                assert!(!m.forwarded);
            }
            InboundEvent::Status(s) => {
                assert_eq!(s.status, Some(weft_provider::DeliveryStatus::Delivered));
                assert_eq!(
                    s.provider_message_id,
                    "wamid.HBgLNDkxNTExMjM0NTY3OBUCABEYEjQ2QjFGNjE1RTcwMUQ0RkU4NgA="
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
