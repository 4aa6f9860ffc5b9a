//! Builds the `POST /v3/mail/send` JSON body and reads the receipt.
//!
//! Headers: our `Message-ID` (from `msg.email.message_id`, else `<weft id>@<sender domain>`),
//! `In-Reply-To` and `References` in angle brackets go in `headers`; `Reply-To` is one of
//! SendGrid's reserved headers, so it goes in the `reply_to` field. weft's message and attempt
//! ids ride in `custom_args` (`weft_message_id`, `weft_attempt_id`), which SendGrid echoes as
//! top-level keys on every event. Templates: `template_id` + `dynamic_template_data`.

use crate::config::SendgridConfig;
use crate::email::{self, Address};
use serde_json::{json, Map, Value};
use weft_provider::{Channel, FailureReason, OutboundMessage, SendError, SendReceipt};

/// `custom_args` key carrying weft's message id.
pub const ARG_MESSAGE_ID: &str = "weft_message_id";
/// `custom_args` key carrying weft's attempt id.
pub const ARG_ATTEMPT_ID: &str = "weft_attempt_id";
/// The answer header holding SendGrid's message id.
pub const MESSAGE_ID_HEADER: &str = "X-Message-Id";

/// A request body ready to send, and the `Message-ID` (no brackets) it carries.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub body: Value,
    pub message_id: String,
}

fn rejected(reason: FailureReason, detail: &str) -> SendError {
    SendError::permanent(reason, detail)
}

fn mailbox(a: &Address) -> Value {
    match &a.name {
        Some(n) => json!({"email": a.email, "name": n}),
        None => json!({"email": a.email}),
    }
}

/// Checks the message and builds the body; refusals happen here, before any request.
pub fn build(cfg: &SendgridConfig, msg: &OutboundMessage) -> Result<Prepared, SendError> {
    if msg.channel != Channel::Email {
        return Err(rejected(
            FailureReason::NoRoute,
            "sendgrid carries only email",
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
        None => cfg.default_from().ok_or_else(|| {
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

    let headers_in = msg.email.clone().unwrap_or_default();
    let message_id = match headers_in.message_id.as_deref().map(email::strip_brackets) {
        Some(id) => id.to_string(),
        None => {
            let domain = from.email.rsplit('@').next().unwrap_or("localhost");
            format!("{}@{domain}", msg.message_id)
        }
    };
    if !email::valid_msg_id(&message_id) {
        return Err(rejected(
            FailureReason::ProviderRejected,
            "the Message-ID is not of the form local@domain",
        ));
    }
    let mut headers = Map::new();
    headers.insert(
        "Message-ID".into(),
        Value::String(email::bracket(&message_id)),
    );
    if let Some(irt) = headers_in
        .in_reply_to
        .as_deref()
        .map(email::strip_brackets)
        .filter(|s| !s.is_empty())
    {
        headers.insert("In-Reply-To".into(), Value::String(email::bracket(irt)));
    }
    let refs: Vec<String> = headers_in
        .references
        .iter()
        .map(|r| email::strip_brackets(r))
        .filter(|r| !r.is_empty())
        .map(email::bracket)
        .collect();
    if !refs.is_empty() {
        headers.insert("References".into(), Value::String(refs.join(" ")));
    }

    let mut personalization = json!({ "to": [{"email": to}] });
    let mut body = json!({
        "personalizations": [],
        "from": mailbox(&from),
        "headers": headers,
        "custom_args": { ARG_MESSAGE_ID: msg.message_id, ARG_ATTEMPT_ID: msg.attempt_id },
    });
    if let Some(subject) = subject {
        body["subject"] = json!(subject);
    }
    if let Some(text) = text {
        body["content"] = json!([{"type": "text/plain", "value": text}]);
    }
    if let Some(t) = template {
        body["template_id"] = json!(t.name.trim());
        if !t.variables.is_empty() {
            personalization["dynamic_template_data"] = json!(t.variables);
        }
    }
    body["personalizations"] = json!([personalization]);
    if let Some(rt) = headers_in.reply_to.as_deref() {
        let rt = email::parse_mailbox(rt).ok_or_else(|| {
            rejected(
                FailureReason::ProviderRejected,
                "the Reply-To is not an e-mail address",
            )
        })?;
        body["reply_to"] = mailbox(&rt);
    }
    if cfg.sandbox_mode {
        body["mail_settings"] = json!({"sandbox_mode": {"enable": true}});
    }
    Ok(Prepared { body, message_id })
}

/// A 2xx answer: SendGrid's id is the `X-Message-Id` header. The mail is accepted either way,
/// so a missing header must not turn into a retry (that would send it twice): the receipt then
/// carries our own `Message-ID`, and events still find the message through `custom_args`.
pub fn receipt(headers: &http::HeaderMap, message_id: &str) -> SendReceipt {
    let id = headers
        .get(MESSAGE_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(String::from);
    match id {
        Some(id) => SendReceipt::queued(vec![id]),
        None => {
            tracing::warn!(
                "SendGrid accepted the send without an X-Message-Id; using our Message-ID."
            );
            SendReceipt::queued(vec![message_id.to_string()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_provider::{ConnectionSpec, EmailHeaders, ProviderKind, Template};

    fn cfg() -> SendgridConfig {
        let mut s = ConnectionSpec::new("sg", ProviderKind::Sendgrid);
        s.credentials.insert("api_key", "SG.k");
        s.settings
            .insert("from".into(), json!("Shop <news@shop.example>"));
        match SendgridConfig::from_spec(&s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn msg() -> OutboundMessage {
        OutboundMessage {
            message_id: "msg_01".into(),
            attempt_id: "att_01".into(),
            channel: Channel::Email,
            to: "ana@example.org".into(),
            from: None,
            body: Some("Hello".into()),
            subject: Some("Hi".into()),
            template: None,
            email: None,
            reply_to_provider_id: None,
            voice: None,
            status_callback_url: "http://127.0.0.1/cb".into(),
        }
    }

    #[test]
    fn plain_mail() {
        let p = match build(&cfg(), &msg()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.message_id, "msg_01@shop.example");
        assert_eq!(
            p.body["from"],
            json!({"email": "news@shop.example", "name": "Shop"})
        );
        assert_eq!(
            p.body["headers"]["Message-ID"],
            json!("<msg_01@shop.example>")
        );
        assert_eq!(
            p.body["custom_args"],
            json!({"weft_message_id": "msg_01", "weft_attempt_id": "att_01"})
        );
        assert_eq!(
            p.body["content"],
            json!([{"type": "text/plain", "value": "Hello"}])
        );
        assert!(p.body.get("reply_to").is_none() && p.body.get("template_id").is_none());
    }

    #[test]
    fn threading_headers_and_template() {
        let mut m = msg();
        m.body = None;
        m.subject = None;
        m.email = Some(EmailHeaders {
            message_id: Some("<msg_02@mail.shop.example>".into()),
            in_reply_to: Some("cust-1@mail.example.org".into()),
            references: vec!["<a@x>".into(), "cust-1@mail.example.org".into()],
            reply_to: Some("reply+tok@in.shop.example".into()),
        });
        m.template = Some(Template {
            name: "d-123".into(),
            language: None,
            variables: [("code".to_string(), "42".to_string())].into(),
        });
        let p = match build(&cfg(), &m) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(
            p.body["headers"]["In-Reply-To"],
            json!("<cust-1@mail.example.org>")
        );
        assert_eq!(
            p.body["headers"]["References"],
            json!("<a@x> <cust-1@mail.example.org>")
        );
        assert_eq!(
            p.body["reply_to"],
            json!({"email": "reply+tok@in.shop.example"})
        );
        assert_eq!(p.body["template_id"], json!("d-123"));
        assert_eq!(
            p.body["personalizations"][0]["dynamic_template_data"],
            json!({"code": "42"})
        );
    }

    #[test]
    fn refusals_before_any_request() {
        let c = cfg();
        let mut m = msg();
        m.subject = None;
        assert_eq!(
            build(&c, &m)
                .map(|_| ())
                .map_err(|e| e.detail().to_string()),
            Err("email needs a subject".into())
        );
        let mut m = msg();
        m.to = "+4915100000".into();
        assert!(build(&c, &m).is_err_and(|e| e.reason() == FailureReason::InvalidAddress));
        let mut m = msg();
        m.channel = Channel::Sms;
        assert!(build(&c, &m).is_err_and(|e| e.reason() == FailureReason::NoRoute));
        let mut m = msg();
        m.body = None;
        assert!(build(&c, &m).is_err_and(|e| !e.is_retryable()));
    }

    #[test]
    fn receipt_falls_back_to_our_message_id() {
        let mut h = http::HeaderMap::new();
        assert_eq!(receipt(&h, "m@x").provider_ids, vec!["m@x"]);
        h.insert(
            MESSAGE_ID_HEADER,
            http::HeaderValue::from_static("Xm2pQ7vL9k4Rz8NcT1wY6b"),
        );
        assert_eq!(
            receipt(&h, "m@x").provider_ids,
            vec!["Xm2pQ7vL9k4Rz8NcT1wY6b"]
        );
    }
}
