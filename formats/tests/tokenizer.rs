//! Tokenizer behaviour: the real SmolLM2 GGUF against the golden prompt ids
//! (skipped, with a message, when the model or the golden file is absent), the
//! same vocabulary loaded as a Hugging Face folder, and a tiny synthetic
//! SentencePiece vocabulary for byte fallback and the leading-space rule.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value as Json};
use tessera_formats::gguf::{self, GgufFile, Value};
use tessera_formats::{Detokenizer, FormatError, Tokenizer};

// ---------------------------------------------------------------- fixtures

/// The SmolLM2 GGUF, or `None` (with a message) if it has not been fetched.
fn smollm_path() -> Option<PathBuf> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.is_file() {
        return Some(path);
    }
    println!(
        "SKIPPED: {} is absent; run scripts/fetch-model.sh",
        path.display()
    );
    None
}

/// The opened SmolLM2 GGUF and its tokenizer, or `None` if it is absent.
fn smollm() -> Result<Option<(GgufFile, Tokenizer)>> {
    let Some(path) = smollm_path() else {
        return Ok(None);
    };
    let file = gguf::open(&path)?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    Ok(Some((file, tokenizer)))
}

/// The golden outputs, or `None` (with a message) if the file is absent.
fn golden() -> Result<Option<Json>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/smollm2-135m.json");
    if !path.is_file() {
        println!("SKIPPED: {} is absent", path.display());
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path)?;
    Ok(Some(serde_json::from_str(&text)?))
}

/// The golden prompts: (name, text, prompt ids, greedy ids, greedy text,
/// templated text for the chat prompt).
struct GoldenPrompt {
    name: String,
    text: String,
    prompt_ids: Vec<u32>,
    greedy_ids: Vec<u32>,
    greedy_text: String,
    templated_text: Option<String>,
}

fn golden_prompts(golden: &Json) -> Result<Vec<GoldenPrompt>> {
    let ids = |v: &Json, key: &str| -> Result<Vec<u32>> {
        Ok(serde_json::from_value(
            v.get(key).context(key.to_owned())?.clone(),
        )?)
    };
    let text = |v: &Json, key: &str| -> Result<String> {
        Ok(v.get(key)
            .and_then(Json::as_str)
            .context(key.to_owned())?
            .to_owned())
    };
    let prompts = golden
        .get("prompts")
        .and_then(Json::as_array)
        .context("prompts")?;
    prompts
        .iter()
        .map(|p| {
            Ok(GoldenPrompt {
                name: text(p, "name")?,
                text: text(p, "text")?,
                prompt_ids: ids(p, "prompt_ids")?,
                greedy_ids: ids(p, "greedy_ids")?,
                greedy_text: text(p, "greedy_text")?,
                templated_text: p
                    .get("templated_text")
                    .and_then(Json::as_str)
                    .map(str::to_owned),
            })
        })
        .collect()
}

/// Texts that exercise multi-byte UTF-8, emoji, CJK, combining marks,
/// whitespace runs, tabs and newlines.
const ROUND_TRIP_TEXTS: [&str; 10] = [
    "The capital of France is",
    "naïve café, Ångström, Łódź, Ελληνικά, русский",
    "emoji: 👋🏽 👨‍👩‍👧 🇫🇷 ✨",
    "中文测试：东京、서울、日本語のテキスト",
    "combining: e\u{301} a\u{308} n\u{303} (NFD), Z\u{335}\u{30d}\u{31a}",
    "runs:   three spaces,\u{a0}nbsp,\u{2003}em space   ",
    "\ttab\tand\nnewline\r\nwindows\n\n\n  indented",
    "def f(x):\n    return x ** 2  # 12345 67890",
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n",
    "",
];

// ------------------------------------------------------- SmolLM2 (GGUF)

#[test]
fn golden_prompt_ids_match() -> Result<()> {
    let (Some((_, tok)), Some(golden)) = (smollm()?, golden()?) else {
        return Ok(());
    };

    assert_eq!(
        tok.encode("The capital of France is", false)?,
        [504, 3575, 282, 4649, 314]
    );
    let prompts = golden_prompts(&golden)?;
    ensure!(
        prompts.iter().any(|p| p.name == "CHAT"),
        "the golden file has no CHAT prompt"
    );
    for prompt in &prompts {
        // Conventions: no BOS on raw prompts; the chat prompt is the rendered
        // template tokenized without special tokens.
        let text = prompt.templated_text.as_deref().unwrap_or(&prompt.text);
        assert_eq!(
            tok.encode(text, false)?,
            prompt.prompt_ids,
            "prompt {}",
            prompt.name
        );
        assert_eq!(
            tok.encode(text, true)?,
            prompt.prompt_ids,
            "prompt {} (no BOS added)",
            prompt.name
        );
    }
    Ok(())
}

#[test]
fn golden_continuations_decode_to_their_text() -> Result<()> {
    let (Some((_, tok)), Some(golden)) = (smollm()?, golden()?) else {
        return Ok(());
    };
    for prompt in golden_prompts(&golden)? {
        assert_eq!(
            tok.decode(&prompt.greedy_ids, false)?,
            prompt.greedy_text,
            "prompt {}",
            prompt.name
        );

        // Streaming the same ids through token_bytes gives the same text.
        let mut stream = Detokenizer::new();
        let mut streamed = String::new();
        for &id in &prompt.greedy_ids {
            streamed += &stream.push(&tok.token_bytes(id).context("id in vocabulary")?);
        }
        assert_eq!(
            streamed, prompt.greedy_text,
            "prompt {} streamed",
            prompt.name
        );
    }
    Ok(())
}

#[test]
fn special_tokens_and_ids() -> Result<()> {
    let Some((_, tok)) = smollm()? else {
        return Ok(());
    };

    assert_eq!(tok.vocab_size(), 49152);
    assert_eq!(tok.bos_id(), Some(1));
    assert!(!tok.add_bos());
    assert_eq!(tok.eos_ids(), [2, 0]);
    assert_eq!(tok.bos_token().as_deref(), Some("<|im_start|>"));
    assert_eq!(tok.eos_token().as_deref(), Some("<|im_end|>"));

    assert_eq!(tok.token_id("<|im_start|>"), Some(1));
    assert_eq!(tok.token_id("<|im_end|>"), Some(2));
    assert_eq!(tok.token_id("<|endoftext|>"), Some(0));
    assert_eq!(tok.token_id("no such token"), None);
    assert!(tok.is_special(0) && tok.is_special(1) && tok.is_special(16));
    assert!(!tok.is_special(17) && !tok.is_special(504) && !tok.is_special(1_000_000));

    // Special-token text is one id whatever add_special_tokens says.
    assert_eq!(tok.encode("<|im_start|>", false)?, [1]);
    assert_eq!(tok.encode("<|im_end|>\n<|endoftext|>", true)?, [2, 198, 0]);
    assert_eq!(tok.token_bytes(2).as_deref(), Some(&b"<|im_end|>"[..]));
    Ok(())
}

#[test]
fn decode_skips_special_tokens_on_request() -> Result<()> {
    let Some((_, tok)) = smollm()? else {
        return Ok(());
    };
    let ids = tok.encode("<|im_start|>assistant\nParis.<|im_end|>", false)?;
    assert_eq!(
        tok.decode(&ids, false)?,
        "<|im_start|>assistant\nParis.<|im_end|>"
    );
    assert_eq!(tok.decode(&ids, true)?, "assistant\nParis.");
    Ok(())
}

#[test]
fn text_round_trips_and_token_bytes_concatenate_to_it() -> Result<()> {
    let Some((_, tok)) = smollm()? else {
        return Ok(());
    };
    for text in ROUND_TRIP_TEXTS {
        let ids = tok.encode(text, false)?;
        assert_eq!(tok.decode(&ids, false)?, text, "ids {ids:?}");

        let mut bytes = Vec::new();
        for &id in &ids {
            bytes.extend(
                tok.token_bytes(id)
                    .with_context(|| format!("token_bytes({id})"))?,
            );
        }
        assert_eq!(bytes, text.as_bytes(), "token bytes of {text:?}");
    }

    // Some emoji are split across tokens mid-character: the pieces are not
    // UTF-8 on their own but their bytes are.
    let ids = tok.encode("🇫🇷", false)?;
    let partial = ids
        .iter()
        .filter_map(|&id| tok.token_bytes(id))
        .filter(|b| std::str::from_utf8(b).is_err());
    assert!(
        partial.count() > 0,
        "expected a token holding part of a character in {ids:?}"
    );
    Ok(())
}

#[test]
fn out_of_vocabulary_ids_are_errors() -> Result<()> {
    let Some((_, tok)) = smollm()? else {
        return Ok(());
    };
    assert_eq!(tok.token_bytes(49152), None);
    let err = tok
        .decode(&[504, 49152], false)
        .err()
        .context("id 49152 must not decode")?;
    assert!(matches!(err, FormatError::Tokenizer { .. }), "{err}");
    assert!(err.to_string().contains("49152"), "{err}");
    Ok(())
}

#[test]
fn unsupported_pre_tokenizer_is_named() -> Result<()> {
    let Some((mut file, _)) = smollm()? else {
        return Ok(());
    };
    file.metadata
        .insert("tokenizer.ggml.pre".into(), Value::from("jais"));
    let err = Tokenizer::from_gguf(&file)
        .err()
        .context("`jais` must be rejected")?;
    let msg = err.to_string();
    assert!(
        msg.contains("jais") && msg.contains("smollm") && msg.contains("llama-bpe"),
        "{msg}"
    );
    Ok(())
}

#[test]
fn every_supported_pre_tokenizer_round_trips() -> Result<()> {
    let Some((mut file, _)) = smollm()? else {
        return Ok(());
    };
    // The exact word splits are unit-tested in the crate; here each family's
    // rule must work with a real vocabulary and lose nothing.
    for pre in ["gpt-2", "default", "llama-bpe", "qwen2", "starcoder"] {
        file.metadata
            .insert("tokenizer.ggml.pre".into(), Value::from(pre));
        let tok = Tokenizer::from_gguf(&file)?;
        assert_eq!(
            tok.encode("The capital of France is", false)?,
            [504, 3575, 282, 4649, 314],
            "{pre}"
        );
        for text in ROUND_TRIP_TEXTS {
            assert_eq!(tok.decode(&tok.encode(text, false)?, false)?, text, "{pre}");
        }
    }
    Ok(())
}

// -------------------------------------------- SmolLM2 as a Hugging Face folder

/// Writes a Hugging Face folder equivalent to the GGUF's tokenizer, laid out
/// as SmolLM2's own `tokenizer.json` is, with a truncation setting and a
/// post-processor that must both be ignored.
fn write_hf_folder(file: &GgufFile, dir: &Path, post_processor: Json) -> Result<()> {
    let strings = |key: &str| -> Result<Vec<String>> {
        let items = file
            .get(key)
            .and_then(Value::as_array)
            .context(key.to_owned())?;
        items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).context("string"))
            .collect()
    };
    let tokens = strings("tokenizer.ggml.tokens")?;
    let merges = strings("tokenizer.ggml.merges")?;

    let vocab: serde_json::Map<String, Json> = tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), json!(i)))
        .collect();
    let added: Vec<Json> = tokens[..17]
        .iter()
        .enumerate()
        .map(|(id, content)| {
            json!({"id": id, "content": content, "single_word": false, "lstrip": false,
                   "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let tokenizer = json!({
        "version": "1.0",
        "truncation": {
            "direction": "Right", "max_length": 2, "strategy": "LongestFirst", "stride": 0,
        },
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Digits", "individual_digits": true},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
             "use_regex": true}]},
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": null,
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": vocab, "merges": merges},
    });
    std::fs::write(dir.join("tokenizer.json"), tokenizer.to_string())?;

    let config = json!({
        "bos_token": "<|im_start|>",
        "eos_token": {"content": "<|im_end|>", "special": true},
        "unk_token": "<|endoftext|>",
    });
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string())?;
    std::fs::write(
        dir.join("config.json"),
        json!({"eos_token_id": 2, "bos_token_id": 1}).to_string(),
    )?;
    std::fs::write(
        dir.join("generation_config.json"),
        json!({"eos_token_id": [2]}).to_string(),
    )?;
    Ok(())
}

#[test]
fn hf_folder_tokenizes_like_the_gguf() -> Result<()> {
    let Some((file, gguf_tok)) = smollm()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let byte_level = json!({
        "type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true,
    });
    write_hf_folder(&file, dir.path(), byte_level)?;
    let hf_tok = Tokenizer::from_hf_dir(dir.path())?;

    assert_eq!(hf_tok.vocab_size(), 49152);
    assert_eq!(hf_tok.bos_id(), Some(1));
    assert!(!hf_tok.add_bos());
    assert_eq!(hf_tok.eos_ids(), [2, 0]);
    for text in ROUND_TRIP_TEXTS {
        let ids = gguf_tok.encode(text, true)?;
        assert_eq!(hf_tok.encode(text, true)?, ids, "{text:?}");
        assert_eq!(hf_tok.decode(&ids, false)?, text);
        for &id in &ids {
            assert_eq!(hf_tok.token_bytes(id), gguf_tok.token_bytes(id), "id {id}");
            assert_eq!(hf_tok.is_special(id), gguf_tok.is_special(id), "id {id}");
        }
    }
    Ok(())
}

#[test]
fn hf_bos_rule_follows_a_bos_first_post_processor() -> Result<()> {
    let Some((file, _)) = smollm()? else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let template = json!({
        "type": "TemplateProcessing",
        "single": [
            {"SpecialToken": {"id": "<|im_start|>", "type_id": 0}},
            {"Sequence": {"id": "A", "type_id": 0}},
        ],
        "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {
            "<|im_start|>": {"id": "<|im_start|>", "ids": [1], "tokens": ["<|im_start|>"]},
        },
    });
    write_hf_folder(&file, dir.path(), template)?;
    let tok = Tokenizer::from_hf_dir(dir.path())?;

    assert!(tok.add_bos());
    assert_eq!(tok.encode("The capital", true)?, [1, 504, 3575]);
    // The post-processor itself is gone: no second BOS, none without asking.
    assert_eq!(tok.encode("The capital", false)?, [504, 3575]);
    Ok(())
}

#[test]
fn hf_folder_without_tokenizer_json_is_an_error() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let err = Tokenizer::from_hf_dir(dir.path())
        .err()
        .context("an empty folder has no tokenizer")?;
    assert!(err.to_string().contains("tokenizer.json"), "{err}");
    Ok(())
}

// ------------------------------------------ synthetic SentencePiece (llama)

/// Pieces after the 3 control tokens and 256 byte tokens, with scores: the
/// higher the score, the earlier SentencePiece merges into that piece.
const SPM_PIECES: [(&str, f32); 18] = [
    ("▁", -1.0),
    ("h", -2.0),
    ("e", -3.0),
    ("l", -4.0),
    ("o", -5.0),
    ("w", -6.0),
    ("r", -7.0),
    ("d", -8.0),
    ("ll", -9.0),
    ("▁h", -10.0),
    ("llo", -11.0),
    ("▁he", -12.0),
    ("▁hello", -13.0),
    ("▁w", -14.0),
    ("or", -15.0),
    ("ld", -16.0),
    ("▁wor", -17.0),
    ("▁world", -18.0),
];

/// Metadata of a tiny Llama-style SentencePiece tokenizer.
fn spm_metadata() -> BTreeMap<String, Value> {
    let mut tokens: Vec<Value> = ["<unk>", "<s>", "</s>"]
        .into_iter()
        .map(Value::from)
        .collect();
    let mut types = vec![Value::I32(2), Value::I32(3), Value::I32(3)];
    let mut scores = vec![Value::F32(0.0); 3];
    for byte in 0..=255u8 {
        tokens.push(Value::from(format!("<0x{byte:02X}>")));
        types.push(Value::I32(6));
        scores.push(Value::F32(0.0));
    }
    for (piece, score) in SPM_PIECES {
        tokens.push(Value::from(piece));
        types.push(Value::I32(1));
        scores.push(Value::F32(score));
    }

    let mut meta = BTreeMap::new();
    meta.insert("tokenizer.ggml.model".into(), Value::from("llama"));
    meta.insert("tokenizer.ggml.tokens".into(), Value::Array(tokens));
    meta.insert("tokenizer.ggml.token_type".into(), Value::Array(types));
    meta.insert("tokenizer.ggml.scores".into(), Value::Array(scores));
    meta.insert("tokenizer.ggml.unknown_token_id".into(), Value::U32(0));
    meta.insert("tokenizer.ggml.bos_token_id".into(), Value::U32(1));
    meta.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(2));
    meta
}

/// A GGUF file value holding `metadata` and no tensors. The temp file it maps
/// must outlive it.
fn gguf_file(metadata: BTreeMap<String, Value>) -> Result<(tempfile::NamedTempFile, GgufFile)> {
    let mut backing = tempfile::NamedTempFile::new()?;
    backing.write_all(b"GGUF")?;
    backing.flush()?;
    // SAFETY: the temp file is private to this test and is neither truncated
    // nor written while it is mapped.
    let mmap = unsafe { memmap2::Mmap::map(backing.as_file())? };
    let file = GgufFile {
        path: backing.path().to_owned(),
        version: 3,
        metadata,
        tensors: Vec::new(),
        mmap: Arc::new(mmap),
    };
    Ok((backing, file))
}

fn spm_id(tok: &Tokenizer, piece: &str) -> Result<u32> {
    tok.token_id(piece)
        .with_context(|| format!("`{piece}` is in the vocabulary"))
}

#[test]
fn spm_merges_whole_words_with_a_leading_space() -> Result<()> {
    let (_backing, file) = gguf_file(spm_metadata())?;
    let tok = Tokenizer::from_gguf(&file)?;
    let (hello, world) = (spm_id(&tok, "▁hello")?, spm_id(&tok, "▁world")?);

    assert_eq!(tok.encode("hello world", false)?, [hello, world]);
    assert_eq!(tok.decode(&[hello, world], false)?, "hello world");
    // SentencePiece models start with BOS by default; `</s>` is the end id.
    assert!(tok.add_bos());
    assert_eq!(tok.encode("hello", true)?, [1, hello]);
    assert_eq!(tok.eos_ids(), [2]);
    // After a special token the text gets its own leading space, as in
    // llama.cpp and Hugging Face's Llama tokenizer.
    assert_eq!(tok.encode("<s>hello</s>", false)?, [1, hello, 2]);
    assert_eq!(tok.decode(&[1, hello, 2], true)?, "hello");
    // token_bytes keeps the prefixed space that decode drops at the start.
    assert_eq!(tok.token_bytes(hello).as_deref(), Some(&b" hello"[..]));
    Ok(())
}

#[test]
fn spm_falls_back_to_bytes_for_unknown_characters() -> Result<()> {
    let (_backing, file) = gguf_file(spm_metadata())?;
    let tok = Tokenizer::from_gguf(&file)?;
    let (h, hello) = (spm_id(&tok, "▁h")?, spm_id(&tok, "▁hello")?);

    // "é" is not a piece: its UTF-8 bytes 0xC3 0xA9 are byte tokens 3 + byte.
    let ids = tok.encode("hé hello", false)?;
    assert_eq!(ids, [h, 3 + 0xC3, 3 + 0xA9, hello]);
    assert_eq!(tok.decode(&ids, false)?, "hé hello");
    assert_eq!(tok.token_bytes(3 + 0xC3), Some(vec![0xC3]));
    let bytes: Vec<u8> = ids
        .iter()
        .filter_map(|&id| tok.token_bytes(id))
        .flatten()
        .collect();
    assert_eq!(bytes, " hé hello".as_bytes());
    // Nothing is lost to <unk>.
    assert!(!tok.encode("日本 ✨", false)?.contains(&0));
    Ok(())
}

#[test]
fn spm_without_space_prefix_keeps_text_as_is() -> Result<()> {
    let mut meta = spm_metadata();
    meta.insert("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false));
    meta.insert("tokenizer.ggml.add_bos_token".into(), Value::Bool(false));
    let (_backing, file) = gguf_file(meta)?;
    let tok = Tokenizer::from_gguf(&file)?;

    let ids = tok.encode("hello world", true)?;
    assert_ne!(
        ids.first().copied(),
        Some(spm_id(&tok, "▁hello")?),
        "no BOS, no leading space: {ids:?}"
    );
    assert_eq!(ids.last().copied(), Some(spm_id(&tok, "▁world")?));
    assert_eq!(tok.decode(&ids, false)?, "hello world");
    assert_eq!(tok.decode(&tok.encode(" hello", false)?, false)?, " hello");
    Ok(())
}

#[test]
fn unsupported_and_incomplete_metadata_are_named() -> Result<()> {
    let mut meta = spm_metadata();
    meta.insert("tokenizer.ggml.model".into(), Value::from("bert"));
    let (_b1, file) = gguf_file(meta)?;
    expect_mentions(Tokenizer::from_gguf(&file), &["bert", "gpt2", "llama"])?;

    let mut meta = spm_metadata();
    meta.remove("tokenizer.ggml.scores");
    let (_b2, file) = gguf_file(meta)?;
    expect_mentions(Tokenizer::from_gguf(&file), &["tokenizer.ggml.scores"])?;

    let mut meta = spm_metadata();
    meta.insert(
        "tokenizer.ggml.token_type".into(),
        Value::Array(vec![Value::I32(1)]),
    );
    let (_b3, file) = gguf_file(meta)?;
    expect_mentions(
        Tokenizer::from_gguf(&file),
        &["tokenizer.ggml.token_type", "1 entries"],
    )?;

    let mut meta = spm_metadata();
    meta.insert("tokenizer.ggml.eos_token_id".into(), Value::U32(100_000));
    let (_b4, file) = gguf_file(meta)?;
    expect_mentions(Tokenizer::from_gguf(&file), &["100000"])?;

    let mut meta = spm_metadata();
    meta.remove("tokenizer.ggml.model");
    let (_b5, file) = gguf_file(meta)?;
    expect_mentions(Tokenizer::from_gguf(&file), &["tokenizer.ggml.model"])?;
    Ok(())
}

/// Fails unless `result` is a tokenizer error mentioning every one of `parts`.
fn expect_mentions(result: Result<Tokenizer, FormatError>, parts: &[&str]) -> Result<()> {
    let err = match result {
        Ok(_) => bail!("expected an error mentioning {parts:?}"),
        Err(err) => err,
    };
    ensure!(
        matches!(err, FormatError::Tokenizer { .. }),
        "wrong error kind: {err}"
    );
    let msg = err.to_string();
    for part in parts {
        ensure!(msg.contains(part), "`{msg}` does not mention `{part}`");
    }
    Ok(())
}
