//! Generations from a server, sent as lm-evaluation-harness sends them:
//! `local-completions` (the prompt as token ids when a tokenizer is at
//! hand, else as text) or `local-chat-completions` (messages), greedy, with
//! the task's stop strings and lm-eval's seed.

use futures_util::StreamExt;
use serde_json::{json, Value};

use super::generate::GenDoc;
use super::loglik::{post_retrying, SendOptions, SEED};
use crate::client::Client;
use crate::config::{Endpoint, GenTaskSpec};

/// The prompt of one generation request.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Token ids (left-truncated to fit the model's length with the generation).
    Tokens(Vec<u32>),
    Text(String),
    /// Chat messages (role, content).
    Messages(Vec<(&'static str, String)>),
}

/// The stop strings sent: the task's, plus the tokenizer's end-of-text
/// string on completions (lm-eval's `handle_stop_sequences`); chat sends at
/// most four, as lm-eval's chat model does.
pub fn stop_strings(spec: &GenTaskSpec, endpoint: Endpoint, eos: Option<&str>) -> Vec<String> {
    let mut stop = spec.stop.clone();
    match endpoint {
        Endpoint::Completions => {
            if let Some(eos) = eos {
                if !stop.iter().any(|s| s == eos) {
                    stop.push(eos.to_string());
                }
            }
        }
        Endpoint::Chat => stop.truncate(4),
    }
    stop
}

/// The prompt for `doc`: messages on the chat endpoint; else token ids when
/// `ids` are given (kept to their last `max_length - 1 - max_tokens`, as
/// lm-eval truncates), else text.
pub fn prompt(
    doc: &GenDoc,
    endpoint: Endpoint,
    multiturn: bool,
    ids: Option<Vec<u32>>,
    max_length: usize,
    max_tokens: u32,
) -> Prompt {
    match (endpoint, ids) {
        (Endpoint::Chat, _) => Prompt::Messages(doc.messages(multiturn)),
        (Endpoint::Completions, Some(ids)) => {
            let keep = max_length.saturating_sub(1 + max_tokens as usize);
            Prompt::Tokens(ids[ids.len().saturating_sub(keep)..].to_vec())
        }
        (Endpoint::Completions, None) => Prompt::Text(doc.text()),
    }
}

/// The request body, field for field lm-eval's.
pub fn request_body(model: &str, prompt: &Prompt, max_tokens: u32, stop: &[String]) -> Value {
    let mut body = json!({
        "model": model,
        "max_tokens": max_tokens,
        "temperature": 0.0,
        "stop": stop,
        "seed": SEED,
    });
    match prompt {
        Prompt::Tokens(ids) => body["prompt"] = json!(ids),
        Prompt::Text(text) => body["prompt"] = json!(text),
        Prompt::Messages(m) => {
            body["messages"] = m
                .iter()
                .map(|(role, content)| json!({"role": role, "content": content}))
                .collect()
        }
    }
    body
}

/// The API path a prompt goes to.
pub fn path(prompt: &Prompt) -> &'static str {
    match prompt {
        Prompt::Messages(_) => "v1/chat/completions",
        _ => "v1/completions",
    }
}

/// The generated text of an answer.
pub fn parse_answer(answer: &Value, chat: bool) -> Result<String, String> {
    let choice = answer
        .get("choices")
        .and_then(|c| c.get(0))
        .ok_or("the answer has no `choices`")?;
    let text = if chat {
        choice.get("message").and_then(|m| m.get("content"))
    } else {
        choice.get("text")
    };
    match text {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Null) | None => Err(format!(
            "the answer has no generated text (`{}` is missing or null)",
            if chat { "message.content" } else { "text" }
        )),
        Some(other) => Err(format!("the generated text is not a string: {other}")),
    }
}

/// Sends every request (bodies built by `request_body`), answers in order;
/// `on_done` once per answer. The first request that fails for good fails
/// the call with what the server said.
pub async fn generate_all(
    client: &Client,
    requests: &[(&'static str, Value)],
    options: &SendOptions,
    on_done: &(dyn Fn() + Sync),
) -> Result<Vec<String>, String> {
    let mut out: Vec<Option<String>> = vec![None; requests.len()];
    let mut answers = futures_util::stream::iter(requests.iter().enumerate())
        .map(|(i, (path, body))| async move {
            let answer = post_retrying(client, path, body, options).await;
            (
                i,
                answer.and_then(|a| parse_answer(&a, path.contains("chat"))),
            )
        })
        .buffer_unordered(options.concurrency.max(1));
    while let Some((i, text)) = answers.next().await {
        out[i] = Some(text.map_err(|e| format!("generation {}: {e}", i + 1))?);
        on_done();
    }
    Ok(out.into_iter().map(|t| t.expect("answered")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quality::generate::gsm8k_spec;

    #[test]
    fn completions_stop_at_the_end_of_text_too_chat_at_four() {
        let spec = gsm8k_spec();
        assert_eq!(
            stop_strings(&spec, Endpoint::Completions, Some("<|endoftext|>")),
            ["Question:", "</s>", "<|im_end|>", "<|endoftext|>"]
        );
        assert_eq!(
            stop_strings(&spec, Endpoint::Completions, Some("</s>")).len(),
            3
        );
        let mut many = spec.clone();
        many.stop.extend(["a".to_string(), "b".to_string()]);
        assert_eq!(stop_strings(&many, Endpoint::Chat, Some("x")).len(), 4);
    }

    #[test]
    fn bodies_are_lm_evals() {
        let p = Prompt::Tokens(vec![1, 2, 3]);
        let b = request_body("m", &p, 256, &["Q:".to_string()]);
        assert_eq!(
            b,
            json!({"model": "m", "prompt": [1, 2, 3], "max_tokens": 256, "temperature": 0.0,
                   "stop": ["Q:"], "seed": 1234})
        );
        let c = request_body("m", &Prompt::Messages(vec![("user", "hi".into())]), 5, &[]);
        assert_eq!(c["messages"], json!([{"role": "user", "content": "hi"}]));
        assert_eq!(path(&Prompt::Text("x".into())), "v1/completions");
    }

    #[test]
    fn token_prompts_keep_their_end() {
        let doc = GenDoc {
            index: 0,
            turns: vec![],
            target: String::new(),
        };
        let p = prompt(
            &doc,
            Endpoint::Completions,
            false,
            Some((0..10).collect()),
            8,
            3,
        );
        assert_eq!(p, Prompt::Tokens(vec![6, 7, 8, 9]));
    }

    #[test]
    fn answers_without_text_are_errors() {
        assert_eq!(
            parse_answer(&json!({"choices": [{"text": " 42"}]}), false).unwrap(),
            " 42"
        );
        assert_eq!(
            parse_answer(&json!({"choices": [{"message": {"content": "7"}}]}), true).unwrap(),
            "7"
        );
        let e = parse_answer(&json!({"choices": [{"message": {"content": null}}]}), true);
        assert!(e.unwrap_err().contains("null"));
        assert!(parse_answer(&json!({}), false).is_err());
    }
}
