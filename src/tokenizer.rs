//! The model's tokenizer (a Hugging Face `tokenizer.json`, through the `tokenizers` crate).

use std::path::Path;

/// The embedded engine's tokenizer, trained on its corpus and the project's
/// prompt sets; regenerate with `servegate train-tokenizer`.
pub const ENGINE_TOKENIZER_JSON: &str = include_str!("sim/data/tokenizer.json");

/// A loaded tokenizer. Cloning shares nothing mutable; encoding is thread-safe.
#[derive(Clone)]
pub struct Tokenizer {
    inner: std::sync::Arc<tokenizers::Tokenizer>,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Self, String> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| format!("cannot load tokenizer {}: {e}", path.display()))?;
        Ok(Self {
            inner: std::sync::Arc::new(inner),
        })
    }

    /// A tokenizer from the text of a `tokenizer.json`.
    pub fn from_json(json: &str) -> Result<Self, String> {
        tokenizers::Tokenizer::from_bytes(json.as_bytes())
            .map(Self::from_tokenizer)
            .map_err(|e| format!("cannot load tokenizer: {e}"))
    }

    /// The embedded engine's tokenizer.
    pub fn engine() -> Self {
        Self::from_json(ENGINE_TOKENIZER_JSON).expect("the shipped tokenizer.json parses")
    }

    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Self {
            inner: std::sync::Arc::new(inner),
        }
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }

    /// Vocabulary size including added tokens.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids and their (start, end) byte offsets in `text`.
    pub fn encode_with_offsets(&self, text: &str) -> (Vec<u32>, Vec<(usize, usize)>) {
        match self.inner.encode(text, false) {
            Ok(e) => (e.get_ids().to_vec(), e.get_offsets().to_vec()),
            Err(_) => (Vec::new(), Vec::new()),
        }
    }

    /// Decodes keeping special tokens (the engine shows what it generated).
    pub fn decode_raw(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, false).unwrap_or_default()
    }

    /// Token ids of `text`, without special tokens (no BOS).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode(text, false)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    /// Token ids of `text` with the special tokens the tokenizer adds (e.g. BOS).
    pub fn encode_special(&self, text: &str) -> Vec<u32> {
        self.inner
            .encode(text, true)
            .map(|e| e.get_ids().to_vec())
            .unwrap_or_default()
    }

    pub fn count(&self, text: &str) -> usize {
        self.encode(text).len()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        self.inner.decode(ids, true).unwrap_or_default()
    }
}

/// Text to tokens and back: a local tokenizer, or a server's `/tokenize`
/// and `/detokenize` (`server_tokenizer`). Prompts of an exact length are
/// made through it, so they are exact in whichever tokenizer counts them.
pub trait Codec {
    /// Token ids of `text`, without special tokens (no BOS).
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, String>;
    fn decode_ids(&self, ids: &[u32]) -> Result<String, String>;

    fn count_text(&self, text: &str) -> Result<usize, String> {
        self.encode_text(text).map(|ids| ids.len())
    }

    /// A prompt of exactly `tokens` tokens, built from `source` text starting
    /// at word `offset` (so several prompts differ). Decoding a cut token list
    /// can re-encode to a different length, so the cut is adjusted until the
    /// round trip is exact.
    fn exact_prompt(&self, source: &str, tokens: usize, offset: usize) -> Result<String, String> {
        self.exact_prompt_after("", source, tokens, offset)
    }

    /// As [`Codec::exact_prompt`], the text starting with `prefix` (kept
    /// whole, so prompts sharing a prefix share its tokens).
    fn exact_prompt_after(
        &self,
        prefix: &str,
        source: &str,
        tokens: usize,
        offset: usize,
    ) -> Result<String, String> {
        let words: Vec<&str> = source.split_whitespace().collect();
        if words.is_empty() {
            return Err("no source text for synthetic prompts".into());
        }
        // Enough words to exceed the target: repeat the source as needed.
        let mut text = prefix.to_string();
        let mut i = offset;
        // Words added in doubling batches and counted once per batch:
        // counting after each word is quadratic in the prompt's length.
        let mut batch = tokens / 2 + 16;
        while self.count_text(&text)? <= tokens + 8 {
            for _ in 0..batch {
                if !text.is_empty() {
                    text.push(' ');
                }
                text.push_str(words[i % words.len()]);
                i += 1;
            }
            batch *= 2;
            if i - offset > 64 * (tokens + 8) {
                return Err("tokenizer yields no tokens for the source text".into());
            }
        }
        // Only the last few cuts are tried: each is decoded and counted.
        let all = self.encode_text(&text)?;
        let ids = &all[..all.len().min(tokens + 24)];
        for cut in (tokens.saturating_sub(16)..=ids.len()).rev() {
            let candidate = self.decode_ids(&ids[..cut])?;
            let n = self.count_text(&candidate)?;
            if n == tokens && candidate.starts_with(prefix) {
                return Ok(candidate);
            }
            if n < tokens {
                break;
            }
        }
        // Fall back to trimming the text a character at a time.
        let mut candidate = self.decode_ids(&ids[..tokens.min(ids.len())])?;
        while self.count_text(&candidate)? > tokens && candidate.len() > prefix.len() {
            candidate.pop();
        }
        if self.count_text(&candidate)? == tokens && candidate.starts_with(prefix) {
            Ok(candidate)
        } else {
            Err(format!("cannot build a prompt of exactly {tokens} tokens"))
        }
    }
}

impl Codec for Tokenizer {
    fn encode_text(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(self.encode(text))
    }

    fn decode_ids(&self, ids: &[u32]) -> Result<String, String> {
        Ok(self.decode(ids))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A word-level tokenizer over `words`, with whitespace pre-tokenisation: small, exact, shippable in tests.
    pub(crate) fn word_level(words: &[&str]) -> Tokenizer {
        use tokenizers::models::wordlevel::WordLevel;
        use tokenizers::pre_tokenizers::whitespace::WhitespaceSplit;
        let mut vocab: std::collections::HashMap<String, u32> = words
            .iter()
            .enumerate()
            .map(|(i, w)| (w.to_string(), i as u32 + 1))
            .collect();
        vocab.insert("[UNK]".into(), 0);
        let model = WordLevel::builder()
            .vocab(vocab.into_iter().collect())
            .unk_token("[UNK]".into())
            .build()
            .unwrap();
        let mut t = tokenizers::Tokenizer::new(model);
        t.with_pre_tokenizer(Some(WhitespaceSplit));
        t.with_decoder(Some(tokenizers::decoders::wordpiece::WordPiece::default()));
        Tokenizer::from_tokenizer(t)
    }

    #[test]
    fn exact_length_prompts() {
        let t = word_level(&["alpha", "beta", "gamma"]);
        for n in [1, 5, 37] {
            let p = t.exact_prompt("alpha beta gamma delta", n, 2).unwrap();
            assert_eq!(t.count(&p), n, "{p}");
        }
    }
}
