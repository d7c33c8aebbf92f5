//! OpenAI-compatible servers: `POST /v1/completions` with `stream: true`.
//!
//! Each request asks for usage in the stream (`stream_options.include_usage`)
//! and for `ignore_eos` (which vLLM and llama.cpp's server accept) unless
//! told not to. Token counts come only from the usage the server sends; a
//! stream without it is a failed request of kind `usage_missing`, never a
//! count of chunks. A chunk with non-empty `choices[].text` carries tokens.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;
use reqwest::{RequestBuilder, Response, StatusCode};
use serde_json::{json, Value};

use super::{connect_reason, error_chain, snippet, BackendOptions, ModelDescription};
use crate::record::{Recorder, RequestError, Usage};
use crate::sse::SseParser;
use crate::target::Target;
use crate::workload::RequestSpec;
use crate::BenchError;

/// What an HTTP target is expected to be, for messages.
const EXPECTED: &str = "an OpenAI-compatible HTTP server";

/// The prompt of the probe request.
const PROBE_PROMPT: &str = "Hello";

/// A connection pool to an OpenAI-compatible server.
#[derive(Clone, Debug)]
pub struct OpenaiBackend {
    http: reqwest::Client,
    /// `{base}/v1/completions`.
    completions_url: String,
    model: String,
    api_key: Option<String>,
    temperature: f32,
    ignore_eos: bool,
    pub(super) request_timeout: Duration,
}

impl OpenaiBackend {
    /// Lists the server's models, picks one, and sends a one-token probe.
    pub async fn connect(
        target: &Target,
        options: &BackendOptions,
    ) -> Result<(OpenaiBackend, ModelDescription), BenchError> {
        // Loopback and cluster-internal targets: no proxy from the environment.
        let http = reqwest::Client::builder()
            .connect_timeout(options.connect_timeout)
            .no_proxy()
            .build()
            .map_err(|err| BenchError::ProbeFailed {
                target: target.url.clone(),
                detail: format!("cannot build an HTTP client: {}", error_chain(&err)),
            })?;
        let listing = list_models(&http, target, options).await?;
        let model = match (&options.model, &listing) {
            (Some(model), _) => model.clone(),
            (None, listing) => {
                first_model(listing.as_ref()).ok_or_else(|| BenchError::NoModel {
                    target: target.url.clone(),
                })?
            }
        };

        let backend = OpenaiBackend {
            http,
            completions_url: format!("{}/v1/completions", target.base),
            model: model.clone(),
            api_key: options.api_key.clone(),
            temperature: options.temperature,
            ignore_eos: options.ignore_eos,
            request_timeout: options.request_timeout,
        };
        backend.probe(target, options.request_timeout).await?;
        Ok((backend, ModelDescription::Openai { model, listing }))
    }

    /// Sends a one-token completion and checks the answer is an event
    /// stream of completion chunks with usage.
    async fn probe(&self, target: &Target, timeout: Duration) -> Result<(), BenchError> {
        let spec = RequestSpec {
            prompt: PROBE_PROMPT.to_owned(),
            max_tokens: 1,
        };
        let mut recorder = Recorder::start();
        let error = match tokio::time::timeout(timeout, self.stream(&spec, &mut recorder)).await {
            Ok(result) => recorder.finish(result.err()).error,
            Err(_) => Some(RequestError::new("timeout", "no answer in time")),
        };
        let Some(error) = error else {
            return Ok(());
        };

        let url = target.url.clone();
        Err(match error.kind.as_str() {
            "connect" => BenchError::Unreachable {
                target: url,
                reason: error.message,
            },
            "protocol" | "transport" => BenchError::WrongProtocol {
                target: url,
                expected: EXPECTED,
                detail: format!("POST /v1/completions: {}", error.message),
            },
            "usage_missing" => BenchError::ProbeFailed {
                target: url,
                detail: "its stream carries no usage figures (stream_options.include_usage); \
                         tessera-bench takes token counts only from the server"
                    .to_owned(),
            },
            _ => BenchError::ProbeFailed {
                target: url,
                detail: format!(
                    "POST /v1/completions failed ({}): {}",
                    error.kind, error.message
                ),
            },
        })
    }

    /// Streams one completion into `recorder`.
    pub(super) async fn stream(
        &self,
        spec: &RequestSpec,
        recorder: &mut Recorder,
    ) -> Result<(), RequestError> {
        let mut body = json!({
            "model": self.model,
            "prompt": spec.prompt,
            "max_tokens": spec.max_tokens,
            "temperature": self.temperature,
            "stream": true,
            "stream_options": {"include_usage": true},
        });
        if self.ignore_eos {
            body["ignore_eos"] = Value::Bool(true);
        }
        let request = authorize(
            self.http.post(&self.completions_url),
            self.api_key.as_deref(),
        );
        let mut response = request.json(&body).send().await.map_err(send_error)?;
        check_event_stream(&mut response).await?;

        let mut parser = SseParser::new();
        let mut done = false;
        while let Some(bytes) = response.chunk().await.map_err(read_error)? {
            let events = parser.push(&bytes).map_err(|e| protocol(e.to_string()))?;
            for data in events {
                if data == "[DONE]" {
                    done = true;
                } else if !done {
                    handle_event(&data, recorder)?;
                }
            }
        }
        if !done {
            return Err(protocol("the stream ended before `data: [DONE]`"));
        }
        Ok(())
    }
}

/// `GET /v1/models`: `None` when the server has no such endpoint.
async fn list_models(
    http: &reqwest::Client,
    target: &Target,
    options: &BackendOptions,
) -> Result<Option<Value>, BenchError> {
    let url = format!("{}/v1/models", target.base);
    let request = authorize(http.get(&url), options.api_key.as_deref());
    let response = request
        .timeout(options.connect_timeout)
        .send()
        .await
        .map_err(|err| {
            if err.is_connect() || err.is_timeout() {
                BenchError::Unreachable {
                    target: target.url.clone(),
                    reason: connect_reason(&err),
                }
            } else {
                BenchError::WrongProtocol {
                    target: target.url.clone(),
                    expected: EXPECTED,
                    detail: format!(
                    "GET /v1/models got no HTTP/1.1 answer ({}); for a Tessera server use grpc://",
                    error_chain(&err)
                ),
                }
            }
        })?;

    let status = response.status();
    let content_type = content_type(&response);
    let text = response.text().await.unwrap_or_default();
    let wrong = |detail: String| BenchError::WrongProtocol {
        target: target.url.clone(),
        expected: EXPECTED,
        detail,
    };
    if content_type.contains("html") {
        return Err(wrong(format!(
            "GET /v1/models answered {status} with an HTML page"
        )));
    }
    // Some servers have no model list; the probe request still checks them.
    if matches!(
        status,
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED
    ) {
        return Ok(None);
    }
    if !status.is_success() {
        return Err(BenchError::ProbeFailed {
            target: target.url.clone(),
            detail: format!("GET /v1/models answered {status}: {}", snippet(&text)),
        });
    }

    if !content_type.contains("json") {
        return Err(wrong(format!(
            "GET /v1/models answered {content_type:?}, not JSON: {}",
            snippet(&text)
        )));
    }
    let listing: Value = serde_json::from_str(&text)
        .map_err(|e| wrong(format!("GET /v1/models answered invalid JSON: {e}")))?;
    if !listing.get("data").is_some_and(Value::is_array) {
        return Err(wrong(
            "GET /v1/models answered JSON without a `data` list".to_owned(),
        ));
    }
    Ok(Some(listing))
}

/// The id of the first model a `/v1/models` answer lists.
fn first_model(listing: Option<&Value>) -> Option<String> {
    let models = listing?.get("data")?.as_array()?;
    let id = models.first()?.get("id")?.as_str()?;
    Some(id.to_owned())
}

/// Adds `authorization: Bearer <key>` when there is a key.
fn authorize(request: RequestBuilder, api_key: Option<&str>) -> RequestBuilder {
    match api_key {
        Some(key) => request.bearer_auth(key),
        None => request,
    }
}

/// The response's content type, lower-cased; empty when absent.
fn content_type(response: &Response) -> String {
    let value = response.headers().get(CONTENT_TYPE);
    let text = value.and_then(|v| v.to_str().ok()).unwrap_or_default();
    text.to_ascii_lowercase()
}

/// Fails unless the response is `200` with `text/event-stream`.
async fn check_event_stream(response: &mut Response) -> Result<(), RequestError> {
    let status = response.status();
    if !status.is_success() {
        let mut body = Vec::new();
        while let Ok(Some(bytes)) = response.chunk().await {
            body.extend_from_slice(&bytes);
            if body.len() > 4096 {
                break;
            }
        }
        let text = String::from_utf8_lossy(&body);
        return Err(RequestError::new(
            format!("http:{}", status.as_u16()),
            format!("{status}: {}", snippet(&text)),
        ));
    }
    let content_type = content_type(response);
    if !content_type.starts_with("text/event-stream") {
        return Err(protocol(format!(
            "expected a text/event-stream answer, got {content_type:?}"
        )));
    }
    Ok(())
}

/// Reads one event: tokens, usage, or an error the server reports.
fn handle_event(data: &str, recorder: &mut Recorder) -> Result<(), RequestError> {
    let event: Value =
        serde_json::from_str(data).map_err(|e| protocol(format!("an event is not JSON: {e}")))?;
    if let Some(error) = event.get("error").filter(|e| !e.is_null()) {
        let message = error
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_owned);
        return Err(RequestError::new(
            "server_error",
            message.unwrap_or_else(|| error.to_string()),
        ));
    }

    let choices = event.get("choices").and_then(Value::as_array);
    let usage = event.get("usage").filter(|u| !u.is_null());
    if choices.is_none() && usage.is_none() {
        return Err(protocol("an event has neither `choices` nor `usage`"));
    }
    let has_text = choices.into_iter().flatten().any(|choice| {
        choice
            .get("text")
            .and_then(Value::as_str)
            .is_some_and(|t| !t.is_empty())
    });
    if has_text {
        recorder.token_chunk(None);
    }
    if let Some(usage) = usage {
        recorder.usage(parse_usage(usage)?);
    }
    Ok(())
}

/// The counts of a `usage` object.
fn parse_usage(usage: &Value) -> Result<Usage, RequestError> {
    let count = |name: &str| {
        usage
            .get(name)
            .and_then(Value::as_u64)
            .ok_or_else(|| protocol(format!("the usage object has no whole number `{name}`")))
    };
    Ok(Usage {
        prompt_tokens: count("prompt_tokens")?,
        completion_tokens: count("completion_tokens")?,
    })
}

/// The kind of a request that could not be sent or got no answer.
fn send_error(err: reqwest::Error) -> RequestError {
    if err.is_connect() {
        RequestError::new("connect", connect_reason(&err))
    } else if err.is_timeout() {
        RequestError::new("timeout", error_chain(&err))
    } else {
        RequestError::new("transport", error_chain(&err))
    }
}

/// The kind of a stream that broke while being read.
fn read_error(err: reqwest::Error) -> RequestError {
    RequestError::new("transport", error_chain(&err))
}

/// A protocol error with `message`.
fn protocol(message: impl Into<String>) -> RequestError {
    RequestError::new("protocol", message)
}
