//! Every case of the shared `telegram_secret_token.json` vectors, through the pure verifier and
//! through the adapter's `Provider::verify` (header plumbing included).
#![allow(clippy::unwrap_used)]

use weft_provider::{ConnectionSpec, ProviderKind};
use weft_telegram::verify::{verify_secret, SECRET_HEADER};
use weft_testkit::request;

const FILE: &str = "telegram_secret_token.json";

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
        verify_secret(
            case["secret_token"].as_str().unwrap(),
            header(case, SECRET_HEADER),
        )
        .is_ok()
    });
}

#[test]
fn adapter_verify_passes_every_vector() {
    weft_testkit::vectors::check_all(FILE, |case| {
        let mut spec = ConnectionSpec::new("tg", ProviderKind::Telegram);
        spec.credentials
            .insert("bot_token", "7000000001:AAH-test_token-0123456789");
        spec.credentials
            .insert("secret_token", case["secret_token"].as_str().unwrap());
        let p = weft_telegram::build(&spec).unwrap();
        let headers: Vec<(&str, &str)> = case["headers"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str().unwrap()))
            .collect();
        let req = request(
            "POST",
            "https://weft.example/webhooks/telegram/tg/updates",
            "updates",
            &headers,
            case["body"].as_str().unwrap().to_string(),
            1_767_225_600,
        );
        let ok = p.verify(&req).is_ok();
        if ok {
            // An accepted vector body also parses into one message.
            assert_eq!(p.parse(&req).unwrap().len(), 1);
        }
        ok
    });
}
