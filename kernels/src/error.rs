//! Errors raised when a weight's bytes do not fit its declared shape and type.

/// A weight whose declared type, shape and byte length disagree.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// A row length that is not a whole number of quantization blocks.
    #[error("{dtype} rows must hold a multiple of {block} elements, got {cols}")]
    RowNotBlockAligned {
        dtype: crate::DType,
        block: usize,
        cols: usize,
    },
    /// A byte buffer whose length disagrees with the shape.
    #[error("{dtype} matrix [{rows}, {cols}] needs {expected} bytes, got {actual}")]
    ByteLength {
        dtype: crate::DType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },
}

impl KernelError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::RowNotBlockAligned { .. } => "row_not_block_aligned",
            Self::ByteLength { .. } => "byte_length",
        }
    }
}
