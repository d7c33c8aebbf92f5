//! What a model is: its architecture and dimensions, read from GGUF metadata
//! or a Hugging Face `config.json`.

/// A supported model family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    /// Llama 2/3/3.1, SmolLM and other `llama` GGUFs.
    Llama,
    /// Mistral (Llama layout; sliding-window attention is not used).
    Mistral,
    /// Qwen2: biases on q/k/v, usually an untied LM head.
    Qwen2,
}

/// How RoPE pairs the features of a head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RopeStyle {
    /// Pairs `(2i, 2i + 1)`: GGUF llama/mistral files, whose q/k rows the
    /// converter permuted.
    Interleaved,
    /// Pairs `(i, i + head_dim / 2)`: Hugging Face weights and GGUF qwen2.
    HalfSplit,
}

/// A change to RoPE's frequencies for long contexts.
#[derive(Debug, Clone, PartialEq)]
pub enum RopeScaling {
    /// Llama 3.1's frequency-dependent scaling (from `config.json`).
    Llama3 {
        factor: f32,
        low_freq_factor: f32,
        high_freq_factor: f32,
        original_max_position: usize,
    },
    /// One divisor per frequency, `[head_dim / 2]` (GGUF `rope_freqs.weight`).
    Factors(Vec<f32>),
}

/// The dimensions and options of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub vocab_size: usize,
    /// Longest sequence (prompt + generated tokens) the model was trained for.
    pub max_seq_len: usize,
    pub rope_theta: f32,
    pub rope_style: RopeStyle,
    pub rope_scaling: Option<RopeScaling>,
    pub rms_norm_eps: f32,
    /// Whether the LM head reuses `token_embd.weight`.
    pub tie_word_embeddings: bool,
    /// Whether q/k/v projections carry biases (Qwen2).
    pub qkv_bias: bool,
}

impl ModelConfig {
    /// RoPE inverse frequencies, `[head_dim / 2]`, with any scaling applied.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        let base: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f32 / self.head_dim as f32))
            .collect();
        match &self.rope_scaling {
            None => base,
            Some(RopeScaling::Factors(f)) => base.iter().zip(f).map(|(b, f)| b / f).collect(),
            Some(RopeScaling::Llama3 { factor, low_freq_factor, high_freq_factor, original_max_position }) => {
                let old = *original_max_position as f32;
                let low_wavelen = old / low_freq_factor;
                let high_wavelen = old / high_freq_factor;
                base.iter()
                    .map(|&f| {
                        let wavelen = 2.0 * std::f32::consts::PI / f;
                        if wavelen < high_wavelen {
                            f
                        } else if wavelen > low_wavelen {
                            f / factor
                        } else {
                            let smooth = (old / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}
