//! Context and continuation to token ids, split the way lm-evaluation-harness
//! splits them, so that the same tokens are scored.
//!
//! Trailing whitespace of the context moves to the continuation; the pair is
//! encoded whole and the context alone, and the continuation is whatever the
//! whole has past the context's length. Encoding the two parts separately
//! would tokenise the word boundary differently and change the scores.

use crate::client::Client;
use crate::tokenizer::Tokenizer;

/// lm-evaluation-harness's default model length for API models.
pub const DEFAULT_MAX_LENGTH: usize = 2048;

/// Token ids sent for one (context, continuation): the ids, and how many of
/// them are context (the rest are scored).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Scored {
    pub tokens: Vec<u32>,
    pub ctxlen: usize,
}

/// Python's `str.isspace`, which `rstrip()` uses: Unicode whitespace plus the
/// four ASCII information separators that Rust does not count as whitespace.
fn is_python_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Moves the context's trailing whitespace to the front of the continuation.
pub fn move_trailing_space(context: &str, continuation: &str) -> (String, String) {
    let kept = context.trim_end_matches(is_python_space);
    let moved = &context[kept.len()..];
    (kept.to_string(), format!("{moved}{continuation}"))
}

/// Splits the encoding of `context + continuation` after the context's length.
pub fn split_whole(context_ids: Vec<u32>, whole_ids: &[u32]) -> (Vec<u32>, Vec<u32>) {
    let cut = context_ids.len().min(whole_ids.len());
    let continuation = whole_ids[cut..].to_vec();
    (context_ids, continuation)
}

/// An empty context is replaced by one prefix token (BOS, else EOS), unless
/// the continuation already starts with it.
pub fn empty_context(continuation_ids: Vec<u32>, prefix: u32) -> (Vec<u32>, Vec<u32>) {
    if continuation_ids.first() == Some(&prefix) {
        (
            continuation_ids[..1].to_vec(),
            continuation_ids[1..].to_vec(),
        )
    } else {
        (vec![prefix], continuation_ids)
    }
}

/// Keeps at most `max_length - 1` tokens (one is left for the generated
/// token), cutting from the left and shortening the context to match.
pub fn truncate(context: &[u32], continuation: &[u32], max_length: usize) -> Scored {
    let limit = max_length.saturating_sub(1).max(1);
    let total = context.len() + continuation.len();
    let cut = total.saturating_sub(limit);
    let mut tokens = Vec::with_capacity(total - cut);
    tokens.extend(context.iter().chain(continuation).skip(cut));
    Scored {
        ctxlen: context.len().saturating_sub(cut),
        tokens,
    }
}

/// Where token ids come from.
#[derive(Clone)]
pub enum Encoder {
    /// A `tokenizer.json` loaded here; `origin` says which file.
    Local {
        tokenizer: Tokenizer,
        origin: String,
        prefix: Option<u32>,
        add_bos: bool,
        /// The end-of-text string (`eos_token` of a `tokenizer_config.json`
        /// beside the file), which generation adds to its stop strings as
        /// lm-eval does.
        eos: Option<String>,
    },
    /// The server's `/tokenize` endpoint (vLLM's shape: `{"tokens": [...]}`).
    Remote { client: Client, model: String },
}

impl Encoder {
    /// A local tokenizer. The prefix token for empty contexts is the BOS
    /// token named by a `tokenizer_config.json` beside the file, else its
    /// EOS token, else a token with a usual BOS/EOS name.
    pub fn local(tokenizer: Tokenizer, path: &std::path::Path, add_bos: bool) -> Self {
        let prefix = prefix_token(&tokenizer, path);
        let eos = tokenizer_config(path).and_then(|c| named_token(&c, "eos_token"));
        Self::Local {
            tokenizer,
            origin: path.display().to_string(),
            prefix,
            add_bos,
            eos,
        }
    }

    /// The end-of-text string generation stops at, when known.
    pub fn eos(&self) -> Option<&str> {
        match self {
            Encoder::Local { eos, .. } => eos.as_deref(),
            Encoder::Remote { .. } => None,
        }
    }

    /// Token ids back to the text a server is sent when it takes no token
    /// ids (special tokens kept, as lm-eval's `decode_batch` keeps them),
    /// and each token's own text, to compare with what the server echoes.
    pub fn decode(&self, ids: &[u32]) -> Result<(String, Vec<String>), String> {
        match self {
            Encoder::Local { tokenizer, .. } => Ok((
                tokenizer.decode_raw(ids),
                ids.iter().map(|&id| tokenizer.decode_raw(&[id])).collect(),
            )),
            Encoder::Remote { .. } => Err(
                "text prompts need a local tokenizer to find where each continuation starts: set the suite's `tokenizer` (a tokenizer.json)"
                    .into(),
            ),
        }
    }

    /// Whether prompts can be sent as token ids tokenised here.
    pub fn is_local(&self) -> bool {
        matches!(self, Encoder::Local { .. })
    }

    pub fn describe(&self) -> String {
        match self {
            Encoder::Local { origin, .. } => origin.clone(),
            Encoder::Remote { client, .. } => format!("{}tokenize", client.base_url()),
        }
    }

    pub async fn encode(&self, text: &str) -> Result<Vec<u32>, String> {
        match self {
            Encoder::Local {
                tokenizer, add_bos, ..
            } => Ok(if *add_bos {
                tokenizer.encode_special(text)
            } else {
                tokenizer.encode(text)
            }),
            Encoder::Remote { client, model } => {
                let body = serde_json::json!({
                    "model": model,
                    "prompt": text,
                    "add_special_tokens": false,
                });
                let answer = client
                    .post_json("tokenize", &body, std::time::Duration::from_secs(60))
                    .await
                    .map_err(|f| f.message)?;
                answer["tokens"]
                    .as_array()
                    .and_then(|ids| {
                        ids.iter()
                            .map(|v| v.as_u64().and_then(|x| u32::try_from(x).ok()))
                            .collect::<Option<Vec<u32>>>()
                    })
                    .ok_or_else(|| {
                        format!(
                            "{}: the answer has no `tokens` list of ids",
                            self.describe()
                        )
                    })
            }
        }
    }

    fn prefix(&self) -> Option<u32> {
        match self {
            Encoder::Local { prefix, .. } => *prefix,
            Encoder::Remote { .. } => None,
        }
    }

    /// The token ids of one pair, as lm-evaluation-harness computes them.
    pub async fn pair(
        &self,
        context: &str,
        continuation: &str,
    ) -> Result<(Vec<u32>, Vec<u32>), String> {
        if context.is_empty() {
            let ids = self.encode(continuation).await?;
            let prefix = self.prefix().ok_or_else(|| {
                format!(
                    "an empty context needs a BOS or EOS token and {} names none",
                    self.describe()
                )
            })?;
            return Ok(empty_context(ids, prefix));
        }
        let (context, continuation) = move_trailing_space(context, continuation);
        let whole = self.encode(&format!("{context}{continuation}")).await?;
        let context_ids = self.encode(&context).await?;
        Ok(split_whole(context_ids, &whole))
    }
}

/// The token an empty context becomes (see `Encoder::local`).
/// The `tokenizer_config.json` beside a `tokenizer.json`, if any.
fn tokenizer_config(path: &std::path::Path) -> Option<serde_json::Value> {
    path.parent()
        .map(|dir| dir.join("tokenizer_config.json"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|text| serde_json::from_str(&text).ok())
}

/// A special token's text from a tokenizer config (a string, or `{content}`).
fn named_token(config: &serde_json::Value, key: &str) -> Option<String> {
    let v = config.get(key)?;
    Some(
        v.as_str()
            .or_else(|| v.get("content")?.as_str())?
            .to_string(),
    )
}

fn prefix_token(tokenizer: &Tokenizer, path: &std::path::Path) -> Option<u32> {
    let config = tokenizer_config(path);
    let named = |key: &str| tokenizer.token_id(&named_token(config.as_ref()?, key)?);
    named("bos_token")
        .or_else(|| named("eos_token"))
        .or_else(|| {
            [
                "<s>",
                "<|begin_of_text|>",
                "<bos>",
                "</s>",
                "<|endoftext|>",
                "<|end_of_text|>",
                "<eos>",
            ]
            .iter()
            .find_map(|t| tokenizer.token_id(t))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_space_moves_to_the_continuation() {
        assert_eq!(
            move_trailing_space("Answer: ", "yes"),
            ("Answer:".to_string(), " yes".to_string())
        );
        assert_eq!(
            move_trailing_space("Q\n\n", " A"),
            ("Q".to_string(), "\n\n A".to_string())
        );
        // U+001F counts as space in Python, and U+00A0 in both.
        assert_eq!(
            move_trailing_space("a\u{1f}\u{a0}", "b"),
            ("a".to_string(), "\u{1f}\u{a0}b".to_string())
        );
        assert_eq!(
            move_trailing_space("no space", " x"),
            ("no space".to_string(), " x".to_string())
        );
    }

    #[test]
    fn continuation_is_the_whole_past_the_context_length() {
        // "ab" + "c" might merge "bc": the continuation is still cut by length.
        let (ctx, cont) = split_whole(vec![1, 2], &[1, 7, 8]);
        assert_eq!((ctx, cont), (vec![1, 2], vec![8]));
        let (_, cont) = split_whole(vec![1, 2, 3], &[1, 2]);
        assert!(cont.is_empty());
    }

    #[test]
    fn empty_context_becomes_the_prefix_token() {
        assert_eq!(empty_context(vec![5, 6], 0), (vec![0], vec![5, 6]));
        assert_eq!(empty_context(vec![0, 6], 0), (vec![0], vec![6]));
    }

    #[test]
    fn long_inputs_are_cut_from_the_left() {
        let s = truncate(&[1, 2, 3, 4, 5], &[6, 7], 6);
        // 5 tokens fit (max_length - 1): two context tokens are dropped.
        assert_eq!(s.tokens, vec![3, 4, 5, 6, 7]);
        assert_eq!(s.ctxlen, 3);
        let s = truncate(&[1, 2], &[3], DEFAULT_MAX_LENGTH);
        assert_eq!((s.tokens, s.ctxlen), (vec![1, 2, 3], 2));
    }

    #[test]
    fn the_engine_tokenizer_names_its_end_token_as_prefix() {
        let tok = Tokenizer::engine();
        let eos = tok.token_id("<|endoftext|>");
        assert!(eos.is_some());
        assert_eq!(
            prefix_token(&tok, std::path::Path::new("/nowhere/t.json")),
            eos
        );
    }
}
