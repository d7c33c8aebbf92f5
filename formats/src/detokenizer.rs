//! Incremental detokenization: turns each new token's bytes into text that is
//! safe to stream. A UTF-8 character split across tokens is held back until
//! its last byte arrives, so a client never sees half a character.

/// Accumulates token bytes and releases complete UTF-8 text.
#[derive(Debug, Default, Clone)]
pub struct Detokenizer {
    /// Bytes of an incomplete character at the end of the stream, at most 3.
    pending: Vec<u8>,
}

impl Detokenizer {
    /// A detokenizer with nothing pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `bytes` and returns the text now complete. Invalid sequences
    /// become U+FFFD; an incomplete one at the end waits for more bytes.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, tail) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).expect("checked valid by from_utf8"));
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &tail[bad..];
                        }
                        None => {
                            rest = tail;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// Whether bytes of an incomplete character are held back.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Ends the stream: any incomplete character becomes U+FFFD.
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_characters_are_held_back() {
        let mut d = Detokenizer::new();
        let bytes = "a€😀".as_bytes();
        let mut out = String::new();
        for b in bytes {
            let piece = d.push(&[*b]);
            assert!(piece.chars().all(|c| c != char::REPLACEMENT_CHARACTER));
            out.push_str(&piece);
        }
        assert_eq!(out, "a€😀");
        assert!(!d.has_pending());
    }

    #[test]
    fn invalid_bytes_become_replacement() {
        let mut d = Detokenizer::new();
        assert_eq!(d.push(&[b'x', 0xff, b'y']), "x\u{fffd}y");
        assert_eq!(d.push(&[0xe2, 0x82]), "");
        assert_eq!(d.finish(), "\u{fffd}");
    }
}
