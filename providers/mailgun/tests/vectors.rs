#![allow(clippy::unwrap_used)]
//! Every case of the shared `mailgun_webhook_signature.json` vectors, through the adapter's own
//! `verify`: JSON event bodies, route forms (url-encoded and multipart), and bare signature
//! triples wrapped into an event body.

use serde_json::{json, Value};
use weft_provider::{ConnectionSpec, ProviderKind};
use weft_testkit::request;

fn provider(key: &str) -> std::sync::Arc<dyn weft_provider::Provider> {
    let mut spec = ConnectionSpec::new("mg", ProviderKind::Mailgun);
    spec.credentials.insert("api_key", "key-api");
    spec.credentials.insert("webhook_signing_key", key);
    spec.settings
        .insert("domain".into(), json!("mg.weft.example.com"));
    weft_mailgun::build(&spec).unwrap()
}

fn form_pairs(case: &Value) -> Vec<(String, String)> {
    case["form"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn multipart(pairs: &[(String, String)]) -> (String, Vec<u8>) {
    let b = "a1b2c3d4e5";
    let mut out = String::new();
    for (k, v) in pairs {
        out.push_str(&format!(
            "--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n"
        ));
    }
    out.push_str(&format!("--{b}--\r\n"));
    (
        format!("multipart/form-data; boundary={b}"),
        out.into_bytes(),
    )
}

/// `(kind, content type, body)` variants a case can travel in.
fn shapes(case: &Value) -> Vec<(&'static str, String, Vec<u8>)> {
    if let Some(body) = case["body"].as_str() {
        return vec![(
            "events",
            "application/json".into(),
            body.as_bytes().to_vec(),
        )];
    }
    if case["form"].is_array() {
        let pairs = form_pairs(case);
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &pairs {
            s.append_pair(k, v);
        }
        let (ct, mp) = multipart(&pairs);
        return vec![
            (
                "inbound",
                "application/x-www-form-urlencoded".into(),
                s.finish().into_bytes(),
            ),
            ("inbound", ct, mp),
        ];
    }
    let body = json!({
        "signature": {"timestamp": case["timestamp"], "token": case["token"], "signature": case["signature"]},
        "event-data": {"event": "delivered", "id": "x"}
    });
    vec![(
        "events",
        "application/json".into(),
        body.to_string().into_bytes(),
    )]
}

fn accepts(case: &Value, kind_override: Option<&str>) -> bool {
    let verdicts: Vec<bool> = shapes(case)
        .into_iter()
        .map(|(kind, ct, body)| {
            let kind = kind_override.filter(|_| kind == "events").unwrap_or(kind);
            let p = provider(case["signing_key"].as_str().unwrap());
            let url = format!("https://weft.example.com/webhooks/mailgun/mg/{kind}");
            let req = request(
                "POST",
                &url,
                kind,
                &[("content-type", ct.as_str())],
                body,
                case["verify_at"].as_i64().unwrap(),
            );
            p.verify(&req).is_ok()
        })
        .collect();
    assert!(
        verdicts.windows(2).all(|w| w[0] == w[1]),
        "{}: shapes disagree",
        case["name"]
    );
    verdicts[0]
}

#[test]
fn shared_vectors_pass() {
    weft_testkit::vectors::check_all("mailgun_webhook_signature.json", |case| accepts(case, None));
}

#[test]
fn shared_vectors_pass_for_the_status_alias() {
    weft_testkit::vectors::check_all("mailgun_webhook_signature.json", |case| {
        accepts(case, Some("status"))
    });
}

#[test]
fn valid_vectors_parse() {
    for case in weft_testkit::vectors::cases("mailgun_webhook_signature.json")
        .into_iter()
        .filter(|c| c["valid"] == json!(true))
    {
        for (kind, ct, body) in shapes(&case) {
            let p = provider(case["signing_key"].as_str().unwrap());
            let req = request(
                "POST",
                "https://weft.example.com/x",
                kind,
                &[("content-type", ct.as_str())],
                body,
                case["verify_at"].as_i64().unwrap(),
            );
            let events = p.parse(&req).unwrap();
            assert_eq!(events.len(), 1, "{}", case["name"]);
        }
    }
}
