//! `tessera-bench` against a real local Tessera cluster: SmolLM2 served at
//! TP 1 and TP 2, both benchmarked in one run.
//!
//! Needs `models/SmolLM2-135M-Instruct.Q4_1.gguf` (`scripts/fetch-model.sh`
//! fetches it); without it the test prints SKIPPED, or fails when `CI` is
//! set. The `tessera` and `tessera-shard` debug executables are built once
//! when missing. Servers listen on 127.0.0.1 only and are stopped by pid
//! when the test ends, passes or fails.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;

use common::{bench, describe, read_json, TempDir};

/// The model, relative to the workspace.
const MODEL: &str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

/// Longest a server may take to load the model and print its address.
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// Longest the build of the server executables may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// Requests per sweep point, and tokens per request.
const REQUESTS: u64 = 6;
const OUTPUT_TOKENS: u64 = 8;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The model's path, or `None` (after saying SKIPPED) when it is absent
/// outside CI.
fn model() -> Result<Option<PathBuf>> {
    let path = workspace().join(MODEL);
    if path.is_file() {
        return Ok(Some(path));
    }
    if std::env::var_os("CI").is_some() {
        bail!(
            "{} is missing; CI must fetch it (scripts/fetch-model.sh)",
            path.display()
        );
    }
    eprintln!(
        "SKIPPED: {} is missing; scripts/fetch-model.sh fetches it",
        path.display()
    );
    Ok(None)
}

/// The debug `tessera` executable, built with its shard when missing.
fn coordinator_binary() -> Result<PathBuf> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace().join("target"), PathBuf::from);
    let dir = target.join("debug");
    let (coordinator, shard) = (dir.join("tessera"), dir.join("tessera-shard"));
    if coordinator.is_file() && shard.is_file() {
        return Ok(coordinator);
    }

    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo)
        .args(["build", "--bin", "tessera", "--bin", "tessera-shard"])
        .current_dir(workspace())
        .spawn()
        .context("cannot start cargo build")?;
    let mut guard = ChildGuard(Some(build.id()));
    let start = Instant::now();
    let status = loop {
        if let Some(status) = build.try_wait()? {
            break status;
        }
        ensure!(
            start.elapsed() < BUILD_TIMEOUT,
            "cargo build took longer than {BUILD_TIMEOUT:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    guard.0 = None;
    ensure!(
        status.success(),
        "cargo build --bin tessera --bin tessera-shard failed: {status}"
    );
    ensure!(
        coordinator.is_file() && shard.is_file(),
        "the build left no executables in {}",
        dir.display()
    );
    Ok(coordinator)
}

/// Kills a process by pid when dropped, unless its pid was taken out.
struct ChildGuard(Option<u32>);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = Command::new("kill")
                .arg("-KILL")
                .arg(pid.to_string())
                .status();
        }
    }
}

/// A `tessera serve` process on 127.0.0.1; stopped by pid when dropped.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Server {
    /// Starts a cluster of `tp` shards and waits for its address.
    fn start(binary: &Path, model: &Path, tp: u32, dir: &TempDir) -> Result<Server> {
        let log = dir.join(&format!("tessera-tp{tp}.log"));
        let mut child = Command::new(binary)
            .arg("serve")
            .arg("--model")
            .arg(model)
            .args([
                "--tp",
                &tp.to_string(),
                "--threads",
                "1",
                "--listen",
                "127.0.0.1:0",
            ])
            .args(["--kv-cache-mib", "64", "--log", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log)?)
            .spawn()
            .context("cannot start tessera serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut server = Server {
            child,
            addr: String::new(),
            log,
        };

        // Lines of stdout, read on a thread that keeps draining the pipe.
        let (lines, received) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + READY_TIMEOUT;
        while server.addr.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = received.recv_timeout(left) else {
                bail!(
                    "tessera serve --tp {tp} printed no address; its log:\n{}",
                    server.log_text()
                );
            };
            if let Ok(event) = serde_json::from_str::<Value>(&line) {
                if event["event"] == "ready" {
                    server.addr = event["listen"]
                        .as_str()
                        .context("no listen address")?
                        .to_owned();
                }
            }
        }
        Ok(server)
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGTERM drains and stops the shards; SIGKILL if that takes long.
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tp1_and_tp2_in_one_run() -> Result<()> {
    let Some(model) = model()? else { return Ok(()) };
    let binary = coordinator_binary()?;
    let dir = TempDir::new("cluster")?;
    let tp1 = Server::start(&binary, &model, 1, &dir)?;
    let tp2 = Server::start(&binary, &model, 2, &dir)?;

    let out = dir.file("results.json");
    let targets = format!("grpc://{},grpc://{}", tp1.addr, tp2.addr);
    let output = bench(&[
        "run",
        "--target",
        &targets,
        "--concurrency",
        "1,2",
        "--requests",
        &REQUESTS.to_string(),
        "--warmup",
        "1",
        "--prompt-len",
        "fixed:16",
        "--output-len",
        &format!("fixed:{OUTPUT_TOKENS}"),
        "--slo-ttft-ms",
        "60000",
        "--out",
        &out,
        "--quiet",
    ])
    .await?;
    ensure!(
        output.status.success(),
        "run failed: {}\n--- tp1 log\n{}\n--- tp2 log\n{}",
        describe(&output),
        tp1.log_text(),
        tp2.log_text()
    );

    let results = read_json(dir.join("results.json").as_path())?;
    check_header(&results)?;
    let runs = results["runs"].as_array().context("no runs")?;
    assert_eq!(runs.len(), 2);
    for (run, tp) in runs.iter().zip([1, 2]) {
        assert_eq!(run["label"], format!("tessera tp{tp}"));
        assert_eq!(run["protocol"], "grpc");
        assert_eq!(run["model"]["source"], "tessera");
        assert_eq!(run["model"]["world_size"], tp);
        assert_eq!(run["model"]["architecture"], "llama");
        for point in run["points"].as_array().context("no points")? {
            check_point(point)?;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_target_on_a_grpc_server_is_a_wrong_protocol() -> Result<()> {
    let Some(model) = model()? else { return Ok(()) };
    let binary = coordinator_binary()?;
    let dir = TempDir::new("cluster-http")?;
    let server = Server::start(&binary, &model, 1, &dir)?;

    let target = format!("http://{}", server.addr);
    let output = bench(&[
        "run",
        "--target",
        &target,
        "--requests",
        "1",
        "--out",
        &dir.file("r.json"),
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("does not answer as an OpenAI-compatible HTTP server"),
        "{stderr}"
    );
    assert!(
        stderr.contains("grpc://"),
        "the error should suggest grpc://: {stderr}"
    );
    Ok(())
}

/// The file-level fields.
fn check_header(results: &Value) -> Result<()> {
    assert_eq!(results["tool"]["name"], "tessera-bench");
    ensure!(results["tool"]["version"].is_string(), "no version");
    ensure!(
        results["timestamp"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')),
        "no timestamp"
    );
    let workload = &results["workload"];
    for field in [
        "loads",
        "requests",
        "warmup",
        "prompts",
        "output_len",
        "seed",
        "temperature",
        "ignore_eos",
        "slo",
        "request_timeout_s",
        "duration_s",
    ] {
        ensure!(
            workload.get(field).is_some(),
            "workload.{field} is missing: {workload}"
        );
    }
    assert_eq!(workload["output_len"], format!("fixed:{OUTPUT_TOKENS}"));
    Ok(())
}

/// One sweep point: every request succeeded and generated exactly its
/// tokens, by the server's count, and the streamed ids agree.
fn check_point(point: &Value) -> Result<()> {
    for field in [
        "load",
        "duration_s",
        "requests",
        "errors",
        "prompt_tokens",
        "output_tokens",
        "output_tokens_per_s",
        "requests_per_s",
        "goodput",
        "ttft_ms",
        "itl_ms",
        "tpot_ms",
        "e2e_ms",
        "usage_mismatches",
    ] {
        ensure!(
            point.get(field).is_some_and(|v| !v.is_null()),
            "{field} is missing: {point}"
        );
    }
    for summary in ["ttft_ms", "itl_ms", "tpot_ms", "e2e_ms"] {
        for stat in ["count", "mean", "min", "p50", "p90", "p99", "max"] {
            ensure!(
                point[summary][stat].is_number(),
                "{summary}.{stat} is missing: {point}"
            );
        }
    }
    assert_eq!(point["requests"]["sent"], REQUESTS, "{point}");
    assert_eq!(point["requests"]["succeeded"], REQUESTS, "{point}");
    assert_eq!(point["output_tokens"], REQUESTS * OUTPUT_TOKENS, "{point}");
    assert_eq!(point["usage_mismatches"], 0, "{point}");
    assert_eq!(point["goodput"]["met"], REQUESTS, "{point}");
    ensure!(
        point["prompt_tokens"]
            .as_u64()
            .is_some_and(|t| t >= REQUESTS * 16),
        "{point}"
    );
    ensure!(
        point["output_tokens_per_s"]
            .as_f64()
            .is_some_and(|t| t > 0.0),
        "{point}"
    );
    Ok(())
}
