//! A typed async client for Tessera's public gRPC API, `tessera.v1.Generation`.
//!
//! [`Client`] connects to a coordinator and offers one method per RPC:
//! [`generate`](Client::generate), [`generate_stream`](Client::generate_stream),
//! [`chat`](Client::chat), [`chat_stream`](Client::chat_stream),
//! [`tokenize`](Client::tokenize) and [`model_info`](Client::model_info). The
//! methods take the prost request types of [`proto`]; the [`request`] module
//! builds them. Every failure is a [`ClientError`]; a server's answer keeps
//! its gRPC [`Code`] so callers can tell `INVALID_ARGUMENT` from
//! `RESOURCE_EXHAUSTED` or `UNAVAILABLE`.
//!
//! ```no_run
//! use std::time::Duration;
//! use tessera_client::{request, Client, Code};
//!
//! # async fn demo() -> Result<(), tessera_client::ClientError> {
//! let client = Client::builder()
//!     .timeout(Duration::from_secs(30))
//!     .api_key("my-key")
//!     .connect("127.0.0.1:50051")
//!     .await?;
//!
//! // The whole completion at once.
//! let req = request::text("The capital of France is").max_new_tokens(8).temperature(0.0);
//! let response = client.generate(req).await?;
//! println!("{} ({:?})", response.text, response.finish_reason());
//!
//! // Chunk by chunk; dropping `stream` early cancels the generation.
//! let req = request::chat([request::user("Write a haiku.")]).max_new_tokens(64);
//! let mut stream = client.chat_stream(req).await?;
//! while let Some(chunk) = stream.next_chunk().await? {
//!     print!("{}", chunk.text);
//! }
//!
//! // Errors keep their gRPC code.
//! if let Err(err) = client.generate(request::text("Hi").temperature(-1.0)).await {
//!     if err.code() == Some(Code::InvalidArgument) {
//!         eprintln!("fix the request: {err}");
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Connections are plain HTTP/2 (`http://`); TLS arrives with the server's
//! TLS support and will be a [`ClientBuilder`] option.

mod client;
mod error;
pub mod request;
mod stream;

pub use client::{Client, ClientBuilder, DEFAULT_CONNECT_TIMEOUT};
pub use error::ClientError;
pub use stream::GenerationStream;

/// The generated messages of `tessera.v1`, which the client's methods take
/// and return.
pub use tessera_proto::v1 as proto;
pub use tessera_proto::v1::{
    ChatMessage, ChatRequest, FinishReason, GenerateChunk, GenerateRequest, GenerateResponse,
    ModelInfoResponse, TokenizeRequest, TokenizeResponse, Usage,
};
/// gRPC status codes, as found in [`ClientError::Status`].
pub use tonic::Code;
