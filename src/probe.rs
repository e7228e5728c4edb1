//! `servegate probe`: what an OpenAI-compatible server supports, found out
//! with a handful of tiny requests (a token or two each): the models it
//! lists, completions and chat streamed and not, usage in the stream (a
//! final chunk, and on every event), prompt log-probabilities through
//! `echo`, token-id prompts, several prompts in one request, a tokenize
//! endpoint and whether it prepends BOS, Prometheus `/metrics`, and SSE
//! comment lines. Servers differ in exactly these details (vLLM,
//! llama.cpp, proxies), and each decides how a number can be measured.

use std::time::Duration;

use serde::Serialize;
use serde_json::{json, Value};

use crate::client::sse::SseDecoder;
use crate::client::{Client, Dialect, StreamUsage};
pub use crate::results::{FoundFeature, ProbeRecord, USUAL_STREAMS};

/// Whether a feature works.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Support {
    Yes,
    No,
    /// The request failed for another reason (the server is down, the
    /// model is unknown): nothing can be said.
    Unknown,
}

impl std::fmt::Display for Support {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Support::Yes => "yes",
            Support::No => "no",
            Support::Unknown => "?",
        })
    }
}

/// One feature and what was seen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Finding {
    pub feature: &'static str,
    pub support: Support,
    pub detail: String,
}

/// Everything the probe found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    pub url: String,
    /// The model the requests named (`--model`, else the first listed).
    pub model: Option<String>,
    pub models: Vec<String>,
    pub findings: Vec<Finding>,
    /// The model named is not among those listed: failures below may be
    /// the model's, not the feature's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl ProbeReport {
    pub fn supports(&self, feature: &str) -> Support {
        self.findings
            .iter()
            .find(|f| f.feature == feature)
            .map_or(Support::Unknown, |f| f.support)
    }

    /// Some way to generate works: completions or chat.
    pub fn can_generate(&self) -> bool {
        [COMPLETIONS, CHAT]
            .iter()
            .any(|f| self.supports(f) == Support::Yes)
    }
}

pub const MODELS: &str = "models listed (/v1/models)";
pub const COMPLETIONS: &str = "/v1/completions";
pub const COMPLETIONS_STREAM: &str = "/v1/completions, streamed";
pub const CHAT: &str = "/v1/chat/completions";
pub const CHAT_STREAM: &str = "/v1/chat/completions, streamed";
pub const USAGE_CHUNK: &str = "usage chunk (stream_options.include_usage)";
pub const CONTINUOUS_USAGE: &str = "usage on every event (continuous_usage_stats)";
pub const SSE_COMMENTS: &str = "SSE comment lines (: ping)";
pub const ECHO_LOGPROBS: &str = "prompt log-probabilities (echo + logprobs)";
pub const TOKEN_PROMPTS: &str = "token-id prompts";
pub const IGNORE_EOS: &str = "ignore_eos taken (vLLM extension)";
pub const PROMPT_LISTS: &str = "several prompts in one request";
pub const TOKENIZE: &str = "tokenize endpoint";
pub const BOS: &str = "tokenize prepends BOS";
pub const METRICS: &str = "Prometheus /metrics";

/// Why a question was not asked.
const NOT_ASKED: &str = "not asked: an earlier request got no answer in time";

/// Details that say an option was refused (not merely ignored), which
/// decides whether sending it would fail every request.
const STREAM_OPTIONS_REFUSED: &str = "stream_options refused";
const CONTINUOUS_REFUSED: &str = "option refused";

/// A stream's body read whole: its data events and how many comment lines
/// it held.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamSeen {
    pub events: Vec<Value>,
    pub comments: usize,
    pub done: bool,
    /// Data lines that were not JSON (other than `[DONE]`).
    pub malformed: usize,
}

/// Splits an SSE body into its JSON events, `[DONE]` and comment lines.
pub fn read_stream(body: &str) -> StreamSeen {
    let mut seen = StreamSeen {
        comments: body
            .lines()
            .filter(|l| l.starts_with(':') && !l.starts_with("::"))
            .count(),
        ..StreamSeen::default()
    };
    let mut decoder = SseDecoder::with_max_line(body.len() + 1);
    let mut data = decoder.feed(body.as_bytes()).unwrap_or_default();
    data.extend(decoder.finish().unwrap_or_default());
    for d in data {
        if d.trim() == "[DONE]" {
            seen.done = true;
        } else {
            match serde_json::from_str::<Value>(&d) {
                Ok(v) => seen.events.push(v),
                Err(_) => seen.malformed += 1,
            }
        }
    }
    seen
}

/// A chunk with `usage` and no text to add: the final usage chunk.
fn is_usage_chunk(e: &Value) -> bool {
    e.get("usage").is_some_and(|u| u.is_object())
        && e["choices"].as_array().is_none_or(|c| c.is_empty())
}

/// Usage on events that carry text (vLLM's `continuous_usage_stats`).
fn usage_on_text_events(events: &[Value]) -> bool {
    let with_text: Vec<&Value> = events
        .iter()
        .filter(|e| e["choices"].as_array().is_some_and(|c| !c.is_empty()))
        .collect();
    !with_text.is_empty() && with_text.iter().all(|e| e["usage"].is_object())
}

/// `echo` with `logprobs`: the prompt's tokens come back with their
/// log-probabilities (the first has none).
fn prompt_logprobs(answer: &Value) -> Result<usize, String> {
    let lp = &answer["choices"][0]["logprobs"];
    let values = lp["token_logprobs"]
        .as_array()
        .ok_or("no choices[0].logprobs.token_logprobs in the answer")?;
    let numbers = values.iter().filter(|v| v.is_number()).count();
    if values.len() >= 2 && numbers >= 1 {
        Ok(values.len())
    } else {
        Err(format!(
            "{} log-probabilities came back: the prompt's were not echoed",
            values.len()
        ))
    }
}

/// What a failed exchange says about a feature: a 4xx other than auth or
/// rate limits means the server refused it; anything else tells nothing.
fn refused(status: u16) -> Support {
    match status {
        401 | 403 | 408 | 429 => Support::Unknown,
        400..=499 => Support::No,
        _ => Support::Unknown,
    }
}

/// The probe's requests, one after another.
pub struct Prober<'a> {
    client: &'a Client,
    timeout: Duration,
    findings: Vec<Finding>,
    /// A question went unanswered for the whole timeout: a server that
    /// hangs on one tiny request hangs on the next, so the rest are not
    /// asked (a dozen timeouts would stall the run that probes).
    silent: std::sync::atomic::AtomicBool,
}

impl<'a> Prober<'a> {
    fn note(&mut self, feature: &'static str, support: Support, detail: impl Into<String>) {
        self.findings.push(Finding {
            feature,
            support,
            detail: detail.into(),
        });
    }

    async fn ask(&self, path: &str, body: Option<&Value>) -> Result<(u16, String), String> {
        use std::sync::atomic::Ordering;
        if self.silent.load(Ordering::Relaxed) {
            return Err(NOT_ASKED.into());
        }
        let asked = std::time::Instant::now();
        let answer = self.client.ask(path, body, self.timeout).await;
        if answer.is_err() && asked.elapsed() >= self.timeout.mul_f64(0.95) {
            self.silent.store(true, Ordering::Relaxed);
        }
        answer
    }

    /// A request expected to answer JSON: the answer, or the feature's
    /// support and why.
    async fn ask_json(&self, path: &str, body: &Value) -> Result<Value, (Support, String)> {
        match self.ask(path, Some(body)).await {
            Ok((200..=299, text)) => serde_json::from_str(&text)
                .map_err(|e| (Support::No, format!("the answer is not JSON ({e})"))),
            Ok((status, message)) => Err((refused(status), format!("HTTP {status}: {message}"))),
            Err(e) => Err((Support::Unknown, e)),
        }
    }

    /// A streamed request: what the stream held, or why it failed.
    async fn ask_stream(&self, path: &str, body: &Value) -> Result<StreamSeen, (Support, String)> {
        match self.ask(path, Some(body)).await {
            Ok((200..=299, text)) => Ok(read_stream(&text)),
            Ok((status, message)) => Err((refused(status), format!("HTTP {status}: {message}"))),
            Err(e) => Err((Support::Unknown, e)),
        }
    }
}

/// Asks the server at `client`'s URL what it supports, naming `model` (or
/// the first model it lists). Never fails: what cannot be asked is `?`.
pub async fn probe(client: &Client, model: Option<&str>, timeout: Duration) -> ProbeReport {
    let mut p = Prober {
        client,
        timeout,
        findings: Vec::new(),
        silent: std::sync::atomic::AtomicBool::new(false),
    };
    let models = list_models(&mut p).await;
    let model = model
        .map(str::to_string)
        .or_else(|| models.first().cloned());
    if let Some(m) = &model {
        generation(&mut p, m).await;
        scoring(&mut p, m).await;
        unknown_without_a_base(&mut p.findings);
    } else {
        for feature in [COMPLETIONS, CHAT] {
            p.note(feature, Support::Unknown, "no model to name: pass --model");
        }
    }
    tokenize(&mut p, model.as_deref()).await;
    metrics(&mut p).await;
    let warning = model
        .as_ref()
        .filter(|m| !models.is_empty() && !models.contains(m))
        .map(|m| {
            format!(
                "model `{m}` is not among those listed ({})",
                models.join(", ")
            )
        });
    ProbeReport {
        url: client.base_url().to_string(),
        model,
        models,
        findings: p.findings,
        warning,
    }
}

/// A variant says nothing when the plain request it varies failed too (an
/// unknown model fails every request alike): it is `?`, not `no`.
fn unknown_without_a_base(findings: &mut [Finding]) {
    let works = |feature: &str| {
        findings
            .iter()
            .any(|f| f.feature == feature && f.support == Support::Yes)
    };
    let (completions, chat) = (works(COMPLETIONS), works(CHAT));
    for f in findings.iter_mut() {
        let base_works = match f.feature {
            COMPLETIONS_STREAM | USAGE_CHUNK | CONTINUOUS_USAGE | ECHO_LOGPROBS | TOKEN_PROMPTS
            | PROMPT_LISTS => completions,
            CHAT_STREAM => chat,
            _ => true,
        };
        if !base_works && f.support == Support::No {
            f.support = Support::Unknown;
        }
    }
}

async fn list_models(p: &mut Prober<'_>) -> Vec<String> {
    match p.ask("v1/models", None).await {
        Ok((200..=299, text)) => {
            let ids: Vec<String> = serde_json::from_str::<Value>(&text)
                .ok()
                .and_then(|v| v["data"].as_array().cloned())
                .unwrap_or_default()
                .iter()
                .filter_map(|m| m["id"].as_str().map(str::to_string))
                .collect();
            if ids.is_empty() {
                p.note(MODELS, Support::No, "the answer lists no model");
            } else {
                p.note(MODELS, Support::Yes, ids.join(", "));
            }
            ids
        }
        Ok((status, message)) => {
            p.note(MODELS, refused(status), format!("HTTP {status}: {message}"));
            Vec::new()
        }
        Err(e) => {
            p.note(MODELS, Support::Unknown, e);
            Vec::new()
        }
    }
}

/// Completions and chat, whole and streamed, and what the streams carry.
async fn generation(p: &mut Prober<'_>, model: &str) {
    let completion = json!({"model": model, "prompt": "Hello", "max_tokens": 2, "temperature": 0});
    match p.ask_json("v1/completions", &completion).await {
        Ok(v) if v["choices"][0]["text"].is_string() => p.note(COMPLETIONS, Support::Yes, ""),
        Ok(_) => p.note(COMPLETIONS, Support::No, "no choices[0].text in the answer"),
        Err((s, why)) => p.note(COMPLETIONS, s, why),
    }
    ignore_eos(p, &completion).await;
    let chat = json!({"model": model, "messages": [{"role": "user", "content": "Hello"}],
                      "max_tokens": 2, "temperature": 0});
    match p.ask_json("v1/chat/completions", &chat).await {
        Ok(v) if v["choices"][0]["message"].is_object() => p.note(CHAT, Support::Yes, ""),
        Ok(_) => p.note(CHAT, Support::No, "no choices[0].message in the answer"),
        Err((s, why)) => p.note(CHAT, s, why),
    }
    // Streams ask for usage on every event; a server that refuses the
    // option is asked again with less.
    let mut comments = None;
    let options = [
        json!({"include_usage": true, "continuous_usage_stats": true}),
        json!({"include_usage": true}),
        Value::Null,
    ];
    let mut stream_seen = None;
    let mut last_error = (Support::Unknown, String::new());
    for (i, opts) in options.iter().enumerate() {
        let mut body = json!({"model": model, "prompt": "Hello", "max_tokens": 3,
                              "temperature": 0, "stream": true});
        if !opts.is_null() {
            body["stream_options"] = opts.clone();
        }
        match p.ask_stream("v1/completions", &body).await {
            Ok(seen) => {
                stream_seen = Some((i, seen));
                break;
            }
            Err(e) => last_error = e,
        }
    }
    match stream_seen {
        Some((asked, seen)) => {
            let text_events = seen
                .events
                .iter()
                .filter(|e| e["choices"].as_array().is_some_and(|c| !c.is_empty()))
                .count();
            p.note(
                COMPLETIONS_STREAM,
                if text_events > 0 {
                    Support::Yes
                } else {
                    Support::No
                },
                format!(
                    "{text_events} events with text{}{}",
                    if seen.done { ", [DONE]" } else { ", no [DONE]" },
                    if seen.malformed > 0 {
                        format!(", {} events not JSON", seen.malformed)
                    } else {
                        String::new()
                    }
                ),
            );
            let usage = seen.events.iter().any(is_usage_chunk);
            p.note(
                USAGE_CHUNK,
                if asked < 2 && usage {
                    Support::Yes
                } else {
                    Support::No
                },
                if asked == 2 {
                    STREAM_OPTIONS_REFUSED.to_string()
                } else if usage {
                    String::new()
                } else {
                    "no usage chunk at the end".to_string()
                },
            );
            let continuous = asked == 0 && usage_on_text_events(&seen.events);
            p.note(
                CONTINUOUS_USAGE,
                if continuous {
                    Support::Yes
                } else {
                    Support::No
                },
                match asked {
                    0 if continuous => "token counts per event are exact",
                    0 => "asked for, not sent: output tokens are counted from the final usage",
                    _ => CONTINUOUS_REFUSED,
                },
            );
            comments = Some(seen.comments);
        }
        None => {
            let (s, why) = last_error;
            for f in [COMPLETIONS_STREAM, USAGE_CHUNK, CONTINUOUS_USAGE] {
                p.note(f, s, why.clone());
            }
        }
    }
    let mut body = chat.clone();
    body["stream"] = json!(true);
    match p.ask_stream("v1/chat/completions", &body).await {
        Ok(seen) => {
            let deltas = seen
                .events
                .iter()
                .filter(|e| e["choices"][0]["delta"].is_object())
                .count();
            p.note(
                CHAT_STREAM,
                if deltas > 0 {
                    Support::Yes
                } else {
                    Support::No
                },
                format!("{deltas} delta events"),
            );
            comments = Some(comments.unwrap_or(0) + seen.comments);
        }
        Err((s, why)) => p.note(CHAT_STREAM, s, why),
    }
    match comments {
        Some(0) => p.note(SSE_COMMENTS, Support::No, "none in these short streams"),
        Some(n) => p.note(SSE_COMMENTS, Support::Yes, format!("{n} comment lines")),
        None => p.note(SSE_COMMENTS, Support::Unknown, "no stream to look at"),
    }
}

/// What log-likelihood scoring needs: echoed prompt log-probabilities,
/// token-id prompts, several prompts per request. Once a plain completion
/// worked, a server error on one of these variants is the server refusing
/// it (llama.cpp answers token ids with HTTP 500), not a server down.
async fn scoring(p: &mut Prober<'_>, model: &str) {
    let plain_works = p
        .findings
        .iter()
        .any(|f| f.feature == COMPLETIONS && f.support == Support::Yes);
    let start = p.findings.len();
    scoring_variants(p, model).await;
    if plain_works {
        for f in &mut p.findings[start..] {
            if f.support == Support::Unknown && f.detail.starts_with("HTTP 5") {
                f.support = Support::No;
            }
        }
    }
}

async fn scoring_variants(p: &mut Prober<'_>, model: &str) {
    let echo = json!({"model": model, "prompt": "The river runs to the sea", "max_tokens": 1,
                      "temperature": 0, "echo": true, "logprobs": 1});
    match p.ask_json("v1/completions", &echo).await {
        Ok(v) => match prompt_logprobs(&v) {
            Ok(n) => p.note(
                ECHO_LOGPROBS,
                Support::Yes,
                format!("{n} tokens with log-probabilities"),
            ),
            Err(why) => p.note(ECHO_LOGPROBS, Support::No, why),
        },
        Err((s, why)) => p.note(ECHO_LOGPROBS, s, why),
    }
    let ids = json!({"model": model, "prompt": [1, 2, 3], "max_tokens": 1, "temperature": 0});
    match p.ask_json("v1/completions", &ids).await {
        Ok(v) if v["choices"][0].is_object() => p.note(TOKEN_PROMPTS, Support::Yes, ""),
        Ok(_) => p.note(TOKEN_PROMPTS, Support::No, "no choice in the answer"),
        Err((s, why)) => p.note(TOKEN_PROMPTS, s, why),
    }
    let list =
        json!({"model": model, "prompt": ["Hello", "The sea"], "max_tokens": 1, "temperature": 0});
    match p.ask_json("v1/completions", &list).await {
        Ok(v) => {
            let n = v["choices"].as_array().map_or(0, Vec::len);
            if n == 2 {
                p.note(PROMPT_LISTS, Support::Yes, "2 prompts, 2 choices");
            } else {
                p.note(PROMPT_LISTS, Support::No, format!("2 prompts, {n} choices"));
            }
        }
        Err((s, why)) => p.note(PROMPT_LISTS, s, why),
    }
}

/// Whether `ignore_eos` is taken: a server that rejects unknown fields
/// would fail every request carrying it. Whether it is honoured shows in
/// the output lengths, which every run reports.
async fn ignore_eos(p: &mut Prober<'_>, completion: &Value) {
    let plain_works = p
        .findings
        .iter()
        .any(|f| f.feature == COMPLETIONS && f.support == Support::Yes);
    let mut body = completion.clone();
    body["ignore_eos"] = json!(true);
    match p.ask_json("v1/completions", &body).await {
        Ok(v) => match v["usage"]["completion_tokens"].as_u64() {
            Some(n) => p.note(IGNORE_EOS, Support::Yes, format!("{n} of 2 tokens")),
            None => p.note(IGNORE_EOS, Support::Yes, ""),
        },
        // The plain request worked, so a server error is this field's.
        Err((Support::Unknown, why)) if plain_works && why.starts_with("HTTP 5") => {
            p.note(IGNORE_EOS, Support::No, why)
        }
        Err((s, why)) => p.note(IGNORE_EOS, s, why),
    }
}

/// How requests to the server should be shaped, from what the probe found,
/// with a sentence per choice for the results. Where the probe could not
/// tell, vLLM's shape is kept: an option a server ignores costs nothing,
/// and only one it refuses is left out.
pub fn dialect(report: &ProbeReport) -> (Dialect, Vec<String>) {
    let finding = |feature: &str| report.findings.iter().find(|f| f.feature == feature);
    let refused = |feature: &str, detail: &str| {
        finding(feature).is_some_and(|f| f.support == Support::No && f.detail == detail)
    };
    let mut dialect = Dialect::default();
    let mut choices = Vec::new();
    if refused(USAGE_CHUNK, STREAM_OPTIONS_REFUSED) {
        dialect.stream_usage = StreamUsage::Off;
        choices.push(
            "streams: no stream_options (refused); tokens counted from the events or the tokenizer"
                .into(),
        );
    } else if refused(CONTINUOUS_USAGE, CONTINUOUS_REFUSED) {
        dialect.stream_usage = StreamUsage::Final;
        choices.push("streams: stream_options.include_usage only (continuous_usage_stats refused); output tokens from the final usage".into());
    } else {
        choices.push(
            match (
                report.supports(CONTINUOUS_USAGE),
                report.supports(USAGE_CHUNK),
            ) {
                (Support::Yes, _) => USUAL_STREAMS.into(),
                (_, Support::Yes) => "streams: usage asked on every event; output tokens from the final usage chunk".into(),
                (_, Support::No) => "streams: usage asked, none sent; tokens counted from the events or the tokenizer".into(),
                _ => "streams: usage asked on every event; the probe could not tell what streams report".into(),
            },
        );
    }
    if report.supports(IGNORE_EOS) == Support::No {
        dialect.ignore_eos = false;
        choices.push("ignore_eos not sent (refused): output may end before max_tokens".into());
    }
    (dialect, choices)
}

/// What the results keep of a probe: each feature's support and the
/// choices made from it (details are cut short: they can quote whole
/// server errors).
pub fn record(report: &ProbeReport, choices: Vec<String>) -> ProbeRecord {
    ProbeRecord {
        found: report
            .findings
            .iter()
            .map(|f| FoundFeature {
                feature: f.feature.to_string(),
                support: f.support.to_string(),
                detail: clip(&f.detail, 120),
            })
            .collect(),
        choices,
    }
}

/// `text` cut to `max` characters, with `…` where it was cut.
pub fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The tokenize endpoint, by the shapes servers use, and whether it adds BOS.
async fn tokenize(p: &mut Prober<'_>, model: Option<&str>) {
    let text = "The river runs to the sea";
    // (what it is, path, body with the special-token flag on, the flag's name)
    let styles = [
        (
            "vLLM /tokenize",
            "tokenize",
            json!({"model": model, "prompt": text}),
            "add_special_tokens",
        ),
        (
            "llama.cpp /tokenize",
            "tokenize",
            json!({"content": text}),
            "add_special",
        ),
        (
            "llama-cpp-python /extras/tokenize",
            "extras/tokenize",
            json!({"input": text}),
            "",
        ),
    ];
    let tokens = |v: &Value| -> Option<Vec<Value>> { v["tokens"].as_array().cloned() };
    let mut last = (Support::No, String::from("no tokenize endpoint answered"));
    for (name, path, body, flag) in styles {
        match p.ask_json(path, &body).await {
            Ok(v) if tokens(&v).is_some() => {
                let count = tokens(&v).map_or(0, |t| t.len());
                p.note(
                    TOKENIZE,
                    Support::Yes,
                    format!("{name} ({count} tokens for a 6-word text)"),
                );
                if flag.is_empty() {
                    p.note(
                        BOS,
                        Support::Unknown,
                        "this endpoint has no special-token switch",
                    );
                    return;
                }
                let mut with = body.clone();
                with[flag] = json!(true);
                let mut without = body.clone();
                without[flag] = json!(false);
                let (a, b) = (
                    p.ask_json(path, &with).await,
                    p.ask_json(path, &without).await,
                );
                match (
                    a.ok().as_ref().and_then(tokens),
                    b.ok().as_ref().and_then(tokens),
                ) {
                    (Some(a), Some(b)) if a.len() == b.len() + 1 => {
                        p.note(BOS, Support::Yes, format!("token {} first", a[0]))
                    }
                    (Some(a), Some(b)) if a.len() == b.len() => p.note(BOS, Support::No, ""),
                    (Some(a), Some(b)) => p.note(
                        BOS,
                        Support::Unknown,
                        format!(
                            "{} tokens with special tokens, {} without",
                            a.len(),
                            b.len()
                        ),
                    ),
                    _ => p.note(BOS, Support::Unknown, format!("`{flag}` not taken")),
                }
                return;
            }
            Ok(_) => last = (Support::No, format!("{name}: no `tokens` in the answer")),
            Err((s, why)) => last = (s, format!("{name}: {why}")),
        }
    }
    p.note(TOKENIZE, last.0, last.1);
    p.note(BOS, Support::Unknown, "no tokenize endpoint");
}

async fn metrics(p: &mut Prober<'_>) {
    match p.ask("metrics", None).await {
        Ok((200..=299, text)) => {
            let families = text.lines().filter(|l| l.starts_with("# TYPE ")).count();
            if families > 0 {
                p.note(METRICS, Support::Yes, format!("{families} metric families"));
            } else {
                p.note(
                    METRICS,
                    Support::No,
                    "answers, but not in the Prometheus text format",
                );
            }
        }
        Ok((status, message)) => p.note(
            METRICS,
            refused(status),
            format!("HTTP {status}: {message}"),
        ),
        Err(e) => p.note(METRICS, Support::Unknown, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_read_with_their_comments_usage_and_done() {
        let body = ": ping\n\ndata: {\"choices\":[{\"text\":\"a\"}],\"usage\":{\"completion_tokens\":1}}\n\n\
                    : ping\n\ndata: {\"choices\":[],\"usage\":{\"completion_tokens\":1}}\n\ndata: oops\n\ndata: [DONE]\n\n";
        let seen = read_stream(body);
        assert_eq!(
            (seen.events.len(), seen.comments, seen.done, seen.malformed),
            (2, 2, true, 1)
        );
        assert!(is_usage_chunk(&seen.events[1]));
        assert!(!is_usage_chunk(&seen.events[0]));
        assert!(usage_on_text_events(&seen.events));
        let plain = read_stream("data: {\"choices\":[{\"text\":\"a\"}]}\n\n");
        assert!(!usage_on_text_events(&plain.events));
        assert!(!plain.done);
    }

    #[test]
    fn echoed_prompts_need_log_probabilities() {
        let good = json!({"choices": [{"logprobs": {"token_logprobs": [null, -1.5, -0.2]}}]});
        assert_eq!(prompt_logprobs(&good), Ok(3));
        let generated_only = json!({"choices": [{"logprobs": {"token_logprobs": [-0.2]}}]});
        assert!(prompt_logprobs(&generated_only)
            .unwrap_err()
            .contains("not echoed"));
        assert!(prompt_logprobs(&json!({"choices": [{}]})).is_err());
    }

    #[test]
    fn variants_of_a_failed_request_are_unknown() {
        let finding = |feature, support| Finding {
            feature,
            support,
            detail: String::new(),
        };
        let mut findings = vec![
            finding(COMPLETIONS, Support::No),
            finding(COMPLETIONS_STREAM, Support::No),
            finding(ECHO_LOGPROBS, Support::No),
            finding(CHAT, Support::Yes),
            finding(CHAT_STREAM, Support::No),
        ];
        unknown_without_a_base(&mut findings);
        let supports: Vec<Support> = findings.iter().map(|f| f.support).collect();
        use Support::*;
        assert_eq!(supports, [No, Unknown, Unknown, Yes, No]);
    }

    fn report(findings: &[(&'static str, Support, &str)]) -> ProbeReport {
        ProbeReport {
            url: "http://x".into(),
            model: Some("m".into()),
            models: vec!["m".into()],
            findings: findings
                .iter()
                .map(|&(feature, support, detail)| Finding {
                    feature,
                    support,
                    detail: detail.into(),
                })
                .collect(),
            warning: None,
        }
    }

    #[test]
    fn requests_leave_out_only_what_the_server_refused() {
        use Support::*;
        // vLLM: everything taken, nothing to point out.
        let vllm = report(&[
            (USAGE_CHUNK, Yes, ""),
            (CONTINUOUS_USAGE, Yes, ""),
            (IGNORE_EOS, Yes, "2 of 2 tokens"),
        ]);
        let (d, choices) = dialect(&vllm);
        assert_eq!(d, Dialect::default());
        assert_eq!(choices, [USUAL_STREAMS]);
        // Per-event usage refused: the final usage chunk only.
        let (d, choices) = dialect(&report(&[
            (USAGE_CHUNK, Yes, ""),
            (CONTINUOUS_USAGE, No, CONTINUOUS_REFUSED),
        ]));
        assert_eq!(d.stream_usage, StreamUsage::Final);
        assert!(choices[0].contains("include_usage only"), "{choices:?}");
        // stream_options refused, ignore_eos refused: neither is sent.
        let (d, choices) = dialect(&report(&[
            (USAGE_CHUNK, No, STREAM_OPTIONS_REFUSED),
            (CONTINUOUS_USAGE, No, CONTINUOUS_REFUSED),
            (IGNORE_EOS, No, "HTTP 400: unknown field"),
        ]));
        assert_eq!(
            d,
            Dialect {
                stream_usage: StreamUsage::Off,
                ignore_eos: false
            }
        );
        assert_eq!(choices.len(), 2);
        // Accepted but not honoured (llama.cpp): still asked, harmlessly,
        // and the record says tokens come from the events.
        let (d, choices) = dialect(&report(&[
            (USAGE_CHUNK, No, "no usage chunk at the end"),
            (CONTINUOUS_USAGE, No, "asked for, not sent"),
        ]));
        assert_eq!(d, Dialect::default());
        assert!(
            choices[0].contains("counted from the events"),
            "{choices:?}"
        );
        // Nothing known: vLLM's shape.
        assert_eq!(dialect(&report(&[])).0, Dialect::default());
    }

    #[test]
    fn records_keep_findings_short() {
        let long = "x".repeat(500);
        let r = record(
            &report(&[(TOKEN_PROMPTS, Support::No, &long)]),
            vec!["c".into()],
        );
        assert_eq!(r.found[0].support, "no");
        assert_eq!(r.found[0].detail.chars().count(), 121);
        assert_eq!(clip("héllo", 2), "hé…");
        assert_eq!(clip("hi", 2), "hi");
    }

    #[test]
    fn refusals_are_told_from_failures() {
        assert_eq!(refused(400), Support::No);
        assert_eq!(refused(404), Support::No);
        assert_eq!(refused(401), Support::Unknown);
        assert_eq!(refused(429), Support::Unknown);
        assert_eq!(refused(500), Support::Unknown);
    }
}
