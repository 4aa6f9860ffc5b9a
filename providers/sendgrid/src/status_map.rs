//! SendGrid Event Webhook `event` -> [`DeliveryStatus`] (PROVIDERS.md §3).
//!
//! `processed`, `deferred` -> queued; `delivered` -> delivered; `bounce` (also `type:
//! "blocked"`) -> undeliverable; `dropped` -> rejected; `open`, `click` -> read. Engagement
//! (`spamreport`, `unsubscribe`, `group_unsubscribe`, `group_resubscribe`) and unknown events
//! change nothing (`None`).

use weft_provider::DeliveryStatus;

/// The normalized status of one event word.
pub fn map(event: &str) -> Option<DeliveryStatus> {
    match event {
        "processed" | "deferred" => Some(DeliveryStatus::Queued),
        "delivered" => Some(DeliveryStatus::Delivered),
        "bounce" => Some(DeliveryStatus::Undeliverable),
        "dropped" => Some(DeliveryStatus::Rejected),
        "open" | "click" => Some(DeliveryStatus::Read),
        _ => None,
    }
}

/// The recipient opted out: an unsubscribe or spam report, or a drop because of one.
pub fn opted_out(event: &str, reason: Option<&str>) -> bool {
    match event {
        "unsubscribe" | "group_unsubscribe" | "spamreport" => true,
        "dropped" => reason.is_some_and(|r| {
            let r = r.to_ascii_lowercase();
            r.contains("unsubscribed") || r.contains("spam reporting")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn every_event_maps() {
        let table: [(&str, Option<DeliveryStatus>); 13] = [
            ("processed", Some(Queued)),
            ("deferred", Some(Queued)),
            ("delivered", Some(Delivered)),
            ("bounce", Some(Undeliverable)),
            ("dropped", Some(Rejected)),
            ("open", Some(Read)),
            ("click", Some(Read)),
            ("spamreport", None),
            ("unsubscribe", None),
            ("group_unsubscribe", None),
            ("group_resubscribe", None),
            ("machine_opened", None),
            ("", None),
        ];
        for (event, want) in table {
            assert_eq!(map(event), want, "{event}");
        }
    }

    #[test]
    fn opt_outs() {
        assert!(opted_out("unsubscribe", None));
        assert!(opted_out("spamreport", None));
        assert!(opted_out("dropped", Some("Unsubscribed Address")));
        assert!(!opted_out("dropped", Some("Bounced Address")));
        assert!(!opted_out("group_resubscribe", None));
        assert!(!opted_out("delivered", None));
    }
}
