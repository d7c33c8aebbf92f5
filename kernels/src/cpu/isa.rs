//! The instruction set the kernels run with, detected at run time, and
//! dispatch of the row loops (`rows.rs`) to its kernels.

#[cfg(target_arch = "x86_64")]
use super::avx2::Avx2;
use super::portable::Portable;
use super::rows::{self, Kernels, MatmulTask};
use crate::{DType, WeightView};

/// The kernels in use.
#[derive(Debug, Clone, Copy)]
pub(super) enum Isa {
    /// Plain Rust, for any target.
    Portable,
    /// Hand-written AVX2 + FMA + F16C.
    #[cfg(target_arch = "x86_64")]
    Avx2(Avx2),
}

impl Isa {
    /// The best kernels this CPU can run.
    pub(super) fn detect() -> Self {
        #[cfg(target_arch = "x86_64")]
        if let Some(k) = Avx2::detect() {
            return Isa::Avx2(k);
        }
        Isa::Portable
    }

    /// Decodes one encoded row into `dst`.
    pub(super) fn dequantize(self, dtype: DType, src: &[u8], dst: &mut [f32]) {
        match self {
            Isa::Portable => Portable.decode(dtype, src, dst),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(k) => k.decode(dtype, src, dst),
        }
    }

    /// See [`rows::matvec_rows`].
    pub(super) fn matvec_rows(self, w: &WeightView<'_>, x: &[f32], row0: usize, ys: &mut [f32]) {
        match self {
            Isa::Portable => rows::matvec_rows(Portable, w, x, row0, ys),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(k) => rows::matvec_rows(k, w, x, row0, ys),
        }
    }

    /// See [`rows::matmul_rows`].
    pub(super) fn matmul_rows(self, task: MatmulTask<'_>, yt: &mut [f32]) {
        match self {
            Isa::Portable => rows::matmul_rows(Portable, task, yt),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2(k) => rows::matmul_rows(k, task, yt),
        }
    }
}
