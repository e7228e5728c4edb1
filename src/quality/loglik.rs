//! Log-likelihoods from a server, through `/v1/completions` with `echo`.
//!
//! Each request sends token ids as the prompt and asks for one generated
//! token with log-probabilities, exactly as lm-evaluation-harness's
//! `local-completions` model does; the prompt's log-probabilities past the
//! context are summed. Requests run concurrently and are retried with backoff
//! when the server is busy or briefly unreachable.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::encode::Scored;
use crate::client::Client;

/// The seed lm-evaluation-harness sends with every request.
pub const SEED: u64 = 1234;

/// How requests are sent.
#[derive(Debug, Clone, Copy)]
pub struct SendOptions {
    /// Requests in flight at once.
    pub concurrency: usize,
    /// Tries after the first on 429, 5xx, timeouts and connection errors.
    pub max_retries: u32,
    /// Per-request limit.
    pub timeout: Duration,
    /// Wait before the first retry; doubles on each further one.
    pub backoff: Duration,
}

impl Default for SendOptions {
    fn default() -> Self {
        Self {
            concurrency: 8,
            max_retries: 3,
            timeout: Duration::from_secs(120),
            backoff: Duration::from_millis(500),
        }
    }
}

/// The continuation's log-likelihood and whether greedy decoding would produce it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Loglik {
    pub ll: f64,
    pub is_greedy: bool,
}

/// The body of one request.
pub fn request_body(model: &str, scored: &Scored) -> Value {
    json!({
        "model": model,
        "prompt": scored.tokens,
        "echo": true,
        "logprobs": 1,
        "max_tokens": 1,
        "temperature": 0,
        "seed": SEED,
    })
}

/// Reads one answer: `token_logprobs[ctxlen:-1]` summed (the last entry is
/// the generated token), greedy when each equals the best of its `top_logprobs`.
/// A server that ignores `echo` answers with too few log-probabilities; that
/// is an error, never a silent zero.
pub fn parse_answer(answer: &Value, scored: &Scored) -> Result<Loglik, String> {
    let logprobs = &answer["choices"][0]["logprobs"];
    let Some(token_logprobs) = logprobs["token_logprobs"].as_array() else {
        return Err(
            "the answer has no `choices[0].logprobs.token_logprobs`: the server returns no prompt log-probabilities (it must support `echo` with `logprobs` on /v1/completions)"
                .into(),
        );
    };
    let n = scored.tokens.len();
    // The generated token's entry may be missing when the server stopped at
    // once (it generated its end token); the prompt's must all be there.
    if token_logprobs.len() < n {
        return Err(format!(
            "the server returned {} log-probabilities for a prompt of {n} tokens: it ignores `echo`, so prompt tokens cannot be scored",
            token_logprobs.len()
        ));
    }
    let generated = answer["usage"]["completion_tokens"].as_u64().unwrap_or(0);
    if token_logprobs.len() == n && generated > 0 {
        return Err(format!(
            "the server echoed {n} log-probabilities for a prompt of {n} tokens and {generated} generated: \
             its echo is one short, so its entries are shifted (llama.cpp does this with a model that \
             adds no BOS token) and scores would read the wrong tokens"
        ));
    }
    let top = logprobs["top_logprobs"].as_array();
    let mut ll = 0.0;
    let mut is_greedy = true;
    for (i, lp) in token_logprobs
        .iter()
        .enumerate()
        .take(n)
        .skip(scored.ctxlen)
    {
        let lp = lp
            .as_f64()
            .ok_or_else(|| format!("prompt token {i} has no log-probability (null)"))?;
        ll += lp;
        if is_greedy {
            let best = top
                .and_then(|t| t.get(i))
                .and_then(Value::as_object)
                .and_then(|m| m.values().filter_map(Value::as_f64).reduce(f64::max));
            match best {
                Some(best) if lp == best => {}
                _ => is_greedy = false,
            }
        }
    }
    Ok(Loglik { ll, is_greedy })
}

/// A request's prompt as text: the scored tokens decoded, and each token's
/// own text (to check that the server split the text the same way).
#[derive(Debug, Clone, PartialEq)]
pub struct TextPrompt {
    pub text: String,
    pub pieces: Vec<String>,
}

/// The body of one request sending `prompt` as text (lm-eval's
/// `tokenized_requests=False`): otherwise the same as `request_body`.
pub fn text_request_body(model: &str, prompt: &TextPrompt) -> Value {
    json!({
        "model": model,
        "prompt": prompt.text,
        "echo": true,
        "logprobs": 1,
        "max_tokens": 1,
        "temperature": 0,
        "seed": SEED,
    })
}

/// Reads an answer to a text prompt: as `parse_answer`, once the echoed
/// tokens are aligned with the local tokenizer's. A server may put a BOS
/// token in front (echoed or not); the alignment that matches is used. When
/// none does, the two tokenizers disagree and scoring would silently read
/// the wrong tokens: an error naming the first token that differs.
pub fn parse_text_answer(
    answer: &Value,
    scored: &Scored,
    prompt: &TextPrompt,
) -> Result<Loglik, String> {
    let logprobs = &answer["choices"][0]["logprobs"];
    let n = scored.tokens.len();
    let echoed = logprobs["token_logprobs"].as_array().map_or(0, Vec::len);
    let tokens: Vec<&str> = logprobs["tokens"]
        .as_array()
        .map(|t| t.iter().map(|v| v.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    // A token holding part of a UTF-8 character has no text of its own.
    let partial = |t: &str| t.is_empty() || t.contains('\u{FFFD}');
    let aligned = |offset: usize| {
        tokens.len() >= offset + n
            && prompt
                .pieces
                .iter()
                .zip(&tokens[offset..offset + n])
                .all(|(mine, theirs)| partial(mine) || partial(theirs) || mine == theirs)
    };
    let offset = if tokens.is_empty() {
        // Nothing to compare: a count one over prompt + generated is a BOS.
        usize::from(echoed == n + 2)
    } else if aligned(0) {
        0
    } else if aligned(1) {
        1
    } else {
        return Err(tokenizer_mismatch(&prompt.pieces, &tokens, n));
    };
    let mut shifted = answer.clone();
    if offset == 1 {
        for key in ["token_logprobs", "top_logprobs", "tokens"] {
            if let Some(list) = shifted["choices"][0]["logprobs"][key].as_array_mut() {
                list.remove(0);
            }
        }
    }
    parse_answer(&shifted, scored)
}

fn tokenizer_mismatch(mine: &[String], theirs: &[&str], n: usize) -> String {
    let at = mine
        .iter()
        .zip(theirs)
        .position(|(a, b)| a != b)
        .unwrap_or(mine.len().min(theirs.len()));
    format!(
        "the server's tokens for the prompt differ from the local tokenizer's ({n} tokens); \
         first difference at token {at}: local {:?}, server {:?}. Scores would read the wrong \
         tokens: give the suite the server's own tokenizer (`tokenizer`)",
        mine.get(at).map(String::as_str).unwrap_or("(end)"),
        theirs.get(at).copied().unwrap_or("(end)")
    )
}

/// Scores every request, in order. `on_done` is called once per finished
/// request (for a progress bar). The first request that fails for good fails
/// the whole call, with what the server said. With `texts`, request `i`
/// sends `texts[i]` instead of its token ids.
pub async fn score_all(
    client: &Client,
    model: &str,
    requests: &[Scored],
    texts: Option<&[TextPrompt]>,
    options: &SendOptions,
    on_done: &(dyn Fn() + Sync),
) -> Result<Vec<Loglik>, String> {
    if let Some(empty) = requests.iter().position(|r| r.ctxlen == 0) {
        return Err(format!(
            "request {empty} has no context tokens left (the context is empty or was truncated away)"
        ));
    }
    let mut results: Vec<Option<Loglik>> = vec![None; requests.len()];
    let mut answers = futures_util::stream::iter(requests.iter().enumerate())
        .map(|(i, scored)| async move {
            let text = texts.map(|t| &t[i]);
            (i, score_one(client, model, scored, text, options).await)
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((i, answer)) = answers.next().await {
        results[i] = Some(answer?);
        on_done();
    }
    Ok(results
        .into_iter()
        .map(|r| r.expect("every request answered"))
        .collect())
}

async fn score_one(
    client: &Client,
    model: &str,
    scored: &Scored,
    text: Option<&TextPrompt>,
    options: &SendOptions,
) -> Result<Loglik, String> {
    match text {
        None => {
            let body = request_body(model, scored);
            let answer = post_retrying(client, "v1/completions", &body, options).await?;
            parse_answer(&answer, scored)
        }
        Some(t) => {
            let body = text_request_body(model, t);
            let answer = post_retrying(client, "v1/completions", &body, options).await?;
            parse_text_answer(&answer, scored, t)
        }
    }
}

/// POSTs `body`, retrying with doubling waits while the failure is one a
/// retry may cure (429, 5xx, timeouts, connection errors).
pub async fn post_retrying(
    client: &Client,
    path: &str,
    body: &Value,
    options: &SendOptions,
) -> Result<Value, String> {
    let mut wait = options.backoff;
    let mut tries = 0;
    loop {
        match client.post_json(path, body, options.timeout).await {
            Ok(answer) => return Ok(answer),
            Err(f) if f.retryable && tries < options.max_retries => {
                tries += 1;
                // The server's own `Retry-After` wins over the backoff.
                tokio::time::sleep(f.retry_after.unwrap_or(wait)).await;
                wait = wait.saturating_mul(2);
            }
            Err(f) if tries > 0 => {
                return Err(format!("{} (after {} tries)", f.message, tries + 1))
            }
            Err(f) => return Err(f.message),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scored() -> Scored {
        Scored {
            tokens: vec![10, 11, 12, 13],
            ctxlen: 2,
        }
    }

    #[test]
    fn body_matches_the_harness_request() {
        let b = request_body("m", &scored());
        assert_eq!(b["prompt"], json!([10, 11, 12, 13]));
        assert_eq!(b["echo"], json!(true));
        assert_eq!(b["logprobs"], json!(1));
        assert_eq!(b["max_tokens"], json!(1));
        assert_eq!(b["temperature"], json!(0));
        assert_eq!(b["seed"], json!(1234));
    }

    #[test]
    fn sums_the_continuation_and_drops_the_generated_token() {
        let answer = json!({"choices": [{"logprobs": {
            "token_logprobs": [null, -1.0, -0.5, -0.25, -9.0],
            "top_logprobs": [null, {"a": -1.0}, {"b": -0.5}, {"c": -0.25, "d": -0.1}, {"e": -9.0}],
        }}]});
        let l = parse_answer(&answer, &scored()).unwrap();
        assert_eq!(l.ll, -0.75);
        // Token 3 (-0.25) is not the best of its top list (-0.1).
        assert!(!l.is_greedy);
        let greedy = json!({"choices": [{"logprobs": {
            "token_logprobs": [null, -1.0, -0.5, -0.25, -9.0],
            "top_logprobs": [null, {"a": -1.0}, {"b": -0.5}, {"c": -0.25}, {"e": -9.0}],
        }}]});
        assert!(parse_answer(&greedy, &scored()).unwrap().is_greedy);
    }

    fn text(pieces: &[&str]) -> TextPrompt {
        TextPrompt {
            text: pieces.concat(),
            pieces: pieces.iter().map(|p| p.to_string()).collect(),
        }
    }

    #[test]
    fn text_prompts_check_the_servers_tokens() {
        let prompt = text(&["The", " sea", " is", " wide"]);
        let answer = json!({"choices": [{"logprobs": {
            "tokens": ["The", " sea", " is", " wide", "!"],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -9.0],
            "top_logprobs": [null, {"a": -1.0}, {"b": -0.5}, {"c": -0.25}, {"e": -9.0}],
        }}]});
        let l = parse_text_answer(&answer, &scored(), &prompt).unwrap();
        assert_eq!(l.ll, -0.75);
        // A BOS the server added and echoed is skipped.
        let with_bos = json!({"choices": [{"logprobs": {
            "tokens": ["<s>", "The", " sea", " is", " wide", "!"],
            "token_logprobs": [null, -7.0, -1.0, -0.5, -0.25, -9.0],
            "top_logprobs": [null, {"x": -7.0}, {"a": -1.0}, {"b": -0.5}, {"c": -0.25}, {"e": -9.0}],
        }}]});
        assert_eq!(
            parse_text_answer(&with_bos, &scored(), &prompt).unwrap().ll,
            -0.75
        );
        // Split differently: the first differing token is named.
        let split = json!({"choices": [{"logprobs": {
            "tokens": ["The", " se", "a", " is", " wide", "!"],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -0.1, -9.0],
        }}]});
        let e = parse_text_answer(&split, &scored(), &prompt).unwrap_err();
        assert!(e.contains("token 1: local \" sea\", server \" se\""), "{e}");
        let same_count = json!({"choices": [{"logprobs": {
            "tokens": ["The", " se", "a is", " wide", "!"],
            "token_logprobs": [null, -1.0, -0.5, -0.25, -9.0],
        }}]});
        assert!(parse_text_answer(&same_count, &scored(), &prompt)
            .unwrap_err()
            .contains("first difference at token 1"));
        // No generated token (the server stopped at once): the prompt's are enough.
        let stopped = json!({"choices": [{"logprobs": {
            "tokens": ["The", " sea", " is", " wide"],
            "token_logprobs": [null, -1.0, -0.5, -0.25],
        }}]});
        assert_eq!(
            parse_text_answer(&stopped, &scored(), &prompt).unwrap().ll,
            -0.75
        );
        let b = text_request_body("m", &prompt);
        assert_eq!(b["prompt"], json!("The sea is wide"));
        assert_eq!(b["echo"], json!(true));
    }

    #[test]
    fn a_server_without_prompt_logprobs_is_an_error() {
        // Only the generated token's log-probability: echo was ignored.
        let answer = json!({"choices": [{"logprobs": {
            "token_logprobs": [-0.3], "top_logprobs": [{"x": -0.3}]}}]});
        let e = parse_answer(&answer, &scored()).unwrap_err();
        assert!(e.contains("ignores `echo`"), "{e}");
        let e = parse_answer(&json!({"choices": [{"text": "x"}]}), &scored()).unwrap_err();
        assert!(e.contains("no prompt log-probabilities"), "{e}");
        let nulls = json!({"choices": [{"logprobs": {
            "token_logprobs": [null, null, null, null, -1.0]}}]});
        assert!(parse_answer(&nulls, &scored())
            .unwrap_err()
            .contains("null"));
    }
}
