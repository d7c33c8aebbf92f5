//! Hugging Face folders: single and sharded safetensors, name mapping,
//! `config.json` parsing, and the errors of broken folders.

mod common;

use std::path::Path;

use common::{
    assert_mentions, expect_err, hf_config, hf_tensors, write_hf_folder, write_safetensors,
    StTensor, Tiny,
};
use safetensors::Dtype;
use tessera_formats::{Architecture, FormatError, ModelConfig, ModelFiles, RopeScaling, RopeStyle};
use tessera_kernels::DType;

/// Rewrites `config.json` in `dir` after `edit` changes it.
fn edit_config(dir: &Path, edit: impl FnOnce(&mut serde_json::Value)) -> anyhow::Result<()> {
    let path = dir.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    edit(&mut config);
    std::fs::write(path, serde_json::to_string(&config)?)?;
    Ok(())
}

#[test]
fn single_file_loads_and_maps_names() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tiny = Tiny::llama();
    write_hf_folder(dir.path(), &tiny, Dtype::BF16)?;
    let (config, store) = ModelFiles::open_weights(dir.path())?;

    assert_eq!(config.architecture, Architecture::Llama);
    assert_eq!(config.rope_style, RopeStyle::HalfSplit);
    assert_eq!(
        (config.head_dim, config.rope_theta, config.rms_norm_eps),
        (8, 500_000.0, 1e-5)
    );
    assert!(config.tie_word_embeddings && !config.qkv_bias);

    // Tied: lm_head is ignored; inv_freq is not a weight Tessera reads.
    assert!(store.info("output.weight").is_none());
    assert_eq!(store.len(), 2 + 9 * tiny.layers);
    let q = store.expect("blk.1.attn_q.weight", &[32, 32])?;
    assert_eq!(q.dtype, DType::BF16);

    // The mapped range holds exactly the bytes written for that tensor.
    let written = hf_tensors(&tiny, Dtype::BF16);
    let source = written
        .iter()
        .find(|t| t.name == "model.layers.1.self_attn.q_proj.weight")
        .expect("written");
    assert_eq!(store.bytes(q), &source.data[..]);
    for (name, shape) in [
        ("token_embd.weight", vec![16, 32]),
        ("blk.0.ffn_down.weight", vec![32, 64]),
    ] {
        store.expect(name, &shape)?;
    }
    store.expect("blk.0.attn_norm.weight", &[32])?;
    store.expect("blk.0.ffn_norm.weight", &[32])?;
    store.expect("output_norm.weight", &[32])?;
    Ok(())
}

#[test]
fn f32_and_f16_load() -> anyhow::Result<()> {
    for (st, dt) in [(Dtype::F32, DType::F32), (Dtype::F16, DType::F16)] {
        let dir = tempfile::tempdir()?;
        write_hf_folder(dir.path(), &Tiny::llama(), st)?;
        let (_, store) = ModelFiles::open_weights(dir.path())?;
        assert_eq!(store.expect("token_embd.weight", &[16, 32])?.dtype, dt);
    }
    Ok(())
}

#[test]
fn qwen2_untied_with_biases() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_hf_folder(dir.path(), &Tiny::qwen2(), Dtype::F32)?;
    let (config, store) = ModelFiles::open_weights(dir.path())?;
    assert_eq!(config.architecture, Architecture::Qwen2);
    assert!(config.qkv_bias && !config.tie_word_embeddings);
    store.expect("output.weight", &[16, 32])?;
    store.expect("blk.0.attn_q.bias", &[32])?;
    store.expect("blk.1.attn_v.bias", &[16])?;
    Ok(())
}

/// Writes `tiny`'s tensors split over two shards, with an index.
fn write_sharded(dir: &Path, tiny: &Tiny) -> anyhow::Result<()> {
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_string(&hf_config(tiny))?,
    )?;
    let (first, second): (Vec<StTensor>, Vec<StTensor>) = hf_tensors(tiny, Dtype::BF16)
        .into_iter()
        .partition(|t| !t.name.starts_with("model.layers.1."));
    let names = [
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
    ];
    let mut weight_map = serde_json::Map::new();
    for (name, tensors) in names.iter().zip([&first, &second]) {
        write_safetensors(&dir.join(name), tensors)?;
        for t in tensors {
            weight_map.insert(t.name.clone(), (*name).into());
        }
    }
    let index = serde_json::json!({ "metadata": { "total_size": 0 }, "weight_map": weight_map });
    std::fs::write(
        dir.join("model.safetensors.index.json"),
        serde_json::to_string(&index)?,
    )?;
    Ok(())
}

#[test]
fn sharded_folder_loads() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_sharded(dir.path(), &Tiny::llama())?;
    let (_, store) = ModelFiles::open_weights(dir.path())?;
    let l0 = store.expect("blk.0.attn_q.weight", &[32, 32])?;
    let l1 = store.expect("blk.1.attn_q.weight", &[32, 32])?;
    assert_ne!(l0.file, l1.file);
    assert!(store.path(l1).ends_with("model-00002-of-00002.safetensors"));
    Ok(())
}

#[test]
fn missing_shard_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_sharded(dir.path(), &Tiny::llama())?;
    std::fs::remove_file(dir.path().join("model-00002-of-00002.safetensors"))?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert!(matches!(err, FormatError::MissingFile { .. }), "{err:?}");
    assert_mentions(
        &err,
        &[
            "model-00002-of-00002.safetensors does not exist",
            "model.safetensors.index.json",
        ],
    )
}

#[test]
fn index_must_agree_with_shards() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_sharded(dir.path(), &Tiny::llama())?;
    let path = dir.path().join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&path)?;
    let moved = text.replacen(
        "\"model.norm.weight\":\"model-00001-of-00002.safetensors\"",
        "\"model.norm.weight\":\"model-00002-of-00002.safetensors\"",
        1,
    );
    assert_ne!(text, moved, "the index should have been edited");
    std::fs::write(&path, moved)?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert_mentions(
        &err,
        &[
            "`model.norm.weight`",
            "model-00002-of-00002.safetensors",
            "does not hold it",
        ],
    )
}

#[test]
fn folder_without_weights() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::write(
        dir.path().join("config.json"),
        serde_json::to_string(&hf_config(&Tiny::llama()))?,
    )?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert_mentions(&err, &["model.safetensors does not exist"])
}

#[test]
fn unsupported_dtype_is_named() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tiny = Tiny::llama();
    write_hf_folder(dir.path(), &tiny, Dtype::F32)?;
    let mut tensors = hf_tensors(&tiny, Dtype::F32);
    let norm = tensors
        .iter_mut()
        .find(|t| t.name == "model.norm.weight")
        .expect("present");
    *norm = StTensor::random("model.norm.weight", Dtype::I64, &[32], 9);
    write_safetensors(&dir.path().join("model.safetensors"), &tensors)?;

    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert!(
        matches!(err, FormatError::UnsupportedDType { .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["model.safetensors", "`model.norm.weight`", "I64"])
}

#[test]
fn corrupt_safetensors_header() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_hf_folder(dir.path(), &Tiny::llama(), Dtype::F32)?;
    std::fs::write(
        dir.path().join("model.safetensors"),
        b"\xff\xff\xff\xff\xff\xff\xff\x7f{}",
    )?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert!(
        matches!(
            err,
            FormatError::Malformed {
                format: "safetensors",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["model.safetensors"])
}

#[test]
fn missing_tensor_in_folder() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let tiny = Tiny::llama();
    write_hf_folder(dir.path(), &tiny, Dtype::F32)?;
    let tensors: Vec<StTensor> = hf_tensors(&tiny, Dtype::F32)
        .into_iter()
        .filter(|t| t.name != "model.layers.0.mlp.up_proj.weight")
        .collect();
    write_safetensors(&dir.path().join("model.safetensors"), &tensors)?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert_mentions(&err, &["`blk.0.ffn_up.weight`", "llama"])
}

#[test]
fn bad_config_json() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_hf_folder(dir.path(), &Tiny::llama(), Dtype::F32)?;

    std::fs::write(dir.path().join("config.json"), "{ \"hidden_size\": 32, ")?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert!(
        matches!(
            err,
            FormatError::Malformed {
                format: "config.json",
                ..
            }
        ),
        "{err:?}"
    );
    assert_mentions(&err, &["config.json", "EOF"])?;

    write_hf_folder(dir.path(), &Tiny::llama(), Dtype::F32)?;
    edit_config(dir.path(), |c| {
        c.as_object_mut().map(|o| o.remove("num_attention_heads"));
    })?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert_mentions(&err, &["config.json", "`num_attention_heads` is missing"])?;

    edit_config(dir.path(), |c| c["num_attention_heads"] = (-4).into())?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert_mentions(
        &err,
        &["`num_attention_heads` must be a non-negative integer, found -4"],
    )
}

#[test]
fn unknown_model_type() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    write_hf_folder(dir.path(), &Tiny::llama(), Dtype::F32)?;
    edit_config(dir.path(), |c| c["model_type"] = "gemma".into())?;
    let err = expect_err(ModelFiles::open_weights(dir.path()))?;
    assert!(
        matches!(err, FormatError::UnsupportedArchitecture { .. }),
        "{err:?}"
    );
    assert_mentions(&err, &["config.json", "`gemma`"])
}

#[test]
fn architectures_list_is_the_fallback() -> anyhow::Result<()> {
    let mut config = hf_config(&Tiny::qwen2());
    config.as_object_mut().map(|o| o.remove("model_type"));
    let parsed = ModelConfig::from_hf_json(Path::new("config.json"), &config.to_string())?;
    assert_eq!(parsed.architecture, Architecture::Qwen2);
    assert!(parsed.qkv_bias);

    config["architectures"] = serde_json::json!(["GPTNeoXForCausalLM"]);
    let err = expect_err(ModelConfig::from_hf_json(
        Path::new("config.json"),
        &config.to_string(),
    ))?;
    assert_mentions(&err, &["GPTNeoXForCausalLM"])
}

#[test]
fn llama3_rope_scaling() -> anyhow::Result<()> {
    let mut config = hf_config(&Tiny::llama());
    config["rope_scaling"] = serde_json::json!({
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
        "high_freq_factor": 4.0, "original_max_position_embeddings": 8192
    });
    let parsed = ModelConfig::from_hf_json(Path::new("config.json"), &config.to_string())?;
    let expected = RopeScaling::Llama3 {
        factor: 8.0,
        low_freq_factor: 1.0,
        high_freq_factor: 4.0,
        original_max_position: 8192,
    };
    assert_eq!(parsed.rope_scaling, Some(expected));

    config["rope_scaling"] = serde_json::json!({ "type": "yarn", "factor": 4.0 });
    let err = expect_err(ModelConfig::from_hf_json(
        Path::new("config.json"),
        &config.to_string(),
    ))?;
    assert_mentions(
        &err,
        &["`rope_scaling.rope_type`", "`yarn` is not supported"],
    )?;

    config["rope_scaling"] = serde_json::json!({ "rope_type": "llama3", "factor": 8.0 });
    let err = expect_err(ModelConfig::from_hf_json(
        Path::new("config.json"),
        &config.to_string(),
    ))?;
    assert_mentions(&err, &["`rope_scaling.low_freq_factor` is missing"])
}

#[test]
fn explicit_head_dim_and_kv_default() -> anyhow::Result<()> {
    let mut config = hf_config(&Tiny::llama());
    config
        .as_object_mut()
        .map(|o| o.remove("num_key_value_heads"));
    config["head_dim"] = 8.into();
    let parsed = ModelConfig::from_hf_json(Path::new("config.json"), &config.to_string())?;
    assert_eq!((parsed.num_kv_heads, parsed.head_dim), (4, 8));

    config["head_dim"] = 6.into();
    let err = expect_err(ModelConfig::from_hf_json(
        Path::new("config.json"),
        &config.to_string(),
    ))?;
    assert_mentions(
        &err,
        &["`hidden_size` (32) must equal num_heads (4) * head_dim (6)"],
    )
}
