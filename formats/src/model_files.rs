//! Opening a model from a path: a GGUF file or a Hugging Face folder.

use std::path::{Path, PathBuf};

use crate::{ChatTemplate, FormatError, ModelConfig, TensorStore, Tokenizer};

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
        let _ = path;
        unimplemented!("formats helper fills this in")
    }
}
