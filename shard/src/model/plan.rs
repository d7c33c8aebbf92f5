//! Which part of every layer a rank holds (Megatron-style tensor parallelism).
//!
//! - Attention is split by KV group: a rank holds whole KV heads and the query
//!   heads that read them. Groups that do not divide evenly go to the first
//!   ranks (3 groups over 2 ranks: 2 + 1). With more ranks than KV heads, the
//!   ranks sharing a KV head each keep a copy of it and split its query heads.
//! - The FFN is split by intermediate feature, in whole quantization blocks of
//!   the down projection (its input features are the split dimension).
//! - The LM head is split by vocabulary row; logits are all-gathered.

use std::ops::Range;

use tessera_formats::ModelConfig;

/// A tensor-parallel degree the model cannot be split into.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("world size must be at least 1, got 0")]
    EmptyWorld,
    #[error("rank {rank} is outside a group of {world_size}")]
    RankOutOfRange { rank: usize, world_size: usize },
    #[error("tensor parallelism {world_size} is too high for {num_heads} attention heads in {num_kv_heads} KV groups; use at most {max}")]
    TooManyRanks {
        world_size: usize,
        num_heads: usize,
        num_kv_heads: usize,
        max: usize,
    },
    #[error("tensor parallelism {world_size} is too high for an FFN of {units} blocks of {block} features; use at most {units}")]
    FfnTooSmall {
        world_size: usize,
        units: usize,
        block: usize,
    },
}

/// The slice of the model rank `rank` of `world_size` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TpPlan {
    pub rank: usize,
    pub world_size: usize,
    /// Global query heads held, contiguous.
    pub q_heads: Range<usize>,
    /// Global KV heads held, contiguous; covers every query head's group.
    pub kv_heads: Range<usize>,
    /// Intermediate FFN features held.
    pub ffn: Range<usize>,
    /// Vocabulary rows of the LM head held.
    pub vocab: Range<usize>,
}

/// Splits `total` into `parts` contiguous ranges, the first ones one larger
/// when it does not divide.
pub fn even_split(total: usize, parts: usize, index: usize) -> Range<usize> {
    let base = total / parts;
    let rem = total % parts;
    let start = index * base + index.min(rem);
    let len = base + usize::from(index < rem);
    start..start + len
}

impl TpPlan {
    /// The slice for `rank`; `ffn_block` is the down projection's quantization
    /// block size (1 for float weights).
    pub fn new(
        config: &ModelConfig,
        rank: usize,
        world_size: usize,
        ffn_block: usize,
    ) -> Result<Self, PlanError> {
        if world_size == 0 {
            return Err(PlanError::EmptyWorld);
        }
        if rank >= world_size {
            return Err(PlanError::RankOutOfRange { rank, world_size });
        }
        let (q_heads, kv_heads) = attention_split(config, rank, world_size)?;

        let units = config.intermediate_size / ffn_block;
        if world_size > units {
            return Err(PlanError::FfnTooSmall {
                world_size,
                units,
                block: ffn_block,
            });
        }
        let ffn_units = even_split(units, world_size, rank);
        let ffn = ffn_units.start * ffn_block..ffn_units.end * ffn_block;
        let vocab = even_split(config.vocab_size, world_size, rank);
        Ok(Self {
            rank,
            world_size,
            q_heads,
            kv_heads,
            ffn,
            vocab,
        })
    }

    /// The KV head (local index) that local query head `local_q` reads.
    pub fn kv_of_q(&self, config: &ModelConfig, local_q: usize) -> usize {
        let group = config.num_heads / config.num_kv_heads;
        (self.q_heads.start + local_q) / group - self.kv_heads.start
    }
}

/// Query and KV head ranges of one rank.
fn attention_split(
    config: &ModelConfig,
    rank: usize,
    world_size: usize,
) -> Result<(Range<usize>, Range<usize>), PlanError> {
    let n_kv = config.num_kv_heads;
    let group = config.num_heads / n_kv;
    if world_size <= n_kv {
        let kv = even_split(n_kv, world_size, rank);
        return Ok((kv.start * group..kv.end * group, kv));
    }

    // More ranks than KV heads: each KV head is shared by a few ranks, which
    // split its query heads. Every rank needs at least one query head.
    let max = n_kv * group;
    let too_many = || PlanError::TooManyRanks {
        world_size,
        num_heads: config.num_heads,
        num_kv_heads: n_kv,
        max,
    };
    if world_size > max {
        return Err(too_many());
    }
    let mut first_rank = 0;
    for kv in 0..n_kv {
        let sharers = even_split(world_size, n_kv, kv).len();
        if sharers > group {
            return Err(too_many());
        }
        if rank < first_rank + sharers {
            let q = even_split(group, sharers, rank - first_rank);
            return Ok((kv * group + q.start..kv * group + q.end, kv..kv + 1));
        }
        first_rank += sharers;
    }
    Err(too_many())
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_formats::{Architecture, RopeStyle};

    fn config(heads: usize, kv: usize) -> ModelConfig {
        ModelConfig {
            architecture: Architecture::Llama,
            hidden_size: heads * 64,
            intermediate_size: 1536,
            num_layers: 1,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim: 64,
            vocab_size: 1001,
            max_seq_len: 128,
            rope_theta: 10000.0,
            rope_style: RopeStyle::Interleaved,
            rope_scaling: None,
            rms_norm_eps: 1e-5,
            tie_word_embeddings: true,
            qkv_bias: false,
        }
    }

    #[test]
    fn uneven_kv_groups_go_to_first_ranks() -> Result<(), PlanError> {
        let c = config(9, 3);
        let a = TpPlan::new(&c, 0, 2, 32)?;
        let b = TpPlan::new(&c, 1, 2, 32)?;
        assert_eq!((a.kv_heads.clone(), a.q_heads.clone()), (0..2, 0..6));
        assert_eq!((b.kv_heads.clone(), b.q_heads.clone()), (2..3, 6..9));
        assert_eq!((a.ffn.clone(), b.ffn.clone()), (0..768, 768..1536));
        assert_eq!((a.vocab.clone(), b.vocab.clone()), (0..501, 501..1001));
        assert_eq!(b.kv_of_q(&c, 2), 0);
        Ok(())
    }

    #[test]
    fn more_ranks_than_kv_heads_replicates_kv() -> Result<(), PlanError> {
        let c = config(9, 3);
        let plans: Vec<_> = (0..6)
            .map(|r| TpPlan::new(&c, r, 6, 32))
            .collect::<Result<_, _>>()?;
        let q: Vec<_> = plans.iter().map(|p| p.q_heads.clone()).collect();
        assert_eq!(q, vec![0..2, 2..3, 3..5, 5..6, 6..8, 8..9]);
        assert_eq!(plans[1].kv_heads, 0..1);
        assert_eq!(plans[4].kv_heads, 2..3);
        assert!(matches!(
            TpPlan::new(&c, 0, 10, 32),
            Err(PlanError::TooManyRanks { .. })
        ));
        Ok(())
    }

    #[test]
    fn bad_ranks_are_errors() {
        let c = config(9, 3);
        assert!(matches!(
            TpPlan::new(&c, 0, 0, 32),
            Err(PlanError::EmptyWorld)
        ));
        assert!(matches!(
            TpPlan::new(&c, 3, 3, 32),
            Err(PlanError::RankOutOfRange { .. })
        ));
        assert!(matches!(
            TpPlan::new(&c, 0, 7, 256),
            Err(PlanError::FfnTooSmall { .. })
        ));
    }
}
