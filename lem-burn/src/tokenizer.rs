//! A byte-level tokenizer built in: every byte is a token, plus BOS and EOS. No download.

/// Beginning of sequence.
pub const BOS: u32 = 256;
/// End of sequence.
pub const EOS: u32 = 257;
/// Tokens the byte tokenizer uses.
pub const BYTE_VOCAB: usize = 258;

/// Bytes in, bytes out.
#[derive(Debug, Clone, Copy, Default)]
pub struct ByteTokenizer;

impl ByteTokenizer {
    /// `[BOS, bytes...]`.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        std::iter::once(BOS)
            .chain(text.bytes().map(u32::from))
            .collect()
    }

    /// Text of the byte tokens (specials dropped; ids beyond bytes shown as U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let mut bytes = Vec::with_capacity(ids.len());
        for &id in ids {
            match u8::try_from(id) {
                Ok(b) => bytes.push(b),
                Err(_) if id == BOS || id == EOS => {}
                Err(_) => bytes.extend_from_slice("\u{FFFD}".as_bytes()),
            }
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A prompt of exactly `len` tokens: BOS then `text` repeated.
    pub fn prompt_of_len(&self, text: &str, len: usize) -> Vec<u32> {
        let body: Vec<u32> = text.bytes().map(u32::from).collect();
        let mut out = vec![BOS];
        while out.len() < len {
            out.extend(body.iter().take(len - out.len()));
            if body.is_empty() {
                out.resize(len, u32::from(b' '));
            }
        }
        out.truncate(len.max(1));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_text() {
        let t = ByteTokenizer;
        let ids = t.encode("héllo");
        assert_eq!(ids[0], BOS);
        assert_eq!(t.decode(&ids), "héllo");
        assert_eq!(
            t.decode(&[104, EOS, 105, 999]),
            "h".to_string() + "i\u{FFFD}"
        );
    }

    #[test]
    fn prompts_have_the_requested_length() {
        let t = ByteTokenizer;
        for len in [1, 2, 7, 64] {
            assert_eq!(t.prompt_of_len("abc", len).len(), len);
        }
        assert_eq!(t.prompt_of_len("", 5).len(), 5);
    }
}
