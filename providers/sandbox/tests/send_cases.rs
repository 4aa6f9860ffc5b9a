//! `build` and `send` through the `Provider` trait: capabilities, config errors, magic numbers.
#![allow(clippy::unwrap_used)]

use weft_provider::{
    Channel, ConnectionSpec, DeliveryStatus, FailureReason, OutboundMessage, Provider, ProviderKind,
};

fn spec() -> ConnectionSpec {
    ConnectionSpec::new("sbx", ProviderKind::Sandbox)
}

fn msg(id: &str, to: &str) -> OutboundMessage {
    OutboundMessage {
        message_id: id.into(),
        attempt_id: format!("att_{id}"),
        channel: Channel::Sms,
        to: to.into(),
        from: Some("+15005550006".into()),
        body: Some("hi".into()),
        subject: None,
        template: None,
        email: None,
        reply_to_provider_id: None,
        voice: None,
        // Nobody listens: the callbacks retry in the background until the test ends.
        status_callback_url: format!(
            "http://127.0.0.1:9/webhooks/sandbox/sbx/status?m={id}&a=att_{id}"
        ),
    }
}

#[test]
fn builds_with_nothing_configured() {
    let p = weft_sandbox::build(&spec()).unwrap();
    assert_eq!(p.kind(), ProviderKind::Sandbox);
    let caps = p.capabilities();
    assert_eq!(caps.channels, Channel::ALL.to_vec());
    assert_eq!(caps.webhook_kinds, ["status", "inbound"]);
}

#[test]
fn unknown_keys_are_refused_and_listed() {
    let mut s = spec();
    s.credentials.insert("auth_token", "x");
    s.settings.insert("echo".into(), true.into());
    s.settings.insert("callback_delay".into(), 5.into());
    let err = weft_sandbox::build(&s).err().unwrap();
    assert_eq!(err.connection, "sbx");
    assert_eq!(err.problems.len(), 2, "{:?}", err.problems);
    assert!(err.to_string().contains("credentials.auth_token"), "{err}");
    assert!(
        err.to_string()
            .contains("settings.callback_delay is not a sandbox setting"),
        "{err}"
    );
}

#[tokio::test]
async fn ordinary_destinations_are_queued_with_a_fresh_id() {
    let p = weft_sandbox::build(&spec()).unwrap();
    let a = p.send(&msg("msg_a", "+15550001111")).await.unwrap();
    let b = p.send(&msg("msg_b", "+15550001111")).await.unwrap();
    assert_eq!(a.status, DeliveryStatus::Queued);
    assert_eq!(a.provider_ids.len(), 1);
    assert!(a.provider_ids[0].starts_with("sbx_"));
    assert_ne!(a.provider_ids, b.provider_ids);
}

#[tokio::test]
async fn invalid_number_is_refused_for_good() {
    let p = weft_sandbox::Sandbox::new(&spec()).unwrap();
    let e = p.send(&msg("msg_a", "+15005550001")).await.unwrap_err();
    assert!(!e.is_retryable());
    assert_eq!(e.code(), "rejected");
    assert_eq!(e.reason(), FailureReason::InvalidAddress);
    assert_eq!(e.provider_code(), Some("21211"));
    assert!(p.sent().is_empty(), "a refused message is not recorded");
}

#[tokio::test]
async fn flaky_number_fails_twice_per_message_then_goes_through() {
    let p = weft_sandbox::Sandbox::new(&spec()).unwrap();
    for id in ["msg_a", "msg_b"] {
        for attempt in 1..=2 {
            let e = p.send(&msg(id, "+15005550009")).await.unwrap_err();
            assert!(e.is_retryable(), "{id} attempt {attempt}: {e:?}");
            assert_eq!(e.code(), "transient");
        }
        let ok = p.send(&msg(id, "+15005550009")).await.unwrap();
        assert_eq!(ok.status, DeliveryStatus::Queued);
        assert!(
            p.send(&msg(id, "+15005550009")).await.is_ok(),
            "stays through once through"
        );
    }
    assert_eq!(p.sent().len(), 4);
}

#[tokio::test]
async fn failing_destinations_are_still_queued() {
    let p = weft_sandbox::build(&spec()).unwrap();
    for to in ["+15005550004", "+15005550005"] {
        assert_eq!(
            p.send(&msg("msg_a", to)).await.unwrap().status,
            DeliveryStatus::Queued
        );
    }
    let mut mail = msg("msg_m", "bounce@example.com");
    mail.channel = Channel::Email;
    assert_eq!(p.send(&mail).await.unwrap().status, DeliveryStatus::Queued);
}

#[tokio::test]
async fn a_relative_callback_url_is_a_config_error() {
    let p = weft_sandbox::build(&spec()).unwrap();
    let mut m = msg("msg_a", "+15550001111");
    m.status_callback_url = "/webhooks/sandbox/sbx/status".into();
    let e = p.send(&m).await.unwrap_err();
    assert_eq!(e.code(), "config");
    assert!(!e.is_retryable());
}
