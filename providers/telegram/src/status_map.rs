//! Telegram's statuses, such as they are (PROVIDERS.md §6).
//!
//! Bots get no delivery or read receipts: `ok:true` from `sendMessage` is `sent`, and final.
//! The only later signal is the bot's own membership in a chat (`my_chat_member`): `kicked`
//! means the user blocked the bot (opt-out); `member` after `kicked` means unblocked (opt-in).
//! Every other change (joined a group, promoted, left) is no consent event.

use weft_provider::{ConsentAction, DeliveryStatus};

/// What a successful `sendMessage` means.
pub const SEND_STATUS: DeliveryStatus = DeliveryStatus::Sent;

/// The consent change of a `my_chat_member` update, from its old and new member status.
pub fn consent(old_status: Option<&str>, new_status: &str) -> Option<ConsentAction> {
    match (old_status, new_status) {
        (_, "kicked") => Some(ConsentAction::OptOut),
        (Some("kicked"), "member") => Some(ConsentAction::OptIn),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ConsentAction::*;

    #[test]
    fn send_is_final_sent() {
        assert_eq!(SEND_STATUS, DeliveryStatus::Sent);
        assert!(SEND_STATUS.rank().is_some());
    }

    #[test]
    fn membership_changes() {
        let table: &[(Option<&str>, &str, Option<ConsentAction>)] = &[
            (Some("member"), "kicked", Some(OptOut)),
            (None, "kicked", Some(OptOut)),
            (Some("kicked"), "member", Some(OptIn)),
            (Some("left"), "member", None),
            (Some("member"), "administrator", None),
            (Some("member"), "left", None),
            (None, "member", None),
            (Some("kicked"), "left", None),
        ];
        for (old, new, want) in table {
            assert_eq!(consent(*old, new), *want, "{old:?} → {new}");
        }
    }
}
