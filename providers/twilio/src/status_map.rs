//! Twilio status words → weft's [`DeliveryStatus`] (PROVIDERS.md §1 "Status callback").
//!
//! Messages (`MessageStatus`): `accepted`, `scheduled`, `queued` → queued; `sending` → sending;
//! `sent` → sent; `delivered`, `partially_delivered` → delivered; `read` → read; `undelivered`
//! → undeliverable; `failed`, `canceled` → failed. Inbound words (`receiving`, `received`) and
//! anything unknown change nothing.
//!
//! Calls (`CallStatus`): `queued`, `initiated` → queued; `ringing` → sent; `in-progress`,
//! `answered`, `completed` → delivered; `busy`, `no-answer` → undeliverable; `failed`,
//! `canceled` → failed.

use weft_provider::DeliveryStatus;

/// The Twilio error code that also means the recipient opted out (replied STOP).
pub const OPT_OUT_CODE: &str = "21610";

/// Maps a message `MessageStatus`.
pub fn message_status(raw: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    Some(match raw {
        "accepted" | "scheduled" | "queued" => Queued,
        "sending" => Sending,
        "sent" => Sent,
        "delivered" | "partially_delivered" => Delivered,
        "read" => Read,
        "undelivered" => Undeliverable,
        "failed" | "canceled" => Failed,
        _ => return None,
    })
}

/// A note kept beside statuses that the mapping flattens (`partially_delivered` is reported
/// as delivered, `canceled` as failed).
pub fn message_status_note(raw: &str) -> Option<&'static str> {
    match raw {
        "partially_delivered" => Some("partially delivered: some parts were not delivered"),
        "canceled" => Some("canceled before sending"),
        _ => None,
    }
}

/// Maps a call `CallStatus`.
pub fn call_status(raw: &str) -> Option<DeliveryStatus> {
    use DeliveryStatus::*;
    Some(match raw {
        "queued" | "initiated" => Queued,
        "ringing" => Sent,
        "in-progress" | "answered" | "completed" => Delivered,
        "busy" | "no-answer" => Undeliverable,
        "failed" | "canceled" => Failed,
        _ => return None,
    })
}

/// Whether a callback's `ErrorCode` says the recipient opted out.
pub fn is_opt_out(error_code: Option<&str>) -> bool {
    error_code == Some(OPT_OUT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn every_message_status() {
        let table = [
            ("accepted", Some(Queued)),
            ("scheduled", Some(Queued)),
            ("queued", Some(Queued)),
            ("sending", Some(Sending)),
            ("sent", Some(Sent)),
            ("delivered", Some(Delivered)),
            ("partially_delivered", Some(Delivered)),
            ("read", Some(Read)),
            ("undelivered", Some(Undeliverable)),
            ("failed", Some(Failed)),
            ("canceled", Some(Failed)),
            ("received", None),
            ("receiving", None),
            ("Delivered", None),
            ("", None),
        ];
        for (raw, want) in table {
            assert_eq!(message_status(raw), want, "MessageStatus {raw:?}");
        }
    }

    #[test]
    fn every_call_status() {
        let table = [
            ("queued", Some(Queued)),
            ("initiated", Some(Queued)),
            ("ringing", Some(Sent)),
            ("in-progress", Some(Delivered)),
            ("answered", Some(Delivered)),
            ("completed", Some(Delivered)),
            ("busy", Some(Undeliverable)),
            ("no-answer", Some(Undeliverable)),
            ("failed", Some(Failed)),
            ("canceled", Some(Failed)),
            ("in_progress", None),
        ];
        for (raw, want) in table {
            assert_eq!(call_status(raw), want, "CallStatus {raw:?}");
        }
    }

    #[test]
    fn flattened_statuses_keep_a_note_and_opt_out_is_21610() {
        assert!(message_status_note("partially_delivered").is_some());
        assert!(message_status_note("canceled").is_some());
        assert!(message_status_note("delivered").is_none());
        assert!(is_opt_out(Some("21610")));
        assert!(!is_opt_out(Some("30003")));
        assert!(!is_opt_out(None));
    }
}
