//! The real SmolLM2-135M-Instruct GGUF: its configuration, its tensors, and
//! the error a truncated copy of it gives. Skipped (with a message) when the
//! model has not been fetched.

mod common;

use anyhow::ensure;
use common::{assert_mentions, expect_err, real_model};
use tessera_formats::{gguf, Architecture, FormatError, ModelFiles, RopeStyle};
use tessera_kernels::DType;

#[test]
fn smollm2_config() -> anyhow::Result<()> {
    let Some(path) = real_model() else {
        return Ok(());
    };
    let (config, _) = ModelFiles::open_weights(&path)?;

    assert_eq!(config.architecture, Architecture::Llama);
    assert_eq!(config.num_layers, 30);
    assert_eq!(config.hidden_size, 576);
    assert_eq!(config.intermediate_size, 1536);
    assert_eq!(config.num_heads, 9);
    assert_eq!(config.num_kv_heads, 3);
    assert_eq!(config.head_dim, 64);
    assert_eq!(config.vocab_size, 49152);
    assert_eq!(config.max_seq_len, 8192);
    assert_eq!(config.rope_theta, 100_000.0);
    assert!(
        (config.rms_norm_eps - 1e-5).abs() < 1e-9,
        "eps {}",
        config.rms_norm_eps
    );
    assert!(config.tie_word_embeddings);
    assert!(!config.qkv_bias);
    assert_eq!(config.rope_style, RopeStyle::Interleaved);
    assert_eq!(config.rope_scaling, None);
    Ok(())
}

#[test]
fn smollm2_tensors() -> anyhow::Result<()> {
    let Some(path) = real_model() else {
        return Ok(());
    };
    let (_, store) = ModelFiles::open_weights(&path)?;

    assert_eq!(store.len(), 272);
    assert!(store.info("output.weight").is_none(), "embeddings are tied");
    let expected = [
        ("token_embd.weight", DType::Q8_0, vec![49152, 576]),
        ("blk.0.attn_norm.weight", DType::F32, vec![576]),
        ("blk.0.attn_q.weight", DType::Q4_1, vec![576, 576]),
        ("blk.0.attn_k.weight", DType::Q4_1, vec![192, 576]),
        ("blk.29.attn_v.weight", DType::Q4_1, vec![192, 576]),
        ("blk.7.attn_output.weight", DType::Q4_1, vec![576, 576]),
        ("blk.29.ffn_norm.weight", DType::F32, vec![576]),
        ("blk.3.ffn_gate.weight", DType::Q4_1, vec![1536, 576]),
        ("blk.3.ffn_up.weight", DType::Q4_1, vec![1536, 576]),
        ("blk.3.ffn_down.weight", DType::Q4_1, vec![576, 1536]),
        ("output_norm.weight", DType::F32, vec![576]),
    ];
    for (name, dtype, shape) in expected {
        let info = store.expect(name, &shape)?;
        assert_eq!(info.dtype, dtype, "{name}");
        let numel = shape.iter().product();
        assert_eq!(
            Some(store.bytes(info).len()),
            dtype.bytes_for(numel),
            "{name}"
        );
    }

    // Norm weights are plain F32 numbers near 1, so the ranges point at data.
    let norm = store.info("output_norm.weight").expect("checked above");
    let first = f32::from_le_bytes(store.bytes(norm)[..4].try_into()?);
    ensure!(
        first.is_finite() && first > 0.0 && first < 10.0,
        "output_norm[0] = {first}"
    );
    Ok(())
}

#[test]
fn smollm2_metadata() -> anyhow::Result<()> {
    let Some(path) = real_model() else {
        return Ok(());
    };
    let file = gguf::open(&path)?;

    assert_eq!(file.version, 3);
    assert_eq!(file.tensors.len(), 272);
    assert_eq!(
        file.get("general.architecture").and_then(|v| v.as_str()),
        Some("llama")
    );
    let tokens = file
        .get("tokenizer.ggml.tokens")
        .and_then(|v| v.as_array())
        .map(<[_]>::len);
    assert_eq!(tokens, Some(49152));
    let template = file
        .get("tokenizer.chat_template")
        .and_then(|v| v.as_str())
        .unwrap_or_default();
    assert!(
        template.contains("im_start"),
        "chat template: {template:.80}"
    );
    for t in &file.tensors {
        assert_eq!(t.range.start % 32, 0, "{} misaligned", t.name);
    }
    Ok(())
}

#[test]
fn truncated_real_file_names_tensor_and_sizes() -> anyhow::Result<()> {
    let Some(path) = real_model() else {
        return Ok(());
    };
    let bytes = std::fs::read(&path)?;
    let dir = tempfile::tempdir()?;
    let cut = dir.path().join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2])?;

    let err = expect_err(gguf::open(&cut))?;
    assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
    assert_mentions(
        &err,
        &[
            "cut.gguf",
            "tensor `blk.",
            "bytes at offset",
            "are available",
            "truncated",
        ],
    )?;
    Ok(())
}

#[test]
fn smollm2_opens_whole() -> anyhow::Result<()> {
    let Some(path) = real_model() else {
        return Ok(());
    };
    let files = ModelFiles::open(&path)?;
    assert_eq!(files.source, path);
    assert_eq!(files.config.num_layers, 30);
    assert_eq!(files.tensors.len(), 272);
    assert_eq!(files.tensors.architecture(), "llama");
    assert!(
        files.chat_template.is_some(),
        "SmolLM2 ships a chat template"
    );
    assert!(!files.tokenizer.eos_ids().is_empty());
    Ok(())
}
