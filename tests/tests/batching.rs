//! Continuous batching keeps sequences apart: sixteen streams of mixed
//! prompt and output lengths, run at once on a TP 2 cluster, each give the
//! tokens the same request gives when it runs alone on the same server.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use tessera_client::request::{self, GenerateRequestBuilder};
use tessera_client::{Client, GenerateResponse};
use tessera_e2e::{setup, Coordinator, Golden, ServeOptions};
use tokio::task::JoinSet;

/// Streams run at once; the batch holds them all.
const STREAMS: usize = 16;

/// At least this many streams must have been generating at the same moment,
/// or the run did not exercise batching.
const MIN_OVERLAP: usize = STREAMS / 2;

#[tokio::test]
async fn concurrent_streams_match_their_solo_runs() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let options = ServeOptions {
        max_batch_size: Some(STREAMS),
        ..ServeOptions::tp(2)
    };
    let mut coordinator = Coordinator::start(&setup, &options)?;
    let client = coordinator.client().await?;
    let requests = mixed_requests(&setup.golden)?;

    // Each request alone, one after the other.
    let mut solo = Vec::new();
    for request in &requests {
        solo.push(client.generate(request.clone()).await?);
    }

    // All at once, streamed.
    let mut tasks = JoinSet::new();
    for (i, request) in requests.iter().enumerate() {
        tasks.spawn(timed_stream(client.clone(), i, request.clone()));
    }
    let mut together = vec![None; requests.len()];
    while let Some(joined) = tasks.join_next().await {
        let run = joined.context("a stream task panicked")??;
        let i = run.index;
        together[i] = Some(run);
    }

    for (i, (alone, run)) in solo.iter().zip(&together).enumerate() {
        let run = run.as_ref().context("a stream is missing")?;
        let batched = &run.response;
        ensure!(
            batched.token_ids == alone.token_ids,
            "stream {i} gave other tokens in the batch than alone\n batched: {:?}\n alone:   {:?}",
            batched.token_ids,
            alone.token_ids
        );
        ensure!(
            batched.text == alone.text,
            "stream {i}: text {:?} alone, {:?} batched",
            alone.text,
            batched.text
        );
        ensure!(
            batched.finish_reason == alone.finish_reason && batched.usage == alone.usage,
            "stream {i}: finish {:?} / usage {:?} batched, {:?} / {:?} alone",
            batched.finish_reason(),
            batched.usage,
            alone.finish_reason(),
            alone.usage
        );
    }

    let overlap = max_overlap(
        together
            .iter()
            .flatten()
            .map(|r| (r.first_token, r.finished)),
    );
    ensure!(
        overlap >= MIN_OVERLAP,
        "at most {overlap} streams generated at once; batching was not exercised"
    );
    drop(client);
    coordinator.stop().await
}

/// Sixteen requests of mixed prompt lengths (4 to 37 tokens) and output
/// lengths (4 to 40 tokens); half may stop at an end-of-sequence token, two
/// sample with a fixed seed, the rest are greedy.
fn mixed_requests(golden: &Golden) -> Result<Vec<GenerateRequestBuilder>> {
    let chat = &golden.prompt("CHAT")?.prompt_ids;
    let mut prompts: Vec<Vec<u32>> = golden
        .prompts
        .iter()
        .map(|p| p.prompt_ids.clone())
        .collect();
    for len in [9, 13, 21, 26, 30] {
        prompts.push(chat[..len].to_vec());
    }
    let joined = |a: &str, b: &str| -> Result<Vec<u32>> {
        let a = &golden.prompt(a)?.prompt_ids;
        Ok(a.iter()
            .chain(&golden.prompt(b)?.prompt_ids)
            .copied()
            .collect())
    };
    prompts.push(joined("P1", "P2")?);
    prompts.push(joined("P3", "P5")?);

    let mut requests = Vec::new();
    for i in 0..STREAMS {
        let prompt = prompts[(i * 5) % prompts.len()].clone();
        let max_new_tokens = 4 + (i * 11) % 37;
        let mut request = request::token_ids(prompt)
            .max_new_tokens(max_new_tokens as u32)
            .ignore_eos(i % 2 == 0);
        if i % 7 == 3 {
            request = request.temperature(0.8).top_k(40).seed(1000 + i as u64);
        }
        requests.push(request);
    }
    Ok(requests)
}

/// A stream's joined response and when its first and last chunks came.
#[derive(Debug, Clone)]
struct TimedRun {
    index: usize,
    response: GenerateResponse,
    first_token: Instant,
    finished: Instant,
}

async fn timed_stream(
    client: Client,
    index: usize,
    request: GenerateRequestBuilder,
) -> Result<TimedRun> {
    let mut stream = client.generate_stream(request).await?;
    let mut response = GenerateResponse::default();
    let mut first_token = None;
    while let Some(chunk) = stream.next_chunk().await? {
        if !chunk.token_ids.is_empty() {
            first_token.get_or_insert_with(Instant::now);
        }
        response.token_ids.extend(&chunk.token_ids);
        response.text.push_str(&chunk.text);
        if chunk.finish_reason != 0 {
            response.finish_reason = chunk.finish_reason;
            response.usage = chunk.usage;
        }
    }
    let first_token = first_token.with_context(|| format!("stream {index} produced no token"))?;
    Ok(TimedRun {
        index,
        response,
        first_token,
        finished: Instant::now(),
    })
}

/// The largest number of `[start, end]` intervals that hold one instant.
fn max_overlap(intervals: impl Iterator<Item = (Instant, Instant)>) -> usize {
    let intervals: Vec<_> = intervals.collect();
    intervals
        .iter()
        .map(|&(at, _)| {
            intervals
                .iter()
                .filter(|&&(start, end)| start <= at && at <= end)
                .count()
        })
        .max()
        .unwrap_or(0)
}
