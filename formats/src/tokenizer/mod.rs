//! Text to token ids and back, built from a GGUF file's `tokenizer.ggml.*`
//! metadata or from a Hugging Face `tokenizer.json`.
//!
//! Both sources end up as a [`tokenizers::Tokenizer`] with no post-processor,
//! padding or truncation: the BOS rule is applied here, by [`Tokenizer::encode`],
//! so that a GGUF file and the Hugging Face folder it was converted from give
//! the same ids. Special-token text (e.g. `<|im_start|>`) is always recognised
//! in the input, whatever `add_special_tokens` says.
//!
//! Invariants: every id below [`Tokenizer::vocab_size`] that the vocabulary
//! names has a token string; `bos_id` and every id in `eos_ids` lie below
//! `vocab_size`; `eos_ids` holds no duplicates and starts with the end id the
//! source declares, if it declares one.

mod bpe;
mod bytes;
mod gguf;
mod hf_dir;
mod spm;

pub(crate) use hf_dir::{read_json_file, special_token_text};

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::ByteEncoding;

use crate::gguf::GgufFile;
use crate::FormatError;

/// Control-token texts that end a turn or a document in common model
/// families. A control token spelled like one of these also stops generation,
/// whatever end id the file declares: chat models often declare the document
/// end but stop a turn with another token (SmolLM2 declares `<|im_end|>` and
/// also ends documents with `<|endoftext|>`).
const END_MARKERS: [&str; 7] = [
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<|end|>",
    "</s>",
    "<end_of_turn>",
];

/// A model's tokenizer with its special-token rules.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    /// Ids that end generation (EOS, end-of-turn).
    eos_ids: Vec<u32>,
    /// Whether `encode(_, true)` prepends BOS.
    add_bos: bool,
    /// How the vocabulary's token strings spell bytes.
    bytes: ByteEncoding,
    /// Added tokens (matched verbatim in text), each with whether it is
    /// special (skipped by `decode(_, true)`).
    added: HashMap<u32, bool>,
    /// One past the largest token id.
    vocab_size: usize,
    /// The file or folder the tokenizer came from, for error messages.
    origin: PathBuf,
}

/// What a source (GGUF metadata or a Hugging Face folder) supplies.
struct Parts {
    /// Without post-processor, padding or truncation.
    inner: tokenizers::Tokenizer,
    bytes: ByteEncoding,
    bos_id: Option<u32>,
    /// End ids the source declares, most authoritative first.
    declared_eos: Vec<u32>,
    add_bos: bool,
    origin: PathBuf,
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*`
    /// metadata. Supported: `gpt2` (byte-level BPE, with the pre-tokenizer
    /// named by `tokenizer.ggml.pre`) and `llama` (SentencePiece BPE with
    /// byte fallback).
    pub fn from_gguf(file: &GgufFile) -> Result<Tokenizer, FormatError> {
        Self::assemble(gguf::parts(file)?)
    }

    /// Builds the tokenizer of a Hugging Face folder: `tokenizer.json`, with
    /// BOS, EOS and the BOS rule from `tokenizer_config.json` and the end ids
    /// of `generation_config.json` and `config.json` where present.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer, FormatError> {
        Self::assemble(hf_dir::parts(dir)?)
    }

    /// Token ids for `text`. Special-token text (e.g. `<|im_start|>`) maps to
    /// its id. With `add_special_tokens`, BOS is prepended if the model asks
    /// for it ([`Tokenizer::add_bos`]); it is not deduplicated against a BOS
    /// already spelled out in `text`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, FormatError> {
        let encoding = self
            .inner
            .encode_fast(text, false)
            .map_err(|e| self.error(format!("cannot encode text: {e}")))?;

        let bos = self.bos_id.filter(|_| add_special_tokens && self.add_bos);
        let mut ids = Vec::with_capacity(encoding.len() + 1);
        ids.extend(bos);
        ids.extend_from_slice(encoding.get_ids());
        Ok(ids)
    }

    /// Text for `ids`; special tokens are rendered unless `skip_special`.
    /// Byte sequences that are not valid UTF-8 become U+FFFD. An id outside
    /// the vocabulary is an error.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, FormatError> {
        if let Some(&bad) = ids.iter().find(|&&id| self.inner.id_to_token(id).is_none()) {
            return Err(self.error(format!(
                "cannot decode id {bad}: it is not in the vocabulary of {} tokens",
                self.vocab_size
            )));
        }
        self.inner
            .decode(ids, skip_special)
            .map_err(|e| self.error(format!("cannot decode ids: {e}")))
    }

    /// The exact bytes token `id` contributes to the text, or `None` for an id
    /// outside the vocabulary. Byte-level pieces are mapped back through the
    /// GPT-2 alphabet, SentencePiece `▁` becomes a space and `<0xNN>` the byte
    /// `NN`; added and special tokens give their text.
    ///
    /// Concatenating the bytes of consecutive tokens gives the decoded text,
    /// except that SentencePiece's `decode` drops the space it prefixed to the
    /// very start of the text. A token may carry part of a UTF-8 sequence.
    pub fn token_bytes(&self, id: u32) -> Option<Vec<u8>> {
        let piece = self.inner.id_to_token(id)?;
        if self.added.contains_key(&id) {
            return Some(piece.into_bytes());
        }
        Some(self.bytes.token_bytes(&piece))
    }

    /// One past the largest token id: the number of rows a logits vector
    /// needs to cover every token.
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// Whether `id` is a special (control) token, which `decode(_, true)`
    /// leaves out.
    pub fn is_special(&self, id: u32) -> bool {
        self.added.get(&id).copied().unwrap_or(false)
    }

    /// The texts of every special (control) token, e.g. `<|im_start|>`.
    pub fn special_token_texts(&self) -> Vec<String> {
        let mut texts: Vec<String> = self
            .added
            .iter()
            .filter(|(_, &special)| special)
            .filter_map(|(&id, _)| self.inner.id_to_token(id))
            .collect();
        texts.sort();
        texts
    }

    /// The id of the token whose string is exactly `text` (a vocabulary
    /// piece such as `Ġthe`, or a special token such as `<|im_end|>`).
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.inner.token_to_id(text)
    }

    /// The vocabulary string of token `id`, as stored (byte-level pieces stay
    /// in the GPT-2 alphabet; see [`Tokenizer::token_bytes`] for the text).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// The beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Whether `encode(_, true)` prepends BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Ids that end generation, the declared end id first.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }

    /// The BOS token's text (e.g. `<s>`), for chat templates.
    pub fn bos_token(&self) -> Option<String> {
        self.bos_id.and_then(|id| self.inner.id_to_token(id))
    }

    /// The first end token's text (e.g. `<|im_end|>`), for chat templates.
    pub fn eos_token(&self) -> Option<String> {
        self.eos_ids
            .first()
            .and_then(|&id| self.inner.id_to_token(id))
    }

    /// Checks what a source supplied and derives the rest.
    fn assemble(parts: Parts) -> Result<Tokenizer, FormatError> {
        let error = |reason: String| FormatError::Tokenizer {
            path: parts.origin.clone(),
            reason,
        };

        let vocab_size = parts
            .inner
            .get_vocab(true)
            .values()
            .max()
            .map_or(0, |&max| max as usize + 1);
        let in_vocab = |id: u32| (id as usize) < vocab_size;
        if let Some(bos) = parts.bos_id.filter(|&id| !in_vocab(id)) {
            return Err(error(format!(
                "BOS id {bos} is outside the vocabulary of {vocab_size}"
            )));
        }
        if let Some(eos) = parts.declared_eos.iter().find(|&&id| !in_vocab(id)) {
            return Err(error(format!(
                "end id {eos} is outside the vocabulary of {vocab_size}"
            )));
        }

        let added: HashMap<u32, bool> = parts
            .inner
            .get_added_tokens_decoder()
            .into_iter()
            .map(|(id, token)| (id, token.special))
            .collect();
        let eos_ids = end_ids(&parts.inner, &added, &parts.declared_eos);
        tracing::debug!(
            vocab_size,
            bos_id = parts.bos_id,
            add_bos = parts.add_bos,
            ?eos_ids,
            "tokenizer built"
        );

        Ok(Tokenizer {
            inner: parts.inner,
            bos_id: parts.bos_id,
            eos_ids,
            add_bos: parts.add_bos,
            bytes: parts.bytes,
            added,
            vocab_size,
            origin: parts.origin,
        })
    }

    fn error(&self, reason: String) -> FormatError {
        FormatError::Tokenizer {
            path: self.origin.clone(),
            reason,
        }
    }
}

/// The declared end ids, deduplicated, then every special token spelled like
/// one of [`END_MARKERS`].
fn end_ids(
    inner: &tokenizers::Tokenizer,
    added: &HashMap<u32, bool>,
    declared: &[u32],
) -> Vec<u32> {
    let markers = END_MARKERS
        .iter()
        .filter_map(|text| inner.token_to_id(text))
        .filter(|id| added.get(id).copied().unwrap_or(false));

    let mut ids: Vec<u32> = Vec::new();
    for id in declared.iter().copied().chain(markers) {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids
}
