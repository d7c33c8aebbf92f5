//! What a request asks of the sampler, and the checks that keep it sane.
//!
//! Every bound here is enforced before a [`super::Sampler`] exists, so the
//! sampling code can assume finite parameters in their documented ranges. The
//! error messages are returned to API clients verbatim as `INVALID_ARGUMENT`:
//! each names the parameter, its allowed range and the value that was sent.

/// Largest temperature accepted. Beyond this every distribution is uniform to
/// within float noise, so a larger value is almost certainly a client bug.
pub const MAX_TEMPERATURE: f32 = 100.0;

/// Largest repetition penalty accepted. At 10 a repeated token's logit is
/// already scaled tenfold; larger values only signal a confused client.
pub const MAX_REPETITION_PENALTY: f32 = 10.0;

/// Bound on the magnitude of the frequency and presence penalties, matching
/// the range the OpenAI API documents for them.
pub const MAX_ABS_OPENAI_PENALTY: f32 = 2.0;

/// How to pick tokens. The defaults are greedy decoding with no penalties.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SamplingParams {
    /// 0 means greedy (argmax); otherwise logits are divided by it. Default 0.
    pub temperature: f32,
    /// Keep only the k most likely tokens; 0 disables. Default 0.
    pub top_k: usize,
    /// Keep the smallest set of tokens whose probability reaches p; 1 disables. Default 1.
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely; 0 disables. Default 0.
    pub min_p: f32,
    /// CTRL-style penalty on tokens already in the prompt or output; 1 disables. Default 1.
    pub repetition_penalty: f32,
    /// Subtracted from a logit once per earlier occurrence in the output. Default 0.
    pub frequency_penalty: f32,
    /// Subtracted from a logit if the token occurred in the output. Default 0.
    pub presence_penalty: f32,
    /// Seed for reproducible sampling; `None` draws one from the OS.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Checks every field against its allowed range and reports the first
    /// one that is out of it. `top_k` and `seed` accept any value.
    pub fn validate(&self) -> Result<(), SamplingError> {
        // `contains` is false for NaN, so one range test also rejects it.
        if !(0.0..=MAX_TEMPERATURE).contains(&self.temperature) {
            return Err(SamplingError::Temperature {
                value: self.temperature,
            });
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(SamplingError::TopP { value: self.top_p });
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return Err(SamplingError::MinP { value: self.min_p });
        }
        let rep = self.repetition_penalty;
        if !(rep > 0.0 && rep <= MAX_REPETITION_PENALTY) {
            return Err(SamplingError::RepetitionPenalty { value: rep });
        }
        let openai_range = -MAX_ABS_OPENAI_PENALTY..=MAX_ABS_OPENAI_PENALTY;
        if !openai_range.contains(&self.frequency_penalty) {
            return Err(SamplingError::FrequencyPenalty {
                value: self.frequency_penalty,
            });
        }
        if !openai_range.contains(&self.presence_penalty) {
            return Err(SamplingError::PresencePenalty {
                value: self.presence_penalty,
            });
        }
        Ok(())
    }
}

/// Why a sampler could not be built.
///
/// All variants but [`SamplingError::Entropy`] are the client's fault and map
/// to `INVALID_ARGUMENT`; their messages tell the client what to change.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplingError {
    /// `temperature` is negative, too large, or not a number.
    #[error("temperature must be a finite number in [0, {max}], got {value}", max = MAX_TEMPERATURE)]
    Temperature {
        /// The value the request carried.
        value: f32,
    },
    /// `top_p` is outside (0, 1].
    #[error("top_p must be in (0, 1], got {value}")]
    TopP {
        /// The value the request carried.
        value: f32,
    },
    /// `min_p` is outside [0, 1].
    #[error("min_p must be in [0, 1], got {value}")]
    MinP {
        /// The value the request carried.
        value: f32,
    },
    /// `repetition_penalty` is not positive, too large, or not a number.
    #[error(
        "repetition_penalty must be in (0, {max}] (1 disables it), got {value}",
        max = MAX_REPETITION_PENALTY
    )]
    RepetitionPenalty {
        /// The value the request carried.
        value: f32,
    },
    /// `frequency_penalty` is outside [-2, 2].
    #[error(
        "frequency_penalty must be in [-{max}, {max}], got {value}",
        max = MAX_ABS_OPENAI_PENALTY
    )]
    FrequencyPenalty {
        /// The value the request carried.
        value: f32,
    },
    /// `presence_penalty` is outside [-2, 2].
    #[error(
        "presence_penalty must be in [-{max}, {max}], got {value}",
        max = MAX_ABS_OPENAI_PENALTY
    )]
    PresencePenalty {
        /// The value the request carried.
        value: f32,
    },
    /// No seed was given and the OS could not supply one. This is a fault of
    /// the host, not of the request.
    #[error("cannot seed the sampler from OS entropy: {reason}")]
    Entropy {
        /// The OS error, as text.
        reason: String,
    },
}

impl SamplingError {
    /// A stable, low-cardinality name for metrics and logs.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Temperature { .. } => "invalid_temperature",
            Self::TopP { .. } => "invalid_top_p",
            Self::MinP { .. } => "invalid_min_p",
            Self::RepetitionPenalty { .. } => "invalid_repetition_penalty",
            Self::FrequencyPenalty { .. } => "invalid_frequency_penalty",
            Self::PresencePenalty { .. } => "invalid_presence_penalty",
            Self::Entropy { .. } => "entropy_unavailable",
        }
    }

    /// Whether the request, rather than the host, is at fault; such errors
    /// map to `INVALID_ARGUMENT`.
    pub fn is_invalid_argument(&self) -> bool {
        !matches!(self, Self::Entropy { .. })
    }
}
