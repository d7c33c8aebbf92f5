//! `tessera-bench`: sends load to Tessera (gRPC) or to any OpenAI-compatible
//! server (HTTP), writes a results file, draws charts from results files and
//! prints them side by side.
//!
//! Exit status: 0 on success; 1 when the run or command could not be done
//! (bad flag value, unreachable target, a target that does not speak its
//! protocol, unreadable file); 2 for a command line clap rejects; 3 when the
//! run finished and its results were written, but some sweep point had no
//! successful request.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use tessera_bench::backend::BackendOptions;
use tessera_bench::bench::{self, BenchConfig, LabelledTarget};
use tessera_bench::progress::Progress;
use tessera_bench::results::{Load, ResultsFile, Slo};
use tessera_bench::runner::RunPlan;
use tessera_bench::target::Target;
use tessera_bench::workload::{load_prompts, LengthSpec, PromptSource, Workload};
use tessera_bench::{compare, plot};

/// The exit status of a run whose results hold a point without success.
const EXIT_POINT_FAILED: u8 = 3;

/// Measured requests per point when neither --requests nor --duration is given.
const DEFAULT_REQUESTS: u64 = 64;

/// Throughput benchmarks of Tessera and OpenAI-compatible servers.
#[derive(Debug, Parser)]
#[command(name = "tessera-bench", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Send load to one or more targets and write a results file.
    Run(Box<RunArgs>),
    /// Draw SVG charts (throughput.svg, latency.svg) from results files.
    Plot(PlotArgs),
    /// Print results files side by side.
    Compare(CompareArgs),
}

/// Flags of `tessera-bench run`.
#[derive(Debug, Args)]
struct RunArgs {
    /// Where to send load: grpc://HOST:PORT (Tessera) or http://HOST:PORT (an
    /// OpenAI-compatible server). Repeat, or separate with commas, to run the
    /// same workload against several targets, one after another.
    #[arg(long, required = true, value_delimiter = ',')]
    target: Vec<Target>,

    /// Name of each target in results, charts and tables, in target order.
    /// Default: "tessera tpN" for Tessera, the model name otherwise.
    #[arg(long)]
    label: Vec<String>,

    /// Model to ask OpenAI-compatible targets for. Default: the first one
    /// their GET /v1/models lists. Tessera targets ignore it.
    #[arg(long)]
    model: Option<String>,

    /// API key, sent as `authorization: Bearer KEY` to every target.
    /// Default: none.
    #[arg(long, env = "TESSERA_BENCH_API_KEY", hide_env_values = true)]
    api_key: Option<String>,

    /// Closed-loop sweep: requests in flight at each point, e.g. 1,2,4,8.
    /// Default: 1,2,4,8 unless --rate is given.
    #[arg(long, value_delimiter = ',', conflicts_with = "rate")]
    concurrency: Vec<usize>,

    /// Open-loop sweep: mean Poisson arrival rates in requests per second,
    /// e.g. 0.5,1,2. Default: none (closed loop).
    #[arg(long, value_delimiter = ',')]
    rate: Vec<f64>,

    /// Measured requests per sweep point. Default: 64 unless --duration is
    /// given; with both, whichever ends first.
    #[arg(long)]
    requests: Option<u64>,

    /// Longest measured phase per sweep point, in seconds; requests in flight
    /// then run to their end. Default: none.
    #[arg(long)]
    duration: Option<f64>,

    /// Warm-up requests per sweep point, sent first and not counted.
    #[arg(long, default_value_t = 2)]
    warmup: u64,

    /// Prompt length in words: fixed:N or uniform:A-B (synthetic text drawn
    /// from the seed).
    #[arg(long, default_value = "fixed:128", conflicts_with = "prompts")]
    prompt_len: LengthSpec,

    /// JSONL file of prompts, one {"prompt": "...", "max_tokens": N} per
    /// line (max_tokens optional), used in order. Default: synthetic prompts.
    #[arg(long)]
    prompts: Option<PathBuf>,

    /// Tokens to generate per request: fixed:N or uniform:A-B.
    #[arg(long, default_value = "fixed:128")]
    output_len: LengthSpec,

    /// Seed of prompts, lengths and arrival times; the same seed gives the
    /// same workload.
    #[arg(long, default_value_t = 0)]
    seed: u64,

    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    temperature: f32,

    /// Do not ask servers to ignore end-of-sequence tokens (for servers that
    /// refuse the field); output lengths then vary. Default: ignore_eos is
    /// sent, so every request generates exactly its output length.
    #[arg(long)]
    no_ignore_eos: bool,

    /// Time-to-first-token objective of goodput, in milliseconds. Default:
    /// none.
    #[arg(long)]
    slo_ttft_ms: Option<f64>,

    /// Inter-token objective of goodput, in milliseconds: no gap between two
    /// token-carrying chunks of a request may be longer. Default: none.
    #[arg(long)]
    slo_itl_ms: Option<f64>,

    /// Longest one request may take, in seconds; a slower one fails with
    /// error kind `timeout`.
    #[arg(long, default_value_t = 300.0)]
    request_timeout: f64,

    /// Longest wait for a connection, and for each target's model
    /// information (ModelInfo, GET /v1/models), in seconds.
    #[arg(long, default_value_t = 10.0)]
    connect_timeout: f64,

    /// Results file to write.
    #[arg(long, default_value = "results.json")]
    out: PathBuf,

    /// Show neither the progress bar nor per-point summaries on stderr.
    #[arg(long, short)]
    quiet: bool,
}

/// Flags of `tessera-bench plot`.
#[derive(Debug, Args)]
struct PlotArgs {
    /// Results files; each run in them becomes a line.
    #[arg(required = true)]
    files: Vec<PathBuf>,

    /// Folder to write throughput.svg and latency.svg into (created when
    /// missing).
    #[arg(long, default_value = "charts")]
    out: PathBuf,
}

/// Flags of `tessera-bench compare`.
#[derive(Debug, Args)]
struct CompareArgs {
    /// Results files; each run in them becomes a column.
    #[arg(required = true)]
    files: Vec<PathBuf>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run(*args).await,
        Command::Plot(args) => plot_files(&args).map(|()| ExitCode::SUCCESS),
        Command::Compare(args) => compare_files(&args).map(|()| ExitCode::SUCCESS),
    };
    result.unwrap_or_else(|err| {
        eprintln!("error: {err:#}");
        ExitCode::FAILURE
    })
}

/// `tessera-bench run`.
async fn run(args: RunArgs) -> Result<ExitCode> {
    let config = config(&args)?;
    let results = bench::run(config, Progress::new(args.quiet)).await?;
    results.write(&args.out)?;

    let files = [(String::new(), results)];
    println!("{}", compare::compare(&files)?);
    println!("results written to {}", args.out.display());
    let [(_, results)] = files;

    let failed: Vec<String> = results
        .runs
        .iter()
        .flat_map(|run| run.points.iter().map(move |p| (run, p)))
        .filter(|(_, p)| p.requests.succeeded == 0)
        .map(|(run, p)| format!("{} at {}", run.label, p.load))
        .collect();
    if !failed.is_empty() {
        eprintln!("error: no request succeeded for {}", failed.join(", "));
        return Ok(ExitCode::from(EXIT_POINT_FAILED));
    }
    Ok(ExitCode::SUCCESS)
}

/// The run's configuration from its flags, checked.
fn config(args: &RunArgs) -> Result<BenchConfig> {
    if !args.label.is_empty() && args.label.len() != args.target.len() {
        bail!(
            "give one --label per --target ({} labels, {} targets)",
            args.label.len(),
            args.target.len()
        );
    }
    let targets = args
        .target
        .iter()
        .enumerate()
        .map(|(i, target)| LabelledTarget {
            target: target.clone(),
            label: args.label.get(i).cloned(),
        })
        .collect();

    let requests = match (args.requests, args.duration) {
        (None, None) => Some(DEFAULT_REQUESTS),
        (requests, _) => requests,
    };
    let duration = args
        .duration
        .map(|s| seconds("--duration", s))
        .transpose()?;
    let plan = RunPlan::new(requests, duration, args.warmup, args.seed)?;

    let prompts = match &args.prompts {
        Some(path) => PromptSource::File {
            path: path.clone(),
            prompts: load_prompts(path)?,
        },
        None => PromptSource::Synthetic(args.prompt_len),
    };
    let workload = Workload {
        prompts,
        output_len: args.output_len,
        seed: args.seed,
    };
    let options = BackendOptions {
        api_key: args.api_key.clone(),
        model: args.model.clone(),
        temperature: args.temperature,
        ignore_eos: !args.no_ignore_eos,
        connect_timeout: seconds("--connect-timeout", args.connect_timeout)?,
        request_timeout: seconds("--request-timeout", args.request_timeout)?,
    };
    let slo = Slo {
        ttft_ms: positive("--slo-ttft-ms", args.slo_ttft_ms)?,
        itl_ms: positive("--slo-itl-ms", args.slo_itl_ms)?,
    };
    Ok(BenchConfig {
        targets,
        options,
        workload,
        plan,
        loads: loads(args)?,
        slo,
    })
}

/// The sweep points: rates when given, else concurrencies (1,2,4,8 when
/// neither is).
fn loads(args: &RunArgs) -> Result<Vec<Load>> {
    if !args.rate.is_empty() {
        if let Some(bad) = args.rate.iter().find(|r| !r.is_finite() || **r <= 0.0) {
            bail!("--rate {bad}: rates are positive numbers of requests per second");
        }
        return Ok(args.rate.iter().map(|&rate| Load::Open { rate }).collect());
    }
    if args.concurrency.contains(&0) {
        bail!("--concurrency 0: at least one request must be in flight");
    }
    let levels = if args.concurrency.is_empty() {
        vec![1, 2, 4, 8]
    } else {
        args.concurrency.clone()
    };
    Ok(levels
        .into_iter()
        .map(|concurrency| Load::Closed { concurrency })
        .collect())
}

/// A positive number of seconds as a duration.
fn seconds(flag: &str, value: f64) -> Result<Duration> {
    if value.is_nan() || value <= 0.0 {
        bail!("{flag} {value}: must be a positive number of seconds");
    }
    Duration::try_from_secs_f64(value).with_context(|| format!("{flag} {value}: too long"))
}

/// An optional positive number.
fn positive(flag: &str, value: Option<f64>) -> Result<Option<f64>> {
    match value {
        Some(v) if !(v.is_finite() && v > 0.0) => bail!("{flag} {v}: must be a positive number"),
        _ => Ok(value),
    }
}

/// Reads results files, each named by its file stem.
fn read_files(paths: &[PathBuf]) -> Result<Vec<(String, ResultsFile)>> {
    paths
        .iter()
        .map(|path| Ok((file_name(path), ResultsFile::read(path)?)))
        .collect()
}

/// The name a file's runs are shown under when labels clash.
fn file_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// `tessera-bench plot`.
fn plot_files(args: &PlotArgs) -> Result<()> {
    let files = read_files(&args.files)?;
    for path in plot::plot(&files, &args.out)? {
        println!("{}", path.display());
    }
    Ok(())
}

/// `tessera-bench compare`.
fn compare_files(args: &CompareArgs) -> Result<()> {
    let files = read_files(&args.files)?;
    print!("{}", compare::compare(&files)?);
    Ok(())
}
