//! Plain reference kernels: the ground truth that faster kernels are tested
//! against. Written for clarity, not speed.
//!
//! The decoders follow ggml's `dequantize_row_*` element by element, including
//! the order of the f32 operations (`d * q + m` is a product then a sum, Q4_K
//! is `(d * sc) * q - dmin * m`, Q6_K is `(d * sc) * q`), so an encoded row
//! decodes to the same f32 values here as in ggml. The byte layouts are
//! tabled in `blocks.rs`.

use crate::blocks::{self, f16_at, scale_min_k4, u32_at, QK, QK_K};
use crate::{DType, WeightView};

/// Decodes whole blocks of `dtype` from `src` into `dst` (`dst.len()` elements).
///
/// Panics when `dst.len()` is not a whole number of blocks or `src` does not
/// hold exactly that many blocks (a caller bug).
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    blocks::check_row(dtype, src, dst.len());
    let blocks = src.chunks_exact(dtype.block_bytes());
    let outs = dst.chunks_exact_mut(dtype.block_size());
    let decode: fn(&[u8], &mut [f32]) = match dtype {
        DType::F32 => |b, y| y[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        DType::F16 => |b, y| y[0] = f16_at(b, 0),
        DType::BF16 => |b, y| y[0] = half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
        DType::Q8_0 => block_q8_0,
        DType::Q4_0 => block_q4_0,
        DType::Q4_1 => block_q4_1,
        DType::Q5_0 => block_q5_0,
        DType::Q5_1 => block_q5_1,
        DType::Q4K => block_q4_k,
        DType::Q5K => block_q5_k,
        DType::Q6K => block_q6_k,
    };
    for (b, y) in blocks.zip(outs) {
        decode(b, y);
    }
}

/// `y[n, rows] = x[n, cols] · wᵀ`, accumulating in f64.
///
/// `x` is `[n, w.cols]` and `y` is `[n, w.rows]`, both f32 row-major. Panics
/// when their lengths disagree with `n` and `w`'s shape (a caller bug).
pub fn matmul(w: &WeightView<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(
        x.len(),
        n * w.cols,
        "x must be [n = {n}, cols = {}]",
        w.cols
    );
    assert_eq!(
        y.len(),
        n * w.rows,
        "y must be [n = {n}, rows = {}]",
        w.rows
    );
    if w.cols == 0 {
        // An empty sum; also keeps `chunks_exact` below away from a zero size.
        y.fill(0.0);
        return;
    }
    let mut row = vec![0.0f32; w.cols];
    for r in 0..w.rows {
        dequantize_row(w.dtype, w.row(r), &mut row);
        for (i, xi) in x.chunks_exact(w.cols).enumerate() {
            let dot: f64 = row
                .iter()
                .zip(xi)
                .map(|(&a, &b)| f64::from(a) * f64::from(b))
                .sum();
            y[i * w.rows + r] = dot as f32;
        }
    }
}

/// Q8_0: `y[j] = d * qs[j]`, `qs` signed.
fn block_q8_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    for j in 0..QK {
        y[j] = f32::from(b[2 + j] as i8) * d;
    }
}

/// Q4_0: byte `j` holds element `j` in its low nibble and element `j + 16` in
/// its high nibble; `y = (q - 8) * d`.
fn block_q4_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..18];
    for j in 0..QK / 2 {
        y[j] = f32::from(i16::from(qs[j] & 0x0F) - 8) * d;
        y[j + 16] = f32::from(i16::from(qs[j] >> 4) - 8) * d;
    }
}

/// Q4_1: nibbles as Q4_0, `y = q * d + m`.
fn block_q4_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..20];
    for j in 0..QK / 2 {
        y[j] = f32::from(qs[j] & 0x0F) * d + m;
        y[j + 16] = f32::from(qs[j] >> 4) * d + m;
    }
}

/// The 5-bit quants of a Q5_0/Q5_1 block: nibbles as Q4_0, and bit `j` of the
/// little-endian `qh` is the fifth bit of element `j`.
fn q5_quants(qh: u32, qs: &[u8]) -> [u8; QK] {
    let mut q = [0u8; QK];
    for j in 0..QK / 2 {
        let hi_lo = ((qh >> j) & 1) as u8;
        let hi_hi = ((qh >> (j + 16)) & 1) as u8;
        q[j] = (qs[j] & 0x0F) | (hi_lo << 4);
        q[j + 16] = (qs[j] >> 4) | (hi_hi << 4);
    }
    q
}

/// Q5_0: `y = (q - 16) * d`.
fn block_q5_0(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, 0);
    let q = q5_quants(u32_at(b, 2), &b[6..22]);
    for (yj, &qj) in y.iter_mut().zip(&q) {
        *yj = f32::from(i16::from(qj) - 16) * d;
    }
}

/// Q5_1: `y = q * d + m`.
fn block_q5_1(b: &[u8], y: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let q = q5_quants(u32_at(b, 4), &b[8..24]);
    for (yj, &qj) in y.iter_mut().zip(&q) {
        *yj = f32::from(qj) * d + m;
    }
}

/// Q4_K: eight sub-blocks of 32. Each 64 elements share 32 `qs` bytes: low
/// nibbles are sub-block `2k`, high nibbles sub-block `2k + 1`.
fn block_q4_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    for sub in 0..8 {
        let (sc, m) = scale_min_k4(sub, scales);
        let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
        let qs = &b[blocks::Q4K_QS + 32 * (sub / 2)..][..32];
        let shift = 4 * (sub % 2);
        for l in 0..32 {
            let q = (qs[l] >> shift) & 0x0F;
            y[32 * sub + l] = d1 * f32::from(q) - m1;
        }
    }
}

/// Q5_K: as Q4_K, plus a fifth bit for element `l` of sub-block `sub` in bit
/// `sub` of `qh[l]`.
fn block_q5_k(b: &[u8], y: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..16];
    let qh = &b[blocks::Q5K_QH..blocks::Q5K_QS];
    for sub in 0..8 {
        let (sc, m) = scale_min_k4(sub, scales);
        let (d1, m1) = (d * f32::from(sc), dmin * f32::from(m));
        let qs = &b[blocks::Q5K_QS + 32 * (sub / 2)..][..32];
        let shift = 4 * (sub % 2);
        for l in 0..32 {
            let q = ((qs[l] >> shift) & 0x0F) | (((qh[l] >> sub) & 1) << 4);
            y[32 * sub + l] = d1 * f32::from(q) - m1;
        }
    }
}

/// Q6_K: two halves of 128. In half `h`, element `32 * k + l` (k in 0..4, l in
/// 0..32) takes its low nibble from `ql[64h + l + 32 * (k % 2)]` (low nibble for
/// k < 2, high for k >= 2) and its top two bits from bits `2k..2k+2` of
/// `qh[32h + l]`; its scale is `scales[8h + 2k + l / 16]`.
fn block_q6_k(b: &[u8], y: &mut [f32]) {
    let d = f16_at(b, blocks::Q6K_D);
    for half in 0..2 {
        let ql = &b[64 * half..][..64];
        let qh = &b[blocks::Q6K_QH + 32 * half..][..32];
        let scales = &b[blocks::Q6K_SCALES + 8 * half..][..8];
        for k in 0..4 {
            for l in 0..32 {
                let lo = (ql[l + 32 * (k % 2)] >> (4 * (k / 2))) & 0x0F;
                let hi = (qh[l] >> (2 * k)) & 3;
                let q = i16::from(lo | (hi << 4)) - 32;
                let sc = f32::from(scales[2 * k + l / 16] as i8);
                y[QK_K / 2 * half + 32 * k + l] = d * sc * f32::from(q);
            }
        }
    }
}
