//! What the simulator posts to weft: signed status webhooks (through the simkit Callbacker)
//! and on-demand inbound messages.

use super::api::new_wamid;
use super::{Shared, SimError};
use crate::verify::{sign, SIGNATURE_HEADER};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};
use weft_simkit::{CallbackBehaviour, OutgoingCallback};

/// What weft answered to a webhook the simulator posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookReply {
    pub status: u16,
    pub body: String,
    /// The wamid of the inbound message posted, if one was.
    pub wamid: Option<String>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// `{"object":"whatsapp_business_account","entry":[{"id":WABA,"changes":[{"field":"messages","value":…}]}]}`
fn envelope(shared: &Shared, mut value: Value) -> Value {
    value["messaging_product"] = json!("whatsapp");
    value["metadata"] = json!({
        "display_phone_number": shared.cfg.display_phone_number,
        "phone_number_id": shared.cfg.phone_number_id,
    });
    json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": shared.cfg.waba_id, "changes": [{"field": "messages", "value": value}]}],
    })
}

fn signed(shared: &Shared, url: &str, body: Vec<u8>) -> OutgoingCallback {
    OutgoingCallback {
        url: url.to_string(),
        content_type: "application/json",
        headers: vec![
            (
                SIGNATURE_HEADER.to_string(),
                sign(&shared.cfg.app_secret, &body),
            ),
            ("User-Agent".to_string(), "facebookexternalua".to_string()),
        ],
        body,
        signature_header: Some(SIGNATURE_HEADER.to_string()),
    }
}

/// The status webhooks of one accepted message: `sent → delivered (→ read)`, or one `failed`
/// carrying `failure` (code, title, details).
pub(super) fn status_sequence(
    shared: &Shared,
    url: &str,
    wamid: &str,
    wa_id: &str,
    opaque: Option<&str>,
    failure: Option<(i64, &str, &str)>,
) -> Vec<OutgoingCallback> {
    let ts = now();
    let conversation = json!({
        "id": format!("{:032x}", ts ^ 0xc0ffee),
        "expiration_timestamp": (ts + 86_400).to_string(),
        "origin": {"type": "service"},
    });
    let pricing = json!({"billable": true, "pricing_model": "CBP", "category": "service"});
    let status = |word: &str| {
        let mut s = json!({"id": wamid, "status": word, "timestamp": ts.to_string(), "recipient_id": wa_id});
        if let Some(o) = opaque {
            s["biz_opaque_callback_data"] = json!(o);
        }
        s
    };
    let statuses: Vec<Value> = match failure {
        Some((code, title, details)) => {
            let mut s = status("failed");
            s["errors"] = json!([{
                "code": code,
                "title": title,
                "message": title,
                "error_data": {"details": details},
                "href": "https://developers.facebook.com/docs/whatsapp/cloud-api/support/error-codes/",
            }]);
            vec![s]
        }
        None => {
            let mut words = vec!["sent", "delivered"];
            if shared.read_receipts() {
                words.push("read");
            }
            words
                .into_iter()
                .map(|w| {
                    let mut s = status(w);
                    if w != "read" {
                        s["conversation"] = conversation.clone();
                        s["pricing"] = pricing.clone();
                    }
                    s
                })
                .collect()
        }
    };
    statuses
        .into_iter()
        .map(|s| {
            signed(
                shared,
                url,
                envelope(shared, json!({ "statuses": [s] }))
                    .to_string()
                    .into_bytes(),
            )
        })
        .collect()
}

/// An inbound text from `from_wa_id`; returns its wamid and the body to post.
pub(super) fn inbound_text(
    shared: &Shared,
    from_wa_id: &str,
    text: &str,
    context_wamid: Option<&str>,
    forwarded: bool,
) -> (String, Vec<u8>) {
    let wamid = new_wamid(shared, from_wa_id);
    let mut message = json!({
        "from": from_wa_id,
        "id": wamid,
        "timestamp": now().to_string(),
        "type": "text",
        "text": {"body": text},
    });
    if forwarded {
        message["context"] = json!({"forwarded": true});
    } else if let Some(quoted) = context_wamid {
        message["context"] = json!({"from": shared.cfg.display_phone_number, "id": quoted});
    }
    let value = json!({
        "contacts": [{"profile": {"name": shared.cfg.profile_name}, "wa_id": from_wa_id}],
        "messages": [message],
    });
    (wamid, envelope(shared, value).to_string().into_bytes())
}

/// Posts `body` once, signed — or unsigned / forged per the callback behaviour.
pub(super) async fn post_signed(shared: &Shared, body: Vec<u8>) -> Result<WebhookReply, SimError> {
    let url = shared.webhook_url().ok_or(SimError::NoWebhookUrl)?;
    let mut req = shared
        .client
        .post(&url)
        .header("content-type", "application/json");
    match shared.callbacks.behaviour() {
        CallbackBehaviour::Unsigned => {}
        CallbackBehaviour::Forged => {
            req = req.header(SIGNATURE_HEADER, sign("not-the-app-secret", &body));
        }
        _ => {
            req = req.header(SIGNATURE_HEADER, sign(&shared.cfg.app_secret, &body));
        }
    }
    let resp = req.body(body).send().await?;
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    Ok(WebhookReply {
        status,
        body: text,
        wamid: None,
    })
}
