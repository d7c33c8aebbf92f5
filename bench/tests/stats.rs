//! Percentile math of `tessera_bench::stats`.

use anyhow::{Context, Result};
use tessera_bench::stats::{percentile_of_sorted, Summary};

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

#[test]
fn percentiles_interpolate_between_ranks() -> Result<()> {
    let sorted = [1.0, 2.0, 3.0, 4.0];
    let p = |q| percentile_of_sorted(&sorted, q).context("no percentile");
    assert!(close(p(0.0)?, 1.0));
    assert!(close(p(50.0)?, 2.5));
    assert!(close(p(100.0)?, 4.0));
    // Rank 0.9 * 3 = 2.7: 70 % of the way from 3 to 4.
    assert!(close(p(90.0)?, 3.7));
    assert!(close(p(99.0)?, 3.97));
    Ok(())
}

#[test]
fn percentiles_of_one_to_a_hundred() -> Result<()> {
    let sorted: Vec<f64> = (1..=100).map(f64::from).collect();
    let p = |q| percentile_of_sorted(&sorted, q).context("no percentile");
    assert!(close(p(50.0)?, 50.5));
    assert!(close(p(90.0)?, 90.1));
    assert!(close(p(99.0)?, 99.01));
    Ok(())
}

#[test]
fn out_of_range_and_empty_give_none() {
    assert_eq!(percentile_of_sorted(&[], 50.0), None);
    assert_eq!(percentile_of_sorted(&[1.0], -1.0), None);
    assert_eq!(percentile_of_sorted(&[1.0], 100.5), None);
    assert_eq!(percentile_of_sorted(&[1.0], f64::NAN), None);
}

#[test]
fn summary_sorts_and_skips_non_finite_samples() -> Result<()> {
    let summary =
        Summary::of(&[5.0, f64::NAN, 1.0, 3.0, f64::INFINITY, 2.0, 4.0]).context("no summary")?;
    assert_eq!(summary.count, 5);
    assert!(close(summary.mean, 3.0));
    assert!(close(summary.min, 1.0));
    assert!(close(summary.p50, 3.0));
    assert!(close(summary.p90, 4.6));
    assert!(close(summary.max, 5.0));
    Ok(())
}

#[test]
fn summary_of_one_sample_is_that_sample() -> Result<()> {
    let summary = Summary::of(&[7.5]).context("no summary")?;
    for v in [
        summary.mean,
        summary.min,
        summary.p50,
        summary.p90,
        summary.p99,
        summary.max,
    ] {
        assert!(close(v, 7.5));
    }
    assert_eq!(Summary::of(&[]), None);
    assert_eq!(Summary::of(&[f64::NAN]), None);
    Ok(())
}
