//! SMTP replies and transport failures -> [`SendError`], retryable or permanent.
//!
//! | reply / failure | class | reason / note |
//! |---|---|---|
//! | 421 (service closing channel) | throttled | relays answer it to too many connections or messages |
//! | 450, 451, 452, other 4xx | transient | a 4xx whose text says rate limit / too many connections or messages / throttl… / slow down is throttled |
//! | 530, 534, 535, 538 | auth | authentication required / refused / too weak / needs TLS |
//! | 550, 551 | permanent | `invalid_address` (mailbox unavailable, not local) |
//! | 552, 553, 554, other 5xx | permanent | `provider_rejected` |
//! | enhanced status `5.1.x` | permanent | `invalid_address` (addressing), whatever the basic code |
//! | enhanced status `5.7.x` | permanent | `provider_rejected` (policy / security), whatever the basic code |
//! | connection refused / reset / closed | transient | nothing was accepted |
//! | no answer in time | timeout | ambiguous: the relay may have the mail |
//! | TLS failure, STARTTLS not offered, no usable AUTH mechanism | config | the `tls` / auth setting does not match the relay; never downgraded |
//! | a non-ASCII address and a relay without SMTPUTF8 | permanent | `provider_rejected` |
//!
//! The provider code is always the three-digit reply code. Reply texts are shortened and their
//! e-mail addresses masked before they become the error detail.

use lettre::transport::smtp::Error as SmtpError;
use std::error::Error as _;
use std::io;
use weft_provider::{FailureReason, SendError};

/// Classifies a negative SMTP reply (4xx / 5xx) with its text.
pub fn classify_reply(code: u16, text: &str) -> SendError {
    let detail = format!("smtp relay answered {code}: {}", redact(text));
    let enhanced = enhanced_status(text);
    let lower = text.to_ascii_lowercase();
    let err = match code {
        421 => SendError::throttled(None, detail),
        400..=499 if says_throttle(&lower) => SendError::throttled(None, detail),
        400..=499 => SendError::transient(detail),
        530 | 534 | 535 | 538 => SendError::auth(detail),
        500..=599 => {
            let reason = match enhanced {
                Some((5, 1)) => FailureReason::InvalidAddress,
                Some((5, 7)) => FailureReason::ProviderRejected,
                _ if matches!(code, 550 | 551) => FailureReason::InvalidAddress,
                _ => FailureReason::ProviderRejected,
            };
            SendError::permanent(reason, detail)
        }
        // 1xx-3xx where a completion was expected: a confused relay, try again later.
        _ => SendError::transient(detail),
    };
    err.with_provider_code(code.to_string())
}

/// Classifies any error lettre returns from a send.
pub fn classify_transport(err: &SmtpError) -> SendError {
    if let Some(code) = err.status() {
        let text = err.source().map(|s| s.to_string()).unwrap_or_default();
        return classify_reply(u16::from(code), &text);
    }
    if err.is_timeout() {
        return SendError::timeout(format!("smtp relay did not answer in time: {err}"));
    }
    if err.is_client() {
        // lettre's own refusals, its texts constants and safe to show. A non-ASCII address the
        // relay cannot carry (no SMTPUTF8) is this message's problem; STARTTLS not offered or
        // no common AUTH mechanism are the connection's.
        let text = err.to_string();
        if text.contains("non-ascii") {
            return SendError::permanent(
                FailureReason::ProviderRejected,
                format!("smtp relay cannot carry this message: {text}"),
            );
        }
        return SendError::config(format!(
            "smtp relay does not support what this connection requires: {text}"
        ));
    }
    match io_kind(err) {
        Some(io::ErrorKind::InvalidData) => SendError::config(format!(
            "smtp TLS or protocol failure (check the tls setting, port and certificate): {err}"
        )),
        Some(io::ErrorKind::TimedOut) => {
            SendError::timeout(format!("smtp relay did not answer in time: {err}"))
        }
        Some(io::ErrorKind::ConnectionRefused) => {
            SendError::transient(format!("could not connect to smtp relay: {err}"))
        }
        _ => SendError::transient(format!("smtp conversation failed: {err}")),
    }
}

/// The kind of the first I/O error in the chain.
fn io_kind(err: &SmtpError) -> Option<io::ErrorKind> {
    let mut source = err.source();
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io.kind());
        }
        source = e.source();
    }
    None
}

/// The class and subject of an RFC 3463 enhanced status code at the start of a reply text
/// (`5.1.1 …` -> `(5, 1)`).
pub fn enhanced_status(text: &str) -> Option<(u8, u16)> {
    let first = text.split_whitespace().next()?;
    let mut parts = first.split('.');
    let class: u8 = parts.next()?.parse().ok()?;
    let subject: u16 = parts.next()?.parse().ok()?;
    let detail: u16 = parts.next()?.parse().ok()?;
    (parts.next().is_none() && matches!(class, 2 | 4 | 5) && subject < 1000 && detail < 1000)
        .then_some((class, subject))
}

fn says_throttle(lower: &str) -> bool {
    [
        "rate limit",
        "too many connections",
        "too many messages",
        "throttl",
        "slow down",
    ]
    .iter()
    .any(|w| lower.contains(w))
}

/// A reply text fit for an error detail: at most 200 characters, e-mail addresses masked
/// (`j•••@example.com`).
pub fn redact(text: &str) -> String {
    let masked: Vec<String> = text.split_whitespace().map(mask_address).collect();
    let joined = masked.join(" ");
    match joined.char_indices().nth(200) {
        Some((i, _)) => format!("{}…", &joined[..i]),
        None => joined,
    }
}

fn mask_address(word: &str) -> String {
    let Some(at) = word.find('@') else {
        return word.to_string();
    };
    let (local, domain) = word.split_at(at);
    let lead: String = local
        .chars()
        .take_while(|c| matches!(c, '<' | '"' | '(' | '['))
        .collect();
    let first = local[lead.len()..].chars().next();
    match first {
        Some(c) => format!("{lead}{c}•••{domain}"),
        None => word.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Row {
        code: u16,
        text: &'static str,
        retryable: bool,
        class: &'static str,
        reason: Option<FailureReason>,
    }

    const fn row(
        code: u16,
        text: &'static str,
        retryable: bool,
        class: &'static str,
        reason: Option<FailureReason>,
    ) -> Row {
        Row {
            code,
            text,
            retryable,
            class,
            reason,
        }
    }

    use FailureReason::{InvalidAddress as Invalid, ProviderRejected as Rejected};

    const TABLE: &[Row] = &[
        row(
            421,
            "4.7.0 Too many connections, closing channel",
            true,
            "throttled",
            None,
        ),
        row(421, "Service not available", true, "throttled", None),
        row(450, "4.2.1 Mailbox busy", true, "transient", None),
        row(
            451,
            "4.3.0 Local error in processing",
            true,
            "transient",
            None,
        ),
        row(
            451,
            "4.7.1 Greylisted, try again later",
            true,
            "transient",
            None,
        ),
        row(452, "4.5.3 Too many recipients", true, "transient", None),
        row(
            451,
            "4.7.0 Too many messages, slow down",
            true,
            "throttled",
            None,
        ),
        row(
            452,
            "4.3.1 Insufficient system storage",
            true,
            "transient",
            None,
        ),
        row(
            454,
            "4.7.0 Sending rate limit exceeded",
            true,
            "throttled",
            None,
        ),
        row(530, "5.7.0 Authentication required", false, "auth", None),
        row(
            534,
            "5.7.9 Authentication mechanism is too weak",
            false,
            "auth",
            None,
        ),
        row(
            535,
            "5.7.8 Authentication credentials invalid",
            false,
            "auth",
            None,
        ),
        row(538, "5.7.11 Encryption required", false, "auth", None),
        row(
            550,
            "5.1.1 <bob@example.com>: Recipient address rejected",
            false,
            "rejected",
            Some(Invalid),
        ),
        row(550, "Mailbox unavailable", false, "rejected", Some(Invalid)),
        row(
            550,
            "5.7.1 Relaying denied",
            false,
            "rejected",
            Some(Rejected),
        ),
        row(551, "User not local", false, "rejected", Some(Invalid)),
        row(
            552,
            "5.3.4 Message size exceeds fixed limit",
            false,
            "rejected",
            Some(Rejected),
        ),
        row(
            553,
            "Mailbox name not allowed",
            false,
            "rejected",
            Some(Rejected),
        ),
        row(
            553,
            "5.1.3 Bad destination mailbox address syntax",
            false,
            "rejected",
            Some(Invalid),
        ),
        row(
            554,
            "5.7.1 Message rejected as spam",
            false,
            "rejected",
            Some(Rejected),
        ),
        row(554, "Transaction failed", false, "rejected", Some(Rejected)),
        row(500, "5.5.2 Syntax error", false, "rejected", Some(Rejected)),
        row(354, "odd", true, "transient", None),
    ];

    #[test]
    fn reply_codes_classify_case_by_case() {
        for r in TABLE {
            let e = classify_reply(r.code, r.text);
            let name = format!("{} {}", r.code, r.text);
            assert_eq!(e.is_retryable(), r.retryable, "{name}: retryable");
            assert_eq!(e.code(), r.class, "{name}: class");
            assert_eq!(
                e.provider_code(),
                Some(r.code.to_string().as_str()),
                "{name}: provider code"
            );
            if let Some(reason) = r.reason {
                assert_eq!(e.reason(), reason, "{name}: reason");
            }
            assert!(!e.is_ambiguous(), "{name}: a reply is never ambiguous");
        }
    }

    #[test]
    fn enhanced_status_parses_only_the_real_shape() {
        assert_eq!(enhanced_status("5.1.1 <a@b>: no"), Some((5, 1)));
        assert_eq!(enhanced_status("4.7.0 later"), Some((4, 7)));
        assert_eq!(enhanced_status("2.0.0 Ok: queued as X"), Some((2, 0)));
        assert_eq!(enhanced_status("Mailbox unavailable"), None);
        assert_eq!(enhanced_status("1.2.3.4 host"), None);
        assert_eq!(enhanced_status("9.1.1 bad class"), None);
        assert_eq!(enhanced_status(""), None);
    }

    #[test]
    fn details_mask_addresses_and_stay_short() {
        let e = classify_reply(550, "5.1.1 <bob@example.com>: Recipient address rejected");
        assert!(!e.detail().contains("bob@"), "{}", e.detail());
        assert!(e.detail().contains("<b•••@example.com>:"), "{}", e.detail());
        let long = "x ".repeat(500);
        assert!(redact(&long).chars().count() <= 201);
        assert_eq!(redact("no address here"), "no address here");
        assert_eq!(redact("@lonely"), "@lonely");
    }
}
