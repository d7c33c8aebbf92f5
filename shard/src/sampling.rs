//! Choosing the next token from logits: greedy, temperature, top-k, top-p,
//! min-p, repetition / frequency / presence penalties, seeded randomness.
//!
//! One [`Sampler`] serves one sequence. Per token, [`Sampler::sample`]:
//! 1. applies the penalties (see `history` for the exact rules);
//! 2. replaces NaN logits with -inf and +inf with the largest finite `f32`;
//! 3. with temperature 0 takes the argmax, the lowest id among ties;
//! 4. otherwise scales by the temperature, keeps the top-k, then the top-p
//!    nucleus, then the min-p survivors, and draws from what is left;
//! 5. records the token, so later penalties see it.
//!
//! Determinism: every rank of a tensor-parallel group samples on its own and
//! the coordinator checks that they agree. Two samplers built from the same
//! parameters, seed and prompt, fed the same logits, return the same tokens:
//! the RNG is ChaCha8 seeded from the request's seed, each non-greedy token
//! consumes exactly one draw, ties break by id, and sums run in a fixed order.

mod candidates;
mod history;
mod params;

pub use params::{
    SamplingError, SamplingParams, MAX_ABS_OPENAI_PENALTY, MAX_REPETITION_PENALTY, MAX_TEMPERATURE,
};

use candidates::Candidate;
use history::TokenHistory;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Most alternatives [`Sampled::top_logprobs`] can carry, as in the OpenAI API.
pub const MAX_TOP_LOGPROBS: usize = 20;

/// One sampled token and its log-probabilities.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampled {
    /// The chosen token id.
    pub token: u32,
    /// Natural-log probability of `token` under the distribution after
    /// penalties and temperature, before top-k / top-p / min-p (with
    /// temperature 0: the log-softmax of the penalised logits).
    pub logprob: f32,
    /// The most likely tokens under that same distribution as
    /// `(token, logprob)`, most likely first and ties by lower id; as many as
    /// [`Sampler::set_top_logprobs`] asked for, fewer if fewer tokens have
    /// non-zero probability. Empty by default.
    pub top_logprobs: Vec<(u32, f32)>,
}

/// Samples the tokens of one sequence: holds its parameters, its RNG and the
/// token history the penalties need.
#[derive(Debug, Clone)]
pub struct Sampler {
    params: SamplingParams,
    rng: ChaCha8Rng,
    history: TokenHistory,
    /// How many alternatives to report per token, at most [`MAX_TOP_LOGPROBS`].
    top_logprobs: usize,
    /// Reused across calls so that sampling does not allocate per token;
    /// grows to the vocabulary size once.
    scratch: Vec<Candidate>,
}

impl Sampler {
    /// Validates `params` and starts a sampler for a sequence whose prompt is
    /// `prompt` (token ids; they count for the repetition penalty only).
    ///
    /// Without a seed the RNG is seeded from the OS, which fails with
    /// [`SamplingError::Entropy`] only if the OS has no entropy to give.
    pub fn new(params: SamplingParams, prompt: &[u32]) -> Result<Self, SamplingError> {
        params.validate()?;
        let rng = match params.seed {
            Some(seed) => ChaCha8Rng::seed_from_u64(seed),
            None => ChaCha8Rng::try_from_os_rng().map_err(|e| SamplingError::Entropy {
                reason: e.to_string(),
            })?,
        };
        Ok(Self {
            params,
            rng,
            history: TokenHistory::new(prompt),
            top_logprobs: 0,
            scratch: Vec::new(),
        })
    }

    /// The parameters this sampler was built with.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// Adds prompt tokens that arrive after the sampler was made (a prompt
    /// prefilled in chunks), so the repetition penalty sees the whole prompt.
    pub fn extend_prompt(&mut self, tokens: &[u32]) {
        self.history.extend_prompt(tokens);
    }

    /// Asks for the `n` most likely alternatives with every token; `n` is
    /// capped at [`MAX_TOP_LOGPROBS`], and 0 (the default) turns them off.
    pub fn set_top_logprobs(&mut self, n: usize) {
        self.top_logprobs = n.min(MAX_TOP_LOGPROBS);
    }

    /// Picks the next token from `logits` (`[vocab]`, f32, the model's raw
    /// output for the last position) and records it in the history.
    ///
    /// `logits` is used as scratch: on return it holds the penalised logits
    /// with NaN replaced by -inf and +inf by `f32::MAX`.
    ///
    /// Never panics. NaN logits count as impossible tokens. If no token is
    /// possible (every logit -inf or NaN, or `logits` empty) the result is
    /// token 0 with logprob -inf and no alternatives; the caller should treat
    /// that as a model fault, as it is one.
    pub fn sample(&mut self, logits: &mut [f32]) -> Sampled {
        self.apply_penalties(logits);
        let (argmax, max) = candidates::sanitize_and_argmax(logits);

        let sampled = if max == f32::NEG_INFINITY {
            Sampled {
                token: 0,
                logprob: f32::NEG_INFINITY,
                top_logprobs: Vec::new(),
            }
        } else if self.params.temperature == 0.0 {
            self.greedy(logits, argmax, max)
        } else {
            self.draw(logits, argmax, max)
        };

        self.history.record_output(sampled.token);
        sampled
    }

    /// Applies the repetition, then the frequency and presence, penalties.
    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        self.history.apply_repetition(logits, p.repetition_penalty);
        self.history
            .apply_frequency_presence(logits, p.frequency_penalty, p.presence_penalty);
    }

    /// Temperature 0: the argmax, with log-probabilities at temperature 1.
    fn greedy(&mut self, logits: &[f32], argmax: u32, max: f32) -> Sampled {
        let (total, best) = candidates::mass_and_best(logits, max, 1.0, self.top_logprobs);
        let log_z = total.ln() as f32;

        // The argmax's scaled logit is 0, so its logprob is -log_z.
        Sampled {
            token: argmax,
            logprob: -log_z,
            top_logprobs: candidates::logprobs(&best, log_z),
        }
    }

    /// Temperature above 0: filter, then draw.
    fn draw(&mut self, logits: &[f32], argmax: u32, max: f32) -> Sampled {
        let temperature = self.params.temperature;
        let total = candidates::build(logits, max, temperature, &mut self.scratch);
        let log_z = total.ln() as f32;
        let best = candidates::best_of(&self.scratch, self.top_logprobs);
        let top_logprobs = candidates::logprobs(&best, log_z);

        // Filter; top-p measures against the top-k mass (see `candidates`).
        let p = &self.params;
        let top_k_mass = candidates::keep_top_k(&mut self.scratch, p.top_k).unwrap_or(total);
        candidates::keep_min_p(&mut self.scratch, p.min_p);
        candidates::keep_top_p(&mut self.scratch, p.top_p, top_k_mass);

        // Exactly one draw per token, whatever survived, so that the RNG
        // stream does not depend on the filters' outcome.
        let u: f64 = self.rng.random();
        match candidates::draw(&self.scratch, u) {
            Some(c) => Sampled {
                token: c.id,
                logprob: c.scaled - log_z,
                top_logprobs,
            },
            // Unreachable: the top token has weight 1 and survives every
            // filter. Fall back to it rather than panic.
            None => Sampled {
                token: argmax,
                logprob: -log_z,
                top_logprobs,
            },
        }
    }
}
