//! [`ModelConfig`] from GGUF metadata (`{arch}.*` keys) and tensor list.
//!
//! GGUF llama/mistral files store q/k rows permuted for interleaved RoPE
//! (llama.cpp's converter does this), so they get [`RopeStyle::Interleaved`];
//! qwen2 files are not permuted and get [`RopeStyle::HalfSplit`].

use tessera_kernels::DType;

use super::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use crate::gguf::{GgufFile, Value};
use crate::FormatError;

const ARCH_KEY: &str = "general.architecture";
const TOKENS_KEY: &str = "tokenizer.ggml.tokens";
const ROPE_FREQS: &str = "rope_freqs.weight";

/// Reads and validates the configuration of `file`.
pub(super) fn config_from_gguf(file: &GgufFile) -> Result<ModelConfig, FormatError> {
    let arch_name = match file.get(ARCH_KEY) {
        Some(Value::String(s)) => s.as_str(),
        Some(other) => {
            return Err(config_err(
                file,
                ARCH_KEY,
                format!("must be a string, found {}", describe(other)),
            ))
        }
        None => return Err(config_err(file, ARCH_KEY, "is missing".into())),
    };
    let architecture =
        Architecture::from_name(arch_name).ok_or_else(|| FormatError::UnsupportedArchitecture {
            path: file.path.clone(),
            arch: arch_name.to_string(),
        })?;
    let keys = Keys {
        file,
        arch: arch_name,
    };
    keys.reject_rope_scaling_type()?;

    let hidden_size = keys.required_usize("embedding_length")?;
    let num_heads = keys.required_usize("attention.head_count")?;
    let head_dim = match keys.usize("attention.key_length")? {
        Some(d) => d,
        None => hidden_size.checked_div(num_heads).unwrap_or(0),
    };
    keys.check_rope_dimensions(head_dim)?;

    let config = ModelConfig {
        architecture,
        hidden_size,
        intermediate_size: keys.required_usize("feed_forward_length")?,
        num_layers: keys.required_usize("block_count")?,
        num_heads,
        num_kv_heads: keys.usize("attention.head_count_kv")?.unwrap_or(num_heads),
        head_dim,
        vocab_size: keys.vocab_size()?,
        max_seq_len: keys.required_usize("context_length")?,
        rope_theta: keys.f32("rope.freq_base")?.unwrap_or(10_000.0),
        rope_style: match architecture {
            Architecture::Llama | Architecture::Mistral => RopeStyle::Interleaved,
            Architecture::Qwen2 => RopeStyle::HalfSplit,
        },
        rope_scaling: rope_factors(file, head_dim)?,
        rms_norm_eps: keys
            .f32("attention.layer_norm_rms_epsilon")?
            .ok_or_else(|| {
                config_err(
                    file,
                    &keys.key("attention.layer_norm_rms_epsilon"),
                    "is missing".into(),
                )
            })?,
        tie_word_embeddings: file.tensor("output.weight").is_none(),
        qkv_bias: architecture.has_qkv_bias(),
    };
    config.validate_with(&file.path, &|field| keys.key_for_field(field))?;
    Ok(config)
}

fn config_err(file: &GgufFile, key: &str, reason: String) -> FormatError {
    FormatError::Config {
        path: file.path.clone(),
        key: key.to_string(),
        reason,
    }
}

/// A value, briefly, for error messages (arrays can hold 100k strings).
fn describe(value: &Value) -> String {
    match value {
        Value::String(_) => "a string".into(),
        Value::Array(a) => format!("an array of {} values", a.len()),
        other => format!("{other:?}"),
    }
}

/// The `{arch}.*` keys of one file.
struct Keys<'a> {
    file: &'a GgufFile,
    arch: &'a str,
}

impl Keys<'_> {
    fn key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch)
    }

    /// The GGUF key (or tensor) a [`ModelConfig`] field comes from.
    fn key_for_field(&self, field: &str) -> String {
        let suffix = match field {
            "hidden_size" => "embedding_length",
            "intermediate_size" => "feed_forward_length",
            "num_layers" => "block_count",
            "num_heads" => "attention.head_count",
            "num_kv_heads" => "attention.head_count_kv",
            "head_dim" => "attention.key_length",
            "vocab_size" => "vocab_size",
            "max_seq_len" => "context_length",
            "rope_theta" => "rope.freq_base",
            "rms_norm_eps" => "attention.layer_norm_rms_epsilon",
            "rope_scaling" => return ROPE_FREQS.to_string(),
            other => return other.to_string(),
        };
        self.key(suffix)
    }

    /// An optional unsigned integer.
    fn usize(&self, suffix: &str) -> Result<Option<usize>, FormatError> {
        let key = self.key(suffix);
        let Some(value) = self.file.get(&key) else {
            return Ok(None);
        };
        match value.as_u64().and_then(|v| usize::try_from(v).ok()) {
            Some(v) => Ok(Some(v)),
            None if value.as_array().is_some() => Err(config_err(
                self.file,
                &key,
                "is a per-layer array; Tessera needs one value for all layers".into(),
            )),
            None => Err(config_err(
                self.file,
                &key,
                format!("must be a non-negative integer, found {}", describe(value)),
            )),
        }
    }

    fn required_usize(&self, suffix: &str) -> Result<usize, FormatError> {
        self.usize(suffix)?
            .ok_or_else(|| config_err(self.file, &self.key(suffix), "is missing".into()))
    }

    /// An optional number, as f32.
    fn f32(&self, suffix: &str) -> Result<Option<f32>, FormatError> {
        let key = self.key(suffix);
        match self.file.get(&key) {
            None => Ok(None),
            Some(value) => match value.as_f64() {
                Some(v) => Ok(Some(v as f32)),
                None => Err(config_err(
                    self.file,
                    &key,
                    format!("must be a number, found {}", describe(value)),
                )),
            },
        }
    }

    /// The vocabulary size: `{arch}.vocab_size`, else the tokenizer's token
    /// count, else the rows of `token_embd.weight`.
    fn vocab_size(&self) -> Result<usize, FormatError> {
        if let Some(v) = self.usize("vocab_size")? {
            return Ok(v);
        }
        if let Some(tokens) = self.file.get(TOKENS_KEY).and_then(Value::as_array) {
            return Ok(tokens.len());
        }
        match self
            .file
            .tensor("token_embd.weight")
            .and_then(|t| t.shape.first())
        {
            Some(&rows) => Ok(rows),
            None => Err(config_err(
                self.file,
                &self.key("vocab_size"),
                format!("is missing, and neither `{TOKENS_KEY}` nor `token_embd.weight` gives it"),
            )),
        }
    }

    /// Only unscaled RoPE (or scaling via `rope_freqs.weight`) is implemented.
    fn reject_rope_scaling_type(&self) -> Result<(), FormatError> {
        let key = self.key("rope.scaling.type");
        match self.file.get(&key) {
            None => Ok(()),
            Some(Value::String(s)) if s == "none" => Ok(()),
            Some(v) => Err(config_err(
                self.file,
                &key,
                format!("is {v:?}; only unscaled RoPE or `{ROPE_FREQS}` factors are supported"),
            )),
        }
    }

    /// Partial rotary embeddings are not implemented: RoPE must span the head.
    fn check_rope_dimensions(&self, head_dim: usize) -> Result<(), FormatError> {
        match self.usize("rope.dimension_count")? {
            Some(d) if d != head_dim => Err(config_err(
                self.file,
                &self.key("rope.dimension_count"),
                format!("({d}) differs from head_dim ({head_dim}); partial rotary embeddings are not supported"),
            )),
            _ => Ok(()),
        }
    }
}

/// RoPE frequency divisors from `rope_freqs.weight` (F32, `[head_dim / 2]`),
/// if the file has them.
fn rope_factors(file: &GgufFile, head_dim: usize) -> Result<Option<RopeScaling>, FormatError> {
    let Some(tensor) = file.tensor(ROPE_FREQS) else {
        return Ok(None);
    };
    if tensor.dtype != DType::F32 {
        return Err(config_err(
            file,
            ROPE_FREQS,
            format!("must be F32, found {}", tensor.dtype),
        ));
    }
    if tensor.shape != [head_dim / 2] {
        return Err(FormatError::ShapeMismatch {
            path: file.path.clone(),
            tensor: ROPE_FREQS.to_string(),
            expected: vec![head_dim / 2],
            actual: tensor.shape.clone(),
        });
    }
    let bytes = file
        .tensor_bytes(tensor)
        .ok_or_else(|| config_err(file, ROPE_FREQS, "lies outside the file".into()))?;
    let factors = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("chunks_exact yields 4 bytes")))
        .collect();
    Ok(Some(RopeScaling::Factors(factors)))
}
