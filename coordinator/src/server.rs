//! `tessera serve`: the gRPC server (generation API, health, reflection)
//! over a cluster, with a graceful drain on Ctrl-C or SIGTERM.

use std::net::SocketAddr;

use anyhow::{Context, Result};
use clap::Args;
use tessera_proto::v1::generation_server::GenerationServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::api::GenerationService;
use crate::cluster::{self, Cluster, ClusterArgs};

/// Flags of `tessera serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address of the public gRPC API. Port 0 picks a free port; the chosen
    /// address is printed on stdout as a JSON line.
    #[arg(long, env = "TESSERA_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,

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
    let (server, cluster_task) = router(cluster)?;
    tracing::info!(listen = %local, "serving");
    println!(
        "{}",
        serde_json::json!({ "event": "ready", "listen": local.to_string() })
    );

    server
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown_signal())
        .await
        .context("the gRPC server failed")?;
    tracing::info!("draining");
    // The server dropped its scheduler handles; the scheduler finishes and stops the shards.
    cluster_task.await.context("the scheduler task failed")?;
    Ok(())
}

/// The tonic router with every service, and the scheduler's task.
pub fn router(
    cluster: Cluster,
) -> Result<(
    tonic::transport::server::Router,
    tokio::task::JoinHandle<()>,
)> {
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
    let task = tokio::spawn(async move {
        reporter
            .set_serving::<GenerationServer<GenerationService>>()
            .await;
        runner.run().await;
    });
    Ok((router, task))
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
