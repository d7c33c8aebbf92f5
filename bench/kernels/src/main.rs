//! `tessera-kernel-bench`: times Tessera's CPU kernels (matrix products per
//! weight format, decode attention) and prints them against this machine's
//! measured memory bandwidth, as tables and optionally as JSON.
//!
//! Exit status: 0 on success; 1 when a flag value cannot be used or the JSON
//! file cannot be written; 2 for a command line clap rejects.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use clap::Parser;
use tessera_kernel_bench::{
    largest_cache_bytes, AttentionConfig, BandwidthConfig, Config, FormatList, MatmulConfig, Shape,
};

/// Cache threshold when the machine's cache size cannot be read, MiB.
const FALLBACK_CACHE_MIB: usize = 8;

/// Micro-benchmarks of Tessera's CPU kernels against the machine's memory
/// bandwidth. Build with --release: a debug build's figures are meaningless.
#[derive(Debug, Parser)]
#[command(name = "tessera-kernel-bench", version, about)]
struct Cli {
    /// Threads in the rayon pool the kernels run on. Bandwidth is measured
    /// with one thread and, when larger, with this many.
    #[arg(long, default_value_t = 1)]
    threads: usize,

    /// Weight formats: `all`, or a comma-separated list such as
    /// F32,Q4_1,Q4_K (case and underscores ignored).
    #[arg(long, default_value = "all")]
    formats: FormatList,

    /// Weight shapes as ROWSxCOLS (output x input features), comma-separated.
    /// Formats whose block size does not divide COLS are skipped.
    /// The defaults are SmolLM2-135M's FFN and output shapes, and a 7B-sized
    /// square.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "576x1536,1536x576,49152x576,4096x4096"
    )]
    shapes: Vec<Shape>,

    /// Activation rows per product, comma-separated; 1 is the matrix-vector
    /// (decode) path.
    #[arg(long = "n", value_delimiter = ',', default_value = "1,16,128")]
    ns: Vec<usize>,

    /// Timing budget of each case after its warm-up, in seconds; a slow case
    /// still takes at least three timed calls.
    #[arg(long, default_value_t = 0.3)]
    seconds_per_case: f64,

    /// Attention context lengths (cached positions), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "128,1024,4096")]
    contexts: Vec<usize>,

    /// Attention query heads; the default is SmolLM2-135M's.
    #[arg(long, default_value_t = 9)]
    heads: usize,

    /// Attention key/value heads; must divide --heads.
    #[arg(long, default_value_t = 3)]
    kv_heads: usize,

    /// Attention elements per head.
    #[arg(long, default_value_t = 64)]
    head_dim: usize,

    /// Separate layer caches attention cycles through, as a decode step
    /// visits every layer; the default is SmolLM2-135M's layer count.
    #[arg(long, default_value_t = 30)]
    layers: usize,

    /// Size of the bandwidth test's buffers, in MiB (the copy uses two).
    #[arg(long, default_value_t = 256)]
    bandwidth_mib: usize,

    /// Runs of each bandwidth test; the fastest counts.
    #[arg(long, default_value_t = 10)]
    bandwidth_runs: usize,

    /// Working sets up to this many MiB are labelled cache-resident.
    /// Default: half the largest CPU cache (Linux sysfs), else 8. Half,
    /// because a matrix streamed through a cache its own size (and shared
    /// with other processes) is mostly evicted before it is read again.
    #[arg(long)]
    cache_mib: Option<usize>,

    /// Seed of the random weights, activations and caches.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Also write the results as JSON to this file. Default: none.
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let config = config(&cli)?;
    if cfg!(debug_assertions) {
        eprintln!("warning: debug build; run with --release for meaningful figures");
    }

    let mut progress = |step: &str| {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "done: {step}");
    };
    let report = tessera_kernel_bench::run(&config, &mut progress)?;

    if let Some(path) = &cli.json {
        let text = serde_json::to_string_pretty(&report).context("serialising the report")?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))?;
    }
    // Written rather than printed: a closed pipe (`| head`) is an error, not a panic.
    std::io::stdout()
        .lock()
        .write_all(report.table().as_bytes())
        .context("writing the table to stdout")
}

/// The run's configuration from the flags.
fn config(cli: &Cli) -> Result<Config> {
    ensure!(
        cli.seconds_per_case.is_finite() && cli.seconds_per_case >= 0.0,
        "--seconds-per-case must be a non-negative number of seconds"
    );
    let budget = Duration::from_secs_f64(cli.seconds_per_case);
    let cache_bytes = match cli.cache_mib {
        Some(mib) => mib << 20,
        None => largest_cache_bytes().map_or(FALLBACK_CACHE_MIB << 20, |b| b / 2),
    };

    Ok(Config {
        threads: cli.threads,
        cache_bytes,
        bandwidth: BandwidthConfig {
            bytes: cli.bandwidth_mib << 20,
            runs: cli.bandwidth_runs,
        },
        matmul: MatmulConfig {
            formats: cli.formats.0.clone(),
            shapes: cli.shapes.clone(),
            ns: cli.ns.clone(),
            budget,
            seed: cli.seed,
        },
        attention: AttentionConfig {
            contexts: cli.contexts.clone(),
            heads: cli.heads,
            kv_heads: cli.kv_heads,
            head_dim: cli.head_dim,
            layers: cli.layers,
            budget,
            seed: cli.seed,
        },
    })
}
