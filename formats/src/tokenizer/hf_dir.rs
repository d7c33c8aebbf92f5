//! A tokenizer from a Hugging Face folder.
//!
//! `tokenizer.json` gives the pipeline; its post-processor, padding and
//! truncation are dropped, because [`super::Tokenizer::encode`] applies the BOS
//! rule itself. The special tokens come from `tokenizer_config.json`
//! (`bos_token` / `eos_token`, each a string or an object with `content`;
//! `add_bos_token`). Where `add_bos_token` is absent, BOS is added if the
//! dropped post-processor put the BOS token first, as Llama 3's does. End ids
//! also come from `generation_config.json` and `config.json`
//! (`eos_token_id`, a number or a list), which often name end-of-turn tokens
//! the tokenizer config does not.

use std::path::Path;

use serde_json::Value as Json;
use tokenizers::{DecoderWrapper, PostProcessorWrapper};

use super::bytes::ByteEncoding;
use super::Parts;
use crate::FormatError;

/// Reads and parses a JSON file; `Ok(None)` if it does not exist.
pub(crate) fn read_json_file(path: &Path) -> Result<Option<Json>, FormatError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FormatError::Io {
                path: path.to_owned(),
                error: source,
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| FormatError::Malformed {
            path: path.to_owned(),
            format: "JSON",
            reason: e.to_string(),
        })
}

/// The text of special token `key` (`bos_token`, `eos_token`) in a
/// `tokenizer_config.json`: either a string or an object with `content`.
pub(crate) fn special_token_text<'a>(config: &'a Json, key: &str) -> Option<&'a str> {
    match config.get(key)? {
        Json::String(text) => Some(text),
        Json::Object(fields) => fields.get("content")?.as_str(),
        _ => None,
    }
}

/// Loads the folder's tokenizer and its special-token rules.
pub(super) fn parts(dir: &Path) -> Result<Parts, FormatError> {
    let tokenizer_path = dir.join("tokenizer.json");
    let error = |path: &Path, reason: String| FormatError::Tokenizer {
        path: path.to_owned(),
        reason,
    };

    let json = read_json_file(&tokenizer_path)?
        .ok_or_else(|| error(&tokenizer_path, "the file does not exist".into()))?;
    let post_processor = json.get("post_processor").cloned().unwrap_or(Json::Null);
    let mut inner: tokenizers::Tokenizer = serde_json::from_value(json).map_err(|e| {
        error(
            &tokenizer_path,
            format!("not a tokenizer the `tokenizers` crate reads: {e}"),
        )
    })?;
    inner
        .with_post_processor(None::<PostProcessorWrapper>)
        .with_padding(None)
        .with_truncation(None)
        .map_err(|e| error(&tokenizer_path, format!("cannot disable truncation: {e}")))?;

    let config_path = dir.join("tokenizer_config.json");
    let config = read_json_file(&config_path)?.unwrap_or(Json::Null);
    let model_config = read_json_file(&dir.join("config.json"))?.unwrap_or(Json::Null);
    let generation_config =
        read_json_file(&dir.join("generation_config.json"))?.unwrap_or(Json::Null);

    let id_of = |key: &str| -> Result<Option<u32>, FormatError> {
        let Some(text) = special_token_text(&config, key) else {
            return Ok(None);
        };
        inner.token_to_id(text).map(Some).ok_or_else(|| {
            error(
                &config_path,
                format!("{key} `{text}` is not in the vocabulary"),
            )
        })
    };
    let bos_id = match id_of("bos_token")? {
        Some(id) => Some(id),
        None => config_ids(&model_config, "bos_token_id", &dir.join("config.json"))?
            .first()
            .copied(),
    };
    let add_bos = match config.get("add_bos_token").and_then(Json::as_bool) {
        Some(add) => add,
        None => prepends_bos(&post_processor, special_token_text(&config, "bos_token")),
    };

    let mut declared_eos: Vec<u32> = id_of("eos_token")?.into_iter().collect();
    declared_eos.extend(config_ids(
        &generation_config,
        "eos_token_id",
        &dir.join("generation_config.json"),
    )?);
    declared_eos.extend(config_ids(
        &model_config,
        "eos_token_id",
        &dir.join("config.json"),
    )?);

    Ok(Parts {
        bytes: byte_encoding(inner.get_decoder()),
        inner,
        bos_id,
        declared_eos,
        add_bos,
        origin: dir.to_owned(),
    })
}

/// The ids under `key` of a `config.json`-like file: absent or null, a
/// number, or a list of numbers.
fn config_ids(config: &Json, key: &str, path: &Path) -> Result<Vec<u32>, FormatError> {
    let as_id = |v: &Json| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let invalid = || FormatError::Config {
        path: path.to_owned(),
        key: key.to_owned(),
        reason: "is neither a token id nor a list of token ids".into(),
    };
    match config.get(key) {
        None | Some(Json::Null) => Ok(Vec::new()),
        Some(Json::Array(items)) => items.iter().map(|v| as_id(v).ok_or_else(invalid)).collect(),
        Some(v) => as_id(v).map(|id| vec![id]).ok_or_else(invalid),
    }
}

/// Whether a `tokenizer.json` post-processor (as JSON) puts `bos` first in a
/// single sequence: a template starting with that special token, a BERT or
/// RoBERTa processor whose CLS token it is, or a sequence holding either.
fn prepends_bos(post_processor: &Json, bos: Option<&str>) -> bool {
    let Some(bos) = bos else {
        return false;
    };
    match post_processor.get("type").and_then(Json::as_str) {
        Some("TemplateProcessing") => {
            let first = post_processor.pointer("/single/0/SpecialToken/id");
            first.and_then(Json::as_str) == Some(bos)
        }
        Some("BertProcessing" | "RobertaProcessing") => {
            post_processor.pointer("/cls/0").and_then(Json::as_str) == Some(bos)
        }
        Some("Sequence") => post_processor
            .get("processors")
            .and_then(Json::as_array)
            .is_some_and(|steps| steps.iter().any(|step| prepends_bos(step, Some(bos)))),
        _ => false,
    }
}

/// How the vocabulary spells bytes, judged by the decoder that undoes it.
fn byte_encoding(decoder: Option<&DecoderWrapper>) -> ByteEncoding {
    match decoder {
        Some(DecoderWrapper::ByteLevel(_)) => ByteEncoding::ByteLevel,
        Some(
            DecoderWrapper::Metaspace(_)
            | DecoderWrapper::ByteFallback(_)
            | DecoderWrapper::Replace(_),
        ) => ByteEncoding::Metaspace,
        Some(DecoderWrapper::Sequence(steps)) => steps
            .get_decoders()
            .iter()
            .map(|step| byte_encoding(Some(step)))
            .find(|&encoding| encoding != ByteEncoding::Plain)
            .unwrap_or(ByteEncoding::Plain),
        _ => ByteEncoding::Plain,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn special_token_text_reads_strings_and_objects() {
        let config = json!({
            "bos_token": "<s>",
            "eos_token": {"content": "</s>", "lstrip": false},
            "pad_token": null,
        });
        assert_eq!(special_token_text(&config, "bos_token"), Some("<s>"));
        assert_eq!(special_token_text(&config, "eos_token"), Some("</s>"));
        assert_eq!(special_token_text(&config, "pad_token"), None);
        assert_eq!(special_token_text(&config, "unk_token"), None);
    }

    #[test]
    fn bos_rule_is_read_from_the_post_processor() {
        let llama3 = json!({"type": "Sequence", "processors": [
            {"type": "ByteLevel"},
            {"type": "TemplateProcessing", "single": [
                {"SpecialToken": {"id": "<|begin_of_text|>", "type_id": 0}},
                {"Sequence": {"id": "A", "type_id": 0}}]}]});
        assert!(prepends_bos(&llama3, Some("<|begin_of_text|>")));
        assert!(!prepends_bos(&llama3, Some("<s>")));
        assert!(!prepends_bos(&json!({"type": "ByteLevel"}), Some("<s>")));
        assert!(prepends_bos(
            &json!({"type": "RobertaProcessing", "cls": ["<s>", 0]}),
            Some("<s>")
        ));
        assert!(!prepends_bos(&Json::Null, None));
    }

    #[test]
    fn config_ids_take_numbers_and_lists() -> Result<(), FormatError> {
        let path = Path::new("config.json");
        let config = json!({"a": 2, "b": [128001, 128009], "c": null, "d": "x"});
        assert_eq!(config_ids(&config, "a", path)?, [2]);
        assert_eq!(config_ids(&config, "b", path)?, [128001, 128009]);
        assert!(config_ids(&config, "c", path)?.is_empty());
        assert!(config_ids(&config, "missing", path)?.is_empty());
        assert!(config_ids(&config, "d", path).is_err());
        Ok(())
    }
}
