//! A whole benchmark: every target, every sweep point, one results file.
//!
//! Every target is connected and checked before any load is sent, so a
//! typo in the second target does not cost the first one's run. Targets
//! then run one after another, never at once, so they do not share the
//! machine; each gets the same prompts and output lengths.

use std::sync::Arc;
use std::time::SystemTime;

use crate::backend::{Backend, BackendOptions, ModelDescription};
use crate::figures::point_result;
use crate::progress::Progress;
use crate::results::{Load, PromptInfo, ResultsFile, RunResult, Slo, ToolInfo, WorkloadInfo};
use crate::runner::{run_point, RunPlan};
use crate::target::Target;
use crate::workload::{PromptSource, Workload};
use crate::BenchError;

/// A target and the label to show it under (`None`: one is made from what
/// the server says it serves).
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledTarget {
    /// Where to send load.
    pub target: Target,
    /// The name in charts and tables.
    pub label: Option<String>,
}

/// Everything a run needs.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The targets, run in this order.
    pub targets: Vec<LabelledTarget>,
    /// How requests are sent.
    pub options: BackendOptions,
    /// What requests ask.
    pub workload: Workload,
    /// How much is sent per point.
    pub plan: RunPlan,
    /// The sweep points, run in this order for every target.
    pub loads: Vec<Load>,
    /// The objectives of goodput.
    pub slo: Slo,
}

/// Runs the benchmark and returns its results.
pub async fn run(config: BenchConfig, progress: Progress) -> Result<ResultsFile, BenchError> {
    let timestamp = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    if config.targets.is_empty() || config.loads.is_empty() {
        return Err(BenchError::Incompatible(
            "a run needs a target and a sweep point".to_owned(),
        ));
    }

    // Check every target before sending load to any.
    let mut connected = Vec::new();
    for labelled in &config.targets {
        let (backend, model) = Backend::connect(&labelled.target, &config.options).await?;
        connected.push((labelled, Arc::new(backend), model));
    }

    let workload = Arc::new(config.workload.clone());
    let mut runs: Vec<RunResult> = Vec::new();
    for (labelled, backend, model) in connected {
        let label = unique_label(
            &runs,
            labelled
                .label
                .clone()
                .unwrap_or_else(|| default_label(&model)),
        );
        let mut points = Vec::new();
        for (index, &load) in config.loads.iter().enumerate() {
            let bar = progress.bar(format!("{label} {load}"), bar_length(&config.plan));
            let run = run_point(
                backend.clone(),
                workload.clone(),
                &config.plan,
                index,
                load,
                bar,
            )
            .await?;
            let figures = point_result(load, &run, &config.slo);
            progress.summary(&label, &figures);
            points.push(figures);
        }
        runs.push(RunResult {
            label,
            target: labelled.target.url.clone(),
            protocol: labelled.target.protocol,
            model,
            points,
        });
    }

    Ok(ResultsFile {
        tool: ToolInfo {
            name: "tessera-bench".to_owned(),
            version: crate::VERSION.to_owned(),
        },
        timestamp,
        workload: workload_info(&config),
        runs,
    })
}

/// Requests a point's bar counts to, when the count bounds the point.
fn bar_length(plan: &RunPlan) -> Option<u64> {
    match (plan.requests(), plan.duration()) {
        (Some(n), None) => Some(n + plan.warmup()),
        _ => None,
    }
}

/// A label from what the server serves: `tessera tp2` or the model name.
fn default_label(model: &ModelDescription) -> String {
    match model {
        ModelDescription::Tessera(info) => format!("tessera tp{}", info.world_size),
        ModelDescription::Openai { model, .. } => model.clone(),
    }
}

/// `label`, or `label #2`, `#3`… when an earlier run has it.
fn unique_label(runs: &[RunResult], label: String) -> String {
    let taken = |l: &str| runs.iter().any(|r| r.label == l);
    if !taken(&label) {
        return label;
    }
    (2..)
        .map(|n| format!("{label} #{n}"))
        .find(|l| !taken(l))
        .unwrap_or(label)
}

/// The workload part of the results.
fn workload_info(config: &BenchConfig) -> WorkloadInfo {
    let prompts = match &config.workload.prompts {
        PromptSource::Synthetic(len) => PromptInfo::Synthetic {
            words: len.to_string(),
        },
        PromptSource::File { path, prompts } => PromptInfo::File {
            path: path.display().to_string(),
            prompts: prompts.len(),
        },
    };
    WorkloadInfo {
        loads: config.loads.clone(),
        requests: config.plan.requests(),
        duration_s: config.plan.duration().map(|d| d.as_secs_f64()),
        warmup: config.plan.warmup(),
        prompts,
        output_len: config.workload.output_len.to_string(),
        seed: config.workload.seed,
        temperature: config.options.temperature,
        ignore_eos: config.options.ignore_eos,
        slo: config.slo,
        request_timeout_s: config.options.request_timeout.as_secs_f64(),
    }
}
