//! An in-process `tessera.v1.Generation` server with canned answers, for
//! testing the SDK's plumbing (not the model).
//!
//! The prompt text picks the behaviour:
//! - `"slow"`: answers after [`SLOW`], long past any test deadline;
//! - `"invalid"` / `"exhausted"`: fails with `INVALID_ARGUMENT` /
//!   `RESOURCE_EXHAUSTED`;
//! - `"count:N"` (streams): N chunks `"0"`, `"1"`, …, the last with a finish
//!   reason and usage;
//! - `"stall"` (streams): one chunk, then nothing until [`SLOW`] passes;
//! - `"forever"` (streams): a chunk every 10 ms until the client goes away,
//!   which it reports as [`Event::StreamClosed`] (bounded at 10 s);
//! - anything else: `"echo: <prompt>"`.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tessera_client::proto::generate_request::Prompt;
use tessera_client::proto::generation_server::{Generation, GenerationServer};
use tessera_client::proto::tokenize_request::Input;
use tessera_client::proto::*;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tonic::{Request, Response, Status};

/// Longer than any deadline a test sets, short enough to bound a test.
pub const SLOW: Duration = Duration::from_secs(5);

/// What the server noticed, reported to the test.
#[derive(Debug, PartialEq)]
pub enum Event {
    /// The client dropped a `"forever"` stream; the sender saw it closed.
    StreamClosed,
    /// A `"forever"` stream ran its full course with nobody cancelling.
    StreamNotClosed,
}

/// The metadata of one request, as the server received it.
#[derive(Clone, Debug, Default)]
pub struct Seen {
    pub authorization: Option<String>,
    pub grpc_timeout: Option<String>,
}

/// A running mock server and what it observed.
pub struct Mock {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub events: mpsc::Receiver<Event>,
}

impl Mock {
    /// `http://` URL of the server.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Metadata of the requests so far.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen
            .lock()
            .expect("no test thread panics holding the lock")
            .clone()
    }
}

/// Starts a mock server on 127.0.0.1 with an OS-chosen port; it runs until
/// the test's runtime shuts down.
pub async fn start() -> anyhow::Result<Mock> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (events_tx, events) = mpsc::channel(16);
    let service = MockGeneration {
        seen: Arc::clone(&seen),
        events: events_tx,
    };

    let incoming = TcpListenerStream::new(listener);
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(GenerationServer::new(service))
            .serve_with_incoming(incoming),
    );
    Ok(Mock { addr, seen, events })
}

struct MockGeneration {
    seen: Arc<Mutex<Vec<Seen>>>,
    events: mpsc::Sender<Event>,
}

type ChunkStream = ReceiverStream<Result<GenerateChunk, Status>>;

impl MockGeneration {
    fn record<T>(&self, request: &Request<T>) {
        let get = |key: &str| {
            let value = request.metadata().get(key)?;
            value.to_str().ok().map(str::to_owned)
        };
        let seen = Seen {
            authorization: get("authorization"),
            grpc_timeout: get("grpc-timeout"),
        };
        self.seen
            .lock()
            .expect("no test thread panics holding the lock")
            .push(seen);
    }

    fn stream(&self, prompt: &str) -> Result<ChunkStream, Status> {
        let (tx, rx) = mpsc::channel(1);
        if let Some(n) = prompt.strip_prefix("count:") {
            let n: u32 = n
                .parse()
                .map_err(|_| Status::invalid_argument("bad count"))?;
            tokio::spawn(count(tx, n));
        } else if prompt == "stall" {
            tokio::spawn(stall(tx));
        } else if prompt == "forever" {
            tokio::spawn(forever(tx, self.events.clone()));
        } else {
            return Err(Status::unimplemented("no such canned stream"));
        }
        Ok(ReceiverStream::new(rx))
    }
}

fn chunk(text: String, index: u32) -> GenerateChunk {
    GenerateChunk {
        token_ids: vec![index],
        text,
        ..Default::default()
    }
}

async fn count(tx: mpsc::Sender<Result<GenerateChunk, Status>>, n: u32) {
    for i in 0..n {
        let mut chunk = chunk(i.to_string(), i);
        if i + 1 == n {
            chunk.finish_reason = FinishReason::Length.into();
            chunk.usage = Some(Usage {
                prompt_tokens: 1,
                completion_tokens: n,
            });
        }
        if tx.send(Ok(chunk)).await.is_err() {
            return;
        }
    }
}

async fn stall(tx: mpsc::Sender<Result<GenerateChunk, Status>>) {
    if tx.send(Ok(chunk("first".into(), 0))).await.is_ok() {
        tokio::time::sleep(SLOW).await;
    }
}

async fn forever(tx: mpsc::Sender<Result<GenerateChunk, Status>>, events: mpsc::Sender<Event>) {
    for i in 0..1000 {
        if tx.send(Ok(chunk(".".into(), i))).await.is_err() {
            let _ = events.send(Event::StreamClosed).await;
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _ = events.send(Event::StreamNotClosed).await;
}

fn prompt_text(request: &GenerateRequest) -> Result<&str, Status> {
    match &request.prompt {
        Some(Prompt::Text(text)) => Ok(text),
        _ => Err(Status::invalid_argument("the mock takes text prompts only")),
    }
}

fn last_message(request: &ChatRequest) -> Result<&str, Status> {
    let last = request.messages.last();
    last.map(|m| m.content.as_str())
        .ok_or_else(|| Status::invalid_argument("messages must not be empty"))
}

async fn answer(prompt: &str) -> Result<GenerateResponse, Status> {
    match prompt {
        "slow" => tokio::time::sleep(SLOW).await,
        "invalid" => return Err(Status::invalid_argument("temperature must be in [0, 100]")),
        "exhausted" => return Err(Status::resource_exhausted("the queue is full")),
        _ => {}
    }
    Ok(GenerateResponse {
        text: format!("echo: {prompt}"),
        token_ids: vec![1, 2, 3],
        finish_reason: FinishReason::Eos.into(),
        usage: Some(Usage {
            prompt_tokens: 4,
            completion_tokens: 3,
        }),
        ..Default::default()
    })
}

#[tonic::async_trait]
impl Generation for MockGeneration {
    async fn generate(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        self.record(&request);
        answer(prompt_text(request.get_ref())?)
            .await
            .map(Response::new)
    }

    type GenerateStreamStream = ChunkStream;

    async fn generate_stream(
        &self,
        request: Request<GenerateRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.record(&request);
        self.stream(prompt_text(request.get_ref())?)
            .map(Response::new)
    }

    async fn chat(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<Response<GenerateResponse>, Status> {
        self.record(&request);
        answer(last_message(request.get_ref())?)
            .await
            .map(Response::new)
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<ChatRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        self.record(&request);
        self.stream(last_message(request.get_ref())?)
            .map(Response::new)
    }

    async fn tokenize(
        &self,
        request: Request<TokenizeRequest>,
    ) -> Result<Response<TokenizeResponse>, Status> {
        self.record(&request);
        let text = match &request.get_ref().input {
            Some(Input::Text(text)) => text.clone(),
            Some(Input::Chat(chat)) => chat.messages.iter().map(|m| m.content.as_str()).collect(),
            None => return Err(Status::invalid_argument("input is required")),
        };
        let token_ids = text.bytes().map(u32::from).collect();
        Ok(Response::new(TokenizeResponse { token_ids }))
    }

    async fn model_info(
        &self,
        request: Request<ModelInfoRequest>,
    ) -> Result<Response<ModelInfoResponse>, Status> {
        self.record(&request);
        Ok(Response::new(ModelInfoResponse {
            model: "mock-model".into(),
            world_size: 2,
            eos_token_ids: vec![2],
            ..Default::default()
        }))
    }
}
