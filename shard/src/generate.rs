//! Generating one completion on an in-process group: prefill the prompt,
//! then decode token by token until an end token or the token limit.

use std::time::Instant;

use crate::group::{GroupError, LocalCluster};
use crate::kv_cache::{BlockAllocator, BlockTable};
use crate::sampling::{Sampled, SamplingParams};
use crate::worker::{NewSeq, StepSeq};

/// Why a generation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error("the prompt is empty; give at least one token of text")]
    EmptyPrompt,
    #[error("max_new_tokens must be at least 1")]
    NoNewTokens,
    #[error("the prompt ({prompt} tokens) plus max_new_tokens ({max_new_tokens}) exceeds the model's context of {context} tokens; shorten the prompt or lower max_new_tokens")]
    ContextTooLong {
        prompt: usize,
        max_new_tokens: usize,
        context: usize,
    },
    #[error("the KV cache has {free} free blocks but this request needs {needed}")]
    CacheFull { needed: usize, free: usize },
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// What to generate.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    pub prompt_ids: Vec<u32>,
    pub max_new_tokens: usize,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
    /// Tokens that end generation.
    pub eos_ids: Vec<u32>,
    pub sampling: SamplingParams,
}

/// Why generation stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// `max_new_tokens` were generated.
    Length,
    /// An end-of-sequence token was sampled.
    Eos,
}

impl FinishReason {
    /// The name `--json` output uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Eos => "eos",
        }
    }
}

/// A finished generation.
#[derive(Debug, Clone)]
pub struct Generated {
    /// Every sampled token, including a final end token.
    pub tokens: Vec<Sampled>,
    pub finish_reason: FinishReason,
    /// Wall time of the prefill step (which also samples the first token), ms.
    pub prefill_ms: f64,
    /// Wall time of all decode steps, ms.
    pub decode_ms: f64,
}

impl Generated {
    /// Token ids in order.
    pub fn token_ids(&self) -> Vec<u32> {
        self.tokens.iter().map(|s| s.token).collect()
    }
}

/// Runs `req` to completion on `cluster`, whose caches hold `blocks` blocks of
/// `block_size`. `on_token` sees each token as it is sampled.
pub fn generate(
    cluster: &LocalCluster,
    req: &GenerateRequest,
    context: usize,
    blocks: &mut BlockAllocator,
    mut on_token: impl FnMut(&Sampled),
) -> Result<Generated, GenerateError> {
    let prompt = req.prompt_ids.len();
    if prompt == 0 {
        return Err(GenerateError::EmptyPrompt);
    }
    if req.max_new_tokens == 0 {
        return Err(GenerateError::NoNewTokens);
    }
    if prompt + req.max_new_tokens > context {
        return Err(GenerateError::ContextTooLong {
            prompt,
            max_new_tokens: req.max_new_tokens,
            context,
        });
    }
    // The last sampled token is never fed back, so it needs no cache slot.
    let positions = prompt + req.max_new_tokens - 1;
    let mut table = BlockTable::new();
    if !blocks.grow(&mut table, positions) {
        return Err(GenerateError::CacheFull {
            needed: blocks.blocks_for(positions),
            free: blocks.free_blocks(),
        });
    }
    let result = run(cluster, req, &table, &mut on_token);
    cluster.release(&[0]);
    blocks.release(&mut table);
    result
}

fn run(
    cluster: &LocalCluster,
    req: &GenerateRequest,
    table: &BlockTable,
    on_token: &mut impl FnMut(&Sampled),
) -> Result<Generated, GenerateError> {
    let start = Instant::now();
    let first = StepSeq {
        id: 0,
        tokens: req.prompt_ids.clone(),
        start_pos: 0,
        blocks: table.clone(),
        new: Some(NewSeq {
            sampling: req.sampling.clone(),
            top_logprobs: 0,
        }),
        prompt: true,
        partial: false,
    };
    let mut tokens = Vec::with_capacity(req.max_new_tokens);
    let mut next = one(cluster.step(vec![first])?)?;
    let prefill_ms = ms_since(start);

    let start = Instant::now();
    let finish_reason = loop {
        on_token(&next);
        let token = next.token;
        tokens.push(next);
        if !req.ignore_eos && req.eos_ids.contains(&token) {
            break FinishReason::Eos;
        }
        if tokens.len() == req.max_new_tokens {
            break FinishReason::Length;
        }
        let pos = req.prompt_ids.len() + tokens.len() - 1;
        let step = StepSeq {
            id: 0,
            tokens: vec![token],
            start_pos: pos,
            blocks: table.clone(),
            new: None,
            prompt: false,
            partial: false,
        };
        next = one(cluster.step(vec![step])?)?;
    };
    Ok(Generated {
        tokens,
        finish_reason,
        prefill_ms,
        decode_ms: ms_since(start),
    })
}

fn one(mut out: Vec<Sampled>) -> Result<Sampled, GenerateError> {
    out.pop()
        .ok_or(GenerateError::Group(GroupError::RankGone { rank: 0 }))
}

fn ms_since(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}
