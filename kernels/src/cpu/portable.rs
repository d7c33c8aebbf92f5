//! Portable kernels for any target: plain Rust over fixed-width lane arrays,
//! left to the autovectorizer. Used where no hand-written vector kernels
//! apply (see `avx2/`).
//!
//! Every kernel keeps 32 independent f32 accumulator lanes so consecutive
//! multiply-adds do not wait on one another, and sums the lanes pairwise at
//! the end. Multiply-adds are fused only where the build's target has FMA in
//! hardware; otherwise `f32::mul_add` would be a slow library call.

use super::decode::{self, Codec};
use super::rows::{Kernels, TILE_W, TILE_X};
use crate::DType;

/// Whether the build's target fuses multiply-adds in hardware (always on
/// AArch64; on x86-64 only when built with that target feature).
const HAS_FMA: bool = cfg!(any(target_arch = "aarch64", target_feature = "fma"));

/// Runs `$body` with `$C`, `$E`, `$B` bound to the codec of `$dtype`, its
/// values per unit and its bytes per unit.
macro_rules! with_codec {
    (@bind $C:ident, $E:ident, $B:ident = $codec:ty, $e:expr, $b:expr => $body:expr) => {{
        type $C = $codec;
        const $E: usize = $e;
        const $B: usize = $b;
        $body
    }};
    ($dtype:expr, |$C:ident, $E:ident, $B:ident| $body:expr) => {
        match $dtype {
            DType::F32 => with_codec!(@bind $C, $E, $B = decode::F32, 32, 128 => $body),
            DType::F16 => with_codec!(@bind $C, $E, $B = decode::F16, 32, 64 => $body),
            DType::BF16 => with_codec!(@bind $C, $E, $B = decode::Bf16, 32, 64 => $body),
            DType::Q8_0 => with_codec!(@bind $C, $E, $B = decode::Q8_0, 32, 34 => $body),
            DType::Q4_0 => with_codec!(@bind $C, $E, $B = decode::Q4_0, 32, 18 => $body),
            DType::Q4_1 => with_codec!(@bind $C, $E, $B = decode::Q4_1, 32, 20 => $body),
            DType::Q5_0 => with_codec!(@bind $C, $E, $B = decode::Q5_0, 32, 22 => $body),
            DType::Q5_1 => with_codec!(@bind $C, $E, $B = decode::Q5_1, 32, 24 => $body),
            DType::Q4K => with_codec!(@bind $C, $E, $B = decode::Q4K, 256, 144 => $body),
            DType::Q5K => with_codec!(@bind $C, $E, $B = decode::Q5K, 256, 176 => $body),
            DType::Q6K => with_codec!(@bind $C, $E, $B = decode::Q6K, 256, 210 => $body),
        }
    };
}

/// The portable kernels; available everywhere.
#[derive(Debug, Clone, Copy)]
pub(super) struct Portable;

impl Kernels for Portable {
    fn dot_encoded(self, dtype: DType, row: &[u8], x: &[f32]) -> f32 {
        with_codec!(dtype, |C, E, B| dot_encoded::<C, E, B, HAS_FMA>(row, x))
    }

    fn decode(self, dtype: DType, row: &[u8], dst: &mut [f32]) {
        with_codec!(dtype, |C, E, B| decode_row::<C, E, B>(row, dst))
    }

    fn dot_tile(self, w: [&[f32]; TILE_W], x: [&[f32]; TILE_X]) -> [[f32; TILE_W]; TILE_X] {
        x.map(|x| w.map(|w| dot_f32::<HAS_FMA>(w, x)))
    }
}

/// Accumulator lanes per dot product.
const LANES: usize = 32;

/// `acc + a * b`, fused when the target has FMA.
#[inline(always)]
fn mac<const FMA: bool>(a: f32, b: f32, acc: f32) -> f32 {
    if FMA {
        a.mul_add(b, acc)
    } else {
        acc + a * b
    }
}

/// The sum of the lanes, pairwise (a vector-friendly tree).
#[inline(always)]
fn reduce(mut acc: [f32; LANES]) -> f32 {
    let mut width = LANES / 2;
    while width > 0 {
        for l in 0..width {
            acc[l] += acc[l + width];
        }
        width /= 2;
    }
    acc[0]
}

/// `acc[l] += w[l] * x[l]` over one 32-element stretch.
#[inline(always)]
fn mac_lanes<const FMA: bool>(acc: &mut [f32; LANES], w: &[f32], x: &[f32]) {
    let (w, x) = (&w[..LANES], &x[..LANES]);
    for l in 0..LANES {
        acc[l] = mac::<FMA>(w[l], x[l], acc[l]);
    }
}

/// Dot product of one encoded weight row with `x` (`[cols]`): each unit is
/// decoded into a stack buffer and consumed at once, so the row is never
/// materialised.
#[inline(always)]
fn dot_encoded<C, const E: usize, const B: usize, const FMA: bool>(row: &[u8], x: &[f32]) -> f32
where
    C: Codec<E, B>,
{
    let mut acc = [0.0f32; LANES];
    let mut buf = [0.0f32; E];
    let units = row.chunks_exact(B);
    let (row_tail, x_tail) = (units.remainder(), &x[x.len() - x.len() % E..]);
    for (b, xs) in units.zip(x.chunks_exact(E)) {
        C::decode(b.try_into().expect("chunks_exact yields B bytes"), &mut buf);
        for (w, xs) in buf.chunks_exact(LANES).zip(xs.chunks_exact(LANES)) {
            mac_lanes::<FMA>(&mut acc, w, xs);
        }
    }
    let mut sum = reduce(acc);

    // Plain float rows may end in a partial unit.
    if !x_tail.is_empty() {
        let tail = &mut buf[..x_tail.len()];
        C::decode_tail(row_tail, tail);
        sum += tail
            .iter()
            .zip(x_tail)
            .fold(0.0, |s, (&w, &x)| mac::<FMA>(w, x, s));
    }
    sum
}

/// Decodes a whole encoded row into `dst` (`[cols]`).
#[inline(always)]
fn decode_row<C, const E: usize, const B: usize>(row: &[u8], dst: &mut [f32])
where
    C: Codec<E, B>,
{
    let units = row.chunks_exact(B);
    let row_tail = units.remainder();
    let mut outs = dst.chunks_exact_mut(E);
    for (b, y) in units.zip(&mut outs) {
        let y: &mut [f32; E] = y.try_into().expect("chunks_exact_mut yields E values");
        C::decode(b.try_into().expect("chunks_exact yields B bytes"), y);
    }
    C::decode_tail(row_tail, outs.into_remainder());
}

/// Dot product of two f32 slices of equal length.
#[inline(always)]
fn dot_f32<const FMA: bool>(w: &[f32], x: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let (wc, xc) = (w.chunks_exact(LANES), x.chunks_exact(LANES));
    let (w_tail, x_tail) = (wc.remainder(), xc.remainder());
    for (w, x) in wc.zip(xc) {
        mac_lanes::<FMA>(&mut acc, w, x);
    }
    w_tail
        .iter()
        .zip(x_tail)
        .fold(reduce(acc), |s, (&w, &x)| mac::<FMA>(w, x, s))
}
