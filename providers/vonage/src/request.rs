//! Building Vonage requests and reading their answers.
//!
//! - SMS API: `POST {base}/sms/json`, form: `api_key`, `api_secret`, `from`/`to` without `+`,
//!   `text`, `type=unicode` when the text is not GSM-7, `client-ref` = weft's message id,
//!   `status-report-req=1`. No `callback`: DLRs go to the URL set in the dashboard.
//! - Messages API: `POST {base}/v1/messages`, JSON: `channel` (`sms`|`whatsapp`),
//!   `message_type` `text` (or `template` for WhatsApp templates), `to`/`from` without `+`,
//!   `client_ref` = weft's message id, and for WhatsApp `context.message_uuid` when the message
//!   answers one of ours.
//!
//! Answers: the SMS API gives one entry per part, each with its own id and status (see
//! [`sms_receipt`] for what happens when only some parts are accepted); the Messages API gives
//! 202 `{"message_uuid": …}`.

use crate::config::VonageConfig;
use crate::gsm::{self, Encoding};
use secrecy::ExposeSecret;
use weft_provider::{Channel, FailureReason, OutboundMessage, SendError, SendReceipt};

/// `client-ref` / `client_ref` are limited to 100 characters.
pub const CLIENT_REF_MAX: usize = 100;

/// `+4477…` → `4477…`; alphanumeric senders unchanged.
pub fn strip_plus(addr: &str) -> String {
    addr.trim().trim_start_matches('+').to_string()
}

fn sender(cfg: &VonageConfig, msg: &OutboundMessage) -> Result<String, SendError> {
    msg.from
        .as_deref()
        .or(cfg.senders.first().map(String::as_str))
        .map(strip_plus)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| {
            SendError::config("no sender: the message has no `from` and the connection no senders")
        })
}

fn recipient(msg: &OutboundMessage) -> Result<String, SendError> {
    let to = strip_plus(&msg.to);
    if to.is_empty() || !to.chars().all(|c| c.is_ascii_digit()) {
        return Err(SendError::permanent(
            FailureReason::InvalidAddress,
            "Vonage needs an E.164 phone number as the recipient",
        ));
    }
    Ok(to)
}

fn client_ref(msg: &OutboundMessage) -> Option<String> {
    (msg.message_id.chars().count() <= CLIENT_REF_MAX).then(|| msg.message_id.clone())
}

/// The form fields of an SMS API send, credentials included.
pub fn sms_form(
    cfg: &VonageConfig,
    msg: &OutboundMessage,
) -> Result<Vec<(&'static str, String)>, SendError> {
    if msg.channel != Channel::Sms {
        return Err(SendError::config(format!(
            "the Vonage SMS API cannot send {}",
            msg.channel
        )));
    }
    let text = match (&msg.body, &msg.template) {
        (Some(b), _) if !b.is_empty() => b.clone(),
        (_, Some(_)) => {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "the Vonage SMS API has no templates",
            ))
        }
        _ => {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "an SMS needs a body",
            ))
        }
    };
    let (Some(key), Some(secret)) = (&cfg.api_key, &cfg.api_secret) else {
        return Err(SendError::config(
            "the SMS API needs credentials.api_key and credentials.api_secret",
        ));
    };
    let mut form = vec![
        ("api_key", key.clone()),
        ("api_secret", secret.expose_secret().to_string()),
        ("from", sender(cfg, msg)?),
        ("to", recipient(msg)?),
    ];
    if gsm::encoding(&text) == Encoding::Ucs2 {
        form.push(("type", "unicode".into()));
    }
    form.push(("text", text));
    if let Some(r) = client_ref(msg) {
        form.push(("client-ref", r));
    }
    form.push(("status-report-req", "1".into()));
    Ok(form)
}

/// A JSON value as a string: Vonage sends every value as a string, but tolerate numbers.
pub fn json_str(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Reads an SMS API answer (HTTP 200).
///
/// Every part has its own id and status. Decision for a partly accepted message: if at least
/// one part was accepted, the send succeeds with the ids of the accepted parts, in order, so
/// none is lost (and a retry cannot send the accepted parts twice); the refused parts are
/// logged with their codes. If no part was accepted, the first refused part's code classifies
/// the error.
pub fn sms_receipt(body: &[u8]) -> Result<SendReceipt, SendError> {
    let v: serde_json::Value = serde_json::from_slice(body)
        .map_err(|e| SendError::transient(format!("Vonage SMS API answer is not JSON: {e}")))?;
    let parts = v
        .get("messages")
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    let mut ids = Vec::new();
    let mut refused = Vec::new();
    for part in &parts {
        let status = json_str(part.get("status")).unwrap_or_default();
        if status.trim() == "0" {
            if let Some(id) = json_str(part.get("message-id")).filter(|s| !s.is_empty()) {
                ids.push(id);
            }
        } else {
            refused.push((status, json_str(part.get("error-text"))));
        }
    }
    let count = json_str(v.get("message-count")).and_then(|c| c.trim().parse::<u32>().ok());
    if !ids.is_empty() {
        if !refused.is_empty() {
            let codes: Vec<&str> = refused.iter().map(|(c, _)| c.as_str()).collect();
            tracing::warn!(
                accepted = ids.len(),
                refused = refused.len(),
                codes = ?codes,
                "Vonage accepted only some parts of a long SMS; keeping the accepted ones."
            );
        }
        return Ok(SendReceipt {
            segments: count.or(Some(parts.len() as u32)),
            ..SendReceipt::queued(ids)
        });
    }
    match refused.first() {
        Some((code, text)) => Err(crate::errors::sms_status(code, text.as_deref())),
        None => Err(SendError::transient(
            "Vonage SMS API answer holds no message ids",
        )),
    }
}

/// Template variables in order: numerically when every name is a number (`"2"` before `"10"`).
fn ordered_variables(vars: &std::collections::BTreeMap<String, String>) -> Vec<String> {
    let mut pairs: Vec<(&String, &String)> = vars.iter().collect();
    if pairs.iter().all(|(k, _)| k.parse::<u64>().is_ok()) {
        pairs.sort_by_key(|(k, _)| k.parse::<u64>().unwrap_or(u64::MAX));
    }
    pairs.into_iter().map(|(_, v)| v.clone()).collect()
}

/// The JSON body of a Messages API send.
pub fn messages_body(
    cfg: &VonageConfig,
    msg: &OutboundMessage,
) -> Result<serde_json::Value, SendError> {
    let channel = match msg.channel {
        Channel::Sms => "sms",
        Channel::Whatsapp => "whatsapp",
        other => {
            return Err(SendError::config(format!(
                "the Vonage Messages API connection does not carry {other}"
            )))
        }
    };
    let mut body = serde_json::json!({
        "channel": channel,
        "to": recipient(msg)?,
        "from": sender(cfg, msg)?,
    });
    let obj = body
        .as_object_mut()
        .ok_or_else(|| SendError::config("unreachable: body is an object"))?;
    match (&msg.template, &msg.body) {
        (Some(t), _) if msg.channel == Channel::Whatsapp => {
            obj.insert("message_type".into(), "template".into());
            obj.insert(
                "template".into(),
                serde_json::json!({"name": t.name, "parameters": ordered_variables(&t.variables)}),
            );
            let locale = t
                .language
                .clone()
                .unwrap_or_else(|| cfg.whatsapp_locale.clone());
            obj.insert(
                "whatsapp".into(),
                serde_json::json!({"policy": "deterministic", "locale": locale}),
            );
        }
        (_, Some(text)) if !text.is_empty() => {
            obj.insert("message_type".into(), "text".into());
            obj.insert("text".into(), text.clone().into());
        }
        (Some(_), _) => {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "templates are sent on WhatsApp only",
            ))
        }
        _ => {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "the message has no body",
            ))
        }
    }
    if let Some(r) = client_ref(msg) {
        obj.insert("client_ref".into(), r.into());
    }
    if msg.channel == Channel::Whatsapp {
        if let Some(uuid) = msg
            .reply_to_provider_id
            .as_deref()
            .filter(|s| !s.is_empty())
        {
            obj.insert("context".into(), serde_json::json!({"message_uuid": uuid}));
        }
    }
    Ok(body)
}

/// Reads a Messages API 2xx answer: `{"message_uuid": …}`.
pub fn messages_receipt(body: &[u8]) -> Result<SendReceipt, SendError> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        SendError::transient(format!("Vonage Messages API answer is not JSON: {e}"))
    })?;
    match json_str(v.get("message_uuid")).filter(|s| !s.is_empty()) {
        Some(uuid) => Ok(SendReceipt::queued(vec![uuid])),
        None => Err(SendError::transient(
            "Vonage Messages API answer has no message_uuid",
        )),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn variables_order_numerically() {
        let vars: BTreeMap<String, String> = [("10", "j"), ("2", "b"), ("1", "a")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(ordered_variables(&vars), vec!["a", "b", "j"]);
        let named: BTreeMap<String, String> = [("name", "x"), ("code", "y")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(ordered_variables(&named), vec!["y", "x"]);
    }

    #[test]
    fn partial_acceptance_keeps_accepted_ids() {
        let body = br#"{"message-count":"3","messages":[
            {"message-id":"A1","status":"0"},{"message-id":"A2","status":"0"},{"status":"9","error-text":"Quota Exceeded"}]}"#;
        let r = sms_receipt(body).unwrap();
        assert_eq!(r.provider_ids, vec!["A1", "A2"]);
        assert_eq!(r.segments, Some(3));
    }

    #[test]
    fn empty_or_garbled_answers_are_transient() {
        assert_eq!(
            sms_receipt(br#"{"message-count":"0","messages":[]}"#)
                .unwrap_err()
                .code(),
            "transient"
        );
        assert_eq!(sms_receipt(b"<html>").unwrap_err().code(), "transient");
        assert_eq!(messages_receipt(b"{}").unwrap_err().code(), "transient");
    }
}
