//! Rotary position embeddings (RoFormer, arXiv:2104.09864) as Llama applies
//! them to queries and keys.

use tessera_formats::RopeStyle;

/// cos/sin tables for the positions of one forward pass.
#[derive(Debug)]
pub struct RopeTables {
    style: RopeStyle,
    half: usize,
    /// `[n_tokens, head_dim / 2]`
    cos: Vec<f32>,
    /// `[n_tokens, head_dim / 2]`
    sin: Vec<f32>,
}

impl RopeTables {
    /// Tables for `positions` (one per token), from inverse frequencies
    /// `[head_dim / 2]`.
    pub fn new(style: RopeStyle, inv_freq: &[f32], positions: &[usize]) -> Self {
        let half = inv_freq.len();
        let mut cos = Vec::with_capacity(positions.len() * half);
        let mut sin = Vec::with_capacity(positions.len() * half);
        for &p in positions {
            for &f in inv_freq {
                // The angle is formed in f32 as the reference implementations do.
                let angle = p as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        Self {
            style,
            half,
            cos,
            sin,
        }
    }

    /// Rotates every head of token `t`'s row `x` (`[n_heads, head_dim]`) in place.
    pub fn apply(&self, t: usize, x: &mut [f32]) {
        let cos = &self.cos[t * self.half..(t + 1) * self.half];
        let sin = &self.sin[t * self.half..(t + 1) * self.half];
        for head in x.chunks_exact_mut(2 * self.half) {
            for i in 0..self.half {
                let (a, b) = match self.style {
                    RopeStyle::Interleaved => (2 * i, 2 * i + 1),
                    RopeStyle::HalfSplit => (i, i + self.half),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = x0 * cos[i] - x1 * sin[i];
                head[b] = x0 * sin[i] + x1 * cos[i];
            }
        }
    }
}
