//! GGUF writer → reader round trips, configuration from metadata, and the
//! errors that corrupt or inconsistent files give.

mod common;

use std::path::{Path, PathBuf};

use anyhow::ensure;
use common::{assert_mentions, expect_err, find, random_f32, tensor_info_at, Tiny};
use tessera_formats::gguf::{self, GgufWriter, Value};
use tessera_formats::{FormatError, ModelConfig, ModelFiles, RopeScaling, RopeStyle};
use tessera_kernels::DType;

/// Writes `w` to a new file in `dir`.
fn write(dir: &Path, w: &GgufWriter) -> anyhow::Result<PathBuf> {
    let path = dir.join("model.gguf");
    w.write(&path)?;
    Ok(path)
}

/// Writes the tiny llama, lets `patch` corrupt its bytes, and opens it.
fn open_patched(
    patch: impl FnOnce(&mut Vec<u8>) -> anyhow::Result<()>,
) -> anyhow::Result<FormatError> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), &Tiny::llama().gguf(&[])?)?;
    let mut bytes = std::fs::read(&path)?;
    patch(&mut bytes)?;
    std::fs::write(&path, &bytes)?;
    expect_err(gguf::open(&path))
}

#[test]
fn round_trip_metadata_and_tensors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let values = random_f32(3 * 64, 1);
    let q8: Vec<u8> = (0..2 * 34).map(|i| i as u8).collect();
    let nested = Value::Array(vec![
        Value::Array(vec![1u32.into(), 2u32.into()]),
        Value::Array(vec!["x".into()]),
    ]);
    let mut w = GgufWriter::new();
    w.set_version(2)
        .set_alignment(64)
        .add_metadata("u8", 7u8)
        .add_metadata("i8", -7i8)
        .add_metadata("u16", 700u16)
        .add_metadata("i16", -700i16)
        .add_metadata("u32", 70_000u32)
        .add_metadata("i32", -70_000i32)
        .add_metadata("u64", u64::MAX)
        .add_metadata("i64", i64::MIN)
        .add_metadata("f32", 1.5f32)
        .add_metadata("f64", -2.25f64)
        .add_metadata("bool", true)
        .add_metadata("string", "héllo")
        .add_metadata("strings", vec!["a", "", "ccc"])
        .add_metadata("empty", Value::Array(vec![]))
        .add_metadata("nested", nested.clone())
        .add_f32_tensor("f32", &[3, 64], &values)
        .add_tensor("q8", DType::Q8_0, &[2, 32], q8.clone())
        .add_tensor("f16", DType::F16, &[5], vec![0u8; 10]);
    let path = write(dir.path(), &w)?;

    let file = gguf::open(&path)?;
    assert_eq!(file.version, 2);
    let get = |k: &str| file.get(k).cloned();
    assert_eq!(get("u8"), Some(Value::U8(7)));
    assert_eq!(get("i8"), Some(Value::I8(-7)));
    assert_eq!(get("u16"), Some(Value::U16(700)));
    assert_eq!(get("i16"), Some(Value::I16(-700)));
    assert_eq!(get("u32"), Some(Value::U32(70_000)));
    assert_eq!(get("i32"), Some(Value::I32(-70_000)));
    assert_eq!(get("u64"), Some(Value::U64(u64::MAX)));
    assert_eq!(get("i64"), Some(Value::I64(i64::MIN)));
    assert_eq!(get("f32"), Some(Value::F32(1.5)));
    assert_eq!(get("f64"), Some(Value::F64(-2.25)));
    assert_eq!(get("bool"), Some(Value::Bool(true)));
    assert_eq!(get("string"), Some(Value::String("héllo".into())));
    assert_eq!(get("strings"), Some(vec!["a", "", "ccc"].into()));
    assert_eq!(get("empty"), Some(Value::Array(vec![])));
    assert_eq!(get("nested"), Some(nested));
    assert_eq!(get("general.alignment"), Some(Value::U32(64)));

    let f32_t = file.tensor("f32").expect("written");
    assert_eq!(
        (f32_t.dtype, f32_t.shape.clone(), f32_t.dims.clone()),
        (DType::F32, vec![3, 64], vec![64, 3])
    );
    let read: Vec<f32> = file
        .tensor_bytes(f32_t)
        .unwrap_or_default()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    assert_eq!(read, values);
    let q8_t = file.tensor("q8").expect("written");
    assert_eq!((q8_t.ggml_type, q8_t.shape.clone()), (8, vec![2, 32]));
    assert_eq!(file.tensor_bytes(q8_t), Some(&q8[..]));
    for t in &file.tensors {
        ensure!(
            t.range.start % 64 == 0,
            "{} at {} is not 64-aligned",
            t.name,
            t.range.start
        );
    }
    Ok(())
}

#[test]
fn writer_rejects_wrong_byte_count() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = GgufWriter::new();
    w.add_tensor("t", DType::F32, &[4], vec![0u8; 15]);
    let err = expect_err(w.write(&dir.path().join("x.gguf")))?;
    assert_mentions(&err, &["x.gguf", "`t`", "needs 16 bytes, got 15"])
}

#[test]
fn tiny_llama_config_and_store() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tiny = Tiny::llama();
    let path = write(dir.path(), &tiny.gguf(&[])?)?;
    let (config, store) = ModelFiles::open_weights(&path)?;

    assert_eq!(
        (config.hidden_size, config.num_heads, config.num_kv_heads),
        (32, 4, 2)
    );
    assert_eq!(
        (config.head_dim, config.vocab_size, config.num_layers),
        (8, 16, 2)
    );
    assert_eq!(config.rope_style, RopeStyle::Interleaved);
    assert!(config.tie_word_embeddings && !config.qkv_bias);
    assert_eq!(store.len(), tiny.tensors().len());
    let embd = store.expect("token_embd.weight", &[16, 32])?;
    assert_eq!(
        (embd.dtype, store.bytes(embd).len()),
        (DType::Q8_0, 16 * 34)
    );
    Ok(())
}

#[test]
fn qwen2_gguf_is_half_split_with_biases() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tiny = Tiny::qwen2();
    let path = write(dir.path(), &tiny.gguf(&[])?)?;
    let (config, store) = ModelFiles::open_weights(&path)?;
    assert_eq!(config.rope_style, RopeStyle::HalfSplit);
    assert!(config.qkv_bias && !config.tie_word_embeddings);
    store.expect("blk.1.attn_k.bias", &[16])?;

    let path = write(dir.path(), &tiny.gguf(&["blk.1.attn_v.bias"])?)?;
    let err = expect_err(ModelFiles::open_weights(&path))?;
    assert!(matches!(err, FormatError::MissingTensor { .. }), "{err:?}");
    assert_mentions(&err, &["blk.1.attn_v.bias", "qwen2"])
}

#[test]
fn vocab_size_falls_back_to_embedding_rows() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), &Tiny::llama().gguf(&["llama.vocab_size"])?)?;
    let config = ModelConfig::from_gguf(&gguf::open(&path)?)?;
    assert_eq!(config.vocab_size, 16);
    Ok(())
}

#[test]
fn vocab_size_from_token_list() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&["llama.vocab_size"])?;
    w.add_metadata(
        "tokenizer.ggml.tokens",
        (0..16).map(|i| format!("t{i}")).collect::<Vec<_>>(),
    );
    let config = ModelConfig::from_gguf(&gguf::open(&write(dir.path(), &w)?)?)?;
    assert_eq!(config.vocab_size, 16);
    Ok(())
}

#[test]
fn key_length_sets_head_dim() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.attention.key_length", 16u32);
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    // 4 heads of 16 do not make a hidden size of 32.
    assert_mentions(
        &err,
        &[
            "llama.embedding_length",
            "(32) must equal num_heads (4) * head_dim (16)",
        ],
    )
}

#[test]
fn rope_freqs_become_factors() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_f32_tensor("rope_freqs.weight", &[4], &[1.0, 2.0, 4.0, 8.0]);
    let config = ModelConfig::from_gguf(&gguf::open(&write(dir.path(), &w)?)?)?;
    assert_eq!(
        config.rope_scaling,
        Some(RopeScaling::Factors(vec![1.0, 2.0, 4.0, 8.0]))
    );

    let mut w = Tiny::llama().gguf(&[])?;
    w.add_f32_tensor("rope_freqs.weight", &[3], &[1.0; 3]);
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    assert_mentions(&err, &["rope_freqs.weight", "[3]", "[4]"])
}

#[test]
fn bad_magic() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        b[..4].copy_from_slice(b"GGML");
        Ok(())
    })?;
    assert_mentions(&err, &["model.gguf", "bad magic", "expected \"GGUF\""])
}

#[test]
fn empty_file() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        b.clear();
        Ok(())
    })?;
    assert_mentions(
        &err,
        &["magic at offset 0 needs 4 bytes but only 0 are left"],
    )
}

#[test]
fn version_one_is_refused() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        Ok(())
    })?;
    assert!(
        matches!(err, FormatError::UnsupportedVersion { version: 1, .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["model.gguf", "GGUF v1 is not supported"])
}

#[test]
fn future_version_is_refused() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        b[4..8].copy_from_slice(&4u32.to_le_bytes());
        Ok(())
    })?;
    assert_mentions(&err, &["GGUF v4 is not supported", "2, 3"])
}

#[test]
fn absurd_string_length() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        // general.name's value: after the key, a u32 type then a u64 length.
        let key_end = find(b, b"general.name")? + "general.name".len();
        b[key_end + 4..key_end + 12].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
        Ok(())
    })?;
    assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
    assert_mentions(
        &err,
        &[
            "value of metadata `general.name`",
            "needs 9223372036854775807 bytes",
            "are left",
        ],
    )
}

#[test]
fn absurd_array_length() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("tokenizer.ggml.scores", vec![0.5f32; 4]);
    let path = write(dir.path(), &w)?;
    let mut b = std::fs::read(&path)?;
    // After the key: u32 array type, u32 element type, u64 length.
    let at = find(&b, b"tokenizer.ggml.scores")? + "tokenizer.ggml.scores".len() + 8;
    b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    std::fs::write(&path, &b)?;

    let err = expect_err(gguf::open(&path))?;
    assert_mentions(
        &err,
        &[
            "1099511627776 elements of metadata `tokenizer.ggml.scores`",
            "cannot fit",
        ],
    )
}

#[test]
fn absurd_tensor_count() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
        Ok(())
    })?;
    assert_mentions(&err, &["tensor infos", "cannot fit"])
}

#[test]
fn deeply_nested_arrays_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut value = Value::Array(vec![1u8.into()]);
    for _ in 0..20 {
        value = Value::Array(vec![value]);
    }
    let mut w = GgufWriter::new();
    w.add_metadata("deep", value);
    let err = expect_err(gguf::open(&write(dir.path(), &w)?))?;
    assert_mentions(&err, &["`deep`", "nests arrays deeper than"])
}

#[test]
fn unknown_tensor_type_id() -> anyhow::Result<()> {
    for (id, label) in [(10u32, "ggml type id 10 (Q2_K)"), (999, "ggml type id 999")] {
        let err = open_patched(|b| {
            // n_dims (u32), two u64 dims, then the u32 type.
            let at = tensor_info_at(b, "blk.1.ffn_up.weight")? + 4 + 16;
            b[at..at + 4].copy_from_slice(&id.to_le_bytes());
            Ok(())
        })?;
        assert!(
            matches!(err, FormatError::UnsupportedDType { .. }),
            "{err:?}"
        );
        assert_mentions(&err, &["model.gguf", "`blk.1.ffn_up.weight`", label])?;
    }
    Ok(())
}

#[test]
fn partial_block_is_refused() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        // token_embd is Q8_0 [16, 32]: make its inner dimension 33.
        let at = tensor_info_at(b, "token_embd.weight")? + 4;
        b[at..at + 8].copy_from_slice(&33u64.to_le_bytes());
        Ok(())
    })?;
    assert_mentions(
        &err,
        &[
            "`token_embd.weight`",
            "innermost dimension 33",
            "block size 32",
        ],
    )
}

#[test]
fn size_overflow_is_refused() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        let at = tensor_info_at(b, "blk.0.attn_q.weight")? + 4;
        b[at..at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
        b[at + 8..at + 16].copy_from_slice(&(1u64 << 40).to_le_bytes());
        Ok(())
    })?;
    assert_mentions(&err, &["`blk.0.attn_q.weight`", "size overflows"])
}

#[test]
fn misaligned_tensor_offset() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        // name, n_dims, dims, type, then the u64 offset.
        let at = tensor_info_at(b, "blk.0.ffn_norm.weight")? + 4 + 8 + 4;
        let offset = u64::from_le_bytes(b[at..at + 8].try_into()?);
        b[at..at + 8].copy_from_slice(&(offset + 4).to_le_bytes());
        Ok(())
    })?;
    assert_mentions(
        &err,
        &[
            "`blk.0.ffn_norm.weight`",
            "not a multiple of the alignment 32",
        ],
    )
}

#[test]
fn duplicate_tensor_name() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        let at = find(b, b"blk.0.attn_k.weight")?;
        b[at..at + 19].copy_from_slice(b"blk.0.attn_q.weight");
        Ok(())
    })?;
    assert_mentions(&err, &["tensor `blk.0.attn_q.weight` appears twice"])
}

#[test]
fn alignment_must_be_power_of_two() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.set_alignment(32);
    let path = write(dir.path(), &w)?;
    let mut b = std::fs::read(&path)?;
    let at = find(&b, b"general.alignment")? + "general.alignment".len() + 4;
    b[at..at + 4].copy_from_slice(&48u32.to_le_bytes());
    std::fs::write(&path, &b)?;

    let err = expect_err(gguf::open(&path))?;
    assert_mentions(&err, &["general.alignment", "U32(48)", "power of two"])
}

#[test]
fn truncated_mid_tensor() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        // The last tensor (output_norm, 32 f32 = 128 bytes) loses 100 bytes.
        b.truncate(b.len() - 100);
        Ok(())
    })?;
    assert!(matches!(err, FormatError::Malformed { .. }), "{err:?}");
    assert_mentions(
        &err,
        &[
            "model.gguf",
            "`output_norm.weight` needs 128 bytes",
            "only 28 are available",
        ],
    )
}

#[test]
fn truncated_in_header() -> anyhow::Result<()> {
    let err = open_patched(|b| {
        // Inside a tensor info: its n_dims is there, its first dim is not.
        let at = tensor_info_at(b, "blk.1.ffn_down.weight")?;
        b.truncate(at + 6);
        Ok(())
    })?;
    assert_mentions(
        &err,
        &[
            "model.gguf",
            "dimensions of tensor `blk.1.ffn_down.weight`",
            "needs 8 bytes but only 2",
        ],
    )
}

#[test]
fn missing_tensor() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(dir.path(), &Tiny::llama().gguf(&["blk.1.ffn_up.weight"])?)?;
    let err = expect_err(ModelFiles::open_weights(&path))?;
    assert!(matches!(err, FormatError::MissingTensor { .. }), "{err:?}");
    assert_mentions(&err, &["model.gguf", "`blk.1.ffn_up.weight`", "llama"])
}

#[test]
fn shape_disagreeing_with_config() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&["blk.0.attn_k.weight"])?;
    w.add_f32_tensor("blk.0.attn_k.weight", &[32, 32], &[0.0; 32 * 32]);
    let err = expect_err(ModelFiles::open_weights(&write(dir.path(), &w)?))?;
    assert!(matches!(err, FormatError::ShapeMismatch { .. }), "{err:?}");
    assert_mentions(
        &err,
        &["`blk.0.attn_k.weight`", "[32, 32]", "expected [16, 32]"],
    )
}

#[test]
fn unknown_architecture() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("general.architecture", "gpt2");
    let err = expect_err(ModelFiles::open_weights(&write(dir.path(), &w)?))?;
    assert!(
        matches!(err, FormatError::UnsupportedArchitecture { .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["model.gguf", "`gpt2`", "llama, mistral, qwen2"])
}

#[test]
fn missing_required_key() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write(
        dir.path(),
        &Tiny::llama().gguf(&["llama.feed_forward_length"])?,
    )?;
    let err = expect_err(ModelFiles::open_weights(&path))?;
    assert!(matches!(err, FormatError::Config { .. }), "{err:?}");
    assert_mentions(
        &err,
        &["model.gguf", "`llama.feed_forward_length` is missing"],
    )
}

#[test]
fn kv_heads_must_divide_heads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.attention.head_count_kv", 3u32);
    let err = expect_err(ModelFiles::open_weights(&write(dir.path(), &w)?))?;
    assert_mentions(
        &err,
        &["`llama.attention.head_count_kv`", "(3) must divide", "(4)"],
    )
}

#[test]
fn zero_dimension_and_bad_eps_are_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.block_count", 0u32);
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    assert_mentions(&err, &["`llama.block_count` must be greater than zero"])?;

    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.attention.layer_norm_rms_epsilon", -1.0f32);
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    assert_mentions(
        &err,
        &["`llama.attention.layer_norm_rms_epsilon`", "positive"],
    )
}

#[test]
fn wrong_metadata_type_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.embedding_length", "wide");
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    assert_mentions(
        &err,
        &[
            "`llama.embedding_length`",
            "non-negative integer, found a string",
        ],
    )
}

#[test]
fn rope_scaling_type_is_refused() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.rope.scaling.type", "yarn");
    let err = expect_err(ModelConfig::from_gguf(&gguf::open(&write(
        dir.path(),
        &w,
    )?)?))?;
    assert_mentions(&err, &["`llama.rope.scaling.type`", "yarn"])
}

#[test]
fn absurd_layer_count_fails_fast() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let mut w = Tiny::llama().gguf(&[])?;
    w.add_metadata("llama.block_count", u32::MAX);
    let err = expect_err(ModelFiles::open_weights(&write(dir.path(), &w)?))?;
    assert_mentions(&err, &["no tensor `blk.2.attn_norm.weight`"])
}
