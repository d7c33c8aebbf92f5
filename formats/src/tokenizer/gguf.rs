//! A tokenizer from a GGUF file's `tokenizer.ggml.*` metadata, following the
//! keys llama.cpp's converters write:
//!
//! - `tokenizer.ggml.model`: `gpt2` (byte-level BPE) or `llama`
//!   (SentencePiece); see [`super::bpe`] and [`super::spm`].
//! - `tokenizer.ggml.tokens`: the vocabulary, indexed by id;
//!   `tokenizer.ggml.token_type`: one [`TokenType`] code per token.
//! - `tokenizer.ggml.{bos,eos,eot,eom}_token_id`, `add_bos_token`.
//!
//! Control and unknown tokens become special added tokens and user-defined
//! tokens plain added tokens, all matched verbatim in the input before
//! normalization, as llama.cpp does.

use tokenizers::models::bpe::Vocab;
use tokenizers::AddedToken;

use super::bytes::ByteEncoding;
use super::{bpe, spm, Parts};
use crate::gguf::{GgufFile, Value};
use crate::FormatError;

/// Token type codes of `tokenizer.ggml.token_type` (llama.cpp's
/// `llama_token_type`); codes not listed here are treated as normal tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TokenType {
    /// An ordinary piece (code 1; also unused, code 5, and unknown codes).
    Normal,
    /// The unknown-token placeholder, e.g. `<unk>` (code 2).
    Unknown,
    /// A control token such as `<s>` or `<|im_start|>` (code 3).
    Control,
    /// A token added by the model's authors, matched verbatim (code 4).
    UserDefined,
    /// A SentencePiece byte token `<0xNN>` (code 6).
    Byte,
}

impl TokenType {
    fn from_code(code: u64) -> Self {
        match code {
            2 => Self::Unknown,
            3 => Self::Control,
            4 => Self::UserDefined,
            6 => Self::Byte,
            _ => Self::Normal,
        }
    }
}

/// Typed access to the metadata, with errors that name the key.
pub(super) struct Meta<'a> {
    file: &'a GgufFile,
}

impl<'a> Meta<'a> {
    /// A tokenizer error about this file.
    pub(super) fn error(&self, reason: String) -> FormatError {
        FormatError::Tokenizer {
            path: self.file.path.clone(),
            reason,
        }
    }

    fn wrong_type(&self, key: &str, expected: &str) -> FormatError {
        self.error(format!("metadata `{key}` is not {expected}"))
    }

    fn get(&self, key: &str) -> Option<&'a Value> {
        self.file.metadata.get(key)
    }

    /// A string value; `None` if the key is absent.
    pub(super) fn str(&self, key: &str) -> Result<Option<&'a str>, FormatError> {
        self.get(key)
            .map(|v| v.as_str().ok_or_else(|| self.wrong_type(key, "a string")))
            .transpose()
    }

    /// A token id; `None` if the key is absent.
    pub(super) fn id(&self, key: &str) -> Result<Option<u32>, FormatError> {
        let to_id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
        self.get(key)
            .map(|v| to_id(v).ok_or_else(|| self.wrong_type(key, "a token id")))
            .transpose()
    }

    /// A bool; `None` if the key is absent.
    pub(super) fn bool(&self, key: &str) -> Result<Option<bool>, FormatError> {
        self.get(key)
            .map(|v| v.as_bool().ok_or_else(|| self.wrong_type(key, "a bool")))
            .transpose()
    }

    /// An array whose elements `convert` accepts; `None` if the key is absent.
    fn array<T>(
        &self,
        key: &str,
        expected: &str,
        convert: impl Fn(&'a Value) -> Option<T>,
    ) -> Result<Option<Vec<T>>, FormatError> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let items = value
            .as_array()
            .ok_or_else(|| self.wrong_type(key, expected))?;
        let converted: Option<Vec<T>> = items.iter().map(convert).collect();
        converted
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, expected))
    }

    /// An array of strings; `None` if the key is absent.
    pub(super) fn strings(&self, key: &str) -> Result<Option<Vec<&'a str>>, FormatError> {
        self.array(key, "an array of strings", Value::as_str)
    }

    /// An array of numbers, as `f32`; `None` if the key is absent.
    pub(super) fn floats(&self, key: &str) -> Result<Option<Vec<f32>>, FormatError> {
        self.array(key, "an array of numbers", |v| v.as_f64().map(|f| f as f32))
    }

    /// An array holding exactly `len` elements, or an error naming the key.
    pub(super) fn require_len<T>(
        &self,
        key: &str,
        items: Vec<T>,
        len: usize,
    ) -> Result<Vec<T>, FormatError> {
        if items.len() == len {
            return Ok(items);
        }
        Err(self.error(format!(
            "metadata `{key}` has {} entries but the vocabulary has {len} tokens",
            items.len()
        )))
    }
}

/// Reads the tokenizer metadata of `file` and builds its parts.
pub(super) fn parts(file: &GgufFile) -> Result<Parts, FormatError> {
    let meta = Meta { file };

    let model = meta
        .str("tokenizer.ggml.model")?
        .ok_or_else(|| meta.error("metadata `tokenizer.ggml.model` is missing".into()))?;
    let tokens = meta
        .strings("tokenizer.ggml.tokens")?
        .ok_or_else(|| meta.error("metadata `tokenizer.ggml.tokens` is missing".into()))?;
    let types = token_types(&meta, tokens.len())?;

    // The default BOS rule follows llama.cpp: SentencePiece models start
    // with BOS, byte-level BPE models only if the file says so.
    let (mut inner, bytes, default_add_bos) = match model {
        "gpt2" => (bpe::build(&meta, &tokens)?, ByteEncoding::ByteLevel, false),
        "llama" => (spm::build(&meta, &tokens)?, ByteEncoding::Metaspace, true),
        other => {
            return Err(meta.error(format!(
                "tokenizer model `{other}` is not supported; supported: gpt2 (byte-level BPE), \
                 llama (SentencePiece)"
            )))
        }
    };
    add_tokens(&mut inner, &tokens, &types).map_err(|e| meta.error(e))?;

    let bos_id = meta.id("tokenizer.ggml.bos_token_id")?;
    let add_bos = meta
        .bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(default_add_bos);
    let mut declared_eos = Vec::new();
    for key in ["eos", "eot", "eom"] {
        declared_eos.extend(meta.id(&format!("tokenizer.ggml.{key}_token_id"))?);
    }

    Ok(Parts {
        inner,
        bytes,
        bos_id,
        declared_eos,
        add_bos,
        origin: file.path.clone(),
    })
}

/// The type of every token; all normal when the file has no type array.
fn token_types(meta: &Meta<'_>, len: usize) -> Result<Vec<TokenType>, FormatError> {
    const KEY: &str = "tokenizer.ggml.token_type";
    let Some(codes) = meta.array(KEY, "an array of token type codes", Value::as_u64)? else {
        return Ok(vec![TokenType::Normal; len]);
    };
    let codes = meta.require_len(KEY, codes, len)?;
    Ok(codes.into_iter().map(TokenType::from_code).collect())
}

/// Maps each piece to its id. A piece listed twice keeps its first id, as
/// llama.cpp's lookup does; the later id can still be decoded by llama.cpp
/// but not here.
pub(super) fn vocab_map(tokens: &[&str]) -> Result<Vocab, String> {
    let mut vocab = Vocab::default();
    for (id, piece) in tokens.iter().enumerate() {
        let id =
            u32::try_from(id).map_err(|_| format!("{} tokens do not fit u32 ids", tokens.len()))?;
        vocab.entry((*piece).to_owned()).or_insert(id);
    }
    Ok(vocab)
}

/// Registers control and unknown tokens as special added tokens and
/// user-defined tokens as plain added tokens, all matched on the raw text.
fn add_tokens(
    inner: &mut tokenizers::Tokenizer,
    tokens: &[&str],
    types: &[TokenType],
) -> Result<(), String> {
    let mut special = Vec::new();
    let mut plain = Vec::new();
    for (piece, kind) in tokens.iter().zip(types) {
        if piece.is_empty() {
            continue;
        }
        match kind {
            TokenType::Control | TokenType::Unknown => {
                special.push(AddedToken::from(*piece, true).normalized(false));
            }
            TokenType::UserDefined => plain.push(AddedToken::from(*piece, false).normalized(false)),
            TokenType::Normal | TokenType::Byte => {}
        }
    }

    inner
        .add_special_tokens(special)
        .map_err(|e| format!("cannot register control tokens: {e}"))?;
    inner
        .add_tokens(plain)
        .map_err(|e| format!("cannot register user-defined tokens: {e}"))?;
    Ok(())
}
