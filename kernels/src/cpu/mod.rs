//! Fast CPU kernels, parallel over output rows with rayon (the caller's pool).
//!
//! Weights are never dequantized as a whole. For one activation row
//! ([`matvec`], and [`matmul`] with `n = 1`: the decode hot path) each weight
//! row is decoded 32 elements at a time straight into vector registers and
//! multiplied into the accumulators. For several rows (prefill) a tile of
//! weight rows is decoded once into a small buffer and every activation row
//! meets it there, which spreads the decoding over `n`.
//!
//! Numerics: decoded weights are bit for bit those of
//! [`crate::reference::dequantize_row`] and activations stay f32 (they are
//! never quantized). A result differs from the reference only in summing the
//! products in f32, over at least eight lanes, with fused multiply-adds where
//! the CPU has them, instead of in f64.
//!
//! Layout: `rows.rs` holds the row loops, the same for every instruction set;
//! `portable.rs` (any target, left to the autovectorizer) and `avx2/`
//! (x86-64 with AVX2, FMA and F16C, written by hand) supply the arithmetic;
//! `isa.rs` picks one at run time.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod decode;
mod isa;
mod portable;
mod rows;

use rayon::prelude::*;

use self::isa::Isa;
use self::rows::MatmulTask;
use crate::{blocks, DType, WeightView};

/// Multiply-adds below which a task is not worth handing to another thread
/// (about ten microseconds of work).
const MIN_TASK_MACS: usize = 1 << 17;

/// Tasks per pool thread, so uneven thread speeds still balance.
const TASKS_PER_THREAD: usize = 4;

/// Decodes whole blocks of `dtype` from `src` into `dst` (`dst.len()` elements).
///
/// Same values as [`crate::reference::dequantize_row`]. Panics when `dst.len()`
/// is not a whole number of blocks or `src` does not hold exactly that many
/// blocks (a caller bug).
pub fn dequantize_row(dtype: DType, src: &[u8], dst: &mut [f32]) {
    blocks::check_row(dtype, src, dst.len());
    Isa::detect().dequantize(dtype, src, dst);
}

/// `y[n, rows] = x[n, cols] · wᵀ`.
///
/// `x` is `[n, w.cols]` and `y` is `[n, w.rows]`, both f32 row-major. With
/// `n = 1` this is [`matvec`]. Panics when the lengths disagree with `n` and
/// `w`'s shape, or `w.data` with its shape (caller bugs).
pub fn matmul(w: &WeightView<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    check_matmul(w, x, n, y);
    if n == 1 {
        return matvec(w, x, y);
    }
    if n == 0 || w.rows == 0 {
        return;
    }
    if w.cols == 0 {
        y.fill(0.0);
        return;
    }

    // Tasks own row ranges, so they write the transpose `[rows, n]`.
    let isa = Isa::detect();
    let chunk = rows_per_task(w.rows, w.cols, n);
    let mut yt = vec![0.0f32; w.rows * n];
    for_each_chunk(&mut yt, chunk * n, |c, yt| {
        let task = MatmulTask {
            w: *w,
            x,
            n,
            row0: c * chunk,
        };
        isa.matmul_rows(task, yt);
    });

    for (r, products) in yt.chunks_exact(n).enumerate() {
        for (i, &v) in products.iter().enumerate() {
            y[i * w.rows + r] = v;
        }
    }
}

/// `y[rows] = w · x[cols]`: [`matmul`] for a single activation row.
///
/// Panics when `x.len() != w.cols`, `y.len() != w.rows`, or `w.data` disagrees
/// with `w`'s shape (caller bugs).
pub fn matvec(w: &WeightView<'_>, x: &[f32], y: &mut [f32]) {
    check_matmul(w, x, 1, y);
    if w.cols == 0 {
        y.fill(0.0);
        return;
    }
    let isa = Isa::detect();
    let chunk = rows_per_task(w.rows, w.cols, 1);
    for_each_chunk(y, chunk, |c, ys| isa.matvec_rows(w, x, c * chunk, ys));
}

/// Asserts the shapes of a product; every later index relies on them.
#[track_caller]
fn check_matmul(w: &WeightView<'_>, x: &[f32], n: usize, y: &[f32]) {
    let row_bytes = w.dtype.bytes_for(w.cols);
    assert!(
        row_bytes.is_some(),
        "{} cols must be whole {} blocks",
        w.cols,
        w.dtype
    );
    assert_eq!(
        Some(w.data.len()),
        row_bytes.map(|b| b * w.rows),
        "weight bytes vs shape"
    );
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
}

/// Output rows per task: enough work to outweigh handing the task over, and
/// enough tasks to keep every thread of the current pool busy.
fn rows_per_task(rows: usize, cols: usize, n: usize) -> usize {
    let min_rows = MIN_TASK_MACS.div_ceil(cols * n);
    let balanced = rows.div_ceil(rayon::current_num_threads() * TASKS_PER_THREAD);
    min_rows.max(balanced).max(1)
}

/// Runs `f(chunk_index, chunk)` over `chunk`-sized pieces of `out`, in
/// parallel on the current rayon pool, or inline when there is one piece.
fn for_each_chunk(out: &mut [f32], chunk: usize, f: impl Fn(usize, &mut [f32]) + Sync) {
    if out.len() <= chunk {
        f(0, out);
    } else {
        out.par_chunks_mut(chunk)
            .enumerate()
            .for_each(|(c, piece)| f(c, piece));
    }
}

#[cfg(test)]
mod tests;
