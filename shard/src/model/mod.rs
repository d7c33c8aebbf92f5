//! One rank's slice of a Llama-family decoder (Llama 2/3, Mistral, Qwen2,
//! SmolLM2), and its forward pass over a batch of sequences.
//!
//! The forward pass follows the Hugging Face `LlamaForCausalLM` reference:
//! embedding, `num_layers` pre-norm blocks ([`layer::Layer`]), a final RMSNorm
//! and the LM head. Activations are f32; weights stay in their stored format.
//! Every rank holds the whole residual stream `[n_tokens, hidden]`; the
//! collective keeps it identical across ranks.

mod layer;
pub mod plan;
mod rope;
mod weights;

use tessera_formats::{FormatError, ModelConfig, TensorStore};
use tessera_kernels::{cpu, ops};

use crate::collective::{Collective, CollectiveError};
use crate::kv_cache::{KvCache, KvError};
use layer::{ColumnParallelLinear, Layer, RowParallelLinear, Step};
pub use plan::{PlanError, TpPlan};
use rope::RopeTables;
use weights::{Loader, Weight};

/// Why a model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Plan(#[from] PlanError),
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    #[error(transparent)]
    Kv(#[from] KvError),
    #[error("token id {token} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange { token: u32, vocab_size: usize },
    #[error("position {pos} is past the model's context of {max_seq_len} tokens")]
    ContextOverflow { pos: usize, max_seq_len: usize },
    #[error("a sequence in the batch has no tokens")]
    EmptySequence,
}

impl ModelError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Format(e) => e.label(),
            Self::Plan(_) => "plan",
            Self::Collective(e) => e.label(),
            Self::Kv(_) => "kv_cache",
            Self::TokenOutOfRange { .. } => "token_out_of_range",
            Self::ContextOverflow { .. } => "context_overflow",
            Self::EmptySequence => "empty_sequence",
        }
    }
}

/// One sequence's part of a forward pass.
#[derive(Debug, Clone, Copy)]
pub struct SeqStep<'a> {
    /// New tokens: the prompt (prefill) or the last sampled token (decode).
    pub tokens: &'a [u32],
    /// Position of `tokens[0]`; positions before it are already in the cache.
    pub start_pos: usize,
    /// The sequence's KV blocks, covering `start_pos + tokens.len()` positions.
    pub blocks: &'a [u32],
}

/// The sequences of one forward pass.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub seqs: &'a [SeqStep<'a>],
}

impl<'a> Batch<'a> {
    /// Tokens over all sequences.
    pub fn n_tokens(&self) -> usize {
        self.seqs.iter().map(|s| s.tokens.len()).sum()
    }

    /// For every token in batch order: its position and its sequence's block table.
    pub fn token_slots(&self) -> impl Iterator<Item = (usize, &'a [u32])> + 'a {
        let seqs: &'a [SeqStep<'a>] = self.seqs;
        seqs.iter()
            .flat_map(|s| (0..s.tokens.len()).map(move |i| (s.start_pos + i, s.blocks)))
    }
}

/// This rank's slice of the model.
#[derive(Debug)]
pub struct Model {
    pub config: ModelConfig,
    pub plan: TpPlan,
    /// `[vocab, hidden]`, the whole table (rows are read on demand from the map).
    embedding: Weight,
    layers: Vec<Layer>,
    /// `[hidden]`
    output_norm: Vec<f32>,
    /// `[vocab_local, hidden]`
    lm_head: Weight,
    /// `[head_dim / 2]`
    inv_freq: Vec<f32>,
    /// Local KV head of each local query head, `[q_heads_local]`.
    kv_of_q: Vec<usize>,
}

impl Model {
    /// Loads the slice of `rank` in a group of `world_size` from `store`,
    /// checking every tensor's shape against `config`.
    pub fn load(
        config: &ModelConfig,
        store: &TensorStore,
        rank: usize,
        world_size: usize,
    ) -> Result<Self, ModelError> {
        let c = config;
        let loader = Loader { store };
        let down = store.expect(
            "blk.0.ffn_down.weight",
            &[c.hidden_size, c.intermediate_size],
        )?;
        let plan = TpPlan::new(c, rank, world_size, down.dtype.block_size())?;

        let embedding = loader.rows(
            "token_embd.weight",
            c.vocab_size,
            c.hidden_size,
            0..c.vocab_size,
        )?;
        let head_name = if c.tie_word_embeddings {
            "token_embd.weight"
        } else {
            "output.weight"
        };
        let lm_head = loader.rows(head_name, c.vocab_size, c.hidden_size, plan.vocab.clone())?;
        let layers = (0..c.num_layers)
            .map(|i| load_layer(&loader, c, &plan, i))
            .collect::<Result<_, _>>()?;
        let output_norm = loader.vector("output_norm.weight", c.hidden_size, 0..c.hidden_size)?;
        let kv_of_q = (0..plan.q_heads.len())
            .map(|h| plan.kv_of_q(c, h))
            .collect();
        tracing::info!(rank, world_size, q_heads = ?plan.q_heads, kv_heads = ?plan.kv_heads, ffn = ?plan.ffn, "model slice loaded");
        Ok(Self {
            config: c.clone(),
            inv_freq: c.rope_inv_freq(),
            plan,
            embedding,
            layers,
            output_norm,
            lm_head,
            kv_of_q,
        })
    }

    /// KV heads this rank caches.
    pub fn local_kv_heads(&self) -> usize {
        self.plan.kv_heads.len()
    }

    /// A KV cache for this rank's slice.
    pub fn new_kv_cache(&self, num_blocks: usize, block_size: usize) -> KvCache {
        KvCache::new(
            self.config.num_layers,
            num_blocks,
            block_size,
            self.local_kv_heads(),
            self.config.head_dim,
        )
    }

    /// Runs `batch`, appending its keys and values to `kv`, and returns the
    /// logits of each sequence's last token, `[n_seqs, vocab]`. Every rank of
    /// the group must call this with the same batch.
    pub fn forward(
        &self,
        batch: &Batch<'_>,
        kv: &mut KvCache,
        comm: &mut dyn Collective,
    ) -> Result<Vec<f32>, ModelError> {
        self.check(batch, kv)?;
        let c = &self.config;
        let positions: Vec<usize> = batch.token_slots().map(|(p, _)| p).collect();
        let rope = RopeTables::new(c.rope_style, &self.inv_freq, &positions);
        let step = Step {
            batch,
            rope: &rope,
            eps: c.rms_norm_eps,
            head_dim: c.head_dim,
            kv_of_q: &self.kv_of_q,
        };

        let mut x = self.embed(batch);
        for layer in &self.layers {
            layer.forward(&step, &mut x, kv, comm)?;
        }
        self.logits(batch, &x, comm)
    }

    /// Rejects a batch this model or cache cannot run.
    fn check(&self, batch: &Batch<'_>, kv: &KvCache) -> Result<(), ModelError> {
        let vocab_size = self.config.vocab_size;
        for seq in batch.seqs {
            if seq.tokens.is_empty() {
                return Err(ModelError::EmptySequence);
            }
            if let Some(&token) = seq.tokens.iter().find(|&&t| t as usize >= vocab_size) {
                return Err(ModelError::TokenOutOfRange { token, vocab_size });
            }
            let end = seq.start_pos + seq.tokens.len();
            if end > self.config.max_seq_len {
                return Err(ModelError::ContextOverflow {
                    pos: end - 1,
                    max_seq_len: self.config.max_seq_len,
                });
            }
            kv.check(seq.blocks, end)?;
        }
        Ok(())
    }

    /// Embedding rows of every token, `[n_tokens, hidden]`.
    fn embed(&self, batch: &Batch<'_>) -> Vec<f32> {
        let hidden = self.config.hidden_size;
        let table = self.embedding.view();
        let mut x = vec![0.0; batch.n_tokens() * hidden];
        let tokens = batch.seqs.iter().flat_map(|s| s.tokens.iter());
        for (row, &t) in x.chunks_exact_mut(hidden).zip(tokens) {
            cpu::dequantize_row(table.dtype, table.row(t as usize), row);
        }
        x
    }

    /// Final norm and LM head over each sequence's last token, gathered over
    /// the vocabulary split: `[n_seqs, vocab]`.
    fn logits(
        &self,
        batch: &Batch<'_>,
        x: &[f32],
        comm: &mut dyn Collective,
    ) -> Result<Vec<f32>, ModelError> {
        let hidden = self.config.hidden_size;
        let n_seqs = batch.seqs.len();
        let mut last = Vec::with_capacity(n_seqs * hidden);
        let mut end = 0;
        for seq in batch.seqs {
            end += seq.tokens.len();
            last.extend_from_slice(&x[(end - 1) * hidden..end * hidden]);
        }
        let mut normed = vec![0.0; last.len()];
        ops::rms_norm(
            &last,
            &self.output_norm,
            self.config.rms_norm_eps,
            &mut normed,
        );

        let local_vocab = self.lm_head.rows;
        let mut local = vec![0.0; n_seqs * local_vocab];
        cpu::matmul(&self.lm_head.view(), &normed, n_seqs, &mut local);
        if comm.world_size() == 1 {
            return Ok(local);
        }

        // The gather concatenates rank parts; reorder to `[n_seqs, vocab]`.
        let vocab = self.config.vocab_size;
        let mut by_rank = vec![0.0; n_seqs * vocab];
        comm.all_gather(&local, &mut by_rank)?;
        let mut logits = vec![0.0; n_seqs * vocab];
        let mut at = 0;
        for r in 0..comm.world_size() {
            let part = plan::even_split(vocab, comm.world_size(), r);
            for s in 0..n_seqs {
                logits[s * vocab + part.start..s * vocab + part.end]
                    .copy_from_slice(&by_rank[at..at + part.len()]);
                at += part.len();
            }
        }
        Ok(logits)
    }
}

/// Loads this rank's part of block `i`.
fn load_layer(
    loader: &Loader<'_>,
    c: &ModelConfig,
    plan: &TpPlan,
    i: usize,
) -> Result<Layer, ModelError> {
    let hd = c.head_dim;
    let (hidden, ffn) = (c.hidden_size, c.intermediate_size);
    let q_rows = plan.q_heads.start * hd..plan.q_heads.end * hd;
    let kv_rows = plan.kv_heads.start * hd..plan.kv_heads.end * hd;
    let name = |t: &str| format!("blk.{i}.{t}");
    let column = |t: &str,
                  rows: usize,
                  keep: std::ops::Range<usize>|
     -> Result<ColumnParallelLinear, ModelError> {
        let bias_name = name(&format!("{t}.bias"));
        let bias = if c.qkv_bias && matches!(t, "attn_q" | "attn_k" | "attn_v") {
            Some(loader.vector(&bias_name, rows, keep.clone())?)
        } else {
            None
        };
        let weight = loader.rows(&name(&format!("{t}.weight")), rows, hidden, keep)?;
        Ok(ColumnParallelLinear { weight, bias })
    };
    Ok(Layer {
        index: i,
        attn_norm: loader.vector(&name("attn_norm.weight"), hidden, 0..hidden)?,
        q: column("attn_q", c.num_heads * hd, q_rows.clone())?,
        k: column("attn_k", c.num_kv_heads * hd, kv_rows.clone())?,
        v: column("attn_v", c.num_kv_heads * hd, kv_rows)?,
        o: RowParallelLinear {
            weight: loader.cols(
                &name("attn_output.weight"),
                hidden,
                c.num_heads * hd,
                q_rows,
            )?,
        },
        ffn_norm: loader.vector(&name("ffn_norm.weight"), hidden, 0..hidden)?,
        gate: column("ffn_gate", ffn, plan.ffn.clone())?,
        up: column("ffn_up", ffn, plan.ffn.clone())?,
        down: RowParallelLinear {
            weight: loader.cols(&name("ffn_down.weight"), hidden, ffn, plan.ffn.clone())?,
        },
    })
}
