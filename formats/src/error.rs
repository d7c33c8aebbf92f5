//! Errors raised while reading model files. Every variant names the file (and
//! the tensor or key) and says what was expected.

use std::path::PathBuf;

/// A model file that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    /// The file could not be opened or mapped.
    #[error("cannot read {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file's bytes do not follow its format.
    #[error("{path} is not a valid {format} file: {reason}")]
    Malformed {
        path: PathBuf,
        format: &'static str,
        reason: String,
    },
    /// A tensor the architecture needs is absent.
    #[error("{path} has no tensor `{tensor}`, which {arch} models need")]
    MissingTensor {
        path: PathBuf,
        tensor: String,
        arch: String,
    },
    /// A tensor whose shape disagrees with the configuration.
    #[error("tensor `{tensor}` in {path} has shape {actual:?}, expected {expected:?} from the model configuration")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        actual: Vec<usize>,
    },
    /// A tensor stored in a type Tessera cannot compute with.
    #[error("tensor `{tensor}` in {path} has unsupported type {dtype}; supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K")]
    UnsupportedDType {
        path: PathBuf,
        tensor: String,
        dtype: String,
    },
    /// An architecture Tessera does not implement.
    #[error("{path} holds a `{arch}` model; supported architectures: llama, mistral, qwen2")]
    UnsupportedArchitecture { path: PathBuf, arch: String },
    /// A file format version Tessera does not read (e.g. GGUF v1).
    #[error("{path}: {format} v{version} is not supported; supported versions: {supported}")]
    UnsupportedVersion {
        path: PathBuf,
        format: &'static str,
        version: u32,
        supported: &'static str,
    },
    /// A file the model needs that is not there (e.g. a shard named by a
    /// safetensors index).
    #[error("{path} does not exist, but {needed_by}")]
    MissingFile { path: PathBuf, needed_by: String },
    /// A file could not be written because what was asked for is invalid.
    #[error("cannot write {path}: {reason}")]
    Write { path: PathBuf, reason: String },
    /// A configuration key that is missing or out of range.
    #[error("{path}: configuration `{key}` {reason}")]
    Config {
        path: PathBuf,
        key: String,
        reason: String,
    },
    /// The tokenizer could not be built or used.
    #[error("tokenizer from {path}: {reason}")]
    Tokenizer { path: PathBuf, reason: String },
    /// The chat template could not be parsed or rendered.
    #[error("chat template from {path}: {reason}")]
    ChatTemplate { path: PathBuf, reason: String },
}

impl FormatError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "io",
            Self::Malformed { .. } => "malformed",
            Self::MissingTensor { .. } => "missing_tensor",
            Self::ShapeMismatch { .. } => "shape_mismatch",
            Self::UnsupportedDType { .. } => "unsupported_dtype",
            Self::UnsupportedArchitecture { .. } => "unsupported_architecture",
            Self::UnsupportedVersion { .. } => "unsupported_version",
            Self::MissingFile { .. } => "missing_file",
            Self::Write { .. } => "write",
            Self::Config { .. } => "config",
            Self::Tokenizer { .. } => "tokenizer",
            Self::ChatTemplate { .. } => "chat_template",
        }
    }
}
