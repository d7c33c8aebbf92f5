//! Compute kernels for Tessera.
//!
//! Weights stay in the format they were stored in (f32, f16, bf16 and the GGUF
//! block-quantized types); every matrix product reads them directly. Each kernel
//! has a plain [`reference`] version, written for clarity and used by tests as
//! the ground truth, and a [`cpu`] version written for speed. A CUDA backend
//! will sit beside [`cpu`] behind the same signatures.
//!
//! Conventions:
//! - a weight matrix is `[rows, cols]` = `[out_features, in_features]`,
//!   row-major, each row encoded on its own in the matrix's [`DType`];
//! - activations are f32, row-major `[n, features]`;
//! - weight bytes may be unaligned (they can come straight from a memory map),
//!   so kernels read them byte-wise.

mod blocks;
pub mod cpu;
mod dtype;
mod error;
pub mod ops;
pub mod quant;
pub mod reference;
mod weight;

pub use dtype::DType;
pub use error::KernelError;
pub use weight::WeightView;
