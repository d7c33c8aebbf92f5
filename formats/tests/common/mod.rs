//! Helpers shared by the loader tests: the real model's path, tiny synthetic
//! models (GGUF and Hugging Face), and byte patching for corrupt files.

#![allow(dead_code)] // each test binary uses a different subset

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use safetensors::tensor::TensorView;
use safetensors::Dtype;
use tessera_formats::gguf::GgufWriter;
use tessera_formats::FormatError;
use tessera_kernels::DType;

/// The SmolLM2 GGUF, if `scripts/` has fetched it.
pub fn real_model() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        Some(path)
    } else {
        println!(
            "SKIPPED: {} is absent; run the model fetch script",
            path.display()
        );
        None
    }
}

/// The error of `result`, or a test failure if it succeeded.
pub fn expect_err<T: std::fmt::Debug>(
    result: Result<T, FormatError>,
) -> anyhow::Result<FormatError> {
    match result {
        Ok(v) => bail!("expected an error, got {v:?}"),
        Err(e) => Ok(e),
    }
}

/// Fails unless the message of `err` contains every one of `parts`.
pub fn assert_mentions(err: &FormatError, parts: &[&str]) -> anyhow::Result<()> {
    let msg = err.to_string();
    for part in parts {
        if !msg.contains(part) {
            bail!("error `{msg}` does not mention `{part}`");
        }
    }
    Ok(())
}

/// Where `needle` first occurs in `haystack`.
pub fn find(haystack: &[u8], needle: &[u8]) -> anyhow::Result<usize> {
    haystack
        .windows(needle.len())
        .position(|w| w == needle)
        .ok_or_else(|| anyhow!("{:?} not found", String::from_utf8_lossy(needle)))
}

/// The byte offset of the tensor info for `name`: where its `n_dims` field is.
pub fn tensor_info_at(bytes: &[u8], name: &str) -> anyhow::Result<usize> {
    // A name is stored as its u64 length then its bytes.
    let mut encoded = (name.len() as u64).to_le_bytes().to_vec();
    encoded.extend_from_slice(name.as_bytes());
    let start = find(bytes, &encoded).with_context(|| format!("tensor info `{name}`"))?;
    Ok(start + encoded.len())
}

/// Dimensions of the tiny synthetic model.
#[derive(Debug, Clone)]
pub struct Tiny {
    pub arch: &'static str,
    pub hidden: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub ffn: usize,
    pub layers: usize,
    pub vocab: usize,
    pub tied: bool,
}

impl Tiny {
    /// A llama-shaped model small enough to write in milliseconds. `hidden`
    /// is 32 so that Q8_0 blocks fit along rows.
    pub fn llama() -> Self {
        Self {
            arch: "llama",
            hidden: 32,
            heads: 4,
            kv_heads: 2,
            ffn: 64,
            layers: 2,
            vocab: 16,
            tied: true,
        }
    }

    /// The Qwen2 variant: q/k/v biases and an untied LM head.
    pub fn qwen2() -> Self {
        Self {
            arch: "qwen2",
            tied: false,
            ..Self::llama()
        }
    }

    pub fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }

    /// Metadata `{arch}.*` and `general.*` keys.
    pub fn metadata(&self) -> Vec<(String, tessera_formats::gguf::Value)> {
        let a = self.arch;
        vec![
            ("general.architecture".into(), a.into()),
            ("general.name".into(), "tiny test model".into()),
            (format!("{a}.block_count"), (self.layers as u32).into()),
            (format!("{a}.context_length"), 128u32.into()),
            (format!("{a}.embedding_length"), (self.hidden as u32).into()),
            (format!("{a}.feed_forward_length"), (self.ffn as u32).into()),
            (
                format!("{a}.attention.head_count"),
                (self.heads as u32).into(),
            ),
            (
                format!("{a}.attention.head_count_kv"),
                (self.kv_heads as u32).into(),
            ),
            (format!("{a}.rope.freq_base"), 10_000.0f32.into()),
            (
                format!("{a}.attention.layer_norm_rms_epsilon"),
                1e-6f32.into(),
            ),
            (format!("{a}.vocab_size"), (self.vocab as u32).into()),
        ]
    }

    /// Every tensor: canonical name, dtype and shape (outermost first).
    pub fn tensors(&self) -> Vec<(String, DType, Vec<usize>)> {
        let (h, f) = (self.hidden, self.ffn);
        let q = self.heads * self.head_dim();
        let kv = self.kv_heads * self.head_dim();
        let mut out = vec![(
            "token_embd.weight".to_string(),
            DType::Q8_0,
            vec![self.vocab, h],
        )];
        for i in 0..self.layers {
            let mut layer = vec![
                ("attn_norm.weight", DType::F32, vec![h]),
                ("attn_q.weight", DType::F32, vec![q, h]),
                ("attn_k.weight", DType::F32, vec![kv, h]),
                ("attn_v.weight", DType::F32, vec![kv, h]),
                ("attn_output.weight", DType::F32, vec![h, q]),
                ("ffn_norm.weight", DType::F32, vec![h]),
                ("ffn_gate.weight", DType::F32, vec![f, h]),
                ("ffn_up.weight", DType::F32, vec![f, h]),
                ("ffn_down.weight", DType::F32, vec![h, f]),
            ];
            if self.arch == "qwen2" {
                layer.extend([
                    ("attn_q.bias", DType::F32, vec![q]),
                    ("attn_k.bias", DType::F32, vec![kv]),
                    ("attn_v.bias", DType::F32, vec![kv]),
                ]);
            }
            out.extend(
                layer
                    .into_iter()
                    .map(|(n, d, s)| (format!("blk.{i}.{n}"), d, s)),
            );
        }
        out.push(("output_norm.weight".into(), DType::F32, vec![h]));
        if !self.tied {
            out.push(("output.weight".into(), DType::F32, vec![self.vocab, h]));
        }
        out
    }

    /// A GGUF writer holding the model, minus the keys and tensors in `omit`.
    pub fn gguf(&self, omit: &[&str]) -> anyhow::Result<GgufWriter> {
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut w = GgufWriter::new();
        for (key, value) in self.metadata() {
            if !omit.contains(&key.as_str()) {
                w.add_metadata(key, value);
            }
        }
        for (name, dtype, shape) in self.tensors() {
            if omit.contains(&name.as_str()) {
                continue;
            }
            let numel: usize = shape.iter().product();
            let bytes = dtype
                .bytes_for(numel)
                .ok_or_else(|| anyhow!("{name}: partial block"))?;
            let data: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
            w.add_tensor(name, dtype, &shape, data);
        }
        Ok(w)
    }
}

/// Random f32 values, fixed seed per call site.
pub fn random_f32(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(-1.0f32..1.0)).collect()
}

/// One tensor for a safetensors file: name, dtype, shape and bytes.
pub struct StTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl StTensor {
    /// A tensor of `shape` with random bytes of the right length.
    pub fn random(name: &str, dtype: Dtype, shape: &[usize], seed: u64) -> Self {
        let numel: usize = shape.iter().product();
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let data = (0..numel * dtype.bitsize() / 8)
            .map(|_| rng.random())
            .collect();
        Self {
            name: name.to_string(),
            dtype,
            shape: shape.to_vec(),
            data,
        }
    }
}

/// Writes `tensors` to `path` with the safetensors crate.
pub fn write_safetensors(path: &Path, tensors: &[StTensor]) -> anyhow::Result<()> {
    let views = tensors
        .iter()
        .map(|t| {
            Ok((
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data)?,
            ))
        })
        .collect::<anyhow::Result<HashMap<_, _>>>()?;
    let bytes = safetensors::serialize(&views, None)?;
    std::fs::write(path, bytes)?;
    Ok(())
}

/// A `config.json` for `tiny` in Hugging Face form.
pub fn hf_config(tiny: &Tiny) -> serde_json::Value {
    serde_json::json!({
        "architectures": [if tiny.arch == "qwen2" { "Qwen2ForCausalLM" } else { "LlamaForCausalLM" }],
        "model_type": tiny.arch,
        "hidden_size": tiny.hidden,
        "intermediate_size": tiny.ffn,
        "num_hidden_layers": tiny.layers,
        "num_attention_heads": tiny.heads,
        "num_key_value_heads": tiny.kv_heads,
        "vocab_size": tiny.vocab,
        "max_position_embeddings": 128,
        "rope_theta": 500000.0,
        "rms_norm_eps": 1e-5,
        "tie_word_embeddings": tiny.tied,
        "rope_scaling": null,
        "torch_dtype": "bfloat16"
    })
}

/// The Hugging Face tensors of `tiny`, in `dtype`, plus an unused one.
pub fn hf_tensors(tiny: &Tiny, dtype: Dtype) -> Vec<StTensor> {
    let (h, f) = (tiny.hidden, tiny.ffn);
    let q = tiny.heads * tiny.head_dim();
    let kv = tiny.kv_heads * tiny.head_dim();
    let mut specs: Vec<(String, Vec<usize>)> = vec![
        ("model.embed_tokens.weight".into(), vec![tiny.vocab, h]),
        ("model.norm.weight".into(), vec![h]),
        ("lm_head.weight".into(), vec![tiny.vocab, h]),
    ];
    for i in 0..tiny.layers {
        let p = format!("model.layers.{i}");
        specs.extend([
            (format!("{p}.input_layernorm.weight"), vec![h]),
            (format!("{p}.self_attn.q_proj.weight"), vec![q, h]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv, h]),
            (format!("{p}.self_attn.o_proj.weight"), vec![h, q]),
            (format!("{p}.post_attention_layernorm.weight"), vec![h]),
            (format!("{p}.mlp.gate_proj.weight"), vec![f, h]),
            (format!("{p}.mlp.up_proj.weight"), vec![f, h]),
            (format!("{p}.mlp.down_proj.weight"), vec![h, f]),
            (
                format!("{p}.self_attn.rotary_emb.inv_freq"),
                vec![tiny.head_dim() / 2],
            ),
        ]);
        if tiny.arch == "qwen2" {
            specs.extend([
                (format!("{p}.self_attn.q_proj.bias"), vec![q]),
                (format!("{p}.self_attn.k_proj.bias"), vec![kv]),
                (format!("{p}.self_attn.v_proj.bias"), vec![kv]),
            ]);
        }
    }
    specs
        .iter()
        .enumerate()
        .map(|(i, (name, shape))| StTensor::random(name, dtype, shape, i as u64))
        .collect()
}

/// Writes a single-file Hugging Face folder for `tiny` into `dir`.
pub fn write_hf_folder(dir: &Path, tiny: &Tiny, dtype: Dtype) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string_pretty(&hf_config(tiny))?,
    )?;
    write_safetensors(&dir.join("model.safetensors"), &hf_tensors(tiny, dtype))
}
