//! The per-task work of the CPU matrix product: a contiguous range of output
//! rows, for one activation row ([`matvec_rows`]) or many ([`matmul_rows`]).
//!
//! The loops here are the same for every instruction set; the arithmetic
//! comes from a [`Kernels`] implementation (`portable.rs`, `avx2/`).

use crate::{DType, WeightView};

/// Bytes of decoded weights per tile in [`matmul_rows`]: small enough to
/// stay in L2 while every activation row streams past it.
const TILE_BYTES: usize = 96 * 1024;

/// The inner kernels of one instruction set.
///
/// Decoded values must equal [`crate::reference::dequantize_row`]'s bit for
/// bit; dot products may sum in any order, in f32.
pub(super) trait Kernels: Copy + Send + Sync {
    /// `row · x` for one encoded weight row (`[cols]` of `dtype`) and `x`
    /// (`[cols]`), without materialising the row.
    fn dot_encoded(self, dtype: DType, row: &[u8], x: &[f32]) -> f32;

    /// Decodes one encoded row into `dst` (`[cols]`).
    fn decode(self, dtype: DType, row: &[u8], dst: &mut [f32]);

    /// The products of four f32 weight rows with three f32 activation rows,
    /// all of one length: `out[i][r] = w[r] · x[i]`.
    fn dot_tile(self, w: [&[f32]; TILE_W], x: [&[f32]; TILE_X]) -> [[f32; TILE_W]; TILE_X];
}

/// Weight rows per [`Kernels::dot_tile`].
pub(super) const TILE_W: usize = 4;

/// Activation rows per [`Kernels::dot_tile`].
pub(super) const TILE_X: usize = 3;

/// `ys[i] = w.row(row0 + i) · x` for each `i`; `x` is `[w.cols]`.
pub(super) fn matvec_rows(
    k: impl Kernels,
    w: &WeightView<'_>,
    x: &[f32],
    row0: usize,
    ys: &mut [f32],
) {
    for (i, y) in ys.iter_mut().enumerate() {
        *y = k.dot_encoded(w.dtype, w.row(row0 + i), x);
    }
}

/// One task's share of a multi-row product.
#[derive(Debug, Clone, Copy)]
pub(super) struct MatmulTask<'a> {
    /// The whole weight matrix, `[rows, cols]`; `cols > 0`.
    pub w: WeightView<'a>,
    /// Activations, `[n, cols]` f32.
    pub x: &'a [f32],
    /// Activation rows; at least 1.
    pub n: usize,
    /// First output row of this task.
    pub row0: usize,
}

/// Output rows `row0..row0 + yt.len() / n` for all `n` activation rows, into
/// `yt` transposed: `yt` is `[chunk_rows, n]`, `yt[r * n + i]` the product of
/// weight row `row0 + r` with activation row `i`.
///
/// Weight rows are decoded a tile at a time; the activation rows then meet
/// the whole tile while it is in cache, in micro-tiles of [`TILE_W`] weight
/// rows by [`TILE_X`] activation rows so each load serves several
/// multiply-adds.
pub(super) fn matmul_rows(k: impl Kernels, task: MatmulTask<'_>, yt: &mut [f32]) {
    let MatmulTask { w, x, n, row0 } = task;
    let cols = w.cols;
    let tile_rows = (TILE_BYTES / (4 * cols)).clamp(TILE_W, 64) / TILE_W * TILE_W;
    let mut tile = Vec::with_capacity(tile_rows * cols);
    for (t, yt_tile) in yt.chunks_mut(tile_rows * n).enumerate() {
        let first = row0 + t * tile_rows;
        let rows = yt_tile.len() / n;

        // Decode the tile once.
        tile.resize(rows * cols, 0.0);
        for (r, dst) in tile.chunks_exact_mut(cols).enumerate() {
            k.decode(w.dtype, w.row(first + r), dst);
        }

        tile_products(k, &tile, x, cols, yt_tile);
    }
}

/// `yt[r * n + i] = tile[r] · x[i]` for a decoded tile (`[rows, cols]`) and
/// every activation row of `x` (`[n, cols]`).
///
/// Micro-tiles past the last weight or activation row repeat that row and
/// drop the duplicate products, so one kernel covers every shape.
fn tile_products(k: impl Kernels, tile: &[f32], x: &[f32], cols: usize, yt: &mut [f32]) {
    let (rows, n) = (tile.len() / cols, x.len() / cols);
    let w_row = |r: usize| &tile[r.min(rows - 1) * cols..][..cols];
    let x_row = |i: usize| &x[i.min(n - 1) * cols..][..cols];
    for i0 in (0..n).step_by(TILE_X) {
        let xs: [&[f32]; TILE_X] = std::array::from_fn(|d| x_row(i0 + d));
        for r0 in (0..rows).step_by(TILE_W) {
            let ws: [&[f32]; TILE_W] = std::array::from_fn(|d| w_row(r0 + d));
            let out = k.dot_tile(ws, xs);
            for (di, products) in out.iter().enumerate().take(n - i0) {
                for (dr, &v) in products.iter().enumerate().take(rows - r0) {
                    yt[(r0 + dr) * n + i0 + di] = v;
                }
            }
        }
    }
}
