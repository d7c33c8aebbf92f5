//! The model and its golden greedy outputs, and the comparison of a
//! server's tokens against them.
//!
//! The golden file (`shared/golden/smollm2-135m.json`) holds greedy
//! continuations computed by an independent float32 implementation. A
//! correct engine that sums in another order may pick the other token where
//! the top two logits are nearly tied, after which the continuations part
//! ways; so [`check_greedy`] accepts a mismatch only at a step whose golden
//! margin (top-1 minus top-2 logit) is below [`TIE_MARGIN`], and compares
//! nothing after it. Every other step must match exactly.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

use crate::binaries::{binaries, workspace_root, Binaries};

/// Golden margins below this may flip under a different summation order.
pub const TIE_MARGIN: f64 = 0.02;

/// One prompt of the golden file.
#[derive(Debug, Clone, Deserialize)]
pub struct GoldenPrompt {
    /// "P1", "P2", …, "CHAT".
    pub name: String,
    /// The prompt as text (for CHAT, the user's message).
    pub text: String,
    /// The prompt's token ids, as the model's tokenizer gives them.
    pub prompt_ids: Vec<u32>,
    /// Tokens generated: `greedy_ids.len()`.
    pub n_new: usize,
    /// Greedy continuation with end-of-sequence tokens not stopping it.
    pub greedy_ids: Vec<u32>,
    /// `greedy_ids` as text, special tokens spelt out.
    pub greedy_text: String,
    /// Index in `greedy_ids` of the first end-of-sequence token, if any.
    pub eos_index: Option<usize>,
    /// Top-1 minus top-2 logit at each greedy step.
    pub step_margins: Vec<f64>,
}

/// The golden file.
#[derive(Debug, Clone, Deserialize)]
pub struct Golden {
    /// The model's end-of-sequence token ids.
    pub eos_ids: Vec<u32>,
    /// The prompts, in file order.
    pub prompts: Vec<GoldenPrompt>,
}

impl Golden {
    /// The prompt called `name`.
    pub fn prompt(&self, name: &str) -> Result<&GoldenPrompt> {
        self.prompts
            .iter()
            .find(|p| p.name == name)
            .with_context(|| format!("no golden prompt {name}"))
    }

    /// The prompts continued from raw text (every one but the chat prompt).
    pub fn text_prompts(&self) -> impl Iterator<Item = &GoldenPrompt> {
        self.prompts.iter().filter(|p| p.name != "CHAT")
    }
}

/// What every end-to-end test needs: the executables, the model, the golden
/// outputs.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The executables under test.
    pub binaries: Binaries,
    /// The GGUF model file.
    pub model: PathBuf,
    /// The golden greedy outputs of `model`.
    pub golden: Golden,
}

/// The fixtures, or `None` when the model or golden file is absent outside
/// CI (after printing why the test is skipped). In CI (`CI` set) their
/// absence is an error.
pub fn setup() -> Result<Option<Setup>> {
    let model = workspace_root().join("models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let golden = workspace_root().join("../shared/golden/smollm2-135m.json");
    if !model.is_file() || !golden.is_file() {
        let what = format!(
            "{} or {} is missing; run scripts/fetch-model.sh",
            model.display(),
            golden.display()
        );
        if std::env::var_os("CI").is_some() {
            bail!("{what}");
        }
        eprintln!("SKIPPED: {what}");
        return Ok(None);
    }
    let text = std::fs::read_to_string(&golden)
        .with_context(|| format!("cannot read {}", golden.display()))?;
    let golden: Golden = serde_json::from_str(&text)
        .with_context(|| format!("cannot parse {}", golden.display()))?;
    let binaries = binaries()?.clone();
    Ok(Some(Setup {
        binaries,
        model,
        golden,
    }))
}

/// Checks `got`, the greedy output of `prompt`'s ids for `prompt.n_new`
/// tokens, against the golden ids, allowing a divergence only at a near tie
/// (see the module docs).
pub fn check_greedy(prompt: &GoldenPrompt, got: &[u32]) -> Result<()> {
    if got.len() != prompt.greedy_ids.len() {
        bail!(
            "{}: got {} tokens, expected {}: {got:?}",
            prompt.name,
            got.len(),
            prompt.greedy_ids.len()
        );
    }
    check_greedy_prefix(prompt, got)
}

/// Like [`check_greedy`] for a run of fewer tokens: `got` must follow the
/// golden ids as far as it goes.
pub fn check_greedy_prefix(prompt: &GoldenPrompt, got: &[u32]) -> Result<()> {
    let expected = &prompt.greedy_ids;
    let Some(step) = got.iter().zip(expected).position(|(a, b)| a != b) else {
        if got.len() > expected.len() {
            bail!(
                "{}: got {} tokens, the golden run has {}",
                prompt.name,
                got.len(),
                expected.len()
            );
        }
        return Ok(());
    };
    let margin = prompt
        .step_margins
        .get(step)
        .copied()
        .unwrap_or(f64::INFINITY);
    if margin < TIE_MARGIN {
        // A near tie: either token is a correct greedy choice, and the rest
        // of the continuation is no longer comparable.
        eprintln!(
            "{}: diverged at step {step}, a near tie (margin {margin}); not compared further",
            prompt.name
        );
        return Ok(());
    }
    bail!(
        "{}: token {step} is {} but the golden run has {} (margin {margin}, not a tie)\n got:    {got:?}\n golden: {expected:?}",
        prompt.name,
        got[step],
        expected[step]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt() -> GoldenPrompt {
        GoldenPrompt {
            name: "T".into(),
            text: String::new(),
            prompt_ids: vec![1],
            n_new: 4,
            greedy_ids: vec![10, 11, 12, 13],
            greedy_text: String::new(),
            eos_index: None,
            step_margins: vec![1.0, 0.01, 1.0, 1.0],
        }
    }

    #[test]
    fn exact_match_passes() {
        assert!(check_greedy(&prompt(), &[10, 11, 12, 13]).is_ok());
        assert!(check_greedy_prefix(&prompt(), &[10, 11]).is_ok());
    }

    #[test]
    fn divergence_is_allowed_only_at_a_near_tie() {
        // Step 1 is a near tie: anything after it is not compared.
        assert!(check_greedy(&prompt(), &[10, 99, 98, 97]).is_ok());
        // Step 0 and step 2 are not.
        assert!(check_greedy(&prompt(), &[99, 11, 12, 13]).is_err());
        assert!(check_greedy(&prompt(), &[10, 11, 99, 13]).is_err());
    }

    #[test]
    fn wrong_lengths_fail() {
        assert!(check_greedy(&prompt(), &[10, 11, 12]).is_err());
        assert!(check_greedy(&prompt(), &[10, 11, 12, 13, 14]).is_err());
        assert!(check_greedy_prefix(&prompt(), &[10, 11, 12, 13, 14]).is_err());
    }
}
