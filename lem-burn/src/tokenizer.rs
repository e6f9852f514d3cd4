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

/// A Hugging Face `tokenizer.json` (feature `hf-tokenizer`), e.g. the one beside real
/// Llama weights.
#[cfg(feature = "hf-tokenizer")]
#[derive(Debug)]
pub struct HfTokenizer(tokenizers::Tokenizer);

#[cfg(feature = "hf-tokenizer")]
impl HfTokenizer {
    /// Read `tokenizer.json`.
    ///
    /// # Errors
    /// [`crate::Error::Weights`] naming the file.
    pub fn from_file(path: &std::path::Path) -> crate::Result<Self> {
        tokenizers::Tokenizer::from_file(path)
            .map(Self)
            .map_err(|e| crate::Error::Weights {
                path: path.to_path_buf(),
                reason: format!("not a tokenizer.json ({e})"),
            })
    }

    /// Token ids of `text` (with the tokenizer's special tokens, e.g. BOS).
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] when the text cannot be encoded.
    pub fn encode(&self, text: &str) -> crate::Result<Vec<u32>> {
        self.0
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| crate::Error::config("prompt", e.to_string()))
    }

    /// Text of token ids.
    ///
    /// # Errors
    /// [`crate::Error::InvalidConfig`] when an id is unknown.
    pub fn decode(&self, ids: &[u32]) -> crate::Result<String> {
        self.0
            .decode(ids, true)
            .map_err(|e| crate::Error::config("tokens", e.to_string()))
    }

    /// A prompt of exactly `len` tokens: `text` encoded, repeated and cut.
    ///
    /// # Errors
    /// As [`encode`](Self::encode), or when `text` encodes to nothing.
    pub fn prompt_of_len(&self, text: &str, len: usize) -> crate::Result<Vec<u32>> {
        let ids = self.encode(text)?;
        if ids.is_empty() {
            return Err(crate::Error::config(
                "prompt",
                "the text encodes to no tokens",
            ));
        }
        Ok(ids.iter().copied().cycle().take(len).collect())
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
