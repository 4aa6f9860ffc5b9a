//! Building the Graph API `POST /{version}/{phone-number-id}/messages` body, and reading its
//! answer.
//!
//! - `to`: the E.164 number without `+` (`+4915112345678` → `4915112345678`).
//! - A template when the message has one (`name`, `language.code` default `en_US`, the
//!   variables as body parameters: numeric keys positionally in numeric order, other keys as
//!   named parameters), else `text{body, preview_url:false}`.
//! - `context.message_id` quotes `reply_to_provider_id` (a wamid).
//! - `biz_opaque_callback_data` carries `"{message_id}:{attempt_id}"`; Meta echoes it in every
//!   status webhook of the message, which is how a receipt finds its message (see
//!   [`parse_correlation`]).

use crate::config::{is_graph_id, WhatsappConfig};
use serde_json::{json, Value};
use weft_provider::{
    Channel, Correlation, FailureReason, OutboundMessage, SendError, SendReceipt, Template,
};

/// Longest text body the Cloud API takes.
pub const MAX_TEXT_CHARS: usize = 4096;

/// Longest `biz_opaque_callback_data` the Cloud API takes.
pub const MAX_CALLBACK_DATA: usize = 512;

/// Template language used when the message names none.
pub const DEFAULT_TEMPLATE_LANGUAGE: &str = "en_US";

/// One request ready to go.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// The sending number's Graph id (path segment).
    pub phone_number_id: String,
    pub body: Value,
}

/// The recipient as the Cloud API wants it: digits only, no `+`.
pub fn recipient(to: &str) -> Result<String, SendError> {
    let t = to.trim();
    let t = t.strip_prefix("whatsapp:").unwrap_or(t);
    let t = t.strip_prefix("tel:").unwrap_or(t);
    let digits = t.strip_prefix('+').unwrap_or(t);
    if (7..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0')
    {
        Ok(digits.to_string())
    } else {
        Err(SendError::permanent(
            FailureReason::InvalidAddress,
            "recipient is not an E.164 phone number",
        ))
    }
}

/// Which number sends: `msg.from` when it is a phone-number id, else the connection's setting.
pub fn sender(cfg: &WhatsappConfig, msg: &OutboundMessage) -> Result<String, SendError> {
    match msg.from.as_deref().map(str::trim) {
        Some(f) if is_graph_id(f) => Ok(f.to_string()),
        _ => cfg.phone_number_id.clone().ok_or_else(|| {
            SendError::config(
                "no WhatsApp phone-number id: set settings.phone_number_id or send from one",
            )
        }),
    }
}

/// The correlation value echoed back in status webhooks.
pub fn correlation_value(msg: &OutboundMessage) -> String {
    let v = if msg.attempt_id.is_empty() {
        msg.message_id.clone()
    } else {
        format!("{}:{}", msg.message_id, msg.attempt_id)
    };
    v.chars().take(MAX_CALLBACK_DATA).collect()
}

/// Reads `biz_opaque_callback_data` back into weft's ids.
pub fn parse_correlation(v: Option<&str>) -> Correlation {
    let Some(v) = v.map(str::trim).filter(|v| !v.is_empty()) else {
        return Correlation::default();
    };
    match v.split_once(':') {
        Some((m, a)) => Correlation {
            message_id: Some(m.to_string()).filter(|s| !s.is_empty()),
            attempt_id: Some(a.to_string()).filter(|s| !s.is_empty()),
        },
        None => Correlation {
            message_id: Some(v.to_string()),
            attempt_id: None,
        },
    }
}

/// Body parameters of a template: numeric keys (`"1"`, `"2"`, …, `"10"`) positionally in
/// numeric order, then any other keys as named parameters in key order.
pub fn template_components(t: &Template) -> Vec<Value> {
    if t.variables.is_empty() {
        return Vec::new();
    }
    let mut positional: Vec<(u64, &String)> = t
        .variables
        .iter()
        .filter_map(|(k, v)| k.parse::<u64>().ok().map(|n| (n, v)))
        .collect();
    positional.sort_by_key(|(n, _)| *n);
    let mut params: Vec<Value> = positional
        .into_iter()
        .map(|(_, v)| json!({"type": "text", "text": v}))
        .collect();
    params.extend(
        t.variables
            .iter()
            .filter(|(k, _)| k.parse::<u64>().is_err())
            .map(|(k, v)| json!({"type": "text", "parameter_name": k, "text": v})),
    );
    vec![json!({"type": "body", "parameters": params})]
}

/// Builds the send request for one message.
pub fn build(cfg: &WhatsappConfig, msg: &OutboundMessage) -> Result<Built, SendError> {
    if msg.channel != Channel::Whatsapp {
        return Err(SendError::config(format!(
            "a whatsapp_cloud connection cannot send {}",
            msg.channel
        )));
    }
    let phone_number_id = sender(cfg, msg)?;
    let to = recipient(&msg.to)?;
    let mut body = json!({
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": to,
        "biz_opaque_callback_data": correlation_value(msg),
    });
    if let Some(t) = &msg.template {
        if t.name.trim().is_empty() {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "template name is empty",
            ));
        }
        let lang = t
            .language
            .as_deref()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .unwrap_or(DEFAULT_TEMPLATE_LANGUAGE);
        let mut template = json!({"name": t.name, "language": {"code": lang}});
        let components = template_components(t);
        if !components.is_empty() {
            template["components"] = Value::Array(components);
        }
        body["type"] = json!("template");
        body["template"] = template;
    } else {
        let text = msg.body.as_deref().unwrap_or_default();
        if text.trim().is_empty() {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                "a WhatsApp text message needs a body",
            ));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(SendError::permanent(
                FailureReason::ProviderRejected,
                format!("text is longer than {MAX_TEXT_CHARS} characters"),
            ));
        }
        body["type"] = json!("text");
        body["text"] = json!({"preview_url": false, "body": text});
    }
    if let Some(quoted) = msg
        .reply_to_provider_id
        .as_deref()
        .map(str::trim)
        .filter(|q| !q.is_empty())
    {
        body["context"] = json!({"message_id": quoted});
    }
    Ok(Built {
        phone_number_id,
        body,
    })
}

/// Reads a 2xx answer: `messages[0].id` (the wamid). A 2xx without one leaves it unknown
/// whether Meta has the message, so it is ambiguous (a timeout), not a plain failure.
pub fn receipt(body: &[u8]) -> Result<SendReceipt, SendError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        SendError::timeout(format!(
            "WhatsApp answered 2xx with an unreadable body: {e}"
        ))
    })?;
    let ids: Vec<String> = v["messages"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["id"].as_str())
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    if ids.is_empty() {
        return Err(SendError::timeout(
            "WhatsApp answered 2xx without a message id",
        ));
    }
    Ok(SendReceipt::queued(ids))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn recipients() {
        assert_eq!(
            recipient("+4915112345678").ok().as_deref(),
            Some("4915112345678")
        );
        assert_eq!(
            recipient("whatsapp:+15550783881").ok().as_deref(),
            Some("15550783881")
        );
        for bad in [
            "",
            "+",
            "+49 151",
            "+0123456789",
            "alice@example.com",
            "+1234567890123456",
        ] {
            let e = recipient(bad).err().map(|e| e.reason());
            assert_eq!(e, Some(FailureReason::InvalidAddress), "{bad:?}");
        }
    }

    #[test]
    fn template_parameters_follow_numeric_order_then_names() {
        let mut variables = BTreeMap::new();
        for (k, v) in [("10", "ten"), ("2", "two"), ("1", "one"), ("name", "Jana")] {
            variables.insert(k.to_string(), v.to_string());
        }
        let t = Template {
            name: "n".into(),
            language: None,
            variables,
        };
        let c = template_components(&t);
        let texts: Vec<&str> = c[0]["parameters"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p["text"].as_str())
            .collect();
        assert_eq!(texts, ["one", "two", "ten", "Jana"]);
        assert_eq!(c[0]["parameters"][3]["parameter_name"], "name");
        assert!(template_components(&Template::default()).is_empty());
    }

    #[test]
    fn correlation_round_trips() {
        let c = parse_correlation(Some("msg_01:att_02"));
        assert_eq!(
            (c.message_id.as_deref(), c.attempt_id.as_deref()),
            (Some("msg_01"), Some("att_02"))
        );
        let c = parse_correlation(Some("msg_01"));
        assert_eq!(
            (c.message_id.as_deref(), c.attempt_id),
            (Some("msg_01"), None)
        );
        assert_eq!(parse_correlation(None), Correlation::default());
        assert_eq!(parse_correlation(Some(" ")), Correlation::default());
    }

    #[test]
    fn receipts() {
        let r = receipt(br#"{"messaging_product":"whatsapp","contacts":[{"input":"1","wa_id":"1"}],"messages":[{"id":"wamid.X"}]}"#);
        assert_eq!(
            r.map(|r| r.provider_ids).ok(),
            Some(vec!["wamid.X".to_string()])
        );
        assert_eq!(receipt(b"{}").err().map(|e| e.is_ambiguous()), Some(true));
        assert_eq!(
            receipt(b"<html>").err().map(|e| e.is_ambiguous()),
            Some(true)
        );
    }
}
