//! Command-line flags shared by every command that generates text
//! (`tessera-shard generate`, `tessera generate`).

use clap::Args;

use crate::sampling::SamplingParams;

/// Sampling and stopping flags.
#[derive(Debug, Clone, Args)]
pub struct GenerationArgs {
    /// Render the prompt as a user message with the model's chat template.
    #[arg(long)]
    pub chat: bool,

    /// With --chat, a system message to put first.
    #[arg(long, requires = "chat")]
    pub system: Option<String>,

    /// Most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_new_tokens: usize,

    /// Keep generating past end-of-sequence tokens.
    #[arg(long)]
    pub ignore_eos: bool,

    /// Sampling temperature; 0 is greedy.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,

    /// Keep only the k most likely tokens; 0 disables.
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,

    /// Nucleus sampling mass in (0, 1]; 1 disables.
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,

    /// Drop tokens below min_p times the top probability; 0 disables.
    #[arg(long, default_value_t = 0.0)]
    pub min_p: f32,

    /// Penalty on tokens already in prompt or output; 1 disables.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,

    /// Subtracted per earlier occurrence in the output, in [-2, 2].
    #[arg(long, default_value_t = 0.0)]
    pub frequency_penalty: f32,

    /// Subtracted once a token occurs in the output, in [-2, 2].
    #[arg(long, default_value_t = 0.0)]
    pub presence_penalty: f32,

    /// Seed for reproducible sampling; random when absent.
    #[arg(long)]
    pub seed: Option<u64>,

    /// Print one JSON object (ids, text, finish reason, timings) instead of streaming text.
    #[arg(long)]
    pub json: bool,
}

impl GenerationArgs {
    /// The sampling parameters these flags describe.
    pub fn sampling(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            frequency_penalty: self.frequency_penalty,
            presence_penalty: self.presence_penalty,
            seed: self.seed,
        }
    }
}

/// The `--json` result, printed as the last line of output.
#[derive(Debug, serde::Serialize)]
pub struct JsonResult {
    pub prompt_ids: Vec<u32>,
    pub token_ids: Vec<u32>,
    pub text: String,
    pub finish_reason: String,
    pub timings: Timings,
}

/// Wall-clock figures of one generation.
#[derive(Debug, serde::Serialize)]
pub struct Timings {
    pub load_ms: f64,
    pub prefill_ms: f64,
    pub decode_ms: f64,
    /// Tokens after the first (which prefill produces) per second of decode.
    pub decode_tokens_per_s: f64,
}

impl Timings {
    /// Figures for `n_tokens` generated tokens.
    pub fn new(load_ms: f64, prefill_ms: f64, decode_ms: f64, n_tokens: usize) -> Self {
        let decoded = n_tokens.saturating_sub(1) as f64;
        let decode_tokens_per_s = if decode_ms > 0.0 {
            decoded / (decode_ms / 1e3)
        } else {
            0.0
        };
        Self {
            load_ms,
            prefill_ms,
            decode_ms,
            decode_tokens_per_s,
        }
    }
}

/// Sends logs to stderr with `filter` (tracing's syntax), colour only on a
/// terminal. The tokenizer library is always silenced: at trace level it logs
/// every character it reads, which is prompt text.
pub fn init_logging(filter: &str) -> Result<(), String> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| format!("--log {filter:?} is not a valid log filter: {e}"))?
        .add_directive(
            "tokenizers=off"
                .parse()
                .expect("a constant, valid directive"),
        );
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    Ok(())
}
