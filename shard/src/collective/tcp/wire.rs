//! The bytes a [`TcpGroup`](super::TcpGroup) puts on the wire.
//!
//! Every integer and every `f32` is little-endian, whatever the host.
//!
//! Handshake, sent once each way when a connection opens (16 bytes):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0..4 | magic `TSCL` |
//! | 4..6 | protocol version, u16 ([`VERSION`]) |
//! | 6..8 | reserved, zero |
//! | 8..12 | world_size, u32 |
//! | 12..16 | rank, u32 |
//!
//! The accepting side answers the dialler's handshake with its own, then a
//! verdict: a u16 length and that many bytes of UTF-8 saying why it refuses
//! the connection; length zero means accepted.
//!
//! Frame, one per peer per collective: a 20-byte header (op u32, seq u64,
//! count u64) and then `count` f32 values. `seq` counts the collectives this
//! rank has started, so two ranks at different steps see different numbers.

/// Opens every handshake; anything else on the collective port is a stranger.
const MAGIC: [u8; 4] = *b"TSCL";

/// The protocol version this build speaks; peers must speak the same.
pub(super) const VERSION: u16 = 1;

/// Length of a handshake, bytes.
pub(super) const HELLO_LEN: usize = 16;

/// Length of a frame header, bytes.
pub(super) const HEADER_LEN: usize = 20;

/// Longest verdict a peer may send, bytes; longer ones are a protocol error.
pub(super) const MAX_VERDICT_LEN: usize = 1024;

/// Bytes per f32 on the wire.
pub(super) const F32_LEN: usize = 4;

/// One side's handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Hello {
    pub version: u16,
    pub world_size: u32,
    pub rank: u32,
}

impl Hello {
    /// This build's handshake for `rank` of `world_size`.
    pub fn ours(rank: u32, world_size: u32) -> Self {
        Self {
            version: VERSION,
            world_size,
            rank,
        }
    }

    pub fn encode(&self) -> [u8; HELLO_LEN] {
        let mut out = [0u8; HELLO_LEN];
        out[0..4].copy_from_slice(&MAGIC);
        out[4..6].copy_from_slice(&self.version.to_le_bytes());
        out[8..12].copy_from_slice(&self.world_size.to_le_bytes());
        out[12..16].copy_from_slice(&self.rank.to_le_bytes());
        out
    }

    /// Parses a handshake; `None` when the magic bytes are wrong.
    pub fn decode(bytes: &[u8; HELLO_LEN]) -> Option<Self> {
        if bytes[0..4] != MAGIC {
            return None;
        }
        Some(Self {
            version: u16::from_le_bytes([bytes[4], bytes[5]]),
            world_size: u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]),
            rank: u32::from_le_bytes([bytes[12], bytes[13], bytes[14], bytes[15]]),
        })
    }
}

/// The collective a frame belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    AllReduceSum,
    AllGather,
}

impl Op {
    fn code(self) -> u32 {
        match self {
            Self::AllReduceSum => 1,
            Self::AllGather => 2,
        }
    }

    /// The name used in error messages for the op with this wire code.
    pub fn name_of(code: u32) -> &'static str {
        match code {
            1 => "all_reduce_sum",
            2 => "all_gather",
            _ => "an unknown operation",
        }
    }

    pub fn name(self) -> &'static str {
        Self::name_of(self.code())
    }
}

/// A frame header as read from a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Header {
    /// Wire code of the op; unknown codes are kept so they can be reported.
    pub op_code: u32,
    pub seq: u64,
    /// Number of f32 values that follow.
    pub count: u64,
}

impl Header {
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut seq = [0u8; 8];
        let mut count = [0u8; 8];
        seq.copy_from_slice(&bytes[4..12]);
        count.copy_from_slice(&bytes[12..20]);
        Self {
            op_code: u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]),
            seq: u64::from_le_bytes(seq),
            count: u64::from_le_bytes(count),
        }
    }

    /// Whether this header is the one expected for `op` number `seq`.
    pub fn matches(&self, op: Op, seq: u64) -> bool {
        self.op_code == op.code() && self.seq == seq
    }
}

/// Writes a whole frame (header and `data`) into `frame`, reusing its
/// allocation.
pub(super) fn encode_frame(frame: &mut Vec<u8>, op: Op, seq: u64, data: &[f32]) {
    frame.clear();
    frame.extend_from_slice(&op.code().to_le_bytes());
    frame.extend_from_slice(&seq.to_le_bytes());
    frame.extend_from_slice(&(data.len() as u64).to_le_bytes());
    frame.resize(HEADER_LEN + data.len() * F32_LEN, 0);
    let payload = &mut frame[HEADER_LEN..];
    for (dst, value) in payload.chunks_exact_mut(F32_LEN).zip(data) {
        dst.copy_from_slice(&value.to_le_bytes());
    }
}

/// The f32 payload of a frame built by [`encode_frame`].
pub(super) fn frame_payload(frame: &[u8]) -> &[u8] {
    frame.get(HEADER_LEN..).unwrap_or_default()
}

/// Overwrites `out` with the little-endian f32 values in `bytes`
/// (`bytes.len() == out.len() * 4`).
pub(super) fn decode_into(out: &mut [f32], bytes: &[u8]) {
    debug_assert_eq!(bytes.len(), out.len() * F32_LEN);
    for (dst, src) in out.iter_mut().zip(bytes.chunks_exact(F32_LEN)) {
        *dst = f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    }
}

/// Adds the little-endian f32 values in `bytes` to `acc`, element by element
/// (`bytes.len() == acc.len() * 4`).
pub(super) fn add_into(acc: &mut [f32], bytes: &[u8]) {
    debug_assert_eq!(bytes.len(), acc.len() * F32_LEN);
    for (dst, src) in acc.iter_mut().zip(bytes.chunks_exact(F32_LEN)) {
        *dst += f32::from_le_bytes([src[0], src[1], src[2], src[3]]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trips_and_rejects_strangers() {
        let hello = Hello::ours(3, 4);
        assert_eq!(Hello::decode(&hello.encode()), Some(hello));

        let mut http = [0u8; HELLO_LEN];
        http.copy_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(Hello::decode(&http), None);
    }

    #[test]
    fn frame_is_little_endian_with_its_header() {
        let mut frame = vec![0xAA; 64];
        encode_frame(&mut frame, Op::AllGather, 7, &[1.0, -2.0]);
        assert_eq!(frame.len(), HEADER_LEN + 8);

        let mut header = [0u8; HEADER_LEN];
        header.copy_from_slice(&frame[..HEADER_LEN]);
        let header = Header::decode(&header);
        assert_eq!(
            header,
            Header {
                op_code: 2,
                seq: 7,
                count: 2
            }
        );
        assert!(header.matches(Op::AllGather, 7));
        assert!(!header.matches(Op::AllReduceSum, 7));
        assert!(!header.matches(Op::AllGather, 8));

        assert_eq!(frame_payload(&frame), [0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0]);
    }

    #[test]
    fn decode_and_add_keep_every_bit() {
        let values = [f32::MIN_POSITIVE, -0.0, 1e8, f32::from_bits(0x7fc0_1234)];
        let mut frame = Vec::new();
        encode_frame(&mut frame, Op::AllReduceSum, 0, &values);

        let mut out = [0.0f32; 4];
        decode_into(&mut out, frame_payload(&frame));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&out), bits(&values));

        let mut acc = [1.0f32, 1.0, -1e8, 0.0];
        add_into(&mut acc[..3], &frame_payload(&frame)[..12]);
        assert_eq!(acc[..3], [1.0, 1.0, 0.0]);
    }
}
