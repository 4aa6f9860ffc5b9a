//! Magic destinations: what a send to them does, for tests and demos (in the spirit of
//! Twilio's test numbers; the values are the sandbox's own).

use std::collections::HashMap;
use std::sync::Mutex;
use weft_provider::{FailureReason, OutboundMessage, SendError};

/// `send` fails at once, permanently: invalid address, provider code `21211`.
pub const INVALID_NUMBER: &str = "+15005550001";
/// `send` fails with a retryable error (a simulated 503) on the first
/// [`FLAKY_FAILURES`] attempts of each message, then succeeds and is delivered.
pub const FLAKY_NUMBER: &str = "+15005550009";
/// Queued, then a `failed` callback with error code `30008`.
pub const FAILED_NUMBER: &str = "+15005550004";
/// Queued, then an `undeliverable` callback with error code `30003`.
pub const UNREACHABLE_NUMBER: &str = "+15005550005";
/// E-mail: queued, then an `undeliverable` callback (a bounce) with error code `550`.
pub const BOUNCE_EMAIL: &str = "bounce@example.com";

/// Failed attempts per message id before [`FLAKY_NUMBER`] lets a message through.
pub const FLAKY_FAILURES: u32 = 2;

/// Message ids the flaky counter remembers before it starts over (bounds its memory).
const FLAKY_MEMORY: usize = 10_000;

/// The callbacks a queued message gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// `sent`, then `delivered` (then the echo, if on).
    Delivered,
    /// One failure callback: its status word, error code and detail.
    Fails {
        status: &'static str,
        code: &'static str,
        detail: &'static str,
    },
}

/// What a send to `msg.to` does: `Err` refuses it now, `Ok` queues it with that outcome.
/// `flaky` counts attempts for [`FLAKY_NUMBER`].
pub fn outcome(msg: &OutboundMessage, flaky: &FlakyCounter) -> Result<Outcome, SendError> {
    let to = msg.to.trim();
    match to {
        INVALID_NUMBER => Err(SendError::permanent(
            FailureReason::InvalidAddress,
            "sandbox: the destination is not a valid phone number",
        )
        .with_provider_code("21211")),
        FLAKY_NUMBER if flaky.fails(&msg.message_id) => Err(SendError::transient(
            "sandbox: simulated 503 Service Unavailable",
        )
        .with_provider_code("503")),
        FAILED_NUMBER => Ok(Outcome::Fails {
            status: "failed",
            code: "30008",
            detail: "sandbox: unknown error from the carrier",
        }),
        UNREACHABLE_NUMBER => Ok(Outcome::Fails {
            status: "undeliverable",
            code: "30003",
            detail: "sandbox: unreachable destination handset",
        }),
        _ if to.eq_ignore_ascii_case(BOUNCE_EMAIL) => Ok(Outcome::Fails {
            status: "undeliverable",
            code: "550",
            detail: "sandbox: mailbox does not exist (bounce)",
        }),
        "" => Err(SendError::permanent(
            FailureReason::InvalidAddress,
            "sandbox: the destination is empty",
        )),
        _ => Ok(Outcome::Delivered),
    }
}

/// Attempts seen per message id for [`FLAKY_NUMBER`].
#[derive(Debug, Default)]
pub struct FlakyCounter(Mutex<HashMap<String, u32>>);

impl FlakyCounter {
    /// True for the first [`FLAKY_FAILURES`] calls with this message id, then false for good.
    pub fn fails(&self, message_id: &str) -> bool {
        // A poisoned lock only means another send panicked mid-update; the map is still fine.
        let mut seen = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= FLAKY_MEMORY && !seen.contains_key(message_id) {
            seen.clear();
        }
        let n = seen.entry(message_id.to_string()).or_insert(0);
        if *n < FLAKY_FAILURES {
            *n += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::Channel;

    fn msg(id: &str, to: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: id.into(),
            attempt_id: format!("att_{id}"),
            channel: Channel::Sms,
            to: to.into(),
            from: None,
            body: Some("hi".into()),
            subject: None,
            template: None,
            email: None,
            reply_to_provider_id: None,
            voice: None,
            status_callback_url: "http://127.0.0.1:1/webhooks/sandbox/sbx/status".into(),
        }
    }

    #[test]
    fn invalid_number_is_refused_for_good() {
        let e = match outcome(&msg("m", INVALID_NUMBER), &FlakyCounter::default()) {
            Err(e) => e,
            Ok(o) => panic!("{o:?}"),
        };
        assert!(!e.is_retryable());
        assert_eq!(e.reason(), FailureReason::InvalidAddress);
        assert_eq!(e.provider_code(), Some("21211"));
    }

    #[test]
    fn flaky_number_fails_twice_per_message_then_succeeds() {
        let flaky = FlakyCounter::default();
        for id in ["a", "b"] {
            for _ in 0..FLAKY_FAILURES {
                let e = outcome(&msg(id, FLAKY_NUMBER), &flaky).err();
                assert!(e.as_ref().is_some_and(SendError::is_retryable), "{e:?}");
            }
            for _ in 0..3 {
                assert_eq!(
                    outcome(&msg(id, FLAKY_NUMBER), &flaky).ok(),
                    Some(Outcome::Delivered)
                );
            }
        }
    }

    #[test]
    fn failing_destinations_are_queued_with_their_outcome() {
        let f = FlakyCounter::default();
        let code = |to: &str| match outcome(&msg("m", to), &f) {
            Ok(Outcome::Fails { status, code, .. }) => Some((status, code)),
            _ => None,
        };
        assert_eq!(code(FAILED_NUMBER), Some(("failed", "30008")));
        assert_eq!(code(UNREACHABLE_NUMBER), Some(("undeliverable", "30003")));
        assert_eq!(code("Bounce@Example.com"), Some(("undeliverable", "550")));
        assert_eq!(
            outcome(&msg("m", "+15550001111"), &f).ok(),
            Some(Outcome::Delivered)
        );
        assert!(outcome(&msg("m", " "), &f).is_err());
    }
}
