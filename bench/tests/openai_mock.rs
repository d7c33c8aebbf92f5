//! Full runs against a mock OpenAI-compatible server started by the test:
//! counts, usage taken from the server, errors by kind, charts and tables.

mod common;

use anyhow::{ensure, Context, Result};
use serde_json::Value;

use common::mock::{MockServer, Mode, MODEL, TOKENS_PER_CHUNK};
use common::{bench, describe, read_json, TempDir};

/// Output tokens asked per request: odd, so chunks (two tokens each) and
/// tokens differ in number.
const OUTPUT_TOKENS: u64 = 7;

/// Prompt words per request.
const PROMPT_WORDS: u64 = 10;

fn u64_at(value: &Value, pointer: &str) -> Result<u64> {
    value
        .pointer(pointer)
        .and_then(Value::as_u64)
        .with_context(|| format!("no {pointer} in {value}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closed_loop_figures_follow_the_servers_usage() -> Result<()> {
    let mock = MockServer::start(Mode::Usage).await?;
    let dir = TempDir::new("mock-closed")?;
    let out = dir.file("results.json");
    let output = bench(&[
        "run",
        "--target",
        &mock.url(),
        "--concurrency",
        "1,3",
        "--requests",
        "5",
        "--warmup",
        "1",
        "--prompt-len",
        &format!("fixed:{PROMPT_WORDS}"),
        "--output-len",
        &format!("fixed:{OUTPUT_TOKENS}"),
        "--seed",
        "5",
        "--out",
        &out,
        "--label",
        "mock",
        "--quiet",
    ])
    .await?;
    ensure!(output.status.success(), "run failed: {}", describe(&output));

    // One probe, then per point one warm-up and five measured requests.
    assert_eq!(mock.completion_count(), 1 + 2 * (1 + 5));
    let results = read_json(dir.join("results.json").as_path())?;
    assert_eq!(results["runs"][0]["label"], "mock");
    assert_eq!(results["runs"][0]["model"]["model"], MODEL);
    assert_eq!(results["runs"][0]["protocol"], "openai");

    let chunks = OUTPUT_TOKENS.div_ceil(TOKENS_PER_CHUNK);
    for point in results["runs"][0]["points"]
        .as_array()
        .context("no points")?
    {
        assert_eq!(u64_at(point, "/requests/sent")?, 5);
        assert_eq!(u64_at(point, "/requests/succeeded")?, 5);
        assert_eq!(u64_at(point, "/requests/warmup_sent")?, 1);
        // Tokens come from usage (7 each), not from chunks (4 each).
        assert_eq!(u64_at(point, "/output_tokens")?, 5 * OUTPUT_TOKENS);
        assert_eq!(u64_at(point, "/prompt_tokens")?, 5 * 2 * PROMPT_WORDS);
        assert_eq!(u64_at(point, "/ttft_ms/count")?, 5);
        assert_eq!(u64_at(point, "/itl_ms/count")?, 5 * (chunks - 1));
        assert_eq!(u64_at(point, "/tpot_ms/count")?, 5);
        assert!(
            point["usage_mismatches"].is_null(),
            "text streams cannot be cross-checked"
        );
        assert_eq!(point["errors"], serde_json::json!({}));
        let rate = point["output_tokens_per_s"]
            .as_f64()
            .context("no throughput")?;
        let duration = point["duration_s"].as_f64().context("no duration")?;
        ensure!(
            (rate * duration - (5 * OUTPUT_TOKENS) as f64).abs() < 1e-6,
            "{point}"
        );
    }

    // What the server was asked.
    let bodies = mock
        .completions
        .lock()
        .map_err(|_| anyhow::anyhow!("poisoned"))?
        .clone();
    for body in &bodies[1..] {
        assert_eq!(body["model"], MODEL);
        assert_eq!(body["max_tokens"], OUTPUT_TOKENS);
        assert_eq!(body["stream"], true);
        assert_eq!(body["ignore_eos"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        let words = body["prompt"]
            .as_str()
            .context("no prompt")?
            .split_whitespace()
            .count();
        assert_eq!(words as u64, PROMPT_WORDS);
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_usage_is_an_error_kind_not_a_guess() -> Result<()> {
    // Streams 2, 5, 8, … lose their usage; stream 0 is the probe.
    let mock = MockServer::start(Mode::UsageMissingEvery(3)).await?;
    let dir = TempDir::new("mock-usage")?;
    let out = dir.file("results.json");
    let output = bench(&[
        "run",
        "--target",
        &mock.url(),
        "--concurrency",
        "1",
        "--requests",
        "6",
        "--warmup",
        "0",
        "--output-len",
        "fixed:4",
        "--prompt-len",
        "fixed:3",
        "--out",
        &out,
        "--quiet",
    ])
    .await?;
    ensure!(output.status.success(), "run failed: {}", describe(&output));

    let results = read_json(dir.join("results.json").as_path())?;
    let point = &results["runs"][0]["points"][0];
    assert_eq!(u64_at(point, "/requests/sent")?, 6);
    assert_eq!(u64_at(point, "/requests/failed")?, 2);
    assert_eq!(u64_at(point, "/errors/usage_missing")?, 2);
    assert_eq!(u64_at(point, "/output_tokens")?, 4 * 4);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_without_usage_is_refused_before_the_run() -> Result<()> {
    let mock = MockServer::start(Mode::UsageMissingEvery(1)).await?;
    let dir = TempDir::new("mock-no-usage")?;
    let output = bench(&[
        "run",
        "--target",
        &mock.url(),
        "--requests",
        "2",
        "--out",
        &dir.file("r.json"),
        "--quiet",
    ])
    .await?;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("usage"), "{stderr}");
    assert_eq!(mock.completion_count(), 1, "only the probe was sent");
    assert!(!dir.join("r.json").exists());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_and_duration_bounded_runs() -> Result<()> {
    let mock = MockServer::start(Mode::Usage).await?;
    let dir = TempDir::new("mock-open")?;
    let out = dir.file("open.json");
    let output = bench(&[
        "run",
        "--target",
        &mock.url(),
        "--rate",
        "50,100",
        "--requests",
        "10",
        "--warmup",
        "2",
        "--output-len",
        "uniform:1-6",
        "--prompt-len",
        "uniform:2-8",
        "--out",
        &out,
        "--quiet",
    ])
    .await?;
    ensure!(output.status.success(), "run failed: {}", describe(&output));
    let results = read_json(dir.join("open.json").as_path())?;
    assert_eq!(results["workload"]["loads"][1]["mode"], "open");
    for point in results["runs"][0]["points"]
        .as_array()
        .context("no points")?
    {
        assert_eq!(u64_at(point, "/requests/succeeded")?, 10);
    }

    let out = dir.file("timed.json");
    let output = bench(&[
        "run",
        "--target",
        &mock.url(),
        "--concurrency",
        "2",
        "--duration",
        "0.3",
        "--warmup",
        "0",
        "--output-len",
        "fixed:2",
        "--out",
        &out,
        "--quiet",
    ])
    .await?;
    ensure!(output.status.success(), "run failed: {}", describe(&output));
    let results = read_json(dir.join("timed.json").as_path())?;
    let point = &results["runs"][0]["points"][0];
    let sent = u64_at(point, "/requests/sent")?;
    ensure!(sent >= 2, "only {sent} requests in 0.3 s");
    assert_eq!(u64_at(point, "/output_tokens")?, 2 * sent);
    assert!(results["workload"]["requests"].is_null());
    assert_eq!(results["workload"]["duration_s"], 0.3);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_targets_in_one_run_then_plot_and_compare() -> Result<()> {
    let (a, b) = (
        MockServer::start(Mode::Usage).await?,
        MockServer::start(Mode::Usage).await?,
    );
    let dir = TempDir::new("mock-two")?;
    let out = dir.file("both.json");
    let targets = format!("{},{}", a.url(), b.url());
    let output = bench(&[
        "run",
        "--target",
        &targets,
        "--label",
        "alpha",
        "--label",
        "beta",
        "--concurrency",
        "1,2",
        "--requests",
        "4",
        "--warmup",
        "0",
        "--output-len",
        "fixed:3",
        "--prompt-len",
        "fixed:5",
        "--slo-ttft-ms",
        "10000",
        "--slo-itl-ms",
        "10000",
        "--out",
        &out,
        "--quiet",
    ])
    .await?;
    ensure!(output.status.success(), "run failed: {}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    ensure!(
        stdout.contains("alpha") && stdout.contains("beta"),
        "{stdout}"
    );

    // Both targets got the same prompts.
    let prompts = |m: &MockServer| -> Result<Vec<Value>> {
        let bodies = m
            .completions
            .lock()
            .map_err(|_| anyhow::anyhow!("poisoned"))?;
        Ok(bodies.iter().skip(1).map(|b| b["prompt"].clone()).collect())
    };
    let (mut pa, mut pb) = (prompts(&a)?, prompts(&b)?);
    pa.sort_by_key(Value::to_string);
    pb.sort_by_key(Value::to_string);
    assert_eq!(pa, pb);

    let results = read_json(dir.join("both.json").as_path())?;
    let point = &results["runs"][1]["points"][1];
    assert_eq!(u64_at(point, "/goodput/met")?, 4);
    assert_eq!(results["workload"]["slo"]["ttft_ms"], 10000.0);

    let charts = dir.file("charts");
    let output = bench(&["plot", &out, "--out", &charts]).await?;
    ensure!(
        output.status.success(),
        "plot failed: {}",
        describe(&output)
    );
    for name in ["throughput.svg", "latency.svg"] {
        let svg = std::fs::read_to_string(dir.join("charts").join(name))?;
        ensure!(svg.starts_with("<svg"), "{name} is not SVG");
        ensure!(
            svg.contains("alpha") && svg.contains("beta"),
            "{name} lacks the legend"
        );
        ensure!(svg.contains("concurrency"), "{name} lacks the axis name");
    }

    let output = bench(&["compare", &out, &out]).await?;
    ensure!(
        output.status.success(),
        "compare failed: {}",
        describe(&output)
    );
    let table = String::from_utf8_lossy(&output.stdout);
    ensure!(
        table.contains("both: alpha") && table.contains("output tok/s"),
        "{table}"
    );
    Ok(())
}
