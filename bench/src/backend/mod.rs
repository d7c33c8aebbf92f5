//! Sending one streamed request to a target, whatever its protocol.
//!
//! [`Backend::connect`] checks the target before any load is sent: it must
//! be reachable, speak the protocol its scheme names, and accept a first
//! request, or the run stops with a sentence saying which. During the run,
//! [`Backend::send`] never fails: a failed request is a
//! [`RequestRecord`] whose error says what went wrong.

mod grpc;
mod openai;

use std::error::Error as StdError;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::record::{Recorder, RequestError, RequestRecord};
use crate::target::{Protocol, Target};
use crate::workload::RequestSpec;
use crate::BenchError;

pub use grpc::GrpcBackend;
pub use openai::OpenaiBackend;

/// How requests are sent, the same for every target of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct BackendOptions {
    /// Sent as `authorization: Bearer <key>` when given.
    pub api_key: Option<String>,
    /// The model name OpenAI-compatible servers are asked for; the first one
    /// `GET /v1/models` lists when `None`. Tessera serves one model and
    /// ignores it.
    pub model: Option<String>,
    /// Sampling temperature; 0 is greedy.
    pub temperature: f32,
    /// Ask the server to generate past end-of-sequence tokens, so that every
    /// request generates exactly its `max_tokens`.
    pub ignore_eos: bool,
    /// How long to wait for a connection.
    pub connect_timeout: Duration,
    /// How long one request may take from sending to its last chunk.
    pub request_timeout: Duration,
}

/// What the target says it serves, as written into the results.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum ModelDescription {
    /// Tessera's `ModelInfo` answer.
    Tessera(TesseraModel),
    /// An OpenAI-compatible server's model.
    Openai {
        /// The model name requests are sent with.
        model: String,
        /// The server's `GET /v1/models` answer, when it has one.
        listing: Option<serde_json::Value>,
    },
}

impl ModelDescription {
    /// The model's name.
    pub fn name(&self) -> &str {
        match self {
            ModelDescription::Tessera(info) => &info.model,
            ModelDescription::Openai { model, .. } => model,
        }
    }
}

/// The fields of `tessera.v1.ModelInfoResponse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TesseraModel {
    /// The model's name, from its files.
    pub model: String,
    /// Its architecture, e.g. `llama`.
    pub architecture: String,
    /// Tokens in its vocabulary.
    pub vocab_size: u32,
    /// Longest prompt plus completion, in tokens.
    pub max_seq_len: u32,
    /// Transformer layers.
    pub num_layers: u32,
    /// Width of the hidden state.
    pub hidden_size: u32,
    /// Tensor-parallel degree: shards serving the model.
    pub world_size: u32,
    /// Tokens that end a sequence.
    pub eos_token_ids: Vec<u32>,
    /// Whether the model has a chat template.
    pub has_chat_template: bool,
    /// The server's version.
    pub server_version: String,
}

/// A connection to one target.
#[derive(Clone, Debug)]
pub enum Backend {
    /// A Tessera coordinator.
    Grpc(GrpcBackend),
    /// An OpenAI-compatible server.
    Openai(OpenaiBackend),
}

impl Backend {
    /// Connects to `target` and checks that it answers its protocol.
    pub async fn connect(
        target: &Target,
        options: &BackendOptions,
    ) -> Result<(Backend, ModelDescription), BenchError> {
        match target.protocol {
            Protocol::Grpc => {
                let (backend, model) = GrpcBackend::connect(target, options).await?;
                Ok((Backend::Grpc(backend), model))
            }
            Protocol::Openai => {
                let (backend, model) = OpenaiBackend::connect(target, options).await?;
                Ok((Backend::Openai(backend), model))
            }
        }
    }

    /// Sends one request and records how it went.
    pub async fn send(&self, spec: &RequestSpec) -> RequestRecord {
        let mut recorder = Recorder::start();
        let timeout = self.request_timeout();
        let streamed = match self {
            Backend::Grpc(b) => tokio::time::timeout(timeout, b.stream(spec, &mut recorder)).await,
            Backend::Openai(b) => {
                tokio::time::timeout(timeout, b.stream(spec, &mut recorder)).await
            }
        };
        let error = match streamed {
            Ok(Ok(())) => None,
            Ok(Err(error)) => Some(error),
            Err(_) => Some(RequestError::new(
                "timeout",
                format!("no end of stream within {} s", timeout.as_secs_f64()),
            )),
        };
        recorder.finish(error)
    }

    fn request_timeout(&self) -> Duration {
        match self {
            Backend::Grpc(b) => b.request_timeout,
            Backend::Openai(b) => b.request_timeout,
        }
    }
}

/// Why a connection failed, in a few words: the operating system's reason
/// when there is one ("connection refused"), else the whole error chain.
fn connect_reason(err: &(dyn StdError + 'static)) -> String {
    let mut source = Some(err);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return match io.kind() {
                std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
                std::io::ErrorKind::TimedOut => "connection timed out".to_owned(),
                _ => io.to_string(),
            };
        }
        source = e.source();
    }
    error_chain(err)
}

/// An error and its sources, joined with ": ", skipping repeats.
fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut source = Some(err);
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

/// At most 200 characters of a server's answer, on one line, for messages.
fn snippet(text: &str) -> String {
    let line: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match line.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", &line[..cut]),
        None => line,
    }
}
