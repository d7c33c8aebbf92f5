//! A borrowed weight matrix: type, shape and the encoded bytes.

use crate::{DType, KernelError};

/// A `[rows, cols]` weight matrix in its stored encoding, row-major.
#[derive(Debug, Clone, Copy)]
pub struct WeightView<'a> {
    /// Storage type of every row.
    pub dtype: DType,
    /// Output features.
    pub rows: usize,
    /// Input features; a multiple of `dtype.block_size()`.
    pub cols: usize,
    /// `rows * row_bytes` bytes, possibly unaligned.
    pub data: &'a [u8],
}

impl<'a> WeightView<'a> {
    /// Checks that `data` holds exactly `rows` rows of `cols` elements.
    pub fn new(
        dtype: DType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        let row_bytes = dtype
            .bytes_for(cols)
            .ok_or(KernelError::RowNotBlockAligned {
                dtype,
                block: dtype.block_size(),
                cols,
            })?;
        // Saturating: a shape too large to address can never match `data`.
        let expected = row_bytes.saturating_mul(rows);
        if data.len() != expected {
            return Err(KernelError::ByteLength {
                dtype,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(Self {
            dtype,
            rows,
            cols,
            data,
        })
    }

    /// Bytes in one encoded row.
    pub fn row_bytes(&self) -> usize {
        self.cols / self.dtype.block_size() * self.dtype.block_bytes()
    }

    /// The encoded bytes of row `r`. Panics when `r >= rows` (a caller bug).
    pub fn row(&self, r: usize) -> &'a [u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }
}
