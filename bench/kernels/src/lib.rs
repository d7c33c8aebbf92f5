//! Micro-benchmarks of Tessera's CPU kernels, read against the machine's own
//! memory bandwidth.
//!
//! A run first measures how fast this machine reads and copies a buffer far
//! larger than its caches ([`bandwidth`]), then times
//! [`tessera_kernels::cpu::matmul`] for each weight format, shape and number
//! of activation rows ([`matmul`]), and decode-step attention for several
//! context lengths ([`attention`]). Every case reports the bytes it must read
//! per second as a share of the measured read bandwidth: decode is
//! memory-bound, so that share says how close a kernel is to the ceiling.
//!
//! Working sets no larger than the cache threshold are labelled
//! cache-resident: they are read from cache after the first call and can
//! exceed memory bandwidth.
//!
//! The binary prints the [`Report`] as tables and, on request, as JSON.

pub mod attention;
pub mod bandwidth;
mod error;
pub mod matmul;
mod report;
mod spec;
mod timing;

pub use attention::{AttentionCase, AttentionConfig};
pub use bandwidth::{Bandwidth, BandwidthConfig};
pub use error::BenchError;
pub use matmul::{MatmulCase, MatmulConfig, MatmulResults, SkippedCase};
pub use report::Report;
pub use spec::{parse_format, FormatList, Shape};
pub use timing::{time_calls, Timing};

/// Everything one run measures.
#[derive(Debug, Clone)]
pub struct Config {
    /// Threads in the rayon pool the kernels run on; bandwidth is measured
    /// with one thread and, when larger, with this many.
    pub threads: usize,
    /// Working sets of at most this many bytes are labelled cache-resident.
    pub cache_bytes: usize,
    /// The bandwidth measurement.
    pub bandwidth: BandwidthConfig,
    /// The matrix products.
    pub matmul: MatmulConfig,
    /// The attention cases.
    pub attention: AttentionConfig,
}

/// What every case is compared against.
#[derive(Debug, Clone, Copy)]
pub struct Baseline {
    /// Measured read bandwidth with the run's thread count, GB/s.
    pub read_gbps: f64,
    /// Cache-resident threshold, bytes.
    pub cache_bytes: usize,
}

impl Baseline {
    /// `gbps` as a percentage of the read bandwidth.
    pub fn percent(&self, gbps: f64) -> f64 {
        100.0 * gbps / self.read_gbps
    }

    /// Whether a working set of `bytes` may stay in cache between calls.
    pub fn cache_resident(&self, bytes: usize) -> bool {
        bytes <= self.cache_bytes
    }
}

/// Runs every measurement of `config`; `progress` hears one line per step.
pub fn run(config: &Config, progress: &mut (dyn FnMut(&str) + Send)) -> Result<Report, BenchError> {
    validate(config)?;

    // Bandwidth with one thread, then with the run's thread count.
    let mut bandwidth = vec![pool(1)?.install(|| bandwidth::measure(config.bandwidth))];
    progress("bandwidth threads=1");
    let kernels = pool(config.threads)?;
    if config.threads > 1 {
        bandwidth.push(kernels.install(|| bandwidth::measure(config.bandwidth)));
        progress(&format!("bandwidth threads={}", config.threads));
    }
    let baseline = Baseline {
        read_gbps: bandwidth.last().map_or(f64::NAN, |b| b.read_gbps),
        cache_bytes: config.cache_bytes,
    };

    let matmul = kernels.install(|| matmul::run(&config.matmul, &baseline, progress))?;
    let attention = kernels.install(|| attention::run(&config.attention, &baseline, progress))?;
    Ok(Report::new(config, bandwidth, matmul, attention))
}

/// Rejects values no case could run with.
fn validate(c: &Config) -> Result<(), BenchError> {
    if c.threads == 0 {
        return Err(BenchError::invalid("thread count", 0, "must be at least 1"));
    }
    if c.bandwidth.bytes < 8 || c.bandwidth.runs == 0 {
        let value = format!("{} bytes, {} runs", c.bandwidth.bytes, c.bandwidth.runs);
        return Err(BenchError::invalid(
            "bandwidth test",
            value,
            "needs bytes and runs",
        ));
    }
    if c.matmul.ns.contains(&0) {
        return Err(BenchError::invalid(
            "activation rows",
            0,
            "n must be at least 1",
        ));
    }
    attention::check(&c.attention)
}

/// A rayon pool of `threads` threads.
fn pool(threads: usize) -> Result<rayon::ThreadPool, BenchError> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|source| BenchError::ThreadPool { threads, source })
}

/// Size of the largest CPU cache, from Linux sysfs; `None` elsewhere or when
/// it cannot be read.
pub fn largest_cache_bytes() -> Option<usize> {
    let dir = std::fs::read_dir("/sys/devices/system/cpu/cpu0/cache").ok()?;
    dir.filter_map(|entry| {
        let size = std::fs::read_to_string(entry.ok()?.path().join("size")).ok()?;
        parse_cache_size(&size)
    })
    .max()
}

/// Parses a sysfs cache size such as `32768K` or `2M`.
fn parse_cache_size(s: &str) -> Option<usize> {
    let s = s.trim();
    let (digits, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let scale = match unit {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => return None,
    };
    digits.parse::<usize>().ok().map(|v| v * scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_sizes_parse() {
        assert_eq!(parse_cache_size("32768K\n"), Some(32 << 20));
        assert_eq!(parse_cache_size("2M"), Some(2 << 20));
        assert_eq!(parse_cache_size("512"), Some(512));
        assert_eq!(parse_cache_size("lots"), None);
    }
}
