//! Poisson arrivals for open-loop runs.
//!
//! Requests of a Poisson process at rate `r` arrive with independent,
//! exponentially distributed gaps of mean `1 / r` seconds. The generator is
//! seeded, so the same seed and rate give the same arrival times on every
//! run and every target.

use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Exp};

use crate::BenchError;

/// An endless iterator of arrival times, as offsets from the start of the
/// run, in increasing order.
#[derive(Clone, Debug)]
pub struct PoissonArrivals {
    rng: ChaCha8Rng,
    gaps: Exp<f64>,
    /// The last arrival's offset, in seconds.
    now_s: f64,
}

impl PoissonArrivals {
    /// Arrivals at `rate` requests per second on average, drawn from `seed`.
    pub fn new(rate: f64, seed: u64) -> Result<Self, BenchError> {
        let invalid = |reason: &str| BenchError::InvalidSpec {
            what: "request rate",
            value: rate.to_string(),
            reason: reason.to_owned(),
        };
        if !rate.is_finite() || rate <= 0.0 {
            return Err(invalid("must be a positive number of requests per second"));
        }
        let gaps = Exp::new(rate).map_err(|_| invalid("not a valid exponential rate"))?;
        Ok(PoissonArrivals {
            rng: ChaCha8Rng::seed_from_u64(seed),
            gaps,
            now_s: 0.0,
        })
    }
}

impl Iterator for PoissonArrivals {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.now_s += self.gaps.sample(&mut self.rng);
        Duration::try_from_secs_f64(self.now_s).ok()
    }
}
