//! Poisson arrivals of open-loop runs.

use std::time::Duration;

use anyhow::{Context, Result};
use tessera_bench::arrival::PoissonArrivals;

#[test]
fn mean_rate_matches_the_asked_rate() -> Result<()> {
    for rate in [0.5, 4.0, 100.0] {
        let n = 20_000;
        let last = PoissonArrivals::new(rate, 7)?
            .nth(n - 1)
            .context("no arrival")?;
        let measured = n as f64 / last.as_secs_f64();
        // The relative standard error of the mean of 20,000 gaps is 0.7 %.
        assert!(
            (measured / rate - 1.0).abs() < 0.03,
            "rate {rate}: measured {measured}"
        );
    }
    Ok(())
}

#[test]
fn gaps_look_exponential() -> Result<()> {
    // For exponential gaps of mean 1/r, P(gap < mean) = 1 - 1/e ≈ 0.632.
    let rate = 10.0;
    let times: Vec<Duration> = PoissonArrivals::new(rate, 3)?.take(20_000).collect();
    let short = times
        .windows(2)
        .filter(|w| (w[1] - w[0]).as_secs_f64() < 1.0 / rate)
        .count();
    let fraction = short as f64 / (times.len() - 1) as f64;
    assert!((fraction - 0.632).abs() < 0.02, "fraction {fraction}");
    Ok(())
}

#[test]
fn same_seed_same_arrivals_and_increasing() -> Result<()> {
    let a: Vec<Duration> = PoissonArrivals::new(2.0, 42)?.take(100).collect();
    let b: Vec<Duration> = PoissonArrivals::new(2.0, 42)?.take(100).collect();
    let c: Vec<Duration> = PoissonArrivals::new(2.0, 43)?.take(100).collect();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.windows(2).all(|w| w[0] <= w[1]));
    Ok(())
}

#[test]
fn bad_rates_are_refused() {
    for rate in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(PoissonArrivals::new(rate, 0).is_err(), "rate {rate}");
    }
}
