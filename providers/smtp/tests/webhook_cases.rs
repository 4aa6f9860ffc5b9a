#![allow(clippy::unwrap_used)]
//! SMTP has no webhooks: no kinds are declared, and anything posted is refused and unreadable.

use weft_provider::{Channel, ConnectionSpec, ProviderKind};
use weft_testkit::{request, run_webhook_cases, WebhookCase, WebhookExpect};

fn provider() -> std::sync::Arc<dyn weft_provider::Provider> {
    let mut spec = ConnectionSpec::new("mail", ProviderKind::Smtp);
    spec.settings
        .insert("host".into(), "smtp.example.com".into());
    weft_smtp::build(&spec).unwrap()
}

#[test]
fn no_webhook_is_accepted() {
    let p = provider();
    let caps = p.capabilities();
    assert!(
        caps.webhook_kinds.is_empty(),
        "smtp declares no webhook kinds"
    );
    assert_eq!(caps.channels, vec![Channel::Email]);
    assert_eq!(p.kind(), ProviderKind::Smtp);
    let url = "https://weft.example/webhooks/smtp/mail/status?m=msg_1";
    let cases = [
        WebhookCase {
            name: "status post",
            request: request(
                "POST",
                url,
                "status",
                &[("content-type", "application/json")],
                r#"{"event":"delivered"}"#,
                1_700_000_000,
            ),
            expect: WebhookExpect::Rejected,
        },
        WebhookCase {
            name: "inbound post with a made-up signature",
            request: request(
                "POST",
                url,
                "inbound",
                &[("x-signature", "abc")],
                "from=a@b",
                1_700_000_000,
            ),
            expect: WebhookExpect::Rejected,
        },
    ];
    run_webhook_cases(p.as_ref(), &cases);
    assert!(p.parse(&cases[0].request).is_err());
    assert!(p.handshake(&cases[0].request).is_none());
}

#[test]
fn build_lists_every_problem() {
    let mut spec = ConnectionSpec::new("mail", ProviderKind::Smtp);
    spec.settings.insert("tls".into(), "tls1.3".into());
    spec.credentials.insert("password", "only-a-password");
    let err = weft_smtp::build(&spec).err().unwrap();
    assert_eq!(err.connection, "mail");
    assert_eq!(err.problems.len(), 3, "{:?}", err.problems);
    assert!(!err.to_string().contains("only-a-password"));
}
