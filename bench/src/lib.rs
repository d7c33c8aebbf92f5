//! `tessera-bench`: a load generator for Tessera's gRPC API and for any
//! OpenAI-compatible HTTP server, so that Tessera and a peer are measured by
//! the same tool, on the same prompts, in one run.
//!
//! The pieces, in the order a run uses them:
//!
//! - [`target`] parses `grpc://HOST:PORT` (Tessera) and `http://HOST:PORT`
//!   (OpenAI-compatible) targets;
//! - [`workload`] builds each request's prompt and output length from the
//!   seed, or takes them from a JSONL file;
//! - [`arrival`] draws Poisson arrival times for open-loop runs;
//! - [`backend`] sends one streamed request and times its chunks into a
//!   [`record::RequestRecord`];
//! - [`runner`] drives a sweep point (closed or open loop) and [`figures`]
//!   turns its records into the figures of [`results`];
//! - [`plot`] draws SVG charts from result files and [`compare`] prints them
//!   side by side.

pub mod arrival;
pub mod backend;
pub mod bench;
pub mod compare;
pub mod error;
pub mod figures;
pub mod plot;
pub mod progress;
pub mod record;
pub mod results;
pub mod runner;
pub mod sse;
pub mod stats;
pub mod target;
pub mod workload;

pub use error::BenchError;

/// The tool's version, written into every result file.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
