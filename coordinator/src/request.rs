//! Turning a public API request into a validated, fully-defaulted generation
//! request for the scheduler.

use tessera_proto::v1 as pb;
use tessera_shard::sampling::SamplingParams;

use crate::error::{invalid, ServeError};

/// Tokens generated when a request does not say.
pub const DEFAULT_MAX_NEW_TOKENS: usize = 256;
/// Most stop sequences a request may carry.
const MAX_STOP_SEQUENCES: usize = 16;
/// Longest stop sequence, in bytes.
const MAX_STOP_LEN: usize = 256;
/// Most alternatives per token in logprobs.
const MAX_TOP_LOGPROBS: u32 = 20;

/// A validated request, ready to schedule.
#[derive(Debug, Clone)]
pub struct GenRequest {
    pub prompt: Vec<u32>,
    /// With the seed always set, so every rank samples alike.
    pub sampling: SamplingParams,
    pub max_new_tokens: usize,
    pub stop: Vec<String>,
    pub stop_token_ids: Vec<u32>,
    pub ignore_eos: bool,
    /// `Some(n)` returns logprobs with `n` alternatives.
    pub logprobs: Option<u32>,
}

/// Limits a request is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub vocab_size: usize,
    pub context: usize,
}

/// Validates sampling, stopping and logprob parameters for `prompt`.
pub fn build(
    prompt: Vec<u32>,
    sampling: Option<pb::SamplingParams>,
    stopping: Option<pb::StoppingParams>,
    logprobs: Option<pb::LogprobsParams>,
    limits: Limits,
) -> Result<GenRequest, ServeError> {
    if prompt.is_empty() {
        return Err(invalid(
            "the prompt is empty; send at least one token of text",
        ));
    }
    if let Some(&t) = prompt.iter().find(|&&t| t as usize >= limits.vocab_size) {
        return Err(invalid(format!(
            "prompt token id {t} is outside the vocabulary of {}",
            limits.vocab_size
        )));
    }
    if prompt.len() >= limits.context {
        return Err(ServeError::PromptTooLong {
            prompt: prompt.len(),
            context: limits.context,
            hint: "shorten the prompt so at least one token can be generated",
        });
    }
    let sampling = sampling_params(sampling.unwrap_or_default())?;
    let stopping = stopping.unwrap_or_default();
    let max_new_tokens = max_new_tokens(&stopping, prompt.len(), limits)?;
    check_stops(&stopping, limits)?;
    let logprobs = match logprobs {
        Some(l) if l.top_n > MAX_TOP_LOGPROBS => {
            return Err(invalid(format!(
                "logprobs.top_n must be at most {MAX_TOP_LOGPROBS}, got {}",
                l.top_n
            )))
        }
        Some(l) if l.enabled || l.top_n > 0 => Some(l.top_n),
        _ => None,
    };
    Ok(GenRequest {
        prompt,
        sampling,
        max_new_tokens,
        stop: stopping.stop,
        stop_token_ids: stopping.stop_token_ids,
        ignore_eos: stopping.ignore_eos,
        logprobs,
    })
}

fn sampling_params(p: pb::SamplingParams) -> Result<SamplingParams, ServeError> {
    let defaults = SamplingParams::default();
    let params = SamplingParams {
        temperature: p.temperature.unwrap_or(defaults.temperature),
        top_k: p.top_k.map_or(defaults.top_k, |k| k as usize),
        top_p: p.top_p.unwrap_or(defaults.top_p),
        min_p: p.min_p.unwrap_or(defaults.min_p),
        repetition_penalty: p.repetition_penalty.unwrap_or(defaults.repetition_penalty),
        frequency_penalty: p.frequency_penalty.unwrap_or(defaults.frequency_penalty),
        presence_penalty: p.presence_penalty.unwrap_or(defaults.presence_penalty),
        // Ranks sample independently, so they need the same seed.
        seed: Some(p.seed.unwrap_or_else(rand::random)),
    };
    params.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(params)
}

fn max_new_tokens(
    s: &pb::StoppingParams,
    prompt: usize,
    limits: Limits,
) -> Result<usize, ServeError> {
    let room = limits.context - prompt;
    match s.max_new_tokens {
        Some(0) => Err(invalid("max_new_tokens must be at least 1")),
        Some(n) if n as usize > room => Err(ServeError::PromptTooLong {
            prompt,
            context: limits.context,
            hint: "lower max_new_tokens or shorten the prompt",
        }),
        Some(n) => Ok(n as usize),
        None => Ok(DEFAULT_MAX_NEW_TOKENS.min(room)),
    }
}

fn check_stops(s: &pb::StoppingParams, limits: Limits) -> Result<(), ServeError> {
    if s.stop.len() > MAX_STOP_SEQUENCES {
        return Err(invalid(format!(
            "at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {}",
            s.stop.len()
        )));
    }
    if let Some(long) = s.stop.iter().find(|x| x.len() > MAX_STOP_LEN) {
        return Err(invalid(format!(
            "stop sequences may be at most {MAX_STOP_LEN} bytes, got one of {}",
            long.len()
        )));
    }
    if s.stop.iter().any(String::is_empty) {
        return Err(invalid("stop sequences must not be empty"));
    }
    if let Some(&t) = s
        .stop_token_ids
        .iter()
        .find(|&&t| t as usize >= limits.vocab_size)
    {
        return Err(invalid(format!(
            "stop token id {t} is outside the vocabulary of {}",
            limits.vocab_size
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        vocab_size: 100,
        context: 10,
    };

    fn stopping(n: u32) -> Option<pb::StoppingParams> {
        Some(pb::StoppingParams {
            max_new_tokens: Some(n),
            ..Default::default()
        })
    }

    #[test]
    fn defaults_fill_in_and_seed_is_set() -> Result<(), ServeError> {
        let r = build(vec![1, 2], None, None, None, LIMITS)?;
        assert_eq!(r.max_new_tokens, 8);
        assert!(r.sampling.seed.is_some());
        assert_eq!(r.sampling.temperature, 0.0);
        Ok(())
    }

    #[test]
    fn bad_values_name_what_to_fix() {
        let msg = |r: Result<GenRequest, ServeError>| r.err().map(|e| (e.code(), e.to_string()));
        let (code, m) = msg(build(vec![], None, None, None, LIMITS)).expect("empty prompt refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(m.contains("empty"), "{m}");
        let (code, m) =
            msg(build(vec![1], None, stopping(0), None, LIMITS)).expect("0 tokens refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(m.contains("max_new_tokens"), "{m}");
        let (code, _) =
            msg(build(vec![1; 10], None, None, None, LIMITS)).expect("too long refused");
        assert_eq!(code, tonic::Code::ResourceExhausted);
        let (code, _) =
            msg(build(vec![1; 5], None, stopping(6), None, LIMITS)).expect("past context refused");
        assert_eq!(code, tonic::Code::ResourceExhausted);
        let hot = Some(pb::SamplingParams {
            top_p: Some(0.0),
            ..Default::default()
        });
        let (code, m) = msg(build(vec![1], hot, None, None, LIMITS)).expect("top_p 0 refused");
        assert_eq!(code, tonic::Code::InvalidArgument);
        assert!(m.contains("top_p"), "{m}");
        let (_, m) = msg(build(vec![100], None, None, None, LIMITS)).expect("bad id refused");
        assert!(m.contains("vocabulary"), "{m}");
    }
}
