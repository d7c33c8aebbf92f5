//! The token history a sampler needs for its penalties, and the penalties.
//!
//! Two rules coexist, as in most serving stacks:
//! - the repetition penalty (Keskar et al., 2019, "CTRL", section 4.1, in the
//!   form Hugging Face `transformers` uses) touches every token seen in the
//!   prompt or the output: a positive logit is divided by the penalty, a
//!   negative one multiplied, so a penalty above 1 always makes it less likely;
//! - the frequency and presence penalties (OpenAI API) touch output tokens
//!   only: `logit -= count * frequency + (count > 0) * presence`.
//!
//! The repetition penalty is applied first. Token ids beyond the logits'
//! length are kept in the history but ignored when penalising.

use std::collections::{HashMap, HashSet};

/// Which tokens have been seen, and how often each was generated.
#[derive(Debug, Clone, Default)]
pub(super) struct TokenHistory {
    /// Every distinct token of the prompt and the output.
    seen: HashSet<u32>,
    /// Occurrences of each token in the output; the prompt is not counted.
    output_counts: HashMap<u32, u32>,
}

impl TokenHistory {
    /// Starts a history from the prompt's token ids.
    pub(super) fn new(prompt: &[u32]) -> Self {
        Self {
            seen: prompt.iter().copied().collect(),
            output_counts: HashMap::new(),
        }
    }

    /// Adds more prompt tokens (a prompt prefilled in chunks).
    pub(super) fn extend_prompt(&mut self, tokens: &[u32]) {
        self.seen.extend(tokens.iter().copied());
    }

    /// Records a token the sampler has just produced.
    pub(super) fn record_output(&mut self, token: u32) {
        self.seen.insert(token);
        *self.output_counts.entry(token).or_insert(0) += 1;
    }

    /// Applies the repetition penalty `repetition` (1 disables it) to every
    /// seen token of `logits`.
    ///
    /// Each token is changed independently, so the set's iteration order,
    /// which differs between processes, cannot change the result.
    pub(super) fn apply_repetition(&self, logits: &mut [f32], repetition: f32) {
        if repetition == 1.0 {
            return;
        }
        for &token in &self.seen {
            if let Some(logit) = logits.get_mut(token as usize) {
                *logit = if *logit > 0.0 {
                    *logit / repetition
                } else {
                    *logit * repetition
                };
            }
        }
    }

    /// Applies the OpenAI frequency and presence penalties to every token
    /// generated so far (0 disables each).
    pub(super) fn apply_frequency_presence(
        &self,
        logits: &mut [f32],
        frequency: f32,
        presence: f32,
    ) {
        if frequency == 0.0 && presence == 0.0 {
            return;
        }
        for (&token, &count) in &self.output_counts {
            if let Some(logit) = logits.get_mut(token as usize) {
                // Every entry has count >= 1, so presence always applies.
                *logit -= count as f32 * frequency + presence;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_tokens_get_repetition_but_not_frequency() {
        let history = TokenHistory::new(&[1]);
        let mut logits = vec![2.0, 2.0, -2.0];
        history.apply_repetition(&mut logits, 2.0);
        history.apply_frequency_presence(&mut logits, 1.0, 1.0);
        assert_eq!(logits, vec![2.0, 1.0, -2.0]);
    }

    #[test]
    fn out_of_range_tokens_are_ignored() {
        let mut history = TokenHistory::new(&[7]);
        history.record_output(9);
        let mut logits = vec![1.0, 1.0];
        history.apply_repetition(&mut logits, 2.0);
        history.apply_frequency_presence(&mut logits, 1.0, 1.0);
        assert_eq!(logits, vec![1.0, 1.0]);
    }

    #[test]
    fn output_counts_accumulate() {
        let mut history = TokenHistory::new(&[]);
        history.record_output(0);
        history.record_output(0);
        history.record_output(2);
        let mut logits = vec![0.0, 0.0, 0.0];
        history.apply_frequency_presence(&mut logits, 0.5, 0.25);
        assert_eq!(logits, vec![-1.25, 0.0, -0.75]);
    }
}
