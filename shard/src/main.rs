//! `tessera-shard`: one rank of a Tessera cluster, and a stand-alone runner
//! that generates text with an in-process tensor-parallel group.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use tessera_formats::{ChatMessage, Detokenizer, ModelFiles, Tokenizer};
use tessera_shard::cli::{GenerationArgs, JsonResult, Timings};
use tessera_shard::generate::{generate, GenerateRequest};
use tessera_shard::group::{CacheSize, LocalCluster};
use tessera_shard::kv_cache::BlockAllocator;

/// Tessera shard: runs a slice of a Llama-family model.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Log filter (tracing syntax, e.g. `info` or `tessera_shard=debug`). Logs go to stderr
    /// and never contain prompt or completion text.
    #[arg(long, env = "TESSERA_LOG", default_value = "warn", global = true)]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate a completion on this machine, streaming it to stdout.
    Generate(GenerateCmd),
    /// Serve one rank of a cluster for a coordinator.
    Serve(tessera_shard::serve::ServeArgs),
}

#[derive(Debug, clap::Args)]
struct GenerateCmd {
    /// A GGUF file or a Hugging Face model folder.
    #[arg(long, env = "TESSERA_MODEL")]
    model: PathBuf,

    /// Tensor-parallel degree: ranks, one thread group each.
    #[arg(long, default_value_t = 1)]
    tp: usize,

    /// Compute threads per rank; default: the machine's cores divided by --tp.
    #[arg(long)]
    threads: Option<usize>,

    #[command(flatten)]
    gen: GenerationArgs,

    /// The prompt text.
    prompt: String,
}

fn main() {
    let cli = Cli::parse();
    if let Err(e) = tessera_shard::cli::init_logging(&cli.log) {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    let result = match cli.command {
        Command::Generate(cmd) => run_generate(cmd),
        Command::Serve(args) => serve(args),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn serve(args: tessera_shard::serve::ServeArgs) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(tessera_shard::serve::run(args))
}

fn run_generate(cmd: GenerateCmd) -> Result<()> {
    if cmd.tp == 0 {
        bail!("--tp must be at least 1");
    }
    let threads = match cmd.threads {
        Some(0) => bail!("--threads must be at least 1"),
        Some(t) => t,
        None => std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .div_ceil(cmd.tp)
            .max(1),
    };
    cmd.gen
        .sampling()
        .validate()
        .context("invalid sampling flags")?;

    let load = Instant::now();
    let files = ModelFiles::open(&cmd.model)
        .with_context(|| format!("cannot load model {}", cmd.model.display()))?;
    let prompt_ids = prompt_ids(&files, &cmd.gen, &cmd.prompt)?;
    let context = files.config.max_seq_len;
    let block_size = 16;
    let positions = (prompt_ids.len() + cmd.gen.max_new_tokens).min(context);
    let cache = CacheSize {
        num_blocks: positions.div_ceil(block_size).max(1),
        block_size,
    };
    let store = Arc::new(files.tensors);
    let cluster = LocalCluster::start(&files.config, store, cmd.tp, threads, cache)?;
    let load_ms = load.elapsed().as_secs_f64() * 1e3;

    let req = GenerateRequest {
        prompt_ids: prompt_ids.clone(),
        max_new_tokens: cmd.gen.max_new_tokens,
        ignore_eos: cmd.gen.ignore_eos,
        eos_ids: files.tokenizer.eos_ids().to_vec(),
        sampling: cmd.gen.sampling(),
    };
    let mut blocks = BlockAllocator::new(cache.num_blocks, block_size);
    let mut text = TextStream::new(&files.tokenizer, &req, cmd.gen.json);
    let out = generate(&cluster, &req, context, &mut blocks, |s| text.push(s.token))?;
    let text = text.finish();

    let ids = out.token_ids();
    if cmd.gen.json {
        let result = JsonResult {
            prompt_ids,
            timings: Timings::new(load_ms, out.prefill_ms, out.decode_ms, ids.len()),
            token_ids: ids,
            text,
            finish_reason: out.finish_reason.as_str().to_string(),
        };
        writeln!(std::io::stdout(), "{}", serde_json::to_string(&result)?)?;
    } else {
        writeln!(std::io::stdout())?;
    }
    Ok(())
}

/// The prompt's token ids: raw text with the model's BOS rule, or the chat
/// template's rendering of one user turn.
fn prompt_ids(files: &ModelFiles, gen: &GenerationArgs, prompt: &str) -> Result<Vec<u32>> {
    if !gen.chat {
        return Ok(files.tokenizer.encode(prompt, true)?);
    }
    let template = files.chat_template.as_ref().context(
        "--chat needs a chat template, and this model ships none; drop --chat to send raw text",
    )?;
    let mut messages = Vec::new();
    if let Some(system) = &gen.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: system.clone(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: prompt.into(),
    });
    let rendered = template.render(&messages, true)?;
    Ok(files.tokenizer.encode(&rendered, false)?)
}

/// Turns tokens into text, streaming it to stdout unless printing JSON.
struct TextStream<'a> {
    tokenizer: &'a Tokenizer,
    eos: Vec<u32>,
    ignore_eos: bool,
    quiet: bool,
    detok: Detokenizer,
    text: String,
}

impl<'a> TextStream<'a> {
    fn new(tokenizer: &'a Tokenizer, req: &GenerateRequest, quiet: bool) -> Self {
        let eos = req.eos_ids.clone();
        Self {
            tokenizer,
            eos,
            ignore_eos: req.ignore_eos,
            quiet,
            detok: Detokenizer::new(),
            text: String::new(),
        }
    }

    fn push(&mut self, token: u32) {
        // A final end token ends the text; it is not part of it.
        if !self.ignore_eos && self.eos.contains(&token) {
            return;
        }
        let piece = self
            .detok
            .push(&self.tokenizer.token_bytes(token).unwrap_or_default());
        self.emit(piece);
    }

    fn emit(&mut self, piece: String) {
        if !self.quiet && !piece.is_empty() {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(piece.as_bytes());
            let _ = out.flush();
        }
        self.text.push_str(&piece);
    }

    fn finish(mut self) -> String {
        let rest = self.detok.finish();
        self.emit(rest);
        self.text
    }
}
