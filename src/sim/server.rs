//! HTTP surface of the embedded engine (axum), in OpenAI's and vLLM's wire format.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::rejection::JsonRejection;
use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use super::clock::PreciseClock;
use super::engine::{Engine, Ticks};
use super::lm::Model;
use crate::config::SimParams;

/// Longest prompt plus output the engine accepts, as vLLM's `max_model_len`.
pub const MAX_MODEL_LEN: usize = 2048;

#[derive(Clone)]
pub(super) struct State(Arc<Inner>);

struct Inner {
    model_name: String,
    params: SimParams,
    lm: &'static Model,
    engine: Engine,
    started: Instant,
    /// Text of every token id, decoded once.
    token_text: Vec<String>,
    /// `servegate sim` runs standalone: `crash_after` may end the process.
    standalone: bool,
    /// `servegate sim --log-prompts`: every prompt's token ids, a line each.
    prompt_log: Option<std::sync::Mutex<std::fs::File>>,
}

impl State {
    pub(super) fn new(
        model_name: &str,
        params: SimParams,
        clock: PreciseClock,
        gpu: Option<std::sync::Arc<super::gpu_step::GpuStepper>>,
        standalone: bool,
        prompt_log: Option<std::fs::File>,
    ) -> Self {
        let lm = Model::shared();
        let token_text = (0..lm.vocab_size() as u32)
            .map(|id| lm.tokenizer.decode_raw(&[id]))
            .collect();
        let engine = Engine::start(params.clone(), clock.clone(), gpu);
        Self(Arc::new(Inner {
            model_name: model_name.to_string(),
            params,
            lm,
            engine,
            started: Instant::now(),
            token_text,
            standalone,
            prompt_log: prompt_log.map(std::sync::Mutex::new),
        }))
    }
}

pub(super) async fn serve(listener: tokio::net::TcpListener, state: State) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "NotFoundError", "no such route") })
        .with_state(state);
    // Without TCP_NODELAY, Nagle's algorithm holds each small SSE event until
    // the previous segment is acknowledged, adding up to 40 ms per token.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn error(status: StatusCode, kind: &str, message: impl Into<String>) -> Response {
    let body = json!({
        "object": "error",
        "message": message.into(),
        "type": kind,
        "param": null,
        "code": status.as_u16(),
    });
    (status, Json(json!({"error": body}))).into_response()
}

fn bad_request(message: impl Into<String>) -> Response {
    error(StatusCode::BAD_REQUEST, "BadRequestError", message)
}

fn rejection(e: JsonRejection) -> Response {
    let status = e.status();
    let kind = if status == StatusCode::UNPROCESSABLE_ENTITY {
        "UnprocessableEntityError"
    } else {
        "BadRequestError"
    };
    error(status, kind, e.body_text())
}

impl Inner {
    fn starting(&self) -> Option<Response> {
        (self.started.elapsed() < self.params.startup_delay).then(|| {
            error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableError",
                "engine is starting",
            )
        })
    }
}

async fn health(AxumState(state): AxumState<State>) -> Response {
    match state.0.starting() {
        Some(r) => r,
        None => StatusCode::OK.into_response(),
    }
}

async fn models(AxumState(state): AxumState<State>) -> Response {
    if let Some(r) = state.0.starting() {
        return r;
    }
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.0.model_name,
            "object": "model",
            "created": now_unix(),
            "owned_by": "servegate",
            "max_model_len": MAX_MODEL_LEN,
        }]
    }))
    .into_response()
}

async fn metrics(AxumState(state): AxumState<State>) -> Response {
    let s = &state.0.engine.stats;
    let m = &state.0.model_name;
    let text = format!(
        "# HELP vllm:num_requests_running Requests in the running batch.\n\
         # TYPE vllm:num_requests_running gauge\n\
         vllm:num_requests_running{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:num_requests_waiting Requests waiting to be scheduled.\n\
         # TYPE vllm:num_requests_waiting gauge\n\
         vllm:num_requests_waiting{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:generation_tokens_total Tokens generated.\n\
         # TYPE vllm:generation_tokens_total counter\n\
         vllm:generation_tokens_total{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:prompt_tokens_total Prompt tokens processed.\n\
         # TYPE vllm:prompt_tokens_total counter\n\
         vllm:prompt_tokens_total{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:request_total Requests received.\n\
         # TYPE vllm:request_total counter\n\
         vllm:request_total{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:kv_cache_usage_perc KV cache in use (1 is full); engine mode.\n\
         # TYPE vllm:kv_cache_usage_perc gauge\n\
         vllm:kv_cache_usage_perc{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:prefix_cache_queries_total Prompt tokens looked up in the prefix cache.\n\
         # TYPE vllm:prefix_cache_queries_total counter\n\
         vllm:prefix_cache_queries_total{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:prefix_cache_hits_total Prompt tokens found in the prefix cache.\n\
         # TYPE vllm:prefix_cache_hits_total counter\n\
         vllm:prefix_cache_hits_total{{model_name=\"{m}\"}} {}\n\
         # HELP vllm:num_preemptions_total Requests preempted (this engine reserves, never preempts).\n\
         # TYPE vllm:num_preemptions_total counter\n\
         vllm:num_preemptions_total{{model_name=\"{m}\"}} 0\n",
        s.running.load(Ordering::Relaxed),
        s.waiting.load(Ordering::Relaxed),
        s.generation_tokens.load(Ordering::Relaxed),
        s.prompt_tokens.load(Ordering::Relaxed),
        s.requests.load(Ordering::Relaxed),
        state.0.engine.kv_cache_usage(),
        s.prefix_queries.load(Ordering::Relaxed),
        s.prefix_hits.load(Ordering::Relaxed),
    );
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

#[derive(Deserialize)]
struct TokenizeBody {
    #[serde(default)]
    prompt: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
}

async fn tokenize(
    AxumState(state): AxumState<State>,
    body: Result<Json<TokenizeBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return rejection(e),
    };
    let text = match (body.prompt, body.messages) {
        (Some(p), _) => p,
        (None, Some(m)) => chat_prompt(&m),
        (None, None) => return bad_request("give `prompt` or `messages`"),
    };
    let tokens = state.0.lm.tokenizer.encode(&text);
    Json(json!({"count": tokens.len(), "max_model_len": MAX_MODEL_LEN, "tokens": tokens}))
        .into_response()
}

#[derive(Deserialize)]
struct DetokenizeBody {
    tokens: Vec<u32>,
}

async fn detokenize(
    AxumState(state): AxumState<State>,
    body: Result<Json<DetokenizeBody>, JsonRejection>,
) -> Response {
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return rejection(e),
    };
    let vocab = state.0.lm.vocab_size() as u32;
    if let Some(bad) = body.tokens.iter().find(|&&t| t >= vocab) {
        return bad_request(format!(
            "token id {bad} is outside the vocabulary (size {vocab})"
        ));
    }
    Json(json!({"prompt": state.0.lm.tokenizer.decode_raw(&body.tokens)})).into_response()
}

#[derive(Deserialize, Clone)]
struct ChatMessage {
    #[serde(default)]
    role: String,
    /// A string, or OpenAI's content parts (`[{"type": "text", "text": …}]`,
    /// the text parts joined), or null.
    #[serde(default, deserialize_with = "content_text")]
    content: String,
}

fn content_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    use serde::de::Error;
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Null => Ok(String::new()),
        Value::Array(parts) => parts
            .iter()
            .map(|p| match (p["type"].as_str(), p["text"].as_str()) {
                (Some("text"), Some(t)) => Ok(t),
                (kind, _) => Err(D::Error::custom(format!(
                    "content part of type {:?}: the embedded engine reads text parts only",
                    kind.unwrap_or("(none)")
                ))),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|texts| texts.concat()),
        other => Err(D::Error::custom(format!(
            "content must be a string or a list of parts, not {other}"
        ))),
    }
}

/// A plain chat template: one `role: content` line per message, then the assistant's turn.
fn chat_prompt(messages: &[ChatMessage]) -> String {
    let mut s: String = messages
        .iter()
        .map(|m| format!("{}: {}\n", m.role, m.content))
        .collect();
    s.push_str("assistant:");
    s
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
    /// vLLM's extension: usage on every event.
    #[serde(default)]
    continuous_usage_stats: bool,
}

#[derive(Deserialize)]
struct GenerateBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    min_tokens: Option<u32>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(default)]
    echo: bool,
    /// Completions: a number (0–5). Chat: a boolean.
    #[serde(default)]
    logprobs: Option<Value>,
    /// Chat: alternatives per token (0–5).
    #[serde(default)]
    top_logprobs: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default)]
    ignore_eos: bool,
    #[serde(default)]
    stop: Option<Value>,
    /// Choices per prompt; only 1 is supported.
    #[serde(default)]
    n: Option<u32>,
    /// Fields this engine does not use (`top_p`, `user`, …): ignored, as
    /// vLLM ignores what it does not know, and named in the engine's log.
    #[serde(flatten)]
    other: serde_json::Map<String, Value>,
}

/// Logs, once per name, request fields the engine ignores.
fn note_ignored(fields: &serde_json::Map<String, Value>) {
    static SEEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let mut seen = SEEN.lock().unwrap_or_else(|e| e.into_inner());
    let new: Vec<&String> = fields.keys().filter(|k| !seen.contains(k)).collect();
    if !new.is_empty() {
        let names: Vec<&str> = new.iter().map(|k| k.as_str()).collect();
        eprintln!(
            "warning: ignoring request fields the engine does not use: {}",
            names.join(", ")
        );
        seen.extend(new.into_iter().cloned());
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Chat,
}

async fn completions(
    state: AxumState<State>,
    body: Result<Json<GenerateBody>, JsonRejection>,
) -> Response {
    generate(state, body, Kind::Text).await
}

async fn chat_completions(
    state: AxumState<State>,
    body: Result<Json<GenerateBody>, JsonRejection>,
) -> Response {
    generate(state, body, Kind::Chat).await
}

/// splitmix64: a stable, seedable hash for per-request randomness.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E3779B97F4A7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D049BB133111EB);
    x ^ (x >> 31)
}

fn uniform(x: u64) -> f64 {
    (mix(x) >> 11) as f64 / (1u64 << 53) as f64
}

/// Seeded Gaussian noise for the log-probability of `token` at `position`.
fn noise(seed: u64, position: usize, token: u32, sd: f64) -> f64 {
    if sd == 0.0 {
        return 0.0;
    }
    let key = mix(seed ^ mix(position as u64) ^ mix(token as u64 + 0x51));
    let (u1, u2) = (uniform(key).max(1e-12), uniform(key ^ 0xA5A5));
    sd * (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Everything one prompt's generation needs.
struct Request {
    prompt_ids: Vec<u32>,
    max_tokens: usize,
    min_tokens: usize,
    echo: bool,
    /// Alternatives per token, when log-probabilities were asked for.
    logprobs: Option<usize>,
    temperature: f64,
    seed: u64,
    ignore_eos: bool,
    stop: Vec<String>,
    /// A hash of the whole prompt: the log-probability noise of generated
    /// tokens depends on it, so that (with noise) greedy output depends on
    /// the whole prompt and not only on its last two tokens.
    prompt_hash: u64,
}

fn hash_ids(ids: &[u32]) -> u64 {
    ids.iter().fold(0x5EED_u64, |h, &id| mix(h ^ u64::from(id)))
}

/// One token's log-probability and its best alternatives.
struct TokenLogprob {
    token: String,
    logprob: f64,
    top: Vec<(String, f64)>,
}

/// One piece of output.
struct Piece {
    text: String,
    logprob: Option<TokenLogprob>,
    finish: Option<&'static str>,
    /// Tokens generated so far, this one included.
    generated: usize,
}

struct Generation {
    state: State,
    req: Request,
    context: Vec<u32>,
    /// Generated tokens whose text is not out yet: they end inside a
    /// multi-byte character, held back until it is complete (as vLLM's
    /// incremental detokenizer does), so output is never cut mid-character.
    pending: Vec<u32>,
    text: String,
    generated: usize,
    done: bool,
    ticks: Ticks,
    stall_at: Option<usize>,
    drop_at: Option<usize>,
}

impl Generation {
    fn logprob_at(
        &self,
        position: usize,
        a: Option<u32>,
        b: Option<u32>,
        token: u32,
        k: usize,
    ) -> TokenLogprob {
        let inner = &self.state.0;
        let sd = inner.params.logprob_noise;
        let seed = self.noise_seed(position);
        let lp = inner.lm.logprob(a, b, token) + noise(seed, position, token, sd);
        let top = inner.lm.top(a, b);
        let mut alts: Vec<(String, f64)> = top
            .iter()
            .take(k)
            .map(|&(id, lp)| {
                (
                    inner.token_text[id as usize].clone(),
                    lp + noise(seed, position, id, sd),
                )
            })
            .collect();
        alts.sort_by(|x, y| y.1.total_cmp(&x.1));
        TokenLogprob {
            token: inner.token_text[token as usize].clone(),
            logprob: lp,
            top: alts,
        }
    }

    /// The noise seed at `position`: the engine's in the prompt (so a
    /// prompt's log-probabilities do not depend on what follows), the
    /// prompt's own after it.
    fn noise_seed(&self, position: usize) -> u64 {
        let seed = self.state.0.params.seed;
        if position < self.req.prompt_ids.len() {
            seed
        } else {
            seed ^ self.req.prompt_hash
        }
    }

    /// The greedy choice: the best of the candidates after noise, so that it
    /// agrees with the log-probabilities reported.
    fn greedy(&self, position: usize, a: Option<u32>, b: Option<u32>) -> u32 {
        let inner = &self.state.0;
        let sd = inner.params.logprob_noise;
        let seed = self.noise_seed(position);
        inner
            .lm
            .top(a, b)
            .iter()
            .map(|&(id, lp)| (id, lp + noise(seed, position, id, sd)))
            .max_by(|x, y| x.1.total_cmp(&y.1))
            .map(|(id, _)| id)
            .expect("the model always has candidates")
    }

    /// Log-probabilities of the prompt itself (the first token has none).
    fn prompt_logprobs(&self, k: usize) -> Vec<Option<TokenLogprob>> {
        let ids = &self.req.prompt_ids;
        (0..ids.len())
            .map(|i| {
                (i > 0).then(|| {
                    let a = (i >= 2).then(|| ids[i - 2]);
                    self.logprob_at(i, a, Some(ids[i - 1]), ids[i], k)
                })
            })
            .collect()
    }

    /// The next piece, or None when the generation is over.
    async fn next(&mut self) -> Option<Piece> {
        if self.done || self.generated >= self.req.max_tokens {
            return None;
        }
        if self.drop_at == Some(self.generated) {
            // Fault: the stream is cut here.
            self.done = true;
            return None;
        }
        let stall = match self.stall_at {
            Some(at) if self.generated >= at => self.state.0.params.stall,
            _ => Duration::ZERO,
        };
        if !self.ticks.ready(self.generated, stall).await {
            self.done = true;
            return None;
        }
        let inner = &self.state.0;
        let n = self.context.len();
        let a = (n >= 2).then(|| self.context[n - 2]);
        let b = (n >= 1).then(|| self.context[n - 1]);
        let draw = uniform(self.req.seed ^ mix(self.generated as u64 + 1));
        let token = if self.req.temperature <= 0.0 && inner.params.logprob_noise > 0.0 {
            self.greedy(n, a, b)
        } else {
            inner.lm.next(a, b, self.req.temperature, draw)
        };
        let logprob = self
            .req
            .logprobs
            .map(|k| self.logprob_at(n, a, b, token, k));
        self.generated += 1;
        inner
            .engine
            .stats
            .generation_tokens
            .fetch_add(1, Ordering::Relaxed);
        if token == inner.lm.eos && !self.req.ignore_eos && self.generated > self.req.min_tokens {
            self.done = true;
            let rest = inner
                .lm
                .tokenizer
                .decode_raw(&std::mem::take(&mut self.pending))
                .replace('\u{FFFD}', "");
            self.text.push_str(&rest);
            return Some(Piece {
                text: rest,
                logprob,
                finish: Some("stop"),
                generated: self.generated,
            });
        }
        self.context.push(token);
        self.pending.push(token);
        let decoded = inner.lm.tokenizer.decode_raw(&self.pending);
        // A UTF-8 character is at most 4 bytes, so at most 4 byte tokens wait.
        let incomplete = decoded.ends_with('\u{FFFD}') && self.pending.len() < 4;
        let last = self.generated >= self.req.max_tokens;
        let mut piece = if incomplete && !last {
            String::new()
        } else {
            self.pending.clear();
            // Bytes that never became a character (a sampled lone
            // continuation byte) are dropped, not shown as U+FFFD.
            decoded.replace('\u{FFFD}', "")
        };
        let before = self.text.len();
        self.text.push_str(&piece);
        if let Some(cut) = self
            .req
            .stop
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
        {
            // Stop strings are not part of the output.
            piece = self.text[before.min(cut)..cut].to_string();
            self.text.truncate(cut);
            self.done = true;
            return Some(Piece {
                text: piece,
                logprob,
                finish: Some("stop"),
                generated: self.generated,
            });
        }
        let finish = (self.generated >= self.req.max_tokens).then_some("length");
        self.done = finish.is_some();
        Some(Piece {
            text: piece,
            logprob,
            finish,
            generated: self.generated,
        })
    }
}

fn legacy_logprobs(items: &[Option<TokenLogprob>], texts: &[String], start_offset: usize) -> Value {
    let mut offset = start_offset;
    let mut tokens = Vec::new();
    let mut token_logprobs = Vec::new();
    let mut top_logprobs = Vec::new();
    let mut text_offset = Vec::new();
    for (item, text) in items.iter().zip(texts) {
        tokens.push(json!(text));
        text_offset.push(json!(offset));
        offset += text.chars().count();
        match item {
            Some(t) => {
                token_logprobs.push(json!(t.logprob));
                let mut m = Map::new();
                for (tok, lp) in &t.top {
                    m.entry(tok.clone()).or_insert(json!(lp));
                }
                m.entry(t.token.clone()).or_insert(json!(t.logprob));
                top_logprobs.push(Value::Object(m));
            }
            None => {
                token_logprobs.push(Value::Null);
                top_logprobs.push(Value::Null);
            }
        }
    }
    json!({"tokens": tokens, "token_logprobs": token_logprobs, "top_logprobs": top_logprobs, "text_offset": text_offset})
}

fn chat_logprobs(items: &[TokenLogprob]) -> Value {
    let content: Vec<Value> = items
        .iter()
        .map(|t| {
            json!({
                "token": t.token,
                "logprob": t.logprob,
                "bytes": t.token.as_bytes(),
                "top_logprobs": t.top.iter().map(|(tok, lp)| json!({"token": tok, "logprob": lp, "bytes": tok.as_bytes()})).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"content": content})
}

/// Parses the prompt forms: a string, a list of strings, token ids, a list of token-id lists.
fn prompts_of(value: &Value, state: &State) -> Result<Vec<Vec<u32>>, String> {
    let tok = &state.0.lm.tokenizer;
    let vocab = state.0.lm.vocab_size() as u64;
    let ids = |items: &[Value]| -> Result<Vec<u32>, String> {
        items
            .iter()
            .map(|v| match v.as_u64() {
                Some(id) if id < vocab => Ok(id as u32),
                _ => Err(format!(
                    "prompt token {v} is not an id below the vocabulary size {vocab}"
                )),
            })
            .collect()
    };
    match value {
        Value::String(s) => Ok(vec![tok.encode(s)]),
        Value::Array(items) if items.is_empty() => Err("prompt is empty".into()),
        Value::Array(items) => match &items[0] {
            Value::String(_) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(|s| tok.encode(s))
                        .ok_or_else(|| "mixed prompt list".to_string())
                })
                .collect(),
            Value::Number(_) => Ok(vec![ids(items)?]),
            Value::Array(_) => items
                .iter()
                .map(|v| {
                    v.as_array()
                        .ok_or_else(|| "mixed prompt list".to_string())
                        .and_then(|a| ids(a))
                })
                .collect(),
            _ => Err(
                "prompt must be a string, a list of strings, token ids or lists of token ids"
                    .into(),
            ),
        },
        _ => Err(
            "prompt must be a string, a list of strings, token ids or lists of token ids".into(),
        ),
    }
}

fn stops_of(value: &Option<Value>) -> Result<Vec<String>, String> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| "stop must be strings".to_string())
            })
            .collect(),
        Some(_) => Err("stop must be a string or a list of strings".into()),
    }
}

async fn generate(
    AxumState(state): AxumState<State>,
    body: Result<Json<GenerateBody>, JsonRejection>,
    kind: Kind,
) -> Response {
    let arrived = Instant::now();
    let inner = state.0.clone();
    if let Some(r) = inner.starting() {
        return r;
    }
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return rejection(e),
    };
    let number = inner.count_request();
    if let Some(r) = inner.unknown_model(body.model.as_deref()) {
        return r;
    }
    note_ignored(&body.other);
    if body.n.is_some_and(|n| n != 1) {
        return bad_request("n must be 1: the embedded engine generates one choice per prompt");
    }
    let dice = Dice::roll(&inner.params, body.seed, number);
    if dice.fault < inner.params.error_rate {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "injected fault (error_rate)",
        );
    }
    let options = match GenerateOptions::check(&state, &body, kind) {
        Ok(o) => o,
        Err(e) => return bad_request(e),
    };
    let generations = start_generations(&state, &body, options, &dice, arrived);
    let meta = Meta::new(&inner, kind, number);
    if body.stream {
        let options = body.stream_options.unwrap_or(StreamOptions {
            include_usage: false,
            continuous_usage_stats: false,
        });
        let generation = generations.into_iter().next().expect("one prompt");
        stream_response(meta, generation, options).into_response()
    } else {
        whole_response(meta, generations).await
    }
}

impl Inner {
    /// Counts a request in and returns its number (from 1). A standalone
    /// engine with `crash_after` exits past that many, as a crashed server would.
    fn count_request(&self) -> u64 {
        let number = self.engine.stats.requests.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(limit) = self.params.crash_after {
            if self.standalone && number > limit {
                eprintln!("servegate sim: crash_after = {limit} reached, exiting");
                std::process::exit(70);
            }
        }
        number
    }

    /// vLLM's answer to a request for another model than the one served.
    fn unknown_model(&self, model: Option<&str>) -> Option<Response> {
        let model = model.filter(|m| *m != self.model_name)?;
        Some(error(
            StatusCode::NOT_FOUND,
            "NotFoundError",
            format!("The model `{model}` does not exist."),
        ))
    }
}

/// A request's randomness, fixed by the engine's seed and the request's
/// number so that runs repeat.
struct Dice {
    /// Sampling seed of the first prompt (the request's own, when given).
    seed: u64,
    /// Uniform in [0, 1): compared with `error_rate`, and the root of the
    /// per-prompt `drop_rate` rolls.
    fault: f64,
}

impl Dice {
    fn roll(params: &SimParams, seed: Option<u64>, number: u64) -> Self {
        Self {
            seed: seed.unwrap_or_else(|| mix(params.seed ^ number)),
            fault: uniform(mix(params.seed) ^ number),
        }
    }
}

/// A generation request's options, checked. The checks run in a fixed order:
/// the first that fails is the one answered.
struct GenerateOptions {
    prompts: Vec<Vec<u32>>,
    max_tokens: usize,
    logprobs: Option<usize>,
    stop: Vec<String>,
    temperature: f64,
}

impl GenerateOptions {
    /// The options, or the message of a 400 answer.
    fn check(state: &State, body: &GenerateBody, kind: Kind) -> Result<Self, String> {
        let prompts = prompts_for(state, body, kind)?;
        let max_tokens = body.max_tokens.or(body.max_completion_tokens).unwrap_or(16) as usize;
        let logprobs = logprobs_of(body, kind)?;
        let stop = stops_of(&body.stop)?;
        let temperature = body.temperature.unwrap_or(1.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err("temperature must be between 0 and 2".into());
        }
        if body.echo && kind == Kind::Chat {
            return Err("echo is a completions option".into());
        }
        check_lengths(&prompts, max_tokens)?;
        if body.stream && prompts.len() > 1 {
            return Err("streaming takes one prompt per request".into());
        }
        Ok(Self {
            prompts,
            max_tokens,
            logprobs,
            stop,
            temperature,
        })
    }
}

/// The prompts as token ids: completions' `prompt` forms, or chat's
/// `messages` through the chat template.
fn prompts_for(state: &State, body: &GenerateBody, kind: Kind) -> Result<Vec<Vec<u32>>, String> {
    match (kind, &body.prompt, &body.messages) {
        (Kind::Text, Some(p), _) => prompts_of(p, state),
        (Kind::Chat, _, Some(m)) if !m.is_empty() => {
            Ok(vec![state.0.lm.tokenizer.encode(&chat_prompt(m))])
        }
        (Kind::Text, None, _) => Err("`prompt` is required".into()),
        (Kind::Chat, _, _) => Err("`messages` must be a non-empty list".into()),
    }
}

/// Alternatives per token when log-probabilities are asked for: completions
/// give a count, chat a boolean plus `top_logprobs`.
fn logprobs_of(body: &GenerateBody, kind: Kind) -> Result<Option<usize>, String> {
    match (kind, &body.logprobs) {
        (_, None | Some(Value::Null)) => Ok(None),
        (Kind::Text, Some(v)) => match v.as_u64() {
            Some(k) if k <= 5 => Ok(Some(k as usize)),
            _ => Err("logprobs must be an integer from 0 to 5".into()),
        },
        (Kind::Chat, Some(Value::Bool(false))) => Ok(None),
        (Kind::Chat, Some(Value::Bool(true))) => match body.top_logprobs.unwrap_or(0) {
            k if k <= 5 => Ok(Some(k as usize)),
            _ => Err("top_logprobs must be from 0 to 5".into()),
        },
        (Kind::Chat, Some(_)) => Err("logprobs must be a boolean".into()),
    }
}

/// Each prompt has tokens, and room for `max_tokens` more within the model's length.
fn check_lengths(prompts: &[Vec<u32>], max_tokens: usize) -> Result<(), String> {
    for p in prompts {
        if p.is_empty() {
            return Err("prompt has no tokens".into());
        }
        if p.len() + max_tokens > MAX_MODEL_LEN {
            return Err(format!(
                "prompt ({} tokens) plus max_tokens ({max_tokens}) exceeds the model's length {MAX_MODEL_LEN}",
                p.len()
            ));
        }
    }
    Ok(())
}

/// Appends each prompt as a line, with what decides its output (length,
/// stop strings, temperature, seed); one write per line, so a server killed
/// mid-run leaves whole lines. A failed write loses only the log.
fn log_prompts(
    log: &std::sync::Mutex<std::fs::File>,
    options: &GenerateOptions,
    seed: Option<u64>,
) {
    use std::io::Write;
    let mut file = log.lock().unwrap_or_else(|e| e.into_inner());
    for p in &options.prompts {
        let line = serde_json::json!({
            "prompt_ids": p,
            "max_tokens": options.max_tokens,
            "stop": options.stop,
            "temperature": options.temperature,
            "seed": seed,
        });
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

/// One generation per prompt, each submitted to the engine with the
/// request's arrival time.
fn start_generations(
    state: &State,
    body: &GenerateBody,
    options: GenerateOptions,
    dice: &Dice,
    arrived: Instant,
) -> Vec<Generation> {
    let inner = &state.0;
    let max_tokens = options.max_tokens;
    if let Some(log) = &inner.prompt_log {
        log_prompts(log, &options, body.seed);
    }
    // Faults strike halfway through the output.
    let stall_at = (!inner.params.stall.is_zero()).then_some(max_tokens / 2);
    options
        .prompts
        .into_iter()
        .enumerate()
        .map(|(index, prompt_ids)| {
            let index = index as u64;
            let ticks = inner.engine.submit(arrived, &prompt_ids, max_tokens);
            let drop_at = (body.stream
                && uniform(mix(dice.fault.to_bits()) ^ index) < inner.params.drop_rate)
                .then_some(max_tokens / 2);
            Generation {
                state: state.clone(),
                context: prompt_ids.clone(),
                pending: Vec::new(),
                req: Request {
                    prompt_hash: hash_ids(&prompt_ids),
                    prompt_ids,
                    max_tokens,
                    min_tokens: body.min_tokens.unwrap_or(0) as usize,
                    echo: body.echo,
                    logprobs: options.logprobs,
                    temperature: options.temperature,
                    seed: dice.seed.wrapping_add(index),
                    ignore_eos: body.ignore_eos,
                    stop: options.stop.clone(),
                },
                text: String::new(),
                generated: 0,
                done: false,
                ticks,
                stall_at,
                drop_at,
            }
        })
        .collect()
}

struct Meta {
    id: String,
    created: u64,
    model: String,
    kind: Kind,
    usage: bool,
    /// A completion chunk up to its text value, pre-rendered.
    text_prefix: String,
}

impl Meta {
    /// The response's id, creation time and pre-rendered chunk prefix.
    fn new(inner: &Inner, kind: Kind, number: u64) -> Self {
        let prefix = if kind == Kind::Chat {
            "chatcmpl"
        } else {
            "cmpl"
        };
        let id = format!("{prefix}-{number}");
        let created = now_unix();
        let text_prefix = format!(
            "{{\"id\":{},\"object\":\"text_completion\",\"created\":{created},\"model\":{},\"choices\":[{{\"index\":0,\"text\":",
            Value::from(id.as_str()),
            Value::from(inner.model_name.as_str()),
        );
        Self {
            id,
            created,
            model: inner.model_name.clone(),
            kind,
            usage: inner.params.usage,
            text_prefix,
        }
    }

    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Text, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    fn envelope(&self, choices: Value, chunk: bool) -> Value {
        json!({"id": self.id, "object": self.object(chunk), "created": self.created, "model": self.model, "choices": choices})
    }
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

async fn whole_response(meta: Meta, generations: Vec<Generation>) -> Response {
    let runs = generations.into_iter().enumerate().map(|(index, mut g)| async move {
        let mut items: Vec<Option<TokenLogprob>> = Vec::new();
        let mut texts: Vec<String> = Vec::new();
        let mut chat_items = Vec::new();
        let mut prompt_text = String::new();
        if g.req.echo {
            prompt_text = g.state.0.lm.tokenizer.decode_raw(&g.req.prompt_ids);
            if let Some(k) = g.req.logprobs {
                items.extend(g.prompt_logprobs(k));
                texts.extend(g.req.prompt_ids.iter().map(|&id| g.state.0.token_text[id as usize].clone()));
            }
        }
        let mut finish = "length";
        while let Some(piece) = g.next().await {
            if let Some(f) = piece.finish {
                finish = f;
            }
            if let Some(lp) = piece.logprob {
                texts.push(piece.text.clone());
                match meta.kind {
                    Kind::Text => items.push(Some(lp)),
                    Kind::Chat => chat_items.push(lp),
                }
            }
        }
        let text = format!("{prompt_text}{}", g.text);
        let logprobs = match (meta.kind, g.req.logprobs) {
            (_, None) => Value::Null,
            (Kind::Text, Some(_)) => legacy_logprobs(&items, &texts, 0),
            (Kind::Chat, Some(_)) => chat_logprobs(&chat_items),
        };
        let choice = match meta.kind {
            Kind::Text => json!({"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish, "stop_reason": null}),
            Kind::Chat => json!({"index": index, "message": {"role": "assistant", "content": text}, "logprobs": logprobs, "finish_reason": finish}),
        };
        (choice, g.req.prompt_ids.len(), g.generated)
    });
    let done = futures_util::future::join_all(runs).await;
    let prompt_tokens: usize = done.iter().map(|d| d.1).sum();
    let completion_tokens: usize = done.iter().map(|d| d.2).sum();
    let choices: Vec<Value> = done.into_iter().map(|d| d.0).collect();
    let mut body = meta.envelope(Value::Array(choices), false);
    if meta.usage {
        body["usage"] = usage(prompt_tokens, completion_tokens);
    }
    Json(body).into_response()
}

enum Phase {
    Head,
    Tokens,
    Tail,
    Done,
}

/// Which usage reports a stream carries.
#[derive(Clone, Copy)]
struct UsageReports {
    /// A last event with the totals (`include_usage`).
    at_end: bool,
    /// Usage so far on every event (`continuous_usage_stats`).
    continuous: bool,
}

fn stream_response(
    meta: Meta,
    generation: Generation,
    options: StreamOptions,
) -> Sse<impl futures_util::Stream<Item = Result<Event, Infallible>>> {
    let meta = Arc::new(meta);
    // The engine's `usage` knob off means no usage at all, as asked or not.
    let reports = UsageReports {
        at_end: options.include_usage && meta.usage,
        continuous: options.continuous_usage_stats && meta.usage,
    };
    let state = (generation, Phase::Head, false);
    let events = stream::unfold(state, move |(mut g, phase, mut cut)| {
        let meta = meta.clone();
        async move {
            match phase {
                Phase::Head => {
                    let events = head_events(&meta, &g, reports);
                    Some((events, (g, Phase::Tokens, cut)))
                }
                Phase::Tokens => match g.next().await {
                    Some(piece) => {
                        let event = token_event(&meta, &g, piece, reports);
                        Some((vec![event], (g, Phase::Tokens, cut)))
                    }
                    None => {
                        cut = g.was_cut();
                        Some((Vec::new(), (g, Phase::Tail, cut)))
                    }
                },
                Phase::Tail => {
                    if cut {
                        // Fault: the stream ends here, without usage or [DONE].
                        return None;
                    }
                    Some((tail_events(&meta, &g, reports), (g, Phase::Done, cut)))
                }
                Phase::Done => None,
            }
        }
    })
    .flat_map(|events| stream::iter(events.into_iter().map(sse_event)));
    Sse::new(events)
}

impl Generation {
    /// Whether the stream ended at the injected drop rather than at its end.
    fn was_cut(&self) -> bool {
        self.drop_at
            .is_some_and(|at| self.generated == at && self.generated < self.req.max_tokens)
    }
}

/// One SSE event: pre-rendered text (and `[DONE]`) as it is, anything else
/// as JSON.
fn sse_event(v: Value) -> Result<Event, Infallible> {
    let data = match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Event::default().data(data))
}

/// The opening event, if any: chat opens with the role; an echoed
/// completion opens with the prompt.
fn head_events(meta: &Meta, g: &Generation, reports: UsageReports) -> Vec<Value> {
    let prompt_len = g.req.prompt_ids.len();
    let head = match meta.kind {
        Kind::Chat => Some(
            json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}]),
        ),
        Kind::Text if g.req.echo => Some(echoed_prompt(g)),
        Kind::Text => None,
    };
    head.into_iter()
        .map(|choices| {
            let mut v = meta.envelope(choices, true);
            if reports.continuous {
                v["usage"] = usage(prompt_len, 0);
            }
            v
        })
        .collect()
}

/// The choices of an echoed completion's first event: the prompt, with its
/// log-probabilities when asked for.
fn echoed_prompt(g: &Generation) -> Value {
    let text = g.state.0.lm.tokenizer.decode_raw(&g.req.prompt_ids);
    let logprobs = g.req.logprobs.map(|k| {
        let texts: Vec<String> = g
            .req
            .prompt_ids
            .iter()
            .map(|&id| g.state.0.token_text[id as usize].clone())
            .collect();
        legacy_logprobs(&g.prompt_logprobs(k), &texts, 0)
    });
    json!([{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": null}])
}

/// The event of one piece of output.
fn token_event(meta: &Meta, g: &Generation, piece: Piece, reports: UsageReports) -> Value {
    let logprobs = piece_logprobs(meta, g, &piece);
    if meta.kind == Kind::Text && logprobs.is_null() && !reports.continuous {
        return plain_text_event(meta, &piece);
    }
    let choice = match meta.kind {
        Kind::Text => {
            json!({"index": 0, "text": piece.text, "logprobs": logprobs, "finish_reason": piece.finish})
        }
        Kind::Chat => {
            json!({"index": 0, "delta": {"content": piece.text}, "logprobs": logprobs, "finish_reason": piece.finish})
        }
    };
    let mut v = meta.envelope(json!([choice]), true);
    if reports.continuous {
        v["usage"] = usage(g.req.prompt_ids.len(), piece.generated);
    }
    v
}

/// A piece's log-probabilities in the endpoint's format, or null.
fn piece_logprobs(meta: &Meta, g: &Generation, piece: &Piece) -> Value {
    match (&piece.logprob, meta.kind) {
        (None, _) => Value::Null,
        (Some(lp), Kind::Text) => {
            // The piece's offset in characters within the whole output.
            let offset = g
                .text
                .chars()
                .count()
                .saturating_sub(piece.text.chars().count());
            let item = Some(TokenLogprob {
                token: lp.token.clone(),
                logprob: lp.logprob,
                top: lp.top.clone(),
            });
            legacy_logprobs(&[item], std::slice::from_ref(&piece.text), offset)
        }
        (Some(lp), Kind::Chat) => chat_logprobs(std::slice::from_ref(lp)),
    }
}

/// The common benchmark event (a completion's text, no log-probabilities,
/// no usage), rendered without building a JSON tree.
fn plain_text_event(meta: &Meta, piece: &Piece) -> Value {
    let finish = match piece.finish {
        Some(f) => format!("\"{f}\""),
        None => "null".to_string(),
    };
    let text = serde_json::to_string(&piece.text).expect("string serialises");
    let data = format!(
        "{}{text},\"logprobs\":null,\"finish_reason\":{finish}}}]}}",
        meta.text_prefix
    );
    Value::String(data)
}

/// The closing events: the usage totals when asked for, then `[DONE]`.
fn tail_events(meta: &Meta, g: &Generation, reports: UsageReports) -> Vec<Value> {
    let mut events = Vec::new();
    if reports.at_end {
        let mut v = meta.envelope(json!([]), true);
        v["usage"] = usage(g.req.prompt_ids.len(), g.generated);
        events.push(v);
    }
    events.push(Value::String("[DONE]".into()));
    events
}
