//! `servegate bench`: an ad-hoc grid run against one URL, with the old
//! comparison script's flags and result names (`short_mt64_c1`, `ttft_p50_ms`, …).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::client::{Client, Dialect};
use crate::config::{Endpoint, WorkloadConfig};
use crate::loadgen::{self, BenchSpec};
use crate::metrics::{RequestRecord, Summary};
use crate::results::ProbeRecord;
use crate::tokenizer::Tokenizer;
use crate::workload::Prompt;

/// One grid point in the old schema, plus the newer metrics beside it.
#[derive(Debug, Clone, Serialize)]
pub struct PointResult {
    pub name: String,
    pub prompt_length: String,
    pub max_tokens: u32,
    pub concurrency: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate: Option<f64>,
    pub ttft_p50_ms: f64,
    pub ttft_p95_ms: f64,
    pub ttft_p99_ms: f64,
    pub ttft_mean_ms: f64,
    pub throughput_mean_tps: f64,
    pub throughput_total_tps: f64,
    pub latency_p50_ms: f64,
    pub latency_p95_ms: f64,
    pub latency_p99_ms: f64,
    pub latency_mean_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_p95_ms: f64,
    pub itl_mean_ms: f64,
    /// Output tokens of the measured requests.
    pub total_tokens: u64,
    pub total_time_s: f64,
    // Newer metrics.
    pub ttft_p90_ms: f64,
    pub tpot_p50_ms: f64,
    pub tpot_p99_ms: f64,
    pub itl_p99_ms: f64,
    pub itl_stddev_ms: f64,
    pub request_throughput: f64,
    pub total_token_throughput: f64,
    pub error_rate: f64,
    pub errors_by_kind: BTreeMap<String, usize>,
    pub peak_concurrency: usize,
    pub queue_p50_ms: f64,
    /// Where output token counts came from: `usage`, `tokenizer`, `events` or `mixed`.
    pub token_source: String,
    /// Failure messages and how often each occurred.
    pub errors: BTreeMap<String, usize>,
    pub summary: Summary,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<RequestRecord>,
}

/// The whole file `--output` writes: the old comparison script's schema
/// (`base_url`, `model`, `warmup`, `num_requests`, `scenarios`), so the
/// step that read its files (`data["scenarios"]`) reads these unchanged.
/// Values that were not measured are `null`, never 0.
#[derive(Debug, Clone, Serialize)]
pub struct BenchFile {
    pub base_url: String,
    pub model: String,
    pub warmup: u32,
    pub num_requests: u32,
    pub endpoint: Endpoint,
    /// What the probe found on the server and how requests were shaped.
    pub probe: ProbeRecord,
    pub scenarios: Vec<PointResult>,
}

impl BenchFile {
    /// The first panic inside servegate while measuring, if any (a bug of
    /// servegate: the run fails with it).
    pub fn panic(&self) -> Option<&str> {
        self.scenarios.iter().find_map(|p| {
            p.errors
                .keys()
                .find(|m| m.starts_with("servegate panicked"))
                .map(String::as_str)
        })
    }

    /// The points where no request completed: nothing there was measured.
    pub fn unmeasured(&self) -> Vec<&PointResult> {
        self.scenarios
            .iter()
            .filter(|p| p.summary.completed == 0)
            .collect()
    }
}

/// The grid: every prompt length × max_tokens × concurrency.
pub struct Grid {
    /// Each set's name and prompts.
    pub prompt_sets: Vec<(String, Vec<Prompt>)>,
    pub max_tokens: Vec<u32>,
    pub concurrency: Vec<u32>,
    pub base: WorkloadConfig,
}

fn token_source(s: &Summary) -> String {
    match (
        s.tokens_from_usage,
        s.tokens_from_tokenizer,
        s.tokens_from_events,
    ) {
        (0, 0, 0) => "none",
        (_, 0, 0) => "usage",
        (0, _, 0) => "tokenizer",
        (0, 0, _) => "events",
        _ => "mixed",
    }
    .to_string()
}

pub fn point_result(
    name: String,
    prompt_length: &str,
    w: &WorkloadConfig,
    s: Summary,
    records: Vec<RequestRecord>,
    save_detailed: bool,
) -> PointResult {
    let mut errors = BTreeMap::new();
    for reason in records.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(reason.clone()).or_insert(0) += 1;
    }
    let details = if save_detailed { records } else { Vec::new() };
    PointResult {
        errors,
        name,
        prompt_length: prompt_length.to_string(),
        max_tokens: w.max_tokens,
        concurrency: w.concurrency,
        rate: w.rate,
        ttft_p50_ms: s.ttft_ms.p50,
        ttft_p95_ms: s.ttft_ms.p95,
        ttft_p99_ms: s.ttft_ms.p99,
        ttft_mean_ms: s.ttft_ms.mean,
        throughput_mean_tps: s.throughput_tps.mean,
        throughput_total_tps: s.throughput_total,
        latency_p50_ms: s.e2e_ms.p50,
        latency_p95_ms: s.e2e_ms.p95,
        latency_p99_ms: s.e2e_ms.p99,
        latency_mean_ms: s.e2e_ms.mean,
        itl_p50_ms: s.itl_ms.p50,
        itl_p95_ms: s.itl_ms.p95,
        itl_mean_ms: s.itl_ms.mean,
        total_tokens: s.total_output_tokens,
        total_time_s: s.duration_s,
        ttft_p90_ms: s.ttft_ms.p90,
        tpot_p50_ms: s.tpot_ms.p50,
        tpot_p99_ms: s.tpot_ms.p99,
        itl_p99_ms: s.itl_ms.p99,
        itl_stddev_ms: s.itl_ms.stddev,
        request_throughput: s.request_throughput,
        total_token_throughput: s.total_token_throughput,
        error_rate: s.error_rate,
        errors_by_kind: s.errors_by_kind.clone(),
        peak_concurrency: s.peak_concurrency,
        queue_p50_ms: s.queue_ms.p50,
        token_source: token_source(&s),
        summary: s,
        details,
    }
}

/// Runs the grid against one client, in the old script's order.
pub async fn run_grid(
    client: &Client,
    model: &str,
    grid: &Grid,
    dialect: Dialect,
    tokenizer: Option<Tokenizer>,
    save_detailed: bool,
    progress: bool,
) -> Vec<PointResult> {
    let mut out = Vec::new();
    for (length, prompts) in &grid.prompt_sets {
        let prompts = Arc::new(prompts.clone());
        for &mt in &grid.max_tokens {
            for &c in &grid.concurrency {
                let workload = WorkloadConfig {
                    max_tokens: mt,
                    concurrency: c,
                    // Open loop: the concurrency axis caps requests in flight.
                    max_concurrency: grid.base.rate.map(|_| c),
                    ..grid.base.clone()
                };
                let name = format!("{length}_mt{mt}_c{c}");
                let spec = BenchSpec {
                    model: model.to_string(),
                    workload: workload.clone(),
                    prompts: prompts.clone(),
                    tokenizer: tokenizer.clone(),
                    progress: progress
                        .then(|| crate::run::progress::progress_bar(&name, workload.num_requests)),
                    dialect,
                    measuring: None,
                };
                let result = loadgen::run(client, &spec).await;
                if let Some(p) = &spec.progress {
                    p.finish_and_clear();
                }
                out.push(point_result(
                    name,
                    length,
                    &workload,
                    result.summary,
                    result.records,
                    save_detailed,
                ));
            }
        }
    }
    out
}

/// The console table for `servegate bench`.
pub fn table(results: &[PointResult]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec![
        "name",
        "TTFT p50",
        "TTFT p95",
        "TTFT p99",
        "ITL p50",
        "ITL p95",
        "TPOT p50",
        "Lat p50",
        "Lat p99",
        "tok/s/req",
        "tok/s total",
        "req/s",
        "errors",
        "tokens from",
    ];
    // Goodput only where objectives were set (`--goodput`).
    let goodput = results.iter().any(|r| r.summary.goodput.is_some());
    if goodput {
        header.push("goodput req/s");
    }
    t.set_header(header);
    let f = |v: f64| {
        if v.is_finite() {
            format!("{v:.2}")
        } else {
            "—".to_string()
        }
    };
    for r in results {
        let mut row = vec![
            r.name.clone(),
            f(r.ttft_p50_ms),
            f(r.ttft_p95_ms),
            f(r.ttft_p99_ms),
            f(r.itl_p50_ms),
            f(r.itl_p95_ms),
            f(r.tpot_p50_ms),
            f(r.latency_p50_ms),
            f(r.latency_p99_ms),
            f(r.throughput_mean_tps),
            f(r.throughput_total_tps),
            f(r.request_throughput),
            r.summary.failed.to_string(),
            r.token_source.clone(),
        ];
        if goodput {
            row.push(f(r.summary.goodput.unwrap_or(f64::NAN)));
        }
        t.add_row(row);
    }
    t.to_string()
}

/// The failure messages of every point that had failures, most frequent first.
pub fn error_report(results: &[PointResult]) -> Option<String> {
    let lines: Vec<String> = results
        .iter()
        .filter(|r| !r.errors.is_empty())
        .map(|r| {
            let failed: usize = r.errors.values().sum();
            let note = if r.summary.completed == 0 {
                " (no request completed: not measured)"
            } else {
                ""
            };
            format!(
                "{}: {failed} failed request{}{note}{}",
                r.name,
                if failed == 1 { "" } else { "s" },
                crate::report::console::message_lines(&r.errors, "  ")
            )
        })
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}
