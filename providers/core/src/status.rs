//! The one delivery state machine (DESIGN.md §2), shared by every provider.
//!
//! Statuses only move forward along `accepted < queued < sending < sent < delivered < read`.
//! `rejected`, `failed`, `undeliverable` and `expired` end a message; they replace any status
//! before `delivered`. Nothing replaces `delivered` or `read` except `read`. Anything else is a
//! late or duplicate receipt: recorded in the history, but the status stays.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Accepted,
    Queued,
    Sending,
    Sent,
    Delivered,
    Read,
    Rejected,
    Failed,
    Undeliverable,
    Expired,
}

/// What applying a receipt did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    /// The status moved to the new value.
    Moved(DeliveryStatus),
    /// The receipt is late, a duplicate, or arrived after the end: history only.
    Kept,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 10] = [
        DeliveryStatus::Accepted,
        DeliveryStatus::Queued,
        DeliveryStatus::Sending,
        DeliveryStatus::Sent,
        DeliveryStatus::Delivered,
        DeliveryStatus::Read,
        DeliveryStatus::Rejected,
        DeliveryStatus::Failed,
        DeliveryStatus::Undeliverable,
        DeliveryStatus::Expired,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Accepted => "accepted",
            DeliveryStatus::Queued => "queued",
            DeliveryStatus::Sending => "sending",
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Read => "read",
            DeliveryStatus::Rejected => "rejected",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Undeliverable => "undeliverable",
            DeliveryStatus::Expired => "expired",
        }
    }

    /// Position on the forward path; `None` for the failure ends.
    pub fn rank(self) -> Option<u8> {
        match self {
            DeliveryStatus::Accepted => Some(0),
            DeliveryStatus::Queued => Some(1),
            DeliveryStatus::Sending => Some(2),
            DeliveryStatus::Sent => Some(3),
            DeliveryStatus::Delivered => Some(4),
            DeliveryStatus::Read => Some(5),
            _ => None,
        }
    }

    /// A failure end: rejected, failed, undeliverable, expired.
    pub fn is_failure(self) -> bool {
        self.rank().is_none()
    }

    /// No further provider work will happen (delivered and read count: only `read` may follow).
    pub fn is_final(self) -> bool {
        self.is_failure() || matches!(self, DeliveryStatus::Delivered | DeliveryStatus::Read)
    }

    /// Applies an incoming status to the current one.
    pub fn apply(self, incoming: DeliveryStatus) -> Transition {
        let moved = match (self.rank(), incoming.rank()) {
            // Ended by a failure: nothing moves it any more.
            (None, _) => false,
            // A failure ends anything that was not yet delivered.
            (Some(cur), None) => cur < 4,
            (Some(cur), Some(new)) => new > cur,
        };
        if moved {
            Transition::Moved(incoming)
        } else {
            Transition::Kept
        }
    }

    /// Folds the statuses of a message's parts (a long SMS has one provider id per part) into
    /// the message's status: any failed part fails it; otherwise it is as far as its
    /// slowest part.
    pub fn combine_parts(parts: &[DeliveryStatus]) -> Option<DeliveryStatus> {
        if let Some(fail) = parts.iter().find(|s| s.is_failure()) {
            return Some(*fail);
        }
        parts.iter().copied().min_by_key(|s| s.rank())
    }
}

impl fmt::Display for DeliveryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        DeliveryStatus::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| format!("unknown status {s:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn forward_moves_and_late_receipts_stay() {
        assert_eq!(Queued.apply(Sent), Transition::Moved(Sent));
        assert_eq!(Delivered.apply(Sent), Transition::Kept);
        assert_eq!(Delivered.apply(Read), Transition::Moved(Read));
        assert_eq!(Read.apply(Delivered), Transition::Kept);
        assert_eq!(Sent.apply(Sent), Transition::Kept);
    }

    #[test]
    fn failures_end_before_delivery_only() {
        assert_eq!(Sent.apply(Undeliverable), Transition::Moved(Undeliverable));
        assert_eq!(Accepted.apply(Rejected), Transition::Moved(Rejected));
        assert_eq!(Delivered.apply(Failed), Transition::Kept);
        assert_eq!(Failed.apply(Delivered), Transition::Kept);
        assert_eq!(Failed.apply(Expired), Transition::Kept);
    }

    #[test]
    fn parts_combine_to_the_slowest_or_the_failure() {
        assert_eq!(
            DeliveryStatus::combine_parts(&[Delivered, Sent]),
            Some(Sent)
        );
        assert_eq!(
            DeliveryStatus::combine_parts(&[Delivered, Delivered]),
            Some(Delivered)
        );
        assert_eq!(
            DeliveryStatus::combine_parts(&[Delivered, Failed]),
            Some(Failed)
        );
        assert_eq!(DeliveryStatus::combine_parts(&[]), None);
    }

    fn any_status() -> impl Strategy<Value = DeliveryStatus> {
        proptest::sample::select(DeliveryStatus::ALL.to_vec())
    }

    proptest! {
        /// No order of receipts moves a status back along the path, and once a message is
        /// final only `read` may still move it.
        #[test]
        fn no_receipt_order_moves_status_back(receipts in proptest::collection::vec(any_status(), 0..20)) {
            let mut cur = Accepted;
            for r in receipts {
                let before = cur;
                if let Transition::Moved(next) = cur.apply(r) {
                    cur = next;
                }
                match (before.rank(), cur.rank()) {
                    (Some(b), Some(c)) => prop_assert!(c >= b),
                    (None, _) => prop_assert_eq!(before, cur),
                    (Some(b), None) => prop_assert!(b < 4),
                }
            }
        }

        /// The outcome does not depend on the order receipts arrive in, for forward statuses.
        #[test]
        fn forward_statuses_commute(mut receipts in proptest::collection::vec(proptest::sample::select(vec![Queued, Sending, Sent, Delivered, Read]), 1..10)) {
            let fold = |rs: &[DeliveryStatus]| rs.iter().fold(Accepted, |cur, r| match cur.apply(*r) { Transition::Moved(n) => n, Transition::Kept => cur });
            let a = fold(&receipts);
            receipts.reverse();
            prop_assert_eq!(a, fold(&receipts));
        }
    }
}
