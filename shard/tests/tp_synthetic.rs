//! Tensor-parallel equivalence and loader agreement on tiny synthetic models
//! (random weights, fixed seed) at shapes the real model does not cover:
//! uneven KV-group splits, more ranks than KV heads, K-quants whose head split
//! is not block-aligned, Qwen2 biases with an untied head, and the same
//! weights read from a Hugging Face folder and from a GGUF file.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_formats::gguf::writer::GgufWriter;
use tessera_formats::{ModelConfig, ModelFiles, TensorStore};
use tessera_kernels::{quant, DType};
use tessera_shard::collective::{Collective, LocalGroup};
use tessera_shard::model::{Batch, Model, SeqStep};

/// Dimensions of a synthetic model.
#[derive(Clone, Copy)]
struct Dims {
    hidden: usize,
    heads: usize,
    kv_heads: usize,
    ffn: usize,
    vocab: usize,
    layers: usize,
}

impl Dims {
    fn head_dim(&self) -> usize {
        self.hidden / self.heads
    }
}

/// Weights as f32 `[rows, cols]` matrices, by canonical name.
type Weights = Vec<(String, Vec<usize>, Vec<f32>)>;

fn random_weights(d: Dims, biases: bool, untied: bool, seed: u64) -> Weights {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut w = Weights::new();
    let mut add = |name: String, shape: Vec<usize>, scale: f32, offset: f32| {
        let n = shape.iter().product();
        let v = (0..n)
            .map(|_| offset + scale * (rng.random::<f32>() * 2.0 - 1.0))
            .collect();
        w.push((name, shape, v));
    };
    let (h, hd) = (d.hidden, d.head_dim());
    add("token_embd.weight".into(), vec![d.vocab, h], 1.0, 0.0);
    for i in 0..d.layers {
        add(format!("blk.{i}.attn_norm.weight"), vec![h], 0.1, 1.0);
        add(
            format!("blk.{i}.attn_q.weight"),
            vec![d.heads * hd, h],
            0.3,
            0.0,
        );
        add(
            format!("blk.{i}.attn_k.weight"),
            vec![d.kv_heads * hd, h],
            0.3,
            0.0,
        );
        add(
            format!("blk.{i}.attn_v.weight"),
            vec![d.kv_heads * hd, h],
            0.3,
            0.0,
        );
        if biases {
            add(format!("blk.{i}.attn_q.bias"), vec![d.heads * hd], 0.2, 0.0);
            add(
                format!("blk.{i}.attn_k.bias"),
                vec![d.kv_heads * hd],
                0.2,
                0.0,
            );
            add(
                format!("blk.{i}.attn_v.bias"),
                vec![d.kv_heads * hd],
                0.2,
                0.0,
            );
        }
        add(
            format!("blk.{i}.attn_output.weight"),
            vec![h, d.heads * hd],
            0.3,
            0.0,
        );
        add(format!("blk.{i}.ffn_norm.weight"), vec![h], 0.1, 1.0);
        add(format!("blk.{i}.ffn_gate.weight"), vec![d.ffn, h], 0.3, 0.0);
        add(format!("blk.{i}.ffn_up.weight"), vec![d.ffn, h], 0.3, 0.0);
        add(format!("blk.{i}.ffn_down.weight"), vec![h, d.ffn], 0.3, 0.0);
    }
    add("output_norm.weight".into(), vec![h], 0.1, 1.0);
    if untied {
        add("output.weight".into(), vec![d.vocab, h], 0.5, 0.0);
    }
    w
}

/// Writes `weights` as a GGUF file; matrices whose name passes `pick` get the
/// returned type, everything else stays F32.
fn write_gguf(
    path: &Path,
    arch: &str,
    d: Dims,
    weights: &Weights,
    pick: impl Fn(&str) -> DType,
) -> Result<()> {
    let mut g = GgufWriter::new();
    g.add_metadata("general.architecture", arch)
        .add_metadata(format!("{arch}.block_count"), d.layers as u32)
        .add_metadata(format!("{arch}.context_length"), 256u32)
        .add_metadata(format!("{arch}.embedding_length"), d.hidden as u32)
        .add_metadata(format!("{arch}.feed_forward_length"), d.ffn as u32)
        .add_metadata(format!("{arch}.attention.head_count"), d.heads as u32)
        .add_metadata(format!("{arch}.attention.head_count_kv"), d.kv_heads as u32)
        .add_metadata(format!("{arch}.rope.freq_base"), 10000.0f32)
        .add_metadata(format!("{arch}.attention.layer_norm_rms_epsilon"), 1e-5f32)
        .add_metadata(format!("{arch}.vocab_size"), d.vocab as u32);
    for (name, shape, values) in weights {
        let dtype = if shape.len() == 2 {
            pick(name)
        } else {
            DType::F32
        };
        let bytes: Vec<u8> = values
            .chunks(*shape.last().context("shape")?)
            .flat_map(|row| quant::quantize_row(dtype, row))
            .collect();
        g.add_tensor(name.clone(), dtype, shape, bytes);
    }
    Ok(g.write(path)?)
}

/// Logits `[vocab]` after a prompt, and after one more decoded token, at TP `tp`.
fn run(config: &ModelConfig, store: &Arc<TensorStore>, tp: usize) -> Result<(Vec<f32>, Vec<f32>)> {
    let prompt: Vec<u32> = vec![3, 17, 4, 9, 1, 22, 8];
    let handles: Vec<_> = LocalGroup::new(tp)
        .into_iter()
        .map(|mut comm| {
            let (config, store, prompt) = (config.clone(), Arc::clone(store), prompt.clone());
            std::thread::spawn(move || -> Result<(Vec<f32>, Vec<f32>)> {
                let model = Model::load(&config, &store, comm.rank(), comm.world_size())?;
                let mut kv = model.new_kv_cache(2, 4);
                let blocks = [1u32, 0];
                let first = model.forward(
                    &Batch {
                        seqs: &[SeqStep {
                            tokens: &prompt,
                            start_pos: 0,
                            blocks: &blocks,
                        }],
                    },
                    &mut kv,
                    &mut comm,
                )?;
                let next = [5u32];
                let seqs = [SeqStep {
                    tokens: &next,
                    start_pos: prompt.len(),
                    blocks: &blocks,
                }];
                let second = model.forward(&Batch { seqs: &seqs }, &mut kv, &mut comm)?;
                Ok((first, second))
            })
        })
        .collect();
    let mut outs = Vec::new();
    for h in handles {
        outs.push(
            h.join()
                .map_err(|_| anyhow::anyhow!("rank thread panicked"))??,
        );
    }
    for (rank, o) in outs.iter().enumerate() {
        assert_eq!(o, &outs[0], "tp={tp}: rank {rank} disagrees with rank 0");
    }
    outs.pop().context("no ranks")
}

fn assert_close(a: &[f32], b: &[f32], tol: f32, what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: lengths differ");
    let scale = a.iter().fold(1.0f32, |m, v| m.max(v.abs()));
    let worst = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(
        worst <= tol * scale,
        "{what}: max |diff| {worst} > {tol} x {scale}"
    );
}

/// Every TP degree in `tps` gives TP 1's logits.
fn check_tp(path: &Path, tps: &[usize]) -> Result<()> {
    let (config, store) = ModelFiles::open_weights(path)?;
    let store = Arc::new(store);
    let (first, second) = run(&config, &store, 1)?;
    for &tp in tps {
        let (f, s) = run(&config, &store, tp)?;
        assert_close(&first, &f, 1e-4, &format!("prefill logits at tp={tp}"));
        assert_close(&second, &s, 1e-4, &format!("decode logits at tp={tp}"));
    }
    Ok(())
}

#[test]
fn legacy_quants_split_unevenly_and_beyond_kv_heads() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = Dims {
        hidden: 96,
        heads: 6,
        kv_heads: 3,
        ffn: 192,
        vocab: 50,
        layers: 2,
    };
    let path = dir.path().join("m.gguf");
    let w = random_weights(d, false, false, 1);
    write_gguf(&path, "llama", d, &w, |n| {
        if n.contains("ffn_down") {
            DType::Q8_0
        } else if n.contains("attn") {
            DType::Q4_0
        } else {
            DType::Q5_1
        }
    })?;
    // 2: KV groups 2 + 1; 4 and 6: more ranks than KV heads.
    check_tp(&path, &[2, 3, 4, 6])
}

#[test]
fn k_quants_with_unaligned_head_split() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = Dims {
        hidden: 256,
        heads: 4,
        kv_heads: 2,
        ffn: 512,
        vocab: 40,
        layers: 1,
    };
    let path = dir.path().join("m.gguf");
    let w = random_weights(d, false, true, 2);
    // attn_output rows hold 256 features split into 128-feature halves: not a
    // whole Q5_K block, so the split falls back to f32.
    write_gguf(&path, "llama", d, &w, |n| match n {
        n if n.contains("ffn_down") => DType::Q6K,
        n if n.contains("attn_output") => DType::Q5K,
        n if n.contains("output") => DType::F16,
        _ => DType::Q4K,
    })?;
    check_tp(&path, &[2])
}

#[test]
fn qwen2_biases_and_untied_head() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = Dims {
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        ffn: 96,
        vocab: 30,
        layers: 2,
    };
    let path = dir.path().join("m.gguf");
    let w = random_weights(d, true, true, 3);
    write_gguf(&path, "qwen2", d, &w, |_| DType::BF16)?;
    check_tp(&path, &[2, 3, 4])
}

/// Row order of q/k in a GGUF llama file: the converter interleaves each
/// head's two halves so that adjacent-pair RoPE equals half-split RoPE.
fn permute_rows(values: &[f32], heads: usize, cols: usize) -> Vec<f32> {
    let rows = values.len() / cols;
    let hd = rows / heads;
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let new = h * hd + 2 * i + j;
                let old = h * hd + j * hd / 2 + i;
                out[new * cols..(new + 1) * cols]
                    .copy_from_slice(&values[old * cols..(old + 1) * cols]);
            }
        }
    }
    out
}

fn hf_name(name: &str) -> String {
    let map = [
        ("attn_norm", "input_layernorm"),
        ("attn_q", "self_attn.q_proj"),
        ("attn_k", "self_attn.k_proj"),
        ("attn_v", "self_attn.v_proj"),
        ("attn_output", "self_attn.o_proj"),
        ("ffn_norm", "post_attention_layernorm"),
        ("ffn_gate", "mlp.gate_proj"),
        ("ffn_up", "mlp.up_proj"),
        ("ffn_down", "mlp.down_proj"),
    ];
    match name {
        "token_embd.weight" => "model.embed_tokens.weight".into(),
        "output_norm.weight" => "model.norm.weight".into(),
        "output.weight" => "lm_head.weight".into(),
        _ => {
            let mut parts = name.splitn(3, '.');
            let (_, layer, rest) = (
                parts.next(),
                parts.next().unwrap_or(""),
                parts.next().unwrap_or(""),
            );
            let (tensor, kind) = rest.split_once('.').unwrap_or((rest, ""));
            let hf = map
                .iter()
                .find(|(g, _)| *g == tensor)
                .map_or(tensor, |(_, h)| h);
            format!("model.layers.{layer}.{hf}.{kind}")
        }
    }
}

#[test]
fn hugging_face_folder_matches_gguf() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let d = Dims {
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        ffn: 96,
        vocab: 30,
        layers: 2,
    };
    let w = random_weights(d, false, true, 4);

    // The HF folder holds the weights as they are, in two shards with an index.
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf)?;
    let config = serde_json::json!({
        "model_type": "llama", "hidden_size": d.hidden, "intermediate_size": d.ffn,
        "num_hidden_layers": d.layers, "num_attention_heads": d.heads, "num_key_value_heads": d.kv_heads,
        "vocab_size": d.vocab, "max_position_embeddings": 256, "rope_theta": 10000.0,
        "rms_norm_eps": 1e-5, "tie_word_embeddings": false
    });
    std::fs::write(hf.join("config.json"), config.to_string())?;
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = w
        .iter()
        .map(|(n, s, v)| {
            (
                hf_name(n),
                s.clone(),
                v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            )
        })
        .collect();
    let mut weight_map = serde_json::Map::new();
    for (part, chunk) in bytes.chunks(bytes.len().div_ceil(2)).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", part + 1);
        let views = chunk
            .iter()
            .map(|(n, s, b)| {
                Ok((
                    n.clone(),
                    safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        safetensors::serialize_to_file(views, None, &hf.join(&file))?;
        for (n, _, _) in chunk {
            weight_map.insert(n.clone(), file.clone().into());
        }
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": weight_map });
    std::fs::write(hf.join("model.safetensors.index.json"), index.to_string())?;

    // The GGUF file holds q/k permuted, as a converter writes them.
    let gguf_weights: Weights = w
        .iter()
        .map(|(n, s, v)| {
            let heads = if n.contains("attn_q.weight") {
                d.heads
            } else {
                d.kv_heads
            };
            let v = if n.contains("attn_q.weight") || n.contains("attn_k.weight") {
                permute_rows(v, heads, s[1])
            } else {
                v.clone()
            };
            (n.clone(), s.clone(), v)
        })
        .collect();
    let gguf = dir.path().join("m.gguf");
    write_gguf(&gguf, "llama", d, &gguf_weights, |_| DType::F32)?;

    let (hf_config, hf_store) = ModelFiles::open_weights(&hf)?;
    let (gg_config, gg_store) = ModelFiles::open_weights(&gguf)?;
    let (a, _) = run(&hf_config, &Arc::new(hf_store), 2)?;
    let (b, _) = run(&gg_config, &Arc::new(gg_store), 1)?;
    assert_close(&a, &b, 1e-4, "HF folder at tp=2 against GGUF at tp=1");
    Ok(())
}
