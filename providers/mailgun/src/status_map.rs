//! Mailgun `event-data.event` (+ `severity`, `reason`) -> [`DeliveryStatus`] (PROVIDERS.md §4).
//!
//! `accepted` -> queued; `delivered` -> delivered; `failed` + `temporary` -> queued (Mailgun
//! retries); `failed` + `permanent` -> undeliverable, or rejected when `reason` starts with
//! `suppress-` (Mailgun never tried: the address is on a suppression list); `rejected` ->
//! rejected; `opened`, `clicked` -> read; `complained`, `unsubscribed` (engagement) and anything
//! else change nothing.

use weft_provider::DeliveryStatus;

/// The normalized status of one event.
pub fn map(event: &str, severity: Option<&str>, reason: Option<&str>) -> Option<DeliveryStatus> {
    match event {
        "accepted" => Some(DeliveryStatus::Queued),
        "delivered" => Some(DeliveryStatus::Delivered),
        "failed" => match severity {
            Some("temporary") => Some(DeliveryStatus::Queued),
            _ if reason.is_some_and(|r| r.starts_with("suppress-")) => {
                Some(DeliveryStatus::Rejected)
            }
            _ => Some(DeliveryStatus::Undeliverable),
        },
        "rejected" => Some(DeliveryStatus::Rejected),
        "opened" | "clicked" => Some(DeliveryStatus::Read),
        _ => None,
    }
}

/// The recipient opted out: a complaint, an unsubscribe, or a drop for one.
pub fn opted_out(event: &str, reason: Option<&str>) -> bool {
    match event {
        "complained" | "unsubscribed" => true,
        "failed" => matches!(reason, Some("suppress-unsubscribe" | "suppress-complaint")),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    /// (event, severity, reason, status)
    type Row = (
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        Option<DeliveryStatus>,
    );

    #[test]
    fn every_event_maps() {
        let table: [Row; 13] = [
            ("accepted", None, None, Some(Queued)),
            ("delivered", None, None, Some(Delivered)),
            (
                "failed",
                Some("temporary"),
                Some("greylisted"),
                Some(Queued),
            ),
            (
                "failed",
                Some("permanent"),
                Some("bounce"),
                Some(Undeliverable),
            ),
            (
                "failed",
                Some("permanent"),
                Some("generic"),
                Some(Undeliverable),
            ),
            (
                "failed",
                Some("permanent"),
                Some("suppress-bounce"),
                Some(Rejected),
            ),
            ("failed", None, None, Some(Undeliverable)),
            ("rejected", None, None, Some(Rejected)),
            ("opened", None, None, Some(Read)),
            ("clicked", None, None, Some(Read)),
            ("complained", None, None, None),
            ("unsubscribed", None, None, None),
            ("stored", None, None, None),
        ];
        for (event, sev, reason, want) in table {
            assert_eq!(map(event, sev, reason), want, "{event} {sev:?} {reason:?}");
        }
    }

    #[test]
    fn opt_outs() {
        assert!(opted_out("complained", None));
        assert!(opted_out("unsubscribed", None));
        assert!(opted_out("failed", Some("suppress-unsubscribe")));
        assert!(!opted_out("failed", Some("suppress-bounce")));
        assert!(!opted_out("delivered", None));
    }
}
