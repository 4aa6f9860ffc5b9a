//! SendGrid webhooks -> [`InboundEvent`]s.
//!
//! Kinds: `events` (alias `status`) is the Event Webhook, a JSON array of events possibly for
//! several messages; `inbound` is Inbound Parse ([`crate::inbound`]).
//!
//! Per event: `provider_message_id` is `sg_message_id` up to its first `.` (that is the
//! `X-Message-Id` of the send; `smtp-id`'s local part when `sg_message_id` is absent);
//! `correlation` comes from our `custom_args` (`weft_message_id`, `weft_attempt_id`), flattened
//! into the event by SendGrid; `dedupe_key` is `sg_event_id`. An element that is not an event
//! object is skipped (logged), so one odd element does not make SendGrid resend the batch.

use crate::request::{ARG_ATTEMPT_ID, ARG_MESSAGE_ID};
use crate::status_map;
use serde_json::Value;
use weft_provider::{Correlation, InboundEvent, ParseError, StatusEvent, WebhookRequest};

/// Webhook kinds: `events` (Event Webhook), `status` (its alias), `inbound` (Inbound Parse).
pub const WEBHOOK_KINDS: &[&str] = &["events", "status", "inbound"];

/// True for the Event Webhook kinds.
pub fn is_events_kind(kind: &str) -> bool {
    matches!(kind, "events" | "status")
}

/// Parses a verified webhook of any kind.
pub fn parse(req: &WebhookRequest) -> Result<Vec<InboundEvent>, ParseError> {
    match req.kind.as_str() {
        k if is_events_kind(k) => parse_events(&req.body),
        "inbound" => crate::inbound::parse(req).map(|m| vec![InboundEvent::Message(m)]),
        other => Err(ParseError::new(
            "sendgrid webhook",
            format!("unknown kind {other:?}"),
        )),
    }
}

fn text(v: &Value, key: &str) -> Option<String> {
    match &v[key] {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// SendGrid's message id of an event.
pub fn provider_message_id(ev: &Value) -> Option<String> {
    if let Some(sg) = text(ev, "sg_message_id") {
        return sg
            .split('.')
            .next()
            .map(String::from)
            .filter(|s| !s.is_empty());
    }
    let smtp = text(ev, "smtp-id")?;
    crate::email::strip_brackets(&smtp)
        .split('@')
        .next()
        .map(String::from)
        .filter(|s| !s.is_empty())
}

fn occurred_at_ms(ev: &Value) -> Option<i64> {
    ev["timestamp"]
        .as_f64()
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(|t| (t * 1000.0) as i64)
}

/// One event object -> a status, or `None` if it is not an event.
pub fn status_event(ev: &Value) -> Option<StatusEvent> {
    let event = text(ev, "event")?;
    let pid = provider_message_id(ev).unwrap_or_default();
    let failure = matches!(event.as_str(), "bounce" | "dropped" | "deferred");
    let reason = text(ev, "reason");
    let dedupe_key = text(ev, "sg_event_id").unwrap_or_else(|| {
        format!(
            "{pid}:{event}:{}",
            ev["timestamp"]
                .as_f64()
                .map(|t| t.to_string())
                .unwrap_or_default()
        )
    });
    Some(StatusEvent {
        provider_message_id: pid,
        correlation: Correlation {
            message_id: text(ev, ARG_MESSAGE_ID),
            attempt_id: text(ev, ARG_ATTEMPT_ID),
        },
        status: status_map::map(&event),
        error_code: if failure { text(ev, "status") } else { None },
        error_detail: if failure {
            reason.clone().or_else(|| text(ev, "response"))
        } else {
            None
        },
        occurred_at_ms: occurred_at_ms(ev),
        dedupe_key,
        opted_out: status_map::opted_out(&event, reason.as_deref()),
        raw_status: event,
    })
}

/// The Event Webhook body: a JSON array of events.
pub fn parse_events(body: &[u8]) -> Result<Vec<InboundEvent>, ParseError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|e| ParseError::new("sendgrid events", e))?;
    let Value::Array(items) = v else {
        return Err(ParseError::new(
            "sendgrid events",
            "the body is not a JSON array",
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        match status_event(item) {
            Some(ev) => out.push(InboundEvent::Status(ev)),
            None => tracing::warn!(index = i, "Skipped a SendGrid event without an event name."),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use weft_provider::DeliveryStatus;

    #[test]
    fn ids_from_sg_message_id_or_smtp_id() {
        assert_eq!(
            provider_message_id(&json!({"sg_message_id": "Xm2p.recvd-0-1-1"})).as_deref(),
            Some("Xm2p")
        );
        assert_eq!(
            provider_message_id(&json!({"sg_message_id": "Xm2p"})).as_deref(),
            Some("Xm2p")
        );
        assert_eq!(
            provider_message_id(&json!({"smtp-id": "<LRz@ismtpd.sendgrid.net>"})).as_deref(),
            Some("LRz")
        );
        assert_eq!(provider_message_id(&json!({})), None);
    }

    #[test]
    fn a_bounce_carries_code_reason_and_time() {
        let ev = status_event(&json!({
            "event": "bounce", "type": "bounce", "status": "5.1.1", "reason": "550 no such user",
            "sg_event_id": "e1", "sg_message_id": "M1.x", "timestamp": 1767225599,
            "weft_message_id": "msg_1", "weft_attempt_id": "att_1"
        }));
        let ev = match ev {
            Some(e) => e,
            None => panic!("no event"),
        };
        assert_eq!(ev.status, Some(DeliveryStatus::Undeliverable));
        assert_eq!(ev.error_code.as_deref(), Some("5.1.1"));
        assert_eq!(ev.error_detail.as_deref(), Some("550 no such user"));
        assert_eq!(ev.occurred_at_ms, Some(1_767_225_599_000));
        assert_eq!(ev.correlation.attempt_id.as_deref(), Some("att_1"));
        assert_eq!(ev.dedupe_key, "e1");
    }

    #[test]
    fn odd_elements_are_skipped_and_bad_bodies_fail() {
        let out = parse_events(br#"[{"event":"delivered","sg_event_id":"a"}, 7, {"no":"event"}]"#);
        assert_eq!(out.map(|v| v.len()), Ok(1));
        assert!(parse_events(b"{}").is_err());
        assert!(parse_events(b"nope").is_err());
        assert_eq!(parse_events(b"[]").map(|v| v.len()), Ok(0));
    }
}
