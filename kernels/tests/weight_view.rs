//! `WeightView::new`: shapes that fit their bytes, and the two ways they can
//! fail to.

use anyhow::{bail, ensure, Result};
use tessera_kernels::{DType, KernelError, WeightView};

#[test]
fn accepts_matching_bytes() -> Result<()> {
    let data = vec![7u8; 3 * 2 * 20];
    let w = WeightView::new(DType::Q4_1, 3, 64, &data)?;
    ensure!(w.row_bytes() == 40);
    ensure!(w.row(2).as_ptr() == data[80..].as_ptr());
    let f = WeightView::new(DType::F16, 5, 3, &data[..30])?;
    ensure!(f.row_bytes() == 6 && f.row(4).len() == 6);
    Ok(())
}

#[test]
fn rejects_rows_that_are_not_whole_blocks() -> Result<()> {
    match WeightView::new(DType::Q4K, 2, 300, &[0u8; 288]) {
        Err(
            e @ KernelError::RowNotBlockAligned {
                block: 256,
                cols: 300,
                ..
            },
        ) => {
            ensure!(e.label() == "row_not_block_aligned");
            ensure!(e.to_string().contains("Q4_K"), "{e}");
            Ok(())
        }
        other => bail!("expected RowNotBlockAligned, got {other:?}"),
    }
}

#[test]
fn rejects_wrong_byte_length() -> Result<()> {
    for len in [0, 33, 35, 69] {
        match WeightView::new(DType::Q8_0, 2, 32, &vec![0u8; len]) {
            Err(e @ KernelError::ByteLength { expected: 68, .. }) => {
                ensure!(e.label() == "byte_length");
                ensure!(e.to_string().contains(&format!("got {len}")), "{e}");
            }
            other => bail!("length {len}: expected ByteLength, got {other:?}"),
        }
    }
    Ok(())
}

#[test]
fn absurd_shapes_are_an_error_not_an_overflow() -> Result<()> {
    let result = WeightView::new(DType::F32, usize::MAX / 2, 8, &[0u8; 32]);
    ensure!(
        matches!(result, Err(KernelError::ByteLength { .. })),
        "{result:?}"
    );
    Ok(())
}
