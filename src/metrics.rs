//! Per-request records and the statistics computed from them. Pure: no IO, no clocks.
//!
//! Definitions (the README repeats them):
//! - TTFT: request sent → first stream event carrying a choice.
//! - ITL: gaps between consecutive choice events of one request, pooled over requests.
//! - TPOT: (E2E − TTFT) / (output_tokens − 1), per request with more than one token.
//! - E2E: request sent → last choice event.
//! - Per-request throughput: output_tokens / E2E.
//! - Total throughput: Σ output_tokens / (last completion − first send).
//! - Per-token ITL: when a stream reports cumulative usage on every event, an
//!   event carrying k tokens after a gap g contributes k gaps of g/k.
//! - Percentiles interpolate linearly between closest ranks (numpy's default).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::stats::{null_as_nan, Distribution, Stat};

/// Service-level objectives; a request meeting all that are set counts toward goodput.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct Slo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tpot_ms: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub e2e_ms: Option<f64>,
}

/// One load of a rate sweep (see `sweep`) and how it went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepPoint {
    /// `synchronous`, `saturated`, or `constant`.
    pub kind: String,
    /// Requests per second: offered for a constant rate, achieved for the
    /// synchronous and saturated loads.
    pub rate: f64,
    /// Share of the point's requests meeting every objective.
    pub within_slo: f64,
    pub meets: bool,
    pub summary: Summary,
}

/// Where a request's output token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// The model's tokenizer applied to the generated text.
    Tokenizer,
    /// The number of stream events carrying a choice.
    Events,
}

/// Why a request failed, for the error breakdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The server answered 4xx.
    Http4xx,
    /// The server answered 5xx.
    Http5xx,
    /// No connection, or the connection broke.
    Connection,
    /// The request ran past `request_timeout_s`.
    Timeout,
    /// The stream was malformed, truncated, or carried no tokens.
    Stream,
    /// servegate itself panicked while measuring the request (a bug of
    /// servegate, not of the server): the case fails with the message.
    Panic,
}

impl ErrorKind {
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Http4xx => "http_4xx",
            ErrorKind::Http5xx => "http_5xx",
            ErrorKind::Connection => "connection",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Stream => "stream",
            ErrorKind::Panic => "panic",
        }
    }
}

/// One measured request. Times are seconds; `start_s`/`end_s` are relative to
/// the start of the measured phase, `event_times_s` to the request's own send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub start_s: f64,
    pub end_s: f64,
    pub event_times_s: Vec<f64>,
    /// Tokens carried by each event, when the stream reported usage on every
    /// event; empty otherwise.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub event_tokens: Vec<u32>,
    pub output_tokens: u64,
    pub token_source: TokenSource,
    /// Prompt tokens (server usage, else tokenizer), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_tokens: Option<u64>,
    /// Time the request waited in the client (open loop with a concurrency
    /// cap) between its scheduled arrival and its send; not part of latency.
    #[serde(default)]
    pub queue_s: f64,
    /// Why the request failed; failed requests never enter latency statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_kind: Option<ErrorKind>,
    /// Its place in a conversation, when requests came in sessions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub turn: Option<Turn>,
}

fn no_values(d: &Distribution) -> bool {
    d.count == 0
}

/// A request's place in a conversation: which session (numbered within the
/// phase) and which of its turns (0 first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub session: u32,
    pub index: u32,
}

/// The requests of one turn position (every session's turn `turn`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnSummary {
    pub turn: u32,
    pub sent: usize,
    pub completed: usize,
    /// Mean prompt tokens of the completed ones: grows with the history.
    #[serde(deserialize_with = "null_as_nan")]
    pub input_tokens_mean: f64,
    pub ttft_ms: Distribution,
    pub e2e_ms: Distribution,
}

/// How the phase's sessions went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSummary {
    pub sessions: usize,
    /// Sessions whose every turn completed (a failed turn ends its session).
    pub completed: usize,
    /// Turns sent per session.
    pub turns: Distribution,
    /// First send → last answer of each session, think time included.
    pub duration_ms: Distribution,
}

/// Per-turn and per-session figures, when the records carry turns.
fn conversation_summaries(records: &[RequestRecord]) -> (Vec<TurnSummary>, Option<SessionSummary>) {
    let mut by_turn: BTreeMap<u32, Vec<&RequestRecord>> = BTreeMap::new();
    let mut by_session: BTreeMap<u32, Vec<&RequestRecord>> = BTreeMap::new();
    for r in records {
        if let Some(t) = r.turn {
            by_turn.entry(t.index).or_default().push(r);
            by_session.entry(t.session).or_default().push(r);
        }
    }
    if by_session.is_empty() {
        return (Vec::new(), None);
    }
    let ms = |s: f64| s * 1000.0;
    let turns = by_turn
        .into_iter()
        .map(|(turn, rs)| {
            let ok: Vec<&&RequestRecord> = rs.iter().filter(|r| r.ok()).collect();
            let inputs: Vec<f64> = ok
                .iter()
                .filter_map(|r| r.input_tokens.map(|t| t as f64))
                .collect();
            TurnSummary {
                turn,
                sent: rs.len(),
                completed: ok.len(),
                input_tokens_mean: if inputs.is_empty() {
                    f64::NAN
                } else {
                    inputs.iter().sum::<f64>() / inputs.len() as f64
                },
                ttft_ms: Distribution::of(ok.iter().filter_map(|r| r.ttft_s()).map(ms)),
                e2e_ms: Distribution::of(ok.iter().filter_map(|r| r.e2e_s()).map(ms)),
            }
        })
        .collect();
    let sessions = SessionSummary {
        sessions: by_session.len(),
        completed: by_session
            .values()
            .filter(|rs| rs.iter().all(|r| r.ok()))
            .count(),
        turns: Distribution::of(by_session.values().map(|rs| rs.len() as f64)),
        duration_ms: Distribution::of(by_session.values().map(|rs| {
            let first = rs.iter().map(|r| r.start_s).fold(f64::INFINITY, f64::min);
            let last = rs.iter().map(|r| r.end_s).fold(f64::NEG_INFINITY, f64::max);
            ms(last - first)
        })),
    };
    (turns, Some(sessions))
}

impl RequestRecord {
    pub fn ok(&self) -> bool {
        self.error.is_none() && !self.event_times_s.is_empty()
    }
    pub fn ttft_s(&self) -> Option<f64> {
        self.event_times_s.first().copied()
    }
    pub fn e2e_s(&self) -> Option<f64> {
        self.event_times_s.last().copied()
    }
    pub fn tpot_s(&self) -> Option<f64> {
        let (ttft, e2e) = (self.ttft_s()?, self.e2e_s()?);
        (self.output_tokens > 1).then(|| (e2e - ttft) / (self.output_tokens - 1) as f64)
    }
    pub fn itl_s(&self) -> impl Iterator<Item = f64> + '_ {
        self.event_times_s.windows(2).map(|w| w[1] - w[0])
    }

    /// Per-token gaps, when every event's token count is known.
    pub fn itl_per_token_s(&self) -> Vec<f64> {
        if self.event_tokens.len() != self.event_times_s.len() || self.event_times_s.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut prev = self.event_times_s[0];
        for (&t, &k) in self.event_times_s.iter().zip(&self.event_tokens).skip(1) {
            // An event with no token (empty text) lets time accrue to the next one.
            if k == 0 {
                continue;
            }
            let gap = (t - prev) / k as f64;
            out.extend(std::iter::repeat_n(gap, k as usize));
            prev = t;
        }
        out
    }

    /// Whether the request met every objective that is set.
    pub fn meets(&self, slo: &Slo) -> bool {
        let ms = |s: Option<f64>| s.map(|v| v * 1000.0);
        let within = |value: Option<f64>, limit: Option<f64>| match limit {
            None => true,
            Some(limit) => value.unwrap_or(0.0) <= limit,
        };
        self.ok()
            && within(ms(self.ttft_s()), slo.ttft_ms)
            && within(ms(self.tpot_s()), slo.tpot_ms)
            && within(ms(self.e2e_s()), slo.e2e_ms)
    }
}

/// Everything measured in one benchmark phase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    /// Failed / sent; NaN (`null`) when nothing was sent.
    #[serde(deserialize_with = "null_as_nan")]
    pub error_rate: f64,
    /// First send → last completion of the measured phase, seconds.
    pub duration_s: f64,
    pub total_output_tokens: u64,
    pub total_input_tokens: u64,
    /// Output tokens per second over the phase. This and the other rates
    /// are NaN (`null`) when no request completed: nothing was measured.
    #[serde(deserialize_with = "null_as_nan")]
    pub throughput_total: f64,
    /// Input plus output tokens per second over the phase.
    #[serde(deserialize_with = "null_as_nan")]
    pub total_token_throughput: f64,
    /// Completed requests per second over the phase.
    #[serde(deserialize_with = "null_as_nan")]
    pub request_throughput: f64,
    /// Requests meeting every SLO, per second; `None` without SLOs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goodput: Option<f64>,
    pub ttft_ms: Distribution,
    pub tpot_ms: Distribution,
    /// Gaps between events (what the client saw).
    pub itl_ms: Distribution,
    /// Gaps per token, when usage deltas give each event's token count (count 0 otherwise).
    pub itl_per_token_ms: Distribution,
    pub e2e_ms: Distribution,
    /// Client-side queueing before the send (open loop with a concurrency cap).
    pub queue_ms: Distribution,
    /// Per-request output tokens per second.
    pub throughput_tps: Distribution,
    /// Most requests in flight at once.
    pub peak_concurrency: usize,
    /// Failed requests by kind (`http_5xx`, `timeout`, …).
    #[serde(default)]
    pub errors_by_kind: BTreeMap<String, usize>,
    /// Peak device memory in use during the phase, bytes, summed over GPUs;
    /// set by the runner when a GPU is watched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_mem_peak_bytes: Option<f64>,
    /// Figures from the server's own `/metrics` (see `server_metrics`),
    /// set by the runner when the target exports them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub server: BTreeMap<String, f64>,
    /// With a sweep: the highest rate meeting the objectives (req/s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_rate_within_slo: Option<f64>,
    /// Requests whose token count came from the server's usage report.
    pub tokens_from_usage: usize,
    /// Requests whose token count came from the tokenizer.
    #[serde(default)]
    pub tokens_from_tokenizer: usize,
    /// Requests whose token count fell back to counting stream events.
    pub tokens_from_events: usize,
    /// How late the client's own timer ran during the phase; `saturated`
    /// marks timings the client, not the server, held back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_lag: Option<crate::lag::ClientLag>,
    /// With conversations: TTFT of every turn after the first, where the
    /// history is long and a prefix cache pays off.
    #[serde(default, skip_serializing_if = "no_values")]
    pub later_turn_ttft_ms: Distribution,
    /// With conversations: figures per turn position.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub turns: Vec<TurnSummary>,
    /// With conversations: figures per session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionSummary>,
}

/// `x` per second of `duration_s`. Without a completed request nothing was
/// measured (NaN, not 0); a phase too short to time has no rate either.
fn rate(x: f64, duration_s: f64, completed: usize) -> f64 {
    if completed > 0 && duration_s > 0.0 {
        x / duration_s
    } else {
        f64::NAN
    }
}

/// Σ of token counts, stopping at `u64::MAX` instead of wrapping.
pub fn saturating_sum(counts: impl IntoIterator<Item = u64>) -> u64 {
    counts.into_iter().fold(0, u64::saturating_add)
}

/// Most intervals `[start_s, end_s]` overlapping at one instant.
pub fn peak_concurrency(records: &[RequestRecord]) -> usize {
    let mut edges: Vec<(f64, i32)> = records
        .iter()
        .flat_map(|r| [(r.start_s, 1), (r.end_s, -1)])
        .collect();
    // At equal times, ends come before starts: back-to-back requests do not overlap.
    edges.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut now = 0i32;
    let mut peak = 0i32;
    for (_, d) in edges {
        now += d;
        peak = peak.max(now);
    }
    peak as usize
}

impl Summary {
    pub fn from_records(records: &[RequestRecord], slo: Option<&Slo>) -> Self {
        let ok: Vec<&RequestRecord> = records.iter().filter(|r| r.ok()).collect();
        let first = records
            .iter()
            .map(|r| r.start_s)
            .fold(f64::INFINITY, f64::min);
        let last = records
            .iter()
            .map(|r| r.end_s)
            .fold(f64::NEG_INFINITY, f64::max);
        let duration_s = if records.is_empty() {
            0.0
        } else {
            (last - first).max(0.0)
        };
        // Saturating: counts read back from a results file are not checked
        // by the client, and `sum` would panic (debug) or wrap (release).
        let total_output_tokens = saturating_sum(ok.iter().map(|r| r.output_tokens));
        let total_input_tokens = saturating_sum(ok.iter().filter_map(|r| r.input_tokens));
        let mut errors_by_kind = BTreeMap::new();
        for r in records.iter().filter(|r| !r.ok()) {
            let kind = r.error_kind.map(ErrorKind::name).unwrap_or("stream");
            *errors_by_kind.entry(kind.to_string()).or_insert(0) += 1;
        }
        let per_second = |x: f64| rate(x, duration_s, ok.len());
        let ms = |s: f64| s * 1000.0;
        // One definition of each per-request value: the one the bootstrap
        // resamples (`Series::per_request`).
        let series = |s: Series| {
            let mut values = Vec::new();
            for r in records {
                s.per_request(r, &mut values);
            }
            Distribution::of(values)
        };
        let (turns, sessions) = conversation_summaries(records);
        Self {
            completed: ok.len(),
            failed: records.len() - ok.len(),
            error_rate: if records.is_empty() {
                f64::NAN
            } else {
                (records.len() - ok.len()) as f64 / records.len() as f64
            },
            duration_s,
            total_output_tokens,
            total_input_tokens,
            throughput_total: per_second(total_output_tokens as f64),
            total_token_throughput: per_second(
                total_output_tokens.saturating_add(total_input_tokens) as f64,
            ),
            request_throughput: per_second(ok.len() as f64),
            goodput: slo.map(|slo| per_second(ok.iter().filter(|r| r.meets(slo)).count() as f64)),
            ttft_ms: series(Series::Ttft),
            tpot_ms: series(Series::Tpot),
            itl_ms: series(Series::Itl),
            itl_per_token_ms: Distribution::of(ok.iter().flat_map(|r| r.itl_per_token_s()).map(ms)),
            e2e_ms: series(Series::E2e),
            queue_ms: series(Series::Queue),
            peak_concurrency: peak_concurrency(records),
            errors_by_kind,
            throughput_tps: series(Series::Throughput),
            gpu_mem_peak_bytes: None,
            server: BTreeMap::new(),
            max_rate_within_slo: None,
            tokens_from_usage: ok
                .iter()
                .filter(|r| r.token_source == TokenSource::Usage)
                .count(),
            tokens_from_tokenizer: ok
                .iter()
                .filter(|r| r.token_source == TokenSource::Tokenizer)
                .count(),
            tokens_from_events: ok
                .iter()
                .filter(|r| r.token_source == TokenSource::Events)
                .count(),
            client_lag: None,
            later_turn_ttft_ms: series(Series::LaterTurnTtft),
            turns,
            sessions,
        }
    }

    /// One summary of several measured phases of the same target (`repeats`):
    /// distributions, counts and the error rate pool every request; rates are
    /// the phases' work over their summed durations (each phase's own wall
    /// time, so the pauses between phases never count); peak concurrency is
    /// the largest of any phase.
    pub fn from_runs(runs: &[&[RequestRecord]], slo: Option<&Slo>) -> Self {
        if let [only] = runs {
            return Self::from_records(only, slo);
        }
        // Sessions are numbered within their phase: each phase's numbers
        // follow the previous phase's, so no two sessions pool into one.
        let mut all: Vec<RequestRecord> = Vec::new();
        let mut first_session = 0u32;
        for run in runs {
            let mut next = first_session;
            for r in run.iter() {
                let mut r = r.clone();
                if let Some(t) = &mut r.turn {
                    t.session += first_session;
                    next = next.max(t.session + 1);
                }
                all.push(r);
            }
            first_session = next;
        }
        let mut pooled = Self::from_records(&all, slo);
        let per_run: Vec<Summary> = runs.iter().map(|r| Self::from_records(r, slo)).collect();
        let duration_s: f64 = per_run.iter().map(|s| s.duration_s).sum();
        let per_second = |x: f64| rate(x, duration_s, pooled.completed);
        pooled.duration_s = duration_s;
        pooled.throughput_total = per_second(pooled.total_output_tokens as f64);
        pooled.total_token_throughput = per_second(
            pooled
                .total_output_tokens
                .saturating_add(pooled.total_input_tokens) as f64,
        );
        pooled.request_throughput = per_second(pooled.completed as f64);
        pooled.goodput = slo.map(|_| {
            per_second(
                per_run
                    .iter()
                    .filter_map(|s| s.goodput.filter(|g| g.is_finite()))
                    .zip(per_run.iter().map(|s| s.duration_s))
                    .map(|(g, d)| g * d)
                    .sum(),
            )
        });
        pooled.peak_concurrency = per_run
            .iter()
            .map(|s| s.peak_concurrency)
            .max()
            .unwrap_or(0);
        pooled
    }

    /// Why nothing of this sample can be gated, when that is so: no request
    /// was sent, or none completed.
    pub fn unmeasured(&self) -> Option<String> {
        match (self.completed, self.failed) {
            (0, 0) => Some("no request was sent".into()),
            (0, failed) => Some(format!("0 of {failed} requests completed")),
            _ => None,
        }
    }

    pub fn metric(&self, name: MetricName) -> f64 {
        match name {
            // A series with no value (every request failed, or no request
            // had two tokens for TPOT) was not measured.
            MetricName::Dist(series, stat) => {
                let d = self.distribution(series);
                if d.count == 0 {
                    f64::NAN
                } else {
                    d.stat(stat)
                }
            }
            MetricName::ThroughputTotal => self.throughput_total,
            MetricName::TotalTokenThroughput => self.total_token_throughput,
            MetricName::RequestThroughput => self.request_throughput,
            MetricName::Goodput => self.goodput.unwrap_or(f64::NAN),
            MetricName::GpuMemPeak => self.gpu_mem_peak_bytes.unwrap_or(f64::NAN),
            MetricName::Server(key) => self.server.get(key).copied().unwrap_or(f64::NAN),
            MetricName::MaxRateWithinSlo => self.max_rate_within_slo.unwrap_or(f64::NAN),
            MetricName::ErrorRate => self.error_rate,
        }
    }

    pub fn distribution(&self, series: Series) -> &Distribution {
        match series {
            Series::Ttft => &self.ttft_ms,
            Series::Tpot => &self.tpot_ms,
            Series::Itl => &self.itl_ms,
            Series::E2e => &self.e2e_ms,
            Series::Queue => &self.queue_ms,
            Series::Throughput => &self.throughput_tps,
            Series::LaterTurnTtft => &self.later_turn_ttft_ms,
        }
    }
}

/// A per-request quantity summarised by a distribution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Series {
    Ttft,
    Tpot,
    Itl,
    E2e,
    Queue,
    Throughput,
    /// TTFT of conversation turns after the first.
    LaterTurnTtft,
}

impl Series {
    /// The values one request adds to this series (milliseconds, or tokens
    /// per second for throughput), exactly as `Summary::from_records` pools them.
    pub fn per_request(self, r: &RequestRecord, out: &mut Vec<f64>) {
        let ms = |s: f64| s * 1000.0;
        if self == Series::Queue {
            out.push(ms(r.queue_s));
            return;
        }
        if !r.ok() {
            return;
        }
        match self {
            Series::Ttft => out.extend(r.ttft_s().map(ms)),
            Series::LaterTurnTtft => {
                if r.turn.is_some_and(|t| t.index > 0) {
                    out.extend(r.ttft_s().map(ms))
                }
            }
            Series::Tpot => out.extend(r.tpot_s().map(ms)),
            Series::Itl => out.extend(r.itl_s().map(ms)),
            Series::E2e => out.extend(r.e2e_s().map(ms)),
            Series::Throughput => out.extend(
                r.e2e_s()
                    .filter(|&e2e| e2e > 0.0)
                    .map(|e2e| r.output_tokens as f64 / e2e),
            ),
            Series::Queue => unreachable!("handled above"),
        }
    }
}

/// A metric a gate can check, parsed from names like `ttft_p50` or `throughput_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricName {
    Dist(Series, Stat),
    ThroughputTotal,
    TotalTokenThroughput,
    RequestThroughput,
    Goodput,
    GpuMemPeak,
    /// A figure from the server's `/metrics` (one of `server_metrics::KEYS`).
    Server(&'static str),
    /// A sweep's highest rate meeting the objectives.
    MaxRateWithinSlo,
    ErrorRate,
}

impl MetricName {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "throughput_total" => return Some(Self::ThroughputTotal),
            "total_token_throughput" => return Some(Self::TotalTokenThroughput),
            "request_throughput" => return Some(Self::RequestThroughput),
            "goodput" => return Some(Self::Goodput),
            "gpu_mem_peak" => return Some(Self::GpuMemPeak),
            "error_rate" => return Some(Self::ErrorRate),
            "max_rate_within_slo" => return Some(Self::MaxRateWithinSlo),
            _ => {}
        }
        if let Some(key) = crate::server_metrics::KEYS.iter().find(|k| **k == name) {
            return Some(Self::Server(key));
        }
        let (series, stat) = name.rsplit_once('_')?;
        let series = match series {
            "ttft" => Series::Ttft,
            "tpot" => Series::Tpot,
            "itl" => Series::Itl,
            "e2e" | "latency" => Series::E2e,
            "queue" => Series::Queue,
            "throughput" => Series::Throughput,
            "later_turn_ttft" => Series::LaterTurnTtft,
            _ => return None,
        };
        let stat = match stat {
            "p50" => Stat::P50,
            "p90" => Stat::P90,
            "p95" => Stat::P95,
            "p99" => Stat::P99,
            "mean" => Stat::Mean,
            "stddev" => Stat::Stddev,
            _ => return None,
        };
        Some(Self::Dist(series, stat))
    }

    pub fn help() -> &'static str {
        "{ttft,tpot,itl,e2e,latency,queue,throughput}_{p50,p90,p95,p99,mean,stddev}, later_turn_ttft_{p50,…} (conversations), throughput_total, total_token_throughput, request_throughput, goodput, gpu_mem_peak, error_rate; from the server's /metrics: running_{peak,mean}, waiting_{peak,mean}, kv_cache_usage_{peak,mean}, prefix_cache_hit_rate, preemptions; with a sweep: max_rate_within_slo"
    }

    /// Taken per request, so the bootstrap can resample it (not sampled
    /// from the device or the server's own metrics).
    pub fn per_request(self) -> bool {
        !matches!(
            self,
            Self::GpuMemPeak | Self::Server(_) | Self::MaxRateWithinSlo
        )
    }

    /// Whether a larger value is better (throughputs) or worse (latencies, errors).
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::ThroughputTotal
                | Self::TotalTokenThroughput
                | Self::RequestThroughput
                | Self::Goodput
                | Self::Dist(Series::Throughput, _)
                | Self::Server("prefix_cache_hit_rate")
                | Self::MaxRateWithinSlo
        )
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::Dist(Series::Throughput, _)
            | Self::ThroughputTotal
            | Self::TotalTokenThroughput => "tok/s",
            Self::RequestThroughput | Self::Goodput | Self::MaxRateWithinSlo => "req/s",
            Self::GpuMemPeak => "B",
            Self::Server(_) | Self::ErrorRate => "",
            Self::Dist(..) => "ms",
        }
    }
}

/// A gate key: a metric's name as the configuration writes it
/// (`latency_p50`) with the metric it names. Parsed once, when the
/// configuration is read; ordered and compared by the written name, so
/// tables list keys as the user wrote them.
#[derive(Debug, Clone)]
pub struct MetricKey {
    name: String,
    metric: MetricName,
}

impl MetricKey {
    pub fn parse(name: &str) -> Option<Self> {
        MetricName::parse(name).map(|metric| Self {
            name: name.to_string(),
            metric,
        })
    }

    pub fn metric(&self) -> MetricName {
        self.metric
    }

    pub fn as_str(&self) -> &str {
        &self.name
    }
}

impl PartialEq for MetricKey {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for MetricKey {}

impl PartialOrd for MetricKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for MetricKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.name.cmp(&other.name)
    }
}

/// Lookups by the written name (`gate.get("ttft_p50")`).
impl std::borrow::Borrow<str> for MetricKey {
    fn borrow(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for MetricKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Serialize for MetricKey {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

impl<'de> Deserialize<'de> for MetricKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Self::parse(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "unknown metric `{name}`; known: {}",
                MetricName::help()
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Repeated phases number their sessions from 0 each: pooled, they stay
    /// apart (two phases of two sessions are four sessions).
    #[test]
    fn repeated_phases_keep_their_sessions_apart() {
        let turn = |session: u32, index: u32| {
            let mut r = rec(index as f64, &[0.1, 0.2], 2);
            r.turn = Some(Turn { session, index });
            r
        };
        let phase = vec![turn(0, 0), turn(0, 1), turn(1, 0), turn(1, 1)];
        let pooled = Summary::from_runs(&[&phase, &phase], None);
        let sessions = pooled.sessions.expect("sessions");
        assert_eq!((sessions.sessions, sessions.completed), (4, 4));
        assert_eq!(sessions.turns.mean, 2.0);
        assert_eq!(pooled.turns.len(), 2);
        assert_eq!(pooled.later_turn_ttft_ms.count, 4);
    }

    fn rec(start: f64, events: &[f64], tokens: u64) -> RequestRecord {
        RequestRecord {
            start_s: start,
            end_s: start + events.last().copied().unwrap_or(0.0),
            event_times_s: events.to_vec(),
            event_tokens: Vec::new(),
            output_tokens: tokens,
            token_source: TokenSource::Usage,
            input_tokens: Some(10),
            queue_s: 0.0,
            error: None,
            error_kind: None,
            turn: None,
        }
    }

    #[test]
    fn request_level_formulas() {
        // Sent at 0; events at 100 ms, 150 ms, 250 ms; four tokens by usage
        // (one chunk carried two tokens).
        let r = rec(0.0, &[0.100, 0.150, 0.250], 4);
        assert_eq!(r.ttft_s(), Some(0.100));
        assert_eq!(r.e2e_s(), Some(0.250));
        assert!((r.tpot_s().unwrap() - 0.050).abs() < 1e-12);
        let itl: Vec<f64> = r.itl_s().collect();
        assert!((itl[0] - 0.05).abs() < 1e-12 && (itl[1] - 0.1).abs() < 1e-12);
        assert_eq!(rec(0.0, &[0.1], 1).tpot_s(), None);
    }

    /// Counts from a results file written by anything: huge ones saturate, never wrap or panic.
    #[test]
    fn token_totals_saturate() {
        let mut huge = rec(0.0, &[0.1, 0.2], u64::MAX);
        huge.input_tokens = Some(u64::MAX);
        let records = vec![huge.clone(), huge, rec(0.0, &[0.1], 3)];
        let s = Summary::from_records(&records, None);
        assert_eq!(s.total_output_tokens, u64::MAX);
        assert_eq!(s.total_input_tokens, u64::MAX);
        assert!(s.total_token_throughput.is_finite());
        let runs: [&[RequestRecord]; 2] = [&records, &records];
        assert_eq!(
            Summary::from_runs(&runs, None).total_output_tokens,
            u64::MAX
        );
    }

    #[test]
    fn summary_excludes_failures_from_latency_and_uses_phase_wall_time() {
        let mut failed = rec(0.5, &[], 0);
        failed.error = Some("HTTP 500".into());
        failed.error_kind = Some(ErrorKind::Http5xx);
        failed.end_s = 0.6;
        let records = vec![
            rec(0.0, &[0.1, 0.2], 2),
            rec(1.0, &[0.3, 0.5, 1.0], 3),
            failed,
        ];
        let s = Summary::from_records(&records, None);
        assert_eq!(s.completed, 2);
        assert_eq!(s.failed, 1);
        assert!((s.error_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.duration_s - 2.0).abs() < 1e-12);
        assert!((s.throughput_total - 2.5).abs() < 1e-12);
        assert!((s.ttft_ms.mean - 200.0).abs() < 1e-9);
        assert_eq!(s.itl_ms.count, 3);
        assert!((s.metric(MetricName::parse("e2e_p50").unwrap()) - 600.0).abs() < 1e-9);
        assert_eq!(s.errors_by_kind.get("http_5xx"), Some(&1));
        assert_eq!(s.total_input_tokens, 20);
        assert!((s.total_token_throughput - 12.5).abs() < 1e-12);
        assert_eq!(s.goodput, None);
        // Requests 1 (0–0.2 s) and 3 (0.5–0.6 s) and 2 (1.0–2.0 s) never overlap.
        assert_eq!(s.peak_concurrency, 1);
    }

    #[test]
    fn chunk_with_two_tokens_and_chunk_with_empty_text() {
        // Events at 100, 150, 160, 250 ms. The 150 ms event carried no text
        // (0 tokens), the 250 ms one carried two tokens.
        let mut r = rec(0.0, &[0.100, 0.150, 0.160, 0.250], 4);
        r.event_tokens = vec![1, 0, 1, 2];
        // Per event: every message with choices counts, whatever its text.
        let itl: Vec<f64> = r.itl_s().collect();
        assert_eq!(itl.len(), 3);
        // Per token: the empty event's time accrues to the next token; the
        // double event splits its gap in two.
        let per_token = r.itl_per_token_s();
        let expect = [0.060, 0.045, 0.045];
        assert_eq!(per_token.len(), 3);
        for (a, b) in per_token.iter().zip(expect) {
            assert!((a - b).abs() < 1e-12, "{per_token:?}");
        }
        // TPOT divides by tokens, not events: (250 − 100) / 3.
        assert!((r.tpot_s().unwrap() - 0.050).abs() < 1e-12);
    }

    #[test]
    fn goodput_counts_requests_meeting_every_slo() {
        let records = vec![
            rec(0.0, &[0.05, 0.10], 2), // ttft 50 ms, tpot 50 ms
            rec(0.0, &[0.30, 0.35], 2), // ttft 300 ms: misses
            rec(0.0, &[0.05, 0.40], 2), // tpot 350 ms: misses
            rec(0.0, &[0.05, 0.50], 1), // one token: no tpot, meets
        ];
        let slo = Slo {
            ttft_ms: Some(100.0),
            tpot_ms: Some(100.0),
            e2e_ms: None,
        };
        let s = Summary::from_records(&records, Some(&slo));
        assert!(
            (s.goodput.unwrap() - 2.0 / 0.5).abs() < 1e-9,
            "{:?}",
            s.goodput
        );
        assert_eq!(s.peak_concurrency, 4);
    }

    #[test]
    fn peak_concurrency_ignores_back_to_back_requests() {
        let records = vec![
            rec(0.0, &[1.0], 1),
            rec(1.0, &[1.0], 1),
            rec(1.5, &[0.1], 1),
        ];
        assert_eq!(peak_concurrency(&records), 2);
    }

    #[test]
    fn metric_names_parse() {
        assert_eq!(
            MetricName::parse("latency_p95"),
            Some(MetricName::Dist(Series::E2e, Stat::P95))
        );
        assert_eq!(
            MetricName::parse("throughput_total"),
            Some(MetricName::ThroughputTotal)
        );
        assert_eq!(MetricName::parse("ttft_p42"), None);
        assert_eq!(MetricName::parse("speed_p50"), None);
        assert!(MetricName::parse("throughput_mean")
            .unwrap()
            .higher_is_better());
        assert!(!MetricName::parse("itl_p99").unwrap().higher_is_better());
    }

    #[test]
    fn gate_keys_parse_once_and_keep_their_spelling() {
        let key: MetricKey = serde_json::from_str("\"latency_p50\"").unwrap();
        assert_eq!(key.metric(), MetricName::Dist(Series::E2e, Stat::P50));
        assert_eq!(key.to_string(), "latency_p50");
        assert_eq!(serde_json::to_string(&key).unwrap(), "\"latency_p50\"");
        let e = serde_json::from_str::<MetricKey>("\"ttft_p42\"").unwrap_err();
        assert!(e.to_string().contains("unknown metric `ttft_p42`"), "{e}");
        let mut map = std::collections::BTreeMap::new();
        map.insert(key, 1);
        assert_eq!(map.get("latency_p50"), Some(&1));
    }
}
