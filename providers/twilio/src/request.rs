//! Building Twilio REST requests from an [`OutboundMessage`], and reading the 2xx answer.
//!
//! - SMS: `POST …/Messages.json` with `To`, `From` and/or `MessagingServiceSid`, `Body` (or
//!   `ContentSid` + `ContentVariables` for a template), `StatusCallback`.
//! - WhatsApp: the same, with `whatsapp:` in front of `To` and `From`.
//! - Voice: `POST …/Calls.json` with `Twiml=<Response><Say …>text</Say></Response>`,
//!   `StatusCallback` and the four `StatusCallbackEvent`s.

use crate::config::TwilioConfig;
use serde::Deserialize;
use weft_provider::{Channel, FailureReason, OutboundMessage, SendError, SendReceipt};

/// The REST resources a send posts to (each resource list's endpoint).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `Messages.json`: SMS and WhatsApp.
    Messages,
    /// `Calls.json`: voice.
    Calls,
}

impl Endpoint {
    /// The last path segment under the account.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::Messages => "Messages.json",
            Endpoint::Calls => "Calls.json",
        }
    }
}

/// One REST call to make: which resource and its form fields, in order (repeats allowed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TwilioRequest {
    pub resource: Endpoint,
    pub form: Vec<(String, String)>,
}

impl TwilioRequest {
    /// The form body, `application/x-www-form-urlencoded`.
    pub fn encoded(&self) -> String {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &self.form {
            s.append_pair(k, v);
        }
        s.finish()
    }
}

/// The call progress events weft asks for.
pub const CALL_EVENTS: [&str; 4] = ["initiated", "ringing", "answered", "completed"];

const WHATSAPP: &str = "whatsapp:";

fn bare(addr: &str) -> &str {
    addr.strip_prefix(WHATSAPP).unwrap_or(addr)
}

fn whatsapp(addr: &str) -> String {
    format!("{WHATSAPP}{}", bare(addr))
}

/// Escapes text for an XML element or attribute value.
pub fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // XML 1.0 forbids most control characters; TTS would not read them anyway.
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// `<Response><Say language="…" voice="…">text</Say></Response>`; attributes only when set.
pub fn say_twiml(text: &str, language: Option<&str>, voice: Option<&str>) -> String {
    let mut attrs = String::new();
    if let Some(l) = language {
        attrs.push_str(&format!(" language=\"{}\"", xml_escape(l)));
    }
    if let Some(v) = voice {
        attrs.push_str(&format!(" voice=\"{}\"", xml_escape(v)));
    }
    format!(
        "<Response><Say{attrs}>{}</Say></Response>",
        xml_escape(text)
    )
}

fn push(form: &mut Vec<(String, String)>, k: &str, v: impl Into<String>) {
    form.push((k.to_string(), v.into()));
}

/// Builds the request for one message, or refuses it before any network call.
pub fn build(cfg: &TwilioConfig, msg: &OutboundMessage) -> Result<TwilioRequest, SendError> {
    match msg.channel {
        Channel::Sms | Channel::Whatsapp => build_message(cfg, msg),
        Channel::Voice => build_call(cfg, msg),
        other => Err(SendError::config(format!(
            "twilio does not carry the {other} channel"
        ))),
    }
}

fn sender(cfg: &TwilioConfig, msg: &OutboundMessage) -> Option<String> {
    msg.from
        .clone()
        .or_else(|| cfg.senders.first().cloned())
        .filter(|s| !s.trim().is_empty())
}

fn build_message(cfg: &TwilioConfig, msg: &OutboundMessage) -> Result<TwilioRequest, SendError> {
    let is_wa = msg.channel == Channel::Whatsapp;
    let addr = |a: &str| {
        if is_wa {
            whatsapp(a)
        } else {
            bare(a).to_string()
        }
    };
    let mut form = Vec::new();
    push(&mut form, "To", addr(&msg.to));

    // An explicit sender wins; a Messaging Service picks one from its pool otherwise.
    let from = msg.from.clone().filter(|s| !s.trim().is_empty());
    let from = match (&from, &cfg.messaging_service_sid) {
        (None, None) => sender(cfg, msg),
        _ => from,
    };
    if let Some(f) = &from {
        push(&mut form, "From", addr(f));
    }
    if let Some(mg) = &cfg.messaging_service_sid {
        push(&mut form, "MessagingServiceSid", mg.clone());
    }
    if from.is_none() && cfg.messaging_service_sid.is_none() {
        return Err(SendError::config("no sender: set the message's from, a connection sender or settings.messaging_service_sid"));
    }

    match (&msg.template, &msg.body) {
        (Some(t), _) => {
            push(&mut form, "ContentSid", t.name.clone());
            if !t.variables.is_empty() {
                let vars = serde_json::to_string(&t.variables).map_err(|e| {
                    SendError::permanent(
                        FailureReason::ProviderRejected,
                        format!("template variables: {e}"),
                    )
                })?;
                push(&mut form, "ContentVariables", vars);
            }
        }
        (None, Some(body)) if !body.is_empty() => push(&mut form, "Body", body.clone()),
        _ => {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "a Twilio message needs a body or a template",
            ))
        }
    }
    if !msg.status_callback_url.is_empty() {
        push(&mut form, "StatusCallback", msg.status_callback_url.clone());
    }
    Ok(TwilioRequest {
        resource: Endpoint::Messages,
        form,
    })
}

fn build_call(cfg: &TwilioConfig, msg: &OutboundMessage) -> Result<TwilioRequest, SendError> {
    let from = sender(cfg, msg).ok_or_else(|| {
        SendError::config("no caller id: set the message's from or a connection sender")
    })?;
    let text = msg
        .body
        .as_deref()
        .filter(|b| !b.trim().is_empty())
        .ok_or_else(|| {
            SendError::permanent(
                FailureReason::ProviderRejected,
                "a voice call needs a body to speak",
            )
        })?;
    let opts = msg.voice.as_ref();
    let language = opts
        .and_then(|v| v.language.as_deref())
        .or(cfg.voice_language.as_deref());
    let voice = opts
        .and_then(|v| v.voice.as_deref())
        .or(cfg.voice_name.as_deref());

    let mut form = Vec::new();
    push(&mut form, "To", bare(&msg.to));
    push(&mut form, "From", bare(&from));
    push(&mut form, "Twiml", say_twiml(text, language, voice));
    if !msg.status_callback_url.is_empty() {
        push(&mut form, "StatusCallback", msg.status_callback_url.clone());
        push(&mut form, "StatusCallbackMethod", "POST");
        for e in CALL_EVENTS {
            push(&mut form, "StatusCallbackEvent", e);
        }
    }
    Ok(TwilioRequest {
        resource: Endpoint::Calls,
        form,
    })
}

/// The parts of a Message or Call resource we read.
#[derive(Debug, Deserialize)]
struct Resource {
    sid: Option<String>,
    #[serde(default)]
    num_segments: Option<serde_json::Value>,
}

/// Reads a 2xx answer. A 2xx without a `sid` means Twilio may hold the message although we
/// cannot track it: reported as an ambiguous [`SendError::timeout`], so it is not resent
/// blindly elsewhere.
pub fn receipt(body: &[u8]) -> Result<SendReceipt, SendError> {
    let res: Resource = serde_json::from_slice(body).map_err(|e| {
        SendError::timeout(format!("Twilio answered 2xx with an unreadable body: {e}"))
    })?;
    let sid = res
        .sid
        .filter(|s| !s.is_empty())
        .ok_or_else(|| SendError::timeout("Twilio answered 2xx without a sid"))?;
    // `num_segments` is a string ("2"), "0" via a Messaging Service (not known yet).
    let segments = match res.num_segments {
        Some(serde_json::Value::String(s)) => s.parse::<u32>().ok(),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        _ => None,
    }
    .filter(|n| *n > 0);
    let mut r = SendReceipt::queued(vec![sid]);
    r.segments = segments;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_xml() {
        assert_eq!(
            xml_escape(r#"a<b>&"c"'d"#),
            "a&lt;b&gt;&amp;&quot;c&quot;&apos;d"
        );
        assert_eq!(
            say_twiml("Hi & bye", Some("en-GB"), Some("Polly.Amy")),
            r#"<Response><Say language="en-GB" voice="Polly.Amy">Hi &amp; bye</Say></Response>"#
        );
        assert_eq!(
            say_twiml("x", None, None),
            "<Response><Say>x</Say></Response>"
        );
    }

    #[test]
    fn receipts() {
        let r = receipt(br#"{"sid":"SM1","status":"queued","num_segments":"2"}"#);
        assert_eq!(
            r.as_ref()
                .map(|r| (r.provider_ids.clone(), r.segments))
                .ok(),
            Some((vec!["SM1".to_string()], Some(2)))
        );
        let r = receipt(br#"{"sid":"SM1","status":"accepted","num_segments":"0"}"#);
        assert_eq!(r.map(|r| r.segments).ok(), Some(None));
        let e = receipt(b"{}").err();
        assert_eq!(e.map(|e| e.is_ambiguous()), Some(true));
    }
}
