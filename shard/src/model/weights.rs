//! One rank's weights: slices of the model's tensors, kept in their stored
//! format.
//!
//! A row slice (column-parallel layers, the LM head) is a contiguous byte range
//! of the memory map and is borrowed without copying. A column slice
//! (row-parallel layers) takes part of every row; it is copied out when it
//! falls on quantization-block boundaries, and otherwise decoded to f32 (with a
//! warning) so any split stays correct.

use std::ops::Range;
use std::sync::Arc;

use memmap2::Mmap;
use tessera_formats::{FormatError, TensorInfo, TensorStore};
use tessera_kernels::{DType, WeightView};

use super::ModelError;

/// Where a weight's encoded bytes live.
#[derive(Debug)]
enum Bytes {
    /// A range of a memory-mapped model file.
    Mapped { map: Arc<Mmap>, range: Range<usize> },
    /// Bytes this rank materialised (a column slice).
    Owned(Vec<u8>),
}

/// A `[rows, cols]` matrix in its stored encoding.
#[derive(Debug)]
pub struct Weight {
    pub dtype: DType,
    pub rows: usize,
    pub cols: usize,
    bytes: Bytes,
}

impl Weight {
    /// The matrix as the kernels take it.
    pub fn view(&self) -> WeightView<'_> {
        let data = match &self.bytes {
            Bytes::Mapped { map, range } => &map[range.clone()],
            Bytes::Owned(v) => v.as_slice(),
        };
        WeightView {
            dtype: self.dtype,
            rows: self.rows,
            cols: self.cols,
            data,
        }
    }
}

/// Reads weights out of a tensor store, checking each shape against the
/// configuration.
pub struct Loader<'a> {
    pub store: &'a TensorStore,
}

impl<'a> Loader<'a> {
    /// The tensor `name`, which must be `[rows, cols]`.
    fn matrix(&self, name: &str, rows: usize, cols: usize) -> Result<&'a TensorInfo, ModelError> {
        let info = self.store.expect(name, &[rows, cols])?;
        if info.dtype.bytes_for(cols).is_none() {
            return Err(FormatError::Malformed {
                path: self.store.path(info).to_path_buf(),
                format: "model",
                reason: format!(
                    "tensor `{name}` rows of {cols} are not whole {} blocks",
                    info.dtype
                ),
            }
            .into());
        }
        Ok(info)
    }

    /// Rows `keep` of the `[rows, cols]` tensor `name`, without copying.
    pub fn rows(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        keep: Range<usize>,
    ) -> Result<Weight, ModelError> {
        let info = self.matrix(name, rows, cols)?;
        let row_bytes = info.dtype.bytes_for(cols).expect("checked by matrix()");
        let start = info.range.start + keep.start * row_bytes;
        let range = start..start + keep.len() * row_bytes;
        Ok(Weight {
            dtype: info.dtype,
            rows: keep.len(),
            cols,
            bytes: Bytes::Mapped {
                map: self.store.mapping(info),
                range,
            },
        })
    }

    /// Columns `keep` of every row of the `[rows, cols]` tensor `name`.
    pub fn cols(
        &self,
        name: &str,
        rows: usize,
        cols: usize,
        keep: Range<usize>,
    ) -> Result<Weight, ModelError> {
        let info = self.matrix(name, rows, cols)?;
        if keep == (0..cols) {
            return self.rows(name, rows, cols, 0..rows);
        }
        let block = info.dtype.block_size();
        let data = self.store.bytes(info);
        let row_bytes = info.dtype.bytes_for(cols).expect("checked by matrix()");
        if keep.start.is_multiple_of(block) && keep.end.is_multiple_of(block) {
            let (a, b) = (
                keep.start / block * info.dtype.block_bytes(),
                keep.end / block * info.dtype.block_bytes(),
            );
            let mut out = Vec::with_capacity(rows * (b - a));
            for row in data.chunks_exact(row_bytes) {
                out.extend_from_slice(&row[a..b]);
            }
            return Ok(Weight {
                dtype: info.dtype,
                rows,
                cols: keep.len(),
                bytes: Bytes::Owned(out),
            });
        }

        tracing::warn!(
            tensor = name,
            dtype = %info.dtype,
            start = keep.start,
            end = keep.end,
            "column slice is not block-aligned; holding it as f32"
        );
        let mut decoded = vec![0.0f32; cols];
        let mut out = Vec::with_capacity(rows * keep.len() * 4);
        for row in data.chunks_exact(row_bytes) {
            tessera_kernels::cpu::dequantize_row(info.dtype, row, &mut decoded);
            for v in &decoded[keep.clone()] {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
        Ok(Weight {
            dtype: DType::F32,
            rows,
            cols: keep.len(),
            bytes: Bytes::Owned(out),
        })
    }

    /// Elements `keep` of the 1-D tensor `name` of length `len`, decoded to f32.
    pub fn vector(
        &self,
        name: &str,
        len: usize,
        keep: Range<usize>,
    ) -> Result<Vec<f32>, ModelError> {
        let info = self.store.expect(name, &[len])?;
        let bytes = info
            .dtype
            .bytes_for(len)
            .ok_or_else(|| FormatError::Malformed {
                path: self.store.path(info).to_path_buf(),
                format: "model",
                reason: format!(
                    "vector `{name}` of {len} is not whole {} blocks",
                    info.dtype
                ),
            })?;
        let mut all = vec![0.0f32; len];
        tessera_kernels::cpu::dequantize_row(
            info.dtype,
            &self.store.bytes(info)[..bytes],
            &mut all,
        );
        Ok(all[keep].to_vec())
    }
}
