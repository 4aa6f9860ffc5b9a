//! Mailgun webhooks -> [`InboundEvent`]s.
//!
//! Kinds: `events` (alias `status`) is the event webhook, JSON
//! `{"signature":{…},"event-data":{…}}` with one event; `inbound` is a route post
//! ([`crate::inbound`]).
//!
//! Per event: `provider_message_id` is `event-data.message.headers.message-id` (Mailgun's id
//! without angle brackets, as the send answer gave it); `correlation` comes from
//! `user-variables` (`weft_message_id`, `weft_attempt_id`); `dedupe_key` is `event-data.id`
//! (the signature token when it is missing); `error_code` is `delivery-status.code`.

use crate::body::Body;
use crate::request::{VAR_ATTEMPT_ID, VAR_MESSAGE_ID};
use crate::status_map;
use serde_json::Value;
use weft_provider::{Correlation, InboundEvent, ParseError, StatusEvent, WebhookRequest};

/// Webhook kinds: `events` (event webhook), `status` (its alias), `inbound` (routes).
pub const WEBHOOK_KINDS: &[&str] = &["events", "status", "inbound"];

/// True for the event webhook kinds.
pub fn is_events_kind(kind: &str) -> bool {
    matches!(kind, "events" | "status")
}

/// Parses a verified webhook of any kind.
pub fn parse(req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
    let body = Body::read(req).map_err(|e| ParseError::new("mailgun webhook", e))?;
    match req.kind.as_str() {
        k if is_events_kind(k) => match body {
            Body::Json(v) => Ok(vec![InboundEvent::Status(status_event(&v)?)]),
            Body::Form { .. } => Err(ParseError::new(
                "mailgun event",
                "expected a JSON event body",
            )),
        },
        "inbound" => {
            crate::inbound::parse(&body, &req.body).map(|m| vec![InboundEvent::Message(m)])
        }
        other => Err(ParseError::new(
            "mailgun webhook",
            format!("unknown kind {other:?}"),
        )),
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// One signed event body -> a status.
pub fn status_event(v: &Value) -> Result<StatusEvent, ParseError> {
    let data = &v["event-data"];
    let event = text(&data["event"])
        .ok_or_else(|| ParseError::new("mailgun event", "no event-data.event"))?;
    let pid = text(&data["message"]["headers"]["message-id"])
        .map(|id| crate::email::strip_brackets(&id).to_string())
        .unwrap_or_default();
    let severity = text(&data["severity"]);
    let reason = text(&data["reason"]);
    let status = status_map::map(&event, severity.as_deref(), reason.as_deref());
    let ds = &data["delivery-status"];
    let failure = matches!(event.as_str(), "failed" | "rejected");
    let detail = [&ds["description"], &ds["message"]]
        .into_iter()
        .find_map(text)
        .or_else(|| text(&data["reject"]["reason"]))
        .or_else(|| reason.clone());
    let vars = &data["user-variables"];
    let dedupe_key = text(&data["id"])
        .or_else(|| text(&v["signature"]["token"]))
        .unwrap_or_else(|| format!("{pid}:{event}"));
    Ok(StatusEvent {
        provider_message_id: pid,
        correlation: Correlation {
            message_id: text(&vars[VAR_MESSAGE_ID]),
            attempt_id: text(&vars[VAR_ATTEMPT_ID]),
        },
        status,
        error_code: if failure { text(&ds["code"]) } else { None },
        error_detail: if failure { detail } else { None },
        occurred_at_ms: data["timestamp"]
            .as_f64()
            .filter(|t| t.is_finite() && *t > 0.0)
            .map(|t| (t * 1000.0) as i64),
        dedupe_key,
        opted_out: status_map::opted_out(&event, reason.as_deref()),
        raw_status: event,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_provider::DeliveryStatus;

    #[test]
    fn a_permanent_failure() {
        let ev = status_event(&json!({
            "signature": {"token": "tok"},
            "event-data": {
                "event": "failed", "id": "G9Bn", "timestamp": 1767225599.75, "severity": "permanent",
                "reason": "bounce", "message": {"headers": {"message-id": "2026.abc@mg.x"}},
                "delivery-status": {"code": 550, "message": "5.1.1 User unknown", "description": ""},
                "user-variables": {"weft_message_id": "msg_1", "weft_attempt_id": "att_1"}
            }
        }));
        let ev = match ev {
            Ok(e) => e,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(ev.status, Some(DeliveryStatus::Undeliverable));
        assert_eq!(ev.raw_status, "failed");
        assert_eq!(ev.error_code.as_deref(), Some("550"));
        assert_eq!(ev.error_detail.as_deref(), Some("5.1.1 User unknown"));
        assert_eq!(ev.occurred_at_ms, Some(1_767_225_599_750));
        assert_eq!(ev.dedupe_key, "G9Bn");
        assert_eq!(ev.provider_message_id, "2026.abc@mg.x");
    }

    #[test]
    fn missing_parts() {
        let ev = status_event(
            &json!({"signature": {"token": "tok"}, "event-data": {"event": "delivered"}}),
        );
        assert!(ev.is_ok_and(|e| e.dedupe_key == "tok"
            && e.provider_message_id.is_empty()
            && e.error_code.is_none()));
        assert!(status_event(&json!({"event-data": {}})).is_err());
    }
}
