//! A failed shard fails requests cleanly and promptly, the coordinator
//! replaces the group, and no shard process outlives its coordinator,
//! whether the coordinator is stopped or killed.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Result};
use tessera_client::request::{self, GenerateRequestBuilder};
use tessera_client::{Client, ClientError, Code, GenerateResponse};
use tessera_e2e::process::{self, wait_gone};
use tessera_e2e::{check_greedy_prefix, expect_status, setup, Coordinator, ServeOptions};

/// Longest a stream may run on after one of its shards died.
const STREAM_FAILS_WITHIN: Duration = Duration::from_secs(10);

/// Longest a request to a broken group may take to be refused.
const REFUSED_WITHIN: Duration = Duration::from_secs(3);

/// Longest the shards of a failed group, or of a killed coordinator, may
/// outlive it.
const SHARDS_EXIT_WITHIN: Duration = Duration::from_secs(5);

/// Longest the coordinator may take to serve again with a new group.
const RECOVERS_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test]
async fn killed_shard_fails_requests_then_the_group_is_replaced() -> Result<()> {
    let Some(setup) = setup()? else {
        return Ok(());
    };
    let mut coordinator = Coordinator::start(&setup, &ServeOptions::tp(2))?;
    let client = coordinator.client().await?;
    let p2 = setup.golden.prompt("P2")?;
    let prompt = || request::token_ids(p2.prompt_ids.iter().copied());

    // A long stream, well under way.
    let mut stream = client
        .generate_stream(prompt().max_new_tokens(2000).ignore_eos(true))
        .await?;
    for _ in 0..3 {
        ensure!(
            stream.next_chunk().await?.is_some(),
            "the long stream ended early"
        );
    }

    // Kill one shard; the stream must end with UNAVAILABLE, soon.
    let first_group = coordinator.shard_pids()?;
    process::send_signal(first_group[1], libc::SIGKILL)?;
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

    // The next requests are refused at once, not left waiting. (The
    // coordinator waits at least half a second before it starts a new
    // group, and refuses requests until that group is up.)
    let next = prompt().max_new_tokens(4);
    let answer = within(REFUSED_WITHIN, client.generate(next.clone())).await?;
    expect_status(
        answer,
        Code::Unavailable,
        "unavailable",
        "a request after the shard died",
    )?;
    let streamed = within(REFUSED_WITHIN, collect_stream(&client, next)).await?;
    expect_status(
        streamed,
        Code::Unavailable,
        "unavailable",
        "a stream after the shard died",
    )?;

    // The failed group is stopped whole: the surviving shard exits too.
    let left = wait_gone(&first_group, SHARDS_EXIT_WITHIN).await;
    ensure!(
        left.is_empty(),
        "shards {left:?} of the failed group still run"
    );

    // A new group serves the golden continuation.
    let response = wait_recovered(&client, prompt().max_new_tokens(8).ignore_eos(true)).await?;
    check_greedy_prefix(p2, &response.token_ids)?;
    let second_group = coordinator.shard_pids()?;
    ensure!(
        second_group.len() == 2 && second_group.iter().all(|p| !first_group.contains(p)),
        "the new group's shards are {second_group:?} (the failed group's were {first_group:?})"
    );

    // SIGTERM stops the coordinator and every shard it started.
    drop(client);
    coordinator.stop().await
}

#[tokio::test]
async fn shards_exit_when_their_coordinator_is_killed() -> Result<()> {
    let Some(setup) = setup()? else {
        return Ok(());
    };
    let mut coordinator = Coordinator::start(&setup, &ServeOptions::tp(2))?;
    let shards = coordinator.shard_pids()?;
    ensure!(
        shards.iter().all(|&pid| process::is_alive(pid)),
        "the shards are not running"
    );

    // SIGKILL gives the coordinator no chance to stop them: they notice
    // their standard input closing.
    coordinator.process().kill();
    let left = wait_gone(&shards, SHARDS_EXIT_WITHIN).await;
    ensure!(
        left.is_empty(),
        "shards {left:?} still run {SHARDS_EXIT_WITHIN:?} after their coordinator was killed"
    );
    Ok(())
}

/// `call`'s outcome, or an error if it takes longer than `bound`.
async fn within<T>(bound: Duration, call: impl std::future::Future<Output = T>) -> Result<T> {
    match tokio::time::timeout(bound, call).await {
        Ok(outcome) => Ok(outcome),
        Err(_) => bail!("a request to the broken cluster got no answer within {bound:?}"),
    }
}

/// A streamed request, joined into one response.
async fn collect_stream(
    client: &Client,
    request: GenerateRequestBuilder,
) -> Result<GenerateResponse, ClientError> {
    client
        .generate_stream(request)
        .await?
        .collect_response()
        .await
}

/// Sends `request` until it is answered, for up to [`RECOVERS_WITHIN`];
/// UNAVAILABLE is the only refusal allowed meanwhile.
async fn wait_recovered(
    client: &Client,
    request: GenerateRequestBuilder,
) -> Result<GenerateResponse> {
    let start = Instant::now();
    loop {
        match client.generate(request.clone()).await {
            Ok(response) => return Ok(response),
            Err(err) if err.code() == Some(Code::Unavailable) => {
                if start.elapsed() > RECOVERS_WITHIN {
                    bail!("still {err} {RECOVERS_WITHIN:?} after the shard died");
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(err) => bail!("while the group restarts: {err}"),
        }
    }
}
