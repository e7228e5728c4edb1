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
use std::time::Instant;

use super::Timing;

#[derive(Clone)]
pub(super) struct State(Arc<Inner>);

struct Inner {
    model: String,
    timing: Timing,
    report_usage: bool,
    clock: super::clock::PreciseClock,
    next_id: AtomicU64,
}

impl State {
    pub(super) fn new(
        model: &str,
        timing: Timing,
        report_usage: bool,
        clock: super::clock::PreciseClock,
    ) -> Self {
        Self(Arc::new(Inner {
            model: model.to_string(),
            timing,
            report_usage,
            clock,
            next_id: AtomicU64::new(0),
        }))
    }
}

pub(super) async fn serve(listener: tokio::net::TcpListener, state: State) -> std::io::Result<()> {
    let app = Router::new()
        .route("/health", get(|| async { StatusCode::OK }))
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
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
    #[serde(default)]
    prompt: Value,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default = "default_max_tokens")]
    max_tokens: u32,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct ChatMessage {
    #[serde(default)]
    content: String,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
    /// vLLM's extension: usage on every event.
    #[serde(default)]
    continuous_usage_stats: bool,
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Text,
    Chat,
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
    state: AxumState<State>,
    body: Result<Json<CompletionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    generate(state, body, Kind::Text).await
}

async fn chat_completions(
    state: AxumState<State>,
    body: Result<Json<CompletionBody>, axum::extract::rejection::JsonRejection>,
) -> Response {
    generate(state, body, Kind::Chat).await
}

async fn generate(
    AxumState(state): AxumState<State>,
    body: Result<Json<CompletionBody>, axum::extract::rejection::JsonRejection>,
    kind: Kind,
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
    let prompt = match kind {
        Kind::Text => prompt_text(&body.prompt),
        Kind::Chat if !body.messages.is_empty() => Some(
            body.messages
                .iter()
                .map(|m| m.content.as_str())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        Kind::Chat => None,
    };
    let Some(prompt) = prompt else {
        return error(
            StatusCode::BAD_REQUEST,
            match kind {
                Kind::Text => "prompt must be a string",
                Kind::Chat => "messages must be a non-empty list",
            },
        );
    };
    if body.max_tokens == 0 {
        return error(StatusCode::BAD_REQUEST, "max_tokens must be at least 1");
    }
    let prefix = if kind == Kind::Chat {
        "chatcmpl"
    } else {
        "cmpl"
    };
    let id = format!(
        "{prefix}-{}",
        state.0.next_id.fetch_add(1, Ordering::Relaxed)
    );
    let object = if kind == Kind::Chat {
        "chat.completion"
    } else {
        "text_completion"
    };
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
    // `usage = false` models a server that reports no usage at all.
    let report_usage = state.0.report_usage;
    if !body.stream {
        state.0.clock.sleep_until(due(n - 1)).await;
        let text: String = (0..n).map(|i| token(seed, i)).collect();
        let choice = match kind {
            Kind::Text => {
                json!({"index": 0, "text": text, "logprobs": null, "finish_reason": "length"})
            }
            Kind::Chat => json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": "length",
            }),
        };
        let mut whole = json!({
            "id": id,
            "object": object,
            "created": created,
            "model": model,
            "choices": [choice],
        });
        if report_usage {
            whole["usage"] = usage;
        }
        return Json(whole).into_response();
    }
    let mut options = body.stream_options.unwrap_or(StreamOptions {
        include_usage: false,
        continuous_usage_stats: false,
    });
    options.include_usage &= report_usage;
    options.continuous_usage_stats &= report_usage;
    let chunk_object = if kind == Kind::Chat {
        "chat.completion.chunk"
    } else {
        "text_completion"
    };
    let envelope = {
        let (id, model) = (id.clone(), model.clone());
        move |choice: Value| {
            json!({
                "id": id,
                "object": chunk_object,
                "created": created,
                "model": model,
                "choices": [choice],
            })
        }
    };
    // A chat stream opens with a role-only chunk, sent at once, carrying no token.
    let preamble = (kind == Kind::Chat).then(|| {
        envelope(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null}))
            .to_string()
    });
    let events = token_events(n, due, state.0.clock.clone(), move |i| {
        let finish = if i + 1 == n {
            Value::from("length")
        } else {
            Value::Null
        };
        let choice = match kind {
            Kind::Text => {
                json!({"index": 0, "text": token(seed, i), "logprobs": null, "finish_reason": finish})
            }
            Kind::Chat => {
                json!({"index": 0, "delta": {"content": token(seed, i)}, "logprobs": null, "finish_reason": finish})
            }
        };
        let mut chunk = envelope(choice);
        if options.continuous_usage_stats {
            chunk["usage"] = json!({
                "prompt_tokens": prompt_tokens,
                "completion_tokens": i + 1,
                "total_tokens": prompt_tokens + i + 1,
            });
        }
        chunk
    });
    let head = stream::iter(
        preamble
            .into_iter()
            .map(|d| Ok::<_, std::convert::Infallible>(Event::default().data(d))),
    );
    let tail = stream::iter(
        options
            .include_usage
            .then(|| json!({"id": id, "object": chunk_object, "created": created, "model": model, "choices": [], "usage": usage}).to_string())
            .into_iter()
            .chain(std::iter::once("[DONE]".to_string()))
            .map(|d| Ok::<_, std::convert::Infallible>(Event::default().data(d))),
    );
    use futures_util::StreamExt as _;
    Sse::new(head.chain(events).chain(tail)).into_response()
}

fn token_events(
    n: usize,
    due: impl Fn(usize) -> Instant + Send + 'static,
    clock: super::clock::PreciseClock,
    body: impl Fn(usize) -> Value + Send + 'static,
) -> impl Stream<Item = Result<Event, std::convert::Infallible>> + Send {
    stream::unfold(0usize, move |i| {
        let at = due(i);
        let event = (i < n).then(|| Event::default().data(body(i).to_string()));
        let clock = clock.clone();
        async move {
            let event = event?;
            clock.sleep_until(at).await;
            Some((Ok(event), i + 1))
        }
    })
}
