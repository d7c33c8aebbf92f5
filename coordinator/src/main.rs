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
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        // The tokenizer library traces every character it reads: prompt text.
        Ok(f) => f.add_directive(
            "tokenizers=off"
                .parse()
                .expect("a constant, valid directive"),
        ),
        Err(e) => {
            eprintln!("error: --log {:?} is not a valid log filter: {e}", cli.log);
            std::process::exit(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let result: Result<()> = match cli.command {
        Command::Serve(args) => server::serve(args, &cli.log).await,
        Command::Generate(args) => generate::run(args, &cli.log).await,
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
