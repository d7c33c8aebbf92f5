//! `tessera generate`: one answer, streamed to stdout, from a cluster started
//! for it (then stopped) or from a running server.

use std::io::Write;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use tessera_client::Client;
use tessera_proto::v1 as pb;
use tessera_shard::cli::{GenerationArgs, JsonResult, Timings};
use tokio::net::TcpListener;

use crate::cluster::{self, ClusterArgs};
use crate::server;

/// Flags of `tessera generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// A running server's address (`host:port`); without it a local cluster is
    /// started from --model and stopped afterwards.
    #[arg(long, conflicts_with = "model")]
    server: Option<String>,

    /// A GGUF file or Hugging Face folder, for a local cluster.
    #[arg(long, env = "TESSERA_MODEL")]
    model: Option<std::path::PathBuf>,

    /// Tensor-parallel degree of the local cluster.
    #[arg(long, default_value_t = 1)]
    tp: usize,

    /// Compute threads per local shard; default: cores divided by --tp.
    #[arg(long)]
    threads: Option<usize>,

    /// The `tessera-shard` executable; default: beside this one.
    #[arg(long, env = "TESSERA_SHARD_BINARY")]
    shard_binary: Option<std::path::PathBuf>,

    #[command(flatten)]
    gen: GenerationArgs,

    /// The prompt text.
    prompt: String,
}

/// Runs the command; Ctrl-C stops the answer and the cluster cleanly.
pub async fn run(args: GenerateArgs, log: &str) -> Result<()> {
    args.gen
        .sampling()
        .validate()
        .context("invalid sampling flags")?;
    if args.gen.max_new_tokens == 0 {
        bail!("--max-new-tokens must be at least 1");
    }
    if let Some(addr) = &args.server {
        let client = Client::connect(addr).await?;
        return ask(client, &args, 0.0).await;
    }
    let Some(model) = args.model.clone() else {
        bail!("give --model PATH to start a local cluster, or --server ADDR to use a running one");
    };

    let load = Instant::now();
    let cluster_args = local_cluster(&args, model);
    let cluster = cluster::start(&cluster_args, log).await?;
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot open a loopback port")?;
    let addr = listener.local_addr()?;
    let (router, scheduler, abort) = server::router(cluster)?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(router.serve_with_incoming_shutdown(
        crate::net::incoming(listener),
        async {
            let _ = stop_rx.await;
        },
    ));
    let load_ms = load.elapsed().as_secs_f64() * 1e3;

    let client = Client::connect(&addr.to_string()).await?;
    let result = tokio::select! {
        r = ask(client, &args, load_ms) => r,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("\ninterrupted; stopping the cluster");
            let _ = abort.send(());
            Ok(())
        }
    };
    let _ = stop_tx.send(());
    let _ = server.await;
    let _ = scheduler.await;
    result
}

fn local_cluster(args: &GenerateArgs, model: std::path::PathBuf) -> ClusterArgs {
    ClusterArgs {
        model,
        tp: args.tp,
        shards: Vec::new(),
        shard_binary: args.shard_binary.clone(),
        threads: args.threads,
        // One request: the cache only needs its own tokens.
        kv_cache_mib: 256,
        kv_block_size: 16,
        max_queue: 1,
        max_batch_size: 1,
        max_prefill_tokens: 1 << 20,
        step_timeout_secs: 120,
    }
}

/// Sends the question and streams the answer.
async fn ask(mut client: Client, args: &GenerateArgs, load_ms: f64) -> Result<()> {
    let g = &args.gen;
    let s = g.sampling();
    let sampling = Some(pb::SamplingParams {
        temperature: Some(s.temperature),
        top_k: Some(s.top_k as u32),
        top_p: Some(s.top_p),
        min_p: Some(s.min_p),
        repetition_penalty: Some(s.repetition_penalty),
        frequency_penalty: Some(s.frequency_penalty),
        presence_penalty: Some(s.presence_penalty),
        seed: s.seed,
    });
    let stopping = Some(pb::StoppingParams {
        max_new_tokens: Some(g.max_new_tokens as u32),
        ignore_eos: g.ignore_eos,
        ..Default::default()
    });
    let start = Instant::now();
    let mut stream = if g.chat {
        client
            .chat_stream(pb::ChatRequest {
                messages: messages(args),
                sampling,
                stopping,
                logprobs: None,
            })
            .await?
    } else {
        let prompt = Some(pb::generate_request::Prompt::Text(args.prompt.clone()));
        client
            .generate_stream(pb::GenerateRequest {
                prompt,
                sampling,
                stopping,
                logprobs: None,
            })
            .await?
    };

    let mut ids = Vec::new();
    let mut text = String::new();
    let mut first_ms = None;
    let mut finish = pb::FinishReason::Unspecified;
    loop {
        let chunk = match stream.next_chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => {
                // End the partial answer's line so the error starts on its own.
                if !g.json && !text.is_empty() {
                    let _ = writeln!(std::io::stdout());
                }
                return Err(e.into());
            }
        };
        if first_ms.is_none() && !chunk.token_ids.is_empty() {
            first_ms = Some(start.elapsed().as_secs_f64() * 1e3);
        }
        ids.extend(&chunk.token_ids);
        text.push_str(&chunk.text);
        if !g.json {
            let mut out = std::io::stdout().lock();
            out.write_all(chunk.text.as_bytes())?;
            out.flush()?;
        }
        if chunk.finish_reason != 0 {
            finish = pb::FinishReason::try_from(chunk.finish_reason)
                .unwrap_or(pb::FinishReason::Unspecified);
        }
    }
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    if g.json {
        let prefill_ms = first_ms.unwrap_or(total_ms);
        let prompt_ids = prompt_ids(&mut client, args).await?;
        let result = JsonResult {
            prompt_ids,
            timings: Timings::new(load_ms, prefill_ms, total_ms - prefill_ms, ids.len()),
            token_ids: ids,
            text,
            finish_reason: finish_name(finish).to_string(),
        };
        writeln!(std::io::stdout(), "{}", serde_json::to_string(&result)?)?;
    } else {
        writeln!(std::io::stdout())?;
    }
    Ok(())
}

/// The conversation `--chat` sends: an optional system turn, then the prompt.
fn messages(args: &GenerateArgs) -> Vec<pb::ChatMessage> {
    let system = args.gen.system.iter().map(|s| ("system", s));
    system
        .chain([("user", &args.prompt)])
        .map(|(role, content)| pb::ChatMessage {
            role: role.into(),
            content: content.clone(),
        })
        .collect()
}

/// The prompt's ids as the server tokenizes them.
async fn prompt_ids(client: &mut Client, args: &GenerateArgs) -> Result<Vec<u32>> {
    let input = if args.gen.chat {
        pb::tokenize_request::Input::Chat(pb::ChatMessages {
            messages: messages(args),
        })
    } else {
        pb::tokenize_request::Input::Text(args.prompt.clone())
    };
    Ok(client
        .tokenize(pb::TokenizeRequest { input: Some(input) })
        .await?
        .token_ids)
}

fn finish_name(f: pb::FinishReason) -> &'static str {
    match f {
        pb::FinishReason::Length => "length",
        pb::FinishReason::Eos => "eos",
        pb::FinishReason::Stop => "stop",
        pb::FinishReason::Cancelled => "cancelled",
        pb::FinishReason::Error => "error",
        pb::FinishReason::Unspecified => "unspecified",
    }
}
