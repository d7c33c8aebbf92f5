//! Percentiles and summaries of latency samples.
//!
//! Percentiles interpolate linearly between the two closest ranks (the
//! definition numpy uses by default), so p50 of `[1, 2, 3, 4]` is 2.5 and
//! every percentile of a single sample is that sample.

use serde::{Deserialize, Serialize};

/// Count, mean and the percentiles a benchmark reports, in the unit of the
/// samples (milliseconds in result files).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Number of samples.
    pub count: usize,
    /// Arithmetic mean.
    pub mean: f64,
    /// Smallest sample.
    pub min: f64,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest sample.
    pub max: f64,
}

impl Summary {
    /// Summarises `samples`; `None` when there are no finite samples.
    /// Non-finite samples are left out.
    pub fn of(samples: &[f64]) -> Option<Summary> {
        let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        sorted.sort_by(f64::total_cmp);
        let (&min, &max) = (sorted.first()?, sorted.last()?);
        let mean = sorted.iter().sum::<f64>() / sorted.len() as f64;
        Some(Summary {
            count: sorted.len(),
            mean,
            min,
            p50: percentile_of_sorted(&sorted, 50.0)?,
            p90: percentile_of_sorted(&sorted, 90.0)?,
            p99: percentile_of_sorted(&sorted, 99.0)?,
            max,
        })
    }
}

/// The `q`-th percentile (`q` in 0..=100) of samples sorted in ascending
/// order, interpolating linearly between the two closest ranks.
///
/// `None` when `sorted` is empty or `q` is outside 0..=100 or not a number.
pub fn percentile_of_sorted(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() || !(0.0..=100.0).contains(&q) {
        return None;
    }

    // The fractional rank of q among n samples, from 0 to n - 1.
    let rank = q / 100.0 * (sorted.len() - 1) as f64;
    let lower = rank.floor() as usize;
    let upper = rank.ceil() as usize;
    let (a, b) = (*sorted.get(lower)?, *sorted.get(upper)?);
    Some(a + (b - a) * (rank - lower as f64))
}
