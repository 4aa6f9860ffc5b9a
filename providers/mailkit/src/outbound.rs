//! The checks an outgoing mail passes before any request, the same for every e-mail API.
//!
//! In order, the first failure wins: the channel must be e-mail; the recipient a bare address;
//! the sender (the message's, else the connection's default) a mailbox; a subject or a template;
//! a body or a template; our `Message-ID` (the message's, else `<weft id>@<domain>`) of the
//! form `local@domain`; a `Reply-To`, when set, a mailbox. What passes is a [`Draft`] the
//! adapter turns into its own request.

use crate::email::{self, Address};
use weft_provider::{Channel, FailureReason, OutboundMessage, SendError, Template};

/// A checked outgoing mail, ready to be written in a provider's format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Draft<'a> {
    /// The recipient, a bare address (trimmed).
    pub to: &'a str,
    pub from: Address,
    /// The subject, trimmed, if not empty.
    pub subject: Option<&'a str>,
    /// The plain-text body, if not empty.
    pub text: Option<&'a str>,
    /// The template, if it has a name.
    pub template: Option<&'a Template>,
    /// Our `Message-ID`, without angle brackets.
    pub message_id: String,
    /// `In-Reply-To` in angle brackets.
    pub in_reply_to: Option<String>,
    /// `References`, each id in angle brackets, space-separated.
    pub references: Option<String>,
    pub reply_to: Option<Address>,
}

fn rejected(reason: FailureReason, detail: &str) -> SendError {
    SendError::permanent(reason, detail)
}

/// Checks `msg` for the e-mail API `carrier` (`"sendgrid"`, named in the wrong-channel error).
/// `default_from` is the connection's sender for a message that names none; `id_domain` the
/// domain of a made-up `Message-ID` (`None`: the sender's domain).
pub fn draft<'a>(
    carrier: &str,
    msg: &'a OutboundMessage,
    default_from: impl FnOnce() -> Option<Address>,
    id_domain: Option<&str>,
) -> Result<Draft<'a>, SendError> {
    if msg.channel != Channel::Email {
        return Err(rejected(
            FailureReason::NoRoute,
            &format!("{carrier} carries only email"),
        ));
    }
    let to = msg.to.trim();
    if !email::valid_email(to) {
        return Err(rejected(
            FailureReason::InvalidAddress,
            "the recipient is not an e-mail address",
        ));
    }
    let from = match msg.from.as_deref() {
        Some(f) => email::parse_mailbox(f).ok_or_else(|| {
            rejected(
                FailureReason::ProviderRejected,
                "the sender is not an e-mail address",
            )
        })?,
        None => default_from().ok_or_else(|| {
            SendError::config("no sender: set settings.from or a sender for this connection")
        })?,
    };
    let subject = msg
        .subject
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let template = msg.template.as_ref().filter(|t| !t.name.trim().is_empty());
    if subject.is_none() && template.is_none() {
        return Err(rejected(
            FailureReason::ProviderRejected,
            "email needs a subject",
        ));
    }
    let text = msg.body.as_deref().filter(|b| !b.is_empty());
    if text.is_none() && template.is_none() {
        return Err(rejected(
            FailureReason::ProviderRejected,
            "email needs a body or a template",
        ));
    }

    let headers = msg.email.clone().unwrap_or_default();
    let message_id = match headers.message_id.as_deref().map(email::strip_brackets) {
        Some(id) => id.to_string(),
        None => {
            let domain = match id_domain {
                Some(d) => d,
                None => from.email.rsplit('@').next().unwrap_or("localhost"),
            };
            format!("{}@{domain}", msg.message_id)
        }
    };
    if !email::valid_msg_id(&message_id) {
        return Err(rejected(
            FailureReason::ProviderRejected,
            "the Message-ID is not of the form local@domain",
        ));
    }
    let in_reply_to = headers
        .in_reply_to
        .as_deref()
        .map(email::strip_brackets)
        .filter(|s| !s.is_empty())
        .map(email::bracket);
    let refs: Vec<String> = headers
        .references
        .iter()
        .map(|r| email::strip_brackets(r))
        .filter(|r| !r.is_empty())
        .map(email::bracket)
        .collect();
    let references = (!refs.is_empty()).then(|| refs.join(" "));
    let reply_to = match headers.reply_to.as_deref() {
        Some(rt) => Some(email::parse_mailbox(rt).ok_or_else(|| {
            rejected(
                FailureReason::ProviderRejected,
                "the Reply-To is not an e-mail address",
            )
        })?),
        None => None,
    };
    Ok(Draft {
        to,
        from,
        subject,
        text,
        template,
        message_id,
        in_reply_to,
        references,
        reply_to,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::EmailHeaders;

    fn msg() -> OutboundMessage {
        OutboundMessage {
            message_id: "msg_01".into(),
            attempt_id: "att_01".into(),
            channel: Channel::Email,
            to: " ana@example.org ".into(),
            from: None,
            body: Some("Hello".into()),
            subject: Some(" Hi ".into()),
            template: None,
            email: None,
            reply_to_provider_id: None,
            voice: None,
            status_callback_url: String::new(),
        }
    }

    fn shop() -> Option<Address> {
        email::parse_mailbox("Shop <news@shop.example>")
    }

    fn detail(r: Result<Draft<'_>, SendError>) -> String {
        match r {
            Ok(_) => panic!("accepted"),
            Err(e) => e.detail().to_string(),
        }
    }

    #[test]
    fn a_plain_mail_passes() {
        let m = msg();
        let d = match draft("x", &m, shop, None) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.to, "ana@example.org");
        assert_eq!(d.from.name.as_deref(), Some("Shop"));
        assert_eq!(d.subject, Some("Hi"));
        assert_eq!(d.text, Some("Hello"));
        assert_eq!(d.message_id, "msg_01@shop.example");
        assert_eq!(
            (d.in_reply_to, d.references, d.reply_to),
            (None, None, None)
        );
        let d = match draft("x", &m, shop, Some("mg.shop.example")) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.message_id, "msg_01@mg.shop.example");
    }

    #[test]
    fn threading_headers_are_bracketed() {
        let mut m = msg();
        m.email = Some(EmailHeaders {
            message_id: Some("<own@shop.example>".into()),
            in_reply_to: Some("c1@x".into()),
            references: vec!["<a@x>".into(), " ".into(), "c1@x".into()],
            reply_to: Some("Help <reply+tok@in.shop.example>".into()),
        });
        let d = match draft("x", &m, shop, None) {
            Ok(d) => d,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(d.message_id, "own@shop.example");
        assert_eq!(d.in_reply_to.as_deref(), Some("<c1@x>"));
        assert_eq!(d.references.as_deref(), Some("<a@x> <c1@x>"));
        assert_eq!(
            d.reply_to.map(|a| a.email).as_deref(),
            Some("reply+tok@in.shop.example")
        );
    }

    #[test]
    fn refusals_in_order() {
        let mut m = msg();
        m.channel = Channel::Sms;
        m.to = "nope".into();
        assert!(draft("mailgun", &m, shop, None)
            .is_err_and(|e| e.reason() == FailureReason::NoRoute
                && e.detail() == "mailgun carries only email"));
        let mut m = msg();
        m.to = "+15550001".into();
        assert!(
            draft("x", &m, shop, None).is_err_and(|e| e.reason() == FailureReason::InvalidAddress)
        );
        let mut m = msg();
        m.from = Some("nobody".into());
        assert_eq!(
            detail(draft("x", &m, shop, None)),
            "the sender is not an e-mail address"
        );
        let m = msg();
        assert!(draft("x", &m, || None, None).is_err_and(|e| e.code() == "config"));
        let mut m = msg();
        m.subject = Some("  ".into());
        m.body = None;
        assert_eq!(detail(draft("x", &m, shop, None)), "email needs a subject");
        let mut m = msg();
        m.body = Some(String::new());
        assert_eq!(
            detail(draft("x", &m, shop, None)),
            "email needs a body or a template"
        );
        let mut m = msg();
        m.email = Some(EmailHeaders {
            message_id: Some("no-at".into()),
            reply_to: Some("bad".into()),
            ..Default::default()
        });
        assert_eq!(
            detail(draft("x", &m, shop, None)),
            "the Message-ID is not of the form local@domain"
        );
        let mut m = msg();
        m.email = Some(EmailHeaders {
            reply_to: Some("bad".into()),
            ..Default::default()
        });
        assert_eq!(
            detail(draft("x", &m, shop, None)),
            "the Reply-To is not an e-mail address"
        );
        let mut m = msg();
        m.subject = None;
        m.body = None;
        m.template = Some(Template {
            name: "t".into(),
            language: None,
            variables: Default::default(),
        });
        assert!(draft("x", &m, shop, None).is_ok_and(|d| d.template.is_some()));
    }
}
