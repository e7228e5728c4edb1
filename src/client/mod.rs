//! OpenAI HTTP client: streaming `/v1/completions` with per-event arrival times.

pub mod sse;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::json;

use crate::metrics::TokenSource;
pub use sse::SseDecoder;

/// One HTTP client (one connection pool) per target.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: reqwest::Url,
    api_key: Option<String>,
}

/// What one streaming request asks for.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: String,
    pub max_tokens: u32,
    pub temperature: f64,
    pub ignore_eos: bool,
}

/// What one streaming request observed.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamedCompletion {
    /// Arrival of each event carrying a choice, measured from the send.
    pub event_times: Vec<Duration>,
    pub output_tokens: u64,
    pub token_source: TokenSource,
    pub text: String,
}

#[derive(Deserialize)]
struct Chunk {
    #[serde(default)]
    choices: Vec<ChunkChoice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ChunkChoice {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    completion_tokens: Option<u64>,
}

impl Client {
    pub fn new(base_url: &str, api_key: Option<String>) -> anyhow::Result<Self> {
        let mut base_url = reqwest::Url::parse(base_url)?;
        if !base_url.path().ends_with('/') {
            let path = format!("{}/", base_url.path());
            base_url.set_path(&path);
        }
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

    /// Sends one streaming completion and times every event.
    pub async fn stream_completion(
        &self,
        req: &CompletionRequest,
    ) -> Result<StreamedCompletion, String> {
        let body = json!({
            "model": req.model,
            "prompt": req.prompt,
            "max_tokens": req.max_tokens,
            "temperature": req.temperature,
            "ignore_eos": req.ignore_eos,
            "stream": true,
            "stream_options": { "include_usage": true },
        });
        let request = self
            .authorize(self.http.post(self.url("v1/completions")))
            .json(&body);
        let sent = Instant::now();
        let response = request
            .send()
            .await
            .map_err(|e| format!("connection: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            return Err(format!("HTTP {}: {}", status.as_u16(), snippet(&text)));
        }
        let mut body = response.bytes_stream();
        let mut decoder = SseDecoder::new();
        let mut out = StreamedCompletion {
            event_times: Vec::new(),
            output_tokens: 0,
            token_source: TokenSource::Events,
            text: String::new(),
        };
        let mut usage_tokens = None;
        let mut done = false;
        while let Some(chunk) = body.next().await {
            // Timestamp on arrival, before any decoding work.
            let arrived = sent.elapsed();
            let bytes = chunk
                .map_err(|e| format!("stream broke after {} events: {e}", out.event_times.len()))?;
            for payload in decoder.feed(&bytes) {
                done |= handle_payload(&payload, arrived, &mut out, &mut usage_tokens)?;
            }
        }
        for payload in decoder.finish() {
            done |= handle_payload(&payload, sent.elapsed(), &mut out, &mut usage_tokens)?;
        }
        if !done {
            return Err(format!(
                "stream ended without [DONE] after {} events",
                out.event_times.len()
            ));
        }
        if out.event_times.is_empty() {
            return Err("stream carried no tokens".to_string());
        }
        match usage_tokens {
            Some(n) => {
                out.output_tokens = n;
                out.token_source = TokenSource::Usage;
            }
            None => out.output_tokens = out.event_times.len() as u64,
        }
        Ok(out)
    }
}

/// Applies one SSE payload; returns true on `[DONE]`.
fn handle_payload(
    payload: &str,
    arrived: Duration,
    out: &mut StreamedCompletion,
    usage_tokens: &mut Option<u64>,
) -> Result<bool, String> {
    let payload = payload.trim();
    if payload == "[DONE]" {
        return Ok(true);
    }
    let chunk: Chunk = serde_json::from_str(payload)
        .map_err(|e| format!("malformed event ({e}): {}", snippet(payload)))?;
    if let Some(err) = chunk.error {
        return Err(format!(
            "server error in stream: {}",
            snippet(&err.to_string())
        ));
    }
    // vLLM's convention: every message with a non-empty `choices` is one event,
    // even when its text is empty.
    if !chunk.choices.is_empty() {
        out.event_times.push(arrived);
        for c in &chunk.choices {
            if let Some(t) = &c.text {
                out.text.push_str(t);
            }
        }
    }
    if let Some(n) = chunk.usage.and_then(|u| u.completion_tokens) {
        *usage_tokens = Some(n);
    }
    Ok(false)
}

fn snippet(text: &str) -> String {
    let one_line = text.replace('\n', " ");
    if one_line.chars().count() > 200 {
        format!("{}…", one_line.chars().take(200).collect::<String>())
    } else {
        one_line
    }
}
