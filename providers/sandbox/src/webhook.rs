//! Sandbox callbacks → [`InboundEvent`]s. One callback, one event; dedupe on `event_id`.
//!
//! - `status` → a [`StatusEvent`]: correlation from the body's `message_id`/`attempt_id`
//!   (else the URL's `m`/`a` query); an unknown status word is kept with `status: None`.
//! - `message` → an [`InboundMessage`] whose addresses are identities, as the real adapter of
//!   that channel writes them ([`identity`]).

use crate::wire::{Callback, MessageCallback, StatusCallback};
use weft_provider::{
    Channel, Correlation, DeliveryStatus, InboundEvent, InboundMessage, ParseError, StatusEvent,
};

const WHAT: &str = "sandbox callback";

/// An address in identity form, mirroring the real adapters:
/// - sms, voice, whatsapp: `tel:+<digits>` for a phone number (Twilio and WhatsApp Cloud both
///   emit WhatsApp users as `tel:+…`); otherwise `whatsapp:<id>` on WhatsApp (a phone-number
///   id) and `tel:<as given>` on sms/voice (an alphanumeric sender or short code, like Twilio);
/// - email: `mailto:<lower-case>`;
/// - telegram: `telegram:<chat id>`.
///
/// An address that already carries its prefix keeps it.
pub fn identity(channel: Channel, addr: &str) -> String {
    let addr = addr.trim();
    match channel {
        Channel::Sms | Channel::Voice | Channel::Whatsapp => {
            let bare = ["whatsapp:", "tel:"]
                .iter()
                .find_map(|p| addr.strip_prefix(p))
                .unwrap_or(addr);
            let digits = bare.strip_prefix('+').unwrap_or(bare);
            let is_number = bare.starts_with('+')
                && (1..=15).contains(&digits.len())
                && digits.bytes().all(|b| b.is_ascii_digit());
            if is_number {
                format!("tel:+{digits}")
            } else if channel == Channel::Whatsapp {
                format!("whatsapp:{bare}")
            } else {
                format!("tel:{bare}")
            }
        }
        Channel::Email => {
            let bare = addr.strip_prefix("mailto:").unwrap_or(addr);
            format!("mailto:{}", bare.to_lowercase())
        }
        Channel::Telegram => {
            let bare = addr.strip_prefix("telegram:").unwrap_or(addr);
            format!("telegram:{bare}")
        }
    }
}

/// Parses a verified callback. `query` gives the URL's `m`/`a` for status correlation.
pub fn parse(
    body: &[u8],
    query: impl Fn(&str) -> Option<String>,
) -> Result<Vec<InboundEvent>, ParseError> {
    let callback: Callback = serde_json::from_slice(body).map_err(|e| ParseError::new(WHAT, e))?;
    let event = match callback {
        Callback::Status(s) => InboundEvent::Status(status(s, query)?),
        Callback::Message(m) => InboundEvent::Message(message(m)?),
    };
    Ok(vec![event])
}

fn non_empty(what: &str, v: &str) -> Result<(), ParseError> {
    if v.trim().is_empty() {
        Err(ParseError::new(WHAT, format!("{what} is empty")))
    } else {
        Ok(())
    }
}

fn status(
    s: StatusCallback,
    query: impl Fn(&str) -> Option<String>,
) -> Result<StatusEvent, ParseError> {
    non_empty("event_id", &s.event_id)?;
    non_empty("provider_message_id", &s.provider_message_id)?;
    Ok(StatusEvent {
        correlation: Correlation {
            message_id: s.message_id.or_else(|| query("m")),
            attempt_id: s.attempt_id.or_else(|| query("a")),
        },
        status: s.status.parse::<DeliveryStatus>().ok(),
        raw_status: s.status,
        error_code: s.error_code,
        error_detail: s.error_detail,
        occurred_at_ms: s.timestamp_ms,
        dedupe_key: s.event_id,
        opted_out: false,
        provider_message_id: s.provider_message_id,
    })
}

fn message(m: MessageCallback) -> Result<InboundMessage, ParseError> {
    non_empty("event_id", &m.event_id)?;
    non_empty("provider_message_id", &m.provider_message_id)?;
    non_empty("from", &m.from)?;
    non_empty("to", &m.to)?;
    Ok(InboundMessage {
        channel: m.channel,
        from: identity(m.channel, &m.from),
        to: identity(m.channel, &m.to),
        body: m.body,
        subject: m.subject,
        email: m.email,
        reply_to_provider_id: m.reply_to_provider_id,
        forwarded: false,
        profile_name: None,
        media: Vec::new(),
        received_at_ms: m.timestamp_ms,
        dedupe_key: m.event_id,
        provider_message_id: m.provider_message_id,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn no_query(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn identities_mirror_the_real_adapters() {
        assert_eq!(identity(Channel::Sms, "+15550001111"), "tel:+15550001111");
        assert_eq!(
            identity(Channel::Voice, " +15550001111 "),
            "tel:+15550001111"
        );
        assert_eq!(identity(Channel::Sms, "WEFT"), "tel:WEFT");
        assert_eq!(
            identity(Channel::Whatsapp, "+4915112345678"),
            "tel:+4915112345678"
        );
        assert_eq!(
            identity(Channel::Whatsapp, "whatsapp:+4915112345678"),
            "tel:+4915112345678"
        );
        assert_eq!(
            identity(Channel::Whatsapp, "106540352242922"),
            "whatsapp:106540352242922"
        );
        assert_eq!(
            identity(Channel::Email, "Jane@Example.COM"),
            "mailto:jane@example.com"
        );
        assert_eq!(
            identity(Channel::Telegram, "123456789"),
            "telegram:123456789"
        );
        assert_eq!(
            identity(Channel::Telegram, "telegram:sandbox"),
            "telegram:sandbox"
        );
    }

    #[test]
    fn status_correlation_falls_back_to_the_query() {
        let body = br#"{"type":"status","event_id":"E1","provider_message_id":"sbx_1","status":"delivered","error_code":null}"#;
        let q = |k: &str| match k {
            "m" => Some("msg_q".to_string()),
            "a" => Some("att_q".to_string()),
            _ => None,
        };
        let events = parse(body, q).unwrap();
        let InboundEvent::Status(s) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!(s.correlation.message_id.as_deref(), Some("msg_q"));
        assert_eq!(s.correlation.attempt_id.as_deref(), Some("att_q"));
        assert_eq!(s.status, Some(DeliveryStatus::Delivered));
        assert_eq!(s.occurred_at_ms, None);
    }

    #[test]
    fn unknown_status_words_are_history_only() {
        let body = br#"{"type":"status","event_id":"E1","provider_message_id":"sbx_1","status":"warp","error_code":null}"#;
        let events = parse(body, no_query).unwrap();
        let InboundEvent::Status(s) = &events[0] else {
            panic!("{events:?}")
        };
        assert_eq!((s.status, s.raw_status.as_str()), (None, "warp"));
    }

    #[test]
    fn bad_bodies_do_not_parse() {
        for body in [
            &b"not json"[..],
            br#"[]"#,
            br#"{"type":"carrier_pigeon","event_id":"E"}"#,
            br#"{"type":"status","provider_message_id":"sbx_1","status":"sent"}"#,
            br#"{"type":"status","event_id":"","provider_message_id":"sbx_1","status":"sent"}"#,
            br#"{"type":"message","event_id":"E","provider_message_id":"sbx_1","channel":"fax","from":"a","to":"b"}"#,
            br#"{"type":"message","event_id":"E","provider_message_id":"sbx_1","channel":"sms","from":"","to":"b"}"#,
        ] {
            assert!(parse(body, no_query).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
