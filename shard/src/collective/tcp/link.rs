//! One rank's connection to one peer: blocking reads on the rank's own thread,
//! and a writer thread so that sending never waits on receiving.
//!
//! Why a writer thread: in every collective each rank sends its whole buffer
//! to every peer while reading theirs. If one thread did both, two ranks
//! writing several megabytes to each other at once would each fill the
//! other's socket buffers and wait forever for a read that never comes. With
//! writes on their own thread, a rank's reads progress whatever its writes are
//! doing, and every write completes once its reader gets to it.
//!
//! Invariants: at most one frame is in flight per link (the group waits for
//! the writer's report before its next collective, so both channels hold at
//! most one message); every blocking call is bounded by the socket timeouts;
//! dropping a link shuts its socket down both ways, which ends a blocked
//! write at once and tells the peer, then joins the writer.

use std::fmt;
use std::io::{self, BufReader, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use super::wire::{Header, F32_LEN, HEADER_LEN};
use crate::collective::CollectiveError;

/// Read buffer per link, bytes: large enough that a frame header and a small
/// payload arrive in one system call.
const READ_BUFFER: usize = 64 * 1024;

/// The connection to one peer rank.
pub(super) struct Link {
    /// The peer's rank.
    peer: usize,
    reader: BufReader<TcpStream>,
    /// Frames for the writer thread; `None` once the link is closing.
    jobs: Option<SyncSender<Arc<Vec<u8>>>>,
    /// One report per frame, sent after the frame is written (or failed).
    reports: Receiver<io::Result<()>>,
    writer: Option<JoinHandle<()>>,
    /// Longest silence tolerated from the peer, for error reports.
    io_timeout: Duration,
}

impl fmt::Debug for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Link")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// Takes over a handshaken connection to `peer` and starts its writer.
    pub fn new(peer: usize, stream: TcpStream, io_timeout: Duration) -> io::Result<Self> {
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(io_timeout))?;
        stream.set_write_timeout(Some(io_timeout))?;
        let write_half = stream.try_clone()?;

        let (jobs, job_queue) = mpsc::sync_channel(1);
        let (report, reports) = mpsc::sync_channel(1);
        let writer = std::thread::Builder::new()
            .name(format!("collective-tx{peer}"))
            .spawn(move || write_frames(write_half, job_queue, report))?;

        Ok(Self {
            peer,
            reader: BufReader::with_capacity(READ_BUFFER, stream),
            jobs: Some(jobs),
            reports,
            writer: Some(writer),
            io_timeout,
        })
    }

    /// Hands `frame` to the writer thread; returns at once.
    pub fn send(&self, frame: Arc<Vec<u8>>) -> Result<(), CollectiveError> {
        let sent = self.jobs.as_ref().map(|jobs| jobs.send(frame));
        match sent {
            Some(Ok(())) => Ok(()),
            _ => Err(self.gone("its connection's writer has stopped".into())),
        }
    }

    /// Waits until the frame given to [`Link::send`] is written.
    pub fn wait_sent(&self) -> Result<(), CollectiveError> {
        match self.reports.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(self.io_error(&e)),
            Err(_) => Err(self.gone("its connection's writer has stopped".into())),
        }
    }

    /// Reads the next frame header.
    pub fn read_header(&mut self) -> Result<Header, CollectiveError> {
        let mut bytes = [0u8; HEADER_LEN];
        self.reader
            .read_exact(&mut bytes)
            .map_err(|e| self.io_error(&e))?;
        Ok(Header::decode(&bytes))
    }

    /// Reads a payload of `count` f32 values into `scratch`, growing it if
    /// needed, and returns its bytes.
    pub fn read_payload<'a>(
        &mut self,
        count: usize,
        scratch: &'a mut Vec<u8>,
    ) -> Result<&'a [u8], CollectiveError> {
        let len = count * F32_LEN;
        if scratch.len() < len {
            scratch.resize(len, 0);
        }
        let bytes = &mut scratch[..len];
        self.reader
            .read_exact(bytes)
            .map_err(|e| self.io_error(&e))?;
        Ok(bytes)
    }

    /// Reads and discards a payload of `count` f32 values, keeping the stream
    /// in step after a frame this rank cannot use.
    pub fn skip_payload(&mut self, count: u64) -> Result<(), CollectiveError> {
        let len = count.saturating_mul(F32_LEN as u64);
        let mut rest = (&mut self.reader).take(len);
        let skipped = io::copy(&mut rest, &mut io::sink()).map_err(|e| self.io_error(&e))?;
        if skipped < len {
            return Err(self.gone("it closed the connection in the middle of a frame".into()));
        }
        Ok(())
    }

    /// Closes the connection both ways; the peer sees end-of-stream and a
    /// blocked write here fails at once.
    pub fn shutdown(&self) {
        // An error means the socket is already closed, which is the goal.
        let _ = self.reader.get_ref().shutdown(Shutdown::Both);
    }

    fn gone(&self, reason: String) -> CollectiveError {
        CollectiveError::PeerGone {
            peer: self.peer,
            reason,
        }
    }

    fn io_error(&self, e: &io::Error) -> CollectiveError {
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => CollectiveError::Timeout {
                peer: self.peer,
                waited: self.io_timeout,
            },
            io::ErrorKind::UnexpectedEof => self
                .gone("it closed the connection (its process exited or it left the group)".into()),
            _ => self.gone(format!("connection failed: {e}")),
        }
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shutdown();
        self.jobs = None;
        if let Some(writer) = self.writer.take() {
            // The writer only writes to a socket that is now shut down, so it
            // ends promptly; a panic there has nothing left to report to.
            let _ = writer.join();
        }
    }
}

/// The writer thread: writes each frame whole, then reports. Ends when the
/// link drops its job sender or stops listening for reports.
fn write_frames(
    mut stream: TcpStream,
    jobs: Receiver<Arc<Vec<u8>>>,
    reports: SyncSender<io::Result<()>>,
) {
    for frame in jobs {
        let written = stream.write_all(&frame);
        // Released before reporting, so the group finds its frame buffer
        // unshared and can reuse it for the next collective.
        drop(frame);
        if reports.send(written).is_err() {
            return;
        }
    }
}
