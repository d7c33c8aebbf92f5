//! A tensor-parallel group whose ranks are threads of this process, each with
//! its own worker and rayon pool, joined by a [`LocalGroup`] collective.
//!
//! The caller sends each step to every rank at once and checks that the ranks
//! agree on the sampled tokens, as the coordinator does with shard processes.

use std::sync::mpsc;
use std::sync::Arc;
use std::thread::JoinHandle;

use tessera_formats::{ModelConfig, TensorStore};

use crate::collective::{Collective, LocalGroup};
use crate::model::{Model, ModelError};
use crate::sampling::Sampled;
use crate::worker::{StepError, StepSeq, Worker};

/// Why the group could not start or run a step.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    #[error("rank {rank}: {error}")]
    Load { rank: usize, error: ModelError },
    #[error("rank {rank}: {error}")]
    Step { rank: usize, error: StepError },
    #[error("rank {rank} stopped unexpectedly")]
    RankGone { rank: usize },
    #[error("ranks disagree on sampled tokens: rank 0 gave {first:?}, rank {rank} gave {other:?}")]
    Disagree {
        rank: usize,
        first: Vec<u32>,
        other: Vec<u32>,
    },
    #[error("cannot start a thread pool of {threads} threads: {reason}")]
    Pool { threads: usize, reason: String },
}

/// KV cache geometry for every rank.
#[derive(Debug, Clone, Copy)]
pub struct CacheSize {
    pub num_blocks: usize,
    pub block_size: usize,
}

enum Command {
    Step(
        Arc<Vec<StepSeq>>,
        mpsc::Sender<Result<Vec<Sampled>, StepError>>,
    ),
    Release(Vec<u64>),
}

struct Rank {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// The ranks of an in-process group.
pub struct LocalCluster {
    ranks: Vec<Rank>,
}

impl LocalCluster {
    /// Loads a slice per rank (in parallel) and starts the rank threads.
    pub fn start(
        config: &ModelConfig,
        store: Arc<TensorStore>,
        world_size: usize,
        threads_per_rank: usize,
        cache: CacheSize,
    ) -> Result<Self, GroupError> {
        let (ready_tx, ready_rx) = mpsc::channel();
        let mut ranks = Vec::with_capacity(world_size);
        for comm in LocalGroup::new(world_size) {
            let rank = comm.rank();
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads_per_rank)
                .thread_name(move |i| format!("rank{rank}-compute{i}"))
                .build()
                .map_err(|e| GroupError::Pool {
                    threads: threads_per_rank,
                    reason: e.to_string(),
                })?;
            let (tx, rx) = mpsc::channel();
            let (config, store, ready) = (config.clone(), Arc::clone(&store), ready_tx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("rank{rank}"))
                .spawn(move || {
                    let loaded = pool.install(|| Model::load(&config, &store, rank, world_size));
                    let model = match loaded {
                        Ok(m) => m,
                        Err(e) => {
                            let _ = ready.send((rank, Err(e)));
                            return;
                        }
                    };
                    let _ = ready.send((rank, Ok(())));
                    let worker =
                        Worker::new(model, Box::new(comm), cache.num_blocks, cache.block_size);
                    serve(worker, &pool, rx);
                })
                .map_err(|e| GroupError::Pool {
                    threads: 1,
                    reason: e.to_string(),
                })?;
            ranks.push(Rank {
                commands: tx,
                thread: Some(thread),
            });
        }
        drop(ready_tx);

        let cluster = Self { ranks };
        for _ in 0..world_size {
            match ready_rx.recv() {
                Ok((_, Ok(()))) => {}
                Ok((rank, Err(error))) => return Err(GroupError::Load { rank, error }),
                Err(_) => return Err(GroupError::RankGone { rank: 0 }),
            }
        }
        Ok(cluster)
    }

    /// Ranks in the group.
    pub fn world_size(&self) -> usize {
        self.ranks.len()
    }

    /// Runs one step on every rank and returns rank 0's tokens after checking
    /// that every rank sampled the same ones.
    pub fn step(&self, seqs: Vec<StepSeq>) -> Result<Vec<Sampled>, GroupError> {
        let seqs = Arc::new(seqs);
        let mut replies = Vec::with_capacity(self.ranks.len());
        for (rank, r) in self.ranks.iter().enumerate() {
            let (tx, rx) = mpsc::channel();
            r.commands
                .send(Command::Step(Arc::clone(&seqs), tx))
                .map_err(|_| GroupError::RankGone { rank })?;
            replies.push(rx);
        }
        let mut first: Option<Vec<Sampled>> = None;
        for (rank, rx) in replies.into_iter().enumerate() {
            let out = rx.recv().map_err(|_| GroupError::RankGone { rank })?;
            let out = out.map_err(|error| GroupError::Step { rank, error })?;
            match &first {
                None => first = Some(out),
                Some(f) if f.iter().map(|s| s.token).ne(out.iter().map(|s| s.token)) => {
                    return Err(GroupError::Disagree {
                        rank,
                        first: f.iter().map(|s| s.token).collect(),
                        other: out.iter().map(|s| s.token).collect(),
                    })
                }
                Some(_) => {}
            }
        }
        Ok(first.unwrap_or_default())
    }

    /// Forgets sequences on every rank.
    pub fn release(&self, ids: &[u64]) {
        for r in &self.ranks {
            let _ = r.commands.send(Command::Release(ids.to_vec()));
        }
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        for r in &mut self.ranks {
            // Closing the channel ends the rank's loop.
            let (tx, _) = mpsc::channel();
            drop(std::mem::replace(&mut r.commands, tx));
        }
        for r in &mut self.ranks {
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// A rank's loop: runs commands until the cluster is dropped.
fn serve(mut worker: Worker, pool: &rayon::ThreadPool, commands: mpsc::Receiver<Command>) {
    while let Ok(cmd) = commands.recv() {
        match cmd {
            Command::Step(seqs, reply) => {
                let out = pool.install(|| worker.step(&seqs));
                let _ = reply.send(out);
            }
            Command::Release(ids) => worker.release(&ids),
        }
    }
}
