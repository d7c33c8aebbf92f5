//! The error type of the library, [`BenchError`]: a configuration that cannot
//! be benchmarked. Bad flag values are caught here, before any case runs.

/// Everything that stops a kernel benchmark run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A flag value that cannot be used.
    #[error("invalid {what} {value:?}: {reason}")]
    InvalidSpec {
        /// What the value is for, e.g. "shape".
        what: &'static str,
        /// The value as given.
        value: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The rayon pool for the requested thread count could not be built.
    #[error("cannot start a pool of {threads} threads: {source}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// Rayon's reason.
        source: rayon::ThreadPoolBuildError,
    },

    /// Random weights whose bytes disagree with their shape (a bench bug).
    #[error(transparent)]
    Kernel(#[from] tessera_kernels::KernelError),
}

impl BenchError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidSpec { .. } => "invalid_spec",
            Self::ThreadPool { .. } => "thread_pool",
            Self::Kernel(e) => e.label(),
        }
    }

    /// An [`BenchError::InvalidSpec`] for `value`.
    pub(crate) fn invalid(what: &'static str, value: impl ToString, reason: impl ToString) -> Self {
        Self::InvalidSpec {
            what,
            value: value.to_string(),
            reason: reason.to_string(),
        }
    }
}
