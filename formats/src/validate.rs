//! Checking that a model's tensors match its configuration: every tensor the
//! architecture reads exists, under its canonical name, with the shape the
//! configuration implies. Run at open, so a shard never finds out mid-load.

use crate::{FormatError, ModelConfig, TensorStore};

/// Every tensor `config` needs, with its shape (outermost first, `[out, in]`
/// for matrices). Lazy, so an absurd layer count in a corrupt file costs
/// nothing until a tensor is found missing.
pub fn required_tensors(config: &ModelConfig) -> impl Iterator<Item = (String, Vec<usize>)> + '_ {
    let hidden = config.hidden_size;
    let embd = (
        "token_embd.weight".to_string(),
        vec![config.vocab_size, hidden],
    );
    let head = (!config.tie_word_embeddings)
        .then(|| ("output.weight".to_string(), vec![config.vocab_size, hidden]));
    std::iter::once(embd)
        .chain((0..config.num_layers).flat_map(move |i| layer_tensors(config, i)))
        .chain(std::iter::once((
            "output_norm.weight".to_string(),
            vec![hidden],
        )))
        .chain(head)
}

/// The tensors of layer `i`.
fn layer_tensors(config: &ModelConfig, i: usize) -> Vec<(String, Vec<usize>)> {
    let hidden = config.hidden_size;
    let q_dim = config.num_heads.saturating_mul(config.head_dim);
    let kv_dim = config.num_kv_heads.saturating_mul(config.head_dim);
    let ffn = config.intermediate_size;
    let mut layer = vec![
        ("attn_norm.weight", vec![hidden]),
        ("attn_q.weight", vec![q_dim, hidden]),
        ("attn_k.weight", vec![kv_dim, hidden]),
        ("attn_v.weight", vec![kv_dim, hidden]),
        ("attn_output.weight", vec![hidden, q_dim]),
        ("ffn_norm.weight", vec![hidden]),
        ("ffn_gate.weight", vec![ffn, hidden]),
        ("ffn_up.weight", vec![ffn, hidden]),
        ("ffn_down.weight", vec![hidden, ffn]),
    ];
    if config.qkv_bias {
        layer.extend([
            ("attn_q.bias", vec![q_dim]),
            ("attn_k.bias", vec![kv_dim]),
            ("attn_v.bias", vec![kv_dim]),
        ]);
    }
    layer
        .into_iter()
        .map(|(name, shape)| (format!("blk.{i}.{name}"), shape))
        .collect()
}

/// Fails with [`FormatError::MissingTensor`] or [`FormatError::ShapeMismatch`]
/// unless `store` holds every tensor [`required_tensors`] lists.
pub fn validate_tensors(config: &ModelConfig, store: &TensorStore) -> Result<(), FormatError> {
    for (name, shape) in required_tensors(config) {
        store.expect(&name, &shape)?;
    }
    Ok(())
}
