//! HTTP surface of the embedded engine (axum).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State as AxumState;
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream};
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::time::Instant;

use super::Timing;

#[derive(Clone)]
pub(super) struct State(Arc<Inner>);

struct Inner {
    model: String,
    timing: Timing,
    next_id: AtomicU64,
}

impl State {
    pub(super) fn new(model: &str, timing: Timing) -> Self {
        Self(Arc::new(Inner {
            model: model.to_string(),
            timing,
            next_id: AtomicU64::new(0),
        }))
    }
}

pub(super) async fn serve(listener: tokio::net::TcpListener, state: State) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
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

async fn models(AxumState(state): AxumState<State>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.0.model,
            "object": "model",
            "created": now_unix(),
            "owned_by": "servegate",
        }]
    }))
}

#[derive(Deserialize)]
struct CompletionBody {
    #[serde(default)]
    model: Option<String>,
    prompt: Value,
    #[serde(default = "default_max_tokens")]
    max_tokens: u32,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

fn default_max_tokens() -> u32 {
    16
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    let body = json!({
        "error": {
            "message": message.into(),
            "type": if status == StatusCode::NOT_FOUND { "NotFoundError" } else { "BadRequestError" },
            "code": status.as_u16(),
        }
    });
    (status, Json(body)).into_response()
}

/// A small fixed vocabulary; text is a deterministic walk through it seeded by the prompt.
const WORDS: &[&str] = &[
    "the",
    "engine",
    "serves",
    "tokens",
    "while",
    "a",
    "scheduler",
    "batches",
    "requests",
    "and",
    "memory",
    "holds",
    "cached",
    "keys",
    "for",
    "every",
    "stream",
    "so",
    "latency",
    "stays",
    "low",
    "when",
    "load",
    "grows",
    "queue",
    "waits",
    "its",
    "turn",
    "then",
    "decode",
    "runs",
    "fast",
];

fn prompt_text(prompt: &Value) -> Option<String> {
    match prompt {
        Value::String(s) => Some(s.clone()),
        Value::Array(items) if items.len() == 1 => prompt_text(&items[0]),
        _ => None,
    }
}

fn seed_of(text: &str) -> usize {
    // FNV-1a: stable across runs and platforms, unlike std's hasher.
    text.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    }) as usize
}

fn token(seed: usize, i: usize) -> String {
    format!(" {}", WORDS[(seed.wrapping_add(i * 7)) % WORDS.len()])
}

async fn completions(
    AxumState(state): AxumState<State>,
    body: Result<Json<CompletionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let arrived = Instant::now();
    let Json(body) = match body {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    if let Some(model) = &body.model {
        if model != &state.0.model {
            return error(
                StatusCode::NOT_FOUND,
                format!("The model `{model}` does not exist."),
            );
        }
    }
    let Some(prompt) = prompt_text(&body.prompt) else {
        return error(StatusCode::BAD_REQUEST, "prompt must be a string");
    };
    if body.max_tokens == 0 {
        return error(StatusCode::BAD_REQUEST, "max_tokens must be at least 1");
    }
    let id = format!("cmpl-{}", state.0.next_id.fetch_add(1, Ordering::Relaxed));
    let prompt_tokens = prompt.split_whitespace().count();
    let seed = seed_of(&prompt);
    let n = body.max_tokens as usize;
    let timing = state.0.timing;
    // Token i is due at an absolute deadline, so waiting never accumulates drift.
    let due = move |i: usize| arrived + timing.ttft + timing.tpot * i as u32;
    let usage = json!({
        "prompt_tokens": prompt_tokens,
        "completion_tokens": n,
        "total_tokens": prompt_tokens + n,
    });
    let created = now_unix();
    let model = state.0.model.clone();
    if !body.stream {
        tokio::time::sleep_until(due(n - 1)).await;
        let text: String = (0..n).map(|i| token(seed, i)).collect();
        return Json(json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": "length"}],
            "usage": usage,
        }))
        .into_response();
    }
    let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
    let events = token_events(n, due, move |i| {
        json!({
            "id": id,
            "object": "text_completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "text": token(seed, i),
                "logprobs": null,
                "finish_reason": if i + 1 == n { Value::from("length") } else { Value::Null },
            }],
        })
    });
    let tail = stream::iter(
        include_usage
            .then(|| json!({"choices": [], "usage": usage}).to_string())
            .into_iter()
            .chain(std::iter::once("[DONE]".to_string()))
            .map(|d| Ok::<_, std::convert::Infallible>(Event::default().data(d))),
    );
    Sse::new(futures_util::StreamExt::chain(events, tail)).into_response()
}

fn token_events(
    n: usize,
    due: impl Fn(usize) -> Instant + Send + 'static,
    body: impl Fn(usize) -> Value + Send + 'static,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> + Send {
    stream::unfold(0usize, move |i| {
        let at = due(i);
        let event = (i < n).then(|| Event::default().data(body(i).to_string()));
        async move {
            let event = event?;
            tokio::time::sleep_until(at).await;
            Some((Ok(event), i + 1))
        }
    })
}
