//! Text to token ids and back, built from a GGUF file's `tokenizer.ggml.*`
//! metadata or from a Hugging Face `tokenizer.json`.

/// A model's tokenizer with its special-token rules.
#[derive(Debug, Clone)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos_id: Option<u32>,
    /// Ids that end generation (EOS, end-of-turn).
    eos_ids: Vec<u32>,
    /// Whether `encode(_, true)` prepends BOS.
    add_bos: bool,
}

impl Tokenizer {
    /// Token ids for `text`. Special-token text (e.g. `<|im_start|>`) maps to
    /// its id. With `add_special_tokens`, the model's BOS rule applies.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Result<Vec<u32>, crate::FormatError> {
        let _ = (text, add_special_tokens, &self.inner, self.add_bos);
        unimplemented!("tokenizer helper fills this in")
    }

    /// Text for `ids`; special tokens are rendered unless `skip_special`.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String, crate::FormatError> {
        let _ = (ids, skip_special);
        unimplemented!("tokenizer helper fills this in")
    }

    /// The beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos_id
    }

    /// Ids that end generation.
    pub fn eos_ids(&self) -> &[u32] {
        &self.eos_ids
    }
}
