//! Chat templates: SmolLM2's own template against the golden chat prompt
//! (skipped, with a message, when the model or the golden file is absent),
//! templates in the styles of other families, and loading from a Hugging Face
//! folder. Expected texts were produced with Jinja2 set up as Hugging Face's
//! `apply_chat_template` sets it up (`trim_blocks`, `lstrip_blocks`).

use std::path::{Path, PathBuf};

use anyhow::{bail, ensure, Context, Result};
use serde_json::{json, Value as Json};
use tessera_formats::gguf::{self, GgufFile};
use tessera_formats::{ChatMessage, ChatTemplate, FormatError, Tokenizer};

/// The SmolLM2 GGUF, or `None` (with a message) if it has not been fetched.
fn smollm() -> Result<Option<GgufFile>> {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    if !path.is_file() {
        println!(
            "SKIPPED: {} is absent; run scripts/fetch-model.sh",
            path.display()
        );
        return Ok(None);
    }
    Ok(Some(gguf::open(&path)?))
}

/// The golden file's CHAT prompt, or `None` (with a message) if it is absent.
fn golden_chat() -> Result<Option<Json>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/golden/smollm2-135m.json");
    if !path.is_file() {
        println!("SKIPPED: {} is absent", path.display());
        return Ok(None);
    }
    let golden: Json = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
    let prompts = golden
        .get("prompts")
        .and_then(Json::as_array)
        .context("prompts")?;
    let chat = prompts
        .iter()
        .find(|p| p.get("name").and_then(Json::as_str) == Some("CHAT"));
    Ok(Some(
        chat.context("the golden file has no CHAT prompt")?.clone(),
    ))
}

fn message(role: &str, content: &str) -> ChatMessage {
    ChatMessage {
        role: role.to_owned(),
        content: content.to_owned(),
    }
}

fn template(source: &str) -> Result<ChatTemplate, FormatError> {
    ChatTemplate::new(
        source.to_owned(),
        Some("<|begin_of_text|>".to_owned()),
        Some("<|eot_id|>".to_owned()),
        &PathBuf::from("test.jinja"),
    )
}

/// The error `result` holds, which must be a chat-template error.
fn chat_error<T: std::fmt::Debug>(result: Result<T, FormatError>) -> Result<String> {
    match result {
        Ok(v) => bail!("expected a chat template error, got {v:?}"),
        Err(err @ FormatError::ChatTemplate { .. }) => Ok(err.to_string()),
        Err(err) => bail!("expected a chat template error, got {err}"),
    }
}

// ------------------------------------------------------------ SmolLM2

#[test]
fn smollm2_template_renders_the_golden_chat_prompt() -> Result<()> {
    let (Some(file), Some(chat)) = (smollm()?, golden_chat()?) else {
        return Ok(());
    };
    let template = ChatTemplate::from_gguf(&file)?.context("SmolLM2 has a chat template")?;
    let tokenizer = Tokenizer::from_gguf(&file)?;
    let question = chat.get("text").and_then(Json::as_str).context("text")?;
    let expected_text = chat
        .get("templated_text")
        .and_then(Json::as_str)
        .context("templated_text")?;
    let expected_ids: Vec<u32> =
        serde_json::from_value(chat.get("prompt_ids").context("prompt_ids")?.clone())?;

    let rendered = template.render(&[message("user", question)], true)?;
    assert_eq!(rendered, expected_text);
    assert_eq!(tokenizer.encode(&rendered, false)?, expected_ids);
    Ok(())
}

#[test]
fn smollm2_template_follows_the_conversation() -> Result<()> {
    let Some(file) = smollm()? else {
        return Ok(());
    };
    let template = ChatTemplate::from_gguf(&file)?.context("SmolLM2 has a chat template")?;

    // A system message replaces the default one; without the generation
    // prompt the text ends after the last turn.
    let messages = [
        message("system", "Be terse."),
        message("user", "Hi"),
        message("assistant", "Hello."),
    ];
    assert_eq!(
        template.render(&messages, false)?,
        "<|im_start|>system\nBe terse.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
         <|im_start|>assistant\nHello.<|im_end|>\n"
    );
    Ok(())
}

#[test]
fn gguf_without_a_template_has_none() -> Result<()> {
    let Some(mut file) = smollm()? else {
        return Ok(());
    };
    file.metadata.remove("tokenizer.chat_template");
    assert!(ChatTemplate::from_gguf(&file)?.is_none());
    Ok(())
}

// ------------------------------------------------- other template styles

/// A template in Llama 3's style: BOS first, `-` whitespace control, a
/// default system turn, `trim` on the content.
const LLAMA3_STYLE: &str = r#"{{- bos_token }}
{%- for message in messages %}
    {%- if loop.first and message['role'] != 'system' %}
        {{- '<|start_header_id|>system<|end_header_id|>\n\n' + default_system | default('Be brief.') + '<|eot_id|>' }}
    {%- endif %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' }}
    {{- message['content'] | trim + '<|eot_id|>' }}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\n\n' }}
{%- endif %}
"#;

#[test]
fn llama3_style_template_renders() -> Result<()> {
    let template = template(LLAMA3_STYLE)?;
    let messages = [
        message("user", "  Hi there  "),
        message("assistant", "Hello!"),
        message("user", "What is 2+2?"),
    ];
    assert_eq!(
        template.render(&messages, true)?,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nHi there<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\nHello!<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>\
         <|start_header_id|>assistant<|end_header_id|>\n\n"
    );
    assert_eq!(
        template.render(&[message("system", "S"), message("user", "U")], false)?,
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nS<|eot_id|>\
         <|start_header_id|>user<|end_header_id|>\n\nU<|eot_id|>"
    );
    Ok(())
}

/// A template that relies on `trim_blocks` / `lstrip_blocks` and on Python
/// methods, `namespace`, `tojson` and `tools`. (Its map literal lists keys
/// alphabetically: minijinja sorts map keys where Python keeps their order.)
const PYTHONIC: &str = r#"{% set ns = namespace(users=0) %}
{% for m in messages %}
    {% if m.role == 'user' %}{% set ns.users = ns.users + 1 %}{% endif %}
    {% if m.content.startswith('!') %}
[{{ m.role.upper() }}] {{ m.content[1:].strip() | tojson }}
    {% else %}
{{ m.role.title() }}: {{ m.content.replace('  ', ' ') }}
    {% endif %}
{% endfor %}
users={{ ns.users }} last={{ messages[-1].content | length }}{% if tools is none %} no tools{% endif %}

{{ {'n': [1, 2], 'role': 'x'} | tojson }}
"#;

#[test]
fn python_methods_and_whitespace_control_match_hugging_face() -> Result<()> {
    let template = template(PYTHONIC)?;
    let messages = [
        message("system", "Be  kind"),
        message("user", "!  shout \"this\" <ok> é "),
        message("user", "hey"),
    ];
    assert_eq!(
        template.render(&messages, true)?,
        "System: Be kind\n[USER] \"shout \\\"this\\\" <ok> é\"\nUser: hey\nusers=2 last=3 no tools\n\
         {\"n\": [1, 2], \"role\": \"x\"}"
    );
    Ok(())
}

#[test]
fn strftime_now_gives_a_date() -> Result<()> {
    let rendered = template("{{ strftime_now('%Y-%m-%d') }}")?.render(&[], false)?;
    let bytes = rendered.as_bytes();
    ensure!(
        bytes.len() == 10 && bytes[4] == b'-' && bytes[7] == b'-',
        "`{rendered}` is not a date"
    );
    let err = chat_error(template("{{ strftime_now('%Q') }}")?.render(&[], false))?;
    assert!(err.contains("%Q"), "{err}");
    Ok(())
}

#[test]
fn raise_exception_becomes_a_chat_template_error() -> Result<()> {
    let source = r#"{% for message in messages %}
    {% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}
        {{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}
    {% endif %}
{{ '[' + message['role'] + '] ' + message['content'] }}
{% endfor %}
"#;
    let template = template(source)?;
    assert_eq!(
        template.render(&[message("user", "a"), message("assistant", "b")], false)?,
        "[user] a\n[assistant] b\n"
    );

    let err = chat_error(template.render(&[message("assistant", "b")], false))?;
    assert!(err.contains("Conversation roles must alternate"), "{err}");
    assert!(err.contains("test.jinja"), "{err}");
    Ok(())
}

#[test]
fn template_errors_name_the_problem() -> Result<()> {
    let err = chat_error(template(
        "{% for message in messages %}{{ message.content }}",
    ))?;
    assert!(err.contains("test.jinja"), "{err}");
    // minijinja resolves filters when rendering, where Jinja2 does so at load.
    let err = chat_error(template("{{ messages | no_such_filter }}")?.render(&[], false))?;
    assert!(err.contains("no_such_filter"), "{err}");
    Ok(())
}

#[test]
fn missing_special_tokens_render_as_nothing() -> Result<()> {
    let template = ChatTemplate::new(
        "[{{ bos_token }}]{{ messages[0].content }}".into(),
        None,
        None,
        Path::new("t"),
    )?;
    assert_eq!(template.render(&[message("user", "x")], false)?, "[]x");
    assert_eq!(
        template.source(),
        "[{{ bos_token }}]{{ messages[0].content }}"
    );
    Ok(())
}

// ------------------------------------------------------ Hugging Face folders

fn write_config(dir: &Path, config: &Json) -> Result<()> {
    std::fs::write(dir.join("tokenizer_config.json"), config.to_string())?;
    Ok(())
}

#[test]
fn hf_template_from_tokenizer_config() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_config(
        dir.path(),
        &json!({
            "bos_token": {"content": "<s>", "lstrip": false},
            "eos_token": "</s>",
            "chat_template":
                "{{ bos_token }}{% for m in messages %}{{ m.content }}{{ eos_token }}{% endfor %}",
        }),
    )?;
    let template = ChatTemplate::from_hf_dir(dir.path())?.context("the config has a template")?;
    assert_eq!(
        template.render(&[message("user", "a"), message("assistant", "b")], false)?,
        "<s>a</s>b</s>"
    );
    Ok(())
}

#[test]
fn hf_named_templates_use_default() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let named = json!([
        {"name": "tool_use", "template": "tools"},
        {"name": "default", "template": "plain"},
    ]);
    write_config(dir.path(), &json!({"chat_template": named}))?;
    let template = ChatTemplate::from_hf_dir(dir.path())?.context("a default template")?;
    assert_eq!(template.render(&[], false)?, "plain");

    write_config(
        dir.path(),
        &json!({"chat_template": [{"name": "tool_use", "template": "tools"}]}),
    )?;
    let err = chat_error(ChatTemplate::from_hf_dir(dir.path()))?;
    assert!(err.contains("default") && err.contains("tool_use"), "{err}");
    Ok(())
}

#[test]
fn hf_chat_template_file_takes_precedence() -> Result<()> {
    let dir = tempfile::tempdir()?;
    write_config(
        dir.path(),
        &json!({"eos_token": "</s>", "chat_template": "from config"}),
    )?;
    std::fs::write(
        dir.path().join("chat_template.jinja"),
        "from file {{ eos_token }}",
    )?;
    let template = ChatTemplate::from_hf_dir(dir.path())?.context("a template file")?;
    assert_eq!(template.render(&[], false)?, "from file </s>");
    Ok(())
}

#[test]
fn hf_folder_without_a_template_has_none() -> Result<()> {
    let dir = tempfile::tempdir()?;
    assert!(ChatTemplate::from_hf_dir(dir.path())?.is_none());
    write_config(dir.path(), &json!({"eos_token": "</s>"}))?;
    assert!(ChatTemplate::from_hf_dir(dir.path())?.is_none());
    Ok(())
}
