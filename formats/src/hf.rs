//! Hugging Face model folders: `config.json`, safetensors weights (single or
//! sharded with an index), tokenizer files.
//!
//! Weights come from `model.safetensors`, or from every file that
//! `model.safetensors.index.json` names (each must exist and hold the tensors
//! the index puts in it). Headers are parsed by the `safetensors` crate over
//! a read-only mapping; tensor data is never copied. Tensors are renamed to
//! the canonical GGUF names; names Tessera does not use are skipped.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};
use tessera_kernels::DType;

use crate::store::map_file;
use crate::{FormatError, ModelConfig, TensorInfo, TensorStore};

const SINGLE_FILE: &str = "model.safetensors";
const INDEX_FILE: &str = "model.safetensors.index.json";

/// Bytes before a safetensors header: its length as a u64.
const HEADER_LEN_BYTES: usize = 8;

/// Reads `config.json` and maps the weights of the folder `dir`.
pub(crate) fn open_weights(dir: &Path) -> Result<(ModelConfig, TensorStore), FormatError> {
    let config = ModelConfig::from_hf_config(&dir.join("config.json"))?;
    let (paths, index) = weight_files(dir)?;

    let mut loader = Loader {
        config: &config,
        files: Vec::new(),
        tensors: BTreeMap::new(),
        found: HashSet::new(),
    };
    for path in paths {
        loader.load_file(path)?;
    }
    if let Some((index_path, weight_map)) = &index {
        loader.check_index(index_path, weight_map)?;
    }

    let store = TensorStore::new(
        loader.files,
        loader.tensors,
        config.architecture.name().to_string(),
    )?;
    Ok((config, store))
}

/// The weight files of `dir`, and the index's path and weight map when the
/// weights are sharded.
type WeightFiles = (Vec<PathBuf>, Option<(PathBuf, BTreeMap<String, String>)>);

fn weight_files(dir: &Path) -> Result<WeightFiles, FormatError> {
    let index_path = dir.join(INDEX_FILE);
    if !index_path.is_file() {
        let single = dir.join(SINGLE_FILE);
        if !single.is_file() {
            return Err(FormatError::MissingFile {
                path: single,
                needed_by: format!("a Hugging Face folder without {INDEX_FILE} needs it"),
            });
        }
        return Ok((vec![single], None));
    }

    let weight_map = read_index(&index_path)?;
    let names: BTreeSet<&String> = weight_map.values().collect();
    let mut paths = Vec::with_capacity(names.len());
    for name in names {
        paths.push(shard_path(dir, &index_path, name)?);
    }
    Ok((paths, Some((index_path, weight_map))))
}

/// The `weight_map` of a safetensors index.
fn read_index(path: &Path) -> Result<BTreeMap<String, String>, FormatError> {
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| FormatError::Io {
        path: path.to_path_buf(),
        error: source,
    })?;
    let index: Index = serde_json::from_str(&text).map_err(|e| FormatError::Malformed {
        path: path.to_path_buf(),
        format: "safetensors index",
        reason: e.to_string(),
    })?;
    Ok(index.weight_map)
}

/// The path of a shard the index names; it must be a plain file name in `dir`
/// and exist.
fn shard_path(dir: &Path, index_path: &Path, name: &str) -> Result<PathBuf, FormatError> {
    if Path::new(name).file_name().and_then(|n| n.to_str()) != Some(name) {
        return Err(FormatError::Malformed {
            path: index_path.to_path_buf(),
            format: "safetensors index",
            reason: format!("shard `{name}` is not a plain file name in the model folder"),
        });
    }
    let path = dir.join(name);
    if !path.is_file() {
        return Err(FormatError::MissingFile {
            path,
            needed_by: format!("{} lists it as a weight shard", index_path.display()),
        });
    }
    Ok(path)
}

/// A weight file being read.
struct FileRef<'a> {
    path: &'a Path,
    /// Its index in the store's files.
    index: usize,
    /// Absolute offset of the data after the header.
    data_start: usize,
    /// File length in bytes.
    len: usize,
}

/// Collects the tensors of a folder's weight files.
struct Loader<'a> {
    config: &'a ModelConfig,
    files: Vec<(PathBuf, Arc<Mmap>)>,
    tensors: BTreeMap<String, TensorInfo>,
    /// `(file name, Hugging Face tensor name)` pairs seen, to check the index.
    found: HashSet<(String, String)>,
}

impl Loader<'_> {
    /// Maps `path`, parses its header and records the tensors Tessera uses.
    fn load_file(&mut self, path: PathBuf) -> Result<(), FormatError> {
        let mmap = map_file(&path)?;
        let malformed = |reason: String| FormatError::Malformed {
            path: path.clone(),
            format: "safetensors",
            reason,
        };
        let (header_len, metadata) =
            SafeTensors::read_metadata(&mmap).map_err(|e| malformed(e.to_string()))?;
        let data_start = HEADER_LEN_BYTES
            .checked_add(header_len)
            .ok_or_else(|| malformed("header length overflows".into()))?;
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();

        let file = FileRef {
            path: &path,
            index: self.files.len(),
            data_start,
            len: mmap.len(),
        };
        for (hf_name, info) in metadata.tensors() {
            self.found.insert((file_name.clone(), hf_name.clone()));
            self.add_tensor(&file, &hf_name, info)?;
        }
        self.files.push((path, mmap));
        Ok(())
    }

    /// Records one tensor of `file` under its canonical name, unless Tessera
    /// does not use it.
    fn add_tensor(
        &mut self,
        file: &FileRef<'_>,
        hf_name: &str,
        info: &safetensors::tensor::TensorInfo,
    ) -> Result<(), FormatError> {
        let Some(name) = self.canonical(hf_name) else {
            tracing::debug!(tensor = %hf_name, path = %file.path.display(), "tensor not used; skipped");
            return Ok(());
        };
        let dtype = dtype(info.dtype).ok_or_else(|| FormatError::UnsupportedDType {
            path: file.path.to_path_buf(),
            tensor: hf_name.to_string(),
            dtype: format!("{:?}", info.dtype),
        })?;
        let malformed = |reason: String| FormatError::Malformed {
            path: file.path.to_path_buf(),
            format: "safetensors",
            reason,
        };

        // Offsets are relative to the data after the header.
        let (start, end) = info.data_offsets;
        let range = file
            .data_start
            .checked_add(start)
            .zip(file.data_start.checked_add(end));
        let Some((start, end)) = range.filter(|&(s, e)| s <= e && e <= file.len) else {
            return Err(malformed(format!(
                "tensor `{hf_name}` has offsets {:?} outside the file",
                info.data_offsets
            )));
        };
        let tensor = TensorInfo {
            name: name.clone(),
            dtype,
            shape: info.shape.clone(),
            file: file.index,
            range: start..end,
        };
        if self.tensors.insert(name.clone(), tensor).is_some() {
            return Err(malformed(format!(
                "tensor `{hf_name}` (`{name}`) appears in more than one file"
            )));
        }
        Ok(())
    }

    /// The canonical name of `hf_name`, or `None` for a tensor Tessera skips
    /// (unknown, or `lm_head.weight` when embeddings are tied).
    fn canonical(&self, hf_name: &str) -> Option<String> {
        if hf_name == "lm_head.weight" && self.config.tie_word_embeddings {
            return None;
        }
        canonical_name(hf_name)
    }

    /// Every tensor the index lists is in the file it names.
    fn check_index(
        &self,
        index_path: &Path,
        weight_map: &BTreeMap<String, String>,
    ) -> Result<(), FormatError> {
        for (tensor, file) in weight_map {
            if !self.found.contains(&(file.clone(), tensor.clone())) {
                return Err(FormatError::Malformed {
                    path: index_path.to_path_buf(),
                    format: "safetensors index",
                    reason: format!("it puts tensor `{tensor}` in {file}, which does not hold it"),
                });
            }
        }
        Ok(())
    }
}

/// The Tessera type of a safetensors dtype, if Tessera computes with it.
fn dtype(dtype: Dtype) -> Option<DType> {
    match dtype {
        Dtype::F32 => Some(DType::F32),
        Dtype::F16 => Some(DType::F16),
        Dtype::BF16 => Some(DType::BF16),
        _ => None,
    }
}

/// The canonical (GGUF) name of a Hugging Face tensor name, or `None` for a
/// name Tessera does not use.
pub(crate) fn canonical_name(hf_name: &str) -> Option<String> {
    let top = match hf_name {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(name) = top {
        return Some(name.to_string());
    }

    let rest = hf_name.strip_prefix("model.layers.")?;
    let (layer, suffix) = rest.split_once('.')?;
    if layer.is_empty() || !layer.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = suffix.rsplit_once('.')?;
    if kind != "weight" && kind != "bias" {
        return None;
    }
    let canonical = match module {
        "input_layernorm" => "attn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "post_attention_layernorm" => "ffn_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{canonical}.{kind}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map() {
        let cases = [
            ("model.embed_tokens.weight", Some("token_embd.weight")),
            (
                "model.layers.3.input_layernorm.weight",
                Some("blk.3.attn_norm.weight"),
            ),
            (
                "model.layers.12.self_attn.o_proj.weight",
                Some("blk.12.attn_output.weight"),
            ),
            (
                "model.layers.0.self_attn.k_proj.bias",
                Some("blk.0.attn_k.bias"),
            ),
            (
                "model.layers.0.mlp.down_proj.weight",
                Some("blk.0.ffn_down.weight"),
            ),
            (
                "model.layers.0.post_attention_layernorm.weight",
                Some("blk.0.ffn_norm.weight"),
            ),
            ("model.norm.weight", Some("output_norm.weight")),
            ("lm_head.weight", Some("output.weight")),
            ("model.layers.0.self_attn.rotary_emb.inv_freq", None),
            ("model.layers.x.mlp.up_proj.weight", None),
            ("model.layers.+1.mlp.up_proj.weight", None),
        ];
        for (hf, want) in cases {
            assert_eq!(canonical_name(hf).as_deref(), want, "{hf}");
        }
    }
}
