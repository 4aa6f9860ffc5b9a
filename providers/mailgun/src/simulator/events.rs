//! What the simulator posts to weft: signed events and inbound route forms.

use super::{Shared, WebhookReply};
use rand::Rng;
use serde_json::{json, Map, Value};
use weft_mailkit::email;
use weft_mailkit::simulator::{random_chars, rfc2822_now, InboundMail};
use weft_provider::verify::hmac_sha256_hex;
use weft_simkit::{CallbackBehaviour, OutgoingCallback};

/// The events one recipient gets, chosen by its local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPlan {
    /// `accepted`, `delivered` (and `opened` when enabled).
    Delivered,
    /// `accepted`, `failed` (permanent, `bounce`, 550).
    Bounce,
    /// `failed` (permanent, `suppress-bounce`, 605) only.
    Dropped,
    /// `accepted`, `failed` (temporary, greylisted), `delivered`.
    TempFail,
}

impl EventPlan {
    /// `bounce@…`, `dropped@…`, `tempfail@…`; anything else is delivered.
    pub fn for_recipient(email: &str) -> Self {
        match email
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .as_str()
        {
            "bounce" => EventPlan::Bounce,
            "dropped" => EventPlan::Dropped,
            "tempfail" => EventPlan::TempFail,
            _ => EventPlan::Delivered,
        }
    }
}

pub(crate) fn now_secs_f64() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub(crate) fn random_hex(n: usize) -> String {
    let mut rng = rand::thread_rng();
    (0..n)
        .map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn random_id(n: usize) -> String {
    random_chars(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789",
        n,
    )
}

/// `{timestamp, token, signature}` for a fresh 50-hex-digit token.
pub(crate) fn signature(shared: &Shared, timestamp: i64) -> Value {
    let token = random_hex(50);
    let ts = timestamp.to_string();
    let sig = hmac_sha256_hex(
        shared.cfg.webhook_signing_key.as_bytes(),
        format!("{ts}{token}").as_bytes(),
    );
    json!({"timestamp": ts, "token": token, "signature": sig})
}

/// Applies the unsigned / forged behaviours to a signature object (the body carries it, so
/// the Callbacker's header spoiling cannot).
fn spoil(mut sig: Value, behaviour: CallbackBehaviour) -> Option<Value> {
    match behaviour {
        CallbackBehaviour::Unsigned => None,
        CallbackBehaviour::Forged => {
            let s = sig["signature"].as_str().unwrap_or_default();
            let flipped = match s.chars().last() {
                Some('0') => format!("{}1", &s[..s.len() - 1]),
                Some(_) => format!("{}0", &s[..s.len() - 1]),
                None => "0".to_string(),
            };
            sig["signature"] = json!(flipped);
            Some(sig)
        }
        _ => Some(sig),
    }
}

fn signed_call(shared: &Shared, url: &str, event_data: Value) -> OutgoingCallback {
    let mut body = json!({"event-data": event_data});
    if let Some(sig) = spoil(
        signature(shared, now_secs_f64() as i64),
        shared.core.callbacks.behaviour(),
    ) {
        body["signature"] = sig;
    }
    OutgoingCallback {
        url: url.to_string(),
        content_type: "application/json",
        body: body.to_string().into_bytes(),
        headers: vec![("User-Agent".to_string(), "mailgun/treq-16.12.0".to_string())],
        signature_header: None,
    }
}

/// What the events of one accepted send need to know about it.
pub(crate) struct Sent<'a> {
    pub recipient: &'a str,
    pub message_id: &'a str,
    pub from: &'a str,
    pub subject: &'a str,
    pub vars: &'a Map<String, Value>,
}

fn event_data(name: &str, sent: &Sent<'_>) -> Value {
    let domain = sent.recipient.rsplit('@').next().unwrap_or_default();
    let mut ev = json!({
        "event": name,
        "id": random_id(22),
        "timestamp": now_secs_f64(),
        "log-level": "info",
        "recipient": sent.recipient,
        "recipient-domain": domain,
        "message": {"headers": {"message-id": sent.message_id, "from": sent.from, "to": sent.recipient, "subject": sent.subject}, "size": 1024},
        "tags": [],
        "user-variables": sent.vars,
    });
    match name {
        "delivered" => {
            ev["delivery-status"] = json!({"code": 250, "message": "OK", "description": "", "attempt-no": 1, "mx-host": format!("mx.{domain}")})
        }
        "opened" => {
            ev["client-info"] = json!({"client-name": "Firefox", "client-type": "browser"});
            ev["ip"] = json!("192.0.2.10");
        }
        _ => {}
    }
    ev
}

fn failed(sent: &Sent<'_>, severity: &str, reason: &str, code: u16, message: &str) -> Value {
    let mut ev = event_data("failed", sent);
    ev["log-level"] = json!(if severity == "permanent" {
        "error"
    } else {
        "warn"
    });
    ev["severity"] = json!(severity);
    ev["reason"] = json!(reason);
    ev["delivery-status"] =
        json!({"code": code, "message": message, "description": "", "attempt-no": 1});
    ev
}

/// The callbacks for one recipient of an accepted send.
pub(crate) fn sequence(shared: &Shared, url: &str, sent: &Sent<'_>) -> Vec<OutgoingCallback> {
    let mut evs = match EventPlan::for_recipient(sent.recipient) {
        EventPlan::Delivered => vec![event_data("accepted", sent), event_data("delivered", sent)],
        EventPlan::Bounce => vec![
            event_data("accepted", sent),
            failed(sent, "permanent", "bounce", 550, "5.1.1 User unknown"),
        ],
        EventPlan::Dropped => vec![failed(
            sent,
            "permanent",
            "suppress-bounce",
            605,
            "Not delivering to previously bounced address",
        )],
        EventPlan::TempFail => vec![
            event_data("accepted", sent),
            failed(
                sent,
                "temporary",
                "greylisted",
                421,
                "4.7.1 Greylisted, try again later",
            ),
            event_data("delivered", sent),
        ],
    };
    if EventPlan::for_recipient(sent.recipient) == EventPlan::Delivered && shared.core.open_events()
    {
        evs.push(event_data("opened", sent));
    }
    evs.into_iter()
        .map(|ev| signed_call(shared, url, ev))
        .collect()
}

pub(crate) async fn post_event(
    shared: &Shared,
    url: &str,
    event_data: Value,
) -> Result<WebhookReply, reqwest::Error> {
    let call = signed_call(shared, url, event_data);
    // The signature rides in the body; the callback's headers are not sent on demand.
    shared
        .core
        .post(url, call.content_type, &[], call.body, String::new())
        .await
}

/// The signed route fields of a mail, and the Message-Id given to it.
pub(crate) fn inbound_fields(
    shared: &Shared,
    mail: &InboundMail<'_>,
) -> (Vec<(String, String)>, String) {
    let message_id = format!("{}@mail.sim.example", random_id(16));
    let mut headers: Vec<(String, String)> = vec![
        ("Date".into(), rfc2822_now()),
        ("From".into(), mail.from.to_string()),
        ("To".into(), mail.to.to_string()),
        ("Subject".into(), mail.subject.to_string()),
        ("Message-Id".into(), format!("<{message_id}>")),
    ];
    if let Some(irt) = mail.in_reply_to_header() {
        headers.push(("In-Reply-To".into(), irt));
    }
    if !mail.references.is_empty() {
        headers.push(("References".into(), mail.reference_ids().join(" ")));
    }
    let list: Vec<Value> = headers.iter().map(|(k, v)| json!([k, v])).collect();
    let sig = signature(shared, now_secs_f64() as i64);
    let mut fields: Vec<(String, String)> = vec![
        ("recipient".into(), email::bare_address(mail.to)),
        ("sender".into(), email::bare_address(mail.from)),
        ("from".into(), mail.from.to_string()),
        ("subject".into(), mail.subject.to_string()),
        ("body-plain".into(), mail.text.to_string()),
        ("stripped-text".into(), mail.text.to_string()),
        ("stripped-signature".into(), String::new()),
    ];
    fields.extend(
        headers
            .into_iter()
            .filter(|(k, _)| k != "From" && k != "Subject"),
    );
    fields.push(("message-headers".into(), Value::Array(list).to_string()));
    fields.push(("attachment-count".into(), "0".into()));
    for k in ["timestamp", "token", "signature"] {
        fields.push((
            k.to_string(),
            sig[k].as_str().unwrap_or_default().to_string(),
        ));
    }
    (fields, message_id)
}

pub(crate) async fn post_inbound(
    shared: &Shared,
    url: &str,
    mail: &InboundMail<'_>,
) -> Result<WebhookReply, reqwest::Error> {
    let (fields, message_id) = inbound_fields(shared, mail);
    if shared.cfg.inbound_multipart {
        let (ct, body) = weft_mailkit::multipart::encode(&fields, &random_hex(30));
        shared.core.post(url, &ct, &[], body, message_id).await
    } else {
        let mut s = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &fields {
            s.append_pair(k, v);
        }
        shared
            .core
            .post(
                url,
                "application/x-www-form-urlencoded",
                &[],
                s.finish().into_bytes(),
                message_id,
            )
            .await
    }
}
