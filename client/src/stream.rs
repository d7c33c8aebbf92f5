//! [`GenerationStream`]: the chunks of a streamed completion.
//!
//! Dropping the stream drops the underlying HTTP/2 stream, which resets it
//! (`RST_STREAM` with `CANCEL`); the server sees the call cancelled and can
//! stop generating and free the request's KV cache. The call's deadline, when
//! the client has one, covers the whole stream: once it passes, the stream
//! yields one `DEADLINE_EXCEEDED` error, cancels the call and ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tessera_proto::v1::{GenerateChunk, GenerateResponse};
use tokio::time::Sleep;
use tokio_stream::{Stream, StreamExt};

use crate::ClientError;

/// A call's deadline: when it passes, and the timeout it came from (for the
/// error message).
pub(crate) struct Deadline {
    pub(crate) sleep: Pin<Box<Sleep>>,
    pub(crate) timeout: Duration,
}

/// The chunks of a `GenerateStream` or `ChatStream` call, in the order the
/// server sent them.
///
/// Implements [`Stream`]; [`next_chunk`](Self::next_chunk) and
/// [`collect_response`](Self::collect_response) cover the common loops.
/// Dropping it cancels the call on the server.
#[must_use = "dropping the stream cancels the call"]
pub struct GenerationStream {
    /// `None` once the stream has ended, failed or passed its deadline.
    inner: Option<tonic::Streaming<GenerateChunk>>,
    deadline: Option<Deadline>,
}

impl GenerationStream {
    pub(crate) fn new(inner: tonic::Streaming<GenerateChunk>, deadline: Option<Deadline>) -> Self {
        GenerationStream {
            inner: Some(inner),
            deadline,
        }
    }

    /// The next chunk, or `None` once the server has finished the stream.
    pub async fn next_chunk(&mut self) -> Result<Option<GenerateChunk>, ClientError> {
        self.next().await.transpose()
    }

    /// Reads the stream to its end and joins the chunks into the response
    /// the unary call would have given: texts and token ids concatenated,
    /// the last finish reason and usage kept.
    pub async fn collect_response(mut self) -> Result<GenerateResponse, ClientError> {
        let mut response = GenerateResponse::default();
        while let Some(chunk) = self.next_chunk().await? {
            response.text.push_str(&chunk.text);
            response.token_ids.extend(chunk.token_ids);
            response.logprobs.extend(chunk.logprobs);
            if chunk.finish_reason != 0 {
                response.finish_reason = chunk.finish_reason;
            }
            if chunk.usage.is_some() {
                response.usage = chunk.usage;
            }
        }
        Ok(response)
    }

    /// Ends the stream: drops the call (cancelling it if still running).
    fn finish(&mut self) {
        self.inner = None;
        self.deadline = None;
    }

    /// Whether the deadline has passed; registers a wake-up if not.
    fn deadline_passed(&mut self, cx: &mut Context<'_>) -> Option<Duration> {
        let deadline = self.deadline.as_mut()?;
        match deadline.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Some(deadline.timeout),
            Poll::Pending => None,
        }
    }
}

impl Stream for GenerationStream {
    type Item = Result<GenerateChunk, ClientError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let timeout = this.deadline.as_ref().map(|d| d.timeout);

        if let Poll::Ready(item) = Pin::new(inner).poll_next(cx) {
            return Poll::Ready(match item {
                Some(Ok(chunk)) => Some(Ok(chunk)),
                Some(Err(status)) => {
                    this.finish();
                    Some(Err(ClientError::from_status(status, timeout)))
                }
                None => {
                    this.finish();
                    None
                }
            });
        }

        match this.deadline_passed(cx) {
            Some(timeout) => {
                this.finish();
                Poll::Ready(Some(Err(ClientError::deadline_exceeded(timeout))))
            }
            None => Poll::Pending,
        }
    }
}

impl std::fmt::Debug for GenerationStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GenerationStream")
            .field("open", &self.inner.is_some())
            .field("timeout", &self.deadline.as_ref().map(|d| d.timeout))
            .finish()
    }
}
