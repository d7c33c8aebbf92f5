//! Continuous batching: one task owns the queue, the running batch, the KV
//! block allocator and the shard group, and drives the group step by step.
//!
//! Each iteration: take new requests, drop those whose client went away,
//! admit waiting requests while the batch and free KV blocks allow, run one
//! prefill step over prompts not yet fully prefilled (in chunks, within the
//! token budget, so a long prompt never stalls the batch for long), then one
//! decode step for every request whose prompt is done. Requests join and leave between steps. A request reserves
//! KV blocks for its prompt plus `max_new_tokens` at admission, so a running
//! request never waits for memory and nothing needs preempting.
//!
//! When a step fails because a shard died or hung, every request in flight
//! fails with UNAVAILABLE, the group is stopped (no shard is left running),
//! and a new one is started in the background with growing back-off; until
//! it is up, new requests fail at once with UNAVAILABLE rather than wait.
//!
//! Every other task talks to the scheduler through [`SchedulerHandle`].

mod batch;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tessera_formats::Tokenizer;
use tessera_proto::v1 as api;
use tokio::sync::mpsc;

use crate::error::ServeError;
use crate::request::GenRequest;
use crate::shards::{GroupSpec, ShardGroup};
use batch::Running;
use tessera_shard::kv_cache::BlockAllocator;

/// What the scheduler tells a request's caller.
#[derive(Debug)]
pub enum Event {
    /// New tokens and the text that became final with them.
    Chunk {
        token_ids: Vec<u32>,
        text: String,
        logprobs: Vec<api::TokenLogprob>,
    },
    /// The request finished.
    Done {
        finish_reason: api::FinishReason,
        usage: api::Usage,
    },
    /// The request failed.
    Failed(ServeError),
}

/// Batching limits.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Most requests waiting for admission.
    pub max_queue: usize,
    /// Most sequences in the running batch.
    pub max_batch_size: usize,
    /// Most prompt tokens prefilled in one step; longer prompts are prefilled
    /// in chunks over several steps, between decode steps.
    pub max_prefill_tokens: usize,
}

struct Submission {
    req: GenRequest,
    events: mpsc::Sender<Event>,
}

/// The way into the scheduler; cheap to clone.
#[derive(Clone)]
pub struct SchedulerHandle {
    tx: mpsc::Sender<Submission>,
    queued: Arc<AtomicUsize>,
    max_queue: usize,
}

impl SchedulerHandle {
    /// Queues a request; its events arrive on the returned channel, which
    /// holds every event the request can produce, so the scheduler never
    /// waits on a slow reader. Dropping the receiver cancels the request.
    pub fn submit(&self, req: GenRequest) -> Result<mpsc::Receiver<Event>, ServeError> {
        if self.queued.fetch_add(1, Ordering::SeqCst) >= self.max_queue {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            return Err(ServeError::QueueFull {
                capacity: self.max_queue,
            });
        }
        let (events, rx) = mpsc::channel(req.max_new_tokens + 2);
        self.tx.try_send(Submission { req, events }).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            ServeError::ShuttingDown
        })?;
        Ok(rx)
    }
}

/// A group being started after a failure.
type Restart = Pin<Box<dyn Future<Output = anyhow::Result<ShardGroup>> + Send>>;

/// How often an idle scheduler checks that its shards are alive.
const PROBE_INTERVAL: Duration = Duration::from_secs(5);

/// Longest wait between two attempts to restart a failed group.
const MAX_RESTART_BACKOFF: Duration = Duration::from_secs(30);

/// The scheduler task's state.
pub struct Scheduler {
    /// `None` while the group is down.
    group: Option<ShardGroup>,
    spec: GroupSpec,
    restart: Option<Restart>,
    /// Failed restarts in a row, for back-off.
    restart_failures: u32,
    /// Told when the group goes down or comes back.
    health: Option<tonic_health::server::HealthReporter>,
    /// Fired when the drain deadline passes: stop everything now.
    abort: Option<tokio::sync::oneshot::Receiver<()>>,
    blocks: BlockAllocator,
    tokenizer: Arc<Tokenizer>,
    limits: BatchLimits,
    rx: mpsc::Receiver<Submission>,
    queued: Arc<AtomicUsize>,
    waiting: VecDeque<Submission>,
    running: Vec<Running>,
    next_id: u64,
    step: u64,
    /// Set while the group is down; every new request gets it at once.
    failed: Option<ServeError>,
}

impl Scheduler {
    /// A scheduler over `group`, whose ranks each hold `num_blocks` KV blocks.
    pub fn new(
        group: ShardGroup,
        spec: GroupSpec,
        blocks: BlockAllocator,
        tokenizer: Arc<Tokenizer>,
        limits: BatchLimits,
    ) -> (Self, SchedulerHandle) {
        // Submissions pass through quickly; the queue bound is `queued`.
        let (tx, rx) = mpsc::channel(limits.max_queue.max(1));
        let queued = Arc::new(AtomicUsize::new(0));
        let handle = SchedulerHandle {
            tx,
            queued: Arc::clone(&queued),
            max_queue: limits.max_queue,
        };
        let s = Self {
            group: Some(group),
            spec,
            restart: None,
            restart_failures: 0,
            health: None,
            abort: None,
            blocks,
            tokenizer,
            limits,
            rx,
            queued,
            waiting: VecDeque::new(),
            running: Vec::new(),
            next_id: 1,
            step: 0,
            failed: None,
        };
        (s, handle)
    }

    /// Reports the group's state to the gRPC health service from now on.
    pub fn set_health(&mut self, health: tonic_health::server::HealthReporter) {
        self.health = Some(health);
    }

    /// Stops the scheduler, failing its requests, once `abort` fires.
    pub fn set_abort(&mut self, abort: tokio::sync::oneshot::Receiver<()>) {
        self.abort = Some(abort);
    }

    fn aborted(&mut self) -> bool {
        matches!(self.abort.as_mut().map(|a| a.try_recv()), Some(Ok(())))
    }

    /// Fails every request with ShuttingDown.
    fn fail_all(&mut self) {
        for r in self.running.drain(..) {
            let _ = r.events.try_send(Event::Failed(ServeError::ShuttingDown));
        }
        for s in self.waiting.drain(..) {
            let _ = s.events.try_send(Event::Failed(ServeError::ShuttingDown));
            self.queued.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// Runs until every handle is dropped and the work is done (or the abort
    /// fires), then shuts the group down.
    pub async fn run(mut self) {
        loop {
            if self.aborted() {
                tracing::warn!(
                    running = self.running.len(),
                    waiting = self.waiting.len(),
                    "aborting requests still in flight"
                );
                self.fail_all();
                break;
            }
            if let Some(restart) = self.restart.as_mut() {
                tokio::select! {
                    s = self.rx.recv() => match s {
                        Some(s) => self.enqueue(s),
                        None => break,
                    },
                    group = restart => self.restarted(group).await,
                }
                continue;
            }
            if self.running.is_empty() && self.waiting.is_empty() {
                // While idle, check the shards now and then, so a dead one is
                // found (and replaced) before a request needs it.
                match tokio::time::timeout(PROBE_INTERVAL, self.rx.recv()).await {
                    Ok(Some(s)) => self.enqueue(s),
                    Ok(None) => break,
                    Err(_) => {
                        self.probe().await;
                        continue;
                    }
                }
            }
            while let Ok(s) = self.rx.try_recv() {
                self.enqueue(s);
            }
            self.drop_cancelled().await;
            self.admit();
            self.prefill().await;
            self.decode().await;
        }
        tracing::info!("scheduler stopped; shutting shards down");
        if let Some(group) = self.group.take() {
            group.shutdown().await;
        }
    }

    /// The group failed: stop it and start a new one in the background.
    async fn restart_group(&mut self) {
        if let Some(group) = self.group.take() {
            group.abort().await;
        }
        self.set_serving(false).await;
        let delay = Duration::from_millis(500 * 2u64.pow(self.restart_failures.min(6)))
            .min(MAX_RESTART_BACKOFF);
        let spec = self.spec.clone();
        tracing::warn!(
            delay_ms = delay.as_millis() as u64,
            attempt = self.restart_failures + 1,
            "restarting the shard group"
        );
        self.restart = Some(Box::pin(async move {
            tokio::time::sleep(delay).await;
            spec.start().await
        }));
    }

    /// Checks every shard's health; a shard that does not answer fails the group.
    async fn probe(&mut self) {
        let Some(group) = self.group.as_mut() else {
            return;
        };
        let failed = group
            .health()
            .await
            .into_iter()
            .enumerate()
            .find_map(|(rank, h)| match h {
                Ok(h) if h.joined => None,
                Ok(_) => Some((rank, "it has left the group".to_string())),
                Err(e) => Some((rank, e.message().to_string())),
            });
        if let Some((rank, reason)) = failed {
            self.fail(ServeError::ShardUnavailable { rank, reason }, None)
                .await;
        }
    }

    /// A restart finished, for better or worse.
    async fn restarted(&mut self, group: anyhow::Result<ShardGroup>) {
        self.restart = None;
        match group {
            Ok(group) => {
                tracing::info!(world_size = group.world_size(), "shard group restarted");
                self.group = Some(group);
                self.restart_failures = 0;
                self.failed = None;
                self.set_serving(true).await;
            }
            Err(e) => {
                tracing::error!(error = %format!("{e:#}"), "shard group restart failed");
                self.restart_failures += 1;
                self.restart_group().await;
            }
        }
    }

    async fn set_serving(&mut self, serving: bool) {
        use tessera_proto::v1::generation_server::GenerationServer;
        type Service = GenerationServer<crate::api::GenerationService>;
        if let Some(h) = &mut self.health {
            match serving {
                true => h.set_serving::<Service>().await,
                false => h.set_not_serving::<Service>().await,
            }
        }
    }

    /// Accepts a submission into the waiting queue, or refuses it at once.
    fn enqueue(&mut self, s: Submission) {
        if let Some(err) = &self.failed {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let _ = s.events.try_send(Event::Failed(err.clone()));
            return;
        }
        let positions = cache_positions(&s.req);
        let capacity = self.blocks.total_blocks() * self.blocks.block_size();
        if positions > capacity {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let err = ServeError::CacheTooSmall {
                positions,
                capacity,
            };
            let _ = s.events.try_send(Event::Failed(err));
            return;
        }
        self.waiting.push_back(s);
    }

    /// Frees the requests whose clients went away.
    async fn drop_cancelled(&mut self) {
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.events.is_closed());
        self.queued
            .fetch_sub(before - self.waiting.len(), Ordering::SeqCst);

        let mut gone = Vec::new();
        let mut i = 0;
        while i < self.running.len() {
            if self.running[i].events.is_closed() {
                let mut r = self.running.swap_remove(i);
                self.blocks.release(&mut r.table);
                tracing::debug!(
                    id = r.id,
                    generated = r.generated,
                    "request cancelled by client"
                );
                gone.push(r.id);
            } else {
                i += 1;
            }
        }
        if let (false, Some(group)) = (gone.is_empty(), self.group.as_mut()) {
            group.release(gone).await;
        }
    }

    /// Moves waiting requests into the batch, in order, while they fit; their
    /// prompts are prefilled by the next steps.
    fn admit(&mut self) {
        while let Some(front) = self.waiting.front() {
            if self.running.len() >= self.limits.max_batch_size {
                break;
            }
            let mut table = Vec::new();
            if !self.blocks.grow(&mut table, cache_positions(&front.req)) {
                break;
            }
            let Some(s) = self.waiting.pop_front() else {
                break;
            };
            self.queued.fetch_sub(1, Ordering::SeqCst);
            let id = self.next_id;
            self.next_id += 1;
            tracing::debug!(
                id,
                prompt_tokens = s.req.prompt.len(),
                max_new_tokens = s.req.max_new_tokens,
                "request admitted"
            );
            self.running.push(Running::new(id, s.req, s.events, table));
        }
    }
}

/// KV cache positions a request can fill: its prompt and every generated
/// token but the last, which is never fed back.
fn cache_positions(req: &GenRequest) -> usize {
    req.prompt.len() + req.max_new_tokens - 1
}
