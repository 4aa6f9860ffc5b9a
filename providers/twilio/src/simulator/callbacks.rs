//! What the simulator posts to weft: signed status callbacks (through the simkit
//! Callbacker) and on-demand inbound messages and calls.

use super::api::{new_sid, now_rfc2822, Form};
use super::{CallOutcome, MessageOutcome, Shared, WhatsappInbound};
use crate::verify::{sign, Algorithm, SIGNATURE_HEADER};
use crate::webhook::IDEMPOTENCY_HEADER;
use weft_simkit::{CallbackBehaviour, OutgoingCallback};

type Params = Vec<(String, String)>;

const FORM: &str = "application/x-www-form-urlencoded";
const API_VERSION: &str = "2010-04-01";
/// The sender a Messaging Service picks when a send names none.
const SERVICE_SENDER: &str = "+15005550006";

/// What weft answered to an inbound webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    /// The `MessageSid` / `CallSid` the simulator made up for it.
    pub sid: String,
    pub status: u16,
    pub content_type: Option<String>,
    /// The answer body (TwiML for `voice`).
    pub body: String,
}

fn kv(k: &str, v: impl Into<String>) -> (String, String) {
    (k.to_string(), v.into())
}

fn encode(params: &Params) -> Vec<u8> {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish().into_bytes()
}

/// Signed as Twilio does: HMAC-SHA1 with the auth token over the exact URL + sorted params.
/// The idempotency token is fixed per callback, so the Callbacker's retries repeat it.
fn signed(shared: &Shared, url: &str, params: &Params) -> OutgoingCallback {
    let signature = sign(Algorithm::HmacSha1, &shared.cfg.auth_token, url, params);
    OutgoingCallback {
        url: url.to_string(),
        content_type: FORM,
        body: encode(params),
        headers: vec![
            (SIGNATURE_HEADER.to_string(), signature),
            (IDEMPOTENCY_HEADER.to_string(), new_sid("idem-")),
            ("User-Agent".to_string(), "TwilioProxy/1.1".to_string()),
        ],
        signature_header: Some(SIGNATURE_HEADER.to_string()),
    }
}

/// `YYMMDDhhmm` (UTC) for `RawDlrDoneDate`.
fn dlr_done_date() -> String {
    let t = time::OffsetDateTime::now_utc();
    format!(
        "{:02}{:02}{:02}{:02}{:02}",
        t.year() % 100,
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute()
    )
}

/// The callbacks of one accepted message, per the current [`MessageOutcome`].
pub(super) fn message_sequence(
    shared: &Shared,
    url: &str,
    sid: &str,
    form: &Form,
) -> Vec<OutgoingCallback> {
    let to = form.get("To").unwrap_or_default();
    let is_wa = to.starts_with("whatsapp:");
    let from = match form.get("From") {
        Some(f) => f.to_string(),
        None if is_wa => format!("whatsapp:{SERVICE_SENDER}"),
        None => SERVICE_SENDER.to_string(),
    };
    let mut steps: Vec<(&str, Option<&str>)> = match shared.message_outcome() {
        MessageOutcome::Delivered => vec![("sent", None), ("delivered", None)],
        MessageOutcome::Undelivered => vec![("sent", None), ("undelivered", Some("30003"))],
        MessageOutcome::Failed => vec![("failed", Some("30008"))],
    };
    if is_wa && shared.whatsapp_read() && shared.message_outcome() == MessageOutcome::Delivered {
        steps.push(("read", None));
    }
    steps
        .into_iter()
        .map(|(status, error)| {
            let mut p = vec![
                kv("AccountSid", shared.cfg.account_sid.clone()),
                kv("ApiVersion", API_VERSION),
                kv("From", from.clone()),
                kv("MessageSid", sid),
                kv("MessageStatus", status),
                kv("SmsSid", sid),
                kv("SmsStatus", status),
                kv("To", to),
            ];
            if let Some(mg) = form.get("MessagingServiceSid") {
                p.push(kv("MessagingServiceSid", mg));
            }
            if let Some(code) = error {
                p.push(kv("ErrorCode", code));
            }
            if status == "delivered" {
                p.push(kv("RawDlrDoneDate", dlr_done_date()));
            }
            signed(shared, url, &p)
        })
        .collect()
}

/// The callbacks of one placed call: the steps of the current [`CallOutcome`], each only if
/// its event was asked for in `StatusCallbackEvent` (default: `completed` only).
pub(super) fn call_sequence(
    shared: &Shared,
    url: &str,
    sid: &str,
    form: &Form,
) -> Vec<OutgoingCallback> {
    let mut asked: Vec<&str> = form
        .all("StatusCallbackEvent")
        .into_iter()
        .flat_map(str::split_whitespace)
        .collect();
    if asked.is_empty() {
        asked.push("completed");
    }
    // (CallStatus, the event that reports it, SipResponseCode)
    let steps: &[(&str, &str, Option<&str>)] = match shared.call_outcome() {
        CallOutcome::Completed => &[
            ("initiated", "initiated", None),
            ("ringing", "ringing", None),
            ("in-progress", "answered", None),
            ("completed", "completed", Some("200")),
        ],
        CallOutcome::Busy => &[
            ("initiated", "initiated", None),
            ("busy", "completed", Some("486")),
        ],
        CallOutcome::NoAnswer => &[
            ("initiated", "initiated", None),
            ("ringing", "ringing", None),
            ("no-answer", "completed", Some("487")),
        ],
        CallOutcome::Failed => &[("failed", "completed", Some("500"))],
    };
    let to = form.get("To").unwrap_or_default();
    let from = form.get("From").unwrap_or_default();
    let duration = shared.call_duration();
    steps
        .iter()
        .filter(|(_, event, _)| asked.contains(event))
        .enumerate()
        .map(|(seq, (status, _, sip))| {
            let mut p = vec![
                kv("AccountSid", shared.cfg.account_sid.clone()),
                kv("ApiVersion", API_VERSION),
                kv("CallSid", sid),
                kv("CallStatus", *status),
                kv("Called", to),
                kv("Caller", from),
                kv("CallbackSource", "call-progress-events"),
                kv("Direction", "outbound-api"),
                kv("From", from),
                kv("SequenceNumber", seq.to_string()),
                kv("Timestamp", now_rfc2822()),
                kv("To", to),
            ];
            if let Some(code) = sip {
                p.push(kv("SipResponseCode", *code));
            }
            if *status == "completed" {
                p.push(kv("CallDuration", duration.to_string()));
                p.push(kv("Duration", duration.div_ceil(60).max(1).to_string()));
            }
            signed(shared, url, &p)
        })
        .collect()
}

fn merge(params: &mut Params, extra: &[(&str, &str)]) {
    for (k, v) in extra {
        match params.iter_mut().find(|(n, _)| n == k) {
            Some(slot) => slot.1 = v.to_string(),
            None => params.push(kv(k, *v)),
        }
    }
}

pub(super) fn inbound_sms(
    shared: &Shared,
    from: &str,
    to: &str,
    body: &str,
    extra: &[(&str, &str)],
) -> Params {
    let sid = new_sid("SM");
    let mut p = vec![
        kv("AccountSid", shared.cfg.account_sid.clone()),
        kv("ApiVersion", API_VERSION),
        kv("Body", body),
        kv("From", from),
        kv("FromCountry", "US"),
        kv("MessageSid", sid.clone()),
        kv("NumMedia", "0"),
        kv("NumSegments", "1"),
        kv("SmsMessageSid", sid.clone()),
        kv("SmsSid", sid),
        kv("SmsStatus", "received"),
        kv("To", to),
        kv("ToCountry", "US"),
    ];
    merge(&mut p, extra);
    p
}

pub(super) fn inbound_whatsapp(
    shared: &Shared,
    from: &str,
    to: &str,
    body: &str,
    opts: &WhatsappInbound<'_>,
) -> Params {
    let bare_from = from.strip_prefix("whatsapp:").unwrap_or(from);
    let bare_to = to.strip_prefix("whatsapp:").unwrap_or(to);
    let sid = new_sid("SM");
    let mut p = vec![
        kv("AccountSid", shared.cfg.account_sid.clone()),
        kv("ApiVersion", API_VERSION),
        kv("Body", body),
        kv("From", format!("whatsapp:{bare_from}")),
        kv("MessageSid", sid.clone()),
        kv("MessageType", "text"),
        kv("NumMedia", "0"),
        kv("NumSegments", "1"),
        kv("SmsMessageSid", sid.clone()),
        kv("SmsSid", sid),
        kv("SmsStatus", "received"),
        kv("To", format!("whatsapp:{bare_to}")),
        kv("WaId", bare_from.trim_start_matches('+')),
    ];
    if let Some(name) = opts.profile_name {
        p.push(kv("ProfileName", name));
    }
    if let Some(quoted) = opts.quoted_sid {
        p.push(kv(&shared.cfg.replied_sid_field, quoted));
        p.push(kv(
            "OriginalRepliedMessageSender",
            format!("whatsapp:{bare_to}"),
        ));
    }
    if opts.forwarded {
        p.push(kv(&shared.cfg.forwarded_field, "true"));
    }
    merge(&mut p, opts.extra);
    p
}

pub(super) fn inbound_call(shared: &Shared, from: &str, to: &str) -> Params {
    vec![
        kv("AccountSid", shared.cfg.account_sid.clone()),
        kv("ApiVersion", API_VERSION),
        kv("CallSid", new_sid("CA")),
        kv("CallStatus", "ringing"),
        kv("Called", to),
        kv("Caller", from),
        kv("Direction", "inbound"),
        kv("From", from),
        kv("FromCountry", "US"),
        kv("To", to),
        kv("ToCountry", "US"),
    ]
}

/// Posts one signed inbound webhook now (the Callbacker's unsigned / forged modes apply) and
/// returns weft's answer. Retried once on a connection failure, as Twilio does.
pub(super) async fn post_signed(
    shared: &Shared,
    url: &str,
    params: Params,
) -> Result<WebhookReply, reqwest::Error> {
    let sid = params
        .iter()
        .find(|(k, _)| k == "MessageSid" || k == "CallSid")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut call = signed(shared, url, &params);
    match shared.callbacks.behaviour() {
        CallbackBehaviour::Unsigned => call.headers.retain(|(k, _)| k != SIGNATURE_HEADER),
        CallbackBehaviour::Forged => {
            // Same shape, wrong value: a signature made with another token.
            let forged = sign(Algorithm::HmacSha1, "forged-token", url, &params);
            for (k, v) in call.headers.iter_mut() {
                if k == SIGNATURE_HEADER {
                    *v = forged.clone();
                }
            }
        }
        _ => {}
    }
    let mut last_err = None;
    for _attempt in 0..2 {
        let mut req = shared
            .client
            .post(url)
            .header("content-type", FORM)
            .body(call.body.clone());
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let content_type = resp
                    .headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .map(String::from);
                let body = resp.text().await?;
                return Ok(WebhookReply {
                    sid,
                    status,
                    content_type,
                    body,
                });
            }
            Err(e) if e.is_connect() => last_err = Some(e),
            Err(e) => return Err(e),
        }
    }
    match last_err {
        Some(e) => Err(e),
        // Unreachable: the loop either returned or stored an error.
        None => Ok(WebhookReply {
            sid,
            status: 0,
            content_type: None,
            body: String::new(),
        }),
    }
}
