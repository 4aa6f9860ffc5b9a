//! Vonage status words → weft's one state machine (PROVIDERS.md §2.1, §2.2).
//!
//! SMS API delivery receipts: `accepted`, `buffered` → sent; `delivered` → delivered;
//! `expired` → expired; `failed`, `rejected` (by the carrier, after submit) → failed;
//! `unknown` → no change. A receipt is per part: the gateway folds the parts of a long SMS
//! (`DeliveryStatus::combine_parts`).
//!
//! Messages API statuses: `submitted` → sent; `delivered` → delivered; `read` → read;
//! `rejected`, `failed` → failed; `undeliverable` → undeliverable; anything else → no change.
//!
//! The synchronous answer's own table (HTTP 200 with `status:"1"` is throttled) lives in
//! `errors`.

use weft_provider::DeliveryStatus;

/// An SMS API DLR `status`; `None` for `unknown` and words we do not know.
pub fn sms_dlr_status(status: &str) -> Option<DeliveryStatus> {
    match status.trim().to_ascii_lowercase().as_str() {
        "accepted" | "buffered" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "expired" => Some(DeliveryStatus::Expired),
        "failed" | "rejected" => Some(DeliveryStatus::Failed),
        _ => None,
    }
}

/// A Messages API status webhook's `status`; `None` for words that change nothing.
pub fn messages_status(status: &str) -> Option<DeliveryStatus> {
    match status.trim().to_ascii_lowercase().as_str() {
        "submitted" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" => Some(DeliveryStatus::Read),
        "rejected" | "failed" => Some(DeliveryStatus::Failed),
        "undeliverable" => Some(DeliveryStatus::Undeliverable),
        _ => None,
    }
}

/// What a DLR `err-code` means (`"0"`: no error → `None`).
pub fn dlr_error_text(err_code: &str) -> Option<&'static str> {
    Some(match err_code.trim() {
        "1" => "unknown error",
        "2" => "absent subscriber (temporary)",
        "3" => "absent subscriber (permanent)",
        "4" => "call barred by user",
        "5" => "portability error",
        "6" => "anti-spam rejection",
        "7" => "handset busy",
        "8" => "network error",
        "9" => "illegal number",
        "10" => "illegal message",
        "11" => "unroutable",
        "12" => "destination unreachable",
        "13" => "subscriber age restriction",
        "14" => "number blocked by carrier",
        "15" => "prepaid insufficient funds",
        "16" => "gateway quota exceeded",
        "50" => "entity filter",
        "51" => "header filter",
        "52" => "content filter",
        "53" => "consent filter",
        "54" => "regulation error",
        "99" => "general error",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn sms_dlr_words() {
        let table = [
            ("accepted", Some(Sent)),
            ("buffered", Some(Sent)),
            ("delivered", Some(Delivered)),
            ("DELIVERED", Some(Delivered)),
            ("expired", Some(Expired)),
            ("failed", Some(Failed)),
            ("rejected", Some(Failed)),
            ("unknown", None),
            ("something-new", None),
        ];
        for (word, want) in table {
            assert_eq!(sms_dlr_status(word), want, "{word}");
        }
    }

    #[test]
    fn messages_words() {
        let table = [
            ("submitted", Some(Sent)),
            ("delivered", Some(Delivered)),
            ("read", Some(Read)),
            ("rejected", Some(Failed)),
            ("failed", Some(Failed)),
            ("undeliverable", Some(Undeliverable)),
            ("clicked", None),
        ];
        for (word, want) in table {
            assert_eq!(messages_status(word), want, "{word}");
        }
    }

    #[test]
    fn err_codes_have_words() {
        assert_eq!(dlr_error_text("0"), None);
        assert_eq!(dlr_error_text("2"), Some("absent subscriber (temporary)"));
        assert_eq!(dlr_error_text("99"), Some("general error"));
        assert_eq!(dlr_error_text("77"), None);
    }
}
