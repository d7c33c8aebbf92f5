//! Accepting connections for the gRPC servers.

use tokio::net::{TcpListener, TcpStream};
use tokio_stream::wrappers::TcpListenerStream;
use tokio_stream::{Stream, StreamExt};

/// Connections accepted on `listener`, with Nagle's algorithm off: tokens
/// stream one small message at a time, and Nagle plus delayed ACKs would
/// bunch them into ~40 ms bursts.
pub fn incoming(listener: TcpListener) -> impl Stream<Item = std::io::Result<TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            if let Err(e) = c.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        }
        conn
    })
}
