//! `TcpGroup` with every rank a thread of this process, on 127.0.0.1.
//!
//! Each test binds every rank's port first (port 0), then forms the group
//! from the collected addresses, as shard processes do.

use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Result};
use tessera_shard::collective::{
    Collective, CollectiveError, TcpGroup, TcpGroupOptions, TcpListenerHandle,
};

/// Forming a group never takes this long on loopback; a hang fails instead.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

fn options(io_timeout: Duration) -> TcpGroupOptions {
    TcpGroupOptions {
        connect_timeout: CONNECT_TIMEOUT,
        io_timeout,
    }
}

/// Binds `world_size` ports on 127.0.0.1 and returns them with their
/// addresses, indexed by rank.
fn bind_all(world_size: usize) -> Result<(Vec<TcpListenerHandle>, Vec<String>)> {
    let listeners = (0..world_size)
        .map(|_| TcpGroup::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()?;
    let addrs = listeners
        .iter()
        .map(|l| l.local_addr().to_string())
        .collect();
    Ok((listeners, addrs))
}

/// Runs `work` on every rank of a fresh group, one thread per rank, and
/// returns each rank's outcome in rank order.
fn run_group<T: Send>(
    world_size: usize,
    opts: TcpGroupOptions,
    work: impl Fn(TcpGroup) -> Result<T, CollectiveError> + Sync,
) -> Result<Vec<Result<T, CollectiveError>>> {
    let (listeners, addrs) = bind_all(world_size)?;
    thread::scope(|scope| {
        let handles: Vec<_> = listeners
            .into_iter()
            .enumerate()
            .map(|(rank, listener)| {
                let (addrs, work) = (&addrs, &work);
                scope.spawn(move || work(TcpGroup::connect_with(listener, rank, addrs, &opts)?))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().map_err(|_| anyhow!("a rank thread panicked")))
            .collect()
    })
}

/// Unwraps every rank's outcome, naming the rank that failed.
fn all_ok<T>(outcomes: Vec<Result<T, CollectiveError>>) -> Result<Vec<T>> {
    outcomes
        .into_iter()
        .enumerate()
        .map(|(rank, r)| r.map_err(|e| anyhow!("rank {rank}: {e}")))
        .collect()
}

/// Rank `rank`'s part of the reduce test: magnitudes from 1e-3 to 1e8 with
/// both signs, so that the order of summation changes the f32 result.
fn part(rank: usize, len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let sign = [-1.0, 1.0, 1.0][(i + rank) % 3];
            let digits = ((i * 7 + rank * 13) % 17) as f32 + 1.0;
            sign * digits * 10f32.powi(((i + 5 * rank) % 12) as i32 - 3)
        })
        .collect()
}

/// The classic order-sensitive triple, placed first: 1e8 + -1e8 + 1 is 1 in
/// rank order, but 0 when rank 2 adds its own part first.
fn reduce_input(rank: usize, world_size: usize, len: usize) -> Vec<f32> {
    let mut values = part(rank, len);
    if world_size >= 3 {
        values[0] = [1e8, -1e8, 1.0, 3.0][rank.min(3)];
    }
    values
}

fn rank_order_sum(world_size: usize, len: usize) -> Vec<f32> {
    let mut sum = reduce_input(0, world_size, len);
    for rank in 1..world_size {
        for (s, v) in sum.iter_mut().zip(reduce_input(rank, world_size, len)) {
            *s += v;
        }
    }
    sum
}

fn bits(values: &[f32]) -> Vec<u32> {
    values.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn all_reduce_is_the_rank_order_sum_bit_for_bit() -> Result<()> {
    const LEN: usize = 257;
    for world_size in 1..=4 {
        let outcomes = run_group(world_size, TcpGroupOptions::default(), |mut group| {
            let rank = group.rank();
            let mut rounds = Vec::new();
            for _ in 0..3 {
                let mut buf = reduce_input(rank, group.world_size(), LEN);
                group.all_reduce_sum(&mut buf)?;
                rounds.push(buf);
            }
            Ok(rounds)
        })?;
        let expected = rank_order_sum(world_size, LEN);
        for (rank, rounds) in all_ok(outcomes)?.into_iter().enumerate() {
            for buf in rounds {
                ensure!(
                    bits(&buf) == bits(&expected),
                    "world_size {world_size}, rank {rank}: not the rank-order sum"
                );
            }
        }

        if world_size >= 3 {
            // The inputs really are order-sensitive: the last rank adding its
            // own part first would get another answer.
            let last = world_size - 1;
            let mut own_first = reduce_input(last, world_size, LEN);
            for rank in 0..last {
                for (s, v) in own_first
                    .iter_mut()
                    .zip(reduce_input(rank, world_size, LEN))
                {
                    *s += v;
                }
            }
            ensure!(
                bits(&own_first) != bits(&expected),
                "test inputs are not order-sensitive"
            );
            let want = if world_size == 3 { 1.0 } else { 4.0 };
            ensure!(
                expected[0] == want,
                "1e8 + -1e8 + 1 (+ 3) in rank order is {want}"
            );
        }
    }
    Ok(())
}

#[test]
fn large_all_reduce_does_not_deadlock() -> Result<()> {
    // 4096 hidden × 512 tokens of f32: 8 MiB per rank, far beyond socket
    // buffers. A deadlock would surface as a Timeout after 30 s.
    const LEN: usize = 4096 * 512;
    let world_size = 4;
    let started = Instant::now();
    let outcomes = run_group(world_size, options(Duration::from_secs(30)), |mut group| {
        let rank = group.rank() as f32;
        let mut sums = Vec::new();
        for round in 0..2 {
            let mut buf: Vec<f32> = (0..LEN)
                .map(|i| (i % 1000) as f32 + rank + round as f32)
                .collect();
            group.all_reduce_sum(&mut buf)?;
            sums.push(buf);
        }
        Ok(sums)
    })?;
    let results = all_ok(outcomes)?;
    for (rank, sums) in results.iter().enumerate() {
        for (round, buf) in sums.iter().enumerate() {
            ensure!(
                bits(buf) == bits(&results[0][round]),
                "rank {rank} disagrees with rank 0"
            );
            for i in [0, 1, 999, LEN / 2 + 3, LEN - 1] {
                let want = 4.0 * ((i % 1000) as f32 + round as f32) + 6.0;
                ensure!(
                    buf[i] == want,
                    "rank {rank} round {round} [{i}] = {}, want {want}",
                    buf[i]
                );
            }
        }
    }
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "8 MiB all-reduce took {:?}",
        started.elapsed()
    );
    Ok(())
}

#[test]
fn all_gather_concatenates_uneven_parts_in_rank_order() -> Result<()> {
    let lengths = [3, 0, 5, 1];
    for world_size in 1..=4 {
        let total: usize = lengths[..world_size].iter().sum();
        let outcomes = run_group(world_size, TcpGroupOptions::default(), |mut group| {
            let rank = group.rank();
            let local: Vec<f32> = (0..lengths[rank])
                .map(|i| (100 * rank + i) as f32)
                .collect();
            let mut out = vec![f32::NAN; total];
            group.all_gather(&local, &mut out)?;
            // A reduce after the gather checks the group stays in step.
            let mut one = [1.0f32];
            group.all_reduce_sum(&mut one)?;
            Ok((out, one[0]))
        })?;
        let expected: Vec<f32> = (0..world_size)
            .flat_map(|rank| (0..lengths[rank]).map(move |i| (100 * rank + i) as f32))
            .collect();
        for (rank, (out, count)) in all_ok(outcomes)?.into_iter().enumerate() {
            ensure!(
                out == expected,
                "world_size {world_size}, rank {rank}: gathered {out:?}"
            );
            ensure!(
                count == world_size as f32,
                "rank {rank}: reduce after gather gave {count}"
            );
        }
    }
    Ok(())
}

#[test]
fn size_mismatch_is_reported_and_the_group_stays_usable() -> Result<()> {
    let outcomes = run_group(3, TcpGroupOptions::default(), |mut group| {
        let mut wrong = vec![1.0f32; 4 + group.rank()];
        let first = group.all_reduce_sum(&mut wrong);
        let mut right = [group.rank() as f32];
        group.all_reduce_sum(&mut right)?;
        Ok((first, right[0]))
    })?;
    for (rank, (first, sum)) in all_ok(outcomes)?.into_iter().enumerate() {
        ensure!(
            matches!(first, Err(CollectiveError::SizeMismatch { .. })),
            "rank {rank}: expected a size mismatch, got {first:?}"
        );
        ensure!(sum == 3.0, "rank {rank}: the next reduce gave {sum}");
    }
    Ok(())
}

#[test]
fn ranks_at_different_operations_are_desynced() -> Result<()> {
    let outcomes = run_group(2, TcpGroupOptions::default(), |mut group| {
        let mut buf = [1.0f32; 2];
        if group.rank() == 0 {
            group.all_reduce_sum(&mut buf)
        } else {
            group.all_gather(&[1.0], &mut buf)
        }
    })?;
    // The first rank to notice shuts its connections down (fail-stop), so the
    // other may see it leave before it sees the mismatched frame.
    let mut desyncs = 0;
    for (rank, outcome) in outcomes.into_iter().enumerate() {
        let other = 1 - rank;
        match outcome {
            Err(CollectiveError::Desync { peer, reason }) => {
                ensure!(peer == other, "rank {rank} blamed rank {peer}");
                ensure!(
                    reason.contains("all_gather") && reason.contains("all_reduce_sum"),
                    "{reason}"
                );
                desyncs += 1;
            }
            Err(CollectiveError::PeerGone { peer, .. }) if peer == other => {}
            other => return Err(anyhow!("rank {rank}: expected Desync, got {other:?}")),
        }
    }
    ensure!(desyncs >= 1, "no rank reported the desync");
    Ok(())
}

#[test]
fn handshake_with_another_world_size_is_refused_clearly() -> Result<()> {
    let (mut listeners, addrs) = bind_all(2)?;
    let (rank1, rank0) = (listeners.remove(1), listeners.remove(0));
    let wrong_peers = vec![
        addrs[0].clone(),
        addrs[1].clone(),
        "127.0.0.1:9".to_string(),
    ];
    let timeout = Duration::from_secs(10);

    let (refused, refusing) = thread::scope(|scope| {
        let dialler = scope.spawn(|| TcpGroup::connect(rank1, 1, &wrong_peers, timeout));
        let acceptor = TcpGroup::connect(rank0, 0, &addrs, timeout);
        (dialler.join(), acceptor)
    });
    let refused = refused.map_err(|_| anyhow!("rank thread panicked"))?;

    let message = match refusing {
        Err(e @ CollectiveError::Rendezvous { .. }) => e.to_string(),
        other => {
            return Err(anyhow!(
                "rank 0: expected a rendezvous error, got {other:?}"
            ))
        }
    };
    ensure!(
        message.contains("says it is rank 1 of 3, expected a group of 2"),
        "{message}"
    );
    let message = match refused {
        Err(e @ CollectiveError::Rendezvous { .. }) => e.to_string(),
        other => {
            return Err(anyhow!(
                "rank 1: expected a rendezvous error, got {other:?}"
            ))
        }
    };
    ensure!(
        message.contains(&addrs[0]) && message.contains("group of 3"),
        "{message}"
    );
    Ok(())
}

#[test]
fn a_stranger_on_the_collective_port_is_refused() -> Result<()> {
    let (mut listeners, addrs) = bind_all(2)?;
    drop(listeners.remove(1));
    let stranger = thread::spawn({
        let addr = addrs[0].clone();
        move || -> std::io::Result<()> {
            use std::io::Write;
            let mut stream = TcpStream::connect(addr)?;
            stream.write_all(b"GET / HTTP/1.1\r\n\r\n")
        }
    });
    let outcome = TcpGroup::connect(listeners.remove(0), 0, &addrs, Duration::from_secs(10));
    stranger
        .join()
        .map_err(|_| anyhow!("stranger thread panicked"))??;
    match outcome {
        Err(e @ CollectiveError::Rendezvous { .. }) => {
            ensure!(
                e.to_string().contains("not a Tessera collective peer"),
                "{e}"
            );
            Ok(())
        }
        other => Err(anyhow!("expected a rendezvous error, got {other:?}")),
    }
}

#[test]
fn a_peer_that_leaves_mid_collective_is_reported_promptly() -> Result<()> {
    let started = Instant::now();
    let outcomes = run_group(3, options(Duration::from_secs(30)), |mut group| {
        let mut buf = vec![1.0f32; 1000];
        group.all_reduce_sum(&mut buf)?;
        if group.rank() == 2 {
            // Leave while the others are already waiting in the next reduce.
            thread::sleep(Duration::from_millis(200));
            drop(group);
            return Ok(None);
        }
        let second = group.all_reduce_sum(&mut buf);
        let waited = started.elapsed();
        let third = group.all_reduce_sum(&mut buf);
        Ok(Some((second, third, waited)))
    })?;
    for (rank, outcome) in all_ok(outcomes)?.into_iter().enumerate().take(2) {
        let (second, third, waited) =
            outcome.ok_or_else(|| anyhow!("rank {rank} returned early"))?;
        ensure!(
            matches!(second, Err(CollectiveError::PeerGone { peer: 2, .. })),
            "rank {rank}: expected rank 2 to be gone, got {second:?}"
        );
        ensure!(
            waited < Duration::from_secs(5),
            "rank {rank} noticed only after {waited:?}"
        );
        ensure!(
            matches!(third, Err(CollectiveError::PeerGone { .. })),
            "rank {rank}: a failed group must refuse further collectives, got {third:?}"
        );
    }
    Ok(())
}

#[test]
fn dropping_a_failed_group_does_not_wait_on_a_stuck_peer() -> Result<()> {
    // Rank 2 stays connected but never reads, so rank 0's 8 MiB write to it
    // blocks; rank 1 leaves, so rank 0's reduce fails. Dropping rank 0's group
    // must end that blocked write at once, not after the 10 s I/O timeout.
    const LEN: usize = 4096 * 512;
    let outcomes = run_group(3, options(Duration::from_secs(10)), |mut group| {
        match group.rank() {
            1 => return Ok(None),
            2 => {
                thread::sleep(Duration::from_secs(3));
                return Ok(None);
            }
            _ => {}
        }
        let started = Instant::now();
        let outcome = group.all_reduce_sum(&mut vec![1.0f32; LEN]);
        drop(group);
        Ok(Some((outcome, started.elapsed())))
    })?;
    let (outcome, waited) = all_ok(outcomes)?
        .remove(0)
        .ok_or_else(|| anyhow!("rank 0 returned early"))?;
    ensure!(
        matches!(outcome, Err(CollectiveError::PeerGone { peer: 1, .. })),
        "expected rank 1 to be gone, got {outcome:?}"
    );
    ensure!(
        waited < Duration::from_secs(2),
        "failing and dropping took {waited:?}"
    );
    Ok(())
}

#[test]
fn a_peer_that_hangs_times_out_naming_it() -> Result<()> {
    let io_timeout = Duration::from_millis(300);
    let outcomes = run_group(2, options(io_timeout), |mut group| {
        if group.rank() == 1 {
            // Stays connected but never joins the collective.
            thread::sleep(Duration::from_secs(2));
            return Ok(None);
        }
        let started = Instant::now();
        let outcome = group.all_reduce_sum(&mut [1.0f32; 8]);
        Ok(Some((outcome, started.elapsed())))
    })?;
    let (outcome, waited) = all_ok(outcomes)?
        .remove(0)
        .ok_or_else(|| anyhow!("rank 0 returned early"))?;
    ensure!(
        matches!(outcome, Err(CollectiveError::Timeout { peer: 1, .. })),
        "expected a timeout naming rank 1, got {outcome:?}"
    );
    ensure!(
        waited >= io_timeout && waited < Duration::from_secs(2),
        "timed out after {waited:?}"
    );
    Ok(())
}

#[test]
fn connect_fails_within_its_timeout_when_a_peer_never_shows_up() -> Result<()> {
    let timeout = Duration::from_millis(500);

    // Rank 0 waits for a rank 1 whose port is bound but which never dials.
    let (mut listeners, addrs) = bind_all(2)?;
    let started = Instant::now();
    let outcome = TcpGroup::connect(listeners.remove(0), 0, &addrs, timeout);
    let waited = started.elapsed();
    match outcome {
        Err(e @ CollectiveError::Rendezvous { .. }) => {
            ensure!(e.to_string().contains("rank 1 did not connect"), "{e}");
        }
        other => {
            return Err(anyhow!(
                "rank 0: expected a rendezvous error, got {other:?}"
            ))
        }
    }
    ensure!(
        waited >= timeout && waited < timeout * 4,
        "rank 0 gave up after {waited:?}"
    );

    // Rank 1 dials a rank 0 whose port is closed: refused until the timeout.
    let (mut listeners, addrs) = bind_all(2)?;
    drop(listeners.remove(0));
    let started = Instant::now();
    let outcome = TcpGroup::connect(listeners.remove(0), 1, &addrs, timeout);
    let waited = started.elapsed();
    match outcome {
        Err(e @ CollectiveError::Rendezvous { .. }) => {
            ensure!(
                e.to_string().contains("rank 0 did not accept a connection"),
                "{e}"
            );
        }
        other => {
            return Err(anyhow!(
                "rank 1: expected a rendezvous error, got {other:?}"
            ))
        }
    }
    ensure!(
        waited >= timeout && waited < timeout * 4,
        "rank 1 gave up after {waited:?}"
    );
    Ok(())
}

#[test]
fn a_rank_outside_the_peer_list_is_refused() -> Result<()> {
    let (mut listeners, addrs) = bind_all(1)?;
    match TcpGroup::connect(listeners.remove(0), 1, &addrs, Duration::from_secs(1)) {
        Err(e @ CollectiveError::Rendezvous { .. }) => {
            ensure!(e.to_string().contains("outside a group of 1"), "{e}");
            Ok(())
        }
        other => Err(anyhow!("expected a rendezvous error, got {other:?}")),
    }
}
