//! Plain reference kernels: the ground truth that faster kernels are tested
//! against. Written for clarity, not speed.

use crate::{DType, WeightView};

/// Decodes whole blocks of `dtype` from `src` into `dst` (`dst.len()` elements).
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    let _ = (dtype, src, dst);
    unimplemented!("kernels helper fills this in")
}

/// `y[n, rows] = x[n, cols] · wᵀ`, accumulating in f64.
pub fn matmul(w: &WeightView<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    let _ = (w, x, n, y);
    unimplemented!("kernels helper fills this in")
}
