//! One rank's serving state: its model slice, KV cache and per-sequence
//! samplers. Every rank of a group runs the same steps in the same order; each
//! samples on its own with the same seeded sampler, so all ranks return the
//! same tokens and the scheduler can check that they agree.

use std::collections::HashMap;

use crate::collective::Collective;
use crate::kv_cache::KvCache;
use crate::model::{Batch, Model, ModelError, SeqStep};
use crate::sampling::{Sampled, Sampler, SamplingError, SamplingParams};

/// Why a step failed on this rank.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    #[error("sequence {id} is not running on this shard; it was never prefilled or was already released")]
    UnknownSequence { id: u64 },
    #[error("sequence {id} is already running on this shard")]
    DuplicateSequence { id: u64 },
}

impl StepError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Model(e) => e.label(),
            Self::Sampling(e) => e.label(),
            Self::UnknownSequence { .. } => "unknown_sequence",
            Self::DuplicateSequence { .. } => "duplicate_sequence",
        }
    }
}

/// A new sequence's sampling settings.
#[derive(Debug, Clone)]
pub struct NewSeq {
    pub sampling: SamplingParams,
    /// How many alternatives to report with each token's logprob (0 = none).
    pub top_logprobs: usize,
}

/// One sequence's work in a step.
#[derive(Debug, Clone)]
pub struct StepSeq {
    /// Scheduler-chosen id, unique among running sequences.
    pub id: u64,
    /// Prompt tokens (prefill) or the token sampled last step (decode).
    pub tokens: Vec<u32>,
    /// Position of `tokens[0]`.
    pub start_pos: usize,
    /// KV blocks covering `start_pos + tokens.len()` positions.
    pub blocks: Vec<u32>,
    /// Present when the sequence starts in this step.
    pub new: Option<NewSeq>,
    /// `tokens` are prompt tokens (a prefill chunk), not a sampled token.
    pub prompt: bool,
    /// More prompt follows in later steps: run the tokens, sample nothing.
    pub partial: bool,
}

/// A rank's model, cache and samplers.
pub struct Worker {
    model: Model,
    kv: KvCache,
    comm: Box<dyn Collective>,
    samplers: HashMap<u64, Sampler>,
    /// KV blocks each running sequence last said it holds.
    blocks: HashMap<u64, usize>,
}

impl Worker {
    /// A worker with a cache of `num_blocks` blocks of `block_size` positions.
    pub fn new(
        model: Model,
        comm: Box<dyn Collective>,
        num_blocks: usize,
        block_size: usize,
    ) -> Self {
        let kv = model.new_kv_cache(num_blocks, block_size);
        Self {
            model,
            kv,
            comm,
            samplers: HashMap::new(),
            blocks: HashMap::new(),
        }
    }

    /// The model slice.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Sequences with live samplers.
    pub fn running(&self) -> usize {
        self.samplers.len()
    }

    /// KV blocks held by running sequences (their tables are disjoint).
    pub fn kv_blocks_in_use(&self) -> usize {
        self.blocks.values().sum()
    }

    /// KV blocks in this rank's cache.
    pub fn kv_blocks_total(&self) -> usize {
        self.kv.num_blocks()
    }

    /// Runs one forward pass over `seqs` and samples a token for each that is
    /// not `partial`, in order.
    ///
    /// New sequences get a sampler first; a sequence that fails validation
    /// fails the whole step before any rank computes (all ranks see the same
    /// batch, so all fail alike), and leaves no state behind.
    pub fn step(&mut self, seqs: &[StepSeq]) -> Result<Vec<Sampled>, StepError> {
        let mut created = Vec::new();
        let result = self.step_inner(seqs, &mut created);
        if result.is_err() {
            self.release(&created);
        }
        result
    }

    fn step_inner(
        &mut self,
        seqs: &[StepSeq],
        created: &mut Vec<u64>,
    ) -> Result<Vec<Sampled>, StepError> {
        for seq in seqs {
            match &seq.new {
                Some(new) => {
                    if self.samplers.contains_key(&seq.id) {
                        return Err(StepError::DuplicateSequence { id: seq.id });
                    }
                    let mut sampler = Sampler::new(new.sampling.clone(), &seq.tokens)?;
                    sampler.set_top_logprobs(new.top_logprobs);
                    self.samplers.insert(seq.id, sampler);
                    created.push(seq.id);
                }
                None => {
                    let sampler = self
                        .samplers
                        .get_mut(&seq.id)
                        .ok_or(StepError::UnknownSequence { id: seq.id })?;
                    // A later chunk of a prompt prefilled in pieces.
                    if seq.prompt {
                        sampler.extend_prompt(&seq.tokens);
                    }
                }
            }
        }

        let steps: Vec<SeqStep<'_>> = seqs
            .iter()
            .map(|s| SeqStep {
                tokens: &s.tokens,
                start_pos: s.start_pos,
                blocks: &s.blocks,
            })
            .collect();
        let mut logits =
            self.model
                .forward(&Batch { seqs: &steps }, &mut self.kv, self.comm.as_mut())?;

        let vocab = self.model.config.vocab_size;
        let mut out = Vec::with_capacity(seqs.len());
        for (seq, row) in seqs.iter().zip(logits.chunks_exact_mut(vocab)) {
            self.blocks.insert(seq.id, seq.blocks.len());
            if seq.partial {
                continue;
            }
            let sampler = self
                .samplers
                .get_mut(&seq.id)
                .ok_or(StepError::UnknownSequence { id: seq.id })?;
            out.push(sampler.sample(row));
        }
        Ok(out)
    }

    /// Forgets finished or cancelled sequences. Their KV blocks belong to the
    /// scheduler, which reuses them; unknown ids are ignored.
    pub fn release(&mut self, ids: &[u64]) {
        for id in ids {
            self.samplers.remove(id);
            self.blocks.remove(id);
        }
    }
}
