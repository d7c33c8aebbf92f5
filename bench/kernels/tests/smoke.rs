//! A whole run on a tiny budget: every figure comes out positive and finite,
//! the table names each case, and the JSON parses back.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use tessera_kernel_bench::{
    run, AttentionConfig, BandwidthConfig, Config, FormatList, MatmulConfig, Shape,
};

/// One format, one small shape, 10 ms per case.
fn tiny_config() -> Result<Config> {
    let budget = Duration::from_millis(10);
    Ok(Config {
        threads: 1,
        cache_bytes: 8 << 20,
        bandwidth: BandwidthConfig {
            bytes: 4 << 20,
            runs: 2,
        },
        matmul: MatmulConfig {
            formats: "Q4_K".parse::<FormatList>()?.0,
            shapes: vec!["64x256".parse()?, "64x96".parse::<Shape>()?],
            ns: vec![1, 3],
            budget,
            seed: 7,
        },
        attention: AttentionConfig {
            contexts: vec![16],
            heads: 4,
            kv_heads: 2,
            head_dim: 64,
            layers: 2,
            budget,
            seed: 7,
        },
    })
}

fn positive(what: &str, v: f64) -> Result<()> {
    ensure!(
        v.is_finite() && v > 0.0,
        "{what} = {v} is not positive and finite"
    );
    Ok(())
}

#[test]
fn tiny_run_gives_sane_figures_and_json() -> Result<()> {
    let mut steps = 0;
    let report = run(&tiny_config()?, &mut |_| steps += 1)?;

    let bw = report.bandwidth.first().context("no bandwidth figure")?;
    positive("read GB/s", bw.read_gbps)?;
    positive("copy GB/s", bw.copy_gbps)?;

    // 64x96 cannot hold 256-element Q4_K blocks: skipped, not failed.
    ensure!(
        report.matmul.cases.len() == 2,
        "cases: {:?}",
        report.matmul.cases
    );
    ensure!(
        report.matmul.skipped.len() == 1,
        "skipped: {:?}",
        report.matmul.skipped
    );
    for c in &report.matmul.cases {
        ensure!(
            c.format == "Q4_K" && c.rows == 64 && c.cache_resident,
            "{c:?}"
        );
        positive("matmul time", c.per_call_s)?;
        positive("matmul GB/s", c.weight_gbps)?;
        positive("matmul GFLOP/s", c.gflops)?;
        positive("matmul % bw", c.bandwidth_pct)?;
    }
    let a = report.attention.first().context("no attention case")?;
    positive("attention GB/s", a.kv_gbps)?;
    positive("attention GFLOP/s", a.gflops)?;
    ensure!(a.kv_bytes_per_layer == 2 * 16 * 2 * 64 * 4, "{a:?}");
    ensure!(steps == 4, "progress heard {steps} steps");

    let table = report.table();
    ensure!(
        table.contains("Q4_K") && table.contains("64x256"),
        "{table}"
    );
    ensure!(
        table.contains("layer.rs"),
        "table must say what attention mirrors"
    );

    let json: serde_json::Value = serde_json::from_str(&serde_json::to_string(&report)?)?;
    let gbps = json["matmul"]["cases"][0]["weight_gbps"].as_f64();
    ensure!(
        gbps.is_some_and(|v| v > 0.0),
        "JSON lacks weight_gbps: {json}"
    );
    ensure!(
        json["attention"][0]["context"] == 16,
        "JSON attention: {json}"
    );
    Ok(())
}

#[test]
fn bad_values_are_rejected() -> Result<()> {
    let mut config = tiny_config()?;
    config.attention.kv_heads = 3;
    let err = run(&config, &mut |_| {})
        .err()
        .context("3 kv heads cannot serve 4 heads")?;
    ensure!(err.label() == "invalid_spec", "{err}");

    let mut config = tiny_config()?;
    config.matmul.ns = vec![0];
    ensure!(run(&config, &mut |_| {}).is_err(), "n = 0 must be rejected");
    Ok(())
}
