//! The shard processes of one tensor-parallel group, seen from the
//! coordinator: starting them (or reaching ones started elsewhere), joining
//! them into a group, and sending each step to every rank at once.
//!
//! Invariant: every step goes to all ranks, and its result is used only when
//! every rank answered with the same tokens.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::future::{join_all, try_join_all};
use tessera_proto::shard::v1 as pb;
use tessera_proto::shard::v1::shard_client::ShardClient;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tonic::transport::{Channel, Endpoint};

use crate::error::ServeError;

/// How long a shard may take to answer a control call other than Join.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a shard may take to load its slice and connect its peers.
const JOIN_TIMEOUT: Duration = Duration::from_secs(600);

/// How long a shard may take to start and print its addresses.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How to start shards on this machine.
#[derive(Debug, Clone)]
pub struct LocalShards {
    /// The `tessera-shard` executable.
    pub binary: PathBuf,
    pub world_size: usize,
    /// Compute threads per shard.
    pub threads: usize,
    /// Log filter passed to each shard.
    pub log: String,
}

/// Everything needed to bring a group up, and again after it failed.
#[derive(Debug, Clone)]
pub struct GroupSpec {
    /// Shards to start here; `None` to reach `remote` ones.
    pub local: Option<LocalShards>,
    /// Addresses of shards started elsewhere, in rank order.
    pub remote: Vec<String>,
    /// The model path as every shard sees it.
    pub model: PathBuf,
    pub kv_num_blocks: usize,
    pub kv_block_size: usize,
    pub step_timeout: Duration,
}

impl GroupSpec {
    /// Starts or reaches the shards and joins them into a group.
    pub async fn start(&self) -> anyhow::Result<ShardGroup> {
        let mut group = match &self.local {
            Some(local) => ShardGroup::spawn(local, self.step_timeout).await?,
            None => ShardGroup::connect(&self.remote, self.step_timeout).await?,
        };
        group
            .join(&self.model, self.kv_num_blocks, self.kv_block_size)
            .await?;
        Ok(group)
    }
}

/// Connections to the ranks of a group, and the processes if this
/// coordinator started them (killed when the group is dropped).
pub struct ShardGroup {
    ranks: Vec<ShardClient<Channel>>,
    addrs: Vec<String>,
    children: Vec<Child>,
    /// Longest a single step may take before the group counts as failed.
    step_timeout: Duration,
}

/// What a shard prints on stdout once it listens.
#[derive(Debug, serde::Deserialize)]
struct Ready {
    listen: String,
}

impl ShardGroup {
    /// Starts `world_size` shard processes on loopback and connects to them.
    pub async fn spawn(opts: &LocalShards, step_timeout: Duration) -> anyhow::Result<Self> {
        let mut children = Vec::new();
        let mut addrs = Vec::new();
        for rank in 0..opts.world_size {
            let (child, addr) = spawn_one(opts, rank).await?;
            children.push(child);
            addrs.push(addr);
        }
        let mut group = Self::connect(&addrs, step_timeout).await?;
        group.children = children;
        Ok(group)
    }

    /// Connects to shards already running at `addrs` (`host:port`, rank order).
    pub async fn connect(addrs: &[String], step_timeout: Duration) -> anyhow::Result<Self> {
        let mut ranks = Vec::new();
        for addr in addrs {
            let endpoint = Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| anyhow::anyhow!("shard address {addr:?} is not host:port: {e}"))?
                .connect_timeout(Duration::from_secs(10))
                .tcp_nodelay(true);
            let channel = endpoint.connect().await.map_err(|e| {
                anyhow::anyhow!(
                    "cannot reach shard at {addr}: {e}; is `tessera-shard serve` running there?"
                )
            })?;
            ranks.push(ShardClient::new(channel).max_decoding_message_size(64 << 20));
        }
        Ok(Self {
            ranks,
            addrs: addrs.to_vec(),
            children: Vec::new(),
            step_timeout,
        })
    }

    /// Ranks in the group.
    pub fn world_size(&self) -> usize {
        self.ranks.len()
    }

    /// Makes every shard a rank of the group: each loads its slice and they
    /// connect their collective. Returns rank 0's answer.
    pub async fn join(
        &mut self,
        model: &Path,
        kv_num_blocks: usize,
        kv_block_size: usize,
    ) -> anyhow::Result<pb::JoinResponse> {
        let infos = join_all(self.ranks.iter_mut().map(|c| async move {
            tokio::time::timeout(CALL_TIMEOUT, c.info(pb::InfoRequest {}))
                .await
                .unwrap_or_else(|_| {
                    Err(tonic::Status::deadline_exceeded(
                        "no answer within 10 s; is it a tessera-shard?",
                    ))
                })
        }))
        .await;
        let mut peers = Vec::new();
        for (rank, info) in infos.into_iter().enumerate() {
            let info = info.map_err(|e| {
                anyhow::anyhow!(
                    "shard {} (rank {rank}) did not answer Info: {}",
                    self.addrs[rank],
                    e.message()
                )
            })?;
            peers.push(info.into_inner().collective_addr);
        }
        let world_size = self.ranks.len() as u32;
        let model_path = model.to_string_lossy().into_owned();
        let joins = self.ranks.iter_mut().enumerate().map(|(rank, c)| {
            let req = pb::JoinRequest {
                rank: rank as u32,
                world_size,
                model_path: model_path.clone(),
                peers: peers.clone(),
                nccl_unique_id: Vec::new(),
                kv_num_blocks: kv_num_blocks as u32,
                kv_block_size: kv_block_size as u32,
            };
            async move {
                tokio::time::timeout(JOIN_TIMEOUT, c.join(req))
                    .await
                    .unwrap_or_else(|_| {
                        Err(tonic::Status::deadline_exceeded(
                            "Join took longer than 10 minutes",
                        ))
                    })
            }
        });
        let mut first = None;
        for (rank, r) in join_all(joins).await.into_iter().enumerate() {
            let r =
                r.map_err(|e| anyhow::anyhow!("rank {rank} could not join: {}", e.message()))?;
            first.get_or_insert(r.into_inner());
        }
        first.ok_or_else(|| anyhow::anyhow!("the group has no shards"))
    }

    /// Starts new sequences on every rank.
    pub async fn prefill(
        &mut self,
        req: pb::PrefillRequest,
    ) -> Result<Vec<pb::SampledToken>, ServeError> {
        let timeout = self.step_timeout;
        let calls = self.ranks.iter_mut().enumerate().map(|(rank, c)| {
            let req = req.clone();
            async move { rank_reply(rank, tokio::time::timeout(timeout, c.prefill(req)).await) }
        });
        agree(try_join_all(calls).await?)
    }

    /// Runs one decode step on every rank.
    pub async fn decode(
        &mut self,
        req: pb::DecodeRequest,
    ) -> Result<Vec<pb::SampledToken>, ServeError> {
        let timeout = self.step_timeout;
        let calls = self.ranks.iter_mut().enumerate().map(|(rank, c)| {
            let req = req.clone();
            async move { rank_reply(rank, tokio::time::timeout(timeout, c.decode(req)).await) }
        });
        agree(try_join_all(calls).await?)
    }

    /// Forgets sequences on every rank; a failure here surfaces at the next step.
    pub async fn release(&mut self, ids: Vec<u64>) {
        let calls = self.ranks.iter_mut().map(|c| {
            let req = pb::ReleaseRequest { ids: ids.clone() };
            async move { tokio::time::timeout(Duration::from_secs(5), c.release(req)).await }
        });
        for (rank, r) in join_all(calls).await.into_iter().enumerate() {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!(rank, code = ?e.code(), "release failed"),
                Err(_) => tracing::warn!(rank, "release timed out"),
            }
        }
    }

    /// Every rank's health, in rank order.
    pub async fn health(&mut self) -> Vec<Result<pb::HealthResponse, tonic::Status>> {
        let calls = self.ranks.iter_mut().map(|c| async move {
            tokio::time::timeout(Duration::from_secs(5), c.health(pb::HealthRequest {}))
                .await
                .map_err(|_| tonic::Status::deadline_exceeded("health check timed out"))?
                .map(tonic::Response::into_inner)
        });
        join_all(calls).await
    }

    /// Stops a failed group at once: asks every shard to exit and kills the
    /// ones this coordinator started, without waiting for them to drain.
    pub async fn abort(mut self) {
        let calls = self.ranks.iter_mut().map(|c| async move {
            let _ = tokio::time::timeout(
                Duration::from_millis(500),
                c.shutdown(pb::ShutdownRequest {}),
            )
            .await;
        });
        join_all(calls).await;
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }

    /// Asks every shard to exit, then makes sure the ones this coordinator
    /// started are gone.
    pub async fn shutdown(mut self) {
        let calls = self.ranks.iter_mut().map(|c| async move {
            let _ =
                tokio::time::timeout(Duration::from_secs(2), c.shutdown(pb::ShutdownRequest {}))
                    .await;
        });
        join_all(calls).await;
        for child in &mut self.children {
            if tokio::time::timeout(Duration::from_secs(5), child.wait())
                .await
                .is_err()
            {
                let _ = child.kill().await;
            }
        }
    }
}

type RankReply =
    Result<Result<tonic::Response<pb::StepResponse>, tonic::Status>, tokio::time::error::Elapsed>;

/// One rank's tokens, or why it failed. The first failure ends the step at
/// once: the other ranks' calls are dropped rather than awaited, since a
/// dead peer can keep them blocked in the collective.
fn rank_reply(rank: usize, reply: RankReply) -> Result<Vec<pb::SampledToken>, ServeError> {
    match reply {
        Err(_) => Err(ServeError::ShardUnavailable {
            rank,
            reason: "the step timed out".into(),
        }),
        Ok(Err(status)) => Err(step_failure(rank, status)),
        Ok(Ok(r)) => Ok(r.into_inner().tokens),
    }
}

/// Rank 0's tokens, once every rank answered with the same ones.
fn agree(replies: Vec<Vec<pb::SampledToken>>) -> Result<Vec<pb::SampledToken>, ServeError> {
    let mut replies = replies.into_iter().enumerate();
    let (_, first) = replies.next().unwrap_or_default();
    for (rank, reply) in replies {
        if first
            .iter()
            .map(|t| t.token)
            .ne(reply.iter().map(|t| t.token))
        {
            return Err(ServeError::RanksDisagree { rank });
        }
    }
    Ok(first)
}

/// A failed step: bad input stays the caller's fault, anything else means the
/// shard is gone or broken.
fn step_failure(rank: usize, status: tonic::Status) -> ServeError {
    match status.code() {
        tonic::Code::InvalidArgument => ServeError::InvalidArgument(status.message().to_string()),
        _ => ServeError::ShardUnavailable {
            rank,
            reason: status.message().to_string(),
        },
    }
}

/// Starts one shard on loopback; returns it once it printed where it listens.
async fn spawn_one(opts: &LocalShards, rank: usize) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(&opts.binary)
        .args([
            "--log",
            &opts.log,
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--collective-listen",
            "127.0.0.1:0",
        ])
        .args(["--threads", &opts.threads.to_string(), "--exit-with-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            anyhow::anyhow!(
                "cannot start shard {}: {e}; pass --shard-binary",
                opts.binary.display()
            )
        })?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("shard stdout was not captured"))?;
    let mut lines = BufReader::new(stdout).lines();
    let line = tokio::time::timeout(START_TIMEOUT, lines.next_line())
        .await
        .map_err(|_| anyhow::anyhow!("shard rank {rank} did not start within {START_TIMEOUT:?}"))??
        .ok_or_else(|| {
            anyhow::anyhow!("shard rank {rank} exited before it was ready; see its log above")
        })?;
    let ready: Ready = serde_json::from_str(&line).map_err(|e| {
        anyhow::anyhow!("shard rank {rank} printed {line:?} instead of its ready line: {e}")
    })?;
    // Keep draining stdout so the shard never blocks writing to it.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    tracing::info!(rank, addr = %ready.listen, "shard started");
    Ok((child, ready.listen))
}
