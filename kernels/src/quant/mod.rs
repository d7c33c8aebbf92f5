//! Quantizers: f32 rows to each block format (round to nearest), used to
//! build synthetic models and test inputs.
//!
//! These are simple and valid, not llama.cpp's error-minimising searches: each
//! block takes its scale from its own min/max, the scales are rounded to f16
//! (and, for the K-quants, to their 6- or 8-bit codes) first, and every quant
//! is then rounded against the scale the decoder will actually use. Inputs
//! should be finite; non-finite inputs give a valid but meaningless encoding.

mod kquant;
mod legacy;

use crate::DType;

/// Encodes `src` (a whole number of blocks) as `dtype`.
///
/// The result holds `dtype.bytes_for(src.len())` bytes and decodes with
/// [`crate::reference::dequantize_row`]. Panics when `src.len()` is not a whole
/// number of blocks (a caller bug).
pub fn quantize_row(dtype: DType, src: &[f32]) -> Vec<u8> {
    let Some(bytes) = dtype.bytes_for(src.len()) else {
        panic!(
            "{dtype} row of {} elements is not a multiple of {}",
            src.len(),
            dtype.block_size()
        );
    };
    let mut out = Vec::with_capacity(bytes);
    let encode: fn(&[f32], &mut Vec<u8>) = match dtype {
        DType::F32 => |x, out| out.extend_from_slice(&x[0].to_le_bytes()),
        DType::F16 => |x, out| out.extend_from_slice(&half::f16::from_f32(x[0]).to_le_bytes()),
        DType::BF16 => |x, out| out.extend_from_slice(&half::bf16::from_f32(x[0]).to_le_bytes()),
        DType::Q8_0 => legacy::q8_0,
        DType::Q4_0 => legacy::q4_0,
        DType::Q4_1 => legacy::q4_1,
        DType::Q5_0 => legacy::q5_0,
        DType::Q5_1 => legacy::q5_1,
        DType::Q4K => kquant::q4_k,
        DType::Q5K => kquant::q5_k,
        DType::Q6K => kquant::q6_k,
    };
    for block in src.chunks_exact(dtype.block_size()) {
        encode(block, &mut out);
    }
    debug_assert_eq!(out.len(), bytes, "{dtype} encoder wrote a wrong block size");
    out
}

/// `v` rounded to the nearest f16: its bits, and its value back in f32.
fn to_f16(v: f32) -> (u16, f32) {
    let h = half::f16::from_f32(v);
    (h.to_bits(), h.to_f32())
}

/// `round(v / step)` clamped to `lo..=hi`; 0 clamped when `step` is 0 (a block
/// whose values are all equal to the offset).
fn quant(v: f32, step: f32, lo: i32, hi: i32) -> i32 {
    if step == 0.0 {
        return 0.clamp(lo, hi);
    }
    ((v / step).round() as i32).clamp(lo, hi)
}

/// The element of largest magnitude, with its sign (0 for an empty block).
fn signed_absmax(x: &[f32]) -> f32 {
    x.iter()
        .copied()
        .fold(0.0, |best, v| if v.abs() > best.abs() { v } else { best })
}

/// The smallest and largest element of a non-empty block.
fn min_max(x: &[f32]) -> (f32, f32) {
    x.iter()
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
            (lo.min(v), hi.max(v))
        })
}
