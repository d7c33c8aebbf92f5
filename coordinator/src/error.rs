//! Errors a request can meet, and their one mapping to gRPC statuses.

use tonic::{Code, Status};

/// Why a request was refused or failed. Messages say what to fix.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ServeError {
    /// A parameter is out of range or missing.
    #[error("{0}")]
    InvalidArgument(String),
    /// The prompt leaves no room in the context.
    #[error("the prompt has {prompt} tokens and the model's context is {context}; {hint}")]
    PromptTooLong {
        prompt: usize,
        context: usize,
        hint: &'static str,
    },
    /// The request needs more KV cache than the whole cache holds.
    #[error("the request needs {positions} positions of KV cache (prompt plus max_new_tokens) but the cache holds {capacity}; lower max_new_tokens or start the server with a larger --kv-cache-mib")]
    CacheTooSmall { positions: usize, capacity: usize },
    /// The waiting queue is at capacity.
    #[error("the server is at capacity ({capacity} requests waiting); retry later")]
    QueueFull { capacity: usize },
    /// A shard failed or the group is down.
    #[error("shard rank {rank} is unavailable ({reason}); the shard group is being restarted, retry shortly")]
    ShardUnavailable { rank: usize, reason: String },
    /// The server is shutting down.
    #[error("the server is shutting down; retry on another instance")]
    ShuttingDown,
    /// Ranks returned different tokens: the group is out of step.
    #[error("the shards disagree on the sampled tokens (rank {rank}); the request was stopped")]
    RanksDisagree { rank: usize },
    /// The model cannot serve this (e.g. no chat template).
    #[error("{0}")]
    FailedPrecondition(String),
}

impl ServeError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::InvalidArgument(_) => "invalid_argument",
            Self::PromptTooLong { .. } => "prompt_too_long",
            Self::CacheTooSmall { .. } => "cache_too_small",
            Self::QueueFull { .. } => "queue_full",
            Self::ShardUnavailable { .. } => "shard_unavailable",
            Self::ShuttingDown => "shutting_down",
            Self::RanksDisagree { .. } => "ranks_disagree",
            Self::FailedPrecondition(_) => "failed_precondition",
        }
    }

    /// The gRPC code for this error.
    pub fn code(&self) -> Code {
        match self {
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::PromptTooLong { .. } | Self::CacheTooSmall { .. } | Self::QueueFull { .. } => {
                Code::ResourceExhausted
            }
            Self::ShardUnavailable { .. } | Self::ShuttingDown => Code::Unavailable,
            Self::RanksDisagree { .. } => Code::Internal,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
        }
    }
}

impl From<ServeError> for Status {
    fn from(e: ServeError) -> Self {
        Status::new(e.code(), e.to_string())
    }
}

/// Shorthand for an INVALID_ARGUMENT error.
pub fn invalid(msg: impl Into<String>) -> ServeError {
    ServeError::InvalidArgument(msg.into())
}
