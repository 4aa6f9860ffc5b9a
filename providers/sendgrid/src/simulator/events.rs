//! What the simulator posts to weft: signed Event Webhook batches and Inbound Parse forms.

use super::{Shared, WebhookReply};
use crate::verify::{INBOUND_SECRET_PARAM, SIGNATURE_HEADER, TIMESTAMP_HEADER};
use base64::Engine;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::Signature;
use rand::Rng;
use serde_json::{json, Map, Value};
use weft_mailkit::email;
use weft_mailkit::simulator::{random_chars, rfc2822_now, InboundMail};
use weft_simkit::OutgoingCallback;

/// The events one recipient gets, chosen by its local part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventPlan {
    /// `processed`, `delivered` (and `open` when enabled).
    Delivered,
    /// `processed`, `bounce` (5.1.1).
    Bounce,
    /// `dropped` ("Bounced Address") only.
    Dropped,
    /// `processed`, `deferred`, `delivered`.
    Deferred,
}

impl EventPlan {
    /// `bounce@…`, `dropped@…`, `deferred@…`; anything else is delivered.
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
            "deferred" => EventPlan::Deferred,
            _ => EventPlan::Delivered,
        }
    }
}

pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// A random id of `n` URL-safe characters, like SendGrid's.
pub(crate) fn random_id(n: usize) -> String {
    random_chars(
        b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_",
        n,
    )
}

/// base64 DER ECDSA over `timestamp + body`; high-S about half the time when configured.
pub(crate) fn sign(shared: &Shared, timestamp: &str, body: &[u8]) -> String {
    let mut signed = timestamp.as_bytes().to_vec();
    signed.extend_from_slice(body);
    let sig: Signature = shared.signing_key.sign(&signed);
    let sig = if shared.cfg.randomize_s && rand::thread_rng().gen_bool(0.5) {
        let (r, s) = sig.split_scalars();
        Signature::from_scalars(r, -s).unwrap_or(sig)
    } else {
        sig
    };
    base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes())
}

/// A batch body (SendGrid ends it with CRLF) and its signed call.
fn signed_call(shared: &Shared, url: &str, events: &[Value]) -> OutgoingCallback {
    let mut body = Value::Array(events.to_vec()).to_string().into_bytes();
    body.extend_from_slice(b"\r\n");
    let ts = now_unix().to_string();
    let sig = sign(shared, &ts, &body);
    OutgoingCallback {
        url: url.to_string(),
        content_type: "application/json",
        body,
        headers: vec![
            (SIGNATURE_HEADER.to_string(), sig),
            (TIMESTAMP_HEADER.to_string(), ts),
            ("User-Agent".to_string(), "SendGrid Event API".to_string()),
        ],
        signature_header: Some(SIGNATURE_HEADER.to_string()),
    }
}

/// One event object for a message, with the send's `custom_args` flattened in.
fn event(
    name: &str,
    email: &str,
    x_message_id: &str,
    n: usize,
    custom_args: &Map<String, Value>,
) -> Value {
    let mut ev = json!({
        "email": email,
        "timestamp": now_unix(),
        "event": name,
        "sg_event_id": random_id(22),
        "sg_message_id": format!("{x_message_id}.recvd-sim-{n}-{}", random_id(6)),
        "smtp-id": format!("<{x_message_id}@ismtpd-sim>"),
    });
    match name {
        "delivered" => {
            ev["response"] = json!("250 2.0.0 OK");
            ev["tls"] = json!(1);
        }
        "bounce" => {
            ev["type"] = json!("bounce");
            ev["status"] = json!("5.1.1");
            ev["reason"] =
                json!("550 5.1.1 The email account that you tried to reach does not exist");
            ev["bounce_classification"] = json!("Invalid Address");
        }
        "dropped" => ev["reason"] = json!("Bounced Address"),
        "deferred" => {
            ev["response"] = json!("451 4.7.1 Greylisted, try again later");
            ev["attempt"] = json!("1");
        }
        "open" => {
            ev["useragent"] = json!("Mozilla/5.0");
            ev["ip"] = json!("192.0.2.10");
            ev["sg_machine_open"] = json!(false);
        }
        _ => {}
    }
    if let Value::Object(obj) = &mut ev {
        for (k, v) in custom_args {
            obj.entry(k.clone()).or_insert_with(|| v.clone());
        }
    }
    ev
}

/// The callbacks for one recipient of an accepted send, one event per batch.
pub(crate) fn sequence(
    shared: &Shared,
    url: &str,
    email: &str,
    x_message_id: &str,
    n: usize,
    custom_args: &Map<String, Value>,
) -> Vec<OutgoingCallback> {
    let names: Vec<&str> = match EventPlan::for_recipient(email) {
        EventPlan::Delivered if shared.core.open_events() => vec!["processed", "delivered", "open"],
        EventPlan::Delivered => vec!["processed", "delivered"],
        EventPlan::Bounce => vec!["processed", "bounce"],
        EventPlan::Dropped => vec!["dropped"],
        EventPlan::Deferred => vec!["processed", "deferred", "delivered"],
    };
    names
        .into_iter()
        .map(|name| {
            signed_call(
                shared,
                url,
                &[event(name, email, x_message_id, n, custom_args)],
            )
        })
        .collect()
}

pub(crate) async fn post_batch(
    shared: &Shared,
    url: &str,
    events: Vec<Value>,
) -> Result<WebhookReply, reqwest::Error> {
    let call = signed_call(shared, url, &events);
    shared
        .core
        .post(
            url,
            call.content_type,
            &call.headers,
            call.body,
            String::new(),
        )
        .await
}

/// The Inbound Parse fields of a mail; returns them and the Message-ID given to it.
pub(crate) fn inbound_fields(mail: &InboundMail<'_>) -> (Vec<(String, String)>, String) {
    let message_id = format!("{}@mail.sim.example", random_id(16));
    let mut headers = format!(
        "Received: by mx.sendgrid.sim with SMTP id {}\r\nDate: {}\r\nFrom: {}\r\nTo: {}\r\nSubject: {}\r\nMessage-ID: <{message_id}>\r\n",
        random_id(10),
        rfc2822_now(),
        mail.from,
        mail.to,
        mail.subject
    );
    if let Some(irt) = mail.in_reply_to_header() {
        headers.push_str(&format!("In-Reply-To: {irt}\r\n"));
    }
    if !mail.references.is_empty() {
        // Folded, one id per line, as mail clients write long References.
        let refs = mail.reference_ids().join("\r\n ");
        headers.push_str(&format!("References: {refs}\r\n"));
    }
    headers.push_str("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n");
    let envelope = json!({
        "to": [email::bare_address(mail.to)],
        "from": email::bare_address(mail.from)
    })
    .to_string();
    let fields = [
        ("headers", headers),
        ("dkim", "{@mail.sim.example : pass}".to_string()),
        ("to", mail.to.to_string()),
        ("from", mail.from.to_string()),
        ("subject", mail.subject.to_string()),
        ("text", mail.text.to_string()),
        ("sender_ip", "192.0.2.25".to_string()),
        ("envelope", envelope),
        ("attachments", "0".to_string()),
        (
            "charsets",
            r#"{"to":"UTF-8","from":"UTF-8","subject":"UTF-8","text":"UTF-8"}"#.to_string(),
        ),
        ("SPF", "pass".to_string()),
        ("spam_score", "0.1".to_string()),
    ];
    (
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
        message_id,
    )
}

pub(crate) async fn post_inbound(
    shared: &Shared,
    url: &str,
    mail: &InboundMail<'_>,
) -> Result<WebhookReply, reqwest::Error> {
    let (fields, message_id) = inbound_fields(mail);
    let (content_type, body) =
        weft_mailkit::multipart::encode(&fields, &format!("xYzZY{}", random_id(12)));
    let url = match (url::Url::parse(url), &shared.cfg.inbound_secret) {
        (Ok(mut u), Some(secret)) => {
            u.query_pairs_mut()
                .append_pair(INBOUND_SECRET_PARAM, secret);
            u.to_string()
        }
        _ => url.to_string(),
    };
    let user_agent = [("User-Agent".to_string(), "Sendlib/1.0".to_string())];
    shared
        .core
        .post(&url, &content_type, &user_agent, body, message_id)
        .await
}
