//! Builds the `POST /v3/{domain}/messages` form and reads the receipt.
//!
//! The form is url-encoded (Mailgun takes multipart only for files, and weft sends none):
//! `from`, `to`, `subject`, `text`; our headers as `h:Message-Id`, `h:Reply-To`,
//! `h:In-Reply-To`, `h:References` (ids in angle brackets); weft's ids as
//! `v:weft_message_id` / `v:weft_attempt_id` (back as `user-variables` on every event);
//! templates as `template` + `t:variables` (JSON).

use crate::config::MailgunConfig;
use crate::email::{self, Address};
use weft_mailkit::outbound;
use weft_provider::{OutboundMessage, SendError, SendReceipt};

/// User variable carrying weft's message id.
pub const VAR_MESSAGE_ID: &str = "weft_message_id";
/// User variable carrying weft's attempt id.
pub const VAR_ATTEMPT_ID: &str = "weft_attempt_id";

/// A form ready to send, and the `Message-ID` (no brackets) it carries.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub form: Vec<(String, String)>,
    pub message_id: String,
}

impl Prepared {
    pub fn encoded(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.form {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

/// `Name <addr>`, quoting the name when it needs it.
fn display(a: &Address) -> String {
    match &a.name {
        Some(n)
            if n.chars()
                .all(|c| c.is_alphanumeric() || c == ' ' || c == '-') =>
        {
            format!("{n} <{}>", a.email)
        }
        Some(n) => format!(
            "\"{}\" <{}>",
            n.replace('\\', "\\\\").replace('"', "\\\""),
            a.email
        ),
        None => a.email.clone(),
    }
}

/// Checks the message and builds the form; refusals happen here, before any request.
pub fn build(cfg: &MailgunConfig, msg: &OutboundMessage) -> Result<Prepared, SendError> {
    let mail = outbound::draft(
        "mailgun",
        msg,
        || Some(cfg.default_from()),
        Some(&cfg.domain),
    )?;
    let mut form: Vec<(String, String)> = Vec::new();
    let mut put = |k: &str, v: String| form.push((k.to_string(), v));
    put("from", display(&mail.from));
    put("to", mail.to.to_string());
    if let Some(s) = mail.subject {
        put("subject", s.to_string());
    }
    if let Some(t) = mail.text {
        put("text", t.to_string());
    }
    if let Some(t) = mail.template {
        put("template", t.name.trim().to_string());
        if !t.variables.is_empty() {
            put(
                "t:variables",
                serde_json::to_string(&t.variables).unwrap_or_default(),
            );
        }
    }
    put("h:Message-Id", email::bracket(&mail.message_id));
    if let Some(rt) = &mail.reply_to {
        put("h:Reply-To", display(rt));
    }
    if let Some(irt) = mail.in_reply_to {
        put("h:In-Reply-To", irt);
    }
    if let Some(refs) = mail.references {
        put("h:References", refs);
    }
    put(&format!("v:{VAR_MESSAGE_ID}"), msg.message_id.clone());
    put(&format!("v:{VAR_ATTEMPT_ID}"), msg.attempt_id.clone());
    if cfg.test_mode {
        put("o:testmode", "yes".to_string());
    }
    Ok(Prepared {
        form,
        message_id: mail.message_id,
    })
}

/// A 2xx answer `{"id":"<…>","message":"Queued. Thank you."}`: the id without brackets, as
/// events carry it. Mailgun has the mail either way, so an answer without an id is not retried
/// (that would send twice): the receipt then carries our own `Message-ID`.
pub fn receipt(body: &[u8], message_id: &str) -> SendReceipt {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    match v["id"]
        .as_str()
        .map(email::strip_brackets)
        .filter(|s| !s.is_empty())
    {
        Some(id) => SendReceipt::queued(vec![id.to_string()]),
        None => {
            tracing::warn!("Mailgun accepted the send without an id; using our Message-ID.");
            SendReceipt::queued(vec![message_id.to_string()])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use weft_mailkit::testing::email_message;
    use weft_provider::{ConnectionSpec, EmailHeaders, FailureReason, ProviderKind, Template};

    fn cfg() -> MailgunConfig {
        let mut s = ConnectionSpec::new("mg", ProviderKind::Mailgun);
        s.credentials.insert("api_key", "key-k");
        s.settings
            .insert("domain".into(), serde_json::json!("mg.shop.example"));
        s.settings
            .insert("from".into(), serde_json::json!("Shop <news@shop.example>"));
        s.settings
            .insert("test_mode".into(), serde_json::json!(true));
        match MailgunConfig::from_spec(&s) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn msg() -> OutboundMessage {
        email_message("msg_01", "att_01", "ana@example.org", "Hi", "Hello")
    }

    fn get<'a>(p: &'a Prepared, k: &str) -> Option<&'a str> {
        p.form
            .iter()
            .find(|(fk, _)| fk == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn plain_mail() {
        let p = match build(&cfg(), &msg()) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(p.message_id, "msg_01@mg.shop.example");
        assert_eq!(get(&p, "from"), Some("Shop <news@shop.example>"));
        assert_eq!(get(&p, "h:Message-Id"), Some("<msg_01@mg.shop.example>"));
        assert_eq!(get(&p, "v:weft_message_id"), Some("msg_01"));
        assert_eq!(get(&p, "v:weft_attempt_id"), Some("att_01"));
        assert_eq!(get(&p, "o:testmode"), Some("yes"));
        assert!(p
            .encoded()
            .contains("h%3AMessage-Id=%3Cmsg_01%40mg.shop.example%3E"));
    }

    #[test]
    fn threading_and_template() {
        let mut m = msg();
        m.body = None;
        m.subject = None;
        m.from = Some("\"O'Brien, Support\" <help@shop.example>".into());
        m.email = Some(EmailHeaders {
            message_id: None,
            in_reply_to: Some("<c1@x>".into()),
            references: vec!["a@x".into(), "<c1@x>".into()],
            reply_to: Some("reply+AbC@in.shop.example".into()),
        });
        m.template = Some(Template {
            name: "welcome".into(),
            language: None,
            variables: [("n".to_string(), "1".to_string())].into(),
        });
        let p = match build(&cfg(), &m) {
            Ok(p) => p,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(get(&p, "h:In-Reply-To"), Some("<c1@x>"));
        assert_eq!(get(&p, "h:References"), Some("<a@x> <c1@x>"));
        assert_eq!(get(&p, "h:Reply-To"), Some("reply+AbC@in.shop.example"));
        assert_eq!(get(&p, "template"), Some("welcome"));
        assert_eq!(get(&p, "t:variables"), Some(r#"{"n":"1"}"#));
        assert_eq!(get(&p, "subject"), None);
        assert_eq!(
            get(&p, "from"),
            Some("\"O'Brien, Support\" <help@shop.example>")
        );
    }

    #[test]
    fn refusals_and_receipts() {
        let mut m = msg();
        m.subject = Some("  ".into());
        assert!(build(&cfg(), &m).is_err_and(|e| e.detail() == "email needs a subject"));
        let mut m = msg();
        m.to = "nope".into();
        assert!(build(&cfg(), &m).is_err_and(|e| e.reason() == FailureReason::InvalidAddress));
        assert_eq!(
            receipt(br#"{"id":"<20111114174239.25659.5817@samples.mailgun.org>","message":"Queued. Thank you."}"#, "m@x").provider_ids,
            vec!["20111114174239.25659.5817@samples.mailgun.org"]
        );
        assert_eq!(receipt(b"", "m@x").provider_ids, vec!["m@x"]);
    }
}
