//! Every set of kernels against the reference, whichever this CPU would
//! pick: the public tests in `tests/` only reach the detected one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::isa::Isa;
use super::rows::MatmulTask;
use crate::{quant, reference, DType, WeightView};

/// Every kernel set this CPU can run.
fn all_isas() -> Vec<Isa> {
    let mut isas = vec![Isa::Portable];
    if !matches!(Isa::detect(), Isa::Portable) {
        isas.push(Isa::detect());
    }
    isas
}

/// Row lengths covering one unit, several, and partial float units.
fn col_sizes(dtype: DType) -> Vec<usize> {
    match dtype.block_size() {
        1 => vec![5, 32, 70, 1056],
        b => vec![b, 3 * b, 40 * b],
    }
}

/// A `[rows, cols]` matrix quantized from uniform values in `-1..1`.
fn matrix(rng: &mut ChaCha8Rng, dtype: DType, rows: usize, cols: usize) -> Vec<u8> {
    let values: Vec<f32> = (0..rows * cols)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    values
        .chunks_exact(cols)
        .flat_map(|r| quant::quantize_row(dtype, r))
        .collect()
}

#[test]
fn decoding_is_bit_exact_for_every_isa() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    for isa in all_isas() {
        for dtype in DType::ALL {
            for cols in col_sizes(dtype) {
                let bytes = dtype.bytes_for(cols).expect("whole blocks");
                let random: Vec<u8> = (0..bytes).map(|_| rng.random()).collect();
                for src in [matrix(&mut rng, dtype, 1, cols), random] {
                    let (mut fast, mut plain) = (vec![0.0; cols], vec![0.0; cols]);
                    isa.dequantize(dtype, &src, &mut fast);
                    reference::dequantize_row(dtype, &src, &mut plain);
                    for (j, (f, p)) in fast.iter().zip(&plain).enumerate() {
                        let same = f.to_bits() == p.to_bits() || (f.is_nan() && p.is_nan());
                        assert!(same, "{isa:?} {dtype} cols {cols} element {j}: {f} vs {p}");
                    }
                }
            }
        }
    }
}

/// Checks `got` against the reference product `want` of `w` and `x`.
fn assert_close(what: &str, w: &WeightView<'_>, x: &[f32], got: &[f32], want: &[f32]) {
    let n = x.len() / w.cols;
    // At least 8 f32 lanes, each summing at most cols / 8 products.
    let bound = (w.cols as f64 / 8.0 + 8.0) * f64::from(f32::EPSILON);
    let mut row = vec![0.0; w.cols];
    for r in 0..w.rows {
        reference::dequantize_row(w.dtype, w.row(r), &mut row);
        for (i, xi) in x.chunks_exact(w.cols).enumerate() {
            let scale: f64 = row
                .iter()
                .zip(xi)
                .map(|(&a, &b)| f64::from(a * b).abs())
                .sum();
            let (g, e) = (got[i * w.rows + r], want[i * w.rows + r]);
            let err = (f64::from(g) - f64::from(e)).abs();
            assert!(err <= bound * scale, "{what} row {r} of {n}: {g} vs {e}");
        }
    }
}

#[test]
fn products_match_reference_for_every_isa() {
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    for isa in all_isas() {
        for dtype in DType::ALL {
            for cols in col_sizes(dtype) {
                for (rows, n) in [(1, 1), (6, 1), (9, 2), (5, 7)] {
                    let data = matrix(&mut rng, dtype, rows, cols);
                    let w = WeightView::new(dtype, rows, cols, &data).expect("valid shape");
                    let x: Vec<f32> = (0..n * cols).map(|_| rng.random_range(-2.0..2.0)).collect();
                    let mut want = vec![0.0; n * rows];
                    reference::matmul(&w, &x, n, &mut want);

                    // One task for all rows, through the transpose as `matmul` does.
                    let mut got = vec![0.0; n * rows];
                    if n == 1 {
                        isa.matvec_rows(&w, &x, 0, &mut got);
                    } else {
                        let mut yt = vec![0.0; n * rows];
                        isa.matmul_rows(
                            MatmulTask {
                                w,
                                x: &x,
                                n,
                                row0: 0,
                            },
                            &mut yt,
                        );
                        for (r, products) in yt.chunks_exact(n).enumerate() {
                            for (i, &v) in products.iter().enumerate() {
                                got[i * rows + r] = v;
                            }
                        }
                    }
                    let what = format!("{isa:?} {dtype} [{rows} x {cols}] n {n}");
                    assert_close(&what, &w, &x, &got, &want);
                }
            }
        }
    }
}
