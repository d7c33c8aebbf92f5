//! Collective operations between the ranks of a tensor-parallel group.
//!
//! Every rank holds the full residual stream; row-parallel layers produce
//! partial sums that [`Collective::all_reduce_sum`] adds up, and the
//! vocabulary-split LM head's pieces are joined by [`Collective::all_gather`].
//!
//! Invariant: every rank ends a collective with bit-identical data. Sums are
//! taken in rank order on every rank (never "my part first"), so the ranks'
//! logits, and therefore their sampled tokens, agree exactly.

mod local;
pub mod tcp;

pub use local::LocalGroup;
pub use tcp::{TcpGroup, TcpGroupOptions, TcpListenerHandle};

/// A collective call that could not complete.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// A peer left the group (its thread or process ended).
    #[error("rank {peer} of the tensor-parallel group is gone: {reason}")]
    PeerGone { peer: usize, reason: String },
    /// Ranks called collectives with different sizes: a bug or a desynced group.
    #[error("ranks disagree on the size of a collective: rank {peer} sent {actual} values, expected {expected}")]
    SizeMismatch {
        peer: usize,
        expected: usize,
        actual: usize,
    },
    /// The group could not be formed: an address that cannot be bound, a peer
    /// that never joined, or a peer that failed the handshake.
    #[error("collective rendezvous with {addr} failed: {reason}")]
    Rendezvous { addr: String, reason: String },
    /// A peer neither sent nor took data for longer than the I/O timeout
    /// during a collective: it hangs, or is far slower than the rest.
    #[error("rank {peer} of the tensor-parallel group did not respond within {waited:?} during a collective")]
    Timeout {
        peer: usize,
        waited: std::time::Duration,
    },
    /// Ranks are at different collectives (another operation or step): a bug
    /// or a desynced group.
    #[error("rank {peer} is out of step with this rank: {reason}")]
    Desync { peer: usize, reason: String },
}

impl CollectiveError {
    /// A stable label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Self::PeerGone { .. } => "peer_gone",
            Self::SizeMismatch { .. } => "size_mismatch",
            Self::Rendezvous { .. } => "rendezvous",
            Self::Timeout { .. } => "timeout",
            Self::Desync { .. } => "desync",
        }
    }
}

/// One rank's endpoint of a group. Owned by that rank's thread or task.
pub trait Collective: Send {
    /// This endpoint's rank, `0..world_size`.
    fn rank(&self) -> usize;

    /// Ranks in the group.
    fn world_size(&self) -> usize;

    /// Replaces `buf` on every rank with the element-wise sum of every rank's `buf`.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError>;

    /// Concatenates every rank's `local` in rank order into `out`, on every rank.
    /// Parts may differ in length; `out.len()` is their total.
    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError>;
}

/// The group of one: every collective is the identity.
#[derive(Debug, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&mut self, _buf: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        if local.len() != out.len() {
            return Err(CollectiveError::SizeMismatch {
                peer: 0,
                expected: out.len(),
                actual: local.len(),
            });
        }
        out.copy_from_slice(local);
        Ok(())
    }
}
