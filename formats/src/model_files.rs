//! Opening a model from a path: a GGUF file or a Hugging Face folder.
//!
//! Whatever the source, a model that opens has a validated configuration and
//! every tensor its architecture needs, with the right shape
//! ([`crate::validate_tensors`]).

use std::path::{Path, PathBuf};

use crate::{
    gguf, hf, validate_tensors, ChatTemplate, FormatError, ModelConfig, TensorStore, Tokenizer,
};

/// Everything Tessera reads from a model's files.
#[derive(Debug)]
pub struct ModelFiles {
    /// The path the model was opened from.
    pub source: PathBuf,
    pub config: ModelConfig,
    pub tensors: TensorStore,
    pub tokenizer: Tokenizer,
    /// The model's own chat template, when it ships one.
    pub chat_template: Option<ChatTemplate>,
}

impl ModelFiles {
    /// Opens a GGUF file, or a Hugging Face folder when `path` is a directory.
    pub fn open(path: &Path) -> Result<Self, FormatError> {
        let files = if path.is_dir() {
            open_hf(path)?
        } else {
            open_gguf(path)?
        };
        log_loaded(path, &files.config, &files.tensors);
        Ok(files)
    }

    /// The configuration and tensors only, without the tokenizer and chat
    /// template (which a shard does not need).
    pub fn open_weights(path: &Path) -> Result<(ModelConfig, TensorStore), FormatError> {
        let (config, store) = if path.is_dir() {
            hf_weights(path)?
        } else {
            gguf_weights(&gguf::open(path)?)?
        };
        log_loaded(path, &config, &store);
        Ok((config, store))
    }
}

fn open_gguf(path: &Path) -> Result<ModelFiles, FormatError> {
    let file = gguf::open(path)?;
    let (config, tensors) = gguf_weights(&file)?;
    Ok(ModelFiles {
        source: path.to_path_buf(),
        config,
        tensors,
        tokenizer: Tokenizer::from_gguf(&file)?,
        chat_template: ChatTemplate::from_gguf(&file)?,
    })
}

fn open_hf(dir: &Path) -> Result<ModelFiles, FormatError> {
    let (config, tensors) = hf_weights(dir)?;
    Ok(ModelFiles {
        source: dir.to_path_buf(),
        config,
        tensors,
        tokenizer: Tokenizer::from_hf_dir(dir)?,
        chat_template: ChatTemplate::from_hf_dir(dir)?,
    })
}

/// Configuration and validated tensors of an opened GGUF file.
fn gguf_weights(file: &gguf::GgufFile) -> Result<(ModelConfig, TensorStore), FormatError> {
    let config = ModelConfig::from_gguf(file)?;
    let store = file.tensor_store(config.architecture.name())?;
    validate_tensors(&config, &store)?;
    Ok((config, store))
}

/// Configuration and validated tensors of a Hugging Face folder.
fn hf_weights(dir: &Path) -> Result<(ModelConfig, TensorStore), FormatError> {
    let (config, store) = hf::open_weights(dir)?;
    validate_tensors(&config, &store)?;
    Ok((config, store))
}

fn log_loaded(path: &Path, config: &ModelConfig, store: &TensorStore) {
    tracing::info!(
        path = %path.display(),
        architecture = config.architecture.name(),
        num_layers = config.num_layers,
        hidden_size = config.hidden_size,
        tensors = store.len(),
        "model files opened"
    );
}
