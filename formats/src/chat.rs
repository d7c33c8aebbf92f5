//! Conversations rendered with the model's own Jinja chat template.
//!
//! Templates are written for Hugging Face's `apply_chat_template`, which runs
//! Jinja2 with `trim_blocks` and `lstrip_blocks` on, a `raise_exception`
//! function, a `strftime_now` function and a `tojson` filter that writes
//! Python's `json.dumps` spacing. The environment here reproduces that with
//! minijinja, plus Python's string and dict methods (`.strip()`, `.items()`,
//! …) from `minijinja_contrib::pycompat`. A template sees `messages`,
//! `add_generation_prompt`, `bos_token`, `eos_token`, and `tools` and
//! `documents` set to none.
//!
//! Known difference: minijinja keeps map keys sorted, so `tojson` of a map
//! lists its keys alphabetically where Python keeps insertion order.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::Kwargs;
use minijinja::{context, Environment, ErrorKind, Value};
use serde::Serialize;

use crate::gguf::GgufFile;
use crate::tokenizer::{read_json_file, special_token_text};
use crate::FormatError;

/// The name the template is stored under in its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The turn's text.
    pub content: String,
}

/// A compiled chat template.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    /// Holds the compiled template under [`TEMPLATE_NAME`].
    env: Environment<'static>,
    bos_token: Option<String>,
    eos_token: Option<String>,
    /// The file the template came from, for error messages.
    origin: PathBuf,
}

impl ChatTemplate {
    /// Compiles `source`. `bos_token` and `eos_token` are the texts the
    /// template sees under those names; `origin` is the file it came from.
    pub fn new(
        source: String,
        bos_token: Option<String>,
        eos_token: Option<String>,
        origin: &Path,
    ) -> Result<Self, FormatError> {
        let mut env = environment();
        env.add_template_owned(TEMPLATE_NAME, source.clone())
            .map_err(|e| template_error(origin, &e))?;
        Ok(ChatTemplate {
            source,
            env,
            bos_token,
            eos_token,
            origin: origin.to_owned(),
        })
    }

    /// The template under `tokenizer.chat_template`, if the file has one.
    /// BOS and EOS texts are the tokens named by `tokenizer.ggml.bos_token_id`
    /// and `tokenizer.ggml.eos_token_id`.
    pub fn from_gguf(file: &GgufFile) -> Result<Option<ChatTemplate>, FormatError> {
        const KEY: &str = "tokenizer.chat_template";
        let Some(value) = file.metadata.get(KEY) else {
            return Ok(None);
        };
        let source = value.as_str().ok_or_else(|| FormatError::ChatTemplate {
            path: file.path.clone(),
            reason: format!("metadata `{KEY}` is not a string"),
        })?;

        let token_text = |key: &str| -> Option<String> {
            let id = usize::try_from(file.metadata.get(key)?.as_u64()?).ok()?;
            let tokens = file.metadata.get("tokenizer.ggml.tokens")?.as_array()?;
            tokens.get(id)?.as_str().map(str::to_owned)
        };
        let bos = token_text("tokenizer.ggml.bos_token_id");
        let eos = token_text("tokenizer.ggml.eos_token_id");
        Self::new(source.to_owned(), bos, eos, &file.path).map(Some)
    }

    /// The template of a Hugging Face folder, if it has one:
    /// `chat_template.jinja`, or else `chat_template` in
    /// `tokenizer_config.json` (a string, or a list of `{name, template}`
    /// from which `default` is taken). BOS and EOS texts come from
    /// `tokenizer_config.json`.
    pub fn from_hf_dir(dir: &Path) -> Result<Option<ChatTemplate>, FormatError> {
        let config_path = dir.join("tokenizer_config.json");
        let config = read_json_file(&config_path)?.unwrap_or(serde_json::Value::Null);

        let jinja_path = dir.join("chat_template.jinja");
        let (source, origin) = match std::fs::read_to_string(&jinja_path) {
            Ok(source) => (source, jinja_path),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                match config_template(&config).map_err(|reason| FormatError::ChatTemplate {
                    path: config_path.clone(),
                    reason,
                })? {
                    Some(source) => (source, config_path),
                    None => return Ok(None),
                }
            }
            Err(source) => {
                return Err(FormatError::Io {
                    path: jinja_path,
                    error: source,
                })
            }
        };

        let bos = special_token_text(&config, "bos_token").map(str::to_owned);
        let eos = special_token_text(&config, "eos_token").map(str::to_owned);
        Self::new(source, bos, eos, &origin).map(Some)
    }

    /// Renders `messages`; with `add_generation_prompt` the text ends where the
    /// assistant's answer begins. A template that rejects the conversation
    /// (through `raise_exception`) gives a [`FormatError::ChatTemplate`] with
    /// its message.
    pub fn render(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, FormatError> {
        let special = |text: &Option<String>| text.as_deref().map_or(Value::UNDEFINED, Value::from);
        let ctx = context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => special(&self.bos_token),
            eos_token => special(&self.eos_token),
            tools => Value::from(()),
            documents => Value::from(()),
        };
        self.env
            .get_template(TEMPLATE_NAME)
            .and_then(|template| template.render(ctx))
            .map_err(|e| template_error(&self.origin, &e))
    }

    /// The template's Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl std::fmt::Debug for ChatTemplate {
    /// Leaves out the environment, whose listing of every builtin drowns the
    /// fields that tell templates apart.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("origin", &self.origin)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// `chat_template` of a `tokenizer_config.json`: a string, a list of named
/// templates (the one named `default` is used), or absent.
fn config_template(config: &serde_json::Value) -> Result<Option<String>, String> {
    use serde_json::Value as Json;
    match config.get("chat_template") {
        None | Some(Json::Null) => Ok(None),
        Some(Json::String(source)) => Ok(Some(source.clone())),
        Some(Json::Array(named)) => {
            let name_of =
                |entry: &Json| entry.get("name").and_then(Json::as_str).map(str::to_owned);
            let default = named
                .iter()
                .find(|entry| name_of(entry).as_deref() == Some("default"));
            match default
                .and_then(|entry| entry.get("template"))
                .and_then(Json::as_str)
            {
                Some(source) => Ok(Some(source.to_owned())),
                None => {
                    let names: Vec<String> = named.iter().filter_map(name_of).collect();
                    Err(format!(
                        "`chat_template` has no template named `default` (it has: {names:?})"
                    ))
                }
            }
        }
        Some(_) => Err("`chat_template` is neither a string nor a list of named templates".into()),
    }
}

/// The environment Hugging Face's `apply_chat_template` provides.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_function("strftime_now", strftime_now);
    env.add_filter("tojson", tojson);
    env
}

/// A chat-template error naming the file and what went wrong.
fn template_error(origin: &Path, err: &minijinja::Error) -> FormatError {
    let mut reason = err.to_string();
    let mut cause = std::error::Error::source(err);
    while let Some(inner) = cause {
        reason.push_str(": ");
        reason.push_str(&inner.to_string());
        cause = inner.source();
    }
    FormatError::ChatTemplate {
        path: origin.to_owned(),
        reason,
    }
}

/// `raise_exception(message)`: the template's way of rejecting its input.
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(
        ErrorKind::InvalidOperation,
        format!("template raised an exception: {message}"),
    ))
}

/// `strftime_now(format)`: the current time (UTC) in a `strftime` format.
fn strftime_now(format: String) -> Result<String, minijinja::Error> {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    UtcTime::from_unix(secs)
        .format(&format)
        .map_err(|reason| minijinja::Error::new(ErrorKind::InvalidOperation, reason))
}

/// `value | tojson(indent=None)` with `json.dumps` spacing (`", "` and `": "`
/// on one line; with `indent`, one item per line) and no HTML escaping.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    kwargs.assert_all_used()?;

    let mut out = Vec::new();
    let written = match indent {
        Some(width) => {
            let spaces = " ".repeat(width);
            let formatter = serde_json::ser::PrettyFormatter::with_indent(spaces.as_bytes());
            value.serialize(&mut serde_json::Serializer::with_formatter(
                &mut out, formatter,
            ))
        }
        None => value.serialize(&mut serde_json::Serializer::with_formatter(
            &mut out,
            PythonSpacing,
        )),
    };
    written
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    let text = String::from_utf8(out)
        .map_err(|e| minijinja::Error::new(ErrorKind::InvalidOperation, format!("tojson: {e}")))?;
    Ok(Value::from(text))
}

/// Python's default `json.dumps` separators: `", "` between items and
/// `": "` after keys.
struct PythonSpacing;

impl serde_json::ser::Formatter for PythonSpacing {
    fn begin_array_value<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + io::Write>(&mut self, writer: &mut W) -> io::Result<()> {
        writer.write_all(b": ")
    }
}

/// A UTC calendar time, for `strftime_now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct UtcTime {
    year: i64,
    /// 1..=12.
    month: u32,
    /// 1..=31.
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    /// 0 = Sunday.
    weekday: u32,
    /// 1..=366.
    day_of_year: u32,
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Sunday",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
];

impl UtcTime {
    /// The calendar time `secs` seconds after 1970-01-01T00:00:00Z.
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let in_day = secs.rem_euclid(86_400) as u32;
        let (year, month, day) = civil_date(days);
        let day_of_year = (days - days_from_civil(year, 1, 1)) as u32 + 1;
        UtcTime {
            year,
            month,
            day,
            hour: in_day / 3600,
            minute: in_day / 60 % 60,
            second: in_day % 60,
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
            day_of_year,
        }
    }

    /// Formats with the common `strftime` directives; others are an error.
    fn format(&self, format: &str) -> Result<String, String> {
        let month_name = MONTHS[(self.month - 1) as usize];
        let weekday_name = WEEKDAYS[self.weekday as usize];
        let hour12 = match self.hour % 12 {
            0 => 12,
            h => h,
        };

        let mut out = String::with_capacity(format.len() + 16);
        let mut chars = format.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            let directive = chars
                .next()
                .ok_or("strftime_now: format ends with a lone `%`")?;
            let piece = match directive {
                'Y' => self.year.to_string(),
                'y' => format!("{:02}", self.year.rem_euclid(100)),
                'm' => format!("{:02}", self.month),
                'd' => format!("{:02}", self.day),
                'e' => format!("{:2}", self.day),
                'H' => format!("{:02}", self.hour),
                'I' => format!("{hour12:02}"),
                'M' => format!("{:02}", self.minute),
                'S' => format!("{:02}", self.second),
                'p' => (if self.hour < 12 { "AM" } else { "PM" }).to_owned(),
                'j' => format!("{:03}", self.day_of_year),
                'B' => month_name.to_owned(),
                'b' | 'h' => month_name[..3].to_owned(),
                'A' => weekday_name.to_owned(),
                'a' => weekday_name[..3].to_owned(),
                '%' => "%".to_owned(),
                other => {
                    return Err(format!(
                        "strftime_now: directive `%{other}` is not supported"
                    ))
                }
            };
            out.push_str(&piece);
        }
        Ok(out)
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    // Count from March so that the leap day ends the (shifted) year.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let year_of_era = y.rem_euclid(400);
    let shifted_month = i64::from((month + 9) % 12);
    let day_of_year = (153 * shifted_month + 2) / 5 + i64::from(day) - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

/// The proleptic Gregorian date `days` after 1970-01-01.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let shifted_month = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * shifted_month + 2) / 5 + 1) as u32;
    let month = if shifted_month < 10 {
        shifted_month + 3
    } else {
        shifted_month - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates_round_trip() {
        for days in [
            -719_468, -1, 0, 59, 60, 365, 11_016, 19_723, 20_000, 2_932_896,
        ] {
            let (y, m, d) = civil_date(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
    }

    #[test]
    fn strftime_formats_a_known_instant() -> Result<(), String> {
        // 2024-07-26T15:04:05Z, a Friday, day 208 of a leap year.
        let t = UtcTime::from_unix(1_722_006_245);
        assert_eq!(t.format("%d %b %Y")?, "26 Jul 2024");
        assert_eq!(
            t.format("%A %B %e, %y %H:%M:%S %I%p %j %%")?,
            "Friday July 26, 24 15:04:05 03PM 208 %"
        );
        assert!(t.format("%Q").is_err());
        assert!(t.format("100%").is_err());
        Ok(())
    }

    #[test]
    fn tojson_uses_python_spacing() -> Result<(), minijinja::Error> {
        let env = environment();
        let ctx = context! { x => context! { a => vec![1, 2], b => "é<" } };
        assert_eq!(
            env.render_str("{{ x | tojson }}", &ctx)?,
            r#"{"a": [1, 2], "b": "é<"}"#
        );
        assert_eq!(
            env.render_str("{{ x | tojson(indent=2) }}", &ctx)?,
            "{\n  \"a\": [\n    1,\n    2\n  ],\n  \"b\": \"é<\"\n}"
        );
        Ok(())
    }

    #[test]
    fn named_templates_pick_default() {
        let config = serde_json::json!({"chat_template": [
            {"name": "tool_use", "template": "T"}, {"name": "default", "template": "D"}]});
        assert_eq!(config_template(&config), Ok(Some("D".to_owned())));
        let config = serde_json::json!({"chat_template": [{"name": "tool_use", "template": "T"}]});
        assert!(config_template(&config).is_err_and(|e| e.contains("tool_use")));
        assert_eq!(config_template(&serde_json::json!({})), Ok(None));
    }
}
