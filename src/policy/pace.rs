//! Send-time reservations for throttled connections and senders.
//!
//! The governor limiters answer "may I send now?". When the answer is "not for a while", the
//! message goes back to the outbox — and it must come back when there is room for *it*, not
//! when the next single cell frees up: with a backlog of thousands on a 20/s connection,
//! "retry in 50 ms" for every one of them would have the poller claim and re-queue the whole
//! backlog over and over, and that churn through the shared store writer is what slowed
//! healthy connections down. A pacer hands out distinct future slots, one emission interval
//! apart, so each throttled message is re-queued once, for the time its turn comes.
//! Transactional and bulk traffic get separate horizons: bulk never delays transactional.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Mutex, MutexGuard};

/// The last slot handed out to each priority. Transactional slots are counted on their own,
/// so a bulk backlog never pushes transactional traffic back; bulk slots come after both.
#[derive(Debug, Default, Clone, Copy)]
struct Horizons {
    transactional: i64,
    bulk: i64,
}

impl Horizons {
    fn reserve(&mut self, interval: i64, now: i64, earliest: i64, bulk: bool) -> i64 {
        let floor = now.max(earliest - interval);
        if bulk {
            let slot = self.bulk.max(self.transactional).max(floor) + interval;
            self.bulk = slot;
            slot
        } else {
            let slot = self.transactional.max(floor) + interval;
            self.transactional = slot;
            slot
        }
    }

    /// How long bulk must hold back for transactional slots already handed out.
    fn bulk_yield(&self, now: i64) -> Option<i64> {
        (self.transactional > now).then_some(self.transactional - now)
    }

    fn idle(&self, now: i64) -> bool {
        self.transactional <= now && self.bulk <= now
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// Slots for one rate (messages per second), per key: a connection's pacer uses one key
/// (`""`), a per-sender pacer one per sender. Keys are created on first use; idle ones are
/// dropped as the map grows.
#[derive(Debug)]
pub struct Pacer {
    interval_ms: i64,
    horizons: Mutex<HashMap<String, Horizons>>,
}

/// Keys kept before idle ones (horizon in the past) are pruned.
const PRUNE_AT: usize = 4096;

impl Pacer {
    pub fn new(per_second: NonZeroU32) -> Pacer {
        Pacer {
            interval_ms: interval(per_second),
            horizons: Mutex::new(HashMap::new()),
        }
    }

    /// Reserves the next free slot for `key` at or after `earliest` (ms since the epoch) and
    /// returns it.
    pub fn reserve(&self, key: &str, now: i64, earliest: i64, bulk: bool) -> i64 {
        let mut map = lock(&self.horizons);
        if map.len() >= PRUNE_AT {
            map.retain(|_, h| !h.idle(now));
        }
        map.entry(key.to_string())
            .or_default()
            .reserve(self.interval_ms, now, earliest, bulk)
    }

    /// For a bulk message: how long (ms) transactional messages already hold `key`'s slots.
    /// A bulk message must not take the limiter's next cell from them.
    pub fn bulk_yield(&self, key: &str, now: i64) -> Option<i64> {
        lock(&self.horizons)
            .get(key)
            .and_then(|h| h.bulk_yield(now))
    }
}

fn interval(per_second: NonZeroU32) -> i64 {
    (1000 / i64::from(per_second.get())).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate(n: u32) -> NonZeroU32 {
        NonZeroU32::new(n).expect("non-zero")
    }

    #[test]
    fn slots_are_one_interval_apart_and_never_in_the_past() {
        let p = Pacer::new(rate(20));
        let slots: Vec<i64> = (0..5).map(|_| p.reserve("", 1_000, 1_000, false)).collect();
        assert_eq!(slots, vec![1_050, 1_100, 1_150, 1_200, 1_250]);
        // Much later: the backlog has drained, the next slot starts from now.
        assert_eq!(p.reserve("", 10_000, 10_000, false), 10_050);
    }

    #[test]
    fn earliest_pushes_the_slot_out() {
        let p = Pacer::new(rate(10));
        assert_eq!(p.reserve("", 1_000, 5_000, false), 5_000);
        assert_eq!(p.reserve("", 1_000, 1_000, false), 5_100);
    }

    #[test]
    fn a_bulk_backlog_does_not_push_transactional_back() {
        let p = Pacer::new(rate(10));
        let bulk: Vec<i64> = (0..50).map(|_| p.reserve("", 0, 0, true)).collect();
        assert_eq!(bulk.last(), Some(&5_000));
        // Transactional traffic arriving behind a 5 s bulk backlog goes out at once…
        assert_eq!(p.reserve("", 0, 0, false), 100);
        assert_eq!(p.reserve("", 0, 0, false), 200);
        // …and later bulk waits for both, and holds back until they are out.
        assert_eq!(p.reserve("", 0, 0, true), 5_100);
        assert_eq!(p.bulk_yield("", 50), Some(150));
        assert_eq!(p.bulk_yield("", 200), None);
        // Bulk never gets a slot before pending transactional ones.
        let q = Pacer::new(rate(10));
        for _ in 0..30 {
            q.reserve("", 0, 0, false);
        }
        assert_eq!(q.reserve("", 0, 0, true), 3_100);
    }

    #[test]
    fn concurrent_reservations_are_distinct() {
        let p = std::sync::Arc::new(Pacer::new(rate(1000)));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let p = p.clone();
                std::thread::spawn(move || {
                    (0..1000)
                        .map(|_| p.reserve("", 0, 0, false))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<i64> = handles
            .into_iter()
            .flat_map(|h| h.join().expect("thread"))
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 4000);
    }

    #[test]
    fn keys_are_paced_apart_and_idle_keys_pruned() {
        let p = Pacer::new(rate(1));
        assert_eq!(p.reserve("a", 0, 0, false), 1_000);
        assert_eq!(p.reserve("a", 0, 0, false), 2_000);
        assert_eq!(p.reserve("b", 0, 0, false), 1_000);
        for i in 0..PRUNE_AT {
            p.reserve(&format!("k{i}"), 0, 0, false);
        }
        // Everything is idle by t = 10 s: the map is pruned before inserting.
        p.reserve("c", 10_000, 10_000, false);
        let len = p.horizons.lock().map(|m| m.len()).unwrap_or(0);
        assert_eq!(len, 1);
    }
}
