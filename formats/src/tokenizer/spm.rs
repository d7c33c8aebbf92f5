//! SentencePiece BPE (`tokenizer.ggml.model = llama`): Llama 1/2, Mistral
//! v0.1 and other models converted from a SentencePiece `tokenizer.model`.
//!
//! SentencePiece's BPE repeatedly joins the adjacent pair whose joined piece
//! has the highest score. A ranked-merge BPE does the same if the merges are
//! ordered by that score, so the merges are derived from the vocabulary: every
//! way of cutting a piece into two pieces that are themselves in the
//! vocabulary, ordered by the whole piece's score (highest first), then by the
//! longer left half, then by the longer right half. This is the conversion
//! Hugging Face's `convert_slow_tokenizer` applies, so the result matches a
//! Llama `tokenizer.json`.
//!
//! Text is normalized the SentencePiece way: spaces become `▁`, and with
//! `tokenizer.ggml.add_space_prefix` (default true) a `▁` is put in front.
//! Characters the vocabulary lacks fall back to `<0xNN>` byte tokens.

use std::cmp::Ordering;

use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::decoders::strip::Strip;
use tokenizers::models::bpe::{Merges, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormalizerSequence};
use tokenizers::{DecoderWrapper, NormalizerWrapper};

use super::gguf::{vocab_map, Meta};
use crate::FormatError;

/// SentencePiece's visible space.
const SPACE_MARK: &str = "\u{2581}";

/// Builds a SentencePiece-style BPE tokenizer (no added tokens yet).
pub(super) fn build(
    meta: &Meta<'_>,
    tokens: &[&str],
) -> Result<tokenizers::Tokenizer, FormatError> {
    const SCORES: &str = "tokenizer.ggml.scores";
    let scores = meta.floats(SCORES)?.ok_or_else(|| {
        meta.error(format!(
            "metadata `{SCORES}` is missing; SentencePiece merges need it"
        ))
    })?;
    let scores = meta.require_len(SCORES, scores, tokens.len())?;
    let add_space_prefix = meta
        .bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let unknown = meta
        .id("tokenizer.ggml.unknown_token_id")?
        .and_then(|id| tokens.get(id as usize).copied());

    let vocab = vocab_map(tokens).map_err(|e| meta.error(e))?;
    let merges = derive_merges(tokens, &scores, |piece| vocab.get(piece).copied());
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(true)
        .fuse_unk(true);
    if let Some(unknown) = unknown {
        builder = builder.unk_token(unknown.to_owned());
    }
    let model = builder
        .build()
        .map_err(|e| meta.error(format!("invalid SentencePiece vocabulary: {e}")))?;

    let mut tokenizer = tokenizers::Tokenizer::new(model);
    tokenizer
        .with_normalizer(Some(
            normalizer(add_space_prefix).map_err(|e| meta.error(e))?,
        ))
        .map_err(|e| meta.error(format!("cannot set the normalizer: {e}")))?;
    tokenizer.with_decoder(Some(decoder(add_space_prefix).map_err(|e| meta.error(e))?));
    Ok(tokenizer)
}

/// Spaces to `▁`, with a leading `▁` if `add_space_prefix`.
fn normalizer(add_space_prefix: bool) -> Result<NormalizerWrapper, String> {
    let replace = Replace::new(" ", SPACE_MARK)
        .map_err(|e| format!("cannot build the space normalizer: {e}"))?;
    let mut steps: Vec<NormalizerWrapper> = Vec::new();
    if add_space_prefix {
        steps.push(Prepend::new(SPACE_MARK.to_owned()).into());
    }
    steps.push(replace.into());
    Ok(NormalizerSequence::new(steps).into())
}

/// `▁` to spaces, byte tokens to bytes, and the prefixed space dropped again.
fn decoder(add_space_prefix: bool) -> Result<DecoderWrapper, String> {
    let replace = Replace::new(SPACE_MARK, " ")
        .map_err(|e| format!("cannot build the space decoder: {e}"))?;
    let mut steps: Vec<DecoderWrapper> = vec![
        replace.into(),
        ByteFallback::new().into(),
        Fuse::new().into(),
    ];
    if add_space_prefix {
        steps.push(Strip::new(' ', 1, 0).into());
    }
    Ok(DecoderSequence::new(steps).into())
}

/// One way of cutting a piece into two vocabulary pieces.
struct Cut<'a> {
    left: &'a str,
    right: &'a str,
    left_id: u32,
    right_id: u32,
    /// The score of the whole piece.
    score: f32,
}

impl Cut<'_> {
    /// Merge order: higher score first, then longer left half, then longer
    /// right half (lengths in characters).
    fn rank_order(&self, other: &Self) -> Ordering {
        other
            .score
            .total_cmp(&self.score)
            .then_with(|| other.left.chars().count().cmp(&self.left.chars().count()))
            .then_with(|| other.right.chars().count().cmp(&self.right.chars().count()))
    }
}

/// Ranked merges for SentencePiece pieces `pieces` with `scores`; `lookup`
/// gives a piece's id. Pieces listed twice are considered once.
fn derive_merges(pieces: &[&str], scores: &[f32], lookup: impl Fn(&str) -> Option<u32>) -> Merges {
    let mut cuts: Vec<Cut<'_>> = Vec::new();
    for (id, (piece, &score)) in pieces.iter().zip(scores).enumerate() {
        if lookup(piece) != u32::try_from(id).ok() {
            continue;
        }

        let start = cuts.len();
        for (at, _) in piece.char_indices().skip(1) {
            let (left, right) = piece.split_at(at);
            if let (Some(left_id), Some(right_id)) = (lookup(left), lookup(right)) {
                cuts.push(Cut {
                    left,
                    right,
                    left_id,
                    right_id,
                    score,
                });
            }
        }
        cuts[start..].sort_by_key(|cut| (cut.left_id, cut.right_id));
    }

    // A stable sort, so that equal ranks keep vocabulary order.
    cuts.sort_by(Cut::rank_order);
    cuts.into_iter()
        .map(|cut| (cut.left.to_owned(), cut.right.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn merges_follow_the_joined_piece_score() {
        let pieces = ["a", "b", "c", "ab", "bc", "abc"];
        let scores = [0.0, 0.0, 0.0, -1.0, -0.5, -2.0];
        let ids: HashMap<&str, u32> = pieces.iter().zip(0..).map(|(p, i)| (*p, i)).collect();
        let merges = derive_merges(&pieces, &scores, |p| ids.get(p).copied());
        let pairs: Vec<(&str, &str)> = merges
            .iter()
            .map(|(l, r)| (l.as_str(), r.as_str()))
            .collect();
        // "bc" outranks "ab"; "abc" has two cuts, the longer left half first.
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("ab", "c"), ("a", "bc")]);
    }

    #[test]
    fn cuts_respect_character_boundaries() {
        let pieces = ["▁", "é", "▁é"];
        let ids: HashMap<&str, u32> = pieces.iter().zip(0..).map(|(p, i)| (*p, i)).collect();
        let merges = derive_merges(&pieces, &[0.0, 0.0, -1.0], |p| ids.get(p).copied());
        assert_eq!(merges, [("▁".to_owned(), "é".to_owned())]);
    }
}
