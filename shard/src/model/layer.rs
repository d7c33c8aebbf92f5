//! One transformer block of a Llama-family model, as one rank holds it:
//! pre-norm attention with grouped-query heads and RoPE, then a SwiGLU FFN
//! (Touvron et al., arXiv:2302.13971). Attention output and FFN down
//! projections are row-parallel: each rank adds a partial sum that the
//! collective completes.

use rayon::prelude::*;
use tessera_kernels::{cpu, ops};

use super::rope::RopeTables;
use super::weights::Weight;
use super::{Batch, ModelError};
use crate::collective::Collective;
use crate::kv_cache::KvCache;

/// A column-parallel projection: this rank's output features, with bias.
#[derive(Debug)]
pub struct ColumnParallelLinear {
    /// `[out_local, in]`
    pub weight: Weight,
    /// `[out_local]`, f32
    pub bias: Option<Vec<f32>>,
}

impl ColumnParallelLinear {
    /// `[n, out_local] = x[n, in] · wᵀ + b`.
    pub fn forward(&self, x: &[f32], n: usize) -> Vec<f32> {
        let mut y = vec![0.0; n * self.weight.rows];
        cpu::matmul(&self.weight.view(), x, n, &mut y);
        if let Some(bias) = &self.bias {
            for row in y.chunks_exact_mut(bias.len()) {
                row.iter_mut().zip(bias).for_each(|(v, b)| *v += b);
            }
        }
        y
    }
}

/// A row-parallel projection: this rank's input features. Its output is a
/// partial sum until all-reduced.
#[derive(Debug)]
pub struct RowParallelLinear {
    /// `[out, in_local]`
    pub weight: Weight,
}

impl RowParallelLinear {
    /// `[n, out]` = all-reduce over ranks of `x[n, in_local] · wᵀ`.
    pub fn forward(
        &self,
        x: &[f32],
        n: usize,
        comm: &mut dyn Collective,
    ) -> Result<Vec<f32>, ModelError> {
        let mut y = vec![0.0; n * self.weight.rows];
        cpu::matmul(&self.weight.view(), x, n, &mut y);
        comm.all_reduce_sum(&mut y)?;
        Ok(y)
    }
}

/// This rank's part of one transformer block.
#[derive(Debug)]
pub struct Layer {
    pub index: usize,
    /// `[hidden]`
    pub attn_norm: Vec<f32>,
    pub q: ColumnParallelLinear,
    pub k: ColumnParallelLinear,
    pub v: ColumnParallelLinear,
    pub o: RowParallelLinear,
    /// `[hidden]`
    pub ffn_norm: Vec<f32>,
    pub gate: ColumnParallelLinear,
    pub up: ColumnParallelLinear,
    pub down: RowParallelLinear,
}

/// Shapes and tables shared by every layer of one forward pass.
pub struct Step<'a> {
    pub batch: &'a Batch<'a>,
    pub rope: &'a RopeTables,
    pub eps: f32,
    pub head_dim: usize,
    /// Local KV head read by each local query head, `[q_heads_local]`.
    pub kv_of_q: &'a [usize],
}

impl Layer {
    /// Adds this block's contribution to the residual stream `x` (`[n_tokens, hidden]`).
    pub fn forward(
        &self,
        step: &Step<'_>,
        x: &mut [f32],
        kv: &mut KvCache,
        comm: &mut dyn Collective,
    ) -> Result<(), ModelError> {
        let n = step.batch.n_tokens();
        let mut h = vec![0.0; x.len()];

        ops::rms_norm(x, &self.attn_norm, step.eps, &mut h);
        let attn = self.attention(step, &h, kv)?;
        let out = self.o.forward(&attn, n, comm)?;
        x.iter_mut().zip(&out).for_each(|(x, o)| *x += o);

        ops::rms_norm(x, &self.ffn_norm, step.eps, &mut h);
        let mut gate = self.gate.forward(&h, n);
        let up = self.up.forward(&h, n);
        ops::silu_mul(&mut gate, &up);
        let out = self.down.forward(&gate, n, comm)?;
        x.iter_mut().zip(&out).for_each(|(x, o)| *x += o);
        Ok(())
    }

    /// Causal attention of every token over its sequence's cache; returns
    /// `[n_tokens, q_heads_local * head_dim]`.
    fn attention(
        &self,
        step: &Step<'_>,
        h: &[f32],
        kv: &mut KvCache,
    ) -> Result<Vec<f32>, ModelError> {
        let n = step.batch.n_tokens();
        let mut q = self.q.forward(h, n);
        let mut k = self.k.forward(h, n);
        let v = self.v.forward(h, n);
        let q_row = q.len() / n;
        let kv_row = k.len() / n;

        // Rotate, then store this step's keys and values before anyone reads.
        for (t, (pos, table)) in step.batch.token_slots().enumerate() {
            step.rope.apply(t, &mut q[t * q_row..(t + 1) * q_row]);
            step.rope.apply(t, &mut k[t * kv_row..(t + 1) * kv_row]);
            kv.write(
                self.index,
                table,
                pos,
                &k[t * kv_row..(t + 1) * kv_row],
                &v[t * kv_row..(t + 1) * kv_row],
            );
        }

        let hd = step.head_dim;
        let scale = 1.0 / (hd as f32).sqrt();
        let slots: Vec<_> = step.batch.token_slots().collect();
        let kv = &*kv;
        let mut out = vec![0.0f32; n * q_row];
        out.par_chunks_mut(hd)
            .enumerate()
            .for_each(|(i, out_head)| {
                let (t, head) = (i / (q_row / hd), i % (q_row / hd));
                let (pos, table) = slots[t];
                let g = step.kv_of_q[head];
                let qh = &q[t * q_row + head * hd..t * q_row + (head + 1) * hd];
                let mut scores: Vec<f32> = (0..=pos)
                    .map(|p| {
                        let key = &kv.read(self.index, table, p).0[g * hd..(g + 1) * hd];
                        ops::dot(qh, key) * scale
                    })
                    .collect();
                ops::softmax(&mut scores);
                for (p, w) in scores.iter().enumerate() {
                    let value = &kv.read(self.index, table, p).1[g * hd..(g + 1) * hd];
                    out_head
                        .iter_mut()
                        .zip(value)
                        .for_each(|(o, v)| *o += w * v);
                }
            });
        Ok(out)
    }
}
