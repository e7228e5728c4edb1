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
    if token_logprobs.len() < n + 1 {
        return Err(format!(
            "the server returned {} log-probabilities for a prompt of {n} tokens plus one generated: it ignores `echo`, so prompt tokens cannot be scored",
            token_logprobs.len()
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

/// Scores every request, in order. `on_done` is called once per finished
/// request (for a progress bar). The first request that fails for good fails
/// the whole call, with what the server said.
pub async fn score_all(
    client: &Client,
    model: &str,
    requests: &[Scored],
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
        .map(|(i, scored)| async move { (i, score_one(client, model, scored, options).await) })
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
    options: &SendOptions,
) -> Result<Loglik, String> {
    let answer = post_retrying(
        client,
        "v1/completions",
        &request_body(model, scored),
        options,
    )
    .await?;
    parse_answer(&answer, scored)
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
                tokio::time::sleep(wait).await;
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
