//! Where a model's tensors are: memory-mapped files and, per canonical tensor
//! name, its type, shape and byte range.
//!
//! Invariant: every [`TensorInfo::range`] lies inside its mapped file, so
//! [`TensorStore::bytes`] never reads out of bounds. Loaders check this before
//! they build a store.

use std::collections::BTreeMap;
use std::fs::File;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use tessera_kernels::DType;

use crate::FormatError;

/// One tensor's place in the mapped files.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Canonical (GGUF-style) name.
    pub name: String,
    pub dtype: DType,
    /// Outermost dimension first: `[rows, cols]` = `[out, in]` for matrices.
    pub shape: Vec<usize>,
    /// Index into the store's files.
    pub file: usize,
    /// Byte range within that file; checked to lie inside it.
    pub range: Range<usize>,
}

/// The mapped files of a model and the tensors in them.
#[derive(Debug, Clone)]
pub struct TensorStore {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    tensors: BTreeMap<String, TensorInfo>,
    /// Architecture name used in error messages.
    architecture: String,
}

impl TensorStore {
    /// Builds a store; every tensor's range must already be checked against its file.
    ///
    /// Ranges are still checked here (a cheap loop) so that a loader bug
    /// surfaces as an error rather than an out-of-bounds read later.
    pub(crate) fn new(
        files: Vec<(PathBuf, Arc<Mmap>)>,
        tensors: BTreeMap<String, TensorInfo>,
        architecture: String,
    ) -> Result<Self, FormatError> {
        for info in tensors.values() {
            let Some((path, mmap)) = files.get(info.file) else {
                return Err(FormatError::Malformed {
                    path: files.first().map(|f| f.0.clone()).unwrap_or_default(),
                    format: "model",
                    reason: format!(
                        "tensor `{}` refers to file #{}, which was not opened",
                        info.name, info.file
                    ),
                });
            };
            if info.range.start > info.range.end || info.range.end > mmap.len() {
                return Err(FormatError::Malformed {
                    path: path.clone(),
                    format: "model",
                    reason: format!(
                        "tensor `{}` spans bytes {:?}, outside the file's {} bytes",
                        info.name,
                        info.range,
                        mmap.len()
                    ),
                });
            }
        }
        Ok(Self {
            files,
            tensors,
            architecture,
        })
    }

    /// The architecture name given at construction (`llama`, `qwen2`, …).
    pub fn architecture(&self) -> &str {
        &self.architecture
    }

    /// How many tensors the store holds.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether the store holds no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The tensor called `name`, if present.
    pub fn info(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.get(name)
    }

    /// Every tensor, by name.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.values()
    }

    /// The tensor called `name`, which must have `shape`.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<&TensorInfo, FormatError> {
        let info = self
            .tensors
            .get(name)
            .ok_or_else(|| FormatError::MissingTensor {
                path: self.files.first().map(|f| f.0.clone()).unwrap_or_default(),
                tensor: name.to_string(),
                arch: self.architecture.clone(),
            })?;
        if info.shape != shape {
            return Err(FormatError::ShapeMismatch {
                path: self.path(info).to_path_buf(),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                actual: info.shape.clone(),
            });
        }
        Ok(info)
    }

    /// The file a tensor lives in.
    pub fn path(&self, info: &TensorInfo) -> &Path {
        &self.files[info.file].0
    }

    /// A tensor's encoded bytes.
    pub fn bytes(&self, info: &TensorInfo) -> &[u8] {
        &self.files[info.file].1[info.range.clone()]
    }

    /// The mapping a tensor lives in, so a caller can keep a slice of it alive
    /// without copying.
    pub fn mapping(&self, info: &TensorInfo) -> Arc<Mmap> {
        Arc::clone(&self.files[info.file].1)
    }
}

/// Maps `path` read-only.
pub(crate) fn map_file(path: &Path) -> Result<Arc<Mmap>, FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        error: source,
    };
    let file = File::open(path).map_err(io)?;
    // SAFETY: the mapping is read-only and Tessera never writes model files
    // while they are open. Another process truncating or rewriting the file
    // under the mapping would be undefined behaviour; operators must not
    // replace a model's files in place while a server uses them (write a new
    // file and rename it instead, which leaves this mapping intact).
    let mmap = unsafe { Mmap::map(&file) }.map_err(io)?;
    Ok(Arc::new(mmap))
}
