//! Fault injection settings, changeable while the simulator runs.

use rand::Rng;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

/// What to do with one send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// Answer with a 5xx (the provider's own error shape).
    ServerError,
    /// Answer 429 / the provider's throttle signal, with this `Retry-After` in seconds.
    Throttle(u32),
    /// Never answer in time (sleep far beyond any client timeout).
    Timeout,
}

/// Rates are parts per million so they can live in atomics; all settable at run time.
#[derive(Debug, Default)]
pub struct Faults {
    latency_ms: AtomicU64,
    error_ppm: AtomicU32,
    throttle_ppm: AtomicU32,
    timeout_ppm: AtomicU32,
    retry_after_s: AtomicU32,
    /// Fail everything with a 5xx while set (outage).
    outage: std::sync::atomic::AtomicBool,
}

fn ppm(rate: f64) -> u32 {
    (rate.clamp(0.0, 1.0) * 1_000_000.0) as u32
}

impl Faults {
    pub fn set_latency(&self, d: Duration) {
        self.latency_ms
            .store(d.as_millis() as u64, Ordering::Relaxed);
    }
    pub fn latency(&self) -> Duration {
        Duration::from_millis(self.latency_ms.load(Ordering::Relaxed))
    }
    /// Share of sends answered with a 5xx.
    pub fn set_error_rate(&self, rate: f64) {
        self.error_ppm.store(ppm(rate), Ordering::Relaxed);
    }
    /// Share of sends answered with 429 and `Retry-After: retry_after_s`.
    pub fn set_throttle_rate(&self, rate: f64, retry_after_s: u32) {
        self.throttle_ppm.store(ppm(rate), Ordering::Relaxed);
        self.retry_after_s.store(retry_after_s, Ordering::Relaxed);
    }
    /// Share of sends never answered in time.
    pub fn set_timeout_rate(&self, rate: f64) {
        self.timeout_ppm.store(ppm(rate), Ordering::Relaxed);
    }
    /// Every send fails with a 5xx while `on`.
    pub fn set_outage(&self, on: bool) {
        self.outage.store(on, Ordering::Relaxed);
    }

    /// Draws the fault for one request.
    pub fn draw(&self) -> Fault {
        if self.outage.load(Ordering::Relaxed) {
            return Fault::ServerError;
        }
        let (e, t, o) = (
            self.error_ppm.load(Ordering::Relaxed),
            self.throttle_ppm.load(Ordering::Relaxed),
            self.timeout_ppm.load(Ordering::Relaxed),
        );
        if e == 0 && t == 0 && o == 0 {
            return Fault::None;
        }
        let x: u32 = rand::thread_rng().gen_range(0..1_000_000);
        if x < e {
            Fault::ServerError
        } else if x < e + t {
            Fault::Throttle(self.retry_after_s.load(Ordering::Relaxed))
        } else if x < e + t + o {
            Fault::Timeout
        } else {
            Fault::None
        }
    }

    /// Sleeps the configured latency, or "forever" (120 s) for a timeout.
    pub async fn delay(&self, fault: Fault) {
        let d = if fault == Fault::Timeout {
            Duration::from_secs(120)
        } else {
            self.latency()
        };
        if !d.is_zero() {
            tokio::time::sleep(d).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_draw_roughly_right() {
        let f = Faults::default();
        assert_eq!(f.draw(), Fault::None);
        f.set_error_rate(1.0);
        assert_eq!(f.draw(), Fault::ServerError);
        f.set_error_rate(0.0);
        f.set_throttle_rate(1.0, 3);
        assert_eq!(f.draw(), Fault::Throttle(3));
        f.set_throttle_rate(0.0, 0);
        f.set_outage(true);
        assert_eq!(f.draw(), Fault::ServerError);
    }
}
