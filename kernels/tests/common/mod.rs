//! Helpers shared by the kernel tests: seeded random data and quantized
//! weight matrices.

#![allow(dead_code)] // each test binary uses its own subset

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tessera_kernels::{quant, DType};

/// A deterministic generator, one stream per `seed`.
pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values uniform in `lo..hi`.
pub fn uniform(rng: &mut ChaCha8Rng, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    (0..len).map(|_| rng.random_range(lo..hi)).collect()
}

/// `len` random bytes.
pub fn bytes(rng: &mut ChaCha8Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.random()).collect()
}

/// A `[rows, cols]` matrix of `dtype`, each row quantized from uniform
/// values in `-1..1`.
pub fn quantized_matrix(rng: &mut ChaCha8Rng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    (0..rows)
        .flat_map(|_| quant::quantize_row(dtype, &uniform(rng, cols, -1.0, 1.0)))
        .collect()
}

/// The little-endian bytes of `v` rounded to f16.
pub fn f16_le(v: f32) -> [u8; 2] {
    half::f16::from_f32(v).to_le_bytes()
}

/// Whether two decoded values agree bit for bit (any NaN matches any NaN).
pub fn same_bits(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}
