//! Retry delays: exponential with full jitter, capped, never shorter than the provider's
//! `Retry-After` (itself clamped to the cap).

use rand::Rng;
use std::time::Duration;

/// The delay before try number `tries + 1`, given `tries` made so far (≥ 1).
pub fn delay(tries: u32, base: Duration, max: Duration, retry_after: Option<Duration>) -> Duration {
    let exp = base.saturating_mul(1u32 << tries.saturating_sub(1).min(20));
    let ceiling = exp.min(max);
    // Sampled as a `Duration`: whole milliseconds would round an odd ceiling's half down,
    // a hair below the promised minimum.
    let jittered = rand::thread_rng().gen_range(ceiling / 2..=ceiling);
    match retry_after {
        Some(ra) => jittered.max(ra.min(max)),
        None => jittered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn delays_stay_in_bounds(tries in 1u32..40, base_ms in 1u64..5000, ra in proptest::option::of(0u64..100_000)) {
            let base = Duration::from_millis(base_ms);
            let max = Duration::from_secs(300);
            let d = delay(tries, base, max, ra.map(Duration::from_millis));
            prop_assert!(d <= max);
            if let Some(ra) = ra { prop_assert!(d >= Duration::from_millis(ra).min(max)); }
            let exp = base.saturating_mul(1u32 << (tries - 1).min(20)).min(max);
            prop_assert!(d >= exp / 2);
        }
    }
}
