//! The error type of the library, [`BenchError`].
//!
//! These are the failures that stop a run or a command: a bad flag value, a
//! target that cannot be reached or does not speak the expected protocol, a
//! file that cannot be read or written. A request that fails during a run is
//! not a `BenchError`: it is counted in the results under its error kind
//! (see [`crate::record::RequestError`]).

use std::path::PathBuf;

/// Everything that stops a benchmark command.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag or file value that cannot be used.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidSpec {
        /// What the value is for, e.g. "prompt length".
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// No connection to the target could be made.
    #[error("cannot reach {target}: {reason}; is the server running?")]
    Unreachable {
        /// The target as given.
        target: String,
        /// The operating system's or transport's reason, e.g. "connection refused".
        reason: String,
    },

    /// The target answered, but not in the protocol its scheme promises.
    #[error("{target} does not answer as {expected}: {detail}")]
    WrongProtocol {
        /// The target as given.
        target: String,
        /// The protocol that was expected.
        expected: &'static str,
        /// What it answered instead.
        detail: String,
    },

    /// The target speaks the protocol but refused the first request.
    #[error("{target} refused the probe request: {detail}")]
    ProbeFailed {
        /// The target as given.
        target: String,
        /// The server's answer.
        detail: String,
    },

    /// An OpenAI-compatible target lists no model and none was named.
    #[error("{target} lists no model at GET /v1/models; name one with --model")]
    NoModel {
        /// The target as given.
        target: String,
    },

    /// A file could not be read or written.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// "read", "write" or "create".
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        #[source]
        source: std::io::Error,
    },

    /// A line of a prompts file is not a prompt.
    #[error("{path}:{line}: {reason}")]
    PromptFile {
        /// The prompts file.
        path: PathBuf,
        /// The line number, from 1.
        line: usize,
        /// What is wrong with the line.
        reason: String,
    },

    /// A results file is not one `tessera-bench run` wrote.
    #[error("{path} is not a tessera-bench results file: {source}")]
    ResultsFile {
        /// The file.
        path: PathBuf,
        /// Where parsing failed.
        #[source]
        source: serde_json::Error,
    },

    /// Result files that cannot be shown together, or none to show.
    #[error("{0}")]
    Incompatible(String),

    /// A chart could not be drawn.
    #[error("cannot draw {path}: {reason}")]
    Plot {
        /// The chart's file.
        path: PathBuf,
        /// The drawing library's reason.
        reason: String,
    },
}

impl BenchError {
    /// A short, stable name of the error kind, for scripts and logs.
    pub fn label(&self) -> &'static str {
        match self {
            BenchError::InvalidSpec { .. } => "invalid_spec",
            BenchError::Unreachable { .. } => "unreachable",
            BenchError::WrongProtocol { .. } => "wrong_protocol",
            BenchError::ProbeFailed { .. } => "probe_failed",
            BenchError::NoModel { .. } => "no_model",
            BenchError::Io { .. } => "io",
            BenchError::PromptFile { .. } => "prompt_file",
            BenchError::ResultsFile { .. } => "results_file",
            BenchError::Incompatible(_) => "incompatible",
            BenchError::Plot { .. } => "plot",
        }
    }
}
