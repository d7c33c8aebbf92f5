//! `tessera serve`: the gRPC server (generation API, health, reflection)
//! over a cluster, with a graceful drain on Ctrl-C or SIGTERM.

use std::io::Write;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use tessera_proto::v1::generation_server::GenerationServer;
use tokio::net::TcpListener;

use crate::api::GenerationService;
use crate::cluster::{self, Cluster, ClusterArgs};

/// Flags of `tessera serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public gRPC API. Port 0 picks a free port; the chosen
    /// address is printed on stdout as a JSON line.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

    /// On Ctrl-C or SIGTERM, how long running requests may take to finish
    /// before they are cancelled, in seconds.
    #[arg(long, default_value_t = 30)]
    pub drain_timeout_secs: u64,

    #[command(flatten)]
    pub cluster: ClusterArgs,
}

/// Runs the server until Ctrl-C or SIGTERM, then drains and stops the shards.
pub async fn serve(args: ServeArgs, log: &str) -> Result<()> {
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let local = listener.local_addr()?;
    let cluster = cluster::start(&args.cluster, log).await?;
    let (server, cluster_task, abort) = router(cluster)?;
    tracing::info!(listen = %local, "serving");
    // Nobody may be reading stdout; the line is a courtesy, not a requirement.
    let ready = serde_json::json!({ "event": "ready", "listen": local.to_string() });
    let _ = writeln!(std::io::stdout(), "{ready}");

    let (signalled_tx, signalled) = tokio::sync::oneshot::channel::<()>();
    let server = server.serve_with_incoming_shutdown(crate::net::incoming(listener), async move {
        shutdown_signal().await;
        let _ = signalled_tx.send(());
    });
    tokio::pin!(server);
    tokio::select! {
        r = &mut server => r.context("the gRPC server failed")?,
        _ = signalled => {
            let deadline = Duration::from_secs(args.drain_timeout_secs);
            tracing::info!(deadline_secs = args.drain_timeout_secs, "draining");
            match tokio::time::timeout(deadline, &mut server).await {
                Ok(r) => r.context("the gRPC server failed")?,
                Err(_) => {
                    tracing::warn!("drain deadline passed; cancelling requests still running");
                    let _ = abort.send(());
                }
            }
        }
    }
    // With the server gone (or the abort sent), the scheduler finishes and stops the shards.
    cluster_task.await.context("the scheduler task failed")?;
    Ok(())
}

/// What [`router`] returns: the services, the scheduler's task, and the
/// sender that aborts the scheduler.
pub type Serving = (
    tonic::transport::server::Router,
    tokio::task::JoinHandle<()>,
    tokio::sync::oneshot::Sender<()>,
);

/// The tonic router with every service, the scheduler's task, and its abort.
pub fn router(cluster: Cluster) -> Result<Serving> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let reflection = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(tessera_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()
        .context("cannot build the reflection service")?;
    let service = GenerationService::new(cluster.meta, cluster.scheduler);
    let router = tonic::transport::Server::builder()
        .add_service(health)
        .add_service(reflection)
        .add_service(GenerationServer::new(service));
    let mut runner = cluster.runner;
    runner.set_health(reporter.clone());
    let (abort, aborted) = tokio::sync::oneshot::channel();
    runner.set_abort(aborted);
    let task = tokio::spawn(async move {
        reporter
            .set_serving::<GenerationServer<GenerationService>>()
            .await;
        runner.run().await;
    });
    Ok((router, task, abort))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
