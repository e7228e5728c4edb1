//! Runs one workload against one target and records every request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Client, Completion, CompletionRequest, Failure};
use crate::config::WorkloadConfig;
use crate::metrics::{ErrorKind, RequestRecord, Summary, TokenSource};
use crate::tokenizer::Tokenizer;
use crate::workload::{self, Prompt};

/// The records and summary of one measured phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub summary: Summary,
    pub records: Vec<RequestRecord>,
}

/// Everything a benchmark needs besides the client.
#[derive(Clone)]
pub struct BenchSpec {
    pub model: String,
    pub workload: WorkloadConfig,
    pub prompts: Arc<Vec<Prompt>>,
    /// Counts tokens when the server reports no usage.
    pub tokenizer: Option<Tokenizer>,
    /// Ticked once per measured request.
    pub progress: Option<indicatif::ProgressBar>,
}

/// Sends `warmup` discarded requests, then `num_requests` measured ones:
/// closed loop (`concurrency` in flight) or, with `rate`, open loop.
/// Request `i` uses prompt `i mod len`.
pub async fn run(client: &Client, spec: &BenchSpec) -> BenchResult {
    let w = &spec.workload;
    if w.warmup > 0 {
        let concurrency = match w.rate {
            Some(_) => w.max_concurrency.unwrap_or(w.warmup),
            None => w.concurrency,
        };
        closed_loop(client, spec, w.warmup as usize, concurrency as usize, -1.0).await;
    }
    let n = w.num_requests as usize;
    let records = match w.rate {
        None => closed_loop(client, spec, n, w.concurrency as usize, w.ramp_up_s).await,
        Some(rate) => open_loop(client, spec, n, rate).await,
    };
    BenchResult {
        summary: Summary::from_records(&records, w.slo.as_ref()),
        records,
    }
}

fn request_for(spec: &BenchSpec, i: usize) -> CompletionRequest {
    let w = &spec.workload;
    CompletionRequest {
        endpoint: w.endpoint,
        stream: w.stream,
        model: spec.model.clone(),
        prompt: spec.prompts[i % spec.prompts.len()].text.clone(),
        max_tokens: w.max_tokens,
        min_tokens: w.min_tokens,
        temperature: w.temperature,
        ignore_eos: w.ignore_eos,
        timeout: Some(Duration::from_secs_f64(w.request_timeout_s)),
    }
}

/// Sends request `i` and turns the outcome into a record.
async fn measure(
    client: &Client,
    spec: &BenchSpec,
    i: usize,
    phase_start: Instant,
    queue: Duration,
) -> RequestRecord {
    let request = request_for(spec, i);
    let timeout = Duration::from_secs_f64(spec.workload.request_timeout_s);
    let start = phase_start.elapsed();
    // The client ends the request, body included, at `request.timeout`; this
    // bound stays so that no client change can make a request outlive it.
    let outcome = match tokio::time::timeout(timeout, client.complete(&request)).await {
        Ok(outcome) => outcome,
        Err(_) => Err(Failure {
            kind: ErrorKind::Timeout,
            message: format!("timed out after {:.1} s", timeout.as_secs_f64()),
        }),
    };
    let end = phase_start.elapsed();
    let prompt = &spec.prompts[i % spec.prompts.len()];
    let record = to_record(start, end, queue, outcome, prompt, spec.tokenizer.as_ref());
    if let Some(p) = &spec.progress {
        p.inc(1);
    }
    record
}

/// Output tokens: server usage first, then the tokenizer on the text, then the event count.
fn to_record(
    start: Duration,
    end: Duration,
    queue: Duration,
    outcome: Result<Completion, Failure>,
    prompt: &Prompt,
    tokenizer: Option<&Tokenizer>,
) -> RequestRecord {
    match outcome {
        Ok(done) => {
            let (output_tokens, token_source) = match (done.token_source, tokenizer) {
                (TokenSource::Events, Some(t)) => {
                    (t.count(&done.text) as u64, TokenSource::Tokenizer)
                }
                (source, _) => (done.output_tokens, source),
            };
            let last = *done.event_times.last().expect("a completion has an event");
            RequestRecord {
                start_s: start.as_secs_f64(),
                end_s: (start + last).as_secs_f64(),
                event_times_s: done.event_times.iter().map(Duration::as_secs_f64).collect(),
                event_tokens: done.event_tokens,
                output_tokens,
                token_source,
                input_tokens: done.prompt_tokens.or(prompt.tokens.map(u64::from)),
                queue_s: queue.as_secs_f64(),
                error: None,
                error_kind: None,
            }
        }
        Err(failure) => RequestRecord {
            start_s: start.as_secs_f64(),
            end_s: end.as_secs_f64(),
            event_times_s: Vec::new(),
            event_tokens: Vec::new(),
            output_tokens: 0,
            token_source: TokenSource::Events,
            input_tokens: None,
            queue_s: queue.as_secs_f64(),
            error: Some(failure.message),
            error_kind: Some(failure.kind),
        },
    }
}

/// `concurrency` workers each send their next request as soon as the previous
/// one ends. Worker k starts `k × ramp / concurrency` seconds in. A warm-up
/// phase passes a negative ramp, which also silences the progress bar.
async fn closed_loop(
    client: &Client,
    spec: &BenchSpec,
    count: usize,
    concurrency: usize,
    ramp_s: f64,
) -> Vec<RequestRecord> {
    let next = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let phase_start = Instant::now();
    let mut spec = spec.clone();
    if ramp_s < 0.0 {
        spec.progress = None;
    }
    let workers_n = concurrency.max(1).min(count);
    let mut workers = Vec::new();
    for k in 0..workers_n {
        let (client, next, records, spec) =
            (client.clone(), next.clone(), records.clone(), spec.clone());
        let delay = Duration::from_secs_f64(ramp_s.max(0.0) * k as f64 / workers_n as f64);
        workers.push(tokio::spawn(async move {
            tokio::time::sleep_until((phase_start + delay).into()).await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let record = measure(&client, &spec, i, phase_start, Duration::ZERO).await;
                records.lock().expect("records lock").push(record);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    sorted(records)
}

/// Requests leave on a seeded gamma-process schedule, whatever the server's
/// pace; with `max_concurrency`, a request whose turn comes while the cap is
/// reached waits in the client, and that wait is recorded as queueing time.
async fn open_loop(
    client: &Client,
    spec: &BenchSpec,
    count: usize,
    rate: f64,
) -> Vec<RequestRecord> {
    let w = &spec.workload;
    let arrivals = workload::arrival_times(count, rate, w.burstiness, w.seed);
    let cap = w
        .max_concurrency
        .map(|c| c as usize)
        .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let records = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let phase_start = Instant::now();
    let mut tasks = Vec::with_capacity(count);
    for (i, at) in arrivals.into_iter().enumerate() {
        let due = phase_start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let queue = Instant::now().saturating_duration_since(due);
        let (client, records, spec) = (client.clone(), records.clone(), spec.clone());
        tasks.push(tokio::spawn(async move {
            let record = measure(&client, &spec, i, phase_start, queue).await;
            drop(permit);
            records.lock().expect("records lock").push(record);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    sorted(records)
}

fn sorted(records: Arc<Mutex<Vec<RequestRecord>>>) -> Vec<RequestRecord> {
    let mut records = std::mem::take(&mut *records.lock().expect("records lock"));
    records.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    records
}
