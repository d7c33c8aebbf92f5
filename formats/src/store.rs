//! Where a model's tensors are: memory-mapped files and, per canonical tensor
//! name, its type, shape and byte range.

use std::collections::BTreeMap;
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
#[derive(Debug)]
pub struct TensorStore {
    files: Vec<(PathBuf, Arc<Mmap>)>,
    tensors: BTreeMap<String, TensorInfo>,
    /// Architecture name used in error messages.
    architecture: String,
}

impl TensorStore {
    /// Builds a store; every tensor's range must already be checked against its file.
    pub(crate) fn new(
        files: Vec<(PathBuf, Arc<Mmap>)>,
        tensors: BTreeMap<String, TensorInfo>,
        architecture: String,
    ) -> Self {
        Self { files, tensors, architecture }
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
        let info = self.tensors.get(name).ok_or_else(|| FormatError::MissingTensor {
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
