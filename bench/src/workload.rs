//! What each request asks: its prompt and how many tokens it wants back.
//!
//! A request is named by a [`RequestKey`] (sweep point, phase, index) and
//! built from the seed and that key alone, so a workload is repeatable: the
//! same seed gives the same prompts on every run, every target, whatever the
//! concurrency and whichever request finishes first. Sweep points and the
//! warm-up get prompts of their own, so that a server's prefix cache cannot
//! carry one point's prompts into the next.
//!
//! Synthetic prompts are common English words. Their length is counted in
//! words, since the tool does not know the target's tokenizer; most of the
//! words are one token in the usual BPE vocabularies, and the prompt token
//! counts the server reports are in the results.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Deserialize;

use crate::BenchError;

/// Words of synthetic prompts: short, common, mostly one token each.
#[rustfmt::skip]
const WORDS: &[&str] = &[
    "the", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by", "at", "from",
    "that", "this", "it", "are", "be", "or", "an", "which", "one", "all", "were", "they", "not",
    "but", "had", "have", "his", "her", "their", "there", "when", "what", "some", "more", "time",
    "people", "year", "way", "day", "man", "world", "life", "hand", "part", "child", "eye",
    "place", "work", "week", "case", "point", "number", "group", "fact", "city", "water", "river",
    "house", "road", "light", "night", "market", "school", "story", "game", "music", "garden",
    "window", "table", "paper", "letter", "winter", "summer", "morning", "evening", "country",
    "small", "large", "old", "new", "long", "little", "great", "good", "high", "early", "young",
    "important", "public", "bad", "same", "able", "green", "quiet", "bright", "open", "simple",
    "make", "take", "see", "come", "think", "look", "want", "give", "use", "find", "tell", "ask",
    "seem", "feel", "try", "leave", "call", "keep", "bring", "begin", "show", "hear", "play",
    "run", "move", "live", "believe", "write", "read", "learn", "build", "walk", "carry",
];

/// How many words a synthetic sentence has before its full stop.
const SENTENCE_WORDS: usize = 12;

/// A length in words (prompts) or tokens (outputs): `fixed:N` or
/// `uniform:A-B` (inclusive, drawn per request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LengthSpec {
    /// Always `N`.
    Fixed(u32),
    /// Uniform in `min..=max`.
    Uniform {
        /// Smallest length.
        min: u32,
        /// Largest length.
        max: u32,
    },
}

impl LengthSpec {
    /// A length drawn from `rng` (nothing is drawn for a fixed length).
    pub fn sample(&self, rng: &mut impl Rng) -> u32 {
        match *self {
            LengthSpec::Fixed(n) => n,
            LengthSpec::Uniform { min, max } => rng.random_range(min..=max),
        }
    }
}

impl FromStr for LengthSpec {
    type Err = BenchError;

    fn from_str(text: &str) -> Result<Self, BenchError> {
        let invalid = |reason: &str| BenchError::InvalidSpec {
            what: "length",
            value: text.to_owned(),
            reason: reason.to_owned(),
        };
        let number = |s: &str| {
            s.trim()
                .parse::<u32>()
                .map_err(|_| invalid("lengths are whole numbers from 1"))
                .and_then(|n| {
                    if n == 0 {
                        Err(invalid("a length must be at least 1"))
                    } else {
                        Ok(n)
                    }
                })
        };
        match text.split_once(':') {
            Some(("fixed", n)) => Ok(LengthSpec::Fixed(number(n)?)),
            Some(("uniform", range)) => {
                let (a, b) = range
                    .split_once('-')
                    .ok_or_else(|| invalid("expected uniform:A-B"))?;
                let (min, max) = (number(a)?, number(b)?);
                if min > max {
                    return Err(invalid("the range's start is above its end"));
                }
                Ok(LengthSpec::Uniform { min, max })
            }
            _ => Err(invalid("expected fixed:N or uniform:A-B")),
        }
    }
}

impl fmt::Display for LengthSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LengthSpec::Fixed(n) => write!(f, "fixed:{n}"),
            LengthSpec::Uniform { min, max } => write!(f, "uniform:{min}-{max}"),
        }
    }
}

/// One line of a prompts file.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct FilePrompt {
    /// The prompt text, sent as it is.
    pub prompt: String,
    /// Tokens to generate; the workload's output length when absent.
    pub max_tokens: Option<u32>,
}

/// Where prompts come from.
#[derive(Clone, Debug, PartialEq)]
pub enum PromptSource {
    /// Synthetic text of this many words.
    Synthetic(LengthSpec),
    /// The lines of a JSONL file, in order, from the first line again for
    /// each sweep point and for the warm-up.
    File {
        /// The file, for the results.
        path: PathBuf,
        /// Its prompts; never empty.
        prompts: Vec<FilePrompt>,
    },
}

/// Reads a JSONL prompts file: one `{"prompt": "...", "max_tokens": N}` per
/// line (`max_tokens` optional); blank lines are skipped.
pub fn load_prompts(path: &Path) -> Result<Vec<FilePrompt>, BenchError> {
    let text = std::fs::read_to_string(path).map_err(|source| BenchError::Io {
        action: "read",
        path: path.to_owned(),
        source,
    })?;
    let bad = |line: usize, reason: String| BenchError::PromptFile {
        path: path.to_owned(),
        line,
        reason,
    };

    let mut prompts = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let prompt: FilePrompt = serde_json::from_str(line)
            .map_err(|e| bad(i + 1, format!("not a prompt object: {e}")))?;
        if prompt.max_tokens == Some(0) {
            return Err(bad(i + 1, "max_tokens must be at least 1".to_owned()));
        }
        prompts.push(prompt);
    }
    if prompts.is_empty() {
        return Err(bad(1, "the file holds no prompt".to_owned()));
    }
    Ok(prompts)
}

/// Whether a request is a warm-up one (not counted) or a measured one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sent before the measured requests of a point; not counted.
    Warmup,
    /// Counted in the point's figures.
    Measured,
}

/// Names a request within a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RequestKey {
    /// The sweep point's position, from 0.
    pub point: usize,
    /// Warm-up or measured.
    pub phase: Phase,
    /// The request's position in its phase, from 0.
    pub index: u64,
}

/// What one request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestSpec {
    /// The prompt text.
    pub prompt: String,
    /// Tokens to generate (exactly, when the server honours `ignore_eos`).
    pub max_tokens: u32,
}

/// The prompts and output lengths of a run.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// Where prompts come from.
    pub prompts: PromptSource,
    /// Tokens to generate, where a prompts file does not say.
    pub output_len: LengthSpec,
    /// Seed of every random choice.
    pub seed: u64,
}

impl Workload {
    /// The request named `key`; the same seed and key always give the same
    /// request.
    pub fn request(&self, key: RequestKey) -> RequestSpec {
        let mut rng = self.rng(key);
        match &self.prompts {
            PromptSource::Synthetic(len) => {
                let words = len.sample(&mut rng);
                let prompt = synthetic_text(&mut rng, words as usize);
                let max_tokens = self.output_len.sample(&mut rng);
                RequestSpec { prompt, max_tokens }
            }
            PromptSource::File { prompts, .. } => {
                // load_prompts refuses an empty file; a list built by hand
                // without prompts sends empty ones, which servers refuse.
                let count = prompts.len().max(1) as u64;
                let line = prompts.get((key.index % count) as usize);
                let max_tokens = line
                    .and_then(|l| l.max_tokens)
                    .unwrap_or_else(|| self.output_len.sample(&mut rng));
                let prompt = line.map(|l| l.prompt.clone()).unwrap_or_default();
                RequestSpec { prompt, max_tokens }
            }
        }
    }

    /// The random stream of one request, mixed from the seed and its key.
    fn rng(&self, key: RequestKey) -> ChaCha8Rng {
        let phase = match key.phase {
            Phase::Warmup => 1,
            Phase::Measured => 2,
        };
        let mut state = splitmix64(self.seed);
        for part in [key.point as u64, phase, key.index] {
            state = splitmix64(state ^ part);
        }
        ChaCha8Rng::seed_from_u64(state)
    }
}

/// `words` words of text drawn from `rng`, in sentences.
pub fn synthetic_text(rng: &mut impl Rng, words: usize) -> String {
    let mut text = String::with_capacity(words * 7);
    for i in 0..words {
        let word = WORDS[rng.random_range(0..WORDS.len())];
        if i > 0 {
            text.push(' ');
        }
        if i % SENTENCE_WORDS == 0 {
            let mut chars = word.chars();
            text.extend(chars.next().map(|c| c.to_ascii_uppercase()));
            text.push_str(chars.as_str());
        } else {
            text.push_str(word);
        }
        if i % SENTENCE_WORDS == SENTENCE_WORDS - 1 || i + 1 == words {
            text.push('.');
        }
    }
    text
}

/// One step of the SplitMix64 generator: a well-mixed 64-bit function of
/// its input, used to derive per-request seeds.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
