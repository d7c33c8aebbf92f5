//! A client that drops its stream cancels the generation: the shards free
//! the sequence and its KV cache blocks within a few seconds, and the
//! cluster goes on serving.
//!
//! The test starts the shards itself and joins them with `--shards`, so it
//! can ask each one for its Health over the internal API.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tessera_client::request;
use tessera_client::FinishReason;
use tessera_e2e::{check_greedy_prefix, setup, Coordinator, ServeOptions, Shard};
use tessera_proto::shard::v1::{HealthResponse, InfoRequest};

/// Chunks read before the stream is dropped.
const CHUNKS_BEFORE_DROP: usize = 4;

/// Longest the shards may take to free a cancelled sequence.
const RELEASE_BOUND: Duration = Duration::from_secs(5);

#[tokio::test]
async fn dropped_stream_frees_the_shards() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let shards = [Shard::start(&setup, 1)?, Shard::start(&setup, 1)?];
    for shard in &shards {
        // Info names the process, for operators (and for this test).
        let info = shard
            .control()
            .await?
            .info(InfoRequest {})
            .await?
            .into_inner();
        ensure!(
            info.pid == shard.pid(),
            "shard Info says pid {}, the process is {}",
            info.pid,
            shard.pid()
        );
        ensure!(
            info.collective_addr == shard.collective,
            "Info's collective address {}",
            info.collective_addr
        );
    }
    let mut coordinator = Coordinator::start(&setup, &ServeOptions::shards(&shards))?;
    let client = coordinator.client().await?;
    for shard in &shards {
        let health = shard.health().await?;
        ensure!(
            health.joined && health.world_size == 2,
            "a shard has not joined: {health:?}"
        );
        ensure!(
            is_idle(&health),
            "a shard is busy before any request: {health:?}"
        );
    }

    // A stream far longer than the test: 2000 tokens, end tokens ignored.
    let p1 = setup.golden.prompt("P1")?;
    let long = request::token_ids(p1.prompt_ids.iter().copied())
        .max_new_tokens(2000)
        .ignore_eos(true);
    let mut stream = client.generate_stream(long).await?;
    for _ in 0..CHUNKS_BEFORE_DROP {
        match stream.next_chunk().await? {
            Some(chunk) if chunk.finish_reason == 0 => {}
            other => bail!("the long stream ended early: {other:?}"),
        }
    }
    for shard in &shards {
        let health = shard.health().await?;
        ensure!(
            health.running_sequences == 1 && health.kv_blocks_in_use > 0,
            "a shard does not show the running sequence: {health:?}"
        );
    }

    // Drop it; both shards must go back to idle.
    drop(stream);
    wait_idle(&shards, "after the stream was dropped").await?;

    // The cluster serves the next request normally.
    let next = request::token_ids(p1.prompt_ids.iter().copied())
        .max_new_tokens(8)
        .ignore_eos(true);
    let response = client.generate(next).await?;
    ensure!(
        response.finish_reason() == FinishReason::Length,
        "finish reason {:?}",
        response.finish_reason()
    );
    ensure!(
        response.token_ids.len() == 8,
        "got {} tokens, expected 8",
        response.token_ids.len()
    );
    check_greedy_prefix(p1, &response.token_ids)?;
    wait_idle(&shards, "after a request finished").await?;

    drop(client);
    coordinator.stop().await
}

/// Waits up to [`RELEASE_BOUND`] for every shard to hold no sequence.
async fn wait_idle(shards: &[Shard], when: &str) -> Result<()> {
    let start = Instant::now();
    for shard in shards {
        loop {
            let health = shard.health().await?;
            if is_idle(&health) {
                break;
            }
            if start.elapsed() > RELEASE_BOUND {
                bail!("{RELEASE_BOUND:?} {when}, a shard still holds a sequence: {health:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}

fn is_idle(health: &HealthResponse) -> bool {
    health.running_sequences == 0 && health.kv_blocks_in_use == 0
}
