//! The internal `tessera.shard.v1.Shard` service of one shard process.

use std::path::PathBuf;
use std::sync::{mpsc, Mutex};
use std::time::Duration;

use tessera_proto::shard::v1 as pb;
use tessera_proto::shard::v1::shard_server::Shard;
use tonic::{Request, Response, Status};

use super::rank::{self, Command, JoinSpec, Joined};
use crate::collective::tcp::{TcpGroup, TcpListenerHandle};
use crate::model::ModelError;
use crate::sampling::{Sampled, SamplingParams};
use crate::worker::{NewSeq, StepError, StepSeq};

/// State before and after Join.
enum Phase {
    /// Waiting for Join; holds the bound collective port.
    Idle(Option<TcpListenerHandle>),
    Joined {
        rank: usize,
        world_size: usize,
        commands: mpsc::Sender<Command>,
    },
}

/// One shard process's service.
pub struct ShardService {
    phase: Mutex<Phase>,
    collective_addr: String,
    threads: usize,
    connect_timeout: Duration,
    /// Fired by Shutdown.
    shutdown: tokio::sync::mpsc::Sender<()>,
}

impl ShardService {
    pub fn new(
        listener: TcpListenerHandle,
        threads: usize,
        connect_timeout: Duration,
        shutdown: tokio::sync::mpsc::Sender<()>,
    ) -> Self {
        let collective_addr = listener.local_addr().to_string();
        Self {
            phase: Mutex::new(Phase::Idle(Some(listener))),
            collective_addr,
            threads,
            connect_timeout,
            shutdown,
        }
    }

    /// After a failed Join, binds the collective port again (same address,
    /// so Info stays right) so that a later Join can succeed.
    fn rearm(&self) -> Result<(), Status> {
        let listener = TcpGroup::bind(&self.collective_addr).map_err(|e| {
            Status::failed_precondition(format!("cannot bind the collective port again after a failed Join ({e}); restart this shard"))
        })?;
        *self
            .phase
            .lock()
            .map_err(|_| Status::internal("shard state lock poisoned"))? =
            Phase::Idle(Some(listener));
        Ok(())
    }

    fn commands(&self) -> Result<mpsc::Sender<Command>, Status> {
        match &*self
            .phase
            .lock()
            .map_err(|_| Status::internal("shard state lock poisoned"))?
        {
            Phase::Joined { commands, .. } => Ok(commands.clone()),
            Phase::Idle(_) => Err(Status::failed_precondition(
                "this shard has not joined a group yet; call Join first",
            )),
        }
    }

    async fn step(
        &self,
        seqs: Vec<StepSeq>,
        step: u64,
    ) -> Result<Response<pb::StepResponse>, Status> {
        let ids: Vec<u64> = seqs.iter().map(|s| s.id).collect();
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.commands()?
            .send(Command::Step(seqs, tx))
            .map_err(|_| rank_gone())?;
        let sampled = rx.await.map_err(|_| rank_gone())?.map_err(step_status)?;
        let tokens = sampled
            .into_iter()
            .zip(ids)
            .map(|(s, id)| token_reply(id, s))
            .collect();
        Ok(Response::new(pb::StepResponse { step, tokens }))
    }
}

fn rank_gone() -> Status {
    Status::unavailable("the rank thread of this shard has stopped")
}

/// Bad requests are the coordinator's to fix; a broken collective means a peer is gone.
fn step_status(e: StepError) -> Status {
    match &e {
        StepError::Model(ModelError::Collective(_)) => Status::unavailable(e.to_string()),
        StepError::Sampling(_)
        | StepError::Model(
            ModelError::TokenOutOfRange { .. }
            | ModelError::ContextOverflow { .. }
            | ModelError::Kv(_),
        ) => Status::invalid_argument(e.to_string()),
        _ => Status::failed_precondition(e.to_string()),
    }
}

/// The wire form of sequence `id`'s sampled token.
fn token_reply(id: u64, s: Sampled) -> pb::SampledToken {
    pb::SampledToken {
        id,
        token: s.token,
        logprob: s.logprob,
        top_ids: s.top_logprobs.iter().map(|t| t.0).collect(),
        top_logprobs: s.top_logprobs.iter().map(|t| t.1).collect(),
    }
}

fn sampling(s: Option<pb::Sampling>) -> (SamplingParams, usize) {
    let s = s.unwrap_or_default();
    let params = SamplingParams {
        temperature: s.temperature,
        top_k: s.top_k as usize,
        top_p: s.top_p,
        min_p: s.min_p,
        repetition_penalty: s.repetition_penalty,
        frequency_penalty: s.frequency_penalty,
        presence_penalty: s.presence_penalty,
        seed: Some(s.seed),
    };
    (params, s.top_logprobs as usize)
}

#[tonic::async_trait]
impl Shard for ShardService {
    async fn info(
        &self,
        _: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::InfoResponse>, Status> {
        Ok(Response::new(pb::InfoResponse {
            version: env!("CARGO_PKG_VERSION").into(),
            backend: "cpu".into(),
            threads: self.threads as u32,
            pid: std::process::id(),
            collective_addr: self.collective_addr.clone(),
        }))
    }

    async fn health(
        &self,
        _: Request<pb::HealthRequest>,
    ) -> Result<Response<pb::HealthResponse>, Status> {
        let (rank, world_size, commands) = match &*self
            .phase
            .lock()
            .map_err(|_| Status::internal("shard state lock poisoned"))?
        {
            Phase::Idle(_) => return Ok(Response::new(pb::HealthResponse::default())),
            Phase::Joined {
                rank,
                world_size,
                commands,
            } => (*rank, *world_size, commands.clone()),
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        commands.send(Command::Load(tx)).map_err(|_| rank_gone())?;
        let load = rx.await.map_err(|_| rank_gone())?;
        Ok(Response::new(pb::HealthResponse {
            joined: true,
            rank: rank as u32,
            world_size: world_size as u32,
            running_sequences: load.running as u32,
            kv_blocks_in_use: load.kv_blocks_in_use as u32,
            kv_blocks_total: load.kv_blocks_total as u32,
        }))
    }

    async fn join(
        &self,
        request: Request<pb::JoinRequest>,
    ) -> Result<Response<pb::JoinResponse>, Status> {
        let r = request.into_inner();
        if r.world_size == 0 || r.rank >= r.world_size || r.peers.len() != r.world_size as usize {
            return Err(Status::invalid_argument(format!(
                "rank {} of world size {} with {} peer addresses does not describe a group",
                r.rank,
                r.world_size,
                r.peers.len()
            )));
        }
        if r.kv_num_blocks == 0 || r.kv_block_size == 0 {
            return Err(Status::invalid_argument(
                "kv_num_blocks and kv_block_size must be at least 1",
            ));
        }
        let listener = match &mut *self
            .phase
            .lock()
            .map_err(|_| Status::internal("shard state lock poisoned"))?
        {
            Phase::Idle(l) => l
                .take()
                .ok_or_else(|| Status::failed_precondition("a Join is already in progress"))?,
            Phase::Joined { .. } => {
                return Err(Status::failed_precondition(
                    "this shard already joined a group; restart it to join another",
                ))
            }
        };
        let spec = JoinSpec {
            rank: r.rank as usize,
            world_size: r.world_size as usize,
            model_path: PathBuf::from(&r.model_path),
            peers: r.peers,
            kv_num_blocks: r.kv_num_blocks as usize,
            kv_block_size: r.kv_block_size as usize,
            threads: self.threads,
            connect_timeout: self.connect_timeout,
        };
        let (rank, world_size) = (spec.rank, spec.world_size);
        let started = tokio::task::spawn_blocking(move || rank::start(spec, listener))
            .await
            .map_err(|e| Status::internal(format!("join task failed: {e}")))?;
        let (commands, joined): (_, Joined) = match started {
            Ok(ok) => ok,
            Err(reason) => {
                self.rearm()?;
                return Err(Status::failed_precondition(reason));
            }
        };
        *self
            .phase
            .lock()
            .map_err(|_| Status::internal("shard state lock poisoned"))? = Phase::Joined {
            rank,
            world_size,
            commands,
        };
        Ok(Response::new(pb::JoinResponse {
            num_layers: joined.num_layers as u32,
            vocab_size: joined.vocab_size as u32,
            kv_bytes_per_position: joined.kv_bytes_per_position as u64,
        }))
    }

    async fn prefill(
        &self,
        request: Request<pb::PrefillRequest>,
    ) -> Result<Response<pb::StepResponse>, Status> {
        let r = request.into_inner();
        let seqs = r
            .seqs
            .into_iter()
            .map(|s| {
                let (sampling, top_logprobs) = sampling(s.sampling);
                // A sequence starts with its first chunk; later chunks continue it.
                let new = (s.start_pos == 0).then_some(NewSeq {
                    sampling,
                    top_logprobs,
                });
                StepSeq {
                    id: s.id,
                    tokens: s.tokens,
                    start_pos: s.start_pos as usize,
                    blocks: s.blocks,
                    new,
                    prompt: true,
                    partial: s.partial,
                }
            })
            .collect::<Vec<_>>();
        self.step(seqs, r.step).await
    }

    async fn decode(
        &self,
        request: Request<pb::DecodeRequest>,
    ) -> Result<Response<pb::StepResponse>, Status> {
        let r = request.into_inner();
        let seqs = r
            .seqs
            .into_iter()
            .map(|s| StepSeq {
                id: s.id,
                tokens: vec![s.token],
                start_pos: s.pos as usize,
                blocks: s.blocks,
                new: None,
                prompt: false,
                partial: false,
            })
            .collect::<Vec<_>>();
        self.step(seqs, r.step).await
    }

    async fn release(
        &self,
        request: Request<pb::ReleaseRequest>,
    ) -> Result<Response<pb::ReleaseResponse>, Status> {
        self.commands()?
            .send(Command::Release(request.into_inner().ids))
            .map_err(|_| rank_gone())?;
        Ok(Response::new(pb::ReleaseResponse {}))
    }

    async fn shutdown(
        &self,
        _: Request<pb::ShutdownRequest>,
    ) -> Result<Response<pb::ShutdownResponse>, Status> {
        tracing::info!("shutdown requested");
        let _ = self.shutdown.try_send(());
        Ok(Response::new(pb::ShutdownResponse {}))
    }
}
