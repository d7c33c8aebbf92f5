//! Small builders for the prost request types.
//!
//! ```
//! use tessera_client::request;
//!
//! let req = request::text("Once upon a time")
//!     .max_new_tokens(32)
//!     .temperature(0.0)
//!     .seed(1)
//!     .stop(["\n"])
//!     .build();
//! assert_eq!(req.stopping.map(|s| s.max_new_tokens), Some(Some(32)));
//! ```
//!
//! A parameter that is never set stays unset in the message, so the server's
//! default applies; the builders do not validate ranges, the server does and
//! answers `INVALID_ARGUMENT` with the reason.

use tessera_proto::v1::{
    generate_request::Prompt, tokenize_request::Input, ChatMessage, ChatMessages, ChatRequest,
    GenerateRequest, LogprobsParams, SamplingParams, StoppingParams, TokenIds, TokenizeRequest,
};

/// Builds a [`GenerateRequest`] (when `P` is [`Prompt`]) or a [`ChatRequest`]
/// (when `P` is `Vec<ChatMessage>`); start one with [`text`], [`token_ids`]
/// or [`chat`].
#[derive(Clone, Debug, PartialEq)]
#[must_use]
pub struct RequestBuilder<P> {
    input: P,
    sampling: Option<SamplingParams>,
    stopping: Option<StoppingParams>,
    logprobs: Option<LogprobsParams>,
}

/// A builder of [`GenerateRequest`].
pub type GenerateRequestBuilder = RequestBuilder<Prompt>;

/// A builder of [`ChatRequest`].
pub type ChatRequestBuilder = RequestBuilder<Vec<ChatMessage>>;

/// A generation request for a text prompt.
pub fn text(prompt: impl Into<String>) -> GenerateRequestBuilder {
    RequestBuilder::new(Prompt::Text(prompt.into()))
}

/// A generation request for a prompt given as token ids, used as they are.
pub fn token_ids(ids: impl IntoIterator<Item = u32>) -> GenerateRequestBuilder {
    let ids = ids.into_iter().collect();
    RequestBuilder::new(Prompt::TokenIds(TokenIds { ids }))
}

/// A chat request for a conversation; see [`system`], [`user`], [`assistant`].
pub fn chat(messages: impl IntoIterator<Item = ChatMessage>) -> ChatRequestBuilder {
    RequestBuilder::new(messages.into_iter().collect())
}

/// A message with the role `system`.
pub fn system(content: impl Into<String>) -> ChatMessage {
    message("system", content)
}

/// A message with the role `user`.
pub fn user(content: impl Into<String>) -> ChatMessage {
    message("user", content)
}

/// A message with the role `assistant`.
pub fn assistant(content: impl Into<String>) -> ChatMessage {
    message("assistant", content)
}

/// A request for the token ids of a text.
pub fn tokenize_text(text: impl Into<String>) -> TokenizeRequest {
    TokenizeRequest {
        input: Some(Input::Text(text.into())),
    }
}

/// A request for the token ids of a conversation rendered with the chat
/// template.
pub fn tokenize_chat(messages: impl IntoIterator<Item = ChatMessage>) -> TokenizeRequest {
    let messages = messages.into_iter().collect();
    TokenizeRequest {
        input: Some(Input::Chat(ChatMessages { messages })),
    }
}

fn message(role: &str, content: impl Into<String>) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content: content.into(),
    }
}

impl<P> RequestBuilder<P> {
    fn new(input: P) -> Self {
        RequestBuilder {
            input,
            sampling: None,
            stopping: None,
            logprobs: None,
        }
    }

    fn sampling_mut(&mut self) -> &mut SamplingParams {
        self.sampling.get_or_insert_with(SamplingParams::default)
    }

    fn stopping_mut(&mut self) -> &mut StoppingParams {
        self.stopping.get_or_insert_with(StoppingParams::default)
    }

    /// Sampling temperature; 0 is greedy decoding.
    pub fn temperature(mut self, temperature: f32) -> Self {
        self.sampling_mut().temperature = Some(temperature);
        self
    }

    /// Keeps only the `k` most likely tokens; 0 disables.
    pub fn top_k(mut self, k: u32) -> Self {
        self.sampling_mut().top_k = Some(k);
        self
    }

    /// Nucleus sampling mass, in (0, 1].
    pub fn top_p(mut self, p: f32) -> Self {
        self.sampling_mut().top_p = Some(p);
        self
    }

    /// Drops tokens less likely than `p` times the most likely one.
    pub fn min_p(mut self, p: f32) -> Self {
        self.sampling_mut().min_p = Some(p);
        self
    }

    /// Penalty on tokens already seen; 1 disables.
    pub fn repetition_penalty(mut self, penalty: f32) -> Self {
        self.sampling_mut().repetition_penalty = Some(penalty);
        self
    }

    /// Subtracted from a token's logit per earlier occurrence in the output.
    pub fn frequency_penalty(mut self, penalty: f32) -> Self {
        self.sampling_mut().frequency_penalty = Some(penalty);
        self
    }

    /// Subtracted from a token's logit once it occurs in the output.
    pub fn presence_penalty(mut self, penalty: f32) -> Self {
        self.sampling_mut().presence_penalty = Some(penalty);
        self
    }

    /// Seed that makes sampling reproducible.
    pub fn seed(mut self, seed: u64) -> Self {
        self.sampling_mut().seed = Some(seed);
        self
    }

    /// Most tokens to generate.
    pub fn max_new_tokens(mut self, n: u32) -> Self {
        self.stopping_mut().max_new_tokens = Some(n);
        self
    }

    /// Adds stop sequences; generation stops when the text contains one.
    pub fn stop<S: Into<String>>(mut self, stop: impl IntoIterator<Item = S>) -> Self {
        let stop = stop.into_iter().map(Into::into);
        self.stopping_mut().stop.extend(stop);
        self
    }

    /// Adds token ids that stop generation when sampled.
    pub fn stop_token_ids(mut self, ids: impl IntoIterator<Item = u32>) -> Self {
        self.stopping_mut().stop_token_ids.extend(ids);
        self
    }

    /// Keeps generating past the model's end-of-sequence tokens.
    pub fn ignore_eos(mut self, ignore: bool) -> Self {
        self.stopping_mut().ignore_eos = ignore;
        self
    }

    /// Returns each token's log-probability and its `top_n` most likely
    /// alternatives (0 for none).
    pub fn logprobs(mut self, top_n: u32) -> Self {
        self.logprobs = Some(LogprobsParams {
            enabled: true,
            top_n,
        });
        self
    }
}

impl GenerateRequestBuilder {
    /// The finished request.
    pub fn build(self) -> GenerateRequest {
        GenerateRequest {
            prompt: Some(self.input),
            sampling: self.sampling,
            stopping: self.stopping,
            logprobs: self.logprobs,
        }
    }
}

impl ChatRequestBuilder {
    /// The finished request.
    pub fn build(self) -> ChatRequest {
        ChatRequest {
            messages: self.input,
            sampling: self.sampling,
            stopping: self.stopping,
            logprobs: self.logprobs,
        }
    }
}

impl From<GenerateRequestBuilder> for GenerateRequest {
    fn from(builder: GenerateRequestBuilder) -> Self {
        builder.build()
    }
}

impl From<ChatRequestBuilder> for ChatRequest {
    fn from(builder: ChatRequestBuilder) -> Self {
        builder.build()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_parameters_stay_unset() {
        let req = text("hi").build();
        assert_eq!(req.prompt, Some(Prompt::Text("hi".into())));
        assert_eq!(req.sampling, None);
        assert_eq!(req.stopping, None);
        assert_eq!(req.logprobs, None);
    }

    #[test]
    fn setters_fill_their_fields() {
        let req = token_ids([5, 6])
            .temperature(0.5)
            .top_k(40)
            .seed(7)
            .max_new_tokens(8)
            .stop(["\n"])
            .stop(vec![String::from("END")])
            .stop_token_ids([2])
            .logprobs(3)
            .build();
        let sampling = req.sampling.unwrap_or_default();
        assert_eq!(sampling.temperature, Some(0.5));
        assert_eq!(sampling.top_k, Some(40));
        assert_eq!(sampling.seed, Some(7));
        assert_eq!(sampling.top_p, None);
        let stopping = req.stopping.unwrap_or_default();
        assert_eq!(stopping.max_new_tokens, Some(8));
        assert_eq!(stopping.stop, ["\n", "END"]);
        assert_eq!(stopping.stop_token_ids, [2]);
        assert_eq!(
            req.logprobs,
            Some(LogprobsParams {
                enabled: true,
                top_n: 3
            })
        );
        assert_eq!(
            req.prompt,
            Some(Prompt::TokenIds(TokenIds { ids: vec![5, 6] }))
        );
    }

    #[test]
    fn chat_builder_keeps_message_order() {
        let req: ChatRequest = chat([system("be brief"), user("hi")])
            .max_new_tokens(4)
            .into();
        let roles: Vec<_> = req.messages.iter().map(|m| m.role.as_str()).collect();
        assert_eq!(roles, ["system", "user"]);
        assert_eq!(req.stopping.and_then(|s| s.max_new_tokens), Some(4));
    }

    #[test]
    fn tokenize_requests_carry_their_input() {
        let req = tokenize_text("abc");
        assert_eq!(req.input, Some(Input::Text("abc".into())));
        let req = tokenize_chat([assistant("ok")]);
        let Some(Input::Chat(chat)) = req.input else {
            panic!("expected a chat input");
        };
        assert_eq!(chat.messages[0].role, "assistant");
    }
}
