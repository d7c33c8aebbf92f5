//! `tessera generate`: a one-shot answer from a local cluster it starts and
//! stops itself, printed as JSON.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde_json::Value;
use tessera_e2e::process::Process;
use tessera_e2e::setup;

/// Longest the whole command may take (it loads the model, generates eight
/// tokens, and stops its shards).
const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// Tokens to generate.
const TOKENS: usize = 8;

#[test]
fn generate_prints_json_with_golden_ids() -> Result<()> {
    let Some(setup) = setup()? else { return Ok(()) };
    let p1 = setup.golden.prompt("P1")?;

    let mut command = Command::new(&setup.binaries.coordinator);
    command.arg("generate").arg("--model").arg(&setup.model);
    command.args(["--tp", "2", "--threads", "1", "--json", "--ignore-eos"]);
    command.args(["--max-new-tokens", &TOKENS.to_string(), &p1.text]);
    let mut run = Process::spawn("tessera generate", command)?;
    let Some(status) = run.wait_timeout(RUN_TIMEOUT)? else {
        bail!(
            "tessera generate did not finish within {RUN_TIMEOUT:?}; its log:\n{}",
            run.log_tail()
        );
    };
    ensure!(
        status.success(),
        "tessera generate failed ({status}); its log:\n{}",
        run.log_tail()
    );

    let lines = run.stdout_lines(Duration::from_secs(5));
    let last = lines.last().context("tessera generate printed nothing")?;
    let result: Value =
        serde_json::from_str(last).with_context(|| format!("the last line is not JSON: {last}"))?;

    let ids = |field: &str| -> Result<Vec<u32>> {
        let values = result[field]
            .as_array()
            .with_context(|| format!("no {field} array in {result}"))?;
        values
            .iter()
            .map(|v| {
                v.as_u64()
                    .map(|v| v as u32)
                    .context("an id is not a number")
            })
            .collect()
    };
    ensure!(
        ids("prompt_ids")? == p1.prompt_ids,
        "prompt_ids {:?}, expected {:?}",
        ids("prompt_ids")?,
        p1.prompt_ids
    );
    let expected = &p1.greedy_ids[..TOKENS];
    ensure!(
        ids("token_ids")? == expected,
        "token_ids {:?}, expected {expected:?}",
        ids("token_ids")?
    );
    ensure!(
        result["finish_reason"] == "length",
        "finish_reason is {}",
        result["finish_reason"]
    );
    ensure!(
        result["text"]
            .as_str()
            .is_some_and(|t| t.starts_with(" Paris")),
        "text is {}",
        result["text"]
    );

    let timings = &result["timings"];
    for field in ["load_ms", "prefill_ms", "decode_ms", "decode_tokens_per_s"] {
        let value = timings[field]
            .as_f64()
            .with_context(|| format!("timings.{field} is missing: {timings}"))?;
        ensure!(
            value.is_finite() && value >= 0.0,
            "timings.{field} is {value}"
        );
    }
    Ok(())
}
