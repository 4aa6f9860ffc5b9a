//! WhatsApp status words → [`DeliveryStatus`] (PROVIDERS.md §5 "Status").
//!
//! `sent` → sent, `delivered` → delivered, `read` → read, `failed` → failed — except error
//! 131026 (not a WhatsApp user / cannot receive), which is undeliverable. `deleted` (the user
//! deleted a message), `warning` (catalog notices) and words we do not know change nothing.

use weft_provider::DeliveryStatus;

/// Error code of a `failed` status that means the recipient cannot be reached on WhatsApp.
pub const UNDELIVERABLE_CODE: i64 = 131026;

/// Error code of a `failed` status that means the user stopped marketing messages.
pub const OPTED_OUT_CODE: i64 = 131050;

/// Maps a status word and the code of its first error.
pub fn map(status: &str, error_code: Option<i64>) -> Option<DeliveryStatus> {
    match status {
        "accepted" | "held_for_quality_assessment" => Some(DeliveryStatus::Queued),
        "sent" => Some(DeliveryStatus::Sent),
        "delivered" => Some(DeliveryStatus::Delivered),
        "read" | "played" => Some(DeliveryStatus::Read),
        "failed" if error_code == Some(UNDELIVERABLE_CODE) => Some(DeliveryStatus::Undeliverable),
        "failed" => Some(DeliveryStatus::Failed),
        // "deleted", "warning", anything new.
        _ => None,
    }
}

/// True when a failure means the recipient opted out of this business's messages.
pub fn opted_out(error_code: Option<i64>) -> bool {
    error_code == Some(OPTED_OUT_CODE)
}

#[cfg(test)]
mod tests {
    use super::*;
    use DeliveryStatus::*;

    #[test]
    fn every_status_word() {
        let table: &[(&str, Option<i64>, Option<DeliveryStatus>)] = &[
            ("sent", None, Some(Sent)),
            ("delivered", None, Some(Delivered)),
            ("read", None, Some(Read)),
            ("played", None, Some(Read)),
            ("accepted", None, Some(Queued)),
            ("held_for_quality_assessment", None, Some(Queued)),
            ("failed", None, Some(Failed)),
            ("failed", Some(131047), Some(Failed)),
            ("failed", Some(131050), Some(Failed)),
            ("failed", Some(131026), Some(Undeliverable)),
            ("deleted", None, None),
            ("warning", None, None),
            ("something_new", None, None),
            ("", None, None),
        ];
        for (word, code, want) in table {
            assert_eq!(map(word, *code), *want, "{word} {code:?}");
        }
    }

    #[test]
    fn opt_out_code() {
        assert!(opted_out(Some(131050)));
        assert!(!opted_out(Some(131026)));
        assert!(!opted_out(None));
    }
}
