//! The rank thread: owns the worker (model slice, KV cache, collective) and
//! runs its steps one at a time. gRPC handlers message it; its compute and
//! collective calls block this thread only, never the async runtime.

use std::sync::mpsc;
use std::time::Duration;

use tessera_formats::ModelFiles;

use crate::collective::tcp::{TcpGroup, TcpListenerHandle};
use crate::model::Model;
use crate::sampling::Sampled;
use crate::worker::{StepError, StepSeq, Worker};

/// How a rank is set up (from the Join call).
#[derive(Debug, Clone)]
pub struct JoinSpec {
    pub rank: usize,
    pub world_size: usize,
    pub model_path: std::path::PathBuf,
    pub peers: Vec<String>,
    pub kv_num_blocks: usize,
    pub kv_block_size: usize,
    pub threads: usize,
    pub connect_timeout: Duration,
}

/// What the rank reports after joining.
#[derive(Debug, Clone, Copy)]
pub struct Joined {
    pub num_layers: usize,
    pub vocab_size: usize,
    pub kv_bytes_per_position: usize,
}

/// Load figures for Health.
#[derive(Debug, Clone, Copy, Default)]
pub struct Load {
    pub running: usize,
    pub kv_blocks_in_use: usize,
    pub kv_blocks_total: usize,
}

/// A message to the rank thread.
pub enum Command {
    Step(
        Vec<StepSeq>,
        tokio::sync::oneshot::Sender<Result<Vec<Sampled>, StepError>>,
    ),
    Release(Vec<u64>),
    Load(tokio::sync::oneshot::Sender<Load>),
}

/// Loads the slice, forms the collective and returns the rank's command
/// channel once it is ready to step.
pub fn start(
    spec: JoinSpec,
    listener: TcpListenerHandle,
) -> Result<(mpsc::Sender<Command>, Joined), String> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .name(format!("rank{}", spec.rank))
        .spawn(move || match setup(&spec, listener) {
            Ok((worker, pool, joined)) => {
                let _ = ready_tx.send(Ok(joined));
                serve(worker, &pool, rx);
            }
            Err(e) => {
                let _ = ready_tx.send(Err(e));
            }
        })
        .map_err(|e| format!("cannot start the rank thread: {e}"))?;
    let joined = ready_rx
        .recv()
        .map_err(|_| "the rank thread stopped while joining".to_string())??;
    Ok((tx, joined))
}

fn setup(
    spec: &JoinSpec,
    listener: TcpListenerHandle,
) -> Result<(Worker, rayon::ThreadPool, Joined), String> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(spec.threads)
        .thread_name(|i| format!("compute{i}"))
        .build()
        .map_err(|e| format!("cannot start {} compute threads: {e}", spec.threads))?;
    let (config, store) = ModelFiles::open_weights(&spec.model_path)
        .map_err(|e| format!("cannot load model {}: {e}", spec.model_path.display()))?;
    let model = pool
        .install(|| Model::load(&config, &store, spec.rank, spec.world_size))
        .map_err(|e| format!("cannot load rank {}'s slice: {e}", spec.rank))?;
    let comm = TcpGroup::connect(listener, spec.rank, &spec.peers, spec.connect_timeout)
        .map_err(|e| format!("cannot connect the collective: {e}"))?;
    tracing::info!(
        rank = spec.rank,
        world_size = spec.world_size,
        "collective ready"
    );
    let worker = Worker::new(
        model,
        Box::new(comm),
        spec.kv_num_blocks,
        spec.kv_block_size,
    );
    let kv_bytes_per_position =
        2 * config.num_layers * worker.model().local_kv_heads() * config.head_dim * 4;
    let joined = Joined {
        num_layers: config.num_layers,
        vocab_size: config.vocab_size,
        kv_bytes_per_position,
    };
    Ok((worker, pool, joined))
}

fn serve(mut worker: Worker, pool: &rayon::ThreadPool, rx: mpsc::Receiver<Command>) {
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Step(seqs, reply) => {
                let out = pool.install(|| worker.step(&seqs));
                if let Err(e) = &out {
                    tracing::error!(error = %e, kind = e.label(), "step failed");
                }
                let _ = reply.send(out);
            }
            Command::Release(ids) => worker.release(&ids),
            Command::Load(reply) => {
                let _ = reply.send(Load {
                    running: worker.running(),
                    kv_blocks_in_use: worker.kv_blocks_in_use(),
                    kv_blocks_total: worker.kv_blocks_total(),
                });
            }
        }
    }
}
