//! The results file `tessera-bench run` writes and `plot` and `compare`
//! read: the tool's version, when it ran, the workload with every parameter
//! that shapes it, and per target the model it served and the figures of
//! each sweep point.
//!
//! Latencies are in milliseconds, durations in seconds, rates per second.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::backend::ModelDescription;
use crate::stats::Summary;
use crate::target::Protocol;
use crate::BenchError;

/// A whole results file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ResultsFile {
    /// The tool that wrote it.
    pub tool: ToolInfo,
    /// When the run started, RFC 3339 in UTC.
    pub timestamp: String,
    /// What was sent.
    pub workload: WorkloadInfo,
    /// One per target, in the order they ran.
    pub runs: Vec<RunResult>,
}

/// The tool's name and version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ToolInfo {
    /// Always `tessera-bench`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// How load is offered at one sweep point.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Load {
    /// A closed loop: this many requests in flight, each followed at once by
    /// the next.
    Closed {
        /// Requests in flight.
        concurrency: usize,
    },
    /// An open loop: requests arrive as a Poisson process, whether or not
    /// earlier ones have finished.
    Open {
        /// Mean arrivals per second.
        rate: f64,
    },
}

impl Load {
    /// The point's position on a chart's x axis.
    pub fn x(&self) -> f64 {
        match *self {
            Load::Closed { concurrency } => concurrency as f64,
            Load::Open { rate } => rate,
        }
    }

    /// The x axis's name for this kind of load.
    pub fn axis_name(&self) -> &'static str {
        match self {
            Load::Closed { .. } => "concurrency (requests in flight)",
            Load::Open { .. } => "offered load (requests/s)",
        }
    }
}

impl fmt::Display for Load {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Load::Closed { concurrency } => write!(f, "concurrency {concurrency}"),
            Load::Open { rate } => write!(f, "rate {rate} req/s"),
        }
    }
}

/// Where prompts came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PromptInfo {
    /// Synthetic text.
    Synthetic {
        /// Its length in words: `fixed:N` or `uniform:A-B`.
        words: String,
    },
    /// A JSONL file.
    File {
        /// The file as given.
        path: String,
        /// How many prompts it holds.
        prompts: usize,
    },
}

/// Service-level objectives that goodput counts against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Slo {
    /// Longest acceptable time to first token, ms.
    pub ttft_ms: Option<f64>,
    /// Longest acceptable gap between two token-carrying chunks of one
    /// request, ms.
    pub itl_ms: Option<f64>,
}

/// Every parameter of the workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadInfo {
    /// The sweep points, in the order they ran.
    pub loads: Vec<Load>,
    /// Measured requests per point, when bounded by count.
    pub requests: Option<u64>,
    /// Longest measured phase per point, s, when bounded by time.
    pub duration_s: Option<f64>,
    /// Warm-up requests per point, not counted.
    pub warmup: u64,
    /// Where prompts came from.
    pub prompts: PromptInfo,
    /// Tokens to generate per request: `fixed:N` or `uniform:A-B`.
    pub output_len: String,
    /// Seed of prompts, lengths and arrivals.
    pub seed: u64,
    /// Sampling temperature.
    pub temperature: f32,
    /// Whether requests asked to ignore end-of-sequence tokens.
    pub ignore_eos: bool,
    /// The objectives of goodput.
    pub slo: Slo,
    /// Longest a request could take, s.
    pub request_timeout_s: f64,
}

/// The results of one target.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// The name charts and tables show.
    pub label: String,
    /// The target as given.
    pub target: String,
    /// Its protocol.
    pub protocol: Protocol,
    /// What it said it serves.
    pub model: ModelDescription,
    /// One per sweep point.
    pub points: Vec<PointResult>,
}

/// Request counts of a sweep point.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestCounts {
    /// Measured requests sent.
    pub sent: u64,
    /// Of those, the ones that finished with the server's usage.
    pub succeeded: u64,
    /// Of those, the ones that failed.
    pub failed: u64,
    /// Warm-up requests sent (not in any figure).
    pub warmup_sent: u64,
    /// Warm-up requests that failed.
    pub warmup_failed: u64,
}

/// Requests that met the objectives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Goodput {
    /// Successful requests within every objective given.
    pub met: u64,
    /// `met` over measured requests sent.
    pub fraction: f64,
    /// `met` per second of the point's duration.
    pub requests_per_s: f64,
}

/// The figures of one sweep point.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PointResult {
    /// How load was offered.
    pub load: Load,
    /// From the first measured request sent to the last one finished, s.
    pub duration_s: f64,
    /// Request counts.
    pub requests: RequestCounts,
    /// Failed measured requests by kind (`grpc:UNAVAILABLE`, `http:503`,
    /// `connect`, `protocol`, `usage_missing`, `timeout`, …).
    pub errors: BTreeMap<String, u64>,
    /// One message per error kind, as the server or transport gave it.
    pub error_examples: BTreeMap<String, String>,
    /// Prompt tokens of successful requests, by the server's count.
    pub prompt_tokens: u64,
    /// Generated tokens of successful requests, by the server's count.
    pub output_tokens: u64,
    /// `output_tokens` per second of `duration_s`.
    pub output_tokens_per_s: f64,
    /// Successful requests per second of `duration_s`.
    pub requests_per_s: f64,
    /// Requests within the objectives.
    pub goodput: Goodput,
    /// Time to first token, ms.
    pub ttft_ms: Option<Summary>,
    /// Gaps between token-carrying chunks, pooled over requests, ms.
    pub itl_ms: Option<Summary>,
    /// Time per output token after the first, `(e2e - ttft) / (tokens - 1)`, ms.
    pub tpot_ms: Option<Summary>,
    /// From sending to the end of the stream, ms.
    pub e2e_ms: Option<Summary>,
    /// Successful requests whose streamed token ids disagree in number with
    /// the server's usage; `None` where the protocol streams text only.
    pub usage_mismatches: Option<u64>,
}

impl ResultsFile {
    /// Reads a results file.
    pub fn read(path: &Path) -> Result<ResultsFile, BenchError> {
        let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
            action: "read",
            path: path.to_owned(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| BenchError::ResultsFile {
            path: path.to_owned(),
            source,
        })
    }

    /// Writes the file as indented JSON.
    pub fn write(&self, path: &Path) -> Result<(), BenchError> {
        let io = |source| BenchError::Io {
            action: "write",
            path: path.to_owned(),
            source,
        };
        let mut text = serde_json::to_string_pretty(self).map_err(|e| io(e.into()))?;
        text.push('\n');
        std::fs::write(path, text).map_err(io)
    }
}
