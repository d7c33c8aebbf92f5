//! [`ModelConfig`] from a Hugging Face `config.json`.
//!
//! The JSON is read as a `serde_json` map rather than a derived struct so that
//! every error names the key at fault (`num_attention_heads`,
//! `rope_scaling.factor`). Hugging Face weights are not permuted for
//! interleaved RoPE, so every architecture gets [`RopeStyle::HalfSplit`].

use std::path::Path;

use serde_json::{Map, Value};

use super::{Architecture, ModelConfig, RopeScaling, RopeStyle};
use crate::FormatError;

/// Parses and validates the text of `config.json` at `path`.
pub(super) fn config_from_json(path: &Path, json: &str) -> Result<ModelConfig, FormatError> {
    let malformed = |reason: String| FormatError::Malformed {
        path: path.to_path_buf(),
        format: "config.json",
        reason,
    };
    let root: Value = serde_json::from_str(json).map_err(|e| malformed(e.to_string()))?;
    let obj = root
        .as_object()
        .ok_or_else(|| malformed("the top level is not a JSON object".into()))?;
    let j = Json {
        path,
        obj,
        prefix: "",
    };

    let architecture = architecture(&j)?;
    let hidden_size = j.required_usize("hidden_size")?;
    let num_heads = j.required_usize("num_attention_heads")?;
    let config = ModelConfig {
        architecture,
        hidden_size,
        intermediate_size: j.required_usize("intermediate_size")?,
        num_layers: j.required_usize("num_hidden_layers")?,
        num_heads,
        num_kv_heads: j.usize("num_key_value_heads")?.unwrap_or(num_heads),
        head_dim: j
            .usize("head_dim")?
            .unwrap_or_else(|| hidden_size.checked_div(num_heads).unwrap_or(0)),
        vocab_size: j.required_usize("vocab_size")?,
        max_seq_len: j.required_usize("max_position_embeddings")?,
        rope_theta: j.f32("rope_theta")?.unwrap_or(10_000.0),
        rope_style: RopeStyle::HalfSplit,
        rope_scaling: rope_scaling(&j)?,
        rms_norm_eps: j.required_f32("rms_norm_eps")?,
        tie_word_embeddings: j.bool("tie_word_embeddings")?.unwrap_or(false),
        qkv_bias: architecture.has_qkv_bias(),
    };
    config.validate_with(path, &|field| hf_key(field).to_string())?;
    Ok(config)
}

/// The `config.json` key a [`ModelConfig`] field comes from.
fn hf_key(field: &str) -> &str {
    match field {
        "num_layers" => "num_hidden_layers",
        "num_heads" => "num_attention_heads",
        "num_kv_heads" => "num_key_value_heads",
        "max_seq_len" => "max_position_embeddings",
        other => other,
    }
}

/// `model_type`, or failing that the first known class in `architectures`.
fn architecture(j: &Json<'_>) -> Result<Architecture, FormatError> {
    let unsupported = |arch: &str| FormatError::UnsupportedArchitecture {
        path: j.path.to_path_buf(),
        arch: arch.to_string(),
    };
    if let Some(model_type) = j.str("model_type")? {
        return Architecture::from_name(model_type).ok_or_else(|| unsupported(model_type));
    }
    let classes: Vec<&str> = match j.get("architectures") {
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let from_class = |class: &str| match class {
        "LlamaForCausalLM" => Some(Architecture::Llama),
        "MistralForCausalLM" => Some(Architecture::Mistral),
        "Qwen2ForCausalLM" => Some(Architecture::Qwen2),
        _ => None,
    };
    match (classes.iter().find_map(|c| from_class(c)), classes.first()) {
        (Some(arch), _) => Ok(arch),
        (None, Some(first)) => Err(unsupported(first)),
        (None, None) => Err(j.err(
            "model_type",
            "is missing, and `architectures` names no model class".into(),
        )),
    }
}

/// `rope_scaling`: absent, null or `default` means none; `llama3` is read;
/// anything else is an error.
fn rope_scaling(j: &Json<'_>) -> Result<Option<RopeScaling>, FormatError> {
    let obj = match j.get("rope_scaling") {
        None => return Ok(None),
        Some(Value::Object(obj)) => obj,
        Some(other) => {
            return Err(j.err(
                "rope_scaling",
                format!("must be an object or null, found {other}"),
            ))
        }
    };
    let rs = Json {
        path: j.path,
        obj,
        prefix: "rope_scaling.",
    };
    let kind = match rs.str("rope_type")? {
        Some(kind) => kind,
        None => rs
            .str("type")?
            .ok_or_else(|| rs.err("rope_type", "is missing".into()))?,
    };
    match kind {
        "default" => Ok(None),
        "llama3" => Ok(Some(RopeScaling::Llama3 {
            factor: rs.required_f32("factor")?,
            low_freq_factor: rs.required_f32("low_freq_factor")?,
            high_freq_factor: rs.required_f32("high_freq_factor")?,
            original_max_position: rs.required_usize("original_max_position_embeddings")?,
        })),
        other => Err(rs.err(
            "rope_type",
            format!("`{other}` is not supported; supported: llama3"),
        )),
    }
}

/// One JSON object with typed, key-naming accessors; `null` counts as absent.
struct Json<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
    /// Prepended to keys in errors, for nested objects (`rope_scaling.`).
    prefix: &'static str,
}

impl<'a> Json<'a> {
    fn err(&self, key: &str, reason: String) -> FormatError {
        FormatError::Config {
            path: self.path.to_path_buf(),
            key: format!("{}{key}", self.prefix),
            reason,
        }
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.obj.get(key).filter(|v| !v.is_null())
    }

    fn usize(&self, key: &str) -> Result<Option<usize>, FormatError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.as_u64().and_then(|v| usize::try_from(v).ok()) {
            Some(v) => Ok(Some(v)),
            None => Err(self.err(
                key,
                format!("must be a non-negative integer, found {value}"),
            )),
        }
    }

    fn required_usize(&self, key: &str) -> Result<usize, FormatError> {
        self.usize(key)?
            .ok_or_else(|| self.err(key, "is missing".into()))
    }

    fn f32(&self, key: &str) -> Result<Option<f32>, FormatError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        match value.as_f64() {
            Some(v) => Ok(Some(v as f32)),
            None => Err(self.err(key, format!("must be a number, found {value}"))),
        }
    }

    fn required_f32(&self, key: &str) -> Result<f32, FormatError> {
        self.f32(key)?
            .ok_or_else(|| self.err(key, "is missing".into()))
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, format!("must be true or false, found {other}"))),
        }
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, FormatError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, format!("must be a string, found {other}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TINY: &str = r#"{"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "vocab_size": 100, "max_position_embeddings": 256, "rms_norm_eps": 1e-6}"#;

    #[test]
    fn defaults_apply() {
        let c = config_from_json(Path::new("config.json"), TINY).expect("valid config");
        assert_eq!(c.head_dim, 16);
        assert_eq!(c.rope_theta, 10_000.0);
        assert!(!c.tie_word_embeddings);
        assert_eq!(c.rope_scaling, None);
    }

    #[test]
    fn key_named_on_bad_type() {
        let bad = TINY.replace("\"hidden_size\": 64", "\"hidden_size\": \"64\"");
        let e = config_from_json(Path::new("config.json"), &bad).expect_err("string dim");
        assert!(e.to_string().contains("`hidden_size`"), "{e}");
    }
}
