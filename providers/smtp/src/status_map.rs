//! What a positive SMTP answer means for delivery.
//!
//! SMTP has one synchronous answer and no status callbacks:
//!
//! | answer | status | note |
//! |---|---|---|
//! | `250` after the message data | `queued` | a relay holds it; when the relay is the recipient's MX it is in fact delivered, but we cannot tell |
//! | anything else | — | an error, see [`crate::errors`] |
//!
//! The provider id is **our own `Message-ID`** (without angle brackets), not the relay's queue
//! id: it is known before the send, identical on every relay and on every retry, and it is what
//! a bounce (a DSN mail, which this adapter does not read) and any reply quote in `In-Reply-To` /
//! `References`. The relay's queue id, when its `250` text carries one, is only logged.

use weft_provider::{DeliveryStatus, SendReceipt};

/// The receipt for a `250` answer to the message data.
pub fn receipt(message_id: &str) -> SendReceipt {
    SendReceipt {
        provider_ids: vec![message_id.to_string()],
        status: DeliveryStatus::Queued,
        segments: None,
    }
}

/// The relay's queue id from its `250` text, in the shapes the common MTAs use:
/// Postfix / the sink `2.0.0 Ok: queued as ABC123`, Exim `OK id=1rABCd-000123-XY`,
/// Sendmail `2.0.0 x8J1a2b3000123 Message accepted for delivery`.
pub fn queue_id(text: &str) -> Option<String> {
    let lower = text.to_ascii_lowercase();
    let tail = if let Some(i) = lower.find("queued as ") {
        &text[i + "queued as ".len()..]
    } else if let Some(i) = lower.find("id=") {
        &text[i + "id=".len()..]
    } else if lower.contains("message accepted for delivery") {
        // Sendmail: the id is the word after the enhanced status code.
        let mut words = text.split_whitespace();
        let first = words.next()?;
        if crate::errors::enhanced_status(first).is_some() {
            words.next()?
        } else {
            first
        }
    } else {
        return None;
    };
    let id: String = tail
        .trim_start_matches('<')
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
        .take(128)
        .collect();
    let id = id.trim_end_matches('.').to_string();
    (!id.is_empty()).then_some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_250_is_queued_under_our_message_id() {
        let r = receipt("msg_01HX@mail.example.com");
        assert_eq!(
            r.provider_ids,
            vec!["msg_01HX@mail.example.com".to_string()]
        );
        assert_eq!(r.status, DeliveryStatus::Queued);
        assert_eq!(r.segments, None);
    }

    #[test]
    fn queue_ids_in_common_shapes() {
        let cases: &[(&str, Option<&str>)] = &[
            ("2.0.0 Ok: queued as ABC123", Some("ABC123")),
            ("2.0.0 Ok: queued as 4XyZ1m2abcz.", Some("4XyZ1m2abcz")),
            ("Ok: Queued as <5F3A.77@relay>", Some("5F3A.77@relay")),
            ("OK id=1rABCd-000123-XY", Some("1rABCd-000123-XY")),
            (
                "2.0.0 x8J1a2b3000123 Message accepted for delivery",
                Some("x8J1a2b3000123"),
            ),
            ("2.0.0 Ok", None),
            ("Ok: queued as ", None),
            ("", None),
        ];
        for (text, want) in cases {
            assert_eq!(queue_id(text).as_deref(), *want, "{text:?}");
        }
    }
}
