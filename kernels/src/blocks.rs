//! Byte layouts of the GGUF block formats, shared by the decoders and the
//! quantizers.
//!
//! Every block is a packed little-endian struct with no padding; the offsets
//! below are byte offsets from the start of a block. Scales are IEEE f16 unless
//! stated. Weight bytes may be unaligned (memory-mapped files), so all reads go
//! through `from_le_bytes` on byte slices.
//!
//! | format | bytes | layout                                                   |
//! |--------|-------|----------------------------------------------------------|
//! | Q8_0   | 34    | d, qs: i8[32]                                            |
//! | Q4_0   | 18    | d, qs: u8[16]                                            |
//! | Q4_1   | 20    | d, m, qs: u8[16]                                         |
//! | Q5_0   | 22    | d, qh: u32, qs: u8[16]                                   |
//! | Q5_1   | 24    | d, m, qh: u32, qs: u8[16]                                |
//! | Q4_K   | 144   | d, dmin, scales: u8[12], qs: u8[128]                     |
//! | Q5_K   | 176   | d, dmin, scales: u8[12], qh: u8[32], qs: u8[128]         |
//! | Q6_K   | 210   | ql: u8[128], qh: u8[64], scales: i8[16], d               |

/// Elements in a Q8_0/Q4_0/Q4_1/Q5_0/Q5_1 block.
pub(crate) const QK: usize = 32;
/// Elements in a K-quant super-block.
pub(crate) const QK_K: usize = 256;

/// Offset of `qs` in a Q4_K block (after d, dmin and the 12 scale bytes).
pub(crate) const Q4K_QS: usize = 16;
/// Offset of `qh` in a Q5_K block.
pub(crate) const Q5K_QH: usize = 16;
/// Offset of `qs` in a Q5_K block.
pub(crate) const Q5K_QS: usize = 48;
/// Offset of `qh` in a Q6_K block.
pub(crate) const Q6K_QH: usize = 128;
/// Offset of the i8 sub-block scales in a Q6_K block.
pub(crate) const Q6K_SCALES: usize = 192;
/// Offset of the f16 super-block scale in a Q6_K block.
pub(crate) const Q6K_D: usize = 208;

/// The little-endian f16 at `b[at..at + 2]`, widened to f32 (exactly).
#[inline(always)]
pub(crate) fn f16_at(b: &[u8], at: usize) -> f32 {
    half::f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

/// The little-endian u32 at `b[at..at + 4]`.
#[inline(always)]
pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// The 6-bit scale and min of sub-block `j` (0..8) of a Q4_K/Q5_K block,
/// unpacked from its 12 `scales` bytes.
///
/// Bytes 0..4 hold the low 6 bits of scales 0..4, bytes 4..8 the low 6 bits of
/// mins 0..4; for sub-blocks 4..8 the low nibbles of scale and min sit in
/// bytes 8..12 and their top two bits in the spare top bits of bytes 0..8.
#[inline(always)]
pub(crate) fn scale_min_k4(j: usize, scales: &[u8]) -> (u8, u8) {
    if j < 4 {
        (scales[j] & 63, scales[j + 4] & 63)
    } else {
        let sc = (scales[j + 4] & 0x0F) | ((scales[j - 4] >> 6) << 4);
        let m = (scales[j + 4] >> 4) | ((scales[j] >> 6) << 4);
        (sc, m)
    }
}

/// Packs eight 6-bit scales and mins into the 12 `scales` bytes read by
/// [`scale_min_k4`]. Values above 63 are a caller bug (only low 6 bits kept).
pub(crate) fn pack_scale_min_k4(sc: &[u8; 8], m: &[u8; 8]) -> [u8; 12] {
    let mut out = [0u8; 12];
    for j in 0..4 {
        out[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        out[j + 4] = (m[j] & 63) | ((m[j + 4] >> 4) << 6);
        out[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
    }
    out
}

/// Asserts the shared precondition of the dequantizers: `src` holds exactly
/// the bytes of `n` elements of `dtype`, `n` a whole number of blocks.
#[track_caller]
pub(crate) fn check_row(dtype: crate::DType, src: &[u8], n: usize) {
    let Some(bytes) = dtype.bytes_for(n) else {
        panic!(
            "{dtype} row of {n} elements is not a multiple of {}",
            dtype.block_size()
        );
    };
    assert_eq!(
        src.len(),
        bytes,
        "{dtype} row of {n} elements needs {bytes} bytes"
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_min_packing_round_trips() {
        let sc = [0, 1, 62, 63, 17, 33, 48, 63];
        let m = [63, 5, 0, 40, 63, 0, 21, 34];
        let packed = pack_scale_min_k4(&sc, &m);
        for j in 0..8 {
            assert_eq!(scale_min_k4(j, &packed), (sc[j], m[j]), "sub-block {j}");
        }
    }
}
