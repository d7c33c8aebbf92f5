//! A failed shard fails requests cleanly and promptly, and no shard process
//! outlives its coordinator, whether the coordinator is stopped or killed.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tessera_client::request;
use tessera_client::Code;
use tessera_e2e::process::{self, wait_gone};
use tessera_e2e::{expect_status, setup, Coordinator, ServeOptions};

/// Longest a stream may run on after one of its shards died.
const STREAM_FAILS_WITHIN: Duration = Duration::from_secs(10);

/// Longest a request to a broken cluster may take to be refused.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// Longest shards may outlive a coordinator that was killed.
const ORPHANS_EXIT_WITHIN: Duration = Duration::from_secs(5);

#[tokio::test]
async fn killed_shard_fails_the_stream_and_later_requests() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let mut coordinator = Coordinator::start(&setup, &ServeOptions::tp(2))?;
    let client = coordinator.client().await?;
    let prompt = setup.golden.prompt("P2")?.prompt_ids.clone();

    // A long stream, well under way.
    let long = request::token_ids(prompt.iter().copied())
        .max_new_tokens(2000)
        .ignore_eos(true);
    let mut stream = client.generate_stream(long).await?;
    for _ in 0..3 {
        ensure!(
            stream.next_chunk().await?.is_some(),
            "the long stream ended early"
        );
    }

    // Kill one shard; the stream must end with UNAVAILABLE, soon.
    let victim = coordinator.shard_pids[1];
    process::send_signal(victim, libc::SIGKILL)?;
    let killed = Instant::now();
    let outcome = loop {
        let left = STREAM_FAILS_WITHIN.saturating_sub(killed.elapsed());
        match tokio::time::timeout(left, stream.next_chunk()).await {
            Err(_) => {
                bail!("the stream still ran {STREAM_FAILS_WITHIN:?} after a shard was killed")
            }
            Ok(Ok(Some(chunk))) if chunk.finish_reason == 0 => continue,
            Ok(other) => break other,
        }
    };
    expect_status(
        outcome,
        Code::Unavailable,
        "unavailable",
        "the stream whose shard died",
    )?;
    ensure!(
        killed.elapsed() <= STREAM_FAILS_WITHIN,
        "the stream failed only after {:?}",
        killed.elapsed()
    );

    // The next request is refused at once, not left hanging.
    let start = Instant::now();
    let next = request::token_ids(prompt.iter().copied()).max_new_tokens(4);
    let answer = tokio::time::timeout(REFUSED_WITHIN, client.generate(next.clone())).await;
    let Ok(answer) = answer else {
        bail!("a request to the broken cluster got no answer within {REFUSED_WITHIN:?}");
    };
    expect_status(
        answer,
        Code::Unavailable,
        "unavailable",
        "a request after the shard died",
    )?;
    let streamed = tokio::time::timeout(REFUSED_WITHIN, async {
        match client.generate_stream(next).await {
            Ok(stream) => stream.collect_response().await,
            Err(err) => Err(err),
        }
    })
    .await;
    let Ok(streamed) = streamed else {
        bail!("a stream to the broken cluster got no answer within {REFUSED_WITHIN:?}");
    };
    expect_status(
        streamed,
        Code::Unavailable,
        "unavailable",
        "a stream after the shard died",
    )?;
    ensure!(
        start.elapsed() <= REFUSED_WITHIN,
        "refusing took {:?}",
        start.elapsed()
    );

    // SIGTERM stops the coordinator and the surviving shard.
    drop(client);
    coordinator.stop().await
}

#[tokio::test]
async fn shards_exit_when_their_coordinator_is_killed() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let mut coordinator = Coordinator::start(&setup, &ServeOptions::tp(2))?;
    let shards = coordinator.shard_pids.clone();
    ensure!(
        shards.iter().all(|&pid| process::is_alive(pid)),
        "the shards are not running"
    );

    // SIGKILL gives the coordinator no chance to stop them: they notice
    // their standard input closing.
    coordinator.process().kill();
    let left = wait_gone(&shards, ORPHANS_EXIT_WITHIN).await;
    ensure!(
        left.is_empty(),
        "shards {left:?} still run {ORPHANS_EXIT_WITHIN:?} after their coordinator was killed"
    );
    Ok(())
}
