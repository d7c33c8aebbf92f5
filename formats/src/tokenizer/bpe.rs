//! Byte-level BPE (`tokenizer.ggml.model = gpt2`): GPT-2's scheme, used by
//! SmolLM, Qwen2, Llama 3 and many others.
//!
//! The vocabulary and the ranked merges come straight from the file
//! (`tokenizer.ggml.tokens`, `tokenizer.ggml.merges` as `"left right"`
//! strings). What differs between model families is how text is split into
//! words before merging; `tokenizer.ggml.pre` names it, and each name maps to
//! the pre-tokenizer of that family's own `tokenizer.json`.

use tokenizers::decoders::byte_level::ByteLevel;
use tokenizers::models::bpe::{Merges, BPE};
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{PreTokenizerWrapper, SplitDelimiterBehavior};

use super::gguf::{vocab_map, Meta};
use crate::FormatError;

/// Llama 3's word split: contractions in any case, letters with at most one
/// leading non-letter, numbers in runs of up to three digits, punctuation with
/// trailing newlines, and whitespace runs.
const LLAMA3_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// Qwen2's word split: Llama 3's, except that every digit stands alone.
const QWEN2_SPLIT: &str = concat!(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}",
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
);

/// The `tokenizer.ggml.pre` values understood, for error messages.
const SUPPORTED_PRE: &str = "default, gpt-2, smollm, starcoder, refact, qwen2, llama-bpe, llama3";

/// A family's word split before BPE merging.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreTokenizer {
    /// GPT-2's own regex (inside the byte-level step).
    Gpt2,
    /// Every digit alone, then GPT-2's regex (SmolLM, StarCoder).
    DigitsThenGpt2,
    /// Qwen2's regex.
    Qwen2,
    /// Llama 3's regex; whole words in the vocabulary skip merging.
    Llama3,
}

impl PreTokenizer {
    fn from_name(name: Option<&str>) -> Result<Self, String> {
        match name {
            None | Some("default" | "gpt-2") => Ok(Self::Gpt2),
            Some("smollm" | "starcoder" | "refact") => Ok(Self::DigitsThenGpt2),
            Some("qwen2") => Ok(Self::Qwen2),
            Some("llama-bpe" | "llama3" | "llama-v3") => Ok(Self::Llama3),
            Some(other) => Err(format!(
                "pre-tokenizer `{other}` (tokenizer.ggml.pre) is not supported; \
                 supported: {SUPPORTED_PRE}"
            )),
        }
    }

    fn build(self) -> Result<PreTokenizerWrapper, String> {
        let regex_then_bytes = |pattern: &str| -> Result<PreTokenizerWrapper, String> {
            let split = Split::new(
                SplitPattern::Regex(pattern.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )
            .map_err(|e| format!("cannot compile the word-split pattern: {e}"))?;
            Ok(Sequence::new(vec![
                split.into(),
                ByteLevel::new(false, true, false).into(),
            ])
            .into())
        };
        match self {
            Self::Gpt2 => Ok(ByteLevel::new(false, true, true).into()),
            Self::DigitsThenGpt2 => Ok(Sequence::new(vec![
                Digits::new(true).into(),
                ByteLevel::new(false, true, true).into(),
            ])
            .into()),
            Self::Qwen2 => regex_then_bytes(QWEN2_SPLIT),
            Self::Llama3 => regex_then_bytes(LLAMA3_SPLIT),
        }
    }
}

/// Builds a byte-level BPE tokenizer (no added tokens yet) from the metadata.
pub(super) fn build(
    meta: &Meta<'_>,
    tokens: &[&str],
) -> Result<tokenizers::Tokenizer, FormatError> {
    let pre =
        PreTokenizer::from_name(meta.str("tokenizer.ggml.pre")?).map_err(|e| meta.error(e))?;
    let merges = meta
        .strings("tokenizer.ggml.merges")?
        .ok_or_else(|| meta.error("metadata `tokenizer.ggml.merges` is missing".into()))?;
    let merges = parse_merges(&merges).map_err(|e| meta.error(e))?;
    let vocab = vocab_map(tokens).map_err(|e| meta.error(e))?;

    // llama.cpp (and Llama 3's tokenizer.json) take a word that is itself in
    // the vocabulary whole, without merging.
    let model = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(pre == PreTokenizer::Llama3)
        .build()
        .map_err(|e| meta.error(format!("invalid BPE vocabulary or merges: {e}")))?;

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer.with_pre_tokenizer(Some(pre.build().map_err(|e| meta.error(e))?));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    Ok(tokenizer)
}

/// Splits each `"left right"` merge at its first space after the first
/// character (a piece never starts a merge with its own separator).
fn parse_merges(merges: &[&str]) -> Result<Merges, String> {
    merges
        .iter()
        .enumerate()
        .map(|(rank, merge)| {
            let split = merge
                .char_indices()
                .skip(1)
                .find(|&(_, c)| c == ' ')
                .map(|(i, _)| i)
                .ok_or_else(|| {
                    format!("merge #{rank} `{merge}` is not two pieces separated by a space")
                })?;
            Ok((merge[..split].to_owned(), merge[split + 1..].to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_split_at_the_first_inner_space() {
        let merges = parse_merges(&["Ġ t", "a b", "  x"]).expect("valid merges");
        assert_eq!(merges[0], ("Ġ".to_owned(), "t".to_owned()));
        assert_eq!(merges[1], ("a".to_owned(), "b".to_owned()));
        assert_eq!(merges[2], (" ".to_owned(), "x".to_owned()));
        assert!(parse_merges(&["ab"]).is_err());
        assert!(parse_merges(&[""]).is_err());
    }

    #[test]
    fn unknown_pre_tokenizer_lists_the_supported_ones() {
        let err = PreTokenizer::from_name(Some("jais")).expect_err("jais is unsupported");
        assert!(
            err.contains("jais") && err.contains("smollm") && err.contains("qwen2"),
            "{err}"
        );
        assert_eq!(PreTokenizer::from_name(None), Ok(PreTokenizer::Gpt2));
    }

    /// The words `pre` cuts `text` into, in the byte-level alphabet.
    fn words(pre: PreTokenizer, text: &str) -> Vec<String> {
        use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer as _};
        let mut split = PreTokenizedString::from(text);
        pre.build()
            .expect("pattern compiles")
            .pre_tokenize(&mut split)
            .expect("splits");
        split
            .get_splits(OffsetReferential::Original, OffsetType::Byte)
            .into_iter()
            .map(|(word, _, _)| word.to_owned())
            .collect()
    }

    #[test]
    fn each_family_splits_words_its_own_way() {
        let text = "Hello12345 it's IT'S\n\n  ok";
        assert_eq!(
            words(PreTokenizer::Gpt2, text),
            ["Hello", "12345", "Ġit", "'s", "ĠIT", "'", "S", "ĊĊĠ", "Ġok"]
        );
        assert_eq!(
            words(PreTokenizer::DigitsThenGpt2, text),
            ["Hello", "1", "2", "3", "4", "5", "Ġit", "'s", "ĠIT", "'", "S", "ĊĊĠ", "Ġok"]
        );
        assert_eq!(
            words(PreTokenizer::Llama3, text),
            ["Hello", "123", "45", "Ġit", "'s", "ĠIT", "'S", "ĊĊ", "Ġ", "Ġok"]
        );
        assert_eq!(
            words(PreTokenizer::Qwen2, text),
            ["Hello", "1", "2", "3", "4", "5", "Ġit", "'s", "ĠIT", "'S", "ĊĊ", "Ġ", "Ġok"]
        );
    }
}
