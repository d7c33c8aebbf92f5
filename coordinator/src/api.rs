//! The public `tessera.v1.Generation` service: validates requests, renders
//! chats, hands work to the scheduler and turns its events into responses.
//!
//! Nothing here logs prompt or completion text.

use std::pin::Pin;
use std::sync::Arc;

use futures::Stream;
use tessera_formats::{ChatMessage, ChatTemplate, ModelConfig, Tokenizer};
use tessera_proto::v1 as pb;
use tessera_proto::v1::generation_server::Generation;
use tokio::sync::mpsc;
use tonic::{Request, Response, Status};

use crate::error::{invalid, ServeError};
use crate::request::{self, GenRequest, Limits};
use crate::scheduler::{Event, SchedulerHandle};

/// What the service knows about the model it serves.
pub struct ModelMeta {
    pub name: String,
    pub config: ModelConfig,
    pub tokenizer: Arc<Tokenizer>,
    pub chat_template: Option<ChatTemplate>,
    pub world_size: usize,
    /// Special-token texts (`<|im_end|>`, …) that chat messages may not
    /// contain: they would tokenize to real control tokens and let a message
    /// forge turns of the conversation.
    pub control_texts: Vec<String>,
}

/// The public API, backed by the scheduler.
pub struct GenerationService {
    meta: Arc<ModelMeta>,
    scheduler: SchedulerHandle,
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<pb::GenerateChunk, Status>> + Send>>;

impl GenerationService {
    pub fn new(meta: Arc<ModelMeta>, scheduler: SchedulerHandle) -> Self {
        Self { meta, scheduler }
    }

    fn limits(&self) -> Limits {
        Limits {
            vocab_size: self.meta.config.vocab_size,
            context: self.meta.config.max_seq_len,
        }
    }

    /// Tokenizes `text`. A multi-megabyte prompt takes a while, so the
    /// runtime moves its other tasks off this thread meanwhile.
    fn encode(&self, text: &str, add_special: bool) -> Result<Vec<u32>, ServeError> {
        tokio::task::block_in_place(|| self.meta.tokenizer.encode(text, add_special))
            .map_err(|e| invalid(format!("cannot tokenize the prompt: {e}")))
    }

    fn prompt(&self, prompt: Option<pb::generate_request::Prompt>) -> Result<Vec<u32>, ServeError> {
        match prompt {
            Some(pb::generate_request::Prompt::Text(text)) => self.encode(&text, true),
            Some(pb::generate_request::Prompt::TokenIds(ids)) => Ok(ids.ids),
            None => Err(invalid(
                "the request has no prompt; set `text` or `token_ids`",
            )),
        }
    }

    fn chat_prompt(&self, messages: Vec<pb::ChatMessage>) -> Result<Vec<u32>, ServeError> {
        let template = self.meta.chat_template.as_ref().ok_or_else(|| {
            ServeError::FailedPrecondition(
                "this model ships no chat template; use Generate with raw text".into(),
            )
        })?;
        if messages.is_empty() {
            return Err(invalid(
                "the conversation is empty; send at least one message",
            ));
        }
        let mut turns = Vec::with_capacity(messages.len());
        for m in messages {
            if let Some(t) = self
                .meta
                .control_texts
                .iter()
                .find(|t| m.content.contains(t.as_str()))
            {
                return Err(invalid(format!(
                    "a {} message contains the model's control token {t:?}, which would forge a turn of the conversation; remove it",
                    m.role
                )));
            }
            if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
                return Err(invalid(format!(
                    "message role must be system, user or assistant, got {:?}",
                    m.role
                )));
            }
            turns.push(ChatMessage {
                role: m.role,
                content: m.content,
            });
        }
        let text = template
            .render(&turns, true)
            .map_err(|e| invalid(format!("the chat template refused the conversation: {e}")))?;
        self.encode(&text, false)
    }

    fn submit(&self, req: GenRequest) -> Result<mpsc::Receiver<Event>, Status> {
        Ok(self.scheduler.submit(req)?)
    }

    fn generate_request(&self, r: pb::GenerateRequest) -> Result<GenRequest, ServeError> {
        let prompt = self.prompt(r.prompt)?;
        request::build(prompt, r.sampling, r.stopping, r.logprobs, self.limits())
    }

    fn chat_request(&self, r: pb::ChatRequest) -> Result<GenRequest, ServeError> {
        let prompt = self.chat_prompt(r.messages)?;
        request::build(prompt, r.sampling, r.stopping, r.logprobs, self.limits())
    }
}

/// Collects a request's events into one response.
async fn collect(mut events: mpsc::Receiver<Event>) -> Result<pb::GenerateResponse, Status> {
    let mut out = pb::GenerateResponse::default();
    while let Some(event) = events.recv().await {
        match event {
            Event::Chunk {
                token_ids,
                text,
                logprobs,
            } => {
                out.token_ids.extend(token_ids);
                out.text.push_str(&text);
                out.logprobs.extend(logprobs);
            }
            Event::Done {
                finish_reason,
                usage,
            } => {
                out.finish_reason = finish_reason as i32;
                out.usage = Some(usage);
                return Ok(out);
            }
            Event::Failed(e) => return Err(e.into()),
        }
    }
    Err(ServeError::ShuttingDown.into())
}

/// Turns a request's events into a stream of chunks; dropping the stream
/// (client gone) drops the receiver, which cancels the request.
fn stream(mut events: mpsc::Receiver<Event>) -> ChunkStream {
    Box::pin(async_stream::stream! {
        while let Some(event) = events.recv().await {
            match event {
                Event::Chunk { token_ids, text, logprobs } => {
                    yield Ok(pb::GenerateChunk { token_ids, text, logprobs, ..Default::default() });
                }
                Event::Done { finish_reason, usage } => {
                    yield Ok(pb::GenerateChunk { finish_reason: finish_reason as i32, usage: Some(usage), ..Default::default() });
                    return;
                }
                Event::Failed(e) => {
                    yield Err(Status::from(e));
                    return;
                }
            }
        }
        yield Err(Status::from(ServeError::ShuttingDown));
    })
}

#[tonic::async_trait]
impl Generation for GenerationService {
    async fn generate(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let req = self.generate_request(request.into_inner())?;
        Ok(Response::new(collect(self.submit(req)?).await?))
    }

    type GenerateStreamStream = ChunkStream;

    async fn generate_stream(
        &self,
        request: Request<pb::GenerateRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = self.generate_request(request.into_inner())?;
        Ok(Response::new(stream(self.submit(req)?)))
    }

    async fn chat(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<pb::GenerateResponse>, Status> {
        let req = self.chat_request(request.into_inner())?;
        Ok(Response::new(collect(self.submit(req)?).await?))
    }

    type ChatStreamStream = ChunkStream;

    async fn chat_stream(
        &self,
        request: Request<pb::ChatRequest>,
    ) -> Result<Response<ChunkStream>, Status> {
        let req = self.chat_request(request.into_inner())?;
        Ok(Response::new(stream(self.submit(req)?)))
    }

    async fn tokenize(
        &self,
        request: Request<pb::TokenizeRequest>,
    ) -> Result<Response<pb::TokenizeResponse>, Status> {
        let token_ids = match request.into_inner().input {
            Some(pb::tokenize_request::Input::Text(text)) => self.encode(&text, true)?,
            Some(pb::tokenize_request::Input::Chat(chat)) => self.chat_prompt(chat.messages)?,
            None => return Err(invalid("the request has no input; set `text` or `chat`").into()),
        };
        Ok(Response::new(pb::TokenizeResponse { token_ids }))
    }

    async fn model_info(
        &self,
        _: Request<pb::ModelInfoRequest>,
    ) -> Result<Response<pb::ModelInfoResponse>, Status> {
        let m = &self.meta;
        let c = &m.config;
        Ok(Response::new(pb::ModelInfoResponse {
            model: m.name.clone(),
            architecture: format!("{:?}", c.architecture).to_lowercase(),
            vocab_size: c.vocab_size as u32,
            max_seq_len: c.max_seq_len as u32,
            num_layers: c.num_layers as u32,
            hidden_size: c.hidden_size as u32,
            world_size: m.world_size as u32,
            eos_token_ids: m.tokenizer.eos_ids().to_vec(),
            has_chat_template: m.chat_template.is_some(),
            server_version: env!("CARGO_PKG_VERSION").to_string(),
        }))
    }
}
