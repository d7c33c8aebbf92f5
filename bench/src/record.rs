//! What one request did: when its tokens arrived, what the server counted,
//! and how it failed if it did.
//!
//! Times are offsets from the moment the request was sent. A chunk "carries
//! tokens" when it holds token ids (gRPC) or non-empty text (OpenAI), so the
//! final usage-only chunk of a stream is not an inter-token gap.

use std::time::Duration;

use tokio::time::Instant;

/// Why a request failed, with a stable kind for counting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestError {
    /// The kind the results count: `grpc:UNAVAILABLE`, `http:503`, `connect`,
    /// `transport`, `protocol`, `server_error`, `usage_missing`, `timeout`.
    pub kind: String,
    /// The sentence the server or the transport gave, for the results'
    /// examples.
    pub message: String,
}

impl RequestError {
    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        RequestError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

/// The server's token counts for one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    /// Tokens of the prompt, as the server tokenised it.
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
}

/// The timing and outcome of one request.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RequestRecord {
    /// When each chunk carrying tokens arrived, in order; the first is the
    /// time to first token.
    pub token_chunks: Vec<Duration>,
    /// From sending the request to the end of its stream (or its failure).
    pub e2e: Duration,
    /// The server's counts; `None` until the server sends them.
    pub usage: Option<Usage>,
    /// Tokens counted in the stream itself (gRPC token ids), to cross-check
    /// usage; `None` where the protocol streams text only.
    pub streamed_tokens: Option<u64>,
    /// Why the request failed; `None` when it succeeded.
    pub error: Option<RequestError>,
}

impl RequestRecord {
    /// Time to first token.
    pub fn ttft(&self) -> Option<Duration> {
        self.token_chunks.first().copied()
    }

    /// Gaps between consecutive chunks carrying tokens.
    pub fn inter_token_gaps(&self) -> impl Iterator<Item = Duration> + '_ {
        self.token_chunks
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]))
    }

    /// Whether the request succeeded.
    pub fn ok(&self) -> bool {
        self.error.is_none()
    }
}

/// Builds a [`RequestRecord`] while a request streams.
#[derive(Debug)]
pub struct Recorder {
    start: Instant,
    record: RequestRecord,
}

impl Recorder {
    /// Starts the clock: call right before sending the request.
    pub fn start() -> Self {
        Recorder {
            start: Instant::now(),
            record: RequestRecord::default(),
        }
    }

    /// Notes that a chunk carrying `tokens` tokens (when the protocol says)
    /// arrived now.
    pub fn token_chunk(&mut self, tokens: Option<u64>) {
        self.record.token_chunks.push(self.start.elapsed());
        if let Some(n) = tokens {
            *self.record.streamed_tokens.get_or_insert(0) += n;
        }
    }

    /// Keeps the server's counts (the last ones sent win).
    pub fn usage(&mut self, usage: Usage) {
        self.record.usage = Some(usage);
    }

    /// Ends the request: a failure when `error` is given, or when the
    /// server never sent its counts.
    pub fn finish(mut self, error: Option<RequestError>) -> RequestRecord {
        self.record.e2e = self.start.elapsed();
        self.record.error = error.or_else(|| match self.record.usage {
            Some(_) => None,
            None => Some(RequestError::new(
                "usage_missing",
                "the stream ended without the server's token counts",
            )),
        });
        self.record
    }
}
