//! Forming a [`TcpGroup`](super::TcpGroup)'s full mesh of connections.
//!
//! Rule: every rank dials every lower rank, then accepts one connection from
//! every higher rank, so each pair of ranks shares exactly one connection.
//! This cannot deadlock: a rank only waits on lower ranks before it starts
//! accepting, and rank 0 waits on nobody. Because each shard binds its port
//! before the group forms, a dial to a shard that is still dialling is queued
//! by the kernel until that shard reaches its accept loop.
//!
//! Peers start at different times, so refused dials are retried with backoff.
//! Every wait (dial, handshake, accept) is bounded by the one deadline given
//! to [`form_mesh`]; nothing here can block past it.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::thread;
use std::time::{Duration, Instant};

use tracing::debug;

use super::wire::{Hello, HELLO_LEN, MAX_VERDICT_LEN, VERSION};
use crate::collective::CollectiveError;

/// First pause between refused dials; it doubles up to [`MAX_DIAL_PAUSE`].
const FIRST_DIAL_PAUSE: Duration = Duration::from_millis(20);
const MAX_DIAL_PAUSE: Duration = Duration::from_millis(500);

/// Longest a single connection attempt may take before it is retried.
const MAX_DIAL_ATTEMPT: Duration = Duration::from_secs(5);

/// How often the accept loop checks for new connections.
const ACCEPT_POLL: Duration = Duration::from_millis(5);

/// Smallest socket timeout used; the OS rejects zero.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// A bound collective port, not yet joined to a group.
///
/// Bind early (see [`TcpGroup::bind`](super::TcpGroup::bind)) so the address
/// can be advertised to the other ranks before the group forms.
#[derive(Debug)]
pub struct TcpListenerHandle {
    listener: TcpListener,
    local_addr: SocketAddr,
}

impl TcpListenerHandle {
    /// The address the port is bound to, with the real port when port 0 was
    /// asked for. Its IP is the one bound: advertise a reachable one instead
    /// when it is `0.0.0.0`.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

/// Binds a collective port at `addr` (`host:port`; port 0 picks a free one).
pub(super) fn bind(addr: &str) -> Result<TcpListenerHandle, CollectiveError> {
    let fail = |e: io::Error| rendezvous(addr, format!("could not bind the collective port: {e}"));
    let listener = TcpListener::bind(addr).map_err(fail)?;
    let local_addr = listener.local_addr().map_err(fail)?;
    Ok(TcpListenerHandle {
        listener,
        local_addr,
    })
}

/// Who this rank is, as sent in its handshake.
#[derive(Debug, Clone, Copy)]
struct Me {
    rank: usize,
    world_size: usize,
    hello: Hello,
}

/// Connects `rank` to every other rank in `peers` (every rank's address,
/// indexed by rank) before `deadline`. Returns one handshaken stream per
/// peer, `(peer rank, stream)` sorted by rank. `timeout` is only reported.
pub(super) fn form_mesh(
    listener: &TcpListenerHandle,
    rank: usize,
    peers: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<(usize, TcpStream)>, CollectiveError> {
    let local = listener.local_addr.to_string();
    let too_big = || {
        rendezvous(
            &local,
            format!("a group of {} ranks is too large", peers.len()),
        )
    };
    let hello = Hello::ours(
        u32::try_from(rank).map_err(|_| too_big())?,
        u32::try_from(peers.len()).map_err(|_| too_big())?,
    );
    let me = Me {
        rank,
        world_size: peers.len(),
        hello,
    };

    let mut joined = Vec::with_capacity(peers.len().saturating_sub(1));
    for (peer, addr) in peers.iter().enumerate().take(rank) {
        joined.push((peer, dial(me, peer, addr, deadline, timeout)?));
    }
    joined.extend(accept_higher(listener, me, peers, deadline, timeout)?);
    joined.sort_by_key(|(peer, _)| *peer);
    Ok(joined)
}

/// Connects to lower rank `peer` at `addr`, retrying refused dials, and
/// handshakes.
fn dial(
    me: Me,
    peer: usize,
    addr: &str,
    deadline: Instant,
    timeout: Duration,
) -> Result<TcpStream, CollectiveError> {
    let mut pause = FIRST_DIAL_PAUSE;
    let stream = loop {
        let last_error = match try_connect(addr, deadline) {
            Ok(stream) => break stream,
            Err(e) => e,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(rendezvous(
                addr,
                format!(
                    "rank {peer} did not accept a connection within {timeout:?} (last error: {})",
                    describe(&last_error)
                ),
            ));
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(MAX_DIAL_PAUSE);
    };

    handshake_as_dialler(&stream, me, peer, addr, deadline)?;
    debug!(rank = me.rank, peer, "collective peer connected");
    Ok(stream)
}

/// One connection attempt to every address `addr` resolves to.
fn try_connect(addr: &str, deadline: Instant) -> io::Result<TcpStream> {
    let attempt = bounded(deadline).min(MAX_DIAL_ATTEMPT);
    let mut last_error = None;
    for resolved in addr.to_socket_addrs()? {
        match TcpStream::connect_timeout(&resolved, attempt) {
            Ok(stream) => return Ok(stream),
            Err(e) => last_error = Some(e),
        }
    }
    Err(last_error.unwrap_or_else(|| {
        io::Error::new(io::ErrorKind::NotFound, "the address resolved to nothing")
    }))
}

/// Sends our handshake to lower rank `peer` and checks its answer.
fn handshake_as_dialler(
    stream: &TcpStream,
    me: Me,
    peer: usize,
    addr: &str,
    deadline: Instant,
) -> Result<(), CollectiveError> {
    let fail = |reason: String| rendezvous(addr, reason);
    let io_fail = |what: &str, e: io::Error| fail(format!("{what} rank {peer}: {}", describe(&e)));
    let mut stream = stream;
    set_timeouts(stream, deadline).map_err(|e| io_fail("could not configure the socket to", e))?;
    stream
        .write_all(&me.hello.encode())
        .map_err(|e| io_fail("could not send the handshake to", e))?;

    let theirs = read_hello(&mut stream).map_err(|e| io_fail("no handshake answer from", e))?;
    let theirs = theirs.ok_or_else(|| fail(not_a_peer()))?;
    if let Some(problem) = version_problem(theirs) {
        return Err(fail(problem));
    }
    if theirs.rank as usize != peer || theirs.world_size as usize != me.world_size {
        return Err(fail(format!(
            "peer says it is rank {} of {}, expected rank {peer} of a group of {}",
            theirs.rank, theirs.world_size, me.world_size
        )));
    }

    let verdict = read_verdict(&mut stream).map_err(|e| io_fail("no verdict from", e))?;
    if !verdict.is_empty() {
        return Err(fail(format!("rank {peer} refused this rank: {verdict}")));
    }
    Ok(())
}

/// Accepts one connection from every rank above `me` before `deadline`.
fn accept_higher(
    listener: &TcpListenerHandle,
    me: Me,
    peers: &[String],
    deadline: Instant,
    timeout: Duration,
) -> Result<Vec<(usize, TcpStream)>, CollectiveError> {
    let local = listener.local_addr.to_string();
    let mut missing: Vec<usize> = (me.rank + 1..me.world_size).collect();
    let mut joined = Vec::with_capacity(missing.len());
    if missing.is_empty() {
        return Ok(joined);
    }
    listener.listener.set_nonblocking(true).map_err(|e| {
        rendezvous(
            &local,
            format!("could not configure the collective port: {e}"),
        )
    })?;

    while let Some(&first_missing) = missing.first() {
        match listener.listener.accept() {
            Ok((stream, from)) => {
                let peer = admit(&stream, from, me, &missing, deadline)?;
                debug!(rank = me.rank, peer, "collective peer connected");
                missing.retain(|&r| r != peer);
                joined.push((peer, stream));
            }
            Err(e) if is_transient_accept_error(&e) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    let addr = peers.get(first_missing).map_or("?", String::as_str);
                    return Err(rendezvous(
                        addr,
                        format!(
                            "rank {first_missing} did not connect within {timeout:?} \
                             (ranks still missing: {missing:?})"
                        ),
                    ));
                }
                thread::sleep(ACCEPT_POLL.min(left));
            }
            Err(e) => {
                return Err(rendezvous(
                    &local,
                    format!("could not accept a connection: {e}"),
                ));
            }
        }
    }
    Ok(joined)
}

fn is_transient_accept_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
    )
}

/// Handshakes with a connection accepted from `from`; returns its rank.
fn admit(
    stream: &TcpStream,
    from: SocketAddr,
    me: Me,
    missing: &[usize],
    deadline: Instant,
) -> Result<usize, CollectiveError> {
    let fail = |reason: String| rendezvous(&from.to_string(), reason);
    let io_fail = |what: &str, e: io::Error| fail(format!("{what}: {}", describe(&e)));
    let mut stream = stream;
    // Some platforms hand out accepted sockets with the listener's
    // non-blocking mode; the handshake wants blocking reads with a timeout.
    stream
        .set_nonblocking(false)
        .map_err(|e| io_fail("could not configure the socket", e))?;
    set_timeouts(stream, deadline).map_err(|e| io_fail("could not configure the socket", e))?;

    let theirs = read_hello(&mut stream)
        .map_err(|e| io_fail("peer connected but sent no handshake", e))?
        .ok_or_else(|| fail(not_a_peer()))?;
    let verdict = judge_dialler(theirs, me, missing);

    let mut answer = me.hello.encode().to_vec();
    let reason = verdict.as_deref().unwrap_or_default().as_bytes();
    let reason = &reason[..reason.len().min(MAX_VERDICT_LEN)];
    answer.extend_from_slice(&(reason.len() as u16).to_le_bytes());
    answer.extend_from_slice(reason);
    let answered = stream.write_all(&answer);

    if let Some(problem) = verdict {
        // The refusal is best effort: the local error is what matters.
        return Err(fail(problem));
    }
    answered.map_err(|e| io_fail("could not answer the handshake", e))?;
    Ok(theirs.rank as usize)
}

/// Why a dialling peer's handshake is refused, or `None` to accept it.
fn judge_dialler(theirs: Hello, me: Me, missing: &[usize]) -> Option<String> {
    if let Some(problem) = version_problem(theirs) {
        return Some(problem);
    }
    let rank = theirs.rank as usize;
    if theirs.world_size as usize != me.world_size {
        return Some(format!(
            "peer says it is rank {rank} of {}, expected a group of {}",
            theirs.world_size, me.world_size
        ));
    }
    if rank <= me.rank || rank >= me.world_size {
        return Some(format!(
            "peer says it is rank {rank}, but rank {} of {} accepts only higher ranks",
            me.rank, me.world_size
        ));
    }
    if !missing.contains(&rank) {
        return Some(format!(
            "peer says it is rank {rank}, which has already joined"
        ));
    }
    None
}

fn version_problem(theirs: Hello) -> Option<String> {
    (theirs.version != VERSION).then(|| {
        format!(
            "peer speaks collective protocol version {}, this rank speaks version {VERSION}",
            theirs.version
        )
    })
}

fn not_a_peer() -> String {
    "peer is not a Tessera collective peer (wrong magic bytes)".into()
}

/// Reads a handshake; `Ok(None)` when its magic bytes are wrong.
fn read_hello(stream: &mut impl Read) -> io::Result<Option<Hello>> {
    let mut bytes = [0u8; HELLO_LEN];
    stream.read_exact(&mut bytes)?;
    Ok(Hello::decode(&bytes))
}

/// Reads the accepting side's verdict: empty when accepted.
fn read_verdict(stream: &mut impl Read) -> io::Result<String> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len)?;
    let len = usize::from(u16::from_le_bytes(len));
    if len > MAX_VERDICT_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "oversized verdict",
        ));
    }
    let mut reason = vec![0u8; len];
    stream.read_exact(&mut reason)?;
    Ok(String::from_utf8_lossy(&reason).into_owned())
}

/// Bounds the socket's blocking reads and writes by `deadline`.
fn set_timeouts(stream: &TcpStream, deadline: Instant) -> io::Result<()> {
    let left = bounded(deadline);
    stream.set_read_timeout(Some(left))?;
    stream.set_write_timeout(Some(left))
}

/// Time left before `deadline`, at least [`MIN_TIMEOUT`] (sockets reject 0).
fn bounded(deadline: Instant) -> Duration {
    deadline
        .saturating_duration_since(Instant::now())
        .max(MIN_TIMEOUT)
}

/// An I/O error in words, with timeouts named as such rather than as the
/// OS's "resource temporarily unavailable".
fn describe(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timed out".into(),
        io::ErrorKind::UnexpectedEof => "the connection closed".into(),
        _ => e.to_string(),
    }
}

fn rendezvous(addr: &str, reason: String) -> CollectiveError {
    CollectiveError::Rendezvous {
        addr: addr.to_string(),
        reason,
    }
}
