//! Per-request records and the statistics computed from them. Pure: no IO, no clocks.
//!
//! Definitions (the README repeats them):
//! - TTFT: request sent → first stream event carrying a choice.
//! - ITL: gaps between consecutive choice events of one request, pooled over requests.
//! - TPOT: (E2E − TTFT) / (output_tokens − 1), per request with more than one token.
//! - E2E: request sent → last choice event.
//! - Per-request throughput: output_tokens / E2E.
//! - Total throughput: Σ output_tokens / (last completion − first send).
//! - Percentiles interpolate linearly between closest ranks (numpy's default).

use serde::{Deserialize, Serialize};

/// Where a request's output token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage.completion_tokens`.
    Usage,
    /// The number of stream events carrying a choice.
    Events,
}

/// One measured request. Times are seconds; `start_s`/`end_s` are relative to
/// the start of the measured phase, `event_times_s` to the request's own send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub start_s: f64,
    pub end_s: f64,
    pub event_times_s: Vec<f64>,
    pub output_tokens: u64,
    pub token_source: TokenSource,
    /// Why the request failed; failed requests never enter latency statistics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
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
}

/// Summary of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    pub mean: f64,
    /// Population standard deviation (numpy's default, as vLLM reports it).
    pub stddev: f64,
    pub min: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Distribution {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            count: v.len(),
            mean,
            stddev: var.sqrt(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }

    pub fn stat(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50,
            Stat::P90 => self.p90,
            Stat::P95 => self.p95,
            Stat::P99 => self.p99,
            Stat::Mean => self.mean,
            Stat::Stddev => self.stddev,
        }
    }
}

/// Percentile `q` (0–100) of sorted values, interpolating linearly between closest ranks.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// Everything measured in one benchmark phase.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Summary {
    pub completed: usize,
    pub failed: usize,
    pub error_rate: f64,
    /// First send → last completion of the measured phase, seconds.
    pub duration_s: f64,
    pub total_output_tokens: u64,
    /// Output tokens per second over the phase.
    pub throughput_total: f64,
    /// Completed requests per second over the phase.
    pub request_throughput: f64,
    pub ttft_ms: Distribution,
    pub tpot_ms: Distribution,
    pub itl_ms: Distribution,
    pub e2e_ms: Distribution,
    /// Per-request output tokens per second.
    pub throughput_tps: Distribution,
    /// Requests whose token count came from the server's usage report.
    pub tokens_from_usage: usize,
    /// Requests whose token count fell back to counting stream events.
    pub tokens_from_events: usize,
}

impl Summary {
    pub fn from_records(records: &[RequestRecord]) -> Self {
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
        let total_output_tokens: u64 = ok.iter().map(|r| r.output_tokens).sum();
        let per_second = |x: f64| {
            if duration_s > 0.0 {
                x / duration_s
            } else {
                0.0
            }
        };
        let ms = |s: f64| s * 1000.0;
        Self {
            completed: ok.len(),
            failed: records.len() - ok.len(),
            error_rate: if records.is_empty() {
                0.0
            } else {
                (records.len() - ok.len()) as f64 / records.len() as f64
            },
            duration_s,
            total_output_tokens,
            throughput_total: per_second(total_output_tokens as f64),
            request_throughput: per_second(ok.len() as f64),
            ttft_ms: Distribution::of(ok.iter().filter_map(|r| r.ttft_s()).map(ms)),
            tpot_ms: Distribution::of(ok.iter().filter_map(|r| r.tpot_s()).map(ms)),
            itl_ms: Distribution::of(ok.iter().flat_map(|r| r.itl_s()).map(ms)),
            e2e_ms: Distribution::of(ok.iter().filter_map(|r| r.e2e_s()).map(ms)),
            throughput_tps: Distribution::of(ok.iter().filter_map(|r| {
                let e2e = r.e2e_s()?;
                (e2e > 0.0).then(|| r.output_tokens as f64 / e2e)
            })),
            tokens_from_usage: ok
                .iter()
                .filter(|r| r.token_source == TokenSource::Usage)
                .count(),
            tokens_from_events: ok
                .iter()
                .filter(|r| r.token_source == TokenSource::Events)
                .count(),
        }
    }

    pub fn metric(&self, name: MetricName) -> f64 {
        match name {
            MetricName::Dist(series, stat) => self.distribution(series).stat(stat),
            MetricName::ThroughputTotal => self.throughput_total,
            MetricName::RequestThroughput => self.request_throughput,
            MetricName::ErrorRate => self.error_rate,
        }
    }

    pub fn distribution(&self, series: Series) -> &Distribution {
        match series {
            Series::Ttft => &self.ttft_ms,
            Series::Tpot => &self.tpot_ms,
            Series::Itl => &self.itl_ms,
            Series::E2e => &self.e2e_ms,
            Series::Throughput => &self.throughput_tps,
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
    Throughput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    P50,
    P90,
    P95,
    P99,
    Mean,
    Stddev,
}

/// A metric a gate can check, parsed from names like `ttft_p50` or `throughput_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricName {
    Dist(Series, Stat),
    ThroughputTotal,
    RequestThroughput,
    ErrorRate,
}

impl MetricName {
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "throughput_total" => return Some(Self::ThroughputTotal),
            "request_throughput" => return Some(Self::RequestThroughput),
            "error_rate" => return Some(Self::ErrorRate),
            _ => {}
        }
        let (series, stat) = name.rsplit_once('_')?;
        let series = match series {
            "ttft" => Series::Ttft,
            "tpot" => Series::Tpot,
            "itl" => Series::Itl,
            "e2e" | "latency" => Series::E2e,
            "throughput" => Series::Throughput,
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
        "{ttft,tpot,itl,e2e,latency,throughput}_{p50,p90,p95,p99,mean,stddev}, throughput_total, request_throughput, error_rate"
    }

    /// Whether a larger value is better (throughputs) or worse (latencies, errors).
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Self::ThroughputTotal | Self::RequestThroughput | Self::Dist(Series::Throughput, _)
        )
    }

    pub fn unit(self) -> &'static str {
        match self {
            Self::Dist(Series::Throughput, _) | Self::ThroughputTotal => "tok/s",
            Self::RequestThroughput => "req/s",
            Self::ErrorRate => "",
            Self::Dist(..) => "ms",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(start: f64, events: &[f64], tokens: u64) -> RequestRecord {
        RequestRecord {
            start_s: start,
            end_s: start + events.last().copied().unwrap_or(0.0),
            event_times_s: events.to_vec(),
            output_tokens: tokens,
            token_source: TokenSource::Usage,
            error: None,
        }
    }

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
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

    #[test]
    fn summary_excludes_failures_from_latency_and_uses_phase_wall_time() {
        let mut failed = rec(0.5, &[], 0);
        failed.error = Some("HTTP 500".into());
        failed.end_s = 0.6;
        let records = vec![
            rec(0.0, &[0.1, 0.2], 2),
            rec(1.0, &[0.3, 0.5, 1.0], 3),
            failed,
        ];
        let s = Summary::from_records(&records);
        assert_eq!(s.completed, 2);
        assert_eq!(s.failed, 1);
        assert!((s.error_rate - 1.0 / 3.0).abs() < 1e-12);
        assert!((s.duration_s - 2.0).abs() < 1e-12);
        assert!((s.throughput_total - 2.5).abs() < 1e-12);
        assert!((s.ttft_ms.mean - 200.0).abs() < 1e-9);
        assert_eq!(s.itl_ms.count, 3);
        assert!((s.metric(MetricName::parse("e2e_p50").unwrap()) - 600.0).abs() < 1e-9);
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
}
