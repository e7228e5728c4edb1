//! `servegate bench`: an ad-hoc grid run against one URL, with the old
//! comparison script's flags and result names (`short_mt64_c1`, `ttft_p50_ms`, …).

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::client::{Client, Dialect};
use crate::config::{Endpoint, WorkloadConfig};
use crate::loadgen::{self, BenchSpec};
use crate::metrics::{RequestRecord, Series, Summary};
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
    /// `--percentile-metrics` × `--metric-percentiles`, under vLLM's keys
    /// (`p99_ttft_ms`, `p50_e2el_ms`, …); none without those flags.
    #[serde(flatten)]
    pub percentiles: PercentileFigures,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<RequestRecord>,
}

/// A latency metric `vllm bench serve --percentile-metrics` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PercentileMetric {
    Ttft,
    Tpot,
    /// Gaps between stream events.
    Itl,
    /// End-to-end latency.
    E2el,
}

impl PercentileMetric {
    pub const ALL: [Self; 4] = [Self::Ttft, Self::Tpot, Self::Itl, Self::E2el];

    /// vLLM's name: `ttft`, `tpot`, `itl`, `e2el`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ttft => "ttft",
            Self::Tpot => "tpot",
            Self::Itl => "itl",
            Self::E2el => "e2el",
        }
    }

    fn series(self) -> Series {
        match self {
            Self::Ttft => Series::Ttft,
            Self::Tpot => Series::Tpot,
            Self::Itl => Series::Itl,
            Self::E2el => Series::E2e,
        }
    }
}

/// Which percentiles of which metrics `bench` reports per point, as
/// `vllm bench serve --percentile-metrics ttft,tpot,itl --metric-percentiles 99`.
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileSpec {
    pub metrics: Vec<PercentileMetric>,
    /// Each in (0, 100].
    pub percentiles: Vec<f64>,
}

impl PercentileSpec {
    /// vLLM's default `--percentile-metrics`.
    pub const DEFAULT_METRICS: &'static str = "ttft,tpot,itl";
    /// vLLM's default `--metric-percentiles`.
    pub const DEFAULT_PERCENTILES: &'static str = "99";

    /// The spec of the two flags' values; `None` when neither was given (the
    /// other then takes vLLM's default). An error names the flag at fault.
    pub fn from_flags(
        metrics: Option<&str>,
        percentiles: Option<&str>,
    ) -> Result<Option<Self>, String> {
        if metrics.is_none() && percentiles.is_none() {
            return Ok(None);
        }
        let metrics = parse_percentile_metrics(metrics.unwrap_or(Self::DEFAULT_METRICS))
            .map_err(|e| format!("--percentile-metrics: {e}"))?;
        let percentiles =
            parse_metric_percentiles(percentiles.unwrap_or(Self::DEFAULT_PERCENTILES))
                .map_err(|e| format!("--metric-percentiles: {e}"))?;
        Ok(Some(Self {
            metrics,
            percentiles,
        }))
    }
}

/// `ttft,e2el`: metric names, comma-separated, each once (in the order given).
pub fn parse_percentile_metrics(text: &str) -> Result<Vec<PercentileMetric>, String> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim) {
        let metric = PercentileMetric::ALL
            .into_iter()
            .find(|m| m.name() == item)
            .ok_or_else(|| format!("unknown metric `{item}` (ttft, tpot, itl, e2el)"))?;
        if !out.contains(&metric) {
            out.push(metric);
        }
    }
    Ok(out)
}

/// `25,50,99.9`: percentiles, comma-separated, each in (0, 100] and once (in the order given).
pub fn parse_metric_percentiles(text: &str) -> Result<Vec<f64>, String> {
    let mut out: Vec<f64> = Vec::new();
    for item in text.split(',').map(str::trim) {
        let q: f64 = item
            .parse()
            .map_err(|_| format!("`{item}` is not a number"))?;
        if !(q > 0.0 && q <= 100.0) {
            return Err(format!("`{item}` is not a percentile in (0, 100]"));
        }
        if !out.contains(&q) {
            out.push(q);
        }
    }
    Ok(out)
}

/// vLLM's name of a percentile: `99` for 99.0, `99.9` for 99.9.
fn percentile_word(q: f64) -> String {
    if q.fract() == 0.0 {
        format!("{q:.0}")
    } else {
        format!("{q}")
    }
}

/// vLLM's result-file key: `p99_ttft_ms`, `p99.9_e2el_ms`.
pub fn percentile_key(metric: PercentileMetric, q: f64) -> String {
    format!("p{}_{}_ms", percentile_word(q), metric.name())
}

/// One requested percentile of one metric at one point, in milliseconds
/// (NaN, written `null`, when the point has no value of that metric).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PercentileFigure {
    pub metric: PercentileMetric,
    pub percentile: f64,
    pub ms: f64,
}

/// A point's requested percentiles, in the order asked; written as one
/// key per figure under vLLM's names.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PercentileFigures(pub Vec<PercentileFigure>);

impl Serialize for PercentileFigures {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for f in &self.0 {
            map.serialize_entry(&percentile_key(f.metric, f.percentile), &f.ms)?;
        }
        map.end()
    }
}

/// The requested percentiles of the requested metrics over a point's
/// records: the values `Summary::from_records` pools (completed requests only).
pub fn percentile_figures(records: &[RequestRecord], spec: &PercentileSpec) -> PercentileFigures {
    let mut out = Vec::new();
    for &metric in &spec.metrics {
        let mut values = Vec::new();
        for r in records {
            metric.series().per_request(r, &mut values);
        }
        let figures = crate::stats::percentiles_of(&values, &spec.percentiles);
        out.extend(
            spec.percentiles
                .iter()
                .zip(figures)
                .map(|(&percentile, ms)| PercentileFigure {
                    metric,
                    percentile,
                    ms,
                }),
        );
    }
    PercentileFigures(out)
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
    /// Extra percentiles per point (`--percentile-metrics`, `--metric-percentiles`).
    pub percentiles: Option<PercentileSpec>,
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
    percentiles: Option<&PercentileSpec>,
) -> PointResult {
    let mut errors = BTreeMap::new();
    for reason in records.iter().filter_map(|r| r.error.as_ref()) {
        *errors.entry(reason.clone()).or_insert(0) += 1;
    }
    let percentiles = percentiles
        .map(|spec| percentile_figures(&records, spec))
        .unwrap_or_default();
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
        percentiles,
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
                    grid.percentiles.as_ref(),
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

/// The requested percentiles (`--percentile-metrics`, `--metric-percentiles`):
/// a row per point and metric, a column per percentile, in milliseconds;
/// `None` when none were requested (or there is no point).
pub fn percentile_table(results: &[PointResult]) -> Option<String> {
    let first = results.iter().find(|r| !r.percentiles.0.is_empty())?;
    let mut columns: Vec<f64> = Vec::new();
    for f in &first.percentiles.0 {
        if !columns.contains(&f.percentile) {
            columns.push(f.percentile);
        }
    }
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    let mut header = vec!["name".to_string(), "metric".to_string()];
    header.extend(
        columns
            .iter()
            .map(|&q| format!("p{} ms", percentile_word(q))),
    );
    t.set_header(header);
    for r in results {
        let mut metrics: Vec<PercentileMetric> = Vec::new();
        for f in &r.percentiles.0 {
            if !metrics.contains(&f.metric) {
                metrics.push(f.metric);
            }
        }
        for metric in metrics {
            let mut row = vec![r.name.clone(), metric.name().to_string()];
            row.extend(columns.iter().map(|&q| {
                r.percentiles
                    .0
                    .iter()
                    .find(|f| f.metric == metric && f.percentile == q)
                    .filter(|f| f.ms.is_finite())
                    .map_or("—".to_string(), |f| format!("{:.2}", f.ms))
            }));
            t.add_row(row);
        }
    }
    Some(t.to_string())
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A record read as a results file holds it (optional fields left out).
    fn record(events: &[f64], error: Option<&str>) -> RequestRecord {
        let mut r = serde_json::json!({
            "start_s": 0.0,
            "end_s": events.last().copied().unwrap_or(0.0),
            "event_times_s": events,
            "output_tokens": events.len(),
            "token_source": "usage",
        });
        if let Some(e) = error {
            r["error"] = e.into();
        }
        serde_json::from_value(r).unwrap()
    }

    #[test]
    fn percentile_flags_parse_as_vllm_reads_them() {
        assert_eq!(PercentileSpec::from_flags(None, None), Ok(None));
        let spec = PercentileSpec::from_flags(None, Some("25, 50,99.9,50"))
            .unwrap()
            .unwrap();
        use PercentileMetric::*;
        assert_eq!(spec.metrics, [Ttft, Tpot, Itl]);
        assert_eq!(spec.percentiles, [25.0, 50.0, 99.9]);
        let spec = PercentileSpec::from_flags(Some("e2el,ttft"), None)
            .unwrap()
            .unwrap();
        assert_eq!(spec.metrics, [E2el, Ttft]);
        assert_eq!(spec.percentiles, [99.0]);
        for (metrics, percentiles, flag, what) in [
            (
                Some("ttft,latency"),
                None,
                "--percentile-metrics",
                "`latency`",
            ),
            (Some(""), None, "--percentile-metrics", "``"),
            (None, Some("0"), "--metric-percentiles", "`0`"),
            (None, Some("100.5"), "--metric-percentiles", "`100.5`"),
            (None, Some("50,p99"), "--metric-percentiles", "`p99`"),
            (None, Some("nan"), "--metric-percentiles", "`nan`"),
            (None, Some("-5"), "--metric-percentiles", "`-5`"),
        ] {
            let e = PercentileSpec::from_flags(metrics, percentiles).unwrap_err();
            assert!(e.starts_with(flag) && e.contains(what), "{e}");
        }
        assert_eq!(parse_metric_percentiles("100"), Ok(vec![100.0]));
    }

    #[test]
    fn keys_are_vllms() {
        assert_eq!(percentile_key(PercentileMetric::Ttft, 99.0), "p99_ttft_ms");
        assert_eq!(
            percentile_key(PercentileMetric::E2el, 99.9),
            "p99.9_e2el_ms"
        );
        assert_eq!(percentile_key(PercentileMetric::Itl, 0.5), "p0.5_itl_ms");
    }

    #[test]
    fn figures_come_from_the_completed_requests() {
        // Completed: TTFT 0.1 s and 0.3 s; E2E 0.4 s and 0.9 s; gaps 0.3, 0.2, 0.4 s.
        let records = [
            record(&[0.1, 0.4], None),
            record(&[0.3, 0.5, 0.9], None),
            record(&[5.0], Some("HTTP 500")),
        ];
        let spec = PercentileSpec {
            metrics: vec![
                PercentileMetric::Ttft,
                PercentileMetric::E2el,
                PercentileMetric::Itl,
            ],
            percentiles: vec![50.0, 100.0],
        };
        let figures = percentile_figures(&records, &spec);
        let got: Vec<(String, f64)> = figures
            .0
            .iter()
            .map(|f| (percentile_key(f.metric, f.percentile), f.ms))
            .collect();
        let want = [
            ("p50_ttft_ms", 200.0),
            ("p100_ttft_ms", 300.0),
            ("p50_e2el_ms", 650.0),
            ("p100_e2el_ms", 900.0),
            ("p50_itl_ms", 300.0),
            ("p100_itl_ms", 400.0),
        ];
        assert_eq!(got.len(), want.len());
        for ((key, ms), (want_key, want_ms)) in got.iter().zip(want) {
            assert_eq!(key, want_key);
            assert!((ms - want_ms).abs() < 1e-9, "{key}: {ms}");
        }
        // Written flat beside the point's other keys; a metric with no value is null.
        let tpot_only = PercentileSpec {
            metrics: vec![PercentileMetric::Tpot],
            percentiles: vec![50.0],
        };
        let json = serde_json::to_value(percentile_figures(&records[2..], &tpot_only)).unwrap();
        assert_eq!(json, serde_json::json!({ "p50_tpot_ms": null }));
        let json = serde_json::to_value(&figures).unwrap();
        assert_eq!(json.as_object().unwrap().len(), 6);
        assert!(percentile_table(&[]).is_none());
    }
}
