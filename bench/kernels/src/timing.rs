//! The timing loop every case shares: warm up, then time batches of calls
//! until the time budget is spent, and take the median time per call.
//!
//! Calls too short to time one by one (a cache-resident matvec takes a few
//! microseconds) are grouped into batches of at least [`SAMPLE_TARGET`], so
//! the clock's own cost stays negligible. The median over batches, rather
//! than the mean, keeps a neighbour's burst on a shared machine from moving
//! the figure.

use std::time::{Duration, Instant};

/// Shortest batch worth timing as one sample.
const SAMPLE_TARGET: Duration = Duration::from_millis(1);

/// Fewest samples per case, however slow each call is.
const MIN_SAMPLES: usize = 3;

/// Share of the budget spent warming up (page faults, caches, thread wake-up).
const WARMUP_SHARE: f64 = 0.1;

/// What timing one case found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    /// Median seconds per call.
    pub per_call_s: f64,
    /// Fastest sample's seconds per call: on a shared machine, the closest
    /// to an undisturbed run.
    pub best_per_call_s: f64,
    /// Timed samples (batches).
    pub samples: usize,
    /// Calls per sample.
    pub calls_per_sample: usize,
}

/// Times `f`: warm-up, then samples until `budget` has passed and at least
/// [`MIN_SAMPLES`] were taken.
pub fn time_calls(budget: Duration, mut f: impl FnMut()) -> Timing {
    let mean = warm_up(budget.mul_f64(WARMUP_SHARE), &mut f);
    let batch = calls_per_sample(mean);

    let deadline = Instant::now() + budget;
    let mut samples = Vec::new();
    while samples.len() < MIN_SAMPLES || Instant::now() < deadline {
        let start = Instant::now();
        for _ in 0..batch {
            f();
        }
        samples.push(start.elapsed().as_secs_f64() / batch as f64);
    }

    let per_call_s = median(&mut samples);
    Timing {
        per_call_s,
        best_per_call_s: samples[0],
        samples: samples.len(),
        calls_per_sample: batch,
    }
}

/// Calls `f` at least once and until `span` has passed; returns the mean
/// seconds per call.
fn warm_up(span: Duration, f: &mut impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut calls = 0u32;
    while calls == 0 || start.elapsed() < span {
        f();
        calls += 1;
    }
    start.elapsed().as_secs_f64() / f64::from(calls)
}

/// Calls per sample so one sample lasts at least [`SAMPLE_TARGET`].
fn calls_per_sample(per_call_s: f64) -> usize {
    let calls = (SAMPLE_TARGET.as_secs_f64() / per_call_s.max(1e-9)).ceil();
    calls.clamp(1.0, 1e6) as usize
}

/// Median of a non-empty list, which is left sorted.
fn median(xs: &mut [f64]) -> f64 {
    xs.sort_by(f64::total_cmp);
    let mid = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[mid]
    } else {
        (xs[mid - 1] + xs[mid]) / 2.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn short_calls_are_batched() {
        assert_eq!(calls_per_sample(1.0), 1);
        assert!(calls_per_sample(1e-6) >= 1000);
    }

    #[test]
    fn timing_takes_minimum_samples() {
        let mut calls = 0;
        let t = time_calls(Duration::ZERO, || calls += 1);
        assert!(t.samples >= MIN_SAMPLES);
        assert!(t.per_call_s.is_finite() && t.per_call_s >= 0.0);
        assert!(t.best_per_call_s <= t.per_call_s);
        assert!(calls >= MIN_SAMPLES);
    }
}
