//! An incremental parser of server-sent events (the `text/event-stream`
//! format OpenAI-compatible servers stream completions in).
//!
//! Only `data:` fields matter here: an event's data lines are joined with
//! `\n` and the event is complete at the blank line that ends it. Comments
//! (`:` lines) and other fields (`event:`, `id:`, `retry:`) are skipped. An
//! event left without its blank line when the stream ends is dropped, as the
//! format specifies.

/// A line that is not UTF-8.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event stream holds a line that is not UTF-8")]
pub struct NotUtf8;

/// Collects bytes as they arrive and hands out complete events' data.
#[derive(Debug, Default)]
pub struct SseParser {
    /// Bytes of the line not yet ended by `\n`.
    pending: Vec<u8>,
    /// Data lines of the event not yet ended by a blank line.
    data: Vec<String>,
}

impl SseParser {
    /// An empty parser.
    pub fn new() -> Self {
        SseParser::default()
    }

    /// Adds `bytes` and returns the data of every event they complete.
    pub fn push(&mut self, bytes: &[u8]) -> Result<Vec<String>, NotUtf8> {
        self.pending.extend_from_slice(bytes);
        let mut events = Vec::new();
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.pending.drain(..=end).collect();
            let line = std::str::from_utf8(&raw[..end]).map_err(|_| NotUtf8)?;
            let line = line.strip_suffix('\r').unwrap_or(line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    events.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(value) = field_value(line, "data") {
                self.data.push(value.to_owned());
            }
        }
        Ok(events)
    }
}

/// The value of `line` when it is the field `name`, without the one space
/// that may follow the colon.
fn field_value<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let value = line.strip_prefix(name)?;
    if value.is_empty() {
        return Some("");
    }
    let value = value.strip_prefix(':')?;
    Some(value.strip_prefix(' ').unwrap_or(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_pushes_are_joined() -> Result<(), NotUtf8> {
        let mut parser = SseParser::new();
        assert!(parser.push(b"data: {\"a\"")?.is_empty());
        assert_eq!(parser.push(b":1}\r\n\r\ndata: [DONE]\n")?, ["{\"a\":1}"]);
        assert_eq!(parser.push(b"\n")?, ["[DONE]"]);
        Ok(())
    }

    #[test]
    fn comments_and_other_fields_are_skipped() -> Result<(), NotUtf8> {
        let mut parser = SseParser::new();
        let events = parser.push(b": keep-alive\n\nevent: x\ndata:1\ndata: 2\n\n")?;
        assert_eq!(events, ["1\n2"]);
        assert!(parser.push(b"datafoo: 3\n\n")?.is_empty());
        Ok(())
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut parser = SseParser::new();
        assert_eq!(parser.push(b"data: \xff\n"), Err(NotUtf8));
    }
}
