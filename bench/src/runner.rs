//! Drives one sweep point: the warm-up, then the measured requests in a
//! closed or an open loop.
//!
//! Closed loop: `concurrency` workers each send a request, wait for its end
//! and send the next, until the point's request count is used up or its
//! duration has passed; requests in flight then run to their end. Open
//! loop: requests are sent at Poisson arrival times, without waiting for
//! earlier ones, until the count or the duration is reached.
//!
//! The warm-up runs to its end before the measured phase starts, in a
//! closed loop at the point's concurrency (at most 8 for an open-loop
//! point), so the measured phase starts with a warm server.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::arrival::PoissonArrivals;
use crate::backend::Backend;
use crate::figures::PointRun;
use crate::record::{RequestError, RequestRecord};
use crate::results::Load;
use crate::workload::{Phase, RequestKey, Workload};
use crate::BenchError;

/// Most warm-up requests in flight for an open-loop point.
const OPEN_LOOP_WARMUP_CONCURRENCY: usize = 8;

/// How much of each point is sent.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunPlan {
    requests: Option<u64>,
    duration: Option<Duration>,
    warmup: u64,
    seed: u64,
}

impl RunPlan {
    /// A plan of at most `requests` measured requests and at most
    /// `duration` of sending per point (at least one of the two), after
    /// `warmup` requests; `seed` draws the arrival times.
    pub fn new(
        requests: Option<u64>,
        duration: Option<Duration>,
        warmup: u64,
        seed: u64,
    ) -> Result<Self, BenchError> {
        if requests.is_none() && duration.is_none() {
            return Err(BenchError::InvalidSpec {
                what: "run plan",
                value: String::new(),
                reason: "a run needs a request count or a duration".to_owned(),
            });
        }
        Ok(RunPlan {
            requests,
            duration,
            warmup,
            seed,
        })
    }

    /// Measured requests per point, when bounded by count.
    pub fn requests(&self) -> Option<u64> {
        self.requests
    }

    /// Longest sending time per point, when bounded by time.
    pub fn duration(&self) -> Option<Duration> {
        self.duration
    }

    /// Warm-up requests per point.
    pub fn warmup(&self) -> u64 {
        self.warmup
    }
}

/// What every request task of a point needs.
#[derive(Clone)]
struct PointContext {
    backend: Arc<Backend>,
    workload: Arc<Workload>,
    point: usize,
    bar: ProgressBar,
}

impl PointContext {
    /// Sends request `index` of `phase`.
    async fn send(&self, phase: Phase, index: u64) -> RequestRecord {
        let key = RequestKey {
            point: self.point,
            phase,
            index,
        };
        let record = self.backend.send(&self.workload.request(key)).await;
        self.bar.inc(1);
        record
    }
}

/// Runs sweep point number `point` at `load`.
pub async fn run_point(
    backend: Arc<Backend>,
    workload: Arc<Workload>,
    plan: &RunPlan,
    point: usize,
    load: Load,
    bar: ProgressBar,
) -> Result<PointRun, BenchError> {
    let ctx = PointContext {
        backend,
        workload,
        point,
        bar,
    };

    // Warm-up, to its end.
    let warmup_concurrency = match load {
        Load::Closed { concurrency } => concurrency,
        Load::Open { .. } => OPEN_LOOP_WARMUP_CONCURRENCY,
    };
    let warmup = closed_loop(
        &ctx,
        Phase::Warmup,
        Some(plan.warmup),
        None,
        warmup_concurrency,
    )
    .await;

    // The measured phase.
    let start = Instant::now();
    let records = match load {
        Load::Closed { concurrency } => {
            closed_loop(
                &ctx,
                Phase::Measured,
                plan.requests,
                plan.duration,
                concurrency,
            )
            .await
        }
        Load::Open { rate } => {
            let arrivals = PoissonArrivals::new(rate, arrival_seed(plan.seed, point))?;
            open_loop(&ctx, arrivals, plan.requests, plan.duration).await
        }
    };
    let wall = start.elapsed();
    ctx.bar.finish_and_clear();
    Ok(PointRun {
        records,
        warmup,
        wall,
    })
}

/// `concurrency` workers sending requests back to back, until `count`
/// requests are sent or `duration` has passed.
async fn closed_loop(
    ctx: &PointContext,
    phase: Phase,
    count: Option<u64>,
    duration: Option<Duration>,
    concurrency: usize,
) -> Vec<RequestRecord> {
    if count == Some(0) {
        return Vec::new();
    }
    let next = Arc::new(AtomicU64::new(0));
    let deadline = duration.map(|d| Instant::now() + d);
    let mut workers = JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (ctx, next) = (ctx.clone(), next.clone());
        workers.spawn(async move {
            let mut records = Vec::new();
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let index = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| index >= c) {
                    break;
                }
                records.push(ctx.send(phase, index).await);
            }
            records
        });
    }

    let mut records = Vec::new();
    while let Some(joined) = workers.join_next().await {
        match joined {
            Ok(mut done) => records.append(&mut done),
            Err(err) => records.push(lost_task(err)),
        }
    }
    records
}

/// Requests sent at the `arrivals` times, until `count` requests are sent
/// or the next arrival falls after `duration`.
async fn open_loop(
    ctx: &PointContext,
    arrivals: PoissonArrivals,
    count: Option<u64>,
    duration: Option<Duration>,
) -> Vec<RequestRecord> {
    let start = Instant::now();
    let mut requests = JoinSet::new();
    for (index, at) in (0u64..).zip(arrivals) {
        if count.is_some_and(|c| index >= c) || duration.is_some_and(|d| at >= d) {
            break;
        }
        tokio::time::sleep_until(start + at).await;
        let ctx = ctx.clone();
        requests.spawn(async move { ctx.send(Phase::Measured, index).await });
    }

    let mut records = Vec::new();
    while let Some(joined) = requests.join_next().await {
        records.push(joined.unwrap_or_else(lost_task));
    }
    records
}

/// The record of a request task that panicked or was cancelled.
fn lost_task(err: tokio::task::JoinError) -> RequestRecord {
    RequestRecord {
        error: Some(RequestError::new(
            "internal",
            format!("a request task failed: {err}"),
        )),
        ..RequestRecord::default()
    }
}

/// The seed of a point's arrival times, distinct per point.
fn arrival_seed(seed: u64, point: usize) -> u64 {
    seed ^ (point as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}
