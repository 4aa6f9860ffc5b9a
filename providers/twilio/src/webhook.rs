//! Twilio webhooks → normalized [`InboundEvent`]s.
//!
//! Kinds (`/webhooks/twilio/{connection}/{kind}`):
//! - `status`: message status callbacks (`MessageSid` + `MessageStatus`) and call status
//!   callbacks (`CallSid` + `CallStatus`) → [`InboundEvent::Status`]; a status callback of an
//!   *inbound* call (`Direction=inbound`) → [`InboundEvent::Call`]. weft's ids come from the
//!   URL query (`m` message, `a` attempt). Dedupe: `I-Twilio-Idempotency-Token`, else
//!   `{sid}:{status}`.
//! - `inbound`: inbound SMS and WhatsApp → [`InboundEvent::Message`] (`whatsapp:` prefix decides
//!   the channel; both use `tel:+E164` identities). Dedupe: `MessageSid`.
//! - `voice`: an inbound call → [`InboundEvent::Call`]. Dedupe: `CallSid`.

use crate::errors::callback_error_detail;
use crate::status_map;
use std::borrow::Cow;
use weft_provider::{
    CallEvent, Channel, Correlation, InboundEvent, InboundMessage, Media, ParseError, StatusEvent,
    WebhookRequest,
};

/// The header Twilio repeats on retries of one webhook delivery.
pub const IDEMPOTENCY_HEADER: &str = "I-Twilio-Idempotency-Token";

/// At most this many media items are read from one message.
const MAX_MEDIA: usize = 20;

/// Form fields in order (first value wins), borrowed from the body where no decoding was
/// needed. Lookups scan: a callback has a few dozen fields, and owning and hashing each of
/// them cost more than the comparisons (this runs for every receipt).
pub(crate) struct Form<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'a> Form<'a> {
    fn new(req: &'a WebhookRequest) -> Self {
        Form(form_urlencoded::parse(&req.body).collect())
    }
    /// The body's form fields, or `None` for a JSON body (not a Twilio webhook).
    pub(crate) fn of(req: &'a WebhookRequest) -> Option<Self> {
        (!is_json(req)).then(|| Form::new(req))
    }
    pub(crate) fn fields(&self) -> &[(Cow<'a, str>, Cow<'a, str>)] {
        &self.0
    }
    /// The first value of `k`, if it is non-empty.
    fn get(&self, k: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.as_ref())
            .filter(|v| !v.is_empty())
    }
    fn owned(&self, k: &str) -> Option<String> {
        self.get(k).map(String::from)
    }
    fn require(&self, k: &'static str, what: &'static str) -> Result<&str, ParseError> {
        self.get(k)
            .ok_or_else(|| ParseError::new(what, format!("field {k} is missing")))
    }
    fn is_true(&self, k: &str) -> bool {
        self.get(k).is_some_and(|v| v.eq_ignore_ascii_case("true"))
    }
}

/// Parses a verified webhook of any kind this adapter declares.
pub fn parse(req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
    match Form::of(req) {
        Some(form) => parse_form(req, &form),
        None => Err(ParseError::new(
            "twilio webhook",
            "JSON bodies are not a Twilio messaging or voice webhook",
        )),
    }
}

fn is_json(req: &WebhookRequest) -> bool {
    req.header("content-type")
        .is_some_and(|c| c.to_ascii_lowercase().contains("json"))
}

/// [`parse`] for a form body already read.
pub(crate) fn parse_form(
    req: &WebhookRequest,
    form: &Form<'_>,
) -> Result<Vec<InboundEvent>, ParseError> {
    match req.kind.as_str() {
        "status" => parse_status(req, form).map(|e| vec![e]),
        "inbound" => parse_inbound(form).map(|m| vec![InboundEvent::Message(m)]),
        "voice" => parse_voice(form).map(|c| vec![InboundEvent::Call(c)]),
        other => Err(ParseError::new(
            "twilio webhook",
            format!("unknown webhook kind {other:?}"),
        )),
    }
}

fn correlation(req: &WebhookRequest) -> Correlation {
    Correlation {
        message_id: req.query("m").filter(|v| !v.is_empty()),
        attempt_id: req.query("a").filter(|v| !v.is_empty()),
    }
}

fn dedupe(req: &WebhookRequest, sid: &str, status: &str) -> String {
    match req
        .header(IDEMPOTENCY_HEADER)
        .map(str::trim)
        .filter(|t| !t.is_empty())
    {
        Some(token) => token.to_string(),
        None => format!("{sid}:{status}"),
    }
}

fn parse_status(req: &WebhookRequest, form: &Form<'_>) -> Result<InboundEvent, ParseError> {
    let message_sid = form.get("MessageSid").or(form.get("SmsSid"));
    let message_status = form.get("MessageStatus").or(form.get("SmsStatus"));
    if let (Some(sid), Some(raw)) = (message_sid, message_status) {
        let error_code = form.owned("ErrorCode").filter(|c| c != "0");
        let error_detail = error_code
            .as_deref()
            .and_then(callback_error_detail)
            .or_else(|| status_map::message_status_note(raw))
            .map(String::from);
        return Ok(InboundEvent::Status(StatusEvent {
            provider_message_id: sid.to_string(),
            correlation: correlation(req),
            status: status_map::message_status(raw),
            raw_status: raw.to_string(),
            opted_out: status_map::is_opt_out(error_code.as_deref()),
            error_code,
            error_detail,
            occurred_at_ms: form.get("RawDlrDoneDate").and_then(parse_dlr_done_date),
            dedupe_key: dedupe(req, sid, raw),
        }));
    }
    if let (Some(sid), Some(raw)) = (form.get("CallSid"), form.get("CallStatus")) {
        let occurred_at_ms = form.get("Timestamp").and_then(parse_rfc2822_ms);
        if form.get("Direction") == Some("inbound") {
            let mut call = call_event(form, sid, raw)?;
            call.received_at_ms = occurred_at_ms;
            call.dedupe_key = dedupe(req, sid, raw);
            return Ok(InboundEvent::Call(call));
        }
        let error_code = form.owned("ErrorCode").filter(|c| c != "0");
        let error_detail = match (form.get("SipResponseCode"), raw) {
            (Some(sip), "failed" | "busy" | "no-answer") => Some(format!("SIP response {sip}")),
            _ => error_code
                .as_deref()
                .and_then(callback_error_detail)
                .map(String::from),
        };
        return Ok(InboundEvent::Status(StatusEvent {
            provider_message_id: sid.to_string(),
            correlation: correlation(req),
            status: status_map::call_status(raw),
            raw_status: raw.to_string(),
            opted_out: false,
            error_code,
            error_detail,
            occurred_at_ms,
            dedupe_key: dedupe(req, sid, raw),
        }));
    }
    Err(ParseError::new(
        "twilio status callback",
        "neither MessageSid+MessageStatus nor CallSid+CallStatus is present",
    ))
}

/// `tel:+E164` for phone numbers (with or without the `whatsapp:` prefix), else the address
/// as Twilio gave it (`client:alice`, `sip:…`, a short code).
pub fn identity(addr: &str) -> String {
    let bare = addr.strip_prefix("whatsapp:").unwrap_or(addr).trim();
    let digits = bare.strip_prefix('+').unwrap_or(bare);
    if !digits.is_empty()
        && digits.len() <= 15
        && digits.bytes().all(|b| b.is_ascii_digit())
        && bare.starts_with('+')
    {
        format!("tel:+{digits}")
    } else if bare.contains(':') {
        bare.to_string()
    } else {
        format!("tel:{bare}")
    }
}

fn parse_inbound(form: &Form<'_>) -> Result<InboundMessage, ParseError> {
    const WHAT: &str = "twilio inbound message";
    let sid = form
        .get("MessageSid")
        .or(form.get("SmsMessageSid"))
        .or(form.get("SmsSid"));
    let sid = sid.ok_or_else(|| ParseError::new(WHAT, "field MessageSid is missing"))?;
    let from = form.require("From", WHAT)?;
    let to = form.require("To", WHAT)?;
    let channel = if from.starts_with("whatsapp:") {
        Channel::Whatsapp
    } else {
        Channel::Sms
    };

    // `MediaUrl{i}` for i < NumMedia; scanned by name so a wrong count loses nothing.
    let media = (0..MAX_MEDIA)
        .filter_map(|i| {
            form.owned(&format!("MediaUrl{i}")).map(|url| Media {
                url: Some(url),
                provider_media_id: None,
                content_type: form.owned(&format!("MediaContentType{i}")),
            })
        })
        .collect();

    let forwarded = form.is_true("Forwarded") || form.is_true("FrequentlyForwarded");
    let reply_to_provider_id = if forwarded {
        None
    } else {
        form.owned("OriginalRepliedMessageSid")
    };
    Ok(InboundMessage {
        provider_message_id: sid.to_string(),
        channel,
        from: identity(from),
        to: identity(to),
        body: form.owned("Body"),
        subject: None,
        email: None,
        reply_to_provider_id,
        forwarded,
        profile_name: form.owned("ProfileName"),
        media,
        received_at_ms: None,
        dedupe_key: sid.to_string(),
    })
}

fn call_event(form: &Form<'_>, sid: &str, raw: &str) -> Result<CallEvent, ParseError> {
    const WHAT: &str = "twilio call";
    Ok(CallEvent {
        provider_call_id: sid.to_string(),
        from: identity(form.require("From", WHAT)?),
        to: identity(form.require("To", WHAT)?),
        direction: "inbound".to_string(),
        raw_status: raw.to_string(),
        caller_name: form.owned("CallerName"),
        duration_seconds: form.get("CallDuration").and_then(|d| d.parse().ok()),
        received_at_ms: None,
        dedupe_key: sid.to_string(),
    })
}

fn parse_voice(form: &Form<'_>) -> Result<CallEvent, ParseError> {
    let sid = form.require("CallSid", "twilio inbound call")?;
    let raw = form.get("CallStatus").unwrap_or("ringing");
    call_event(form, sid, raw)
}

/// `Timestamp` of call callbacks: RFC 2822 (`Tue, 16 Aug 2016 03:45:01 +0000`).
fn parse_rfc2822_ms(s: &str) -> Option<i64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc2822).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// `RawDlrDoneDate`: `YYMMDDhhmm`, read as UTC (format unconfirmed, so only a hint).
fn parse_dlr_done_date(s: &str) -> Option<i64> {
    if s.len() != 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s.get(r).and_then(|x| x.parse::<u8>().ok());
    let month = time::Month::try_from(n(2..4)?).ok()?;
    let date = time::Date::from_calendar_date(2000 + i32::from(n(0..2)?), month, n(4..6)?).ok()?;
    let t = date.with_hms(n(6..8)?, n(8..10)?, 0).ok()?.assume_utc();
    Some(t.unix_timestamp() * 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities() {
        assert_eq!(identity("+4915112345678"), "tel:+4915112345678");
        assert_eq!(identity("whatsapp:+4915112345678"), "tel:+4915112345678");
        assert_eq!(identity("client:alice"), "client:alice");
        assert_eq!(identity("12345"), "tel:12345");
    }

    #[test]
    fn dates() {
        assert_eq!(
            parse_rfc2822_ms("Thu, 01 Jan 2026 00:00:00 +0000"),
            Some(1_767_225_600_000)
        );
        assert_eq!(parse_dlr_done_date("2601010000"), Some(1_767_225_600_000));
        assert_eq!(parse_dlr_done_date("26013"), None);
        assert_eq!(parse_dlr_done_date("2613010000"), None);
    }
}
