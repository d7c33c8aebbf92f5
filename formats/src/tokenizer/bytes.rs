//! The exact bytes a vocabulary entry stands for.
//!
//! Token strings are not the text they produce. Byte-level BPE vocabularies
//! (GPT-2 and its descendants) spell every byte as one printable character, so
//! a token that holds half of a UTF-8 sequence is still a valid string.
//! SentencePiece vocabularies write a space as `▁` and keep one `<0xNN>` token
//! per byte for text the vocabulary cannot otherwise cover. Streaming
//! detokenization needs the bytes, not the strings, so that it can hold back
//! an incomplete UTF-8 sequence until the token that completes it arrives.

/// How a vocabulary's token strings spell bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteEncoding {
    /// GPT-2 byte-level: each byte is drawn as one printable character.
    ByteLevel,
    /// SentencePiece: `▁` is a space and `<0xNN>` is the single byte `NN`.
    Metaspace,
    /// The token string is its own text (WordPiece, word-level, …).
    Plain,
}

impl ByteEncoding {
    /// The bytes a model-vocabulary token (not an added token) contributes.
    pub(crate) fn token_bytes(self, piece: &str) -> Vec<u8> {
        match self {
            Self::ByteLevel => {
                // A piece drawn outside the alphabet (rare, hand-edited
                // vocabularies) is kept as text, as Hugging Face's decoder does.
                byte_level_bytes(piece).unwrap_or_else(|| piece.as_bytes().to_vec())
            }
            Self::Metaspace => match byte_token_value(piece) {
                Some(byte) => vec![byte],
                None => piece.replace('\u{2581}', " ").into_bytes(),
            },
            Self::Plain => piece.as_bytes().to_vec(),
        }
    }
}

/// The byte of a SentencePiece byte token `<0xNN>` (two hex digits).
pub(crate) fn byte_token_value(piece: &str) -> Option<u8> {
    let hex = piece.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 || !hex.bytes().all(|h| h.is_ascii_hexdigit()) {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// Whether GPT-2's alphabet draws byte `b` as the character with the same code.
const fn is_self_drawn(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Number of bytes GPT-2 draws as a shifted character (control bytes, space,
/// DEL, the C1 range, NBSP and the soft hyphen).
const SHIFTED_COUNT: usize = 68;

/// The bytes drawn as characters `U+0100`, `U+0101`, …, in that order.
const SHIFTED: [u8; SHIFTED_COUNT] = {
    let mut out = [0u8; SHIFTED_COUNT];
    let mut n = 0;
    let mut b = 0usize;
    while b < 256 {
        if !is_self_drawn(b as u8) {
            out[n] = b as u8;
            n += 1;
        }
        b += 1;
    }
    out
};

/// The byte GPT-2's alphabet draws as `c`, if `c` is in the alphabet.
fn byte_of_char(c: char) -> Option<u8> {
    let code = u32::from(c);
    if let Ok(b) = u8::try_from(code) {
        return is_self_drawn(b).then_some(b);
    }
    let index = usize::try_from(code.checked_sub(256)?).ok()?;
    SHIFTED.get(index).copied()
}

/// The bytes a byte-level piece spells, or `None` if a character of it lies
/// outside the alphabet.
fn byte_level_bytes(piece: &str) -> Option<Vec<u8>> {
    piece.chars().map(byte_of_char).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The character GPT-2's alphabet draws byte `b` as.
    fn char_of_byte(b: u8) -> char {
        if is_self_drawn(b) {
            return char::from(b);
        }
        let n = SHIFTED
            .iter()
            .position(|&s| s == b)
            .expect("every byte is drawn");
        char::from_u32(256 + n as u32).expect("U+0100..U+0143 are characters")
    }

    #[test]
    fn alphabet_is_a_bijection_over_all_bytes() {
        for b in 0..=255u8 {
            assert_eq!(byte_of_char(char_of_byte(b)), Some(b), "byte {b:#04x}");
        }
        assert_eq!(char_of_byte(b' '), 'Ġ');
        assert_eq!(char_of_byte(b'\n'), 'Ċ');
        assert_eq!(byte_of_char('€'), None);
    }

    #[test]
    fn byte_level_pieces_map_back_to_bytes() {
        assert_eq!(ByteEncoding::ByteLevel.token_bytes("Ġthe"), b" the");
        // "é" is 0xC3 0xA9, drawn as "Ã" and "©".
        assert_eq!(ByteEncoding::ByteLevel.token_bytes("Ã©"), "é".as_bytes());
        assert_eq!(ByteEncoding::ByteLevel.token_bytes("Ã"), vec![0xC3]);
        assert_eq!(ByteEncoding::ByteLevel.token_bytes("a b"), b"a b");
    }

    #[test]
    fn metaspace_pieces_map_back_to_bytes() {
        assert_eq!(ByteEncoding::Metaspace.token_bytes("▁Hello"), b" Hello");
        assert_eq!(ByteEncoding::Metaspace.token_bytes("<0x0A>"), b"\n");
        assert_eq!(ByteEncoding::Metaspace.token_bytes("<0xE2>"), vec![0xE2]);
        assert_eq!(ByteEncoding::Metaspace.token_bytes("<0x0>"), b"<0x0>");
        assert_eq!(byte_token_value("<0xFF>"), Some(0xFF));
        assert_eq!(byte_token_value("<0xG0>"), None);
        assert_eq!(byte_token_value("<0x+1>"), None);
    }
}
