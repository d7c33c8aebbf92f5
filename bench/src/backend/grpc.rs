//! Tessera's gRPC API through the `tessera-client` SDK.
//!
//! All requests share one HTTP/2 connection, as the SDK's clones do. The
//! connection check is a `ModelInfo` call, whose answer goes into the
//! results.

use std::time::Duration;

use tessera_client::{request, Client, ClientError, Code, FinishReason, ModelInfoResponse};

use super::{connect_reason, BackendOptions, ModelDescription, TesseraModel};
use crate::record::{Recorder, RequestError, Usage};
use crate::target::Target;
use crate::workload::RequestSpec;
use crate::BenchError;

/// What a Tessera target is expected to be, for messages.
const EXPECTED: &str = "a Tessera gRPC server (tessera.v1.Generation)";

/// A connection to a Tessera coordinator.
#[derive(Clone, Debug)]
pub struct GrpcBackend {
    client: Client,
    temperature: f32,
    ignore_eos: bool,
    pub(super) request_timeout: Duration,
}

impl GrpcBackend {
    /// Connects and asks the server for its model.
    pub async fn connect(
        target: &Target,
        options: &BackendOptions,
    ) -> Result<(GrpcBackend, ModelDescription), BenchError> {
        let mut builder = Client::builder().connect_timeout(options.connect_timeout);
        if let Some(key) = &options.api_key {
            builder = builder.api_key(key.clone());
        }
        let client = builder
            .connect(&target.base)
            .await
            .map_err(|err| connect_error(target, err))?;

        let info = client
            .with_timeout(Some(options.connect_timeout))
            .model_info()
            .await
            .map_err(|err| probe_error(target, err))?;
        let backend = GrpcBackend {
            client,
            temperature: options.temperature,
            ignore_eos: options.ignore_eos,
            request_timeout: options.request_timeout,
        };
        Ok((backend, ModelDescription::Tessera(model_of(info))))
    }

    /// Streams one completion into `recorder`.
    pub(super) async fn stream(
        &self,
        spec: &RequestSpec,
        recorder: &mut Recorder,
    ) -> Result<(), RequestError> {
        let req = request::text(spec.prompt.clone())
            .max_new_tokens(spec.max_tokens)
            .temperature(self.temperature)
            .ignore_eos(self.ignore_eos);
        let mut stream = self
            .client
            .generate_stream(req)
            .await
            .map_err(request_error)?;

        while let Some(chunk) = stream.next_chunk().await.map_err(request_error)? {
            if !chunk.token_ids.is_empty() {
                recorder.token_chunk(Some(chunk.token_ids.len() as u64));
            }
            if let Some(usage) = chunk.usage {
                recorder.usage(Usage {
                    prompt_tokens: u64::from(usage.prompt_tokens),
                    completion_tokens: u64::from(usage.completion_tokens),
                });
            }
            if chunk.finish_reason() == FinishReason::Error {
                return Err(RequestError::new(
                    "finish_error",
                    "the server ended the stream with finish reason ERROR",
                ));
            }
        }
        Ok(())
    }
}

/// The results' copy of a `ModelInfo` answer.
fn model_of(info: ModelInfoResponse) -> TesseraModel {
    TesseraModel {
        model: info.model,
        architecture: info.architecture,
        vocab_size: info.vocab_size,
        max_seq_len: info.max_seq_len,
        num_layers: info.num_layers,
        hidden_size: info.hidden_size,
        world_size: info.world_size,
        eos_token_ids: info.eos_token_ids,
        has_chat_template: info.has_chat_template,
        server_version: info.server_version,
    }
}

/// The error of a failed connection.
fn connect_error(target: &Target, err: ClientError) -> BenchError {
    match err {
        ClientError::InvalidAddress { reason, .. } => BenchError::InvalidSpec {
            what: "target",
            value: target.url.clone(),
            reason,
        },
        ClientError::InvalidApiKey => BenchError::InvalidSpec {
            what: "API key",
            value: "<redacted>".to_owned(),
            reason: "it must be visible ASCII to be sent as gRPC metadata".to_owned(),
        },
        ClientError::Connect { source, .. } => BenchError::Unreachable {
            target: target.url.clone(),
            reason: connect_reason(&source),
        },
        other => BenchError::Unreachable {
            target: target.url.clone(),
            reason: other.to_string(),
        },
    }
}

/// The error of a failed `ModelInfo` call: a server that is not gRPC, or not
/// Tessera, or one that refuses us.
fn probe_error(target: &Target, err: ClientError) -> BenchError {
    let Some(code) = err.code() else {
        return connect_error(target, err);
    };
    let message = match &err {
        ClientError::Status { message, .. } => message.clone(),
        other => other.to_string(),
    };
    let wrong = |detail: String| BenchError::WrongProtocol {
        target: target.url.clone(),
        expected: EXPECTED,
        detail,
    };
    match code {
        Code::Unimplemented => wrong(format!(
            "it has no tessera.v1.Generation/ModelInfo method (UNIMPLEMENTED: {message})"
        )),
        // What tonic reports when the peer answers something that is not
        // HTTP/2 gRPC: an HTTP/1 reply, HTML, a closed connection.
        Code::Unknown | Code::Internal | Code::Unavailable if is_transport_failure(&message) => {
            wrong(format!(
                "{} ({message}); an HTTP/1 server or a closed connection answers this way",
                code_name(code)
            ))
        }
        _ => BenchError::ProbeFailed {
            target: target.url.clone(),
            detail: format!("ModelInfo answered {}: {message}", code_name(code)),
        },
    }
}

/// Whether a status message comes from the transport rather than a server:
/// what tonic reports when the peer's bytes are not HTTP/2 gRPC.
fn is_transport_failure(message: &str) -> bool {
    let message = message.to_ascii_lowercase();
    [
        "h2 protocol error",
        "http2 error",
        "transport error",
        "protocol error",
        "content-type",
    ]
    .iter()
    .any(|needle| message.contains(needle))
}

/// The result kind of a failed request: `grpc:CODE`, or `connect`.
fn request_error(err: ClientError) -> RequestError {
    let kind = match err.code() {
        Some(code) => format!("grpc:{}", code_name(code)),
        None if matches!(err, ClientError::Connect { .. }) => "connect".to_owned(),
        None => err.label().to_owned(),
    };
    RequestError::new(kind, err.to_string())
}

/// The name gRPC gives a status code, e.g. `RESOURCE_EXHAUSTED`.
pub fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}
