//! Ranks in separate shard processes, possibly on separate hosts, exchanging
//! over TCP.
//!
//! A shard binds its collective port early ([`TcpGroup::bind`]), advertises
//! the address, and once it knows every rank's address forms the group with
//! [`TcpGroup::connect`]: a full mesh with one connection per pair of ranks,
//! each opened with a handshake (magic bytes, protocol version, world_size,
//! rank) so a stranger or a rank of another group is refused with a clear
//! error. The byte layout is in `wire.rs`, the mesh rule in `rendezvous.rs`.
//!
//! In each collective a rank sends its whole part to every peer (one frame,
//! written by a writer thread per peer, see `link.rs`) and reads every peer's
//! part in rank order. Each rank thus sends `world_size - 1` copies of its
//! buffer, which suits the few ranks of a tensor-parallel group. Invariants:
//!
//! - Sums are taken in rank order on every rank, starting from rank 0's part,
//!   so every rank ends with bit-identical results.
//! - Every frame carries the operation, a sequence number and the element
//!   count; a rank at another operation or step is reported as
//!   [`CollectiveError::Desync`], a size disagreement as
//!   [`CollectiveError::SizeMismatch`] (the frames are still read whole, so
//!   the group stays usable after a size mismatch). The rank that notices a
//!   desync first shuts down (below), so its peers may see it as gone instead.
//! - Fail-stop: after any other error the group shuts all its connections
//!   down, so its peers fail promptly too instead of waiting for a timeout,
//!   and every later call fails at once. The caller forms a new group.
//! - Nothing blocks forever: a peer that exits or resets is reported as
//!   [`CollectiveError::PeerGone`] as soon as its socket says so, and a peer
//!   that hangs as [`CollectiveError::Timeout`] after
//!   [`TcpGroupOptions::io_timeout`].
//!
//! Ranks on one host would exchange faster through shared memory. That belongs
//! in a second [`Collective`] implementation chosen by the caller when every
//! rank is local, or, for mixed groups, behind `link::Link`: the frame format
//! and the rank-order reduction here would not change.

mod link;
mod rendezvous;
mod wire;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use self::link::Link;
use self::wire::Op;
use super::{Collective, CollectiveError};

pub use self::rendezvous::TcpListenerHandle;

/// How long a [`TcpGroup`] waits for its peers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpGroupOptions {
    /// Longest time to form the group: every peer must have connected and
    /// handshaken within it. Default 60 s.
    pub connect_timeout: Duration,
    /// Longest a collective waits on one peer sending or taking data before
    /// it reports [`CollectiveError::Timeout`]. Default 60 s; zero is raised
    /// to 1 ms.
    pub io_timeout: Duration,
}

impl Default for TcpGroupOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(60),
            io_timeout: TcpGroup::DEFAULT_IO_TIMEOUT,
        }
    }
}

/// One rank's endpoint of a group whose ranks talk over TCP.
///
/// Owned by the rank's compute thread; every call blocks that thread until
/// the collective completes or fails. See the module docs for the protocol.
pub struct TcpGroup {
    rank: usize,
    world_size: usize,
    /// Connections to every other rank, sorted by peer rank.
    links: Vec<Link>,
    /// Number of the next collective; equal on every rank of a healthy group.
    seq: u64,
    /// This rank's outgoing frame, reused between collectives and shared
    /// read-only with the writer threads during one.
    frame: Arc<Vec<u8>>,
    /// Bytes of the peer part being read, reused between collectives.
    scratch: Vec<u8>,
    /// The first fatal error, `(peer, description)`; set, the group refuses
    /// every further collective.
    failed: Option<(usize, String)>,
}

impl fmt::Debug for TcpGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TcpGroup")
            .field("rank", &self.rank)
            .field("world_size", &self.world_size)
            .field("seq", &self.seq)
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl TcpGroup {
    /// The default [`TcpGroupOptions::io_timeout`].
    pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(60);

    /// Binds this rank's collective port at `addr` (`host:port`, port 0 for a
    /// free one). Bind before advertising the address; the port accepts
    /// peers' connections as soon as it is bound, so peers that start first
    /// wait in the kernel's queue.
    pub fn bind(addr: &str) -> Result<TcpListenerHandle, CollectiveError> {
        rendezvous::bind(addr)
    }

    /// Forms the group as `rank`, with the default I/O timeout; see
    /// [`TcpGroup::connect_with`].
    pub fn connect(
        listener: TcpListenerHandle,
        rank: usize,
        peers: &[String],
        timeout: Duration,
    ) -> Result<Self, CollectiveError> {
        let options = TcpGroupOptions {
            connect_timeout: timeout,
            ..TcpGroupOptions::default()
        };
        Self::connect_with(listener, rank, peers, &options)
    }

    /// Forms the group as `rank`. `peers` holds every rank's collective
    /// address, this rank's included, indexed by rank; its length is the
    /// world_size. Each rank dials the lower ranks and accepts the higher
    /// ones, retrying until `options.connect_timeout`, after which it returns
    /// [`CollectiveError::Rendezvous`] naming the missing rank. The listener
    /// is closed once the group is formed.
    pub fn connect_with(
        listener: TcpListenerHandle,
        rank: usize,
        peers: &[String],
        options: &TcpGroupOptions,
    ) -> Result<Self, CollectiveError> {
        let local = listener.local_addr().to_string();
        let invalid = |reason: String| CollectiveError::Rendezvous {
            addr: local.clone(),
            reason,
        };
        if rank >= peers.len() {
            return Err(invalid(format!(
                "rank {rank} is outside a group of {}",
                peers.len()
            )));
        }
        let deadline = Instant::now()
            .checked_add(options.connect_timeout)
            .ok_or_else(|| {
                invalid(format!(
                    "connect timeout {:?} is too long",
                    options.connect_timeout
                ))
            })?;

        let streams =
            rendezvous::form_mesh(&listener, rank, peers, deadline, options.connect_timeout)?;
        let io_timeout = options.io_timeout.max(Duration::from_millis(1));
        let links = streams
            .into_iter()
            .map(|(peer, stream)| {
                Link::new(peer, stream, io_timeout).map_err(|e| CollectiveError::Rendezvous {
                    addr: peers[peer].clone(),
                    reason: format!("could not set up the connection to rank {peer}: {e}"),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;

        debug!(
            rank,
            world_size = peers.len(),
            transport = "tcp",
            "collective group formed"
        );
        Ok(Self {
            rank,
            world_size: peers.len(),
            links,
            seq: 0,
            frame: Arc::default(),
            scratch: Vec::new(),
            failed: None,
        })
    }

    /// Index into `links` of the connection to `peer` (never this rank).
    fn link_index(&self, peer: usize) -> usize {
        if peer < self.rank {
            peer
        } else {
            peer - 1
        }
    }

    /// Starts collective `op` with this rank's part `data`: checks the group
    /// is usable, numbers the collective, and hands the frame to every
    /// writer. Returns the collective's sequence number.
    fn begin(&mut self, op: Op, data: &[f32]) -> Result<u64, CollectiveError> {
        if let Some((peer, first)) = &self.failed {
            return Err(CollectiveError::PeerGone {
                peer: *peer,
                reason: format!("this group already failed and must be formed again ({first})"),
            });
        }
        let seq = self.seq;
        self.seq = self.seq.wrapping_add(1);

        // The writers released the previous frame when they reported, so this
        // reuses its allocation; after a failure it may still be shared.
        let mut frame = Arc::try_unwrap(std::mem::take(&mut self.frame)).unwrap_or_default();
        wire::encode_frame(&mut frame, op, seq, data);
        self.frame = Arc::new(frame);
        for link in &self.links {
            link.send(Arc::clone(&self.frame))?;
        }
        Ok(seq)
    }

    /// Reads `peer`'s next frame header and checks it belongs to collective
    /// `op` number `seq`; returns its element count.
    fn expect_frame(&mut self, peer: usize, op: Op, seq: u64) -> Result<u64, CollectiveError> {
        let index = self.link_index(peer);
        let header = self.links[index].read_header()?;
        if !header.matches(op, seq) {
            return Err(CollectiveError::Desync {
                peer,
                reason: format!(
                    "it sent {} number {}, this rank is at {} number {seq}",
                    wire::Op::name_of(header.op_code),
                    header.seq,
                    op.name()
                ),
            });
        }
        Ok(header.count)
    }

    /// Waits until every peer has this rank's frame.
    fn finish(&self) -> Result<(), CollectiveError> {
        self.links.iter().try_for_each(Link::wait_sent)
    }

    /// Records a fatal error and shuts every connection down, so the peers
    /// learn of it at once. A size mismatch is not fatal: the frames were
    /// read whole and the streams are still in step.
    fn settle(&mut self, result: Result<(), CollectiveError>) -> Result<(), CollectiveError> {
        if let Err(error) = &result {
            let peer = match error {
                CollectiveError::SizeMismatch { .. } => return result,
                CollectiveError::PeerGone { peer, .. }
                | CollectiveError::Timeout { peer, .. }
                | CollectiveError::Desync { peer, .. } => *peer,
                CollectiveError::Rendezvous { .. } => self.rank,
            };
            if self.failed.is_none() {
                self.failed = Some((peer, error.to_string()));
            }
            self.links.iter().for_each(Link::shutdown);
        }
        result
    }

    fn all_reduce_inner(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        let seq = self.begin(Op::AllReduceSum, buf)?;
        let mut mismatch = None;

        // Rank order on every rank: rank 0's part is the start, the others are
        // added one by one. This rank's own part is read back from its frame,
        // since `buf` is being overwritten.
        for peer in 0..self.world_size {
            if peer == self.rank {
                if peer != 0 {
                    wire::add_into(buf, wire::frame_payload(&self.frame));
                }
                continue;
            }
            let count = self.expect_frame(peer, Op::AllReduceSum, seq)?;
            let index = self.link_index(peer);
            let link = &mut self.links[index];
            if count != buf.len() as u64 {
                link.skip_payload(count)?;
                let actual = usize::try_from(count).unwrap_or(usize::MAX);
                mismatch.get_or_insert(CollectiveError::SizeMismatch {
                    peer,
                    expected: buf.len(),
                    actual,
                });
                continue;
            }
            let part = link.read_payload(buf.len(), &mut self.scratch)?;
            if peer == 0 {
                wire::decode_into(buf, part);
            } else {
                wire::add_into(buf, part);
            }
        }

        self.finish()?;
        mismatch.map_or(Ok(()), Err)
    }

    fn all_gather_inner(&mut self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        let seq = self.begin(Op::AllGather, local)?;
        let expected = out.len() as u64;
        // Values gathered so far, including parts that did not fit.
        let mut total: u64 = 0;

        for peer in 0..self.world_size {
            let count = if peer == self.rank {
                local.len() as u64
            } else {
                self.expect_frame(peer, Op::AllGather, seq)?
            };
            let fits = total.checked_add(count).is_some_and(|end| end <= expected);
            let start = total as usize;
            total = total.saturating_add(count);

            if peer == self.rank {
                if fits {
                    out[start..start + local.len()].copy_from_slice(local);
                }
                continue;
            }
            let index = self.link_index(peer);
            let link = &mut self.links[index];
            if fits {
                let len = count as usize;
                let part = link.read_payload(len, &mut self.scratch)?;
                wire::decode_into(&mut out[start..start + len], part);
            } else {
                link.skip_payload(count)?;
            }
        }

        self.finish()?;
        if total != expected {
            return Err(CollectiveError::SizeMismatch {
                peer: self.rank,
                expected: out.len(),
                actual: usize::try_from(total).unwrap_or(usize::MAX),
            });
        }
        Ok(())
    }
}

impl Collective for TcpGroup {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world_size
    }

    /// On error `buf` holds unspecified values.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        if self.world_size == 1 {
            return Ok(());
        }
        let result = self.all_reduce_inner(buf);
        self.settle(result)
    }

    /// On error `out` holds unspecified values.
    fn all_gather(&mut self, local: &[f32], out: &mut [f32]) -> Result<(), CollectiveError> {
        let result = self.all_gather_inner(local, out);
        self.settle(result)
    }
}
