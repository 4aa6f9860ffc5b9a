//! A circuit breaker per connection: it opens after `threshold` consecutive failures, stays
//! open for `cool_down`, then lets one probe through (half-open); the probe's success
//! closes it, its failure opens it again. Exported as `weft_connection_circuit_open`.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen { probing: bool },
}

#[derive(Debug)]
pub struct Breaker {
    connection: String,
    threshold: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

impl Breaker {
    pub fn new(connection: &str, threshold: u32, cool_down: Duration) -> Breaker {
        ::metrics::gauge!(crate::metrics::CONNECTION_CIRCUIT_OPEN, "connection" => connection.to_string()).set(0.0);
        Breaker {
            connection: connection.into(),
            threshold: threshold.max(1),
            cool_down,
            state: Mutex::new(State::Closed { failures: 0 }),
        }
    }

    fn set(&self, st: &mut State, new: State) {
        let was_open = matches!(*st, State::Open { .. } | State::HalfOpen { .. });
        let is_open = matches!(new, State::Open { .. } | State::HalfOpen { .. });
        *st = new;
        if was_open != is_open {
            ::metrics::gauge!(crate::metrics::CONNECTION_CIRCUIT_OPEN, "connection" => self.connection.clone())
                .set(if is_open { 1.0 } else { 0.0 });
            if is_open {
                tracing::warn!(connection = %self.connection, "Circuit opened; traffic fails over.");
            } else {
                tracing::info!(connection = %self.connection, "Circuit closed.");
            }
        }
    }

    /// May a send go to this connection now? A half-open breaker admits one probe.
    pub fn allow(&self) -> bool {
        let Ok(mut st) = self.state.lock() else {
            return true;
        };
        match *st {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                self.set(&mut st, State::HalfOpen { probing: true });
                true
            }
            State::Open { .. } => false,
            State::HalfOpen { probing } => {
                if probing {
                    false
                } else {
                    *st = State::HalfOpen { probing: true };
                    true
                }
            }
        }
    }

    /// Gives back the probe slot `allow` handed out for a send that never reached the
    /// provider (opted out, lease lost): otherwise the breaker would wait for ever for the
    /// probe's result.
    pub fn release(&self) {
        if let Ok(mut st) = self.state.lock() {
            if matches!(*st, State::HalfOpen { probing: true }) {
                *st = State::HalfOpen { probing: false };
            }
        }
    }

    pub fn is_open(&self) -> bool {
        self.state
            .lock()
            .map(|s| !matches!(*s, State::Closed { .. }))
            .unwrap_or(false)
    }

    pub fn success(&self) {
        if let Ok(mut st) = self.state.lock() {
            self.set(&mut st, State::Closed { failures: 0 });
        }
    }

    pub fn failure(&self) {
        let Ok(mut st) = self.state.lock() else {
            return;
        };
        let next = match *st {
            State::Closed { failures } if failures + 1 >= self.threshold => State::Open {
                until: Instant::now() + self.cool_down,
            },
            State::Closed { failures } => State::Closed {
                failures: failures + 1,
            },
            State::HalfOpen { .. } | State::Open { .. } => State::Open {
                until: Instant::now() + self.cool_down,
            },
        };
        self.set(&mut st, next);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_probes_and_closes() {
        let b = Breaker::new("t", 3, Duration::from_millis(30));
        b.failure();
        b.failure();
        assert!(b.allow());
        b.failure();
        assert!(!b.allow() && b.is_open());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow(), "one probe after the cool-down");
        assert!(!b.allow(), "only one probe at a time");
        b.failure();
        assert!(!b.allow());
        std::thread::sleep(Duration::from_millis(40));
        assert!(b.allow());
        b.success();
        assert!(b.allow() && !b.is_open());
    }

    #[test]
    fn a_released_probe_lets_the_next_send_probe() {
        let b = Breaker::new("t-release", 1, Duration::from_millis(10));
        b.failure();
        std::thread::sleep(Duration::from_millis(20));
        assert!(b.allow());
        assert!(!b.allow());
        b.release();
        assert!(
            b.allow(),
            "the slot of a send that never reached the provider"
        );
        b.success();
        assert!(!b.is_open());
    }
}
