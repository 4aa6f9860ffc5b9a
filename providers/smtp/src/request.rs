//! Building the mail: an [`OutboundMessage`] -> a lettre [`Message`] (headers, body, envelope).
//!
//! Headers set: `From` (the message's sender, else the `from` setting), `To`, `Subject`
//! (required), `Date`, `MIME-Version`, `Content-Type: text/plain; charset=utf-8` with lettre's
//! choice of 7bit / quoted-printable / base64, our `Message-ID`, `Reply-To`, `In-Reply-To`,
//! `References` (from `msg.email`), and `X-Weft-Message-Id` / `X-Weft-Attempt-Id` for
//! correlation. Everything wrong with the message itself fails here, before any connection.

use lettre::message::header::{self, ContentType, Header, HeaderName, HeaderValue};
use lettre::message::Mailbox;
use lettre::{Address, Message};
use weft_provider::{Channel, FailureReason, OutboundMessage, SendError};

/// `X-Weft-Message-Id`: weft's message id, so a mail (or the bounce quoting it) finds its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XWeftMessageId(pub String);

/// `X-Weft-Attempt-Id`: weft's attempt id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XWeftAttemptId(pub String);

pub const MESSAGE_ID_HEADER: &str = "X-Weft-Message-Id";
pub const ATTEMPT_ID_HEADER: &str = "X-Weft-Attempt-Id";

impl Header for XWeftMessageId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(MESSAGE_ID_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

impl Header for XWeftAttemptId {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str(ATTEMPT_ID_HEADER)
    }
    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        Ok(Self(s.trim().to_string()))
    }
    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), self.0.clone())
    }
}

/// A mail ready for the transport, with the `Message-ID` (no brackets) that becomes the
/// provider id.
#[derive(Debug)]
pub struct Built {
    pub message: Message,
    pub message_id: String,
}

fn rejected(detail: impl Into<String>) -> SendError {
    SendError::permanent(FailureReason::ProviderRejected, detail)
}

/// Builds the mail or says why it cannot be sent (permanently: nothing here gets better on retry).
pub fn build_message(
    msg: &OutboundMessage,
    default_from: Option<&Mailbox>,
) -> Result<Built, SendError> {
    if msg.channel != Channel::Email {
        return Err(SendError::permanent(
            FailureReason::NoRoute,
            format!("the smtp provider sends e-mail only, not {}", msg.channel),
        ));
    }
    let subject = match msg.subject.as_deref().map(str::trim) {
        Some(s) if !s.is_empty() => s.to_string(),
        _ => return Err(rejected("an e-mail needs a subject")),
    };
    if msg.template.is_some() && msg.body.is_none() {
        return Err(rejected(
            "smtp cannot render provider templates; send a body",
        ));
    }
    let to: Address = msg.to.trim().parse().map_err(|_| {
        SendError::permanent(
            FailureReason::InvalidAddress,
            "the recipient is not a valid e-mail address",
        )
    })?;
    let from = match msg.from.as_deref() {
        Some(f) => f
            .parse::<Mailbox>()
            .map_err(|_| SendError::config("the sender is not a valid e-mail address"))?,
        None => default_from.cloned().ok_or_else(|| {
            SendError::config("no sender: the message has no from and settings.from is not set")
        })?,
    };

    let email = msg.email.clone().unwrap_or_default();
    let message_id = match email.message_id.as_deref().map(strip_brackets) {
        Some(id) => id.to_string(),
        None => format!("{}@{}", msg.message_id, from.email.domain()),
    };
    if !valid_msg_id(&message_id) {
        return Err(rejected("the Message-ID is not of the form local@domain"));
    }

    let mut builder = Message::builder()
        .from(from)
        .to(Mailbox::new(None, to))
        .subject(subject)
        .message_id(Some(format!("<{message_id}>")))
        .header(header::MIME_VERSION_1_0)
        .header(ContentType::TEXT_PLAIN)
        .header(XWeftMessageId(msg.message_id.clone()))
        .header(XWeftAttemptId(msg.attempt_id.clone()));
    if let Some(reply_to) = email.reply_to.as_deref() {
        let mbox = reply_to
            .parse::<Mailbox>()
            .map_err(|_| rejected("Reply-To is not a valid e-mail address"))?;
        builder = builder.reply_to(mbox);
    }
    if let Some(parent) = email.in_reply_to.as_deref().map(strip_brackets) {
        if !valid_msg_id(parent) {
            return Err(rejected("In-Reply-To is not a valid message id"));
        }
        builder = builder.in_reply_to(format!("<{parent}>"));
    }
    if !email.references.is_empty() {
        let ids: Vec<&str> = email.references.iter().map(|r| strip_brackets(r)).collect();
        if !ids.iter().all(|id| valid_msg_id(id)) {
            return Err(rejected("References holds an invalid message id"));
        }
        let joined: Vec<String> = ids.iter().map(|id| format!("<{id}>")).collect();
        builder = builder.references(joined.join(" "));
    }
    let body = msg.body.clone().unwrap_or_default();
    let message = builder
        .body(body)
        .map_err(|e| rejected(format!("cannot build the e-mail: {e}")))?;
    Ok(Built {
        message,
        message_id,
    })
}

fn strip_brackets(id: &str) -> &str {
    let id = id.trim();
    id.strip_prefix('<')
        .and_then(|s| s.strip_suffix('>'))
        .unwrap_or(id)
}

/// `local@domain`, printable ASCII, no spaces or brackets (RFC 5322 msg-id, simplified).
pub fn valid_msg_id(id: &str) -> bool {
    let Some((local, domain)) = id.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.is_empty()
        && id.len() <= 250
        && id.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"' | b'\\' | b'(' | b')' | b',')
        })
        && !domain.contains('@')
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use weft_provider::EmailHeaders;

    pub(crate) fn email(to: &str) -> OutboundMessage {
        OutboundMessage {
            message_id: "msg_01".into(),
            attempt_id: "att_01".into(),
            channel: Channel::Email,
            to: to.into(),
            from: Some("support@shop.example".into()),
            body: Some("Hello there".into()),
            subject: Some("Your order".into()),
            template: None,
            email: None,
            reply_to_provider_id: None,
            voice: None,
            status_callback_url: "http://weft.test/webhooks/smtp/mail/status?m=msg_01&a=att_01"
                .into(),
        }
    }

    fn text(b: &Built) -> String {
        String::from_utf8(b.message.formatted()).unwrap()
    }

    #[test]
    fn headers_and_ids() {
        let mut m = email("bob@example.com");
        m.email = Some(EmailHeaders {
            message_id: Some("<msg_01@mail.shop.example>".into()),
            in_reply_to: Some("abc@mx.example.com".into()),
            references: vec!["root@x.example".into(), "<abc@mx.example.com>".into()],
            reply_to: Some("reply+tok123@in.shop.example".into()),
        });
        let b = build_message(&m, None).unwrap();
        assert_eq!(b.message_id, "msg_01@mail.shop.example");
        let t = text(&b);
        for want in [
            "Message-ID: <msg_01@mail.shop.example>\r\n",
            "In-Reply-To: <abc@mx.example.com>\r\n",
            "References: <root@x.example> <abc@mx.example.com>\r\n",
            "Reply-To: reply+tok123@in.shop.example\r\n",
            "X-Weft-Message-Id: msg_01\r\n",
            "X-Weft-Attempt-Id: att_01\r\n",
            "Subject: Your order\r\n",
            "To: bob@example.com\r\n",
            "From: support@shop.example\r\n",
            "Content-Type: text/plain; charset=utf-8\r\n",
        ] {
            assert!(t.contains(want), "missing {want:?} in\n{t}");
        }
        assert_eq!(
            b.message.envelope().to(),
            ["bob@example.com".parse::<Address>().unwrap()]
        );
    }

    #[test]
    fn message_id_defaults_to_ours_at_the_sender_domain() {
        let b = build_message(&email("bob@example.com"), None).unwrap();
        assert_eq!(b.message_id, "msg_01@shop.example");
    }

    #[test]
    fn default_sender_from_settings() {
        let mut m = email("bob@example.com");
        m.from = None;
        let from: Mailbox = "Shop <noreply@shop.example>".parse().unwrap();
        let b = build_message(&m, Some(&from)).unwrap();
        assert!(text(&b).contains("From: Shop <noreply@shop.example>"));
        assert_eq!(build_message(&m, None).unwrap_err().code(), "config");
    }

    #[test]
    fn refusals_before_any_connection() {
        let mut m = email("bob@example.com");
        m.subject = Some("  ".into());
        let e = build_message(&m, None).unwrap_err();
        assert_eq!(
            (e.code(), e.reason()),
            ("rejected", FailureReason::ProviderRejected)
        );

        let e = build_message(&email("not-an-address"), None).unwrap_err();
        assert_eq!(e.reason(), FailureReason::InvalidAddress);

        let mut m = email("bob@example.com");
        m.channel = Channel::Sms;
        assert_eq!(
            build_message(&m, None).unwrap_err().reason(),
            FailureReason::NoRoute
        );

        let mut m = email("bob@example.com");
        m.email = Some(EmailHeaders {
            message_id: Some("no-at-sign".into()),
            ..Default::default()
        });
        assert!(!build_message(&m, None).unwrap_err().is_retryable());

        let mut m = email("bob@example.com");
        m.email = Some(EmailHeaders {
            in_reply_to: Some("a@b\r\nBcc: x@y".into()),
            ..Default::default()
        });
        assert!(
            build_message(&m, None).is_err(),
            "header injection must not pass"
        );

        let mut m = email("bob@example.com");
        m.body = None;
        m.template = Some(Default::default());
        assert!(build_message(&m, None).is_err());
    }

    #[test]
    fn unicode_subject_is_encoded() {
        let mut m = email("bob@example.com");
        m.subject = Some("Grüße – 你好 🎉".into());
        m.body = Some("Ünïcödé body ✓".into());
        let t = text(&build_message(&m, None).unwrap());
        assert!(t.is_ascii(), "the wire form is 7-bit:\n{t}");
        assert!(t.contains("Subject: =?utf-8?"), "{t}");
    }
}
