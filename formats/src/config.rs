//! What a model is: its architecture and dimensions, read from GGUF metadata
//! ([`ModelConfig::from_gguf`]) or a Hugging Face `config.json`
//! ([`ModelConfig::from_hf_config`]).
//!
//! Both readers end in [`ModelConfig::validate`], so a config that leaves
//! this module has non-zero dimensions, whole KV groups
//! (`num_heads % num_kv_heads == 0`), `hidden_size == num_heads * head_dim`,
//! an even `head_dim`, and positive, finite RoPE base and norm epsilon.

mod gguf;
mod hf_json;

use std::path::Path;

use crate::FormatError;

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

impl Architecture {
    /// The name GGUF files and Hugging Face `model_type` use.
    pub fn name(self) -> &'static str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Mistral => "mistral",
            Architecture::Qwen2 => "qwen2",
        }
    }

    /// The architecture called `name` (`llama`, `mistral`, `qwen2`).
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "llama" => Some(Architecture::Llama),
            "mistral" => Some(Architecture::Mistral),
            "qwen2" => Some(Architecture::Qwen2),
            _ => None,
        }
    }

    /// Whether q/k/v projections carry biases.
    pub fn has_qkv_bias(self) -> bool {
        self == Architecture::Qwen2
    }
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
    /// Reads the configuration from a GGUF file's metadata (and, for the
    /// tied LM head and RoPE factors, its tensor list), then validates it.
    pub fn from_gguf(file: &crate::gguf::GgufFile) -> Result<Self, FormatError> {
        gguf::config_from_gguf(file)
    }

    /// Reads and validates a Hugging Face `config.json` at `path`.
    pub fn from_hf_config(path: &Path) -> Result<Self, FormatError> {
        let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
            path: path.to_path_buf(),
            error: source,
        })?;
        Self::from_hf_json(path, &text)
    }

    /// Parses and validates the text of a Hugging Face `config.json`; `path`
    /// names it in errors.
    pub fn from_hf_json(path: &Path, json: &str) -> Result<Self, FormatError> {
        hf_json::config_from_json(path, json)
    }

    /// Checks that the dimensions and options make a usable model; errors
    /// name the field and `path`.
    pub fn validate(&self, path: &Path) -> Result<(), FormatError> {
        self.validate_with(path, &|field| field.to_string())
    }

    /// [`Self::validate`], naming fields through `key` (which maps a field
    /// name to the key the source file uses for it).
    pub(crate) fn validate_with(
        &self,
        path: &Path,
        key: &dyn Fn(&str) -> String,
    ) -> Result<(), FormatError> {
        let err = |(field, reason): (&str, String)| FormatError::Config {
            path: path.to_path_buf(),
            key: key(field),
            reason,
        };
        self.validate_dims().map_err(err)?;
        self.validate_rope_and_norm().map_err(err)
    }

    /// Checks the dimensions; the field at fault and why on failure.
    fn validate_dims(&self) -> Result<(), (&'static str, String)> {
        let dims = [
            ("hidden_size", self.hidden_size),
            ("intermediate_size", self.intermediate_size),
            ("num_layers", self.num_layers),
            ("num_heads", self.num_heads),
            ("num_kv_heads", self.num_kv_heads),
            ("head_dim", self.head_dim),
            ("vocab_size", self.vocab_size),
            ("max_seq_len", self.max_seq_len),
        ];
        if let Some((field, _)) = dims.iter().find(|(_, v)| *v == 0) {
            return Err((field, "must be greater than zero".into()));
        }
        if !self.num_heads.is_multiple_of(self.num_kv_heads) {
            let reason = format!(
                "({}) must divide the number of attention heads ({})",
                self.num_kv_heads, self.num_heads
            );
            return Err(("num_kv_heads", reason));
        }
        if !self.head_dim.is_multiple_of(2) {
            return Err((
                "head_dim",
                format!("({}) must be even for RoPE", self.head_dim),
            ));
        }
        if self.num_heads.checked_mul(self.head_dim) != Some(self.hidden_size) {
            let reason = format!(
                "({}) must equal num_heads ({}) * head_dim ({}) for {} models",
                self.hidden_size,
                self.num_heads,
                self.head_dim,
                self.architecture.name()
            );
            return Err(("hidden_size", reason));
        }
        Ok(())
    }

    /// Checks RoPE's base and scaling and the norm epsilon.
    fn validate_rope_and_norm(&self) -> Result<(), (&'static str, String)> {
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err((
                "rope_theta",
                format!("({}) must be positive and finite", self.rope_theta),
            ));
        }
        if !(self.rms_norm_eps.is_finite() && self.rms_norm_eps > 0.0) {
            return Err((
                "rms_norm_eps",
                format!("({}) must be positive and finite", self.rms_norm_eps),
            ));
        }
        self.validate_rope_scaling()
            .map_err(|reason| ("rope_scaling", reason))
    }

    /// Checks the RoPE scaling parameters; the reason on failure.
    fn validate_rope_scaling(&self) -> Result<(), String> {
        let positive = |v: f32| v.is_finite() && v > 0.0;
        match &self.rope_scaling {
            None => Ok(()),
            Some(RopeScaling::Factors(f)) if f.len() != self.head_dim / 2 => Err(format!(
                "has {} factors; head_dim / 2 = {} expected",
                f.len(),
                self.head_dim / 2
            )),
            Some(RopeScaling::Factors(f)) => match f.iter().find(|v| !positive(**v)) {
                Some(v) => Err(format!("factor {v} must be positive and finite")),
                None => Ok(()),
            },
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position,
            }) => {
                if !(positive(*factor) && positive(*low_freq_factor) && positive(*high_freq_factor))
                {
                    Err(
                        "factor, low_freq_factor and high_freq_factor must be positive and finite"
                            .into(),
                    )
                } else if high_freq_factor <= low_freq_factor {
                    Err(format!("high_freq_factor ({high_freq_factor}) must exceed low_freq_factor ({low_freq_factor})"))
                } else if *original_max_position == 0 {
                    Err("original_max_position_embeddings must be greater than zero".into())
                } else {
                    Ok(())
                }
            }
        }
    }

    /// RoPE inverse frequencies, `[head_dim / 2]`, with any scaling applied.
    pub fn rope_inv_freq(&self) -> Vec<f32> {
        let half = self.head_dim / 2;
        let base: Vec<f32> = (0..half)
            .map(|i| 1.0 / self.rope_theta.powf(2.0 * i as f32 / self.head_dim as f32))
            .collect();
        match &self.rope_scaling {
            None => base,
            Some(RopeScaling::Factors(f)) => base.iter().zip(f).map(|(b, f)| b / f).collect(),
            Some(RopeScaling::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position,
            }) => {
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
                            let smooth = (old / wavelen - low_freq_factor)
                                / (high_freq_factor - low_freq_factor);
                            (1.0 - smooth) * f / factor + smooth * f
                        }
                    })
                    .collect()
            }
        }
    }
}
