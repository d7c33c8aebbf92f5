//! A request's output text as it streams: incremental detokenization plus stop
//! sequences matched on the text.
//!
//! Invariant: text handed out is final. A character split across tokens is
//! held until complete (see [`Detokenizer`]), and a tail that could be the
//! start of a stop sequence is held until it either becomes one (then it and
//! everything after it is dropped) or cannot anymore.

use tessera_formats::Detokenizer;

/// What one token did to the output.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pushed {
    /// Text that became final with this token.
    pub text: String,
    /// Index of the stop sequence that matched, if one did.
    pub stopped: Option<usize>,
}

/// Streaming text of one request.
#[derive(Debug)]
pub struct TextOutput {
    detok: Detokenizer,
    stop: Vec<String>,
    /// Decoded text not yet handed out (could start a stop sequence).
    held: String,
}

impl TextOutput {
    /// Output that ends at the first of `stop` (empty strings are ignored).
    pub fn new(stop: Vec<String>) -> Self {
        let stop = stop.into_iter().filter(|s| !s.is_empty()).collect();
        Self {
            detok: Detokenizer::new(),
            stop,
            held: String::new(),
        }
    }

    /// Adds one token's bytes.
    pub fn push(&mut self, bytes: &[u8]) -> Pushed {
        let piece = self.detok.push(bytes);
        self.held.push_str(&piece);
        if let Some((at, index)) = self.first_match() {
            let text = self.held[..at].to_string();
            self.held.clear();
            return Pushed {
                text,
                stopped: Some(index),
            };
        }
        let keep = self.hold_back();
        let text = self.held[..self.held.len() - keep].to_string();
        self.held.drain(..self.held.len() - keep);
        Pushed {
            text,
            stopped: None,
        }
    }

    /// Ends the stream without a stop match: everything held is final.
    pub fn finish(&mut self) -> String {
        let rest = self.detok.finish();
        self.held.push_str(&rest);
        std::mem::take(&mut self.held)
    }

    /// Earliest stop sequence in the held text: (byte offset, stop index).
    fn first_match(&self) -> Option<(usize, usize)> {
        self.stop
            .iter()
            .enumerate()
            .filter_map(|(i, s)| self.held.find(s.as_str()).map(|at| (at, i)))
            .min()
    }

    /// Bytes at the end of the held text that are a proper prefix of some stop
    /// sequence, so must wait for more text.
    fn hold_back(&self) -> usize {
        let mut keep = 0;
        for stop in &self.stop {
            for (len, _) in stop.char_indices().skip(1) {
                if len > keep && self.held.ends_with(&stop[..len]) {
                    keep = len;
                }
            }
        }
        keep
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(stop: &[&str], pieces: &[&str]) -> (String, Option<usize>) {
        let mut out = TextOutput::new(stop.iter().map(|s| s.to_string()).collect());
        let mut text = String::new();
        for p in pieces {
            let pushed = out.push(p.as_bytes());
            text.push_str(&pushed.text);
            if pushed.stopped.is_some() {
                return (text, pushed.stopped);
            }
        }
        text.push_str(&out.finish());
        (text, None)
    }

    #[test]
    fn stop_sequence_split_across_tokens_is_never_streamed() {
        let mut out = TextOutput::new(vec!["STOP".into()]);
        assert_eq!(out.push(b"abc S").text, "abc ");
        assert_eq!(out.push(b"TO").text, "");
        let last = out.push(b"Pxyz");
        assert_eq!(
            last,
            Pushed {
                text: String::new(),
                stopped: Some(0)
            }
        );
    }

    #[test]
    fn false_starts_are_released() {
        assert_eq!(run(&["STOP"], &["a S", "TA", "b"]), ("a STAb".into(), None));
        assert_eq!(run(&["\n\n"], &["x\n", "y"]), ("x\ny".into(), None));
    }

    #[test]
    fn earliest_of_several_stops_wins() {
        assert_eq!(
            run(&["world", "lo w"], &["hello world"]),
            ("hel".into(), Some(1))
        );
    }

    #[test]
    fn multibyte_characters_and_stops_mix() {
        let mut out = TextOutput::new(vec!["é!".into()]);
        let bytes = "caf".as_bytes();
        assert_eq!(out.push(bytes).text, "caf");
        assert_eq!(out.push(&[0xc3]).text, "");
        assert_eq!(out.push(&[0xa9]).text, "");
        assert_eq!(out.push(b"!").stopped, Some(0));
    }
}
