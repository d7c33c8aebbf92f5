//! `tessera`: the coordinator of a Tessera cluster. It serves the public gRPC
//! API, schedules requests onto a group of shard processes, and streams the
//! answers back.

mod api;
mod cluster;
mod error;
mod generate;
mod net;
mod request;
mod scheduler;
mod server;
mod shards;
mod text;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// Tessera: a self-hosted, tensor-parallel LLM inference cluster.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info` or `tessera=debug`). Logs go to stderr and
    /// never contain prompt or completion text.
    #[arg(long, env = "TESSERA_LOG", default_value = "info", global = true)]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start shards and serve the gRPC API until interrupted.
    Serve(server::ServeArgs),
    /// Generate one answer, on a cluster started for it or on a running server.
    Generate(generate::GenerateArgs),
}

#[tokio::main]
async fn main() {
    let mut cli = Cli::parse();
    // A one-shot answer on a terminal should not be buried in lifecycle logs.
    if matches!(cli.command, Command::Generate(_)) && cli.log == "info" {
        cli.log = "warn".into();
    }
    if let Err(e) = tessera_shard::cli::init_logging(&cli.log) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let result: Result<()> = match cli.command {
        Command::Serve(args) => server::serve(args, &cli.log).await,
        Command::Generate(args) => generate::run(args, &cli.log).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
