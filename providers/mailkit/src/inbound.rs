//! Inbound mail: its threading headers, and the [`InboundMessage`] weft gets.
//!
//! The provider id is the mail's `Message-ID` (a SHA-256 of the raw webhook body when there is
//! none); the dedupe key adds the recipient, since one mail sent to two of our addresses is
//! posted once per address.

use crate::email;
use crate::multipart::Part;
use sha2::{Digest, Sha256};
use weft_provider::{Channel, EmailHeaders, InboundMessage, Media};

/// The threading headers of a mail, given a header lookup by name (which must ignore case):
/// the first id of `Message-ID` and of `In-Reply-To`, every id of `References` (no brackets),
/// and the bare address of `Reply-To`.
pub fn threading(header: impl Fn(&str) -> Option<String>) -> EmailHeaders {
    let first_id = |v: String| email::msg_ids(&v).into_iter().next();
    EmailHeaders {
        message_id: header("Message-ID").and_then(first_id),
        in_reply_to: header("In-Reply-To").and_then(first_id),
        references: header("References")
            .map(|v| email::msg_ids(&v))
            .unwrap_or_default(),
        reply_to: header("Reply-To")
            .and_then(|v| email::parse_mailbox(&v))
            .map(|a| a.email),
    }
}

/// A file part as an attachment weft can point at (no URL: the bytes came with the post).
pub fn media(part: &Part) -> Media {
    Media {
        url: None,
        provider_media_id: Some(part.filename.clone().unwrap_or_else(|| part.name.clone())),
        content_type: part.content_type.clone(),
    }
}

/// What an adapter read from an inbound mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundEmail {
    /// `mailto:<lower-case address>` of the sender.
    pub from: String,
    /// `mailto:<lower-case address>` of our address it was sent to.
    pub to: String,
    pub body: Option<String>,
    pub subject: Option<String>,
    pub headers: EmailHeaders,
    pub media: Vec<Media>,
    pub received_at_ms: Option<i64>,
}

impl InboundEmail {
    /// The message, `raw` being the webhook body (hashed when the mail has no `Message-ID`).
    pub fn into_message(self, raw: &[u8]) -> InboundMessage {
        let provider_message_id = self
            .headers
            .message_id
            .clone()
            .unwrap_or_else(|| format!("sha256:{}", hex::encode(Sha256::digest(raw))));
        InboundMessage {
            dedupe_key: format!(
                "{provider_message_id}/{}",
                self.to.trim_start_matches("mailto:")
            ),
            provider_message_id,
            channel: Channel::Email,
            from: self.from,
            to: self.to,
            body: self.body,
            subject: self.subject,
            email: Some(self.headers),
            reply_to_provider_id: None,
            forwarded: false,
            profile_name: None,
            media: self.media,
            received_at_ms: self.received_at_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threading_headers_from_a_lookup() {
        let pairs = [
            ("message-id", "<m1@x> <ignored@x>"),
            ("IN-REPLY-TO", "<p@x>"),
            ("References", "<a@x>\r\n <p@x>"),
            ("Reply-To", "Jane <Jane@X.com>"),
        ];
        let h = threading(|name| {
            pairs
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.to_string())
        });
        assert_eq!(h.message_id.as_deref(), Some("m1@x"));
        assert_eq!(h.in_reply_to.as_deref(), Some("p@x"));
        assert_eq!(h.references, vec!["a@x", "p@x"]);
        assert_eq!(h.reply_to.as_deref(), Some("Jane@X.com"));
        assert_eq!(threading(|_| None), EmailHeaders::default());
    }

    #[test]
    fn ids_and_dedupe_keys() {
        let mail = InboundEmail {
            from: "mailto:jane@x.com".into(),
            to: "mailto:reply+t@in.shop.example".into(),
            body: Some("hi".into()),
            subject: None,
            headers: EmailHeaders {
                message_id: Some("m1@x".into()),
                ..Default::default()
            },
            media: vec![media(&Part {
                name: "attachment1".into(),
                filename: None,
                content_type: Some("text/plain".into()),
                data: Vec::new(),
            })],
            received_at_ms: Some(1_000),
        };
        let m = mail.clone().into_message(b"raw");
        assert_eq!(m.provider_message_id, "m1@x");
        assert_eq!(m.dedupe_key, "m1@x/reply+t@in.shop.example");
        assert_eq!(m.channel, Channel::Email);
        assert_eq!(m.media[0].provider_media_id.as_deref(), Some("attachment1"));
        let mut no_id = mail;
        no_id.headers.message_id = None;
        let m = no_id.into_message(b"raw");
        assert_eq!(
            m.provider_message_id,
            format!("sha256:{}", hex::encode(Sha256::digest(b"raw")))
        );
        assert!(m.email.is_some_and(|e| e.message_id.is_none()));
    }
}
