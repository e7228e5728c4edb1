//! Runs one workload against one target and records every request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Client, Completion, CompletionRequest, Dialect, Failure};
use crate::config::{Endpoint, WorkloadConfig};
use crate::conversation::{self, Message};
use crate::metrics::{ErrorKind, RequestRecord, Summary, TokenSource, Turn};
use crate::tokenizer::Tokenizer;
use crate::workload::{self, Prompt};

/// The records and summary of one measured phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub summary: Summary,
    pub records: Vec<RequestRecord>,
    /// The server's `/metrics` while the measured requests ran, when scraped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<crate::server_metrics::ServerSeries>,
    /// With a sweep: every load it ran (this result is the saturated one's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sweep: Vec<crate::metrics::SweepPoint>,
    /// With `steady_state`: the window measured (`None` when the target
    /// in flight was never reached, and every request counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steady: Option<crate::steady::Window>,
}

/// The moment a phase's measured requests start, told to whoever watches
/// the phase (a `/metrics` scraper): the requests wait, two seconds at most,
/// until it has read its first sample, so that sample holds none of their
/// work however busy the machine is.
pub struct PhaseStart {
    begin: tokio::sync::Notify,
    ready: tokio::sync::watch::Sender<bool>,
}

impl Default for PhaseStart {
    fn default() -> Self {
        Self {
            begin: tokio::sync::Notify::new(),
            ready: tokio::sync::watch::channel(false).0,
        }
    }
}

impl PhaseStart {
    /// The watcher's side: returns when measured requests are about to start.
    pub async fn began(&self) {
        self.begin.notified().await
    }

    /// The watcher's side: its first sample is read; requests may go.
    pub fn watcher_ready(&self) {
        self.ready.send_replace(true);
    }

    /// Tells the watcher, then waits for it (at once if it was ready before,
    /// as for a sweep's later loads).
    async fn start(&self) {
        self.begin.notify_one();
        let mut ready = self.ready.subscribe();
        let _ = tokio::time::timeout(Duration::from_secs(2), ready.wait_for(|r| *r)).await;
    }
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
    /// The optional request fields the server takes (see `probe::dialect`).
    pub dialect: Dialect,
    /// Told when the warm-up is over and measured requests are about to start.
    pub measuring: Option<Arc<PhaseStart>>,
}

/// Sends `warmup` discarded requests, then `num_requests` measured ones:
/// closed loop (`concurrency` in flight) or, with `rate`, open loop.
/// Request `i` uses prompt `i mod len`. With conversations, each of those
/// is a whole session (see `converse`).
pub async fn run(client: &Client, spec: &BenchSpec) -> BenchResult {
    let w = &spec.workload;
    let sessions = Arc::new(conversation::sessions(&spec.prompts));
    // Measured requests take the prompts after the warm-up's, so a prompt
    // the warm-up sent is not measured again from a warm prefix cache.
    let send = |spec: BenchSpec, first: usize| {
        let client = client.clone();
        let sessions = sessions.clone();
        move |i: usize, phase_start: Instant, queue: Duration| {
            let (client, spec, sessions) = (client.clone(), spec.clone(), sessions.clone());
            async move {
                if sessions.is_empty() {
                    let (record, _) = measure(&client, &spec, first + i, phase_start, queue).await;
                    tick(&spec);
                    vec![record]
                } else {
                    let range = sessions[(first + i) % sessions.len()].clone();
                    let records = converse(&client, &spec, i, range, phase_start, queue).await;
                    tick(&spec);
                    records
                }
            }
        }
    };
    if w.warmup > 0 {
        let concurrency = match w.rate {
            Some(_) => w.max_concurrency.unwrap_or(w.warmup),
            None => w.concurrency,
        };
        // Warm-up requests are not measured: no progress ticks.
        let quiet = BenchSpec {
            progress: None,
            ..spec.clone()
        };
        closed_loop(send(quiet, 0), w.warmup as usize, concurrency as usize, 0.0).await;
    }
    let n = w.num_requests as usize;
    if w.warm_connections {
        let in_flight = match (w.rate, &spec.prompts.first().and_then(|p| p.arrival_s)) {
            (None, None) => w.concurrency,
            _ => w.max_concurrency.unwrap_or(w.concurrency),
        } as usize;
        let bound = Duration::from_secs_f64(w.request_timeout_s.min(30.0));
        client.open_connections(in_flight.min(n), bound).await;
    }
    if let Some(m) = &spec.measuring {
        m.start().await;
    }
    let lag = crate::lag::Probe::start();
    // A trace's requests go at its own times, from the first measured one.
    let first = w.warmup as usize;
    let at = |i: usize| spec.prompts[i % spec.prompts.len()].arrival_s;
    let traced: Option<Vec<f64>> = at(first).map(|t0| {
        (first..first + n)
            .map(|i| at(i).map_or(0.0, |t| (t - t0).max(0.0)))
            .collect()
    });
    let records = match (traced, w.rate) {
        (Some(arrivals), _) => {
            open_loop(send(spec.clone(), first), &arrivals, w.max_concurrency).await
        }
        (None, None) => {
            closed_loop(
                send(spec.clone(), w.warmup as usize),
                n,
                w.concurrency as usize,
                w.ramp_up_s,
            )
            .await
        }
        (None, Some(rate)) => {
            let arrivals = workload::arrival_times(n, rate, w.burstiness, w.seed);
            open_loop(
                send(spec.clone(), w.warmup as usize),
                &arrivals,
                w.max_concurrency,
            )
            .await
        }
    };
    let mut records = records;
    let mut steady = None;
    if w.steady_state {
        let target = match w.rate {
            Some(_) => w.max_concurrency.unwrap_or(w.concurrency),
            None => w.concurrency,
        } as usize;
        if let Some((window, kept)) = crate::steady::plateau(&records, target.min(n)) {
            records = kept;
            steady = Some(window);
        }
    }
    let mut summary = Summary::from_records(&records, w.slo.as_ref());
    summary.client_lag = lag.finish(summary.itl_ms.p50);
    BenchResult {
        summary,
        records,
        server: None,
        sweep: Vec::new(),
        steady,
    }
}

fn tick(spec: &BenchSpec) {
    if let Some(p) = &spec.progress {
        p.inc(1);
    }
}

fn request_for(spec: &BenchSpec, i: usize) -> CompletionRequest {
    let w = &spec.workload;
    CompletionRequest {
        endpoint: w.endpoint,
        stream: w.stream,
        model: spec.model.clone(),
        prompt: spec.prompts[i % spec.prompts.len()].text.clone(),
        history: Vec::new(),
        max_tokens: spec.prompts[i % spec.prompts.len()]
            .max_tokens
            .unwrap_or(w.max_tokens),
        min_tokens: w.min_tokens,
        temperature: w.temperature,
        ignore_eos: w.ignore_eos && spec.dialect.ignore_eos,
        stream_usage: spec.dialect.stream_usage,
        timeout: Some(Duration::from_secs_f64(w.request_timeout_s)),
    }
}

/// One conversation: its turns (prompts `turns`) in order, each sent with
/// the history so far (the server's own answers included), `think_time_s`
/// after the previous answer. A failed turn ends the session, as it would a
/// user's: the next turn would have no answer to follow.
async fn converse(
    client: &Client,
    spec: &BenchSpec,
    session: usize,
    turns: std::ops::Range<usize>,
    phase_start: Instant,
    queue: Duration,
) -> Vec<RequestRecord> {
    let think = spec
        .workload
        .prompts
        .conversations()
        .map_or(0.0, |c| c.think_time_s);
    let mut history: Vec<Message> = Vec::new();
    let mut records = Vec::with_capacity(turns.len());
    for (k, i) in turns.enumerate() {
        if k > 0 && think > 0.0 {
            tokio::time::sleep(Duration::from_secs_f64(think)).await;
        }
        let user = spec.prompts[i].text.clone();
        let mut request = request_for(spec, i);
        match request.endpoint {
            Endpoint::Chat => request.history = history.clone(),
            Endpoint::Completions => request.prompt = conversation::transcript(&history, &user),
        }
        // The first turn's prompt alone is known in tokens; later ones hold
        // the history too.
        let known = match (k, spec.tokenizer.as_ref()) {
            (0, _) if request.endpoint == Endpoint::Chat => spec.prompts[i].tokens.map(u64::from),
            (_, Some(t)) => {
                Some(t.count(&request.prompt) as u64 + history_tokens(t, &request.history))
            }
            _ => None,
        };
        let queued = if k == 0 { queue } else { Duration::ZERO };
        let (mut record, answer) =
            send_one(client, spec, request, known, phase_start, queued).await;
        record.turn = Some(Turn {
            session: session as u32,
            index: k as u32,
        });
        let failed = !record.ok();
        records.push(record);
        if failed {
            break;
        }
        history.push(Message::user(&user));
        history.push(Message::assistant(&answer.unwrap_or_default()));
    }
    records
}

fn history_tokens(tokenizer: &Tokenizer, history: &[Message]) -> u64 {
    history
        .iter()
        .map(|m| tokenizer.count(&m.content) as u64)
        .sum()
}

/// Sends request `i` and turns the outcome into a record (and the answer's text).
async fn measure(
    client: &Client,
    spec: &BenchSpec,
    i: usize,
    phase_start: Instant,
    queue: Duration,
) -> (RequestRecord, Option<String>) {
    let request = request_for(spec, i);
    let known = spec.prompts[i % spec.prompts.len()].tokens.map(u64::from);
    send_one(client, spec, request, known, phase_start, queue).await
}

/// Sends `request`; `input_tokens` is the prompt's length when the server
/// does not report it.
async fn send_one(
    client: &Client,
    spec: &BenchSpec,
    request: CompletionRequest,
    input_tokens: Option<u64>,
    phase_start: Instant,
    queue: Duration,
) -> (RequestRecord, Option<String>) {
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
    let answer = outcome.as_ref().ok().map(|c| c.text.clone());
    let record = to_record(
        start,
        end,
        queue,
        outcome,
        input_tokens,
        spec.tokenizer.as_ref(),
    );
    (record, answer)
}

/// Output tokens: server usage first, then the tokenizer on the text, then the event count.
fn to_record(
    start: Duration,
    end: Duration,
    queue: Duration,
    outcome: Result<Completion, Failure>,
    input_tokens: Option<u64>,
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
                input_tokens: done.prompt_tokens.or(input_tokens),
                queue_s: queue.as_secs_f64(),
                error: None,
                error_kind: None,
                turn: None,
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
            turn: None,
        },
    }
}

/// Measures unit `i` (a request or a session, sent `queue` after its turn
/// came), shielded from panics: a panic becomes a failed record with its message
/// (kind `panic`), so no request goes missing from the counts and the case
/// can fail saying why, instead of the panic vanishing with its worker.
async fn guarded<F>(i: usize, phase_start: Instant, request: F) -> Vec<RequestRecord>
where
    F: std::future::Future<Output = Vec<RequestRecord>>,
{
    use futures_util::FutureExt;
    let start = phase_start.elapsed().as_secs_f64();
    match std::panic::AssertUnwindSafe(request).catch_unwind().await {
        Ok(record) => record,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "a panic without a message".into());
            vec![RequestRecord {
                start_s: start,
                end_s: phase_start.elapsed().as_secs_f64(),
                event_times_s: Vec::new(),
                event_tokens: Vec::new(),
                output_tokens: 0,
                token_source: TokenSource::Events,
                input_tokens: None,
                queue_s: 0.0,
                error: Some(format!(
                    "servegate panicked measuring request {i}: {message}"
                )),
                error_kind: Some(ErrorKind::Panic),
                turn: None,
            }]
        }
    }
}

/// `concurrency` workers each send their next request as soon as the previous
/// one ends. Worker k starts `k × ramp / concurrency` seconds in.
async fn closed_loop<S, F>(
    send: S,
    count: usize,
    concurrency: usize,
    ramp_s: f64,
) -> Vec<RequestRecord>
where
    S: Fn(usize, Instant, Duration) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Vec<RequestRecord>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let phase_start = Instant::now();
    let workers_n = concurrency.max(1).min(count);
    let mut workers = Vec::new();
    for k in 0..workers_n {
        let (send, next, records) = (send.clone(), next.clone(), records.clone());
        let delay = Duration::from_secs_f64(ramp_s.max(0.0) * k as f64 / workers_n as f64);
        workers.push(tokio::spawn(async move {
            tokio::time::sleep_until((phase_start + delay).into()).await;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let record = guarded(i, phase_start, send(i, phase_start, Duration::ZERO)).await;
                push(&records, record);
            }
        }));
    }
    for w in workers {
        // Requests are shielded by `guarded`; a worker can only end early if
        // the runtime is shutting down, and then the records say so by count.
        let _ = w.await;
    }
    sorted(records)
}

/// Requests leave at `arrivals` (seconds from the phase start), whatever the
/// server's pace; with `max_concurrency`, a request whose turn comes while
/// the cap is reached waits in the client, and that wait is recorded as
/// queueing time.
async fn open_loop<S, F>(
    send: S,
    arrivals: &[f64],
    max_concurrency: Option<u32>,
) -> Vec<RequestRecord>
where
    S: Fn(usize, Instant, Duration) -> F + Clone + Send + 'static,
    F: std::future::Future<Output = Vec<RequestRecord>> + Send + 'static,
{
    let cap = max_concurrency
        .map(|c| c as usize)
        .unwrap_or(tokio::sync::Semaphore::MAX_PERMITS);
    let slots = Arc::new(tokio::sync::Semaphore::new(cap));
    let records = Arc::new(Mutex::new(Vec::with_capacity(arrivals.len())));
    let phase_start = Instant::now();
    let mut tasks = Vec::with_capacity(arrivals.len());
    for (i, &at) in arrivals.iter().enumerate() {
        let due = phase_start + Duration::from_secs_f64(at);
        tokio::time::sleep_until(due.into()).await;
        let permit = slots.clone().acquire_owned().await.expect("semaphore open");
        let queue = Instant::now().saturating_duration_since(due);
        let request = guarded(i, phase_start, send(i, phase_start, queue));
        let records = records.clone();
        tasks.push(tokio::spawn(async move {
            let record = request.await;
            drop(permit);
            push(&records, record);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    sorted(records)
}

/// Adds records; a poisoned lock (impossible while requests are guarded)
/// still takes them, so no measurement is lost.
fn push(records: &Mutex<Vec<RequestRecord>>, record: Vec<RequestRecord>) {
    records
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .extend(record);
}

fn sorted(records: Arc<Mutex<Vec<RequestRecord>>>) -> Vec<RequestRecord> {
    let mut records = std::mem::take(
        &mut *records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    );
    records.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    records
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_record(i: usize) -> RequestRecord {
        RequestRecord {
            start_s: i as f64,
            end_s: i as f64 + 0.5,
            event_times_s: vec![0.1, 0.5],
            event_tokens: Vec::new(),
            output_tokens: 2,
            token_source: TokenSource::Usage,
            input_tokens: None,
            queue_s: 0.0,
            error: None,
            error_kind: None,
            turn: None,
        }
    }

    /// Every third request panics: the others are still measured, and each
    /// panic is a failed record carrying its message, in both loops.
    #[test]
    fn a_panicking_request_is_a_failed_record_with_its_message() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        let send = |i: usize, _: Instant, _: Duration| async move {
            if i % 3 == 0 {
                panic!("injected failure {i}");
            }
            vec![ok_record(i)]
        };
        let closed = rt.block_on(closed_loop(send, 9, 2, 0.0));
        let open = rt.block_on(open_loop(send, &[0.0; 9], Some(2)));
        for records in [closed, open] {
            assert_eq!(records.len(), 9);
            let panics: Vec<&RequestRecord> = records
                .iter()
                .filter(|r| r.error_kind == Some(ErrorKind::Panic))
                .collect();
            assert_eq!(panics.len(), 3);
            assert!(panics.iter().all(|r| r
                .error
                .as_deref()
                .unwrap()
                .contains("injected failure")));
            assert_eq!(records.iter().filter(|r| r.ok()).count(), 6);
            let summary = Summary::from_records(&records, None);
            assert_eq!(summary.errors_by_kind["panic"], 3);
        }
        // Every request panicking leaves no request uncounted.
        let all = rt.block_on(closed_loop(
            |i: usize, _: Instant, _: Duration| async move {
                if i < 100 {
                    panic!("always");
                }
                vec![ok_record(i)]
            },
            4,
            4,
            0.0,
        ));
        let summary = Summary::from_records(&all, None);
        assert_eq!((summary.completed, summary.failed), (0, 4));
    }
}
