//! OpenAI HTTP client: `/v1/completions` and `/v1/chat/completions`, streamed
//! or not, with the arrival time of every stream event.

pub mod sse;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Endpoint;
use crate::metrics::{ErrorKind, TokenSource};
pub use sse::SseDecoder;

/// One HTTP client (one connection pool) per target.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: reqwest::Url,
    api_key: Option<String>,
}

/// Why a plain JSON request failed.
#[derive(Debug, Clone, PartialEq)]
pub struct PostFailure {
    pub retryable: bool,
    pub message: String,
}

/// What one request asks for.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub model: String,
    pub prompt: String,
    pub max_tokens: u32,
    pub min_tokens: Option<u32>,
    pub temperature: f64,
    pub ignore_eos: bool,
}

/// What one successful request observed.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Arrival of each event carrying a token, measured from the send. A
    /// non-streamed request has one "event": the whole response.
    pub event_times: Vec<Duration>,
    /// Tokens per event, when the server reported cumulative usage on every event.
    pub event_tokens: Vec<u32>,
    /// From `usage.completion_tokens`, else the number of events (see `token_source`).
    pub output_tokens: u64,
    pub token_source: TokenSource,
    pub prompt_tokens: Option<u64>,
    pub text: String,
}

/// Why a request failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub kind: ErrorKind,
    pub message: String,
}

impl Failure {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The JSON body of a request. Streaming asks for usage in the stream, and for
/// usage on every event (vLLM's `continuous_usage_stats`) so that an event
/// carrying several tokens can be told apart from one carrying a single token.
pub fn request_body(req: &CompletionRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "ignore_eos": req.ignore_eos,
        "stream": req.stream,
    });
    match req.endpoint {
        Endpoint::Completions => body["prompt"] = json!(req.prompt),
        Endpoint::Chat => body["messages"] = json!([{"role": "user", "content": req.prompt}]),
    }
    if let Some(min) = req.min_tokens {
        body["min_tokens"] = json!(min);
    }
    if req.stream {
        body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    }
    body
}

pub fn endpoint_path(endpoint: Endpoint) -> &'static str {
    match endpoint {
        Endpoint::Completions => "v1/completions",
        Endpoint::Chat => "v1/chat/completions",
    }
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct Choice {
    /// Completions.
    #[serde(default)]
    text: Option<String>,
    /// Chat, streamed.
    #[serde(default)]
    delta: Option<Message>,
    /// Chat, whole.
    #[serde(default)]
    message: Option<Message>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    content: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// What one SSE payload says.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chunk {
    pub done: bool,
    /// The payload is a token event (choices present, not a role-only chat preamble).
    pub is_event: bool,
    pub text: String,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
}

/// Parses one SSE payload. A payload that is not JSON, or that carries an
/// `error` object, fails the request.
pub fn parse_chunk(payload: &str) -> Result<Chunk, Failure> {
    let payload = payload.trim();
    if payload == "[DONE]" {
        return Ok(Chunk {
            done: true,
            ..Default::default()
        });
    }
    let body: Body = serde_json::from_str(payload).map_err(|e| {
        Failure::new(
            ErrorKind::Stream,
            format!("malformed event ({e}): {}", snippet(payload)),
        )
    })?;
    if let Some(err) = body.error {
        return Err(Failure::new(
            ErrorKind::Stream,
            format!("server error in stream: {}", snippet(&err.to_string())),
        ));
    }
    let mut chunk = Chunk {
        prompt_tokens: body.usage.and_then(|u| u.prompt_tokens),
        completion_tokens: body.usage.and_then(|u| u.completion_tokens),
        ..Default::default()
    };
    for c in &body.choices {
        match (&c.text, &c.delta) {
            (Some(t), _) => {
                chunk.text.push_str(t);
                chunk.is_event = true;
            }
            (None, Some(delta)) => {
                let content = delta.content.as_deref().unwrap_or("");
                chunk.text.push_str(content);
                // The chat preamble announces the role and carries no token.
                chunk.is_event |= !(delta.role.is_some() && content.is_empty());
            }
            (None, None) => chunk.is_event = true,
        }
    }
    Ok(chunk)
}

impl Client {
    pub fn new(base_url: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let mut base_url = reqwest::Url::parse(base_url)?;
        // OpenAI clients take the base with `/v1` (`http://host:8000/v1`);
        // servegate's paths carry it, so a trailing `/v1` is the same server.
        let path = base_url.path().trim_end_matches('/');
        let path = path.strip_suffix("/v1").unwrap_or(path);
        let path = format!("{path}/");
        base_url.set_path(&path);
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(usize::MAX)
            .tcp_nodelay(true)
            .build()?;
        Ok(Self {
            http,
            base_url,
            api_key,
        })
    }

    pub fn url(&self, path: &str) -> reqwest::Url {
        self.base_url
            .join(path.trim_start_matches('/'))
            .expect("relative path joins a base URL")
    }

    pub fn base_url(&self) -> &reqwest::Url {
        &self.base_url
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Polls `path` until it answers 200, or `timeout` passes.
    pub async fn wait_ready(&self, path: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        while Instant::now() < deadline {
            let probe = self
                .authorize(self.http.get(self.url(path)))
                .timeout(Duration::from_secs(2));
            match probe.send().await {
                Ok(r) if r.status().is_success() => return Ok(()),
                Ok(r) => last = format!("HTTP {}", r.status()),
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!(
            "{} did not answer 200 within {:.1} s (last: {last})",
            self.url(path),
            timeout.as_secs_f64()
        ))
    }

    /// The first model `/v1/models` lists.
    pub async fn first_model(&self) -> Result<String, String> {
        let response = self
            .authorize(self.http.get(self.url("v1/models")))
            .send()
            .await
            .map_err(|e| format!("GET /v1/models: {e}"))?;
        let body: Value = response
            .json()
            .await
            .map_err(|e| format!("GET /v1/models: {e}"))?;
        body["data"][0]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "GET /v1/models listed no model; pass --model".to_string())
    }

    /// Posts a JSON body and reads a JSON answer (no timing, no streaming).
    /// A failure says whether trying again may help (connection errors,
    /// timeouts, 429 and 5xx) or not (any other status, a body that is not JSON).
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        timeout: Duration,
    ) -> Result<Value, PostFailure> {
        let request = self
            .authorize(self.http.post(self.url(path)))
            .timeout(timeout)
            .json(body);
        let response = request.send().await.map_err(|e| PostFailure {
            retryable: true,
            message: format!("POST {path}: {e}"),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| PostFailure {
            retryable: true,
            message: format!("POST {path}: reading the answer: {e}"),
        })?;
        if !status.is_success() {
            return Err(PostFailure {
                retryable: status.as_u16() == 429 || status.is_server_error(),
                message: format!(
                    "POST {path}: HTTP {}: {}",
                    status.as_u16(),
                    error_text(&text)
                ),
            });
        }
        serde_json::from_str(&text).map_err(|e| PostFailure {
            retryable: false,
            message: format!(
                "POST {path}: the answer is not JSON ({e}): {}",
                snippet(&text)
            ),
        })
    }

    /// Sends one request and times it.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, Failure> {
        let request = self
            .authorize(self.http.post(self.url(endpoint_path(req.endpoint))))
            .json(&request_body(req));
        let sent = Instant::now();
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connection
            };
            Failure::new(kind, format!("connection: {e}"))
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let kind = if status.is_server_error() {
                ErrorKind::Http5xx
            } else {
                ErrorKind::Http4xx
            };
            return Err(Failure::new(
                kind,
                format!("HTTP {}: {}", status.as_u16(), error_text(&text)),
            ));
        }
        if req.stream {
            read_stream(response, sent).await
        } else {
            read_whole(response, sent).await
        }
    }
}

async fn read_stream(response: reqwest::Response, sent: Instant) -> Result<Completion, Failure> {
    let mut body = response.bytes_stream();
    let mut decoder = SseDecoder::new();
    let mut acc = Accumulator::default();
    while let Some(piece) = body.next().await {
        // Timestamp on arrival, before any decoding work.
        let arrived = sent.elapsed();
        let bytes = piece.map_err(|e| {
            Failure::new(
                ErrorKind::Connection,
                format!("stream broke after {} events: {e}", acc.times.len()),
            )
        })?;
        for payload in decoder.feed(&bytes) {
            acc.add(parse_chunk(&payload)?, arrived);
        }
    }
    for payload in decoder.finish() {
        acc.add(parse_chunk(&payload)?, sent.elapsed());
    }
    acc.finish()
}

async fn read_whole(response: reqwest::Response, sent: Instant) -> Result<Completion, Failure> {
    let bytes = response
        .bytes()
        .await
        .map_err(|e| Failure::new(ErrorKind::Connection, format!("response broke: {e}")))?;
    let arrived = sent.elapsed();
    let text = String::from_utf8_lossy(&bytes);
    let body: Body = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            ErrorKind::Stream,
            format!("malformed response ({e}): {}", snippet(&text)),
        )
    })?;
    let choice = body
        .choices
        .first()
        .ok_or_else(|| Failure::new(ErrorKind::Stream, "response has no choices"))?;
    let generated = choice
        .text
        .clone()
        .or_else(|| choice.message.as_ref().and_then(|m| m.content.clone()))
        .unwrap_or_default();
    let usage_tokens = body.usage.and_then(|u| u.completion_tokens);
    Ok(Completion {
        event_times: vec![arrived],
        event_tokens: Vec::new(),
        output_tokens: usage_tokens.unwrap_or(1),
        token_source: if usage_tokens.is_some() {
            TokenSource::Usage
        } else {
            TokenSource::Events
        },
        prompt_tokens: body.usage.and_then(|u| u.prompt_tokens),
        text: generated,
    })
}

/// Folds stream chunks into a completion.
#[derive(Default)]
struct Accumulator {
    times: Vec<Duration>,
    /// Cumulative completion tokens reported with each event (None when absent).
    cumulative: Vec<Option<u64>>,
    text: String,
    usage_tokens: Option<u64>,
    prompt_tokens: Option<u64>,
    done: bool,
}

impl Accumulator {
    fn add(&mut self, chunk: Chunk, arrived: Duration) {
        self.done |= chunk.done;
        if chunk.is_event {
            self.times.push(arrived);
            self.cumulative.push(chunk.completion_tokens);
            self.text.push_str(&chunk.text);
        }
        if chunk.completion_tokens.is_some() {
            self.usage_tokens = chunk.completion_tokens;
        }
        if chunk.prompt_tokens.is_some() {
            self.prompt_tokens = chunk.prompt_tokens;
        }
    }

    fn finish(self) -> Result<Completion, Failure> {
        if !self.done {
            return Err(Failure::new(
                ErrorKind::Stream,
                format!(
                    "stream ended without [DONE] after {} events",
                    self.times.len()
                ),
            ));
        }
        if self.times.is_empty() {
            return Err(Failure::new(ErrorKind::Stream, "stream carried no tokens"));
        }
        let event_tokens = match self
            .cumulative
            .iter()
            .copied()
            .collect::<Option<Vec<u64>>>()
        {
            Some(cum) => cum
                .iter()
                .scan(0u64, |prev, &c| {
                    let delta = c.saturating_sub(*prev);
                    *prev = c;
                    Some(delta as u32)
                })
                .collect(),
            None => Vec::new(),
        };
        let (output_tokens, token_source) = match self.usage_tokens {
            Some(n) => (n, TokenSource::Usage),
            None => (self.times.len() as u64, TokenSource::Events),
        };
        Ok(Completion {
            event_times: self.times,
            event_tokens,
            output_tokens,
            token_source,
            prompt_tokens: self.prompt_tokens,
            text: self.text,
        })
    }
}

/// What an error answer says: the message of an OpenAI-style
/// `{"error": {"message": …}}` body (or FastAPI's `{"detail": …}`), else
/// the start of the body as it is. Users read these in failure reports.
fn error_text(body: &str) -> String {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let m = v
                .pointer("/error/message")
                .or_else(|| v.get("error").filter(|e| e.is_string()))
                .or_else(|| v.get("detail"))
                .or_else(|| v.get("message"))?;
            Some(match m.as_str() {
                Some(text) => text.to_string(),
                None => m.to_string(),
            })
        });
    snippet(message.as_deref().unwrap_or(body))
}

fn snippet(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_with_v1_is_the_same_server() {
        for base in [
            "http://127.0.0.1:8000",
            "http://127.0.0.1:8000/",
            "http://127.0.0.1:8000/v1",
            "http://127.0.0.1:8000/v1/",
        ] {
            let c = Client::new(base, None).unwrap();
            assert_eq!(
                c.url("/v1/models").as_str(),
                "http://127.0.0.1:8000/v1/models",
                "{base}"
            );
        }
        let proxied = Client::new("http://h/llm/v1", None).unwrap();
        assert_eq!(proxied.url("/v1/models").as_str(), "http://h/llm/v1/models");
    }

    #[test]
    fn error_text_quotes_the_servers_message() {
        let openai =
            r#"{"error":{"code":404,"message":"The model `M` does not exist.","object":"error"}}"#;
        assert_eq!(error_text(openai), "The model `M` does not exist.");
        assert_eq!(error_text(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(error_text(r#"{"error":"overloaded"}"#), "overloaded");
        assert_eq!(
            error_text("<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_text(&"x".repeat(300)).chars().count(), 201);
    }

    fn req(endpoint: Endpoint, stream: bool) -> CompletionRequest {
        CompletionRequest {
            endpoint,
            stream,
            model: "m".into(),
            prompt: "hi".into(),
            max_tokens: 8,
            min_tokens: Some(8),
            temperature: 0.0,
            ignore_eos: true,
        }
    }

    #[test]
    fn bodies_for_each_endpoint() {
        let b = request_body(&req(Endpoint::Completions, true));
        assert_eq!(b["prompt"], "hi");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["min_tokens"], 8);
        assert_eq!(b["ignore_eos"], true);
        let b = request_body(&req(Endpoint::Chat, false));
        assert_eq!(b["messages"][0]["role"], "user");
        assert!(b.get("stream_options").is_none());
    }

    #[test]
    fn chat_role_preamble_is_not_a_token_but_empty_text_events_are() {
        let role =
            parse_chunk(r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#)
                .unwrap();
        assert!(!role.is_event);
        let tok = parse_chunk(r#"{"choices":[{"index":0,"delta":{"content":" hi"}}]}"#).unwrap();
        assert!(tok.is_event && tok.text == " hi");
        let empty = parse_chunk(r#"{"choices":[{"index":0,"text":""}]}"#).unwrap();
        assert!(empty.is_event);
        let usage =
            parse_chunk(r#"{"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":9}}"#)
                .unwrap();
        assert!(!usage.is_event);
        assert_eq!(
            (usage.prompt_tokens, usage.completion_tokens),
            (Some(3), Some(9))
        );
        assert!(parse_chunk("[DONE]").unwrap().done);
        assert_eq!(
            parse_chunk("{not json").unwrap_err().kind,
            ErrorKind::Stream
        );
        assert_eq!(
            parse_chunk(r#"{"error":{"message":"boom"}}"#)
                .unwrap_err()
                .kind,
            ErrorKind::Stream
        );
    }

    #[test]
    fn usage_deltas_give_tokens_per_event() {
        let mut acc = Accumulator::default();
        let ms = Duration::from_millis;
        for (i, (text, cum)) in [(" a", 1), (" b c", 3), ("", 3), (" d", 4)]
            .iter()
            .enumerate()
        {
            let chunk = Chunk {
                is_event: true,
                text: text.to_string(),
                completion_tokens: Some(*cum),
                ..Default::default()
            };
            acc.add(chunk, ms(10 * (i as u64 + 1)));
        }
        acc.add(parse_chunk("[DONE]").unwrap(), ms(50));
        let c = acc.finish().unwrap();
        assert_eq!(c.event_tokens, vec![1, 2, 0, 1]);
        assert_eq!(c.output_tokens, 4);
        assert_eq!(c.token_source, TokenSource::Usage);
        assert_eq!(c.text, " a b c d");
    }

    #[test]
    fn truncated_stream_fails_with_a_reason() {
        let mut acc = Accumulator::default();
        acc.add(
            parse_chunk(r#"{"choices":[{"text":"x"}]}"#).unwrap(),
            Duration::ZERO,
        );
        let f = acc.finish().unwrap_err();
        assert_eq!(f.kind, ErrorKind::Stream);
        assert!(
            f.message.contains("without [DONE] after 1 events"),
            "{}",
            f.message
        );
    }
}
