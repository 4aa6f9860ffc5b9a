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
use weft_mailkit::outbound;
use weft_provider::{OutboundMessage, SendError, SendReceipt};

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

fn mailbox(a: &Address) -> Value {
    match &a.name {
        Some(n) => json!({"email": a.email, "name": n}),
        None => json!({"email": a.email}),
    }
}

/// Checks the message and builds the body; refusals happen here, before any request.
pub fn build(cfg: &SendgridConfig, msg: &OutboundMessage) -> Result<Prepared, SendError> {
    let mail = outbound::draft("sendgrid", msg, || cfg.default_from(), None)?;
    let mut headers = Map::new();
    headers.insert(
        "Message-ID".into(),
        Value::String(email::bracket(&mail.message_id)),
    );
    if let Some(irt) = mail.in_reply_to {
        headers.insert("In-Reply-To".into(), Value::String(irt));
    }
    if let Some(refs) = mail.references {
        headers.insert("References".into(), Value::String(refs));
    }

    let mut personalization = json!({ "to": [{"email": mail.to}] });
    let mut body = json!({
        "personalizations": [],
        "from": mailbox(&mail.from),
        "headers": headers,
        "custom_args": { ARG_MESSAGE_ID: msg.message_id, ARG_ATTEMPT_ID: msg.attempt_id },
    });
    if let Some(subject) = mail.subject {
        body["subject"] = json!(subject);
    }
    if let Some(text) = mail.text {
        body["content"] = json!([{"type": "text/plain", "value": text}]);
    }
    if let Some(t) = mail.template {
        body["template_id"] = json!(t.name.trim());
        if !t.variables.is_empty() {
            personalization["dynamic_template_data"] = json!(t.variables);
        }
    }
    body["personalizations"] = json!([personalization]);
    if let Some(rt) = &mail.reply_to {
        body["reply_to"] = mailbox(rt);
    }
    if cfg.sandbox_mode {
        body["mail_settings"] = json!({"sandbox_mode": {"enable": true}});
    }
    Ok(Prepared {
        body,
        message_id: mail.message_id,
    })
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
    use weft_mailkit::testing::email_message;
    use weft_provider::{
        Channel, ConnectionSpec, EmailHeaders, FailureReason, ProviderKind, Template,
    };

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
            status_callback_url: "http://127.0.0.1/cb".into(),
            ..email_message("msg_01", "att_01", "ana@example.org", "Hi", "Hello")
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
