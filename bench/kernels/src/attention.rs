//! Decode-step attention: one new token's query heads against a context of
//! cached keys and values, with grouped-query heads (GQA).
//!
//! The arithmetic mirrors `Layer::attention` in
//! `shard/src/model/layer.rs` (which is private to the shard crate): per
//! query head, scaled dot products with every cached key, a softmax
//! ([`tessera_kernels::ops::softmax`]), then the probability-weighted sum of
//! the cached values; heads run in parallel on the current rayon pool. It
//! differs in reading keys and values from one contiguous f32 cache per layer
//! rather than the shard's paged `KvCache`, so block-table lookups are not
//! measured.
//!
//! Calls cycle through `layers` separate caches, as a decode step visits each
//! layer's cache once: with a model's worth of layers the cache no longer
//! fits on chip and is read from memory, as in serving.

use std::hint::black_box;
use std::time::Duration;

use rayon::prelude::*;
use serde::Serialize;
use tessera_kernels::ops;

use crate::matmul::random_values;
use crate::timing::time_calls;
use crate::{Baseline, BenchError};

/// Which attention cases to time.
#[derive(Debug, Clone)]
pub struct AttentionConfig {
    /// Context lengths (cached positions) to attend over.
    pub contexts: Vec<usize>,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; divides `heads`.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Separate layer caches cycled through.
    pub layers: usize,
    /// Timing budget per case.
    pub budget: Duration,
    /// Seed of the random queries, keys and values.
    pub seed: u64,
}

/// One timed context length.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttentionCase {
    /// Cached positions attended over.
    pub context: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Elements per head.
    pub head_dim: usize,
    /// Layer caches cycled through.
    pub layers: usize,
    /// Key and value bytes of one layer's cache, each read once per call.
    pub kv_bytes_per_layer: usize,
    /// Median seconds per call (one layer, one token).
    pub per_call_s: f64,
    /// Fastest sample's seconds per call.
    pub best_per_call_s: f64,
    /// Key/value bytes per second, GB/s (10⁹ bytes).
    pub kv_gbps: f64,
    /// 10⁹ floating-point operations per second (dot products and weighted
    /// sums; the softmax is not counted).
    pub gflops: f64,
    /// `kv_gbps` as a percentage of the measured read bandwidth.
    pub bandwidth_pct: f64,
    /// Whether all `layers` caches together fit the cache threshold.
    pub cache_resident: bool,
    /// Timed samples behind the median.
    pub samples: usize,
}

/// One layer's cache: keys and values, each `[context, kv_heads, head_dim]`, f32.
struct LayerCache {
    keys: Vec<f32>,
    values: Vec<f32>,
}

/// Times every context length on the current rayon pool; `progress` hears
/// one line per case.
pub fn run(
    config: &AttentionConfig,
    baseline: &Baseline,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<AttentionCase>, BenchError> {
    check(config)?;
    let mut cases = Vec::new();
    for &context in &config.contexts {
        cases.push(time_context(config, context, baseline));
        progress(&format!("attention context={context}"));
    }
    Ok(cases)
}

/// Rejects head counts the grouping cannot serve, and empty sizes.
pub(crate) fn check(c: &AttentionConfig) -> Result<(), BenchError> {
    if c.heads == 0 || c.kv_heads == 0 || !c.heads.is_multiple_of(c.kv_heads) {
        let value = format!("{} heads, {} kv heads", c.heads, c.kv_heads);
        return Err(BenchError::invalid(
            "attention heads",
            value,
            "kv heads must divide heads",
        ));
    }
    if c.head_dim == 0 || c.layers == 0 || c.contexts.contains(&0) {
        let value = format!("head_dim {}, layers {}", c.head_dim, c.layers);
        return Err(BenchError::invalid(
            "attention shape",
            value,
            "all sizes must be positive",
        ));
    }
    Ok(())
}

/// Builds `config.layers` caches of `context` positions and times attention
/// over them, one layer per call.
fn time_context(config: &AttentionConfig, context: usize, baseline: &Baseline) -> AttentionCase {
    let kv_len = context * config.kv_heads * config.head_dim;
    let caches: Vec<LayerCache> = (0..config.layers as u64)
        .map(|l| LayerCache {
            keys: random_values(config.seed, 1000 + 2 * l, kv_len),
            values: random_values(config.seed, 1001 + 2 * l, kv_len),
        })
        .collect();
    let q = random_values(config.seed, 999, config.heads * config.head_dim);
    let mut out = vec![0.0f32; config.heads * config.head_dim];

    let mut layer = 0;
    let timing = time_calls(config.budget, || {
        attend(config, black_box(&q), &caches[layer], context, &mut out);
        black_box(&mut out);
        layer = (layer + 1) % caches.len();
    });

    let s = timing.per_call_s.max(1e-12);
    let kv_bytes = 2 * kv_len * size_of::<f32>();
    let flops = 4 * config.heads * context * config.head_dim;
    AttentionCase {
        context,
        heads: config.heads,
        kv_heads: config.kv_heads,
        head_dim: config.head_dim,
        layers: config.layers,
        kv_bytes_per_layer: kv_bytes,
        per_call_s: timing.per_call_s,
        best_per_call_s: timing.best_per_call_s,
        kv_gbps: kv_bytes as f64 / s / 1e9,
        gflops: flops as f64 / s / 1e9,
        bandwidth_pct: baseline.percent(kv_bytes as f64 / s / 1e9),
        cache_resident: baseline.cache_resident(kv_bytes * config.layers),
        samples: timing.samples,
    }
}

/// `out[heads, head_dim]` = attention of query `q[heads, head_dim]` over the
/// first `context` positions of `cache`; the shape of `Layer::attention`.
fn attend(c: &AttentionConfig, q: &[f32], cache: &LayerCache, context: usize, out: &mut [f32]) {
    let hd = c.head_dim;
    let kv_row = c.kv_heads * hd;
    let group = c.heads / c.kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    out.fill(0.0);

    out.par_chunks_mut(hd)
        .enumerate()
        .for_each(|(head, out_head)| {
            let g = head / group;
            let qh = &q[head * hd..(head + 1) * hd];
            let at = |p: usize| p * kv_row + g * hd..p * kv_row + (g + 1) * hd;

            let mut scores: Vec<f32> = (0..context)
                .map(|p| {
                    let key = &cache.keys[at(p)];
                    qh.iter().zip(key).map(|(a, b)| a * b).sum::<f32>() * scale
                })
                .collect();
            ops::softmax(&mut scores);
            for (p, w) in scores.iter().enumerate() {
                let value = &cache.values[at(p)];
                out_head
                    .iter_mut()
                    .zip(value)
                    .for_each(|(o, v)| *o += w * v);
            }
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// With equal keys every position weighs the same, so each head's output
    /// is the mean of its group's values.
    #[test]
    fn equal_keys_average_the_values() {
        let c = AttentionConfig {
            contexts: vec![4],
            heads: 4,
            kv_heads: 2,
            head_dim: 2,
            layers: 1,
            budget: Duration::ZERO,
            seed: 0,
        };
        // [context 4, kv_heads 2, head_dim 2]: head group g holds value p + 10 g.
        let values: Vec<f32> = (0..4)
            .flat_map(|p| [p as f32, p as f32, p as f32 + 10.0, p as f32 + 10.0])
            .collect();
        let cache = LayerCache {
            keys: vec![1.0; 16],
            values,
        };
        let mut out = vec![0.0; 8];
        attend(&c, &[0.5; 8], &cache, 4, &mut out);
        assert_eq!(out, [1.5, 1.5, 1.5, 1.5, 11.5, 11.5, 11.5, 11.5]);
    }

    #[test]
    fn rejects_ungroupable_heads() {
        let c = AttentionConfig {
            contexts: vec![4],
            heads: 9,
            kv_heads: 2,
            head_dim: 64,
            layers: 1,
            budget: Duration::ZERO,
            seed: 0,
        };
        assert!(check(&c).is_err());
    }
}
