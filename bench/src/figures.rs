//! The figures of a sweep point, computed from its request records.
//!
//! Only successful requests (those that ended with the server's usage)
//! enter the latency figures and token counts. Inter-token latencies are
//! pooled over all successful requests, so a long request weighs more than
//! a short one, as it does for the person reading the stream.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::record::RequestRecord;
use crate::results::{Goodput, Load, PointResult, RequestCounts, Slo};
use crate::stats::Summary;

/// The records of one sweep point.
#[derive(Clone, Debug, Default)]
pub struct PointRun {
    /// Measured requests.
    pub records: Vec<RequestRecord>,
    /// Warm-up requests.
    pub warmup: Vec<RequestRecord>,
    /// From the first measured request sent to the last one finished.
    pub wall: Duration,
}

/// Turns a point's records into its figures.
pub fn point_result(load: Load, run: &PointRun, slo: &Slo) -> PointResult {
    let ok: Vec<&RequestRecord> = run.records.iter().filter(|r| r.ok()).collect();
    let duration_s = run.wall.as_secs_f64();
    let per_s = |n: u64| {
        if duration_s > 0.0 {
            n as f64 / duration_s
        } else {
            0.0
        }
    };

    let (errors, error_examples) = count_errors(&run.records);
    let usage = ok.iter().filter_map(|r| r.usage);
    let prompt_tokens = usage.clone().map(|u| u.prompt_tokens).sum();
    let output_tokens = usage.map(|u| u.completion_tokens).sum();

    let met = ok.iter().filter(|r| meets(r, slo)).count() as u64;
    let sent = run.records.len() as u64;
    let succeeded = ok.len() as u64;
    PointResult {
        load,
        duration_s,
        requests: RequestCounts {
            sent,
            succeeded,
            failed: sent - succeeded,
            warmup_sent: run.warmup.len() as u64,
            warmup_failed: run.warmup.iter().filter(|r| !r.ok()).count() as u64,
        },
        errors,
        error_examples,
        prompt_tokens,
        output_tokens,
        output_tokens_per_s: per_s(output_tokens),
        requests_per_s: per_s(succeeded),
        goodput: Goodput {
            met,
            fraction: if sent > 0 {
                met as f64 / sent as f64
            } else {
                0.0
            },
            requests_per_s: per_s(met),
        },
        ttft_ms: Summary::of(
            &ok.iter()
                .filter_map(|r| r.ttft())
                .map(ms)
                .collect::<Vec<_>>(),
        ),
        itl_ms: Summary::of(
            &ok.iter()
                .flat_map(|r| r.inter_token_gaps())
                .map(ms)
                .collect::<Vec<_>>(),
        ),
        tpot_ms: Summary::of(&ok.iter().filter_map(|r| tpot_ms(r)).collect::<Vec<_>>()),
        e2e_ms: Summary::of(&ok.iter().map(|r| ms(r.e2e)).collect::<Vec<_>>()),
        usage_mismatches: usage_mismatches(&ok),
    }
}

/// Failed requests by kind, and one message for each kind.
fn count_errors(records: &[RequestRecord]) -> (BTreeMap<String, u64>, BTreeMap<String, String>) {
    let mut counts = BTreeMap::new();
    let mut examples = BTreeMap::new();
    for error in records.iter().filter_map(|r| r.error.as_ref()) {
        *counts.entry(error.kind.clone()).or_insert(0) += 1;
        examples
            .entry(error.kind.clone())
            .or_insert_with(|| error.message.clone());
    }
    (counts, examples)
}

/// Whether a successful request is within every objective given.
fn meets(record: &RequestRecord, slo: &Slo) -> bool {
    let ttft_ok = match (slo.ttft_ms, record.ttft()) {
        (None, _) => true,
        (Some(limit), Some(ttft)) => ms(ttft) <= limit,
        (Some(_), None) => false,
    };
    let itl_ok = match slo.itl_ms {
        None => true,
        Some(limit) => record.inter_token_gaps().all(|gap| ms(gap) <= limit),
    };
    ttft_ok && itl_ok
}

/// Time per output token after the first, ms; `None` for requests of fewer
/// than two tokens.
fn tpot_ms(record: &RequestRecord) -> Option<f64> {
    let tokens = record.usage?.completion_tokens;
    let ttft = record.ttft()?;
    if tokens < 2 {
        return None;
    }
    Some(ms(record.e2e.saturating_sub(ttft)) / (tokens - 1) as f64)
}

/// Successful requests whose streamed token count differs from usage.
fn usage_mismatches(ok: &[&RequestRecord]) -> Option<u64> {
    let mut any_streamed = false;
    let mut mismatches = 0;
    for record in ok {
        let (Some(streamed), Some(usage)) = (record.streamed_tokens, record.usage) else {
            continue;
        };
        any_streamed = true;
        if streamed != usage.completion_tokens {
            mismatches += 1;
        }
    }
    any_streamed.then_some(mismatches)
}

/// A duration in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
