//! OpenAI HTTP client: `/v1/completions` and `/v1/chat/completions`, streamed
//! or not, with the arrival time of every stream event.

pub mod sse;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::config::Endpoint;
use crate::metrics::{ErrorKind, TokenSource};
pub use sse::{SseDecoder, SseError, DEFAULT_MAX_LINE_BYTES};

/// The largest response body (a whole stream included) a client accepts
/// unless told otherwise: far beyond any real completion, far below what
/// would exhaust the machine.
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 64 << 20;

/// The limit of a request that names none (the model list).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Usage beyond this is not a count a server could have produced.
const MAX_PLAUSIBLE_TOKENS: u64 = u32::MAX as u64;

/// What a client accepts from a server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Largest response body, in bytes.
    pub max_response_bytes: usize,
    /// Longest stream line (and event), in bytes.
    pub max_line_bytes: usize,
    /// Whole-request limit (headers and body) of requests that name none.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_line_bytes: DEFAULT_MAX_LINE_BYTES,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// One HTTP client (one connection pool) per target.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base_url: reqwest::Url,
    api_key: Option<String>,
    limits: Limits,
}

/// Why a plain JSON request failed.
#[derive(Debug, Clone, PartialEq)]
pub struct PostFailure {
    pub retryable: bool,
    pub message: String,
    /// How long the server asked to wait before trying again (`Retry-After`
    /// in seconds, on 429 and 503).
    pub retry_after: Option<Duration>,
}

/// A `Retry-After` header in delay-seconds form (the HTTP-date form is
/// rare from inference servers and is ignored: the usual backoff applies).
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let secs: f64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    // Bounded, so a hostile header cannot park a run for a day.
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(120.0)))
}

/// What one request asks for.
#[derive(Debug, Clone)]
pub struct CompletionRequest {
    pub endpoint: Endpoint,
    pub stream: bool,
    pub model: String,
    pub prompt: String,
    /// Earlier messages of a conversation, sent before `prompt` on the chat
    /// endpoint (a completions prompt holds its own transcript).
    pub history: Vec<crate::conversation::Message>,
    pub max_tokens: u32,
    pub min_tokens: Option<u32>,
    pub temperature: f64,
    /// Sent only when true (a vLLM extension some servers refuse).
    pub ignore_eos: bool,
    /// What a stream asks for in `stream_options`.
    pub stream_usage: StreamUsage,
    /// Whole-request limit, body included (the client's own limit when `None`).
    pub timeout: Option<Duration>,
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

/// What a stream asks the server to report in `stream_options`. Servers
/// differ: vLLM takes both options, some take only `include_usage`, and a
/// strict one refuses `stream_options` altogether (the probe tells which).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StreamUsage {
    /// Usage on every event (vLLM's `continuous_usage_stats`), so an event
    /// carrying several tokens can be told apart from one carrying one.
    #[default]
    EveryEvent,
    /// One usage chunk at the end (`include_usage`).
    Final,
    /// No `stream_options` at all: tokens are counted from the events.
    Off,
}

/// How requests to one server are shaped: the optional fields it takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dialect {
    pub stream_usage: StreamUsage,
    /// `ignore_eos` may be sent (refused by servers that reject unknown fields).
    pub ignore_eos: bool,
}

impl Default for Dialect {
    /// vLLM's, which most OpenAI-compatible engines follow.
    fn default() -> Self {
        Self {
            stream_usage: StreamUsage::EveryEvent,
            ignore_eos: true,
        }
    }
}

/// The JSON body of a request.
pub fn request_body(req: &CompletionRequest) -> Value {
    let mut body = json!({
        "model": req.model,
        "max_tokens": req.max_tokens,
        "temperature": req.temperature,
        "stream": req.stream,
    });
    if req.ignore_eos {
        body["ignore_eos"] = json!(true);
    }
    match req.endpoint {
        Endpoint::Completions => body["prompt"] = json!(req.prompt),
        Endpoint::Chat => {
            let mut messages = json!(req.history);
            if let Value::Array(list) = &mut messages {
                list.push(json!({"role": "user", "content": req.prompt}));
            }
            body["messages"] = messages;
        }
    }
    if let Some(min) = req.min_tokens {
        body["min_tokens"] = json!(min);
    }
    if req.stream {
        match req.stream_usage {
            StreamUsage::EveryEvent => {
                body["stream_options"] =
                    json!({"include_usage": true, "continuous_usage_stats": true})
            }
            StreamUsage::Final => body["stream_options"] = json!({"include_usage": true}),
            StreamUsage::Off => {}
        }
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
    parse_chunk_quoting(payload, None)
}

/// [`parse_chunk`], with `secret` removed from any text it quotes.
fn parse_chunk_quoting(payload: &str, secret: Option<&str>) -> Result<Chunk, Failure> {
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
            format!("malformed event ({e}): {}", quote(payload, secret)),
        )
    })?;
    if let Some(err) = body.error {
        return Err(Failure::new(
            ErrorKind::Stream,
            format!(
                "server error in stream: {}",
                quote(&err.to_string(), secret)
            ),
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
            limits: Limits::default(),
        })
    }

    /// The same client with other limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    pub fn url(&self, path: &str) -> reqwest::Url {
        self.base_url
            .join(path.trim_start_matches('/'))
            .expect("relative path joins a base URL")
    }

    pub fn base_url(&self) -> &reqwest::Url {
        &self.base_url
    }

    /// `text` with the API key replaced by `[redacted]`: a server may quote
    /// the Authorization header back, and messages end up in reports.
    pub fn redact(&self, text: &str) -> String {
        redact(text, self.api_key.as_deref())
    }

    /// The start of a server's text, for a message, without the API key.
    fn quote(&self, text: &str) -> String {
        quote(text, self.api_key.as_deref())
    }

    fn authorize(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.api_key {
            Some(key) => req.bearer_auth(key),
            None => req,
        }
    }

    /// Polls `path` until it answers ready (see [`Client::probe_ready`]), or `timeout` passes.
    pub async fn wait_ready(&self, path: &str, timeout: Duration) -> Result<(), String> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match self.probe_ready(path, left.min(PROBE_TIMEOUT)).await {
                Ok(()) => return Ok(()),
                Err(e) => last = e,
            }
            tokio::time::sleep(left.min(Duration::from_millis(50))).await;
        }
        Err(format!(
            "{} not ready within {:.1} s (last: {last})",
            self.url(path),
            timeout.as_secs_f64()
        ))
    }

    /// Opens up to `count` keep-alive connections at once and leaves them in
    /// the pool, so the requests that follow pay no connection setup: each
    /// is a `GET /v1/models` in flight at the same moment, and HTTP/1.1
    /// needs one connection per request in flight. Returns how many
    /// answered within `timeout` (whatever their status: the connection is
    /// what counts).
    pub async fn open_connections(&self, count: usize, timeout: Duration) -> usize {
        // A response body is read to its end (up to 1 MiB) so that its
        // connection goes back to the pool.
        const MOST: usize = 1 << 20;
        let one = || async {
            let mut response = self
                .authorize(self.http.get(self.url("v1/models")))
                .send()
                .await
                .ok()?;
            let mut read = 0;
            while let Some(chunk) = response.chunk().await.ok()? {
                read += chunk.len();
                if read > MOST {
                    return None;
                }
            }
            Some(())
        };
        let all = futures_util::future::join_all((0..count).map(|_| one()));
        match tokio::time::timeout(timeout, all).await {
            Ok(done) => done.iter().filter(|d| d.is_some()).count(),
            Err(_) => 0,
        }
    }

    /// One readiness probe, headers and body within `timeout`. `/v1/models`
    /// must answer a JSON model list: a proxy's or a half-started server's
    /// HTML page with status 200 is not an OpenAI server. Other paths
    /// (`/health`) need only a success status.
    pub async fn probe_ready(&self, path: &str, timeout: Duration) -> Result<(), String> {
        let wants_models = path.trim_matches('/') == "v1/models";
        let probe = async {
            let response = self
                .authorize(self.http.get(self.url(path)))
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            if !wants_models {
                return Ok(());
            }
            let body = read_limited(response, self.limits.max_response_bytes)
                .await
                .map_err(|e| e.to_string())?;
            if is_model_list(&body) {
                Ok(())
            } else {
                Err(format!(
                    "answered {} but not a JSON model list: {}",
                    status.as_u16(),
                    self.quote(&String::from_utf8_lossy(&body))
                ))
            }
        };
        match tokio::time::timeout(timeout, probe).await {
            Ok(outcome) => outcome.map_err(|e| self.redact(&e)),
            Err(_) => Err(format!(
                "no complete answer within {:.1} s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// The first model `/v1/models` lists. Headers and body within the client's timeout.
    pub async fn first_model(&self) -> Result<String, String> {
        let timeout = self.limits.timeout;
        let fetch = async {
            let response = self
                .authorize(self.http.get(self.url("v1/models")))
                .send()
                .await
                .map_err(|e| error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                let text = read_prefix(response, ERROR_BODY_BYTES).await;
                return Err(format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    error_text(&self.redact(&text))
                ));
            }
            let body = read_limited(response, self.limits.max_response_bytes)
                .await
                .map_err(|e| e.to_string())?;
            serde_json::from_slice::<Value>(&body).map_err(|e| {
                format!(
                    "the answer is not JSON ({e}): {}",
                    self.quote(&String::from_utf8_lossy(&body))
                )
            })
        };
        let body = match tokio::time::timeout(timeout, fetch).await {
            Ok(outcome) => outcome.map_err(|e| format!("GET /v1/models: {}", self.redact(&e)))?,
            Err(_) => {
                return Err(format!(
                    "GET /v1/models: no complete answer within {:.1} s",
                    timeout.as_secs_f64()
                ))
            }
        };
        body["data"][0]["id"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| "GET /v1/models listed no model; pass --model".to_string())
    }

    /// Posts a JSON body and reads a JSON answer (no timing, no streaming),
    /// headers and body within `timeout`.
    /// A failure says whether trying again may help (connection errors,
    /// timeouts, 429 and 5xx) or not (any other status, a body that is not
    /// JSON or too large).
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
        let exchange = async {
            let response = request.send().await.map_err(|e| PostFailure {
                retryable: true,
                message: format!("POST {path}: {e}"),
                retry_after: None,
            })?;
            let status = response.status();
            if !status.is_success() {
                let wait = retry_after(response.headers());
                let text = read_prefix(response, ERROR_BODY_BYTES).await;
                return Err(PostFailure {
                    retry_after: wait,
                    retryable: status.as_u16() == 429 || status.is_server_error(),
                    message: format!(
                        "POST {path}: HTTP {}: {}",
                        status.as_u16(),
                        error_text(&self.redact(&text))
                    ),
                });
            }
            let text = read_limited(response, self.limits.max_response_bytes)
                .await
                .map_err(|e| PostFailure {
                    retryable: !matches!(e, BodyError::TooLarge(_)),
                    message: format!("POST {path}: reading the answer: {e}"),
                    retry_after: None,
                })?;
            serde_json::from_slice(&text).map_err(|e| PostFailure {
                retry_after: None,
                retryable: false,
                message: format!(
                    "POST {path}: the answer is not JSON ({e}): {}",
                    self.quote(&String::from_utf8_lossy(&text))
                ),
            })
        };
        // reqwest's own limit covers the body too; this one also bounds a
        // server that trickles bytes forever, whatever reqwest does.
        let outcome = match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome,
            Err(_) => Err(PostFailure {
                retryable: true,
                retry_after: None,
                message: format!(
                    "POST {path}: no complete answer within {:.1} s",
                    timeout.as_secs_f64()
                ),
            }),
        };
        outcome.map_err(|f| PostFailure {
            message: self.redact(&f.message),
            ..f
        })
    }

    /// Sends a request (a JSON body, or a GET without one) and returns the
    /// status and the body as text, whatever the status: what `servegate
    /// probe` needs to tell "not supported" from "failed". The body is
    /// bounded by the client's limits, the exchange by `timeout`; an error
    /// answer's text is its message.
    pub async fn ask(
        &self,
        path: &str,
        body: Option<&Value>,
        timeout: Duration,
    ) -> Result<(u16, String), String> {
        let request = match body {
            Some(b) => self.http.post(self.url(path)).json(b),
            None => self.http.get(self.url(path)),
        };
        let request = self.authorize(request).timeout(timeout);
        let exchange = async {
            let response = request.send().await.map_err(|e| error_chain(&e))?;
            let status = response.status();
            if !status.is_success() {
                let text = read_prefix(response, ERROR_BODY_BYTES).await;
                return Ok((status.as_u16(), error_text(&self.redact(&text))));
            }
            let body = read_limited(response, self.limits.max_response_bytes)
                .await
                .map_err(|e| e.to_string())?;
            Ok((
                status.as_u16(),
                self.redact(&String::from_utf8_lossy(&body)),
            ))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(outcome) => outcome.map_err(|e: String| self.redact(&e)),
            Err(_) => Err(format!(
                "no complete answer within {:.1} s",
                timeout.as_secs_f64()
            )),
        }
    }

    /// Sends one request and times it. The whole exchange, body included,
    /// ends within the request's timeout.
    pub async fn complete(&self, req: &CompletionRequest) -> Result<Completion, Failure> {
        let timeout = req.timeout.unwrap_or(self.limits.timeout);
        let request = self
            .authorize(self.http.post(self.url(endpoint_path(req.endpoint))))
            .json(&request_body(req));
        let sent = Instant::now();
        let outcome = match tokio::time::timeout(timeout, self.exchange(request, req, sent)).await {
            Ok(outcome) => outcome,
            Err(_) => Err(Failure::new(
                ErrorKind::Timeout,
                format!("timed out after {:.1} s", timeout.as_secs_f64()),
            )),
        };
        // Whatever a server said, its key goes no further than this client.
        outcome.map_err(|f| Failure {
            message: self.redact(&f.message),
            ..f
        })
    }

    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        req: &CompletionRequest,
        sent: Instant,
    ) -> Result<Completion, Failure> {
        let response = request.send().await.map_err(|e| {
            let kind = if e.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Connection
            };
            // The cause is what the user needs ("Too many open files",
            // "Connection refused"), not only reqwest's "error sending request".
            Failure::new(kind, format!("connection: {}", error_chain(&e)))
        })?;
        let status = response.status();
        if !status.is_success() {
            let text = read_prefix(response, ERROR_BODY_BYTES).await;
            let kind = if status.is_server_error() {
                ErrorKind::Http5xx
            } else {
                ErrorKind::Http4xx
            };
            return Err(Failure::new(
                kind,
                format!(
                    "HTTP {}: {}",
                    status.as_u16(),
                    error_text(&self.redact(&text))
                ),
            ));
        }
        if req.stream {
            self.read_stream(response, req, sent).await
        } else {
            self.read_whole(response, req, sent).await
        }
    }

    async fn read_stream(
        &self,
        response: reqwest::Response,
        req: &CompletionRequest,
        sent: Instant,
    ) -> Result<Completion, Failure> {
        let max = self.limits.max_response_bytes;
        if response.content_length().is_some_and(|n| n > max as u64) {
            return Err(Failure::new(ErrorKind::Stream, too_large(max)));
        }
        let secret = self.api_key.as_deref();
        let mut body = response.bytes_stream();
        let mut decoder = SseDecoder::with_max_line(self.limits.max_line_bytes);
        let mut acc = Accumulator::default();
        let mut received = 0usize;
        // The first bytes, to show what a body without events was instead
        // (an HTML page, a JSON error with status 200).
        let mut head = Vec::new();
        while let Some(piece) = body.next().await {
            // Timestamp on arrival, before any decoding work.
            let arrived = sent.elapsed();
            let bytes = piece.map_err(|e| {
                Failure::new(
                    ErrorKind::Connection,
                    format!(
                        "stream broke after {} events: {}",
                        acc.times.len(),
                        error_chain(&e)
                    ),
                )
            })?;
            // An endless stream fails here, not when memory runs out.
            received = received.saturating_add(bytes.len());
            if received > max {
                return Err(Failure::new(
                    ErrorKind::Stream,
                    format!("{} (after {} events)", too_large(max), acc.times.len()),
                ));
            }
            if head.len() < STREAM_HEAD_BYTES {
                head.extend(bytes.iter().take(STREAM_HEAD_BYTES - head.len()));
            }
            let payloads = decoder
                .feed(&bytes)
                .map_err(|e| Failure::new(ErrorKind::Stream, e.to_string()))?;
            for payload in payloads {
                acc.add(parse_chunk_quoting(&payload, secret)?, arrived);
            }
        }
        let payloads = decoder
            .finish()
            .map_err(|e| Failure::new(ErrorKind::Stream, e.to_string()))?;
        for payload in payloads {
            acc.add(parse_chunk_quoting(&payload, secret)?, sent.elapsed());
        }
        let no_events = acc.times.is_empty();
        acc.finish(req.max_tokens).map_err(|mut f| {
            if no_events && !head.is_empty() {
                let began = quote(&String::from_utf8_lossy(&head), secret);
                f.message.push_str(&format!("; the body began: {began}"));
            }
            f
        })
    }

    async fn read_whole(
        &self,
        response: reqwest::Response,
        req: &CompletionRequest,
        sent: Instant,
    ) -> Result<Completion, Failure> {
        let bytes = read_limited(response, self.limits.max_response_bytes)
            .await
            .map_err(|e| match e {
                BodyError::TooLarge(_) => Failure::new(ErrorKind::Stream, e.to_string()),
                BodyError::Broken(e) => {
                    Failure::new(ErrorKind::Connection, format!("response broke: {e}"))
                }
            })?;
        let arrived = sent.elapsed();
        parse_whole(&bytes, arrived, req.max_tokens, self.api_key.as_deref())
    }
}

/// Reads a non-streamed answer received at `arrived`.
fn parse_whole(
    bytes: &[u8],
    arrived: Duration,
    max_tokens: u32,
    secret: Option<&str>,
) -> Result<Completion, Failure> {
    let text = String::from_utf8_lossy(bytes);
    let body: Body = serde_json::from_str(&text).map_err(|e| {
        Failure::new(
            ErrorKind::Stream,
            format!("malformed response ({e}): {}", quote(&text, secret)),
        )
    })?;
    if let Some(err) = body.error {
        return Err(Failure::new(
            ErrorKind::Stream,
            format!("server error: {}", quote(&err.to_string(), secret)),
        ));
    }
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
    let prompt_tokens = body.usage.and_then(|u| u.prompt_tokens);
    check_usage(usage_tokens, prompt_tokens, max_tokens)?;
    Ok(Completion {
        event_times: vec![arrived],
        event_tokens: Vec::new(),
        output_tokens: usage_tokens.unwrap_or(1),
        token_source: if usage_tokens.is_some() {
            TokenSource::Usage
        } else {
            TokenSource::Events
        },
        prompt_tokens,
        text: generated,
    })
}

/// Usage no server could have meant fails the request: more completion
/// tokens than `max_tokens` allowed (exactly `max_tokens` is normal), or a
/// count no model produces. Trusted, it would pass a broken server and wrap
/// totals.
fn check_usage(
    completion: Option<u64>,
    prompt: Option<u64>,
    max_tokens: u32,
) -> Result<(), Failure> {
    let implausible = |what: &str, n: u64| {
        Err(Failure::new(
            ErrorKind::Stream,
            format!("implausible usage: {n} {what} tokens"),
        ))
    };
    if let Some(n) = completion {
        if max_tokens > 0 && n > u64::from(max_tokens) {
            return Err(Failure::new(
                ErrorKind::Stream,
                format!("usage reports {n} completion tokens, more than max_tokens = {max_tokens}"),
            ));
        }
        if n > MAX_PLAUSIBLE_TOKENS {
            return implausible("completion", n);
        }
    }
    match prompt {
        Some(n) if n > MAX_PLAUSIBLE_TOKENS => implausible("prompt", n),
        _ => Ok(()),
    }
}

/// Time allowed for one readiness probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// How much of a stream is kept to quote when it carried no event.
const STREAM_HEAD_BYTES: usize = 256;

/// How much of an error answer is read: enough to quote, never a flood.
const ERROR_BODY_BYTES: usize = 64 << 10;

/// Why a body could not be read.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("response larger than {}", sse::human_bytes(*.0))]
    TooLarge(usize),
    #[error("{}", error_chain(.0))]
    Broken(reqwest::Error),
}

fn too_large(max: usize) -> String {
    BodyError::TooLarge(max).to_string()
}

/// Reads a whole body, refusing one past `max` bytes: at once when its
/// declared length says so, else as soon as that many bytes arrived.
async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, BodyError> {
    if response.content_length().is_some_and(|n| n > max as u64) {
        return Err(BodyError::TooLarge(max));
    }
    let mut body = Vec::new();
    while let Some(piece) = response.chunk().await.map_err(BodyError::Broken)? {
        if body.len() + piece.len() > max {
            return Err(BodyError::TooLarge(max));
        }
        body.extend_from_slice(&piece);
    }
    Ok(body)
}

/// The first `max` bytes of an error answer (what arrived, if it broke).
async fn read_prefix(mut response: reqwest::Response, max: usize) -> String {
    let mut body = Vec::new();
    while body.len() < max {
        match response.chunk().await {
            Ok(Some(piece)) => {
                let take = piece.len().min(max - body.len());
                body.extend_from_slice(&piece[..take]);
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}

/// A `/v1/models` answer: a JSON object with a `data` list.
fn is_model_list(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body).is_ok_and(|v| v["data"].is_array())
}

/// An error and its causes, one line (reqwest's own text hides the cause).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
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

    fn finish(self, max_tokens: u32) -> Result<Completion, Failure> {
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
        let most = self.cumulative.iter().flatten().copied().max();
        check_usage(most.max(self.usage_tokens), self.prompt_tokens, max_tokens)?;
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

/// The first 200 characters of `text` on one line (looks no further: a body may be megabytes).
fn snippet(text: &str) -> String {
    match text.char_indices().nth(200) {
        Some((cut, _)) => format!("{}…", text[..cut].replace('\n', " ")),
        None => text.replace('\n', " "),
    }
}

/// `text` with every occurrence of `secret` replaced by `[redacted]`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() && text.contains(s) => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    }
}

/// The start of a server's text, for a message: the secret is removed
/// before cutting, so no part of it survives at the cut.
fn quote(text: &str, secret: Option<&str>) -> String {
    snippet(&redact(text, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_bounds_them() {
        use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};
        let with = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(RETRY_AFTER, HeaderValue::from_str(v).unwrap());
            retry_after(&h)
        };
        assert_eq!(with("2"), Some(Duration::from_secs(2)));
        assert_eq!(with(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(with("86400"), Some(Duration::from_secs(120)));
        assert_eq!(with("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(with("-1"), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

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
            history: Vec::new(),
            max_tokens: 8,
            min_tokens: Some(8),
            temperature: 0.0,
            ignore_eos: true,
            stream_usage: StreamUsage::EveryEvent,
            timeout: None,
        }
    }

    #[test]
    fn bodies_for_each_endpoint() {
        let b = request_body(&req(Endpoint::Completions, true));
        assert_eq!(b["prompt"], "hi");
        assert_eq!(b["stream_options"]["include_usage"], true);
        assert_eq!(b["min_tokens"], 8);
        assert_eq!(b["ignore_eos"], true);
        assert_eq!(b["stream_options"]["continuous_usage_stats"], true);
        let b = request_body(&req(Endpoint::Chat, false));
        assert_eq!(b["messages"][0]["role"], "user");
        assert!(b.get("stream_options").is_none());
        // A conversation's history goes first, the new message last.
        let mut r = req(Endpoint::Chat, true);
        r.history = vec![
            crate::conversation::Message::user("hello"),
            crate::conversation::Message::assistant("hi there"),
        ];
        let b = request_body(&r);
        assert_eq!(
            b["messages"],
            json!([
                {"role": "user", "content": "hello"},
                {"role": "assistant", "content": "hi there"},
                {"role": "user", "content": "hi"},
            ])
        );
    }

    #[test]
    fn bodies_carry_only_the_options_the_server_takes() {
        let mut r = req(Endpoint::Completions, true);
        r.stream_usage = StreamUsage::Final;
        r.ignore_eos = false;
        let b = request_body(&r);
        assert_eq!(b["stream_options"], json!({"include_usage": true}));
        assert!(b.get("ignore_eos").is_none(), "{b}");
        r.stream_usage = StreamUsage::Off;
        assert!(request_body(&r).get("stream_options").is_none());
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
        let c = acc.finish(8).unwrap();
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
        let f = acc.finish(8).unwrap_err();
        assert_eq!(f.kind, ErrorKind::Stream);
        assert!(
            f.message.contains("without [DONE] after 1 events"),
            "{}",
            f.message
        );
    }

    fn usage_chunk(completion: u64) -> Chunk {
        Chunk {
            is_event: true,
            text: "x".into(),
            completion_tokens: Some(completion),
            ..Default::default()
        }
    }

    #[test]
    fn usage_past_max_tokens_or_absurd_fails_the_request() {
        let done = || parse_chunk("[DONE]").unwrap();
        // Exactly max_tokens is what ignore_eos asks for.
        let mut acc = Accumulator::default();
        acc.add(usage_chunk(8), Duration::ZERO);
        acc.add(done(), Duration::ZERO);
        assert_eq!(acc.finish(8).unwrap().output_tokens, 8);
        // 2^64 − 1 used to wrap the totals and pass.
        let mut acc = Accumulator::default();
        acc.add(usage_chunk(u64::MAX), Duration::ZERO);
        acc.add(done(), Duration::ZERO);
        let f = acc.finish(8).unwrap_err();
        assert_eq!(f.kind, ErrorKind::Stream);
        assert!(
            f.message.contains("more than max_tokens = 8"),
            "{}",
            f.message
        );
        // A later, smaller usage does not hide an earlier impossible one.
        let mut acc = Accumulator::default();
        acc.add(usage_chunk(9), Duration::ZERO);
        acc.add(usage_chunk(3), Duration::ZERO);
        acc.add(done(), Duration::ZERO);
        assert!(acc.finish(8).is_err());
        // Without a max_tokens, only absurd counts are refused.
        let mut acc = Accumulator::default();
        acc.add(usage_chunk(u64::MAX), Duration::ZERO);
        acc.add(done(), Duration::ZERO);
        let f = acc.finish(0).unwrap_err();
        assert!(f.message.contains("implausible usage"), "{}", f.message);
        let whole = br#"{"choices":[{"text":"x"}],"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":2}}"#;
        let f = parse_whole(whole, Duration::ZERO, 8, None).unwrap_err();
        assert!(f.message.contains("implausible usage"), "{}", f.message);
        let whole = br#"{"choices":[{"text":"x"}],"usage":{"completion_tokens":9}}"#;
        assert!(parse_whole(whole, Duration::ZERO, 8, None).is_err());
        let whole = br#"{"choices":[{"text":"x"}],"usage":{"completion_tokens":8}}"#;
        assert_eq!(
            parse_whole(whole, Duration::ZERO, 8, None)
                .unwrap()
                .output_tokens,
            8
        );
    }

    #[test]
    fn quoted_text_never_carries_the_key() {
        let key = "sk-live-0123456789abcdef";
        // The key straddles the 200-character cut: redacting after cutting
        // would leave its first half in the message.
        let body = format!("{}Bearer {key} was refused", "x".repeat(170));
        let quoted = quote(&body, Some(key));
        assert!(!quoted.contains("sk-live"), "{quoted}");
        assert!(quoted.contains("Bearer [redacted]"), "{quoted}");
        let f = parse_chunk_quoting(&format!("{{\"error\": \"bad key {key}\"}}"), Some(key))
            .unwrap_err();
        assert!(!f.message.contains(key), "{}", f.message);
        let f = parse_chunk_quoting(&format!("not json {key}"), Some(key)).unwrap_err();
        assert!(f.message.contains("not json [redacted]"), "{}", f.message);
        assert_eq!(redact("no secret here", Some("")), "no secret here");
        assert_eq!(redact("k k", None), "k k");
    }

    #[test]
    fn a_model_list_is_json_with_data() {
        assert!(is_model_list(br#"{"object":"list","data":[{"id":"m"}]}"#));
        assert!(is_model_list(br#"{"data":[]}"#));
        assert!(!is_model_list(b"<html><body>It works!</body></html>"));
        assert!(!is_model_list(br#"{"status":"ok"}"#));
        assert!(!is_model_list(b"\xff\xfe"));
    }
}

/// Arbitrary bytes and arbitrary JSON through every parser a response
/// meets: decoding, chunk parsing, usage, whole answers, log-probabilities.
/// A malformed response is an `Err` for its request, never a panic.
#[cfg(test)]
mod fuzz {
    use super::*;
    use crate::quality::encode::Scored;
    use crate::quality::loglik;
    use proptest::prelude::*;

    /// JSON whose object keys are those the parsers look for, so that
    /// generated values reach past the first type check.
    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(Value::from),
            "[a-z \\[\\]{}\"é]{0,8}".prop_map(Value::from),
        ];
        let key = prop::sample::select(vec![
            "choices",
            "text",
            "delta",
            "message",
            "role",
            "content",
            "usage",
            "completion_tokens",
            "prompt_tokens",
            "error",
            "logprobs",
            "token_logprobs",
            "top_logprobs",
            "data",
            "id",
        ]);
        leaf.prop_recursive(5, 96, 6, move |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| {
                    Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
                }),
            ]
        })
    }

    /// A chunk shaped like a server's (completions or chat, usage or not),
    /// with values that are mostly sensible and sometimes anything.
    fn chunk() -> impl Strategy<Value = Value> {
        let text = prop_oneof![4 => "[a-z é]{0,4}".prop_map(Value::from), 1 => json()];
        let count = prop_oneof![
            6 => (0u64..80).prop_map(Value::from),
            1 => any::<u64>().prop_map(Value::from),
            1 => json(),
        ];
        let usage = prop::option::of((count.clone(), count));
        (0..3u8, text, any::<bool>(), usage).prop_map(|(shape, text, role, usage)| {
            let choice = match shape {
                0 => serde_json::json!({"index": 0, "text": text}),
                1 if role => serde_json::json!({"delta": {"role": "assistant", "content": text}}),
                1 => serde_json::json!({"delta": {"content": text}}),
                _ => serde_json::json!({"message": {"content": text}}),
            };
            let mut v = serde_json::json!({"choices": [choice]});
            if let Some((prompt, completion)) = usage {
                v["usage"] =
                    serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion});
            }
            v
        })
    }

    /// A stream of `data:` events (server-shaped chunks, any JSON, [DONE],
    /// raw bytes, comments), then split at arbitrary points.
    fn stream() -> impl Strategy<Value = Vec<u8>> {
        let event = prop_oneof![
            12 => chunk().prop_map(|v| format!("data: {v}\n\n").into_bytes()),
            1 => json().prop_map(|v| format!("data: {v}\r\n\r\n").into_bytes()),
            3 => Just(b"data: [DONE]\n\n".to_vec()),
            1 => Just(b": ping\r\n".to_vec()),
            1 => prop::collection::vec(any::<u8>(), 0..24),
        ];
        prop::collection::vec(event, 0..10).prop_map(|parts| parts.concat())
    }

    /// What the client does with a streamed body, without the network.
    fn read(chunks: &[&[u8]], max_tokens: u32, max_line: usize) -> Result<Completion, Failure> {
        let mut decoder = SseDecoder::with_max_line(max_line);
        let mut acc = Accumulator::default();
        let stream = |e: SseError| Failure::new(ErrorKind::Stream, e.to_string());
        for (i, c) in chunks.iter().enumerate() {
            for payload in decoder.feed(c).map_err(stream)? {
                acc.add(parse_chunk(&payload)?, Duration::from_millis(i as u64));
            }
        }
        for payload in decoder.finish().map_err(stream)? {
            acc.add(parse_chunk(&payload)?, Duration::from_secs(1));
        }
        acc.finish(max_tokens)
    }

    fn split<'a>(bytes: &'a [u8], cuts: &[prop::sample::Index]) -> Vec<&'a [u8]> {
        let mut points: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        points.sort();
        points.push(bytes.len());
        let mut last = 0;
        points
            .into_iter()
            .map(|p| {
                let piece = &bytes[last..p];
                last = p;
                piece
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// Any bytes, any split: a result or an error, and the same one
        /// however the bytes were split; a success never claims more tokens
        /// than it was allowed.
        #[test]
        fn streams_of_anything_fail_only_their_request(
            bytes in stream(),
            cuts in prop::collection::vec(any::<prop::sample::Index>(), 0..12),
            max_tokens in 0u32..64,
            max_line in prop_oneof![Just(DEFAULT_MAX_LINE_BYTES), 1usize..256],
        ) {
            let whole = read(&[&bytes], max_tokens, max_line);
            let pieces = split(&bytes, &cuts);
            let split = read(&pieces, max_tokens, max_line);
            prop_assert_eq!(whole.is_ok(), split.is_ok());
            if let (Ok(a), Ok(b)) = (&whole, &split) {
                prop_assert_eq!(&a.text, &b.text);
                prop_assert_eq!(a.output_tokens, b.output_tokens);
                if a.token_source == TokenSource::Usage && max_tokens > 0 {
                    prop_assert!(a.output_tokens <= u64::from(max_tokens));
                }
                prop_assert!(a.event_tokens.is_empty() || a.event_tokens.len() == a.event_times.len());
            }
        }

        /// Whole (non-streamed) answers: arbitrary JSON, its text cut
        /// anywhere, or arbitrary bytes.
        #[test]
        fn whole_answers_of_anything_fail_only_their_request(
            value in json(),
            cut in any::<prop::sample::Index>(),
            noise in prop::collection::vec(any::<u8>(), 0..64),
            max_tokens in 0u32..64,
        ) {
            let text = value.to_string();
            let cut_text = &text.as_bytes()[..cut.index(text.len() + 1)];
            for body in [text.as_bytes(), cut_text, &noise] {
                if let Ok(c) = parse_whole(body, Duration::ZERO, max_tokens, None) {
                    if c.token_source == TokenSource::Usage && max_tokens > 0 {
                        prop_assert!(c.output_tokens <= u64::from(max_tokens));
                    }
                }
            }
        }

        /// Log-probability answers of any shape: a score or an error.
        #[test]
        fn loglik_answers_of_anything_fail_only_their_request(
            value in json(),
            tokens in prop::collection::vec(any::<u32>(), 0..8),
            ctxlen in 0usize..10,
        ) {
            let scored = Scored { tokens, ctxlen };
            let _ = loglik::parse_answer(&value, &scored);
            let wrapped = serde_json::json!({"choices": [{"logprobs": value}]});
            let _ = loglik::parse_answer(&wrapped, &scored);
        }
    }
}
