//! Bringing a serving cluster up: read the model's metadata, start or reach
//! the shards, join them into a group, size the KV cache and start the
//! scheduler.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::Args;
use tessera_formats::ModelFiles;
use tessera_shard::kv_cache::BlockAllocator;
use tessera_shard::model::TpPlan;

use crate::api::ModelMeta;
use crate::scheduler::{BatchLimits, Scheduler, SchedulerHandle};
use crate::shards::{GroupSpec, LocalShards};

/// Flags that describe the cluster behind a coordinator.
#[derive(Debug, Clone, Args)]
pub struct ClusterArgs {
    /// A GGUF file or a Hugging Face model folder (a path on every shard's host).
    #[arg(long, env = "TESSERA_MODEL")]
    pub model: PathBuf,

    /// Tensor-parallel degree: shard processes started on this machine.
    #[arg(long, default_value_t = 1)]
    pub tp: usize,

    /// Join shards already running (`tessera-shard serve`) at these addresses,
    /// in rank order, instead of starting local ones. Overrides --tp.
    #[arg(long, value_delimiter = ',')]
    pub shards: Vec<String>,

    /// The `tessera-shard` executable; default: beside this one.
    #[arg(long, env = "TESSERA_SHARD_BINARY")]
    pub shard_binary: Option<PathBuf>,

    /// Compute threads per local shard; default: cores divided by --tp.
    #[arg(long)]
    pub threads: Option<usize>,

    /// KV cache per shard, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub kv_cache_mib: usize,

    /// Positions per KV cache block.
    #[arg(long, default_value_t = 16)]
    pub kv_block_size: usize,

    /// Most requests waiting for admission; more get RESOURCE_EXHAUSTED.
    #[arg(long, default_value_t = 256)]
    pub max_queue: usize,

    /// Most requests in the running batch.
    #[arg(long, default_value_t = 32)]
    pub max_batch_size: usize,

    /// Most prompt tokens prefilled in one step.
    #[arg(long, default_value_t = 512)]
    pub max_prefill_tokens: usize,

    /// Longest one step may take before its shards count as failed, in seconds.
    #[arg(long, default_value_t = 120)]
    pub step_timeout_secs: u64,
}

/// A started cluster: what the API serves, the scheduler's handle, and the
/// scheduler itself, to be run as a task.
pub struct Cluster {
    pub meta: Arc<ModelMeta>,
    pub scheduler: SchedulerHandle,
    pub runner: Scheduler,
}

/// Starts the cluster `args` describes; `log` is the shards' log filter.
pub async fn start(args: &ClusterArgs, log: &str) -> Result<Cluster> {
    check(args)?;
    let files = ModelFiles::open(&args.model)
        .with_context(|| format!("cannot load model {}", args.model.display()))?;
    let model = args
        .model
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", args.model.display()))?;
    let world_size = if args.shards.is_empty() {
        args.tp
    } else {
        args.shards.len()
    };
    for rank in 0..world_size {
        TpPlan::new(&files.config, rank, world_size, 1).context("cannot split the model")?;
    }

    let local = match args.shards.is_empty() {
        true => Some(LocalShards {
            binary: shard_binary(args)?,
            world_size,
            threads: threads(args),
            log: log.to_string(),
        }),
        false => None,
    };
    let num_blocks = kv_blocks(&files, world_size, args)?;
    let spec = GroupSpec {
        local,
        remote: args.shards.clone(),
        model,
        kv_num_blocks: num_blocks,
        kv_block_size: args.kv_block_size,
        step_timeout: Duration::from_secs(args.step_timeout_secs),
    };
    let group = spec.start().await?;
    tracing::info!(
        world_size,
        num_blocks,
        block_size = args.kv_block_size,
        "shard group joined"
    );

    let tokenizer = Arc::new(files.tokenizer);
    let limits = BatchLimits {
        max_queue: args.max_queue,
        max_batch_size: args.max_batch_size,
        max_prefill_tokens: args.max_prefill_tokens,
    };
    let blocks = BlockAllocator::new(num_blocks, args.kv_block_size);
    let (scheduler, handle) = Scheduler::new(group, spec, blocks, Arc::clone(&tokenizer), limits);
    let name = files
        .source
        .file_stem()
        .map_or_else(String::new, |s| s.to_string_lossy().into_owned());
    let meta = ModelMeta {
        name,
        config: files.config,
        control_texts: tokenizer.special_token_texts(),
        tokenizer,
        chat_template: files.chat_template,
        world_size,
    };
    Ok(Cluster {
        meta: Arc::new(meta),
        scheduler: handle,
        runner: scheduler,
    })
}

fn check(args: &ClusterArgs) -> Result<()> {
    if args.tp == 0 {
        bail!("--tp must be at least 1");
    }
    if args.kv_block_size == 0 || args.kv_cache_mib == 0 {
        bail!("--kv-block-size and --kv-cache-mib must be at least 1");
    }
    if args.max_queue == 0 || args.max_batch_size == 0 || args.max_prefill_tokens == 0 {
        bail!("--max-queue, --max-batch-size and --max-prefill-tokens must be at least 1");
    }
    if args.step_timeout_secs == 0 {
        bail!("--step-timeout-secs must be at least 1");
    }
    if args.threads == Some(0) {
        bail!("--threads must be at least 1");
    }
    Ok(())
}

/// KV blocks every rank can hold within `--kv-cache-mib`; the rank with the
/// most KV heads decides.
fn kv_blocks(files: &ModelFiles, world_size: usize, args: &ClusterArgs) -> Result<usize> {
    let c = &files.config;
    let max_kv_heads = (0..world_size)
        .map(|r| TpPlan::new(c, r, world_size, 1).map(|p| p.kv_heads.len()))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .max()
        .unwrap_or(1);
    let per_position = 2 * c.num_layers * max_kv_heads * c.head_dim * 4;
    let bytes = args.kv_cache_mib.checked_mul(1 << 20);
    let block_bytes = per_position.checked_mul(args.kv_block_size);
    let (Some(bytes), Some(block_bytes)) = (bytes, block_bytes) else {
        bail!(
            "--kv-cache-mib {} with --kv-block-size {} is too large to address",
            args.kv_cache_mib,
            args.kv_block_size
        );
    };
    let blocks = bytes / block_bytes;
    if blocks == 0 {
        bail!(
            "--kv-cache-mib {} holds no block of {} positions ({} bytes each); raise it",
            args.kv_cache_mib,
            args.kv_block_size,
            per_position
        );
    }
    Ok(blocks)
}

fn threads(args: &ClusterArgs) -> usize {
    args.threads.unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.tp).max(1)
    })
}

fn shard_binary(args: &ClusterArgs) -> Result<PathBuf> {
    if let Some(p) = &args.shard_binary {
        return Ok(p.clone());
    }
    let me = std::env::current_exe().context("cannot find this executable's path")?;
    let beside = me.with_file_name("tessera-shard");
    if beside.exists() {
        return Ok(beside);
    }
    bail!("no tessera-shard beside {}; build it (cargo build --bin tessera-shard) or pass --shard-binary", me.display())
}
