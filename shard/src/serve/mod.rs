//! `tessera-shard serve`: one rank of a cluster, driven by a coordinator over
//! the internal gRPC API.
//!
//! On start the shard binds its control port and its collective port, prints
//! one JSON line (`{"event":"ready","listen":…,"collective":…}`) on stdout,
//! and waits for Join. It exits on Shutdown, on Ctrl-C / SIGTERM, and, with
//! `--exit-with-stdin`, when its standard input closes: a coordinator that
//! starts shards holds their stdin, so they never outlive it.

mod rank;
mod service;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use tessera_proto::shard::v1::shard_server::ShardServer;

use tokio::io::AsyncReadExt;
use tokio::net::TcpListener;

use crate::collective::tcp::TcpGroup;
use service::ShardService;

/// Flags of `tessera-shard serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the control-plane gRPC server; port 0 picks a free one.
    #[arg(long, env = "TESSERA_SHARD_LISTEN", default_value = "127.0.0.1:50061")]
    pub listen: SocketAddr,

    /// Address of the collective (activation exchange with peer shards); port
    /// 0 picks a free one. Peers must reach it.
    #[arg(long, env = "TESSERA_COLLECTIVE_LISTEN", default_value = "127.0.0.1:0")]
    pub collective_listen: String,

    /// Compute threads; default: all cores.
    #[arg(long)]
    pub threads: Option<usize>,

    /// How long Join waits for every peer's collective, in seconds.
    #[arg(long, default_value_t = 60)]
    pub connect_timeout_secs: u64,

    /// Exit when standard input closes (set by a coordinator that starts shards).
    #[arg(long)]
    pub exit_with_stdin: bool,
}

/// Serves until shut down.
pub async fn run(args: ServeArgs) -> Result<()> {
    let threads = match args.threads {
        Some(0) => anyhow::bail!("--threads must be at least 1"),
        Some(t) => t,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let collective =
        TcpGroup::bind(&args.collective_listen).context("cannot bind the collective port")?;
    let collective_addr = collective.local_addr();
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let listen = listener.local_addr()?;

    let (shutdown_tx, mut shutdown_rx) = tokio::sync::mpsc::channel(1);
    let service = ShardService::new(
        collective,
        threads,
        Duration::from_secs(args.connect_timeout_secs),
        shutdown_tx.clone(),
    );
    if args.exit_with_stdin {
        tokio::spawn(watch_stdin(shutdown_tx));
    }
    let ready = serde_json::json!({ "event": "ready", "listen": listen.to_string(), "collective": collective_addr.to_string() });
    // The coordinator that started this shard reads this line; others may not read at all.
    let _ = writeln!(std::io::stdout(), "{ready}");
    tracing::info!(%listen, collective = %collective_addr, threads, "shard started");

    let stop = async move {
        tokio::select! {
            _ = shutdown_rx.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    tonic::transport::Server::builder()
        .add_service(ShardServer::new(service).max_decoding_message_size(64 << 20))
        .serve_with_incoming_shutdown(incoming(listener), stop)
        .await
        .context("the shard's gRPC server failed")?;
    tracing::info!("shard stopped");
    // Rank threads may be blocked in a collective with a dead peer; do not wait for them.
    std::process::exit(0);
}

/// Connections accepted on `listener`, with Nagle's algorithm off: steps are
/// small request/response pairs on the critical path of every token.
fn incoming(
    listener: TcpListener,
) -> impl tokio_stream::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    use tokio_stream::StreamExt;
    tokio_stream::wrappers::TcpListenerStream::new(listener).map(|conn| {
        if let Ok(c) = &conn {
            let _ = c.set_nodelay(true);
        }
        conn
    })
}

/// Fires `shutdown` once standard input reaches end of file.
async fn watch_stdin(shutdown: tokio::sync::mpsc::Sender<()>) {
    let mut stdin = tokio::io::stdin();
    let mut buf = [0u8; 256];
    while let Ok(n) = stdin.read(&mut buf).await {
        if n == 0 {
            break;
        }
    }
    tracing::info!("standard input closed; exiting");
    let _ = shutdown.try_send(());
}
