//! What a server's own Prometheus `/metrics` said while a phase ran: the
//! series kept from each scrape, and the figures a gate can check
//! (`kv_cache_usage_peak`, `prefix_cache_hit_rate`, …). Pure: scraping is
//! `scrape`'s job.
//!
//! Engines name the same quantity differently; each figure reads the first
//! of its known names that the server exports (vLLM's, then SGLang's and
//! TGI's).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A quantity and the metric names engines export it under.
struct Quantity {
    key: &'static str,
    names: &'static [&'static str],
}

const RUNNING: Quantity = Quantity {
    key: "running",
    names: &[
        "vllm:num_requests_running",
        "sglang:num_running_reqs",
        "tgi_batch_current_size",
    ],
};
const WAITING: Quantity = Quantity {
    key: "waiting",
    names: &[
        "vllm:num_requests_waiting",
        "sglang:num_queue_reqs",
        "tgi_queue_size",
    ],
};
/// A fraction, 0 to 1.
const KV_CACHE_USAGE: Quantity = Quantity {
    key: "kv_cache_usage",
    names: &[
        "vllm:kv_cache_usage_perc",
        "vllm:gpu_cache_usage_perc",
        "sglang:token_usage",
    ],
};
const PREFIX_QUERIES: Quantity = Quantity {
    key: "prefix_cache_queries",
    names: &[
        "vllm:prefix_cache_queries_total",
        "vllm:prefix_cache_queries",
    ],
};
const PREFIX_HITS: Quantity = Quantity {
    key: "prefix_cache_hits",
    names: &["vllm:prefix_cache_hits_total", "vllm:prefix_cache_hits"],
};
const PREEMPTIONS: Quantity = Quantity {
    key: "preemptions",
    names: &["vllm:num_preemptions_total", "vllm:num_preemptions"],
};

/// Gauges summarised by their peak and mean over the phase.
const GAUGES: [&Quantity; 3] = [&RUNNING, &WAITING, &KV_CACHE_USAGE];
/// Counters summarised by their increase over the phase.
const COUNTERS: [&Quantity; 3] = [&PREFIX_QUERIES, &PREFIX_HITS, &PREEMPTIONS];

/// Every gate key a server-metric figure goes by.
pub const KEYS: &[&str] = &[
    "running_peak",
    "running_mean",
    "waiting_peak",
    "waiting_mean",
    "kv_cache_usage_peak",
    "kv_cache_usage_mean",
    "prefix_cache_hit_rate",
    "preemptions",
];

/// The metric names scraped by default: every known name of every quantity.
pub fn default_names() -> Vec<String> {
    GAUGES
        .iter()
        .chain(COUNTERS.iter())
        .flat_map(|q| q.names.iter().map(|n| n.to_string()))
        .collect()
}

/// Each sample's value in a scrape, summed over its label sets (one per
/// model or engine), for the families in `wanted`. Histograms and
/// summaries are skipped: no figure reads them.
pub fn parse(text: &str, wanted: &[String]) -> Result<BTreeMap<String, f64>, String> {
    use openmetrics_parser::{prometheus::parse_prometheus, PrometheusValue};
    // The parser wants a final newline, which some servers leave out.
    let owned;
    let text = if text.ends_with('\n') {
        text
    } else {
        owned = format!("{text}\n");
        &owned
    };
    // One malformed family fails the whole text; the wanted families alone
    // are then parsed again, so another engine's quirk costs nothing.
    let exposition = match parse_prometheus(text) {
        Ok(e) => e,
        Err(first) => {
            let wanted_only: String = text
                .lines()
                .filter(|l| {
                    let name = l
                        .trim_start_matches("# HELP ")
                        .trim_start_matches("# TYPE ")
                        .split(|c: char| c == '{' || c.is_whitespace())
                        .next()
                        .unwrap_or("");
                    wanted.iter().any(|w| w == name)
                })
                .map(|l| format!("{l}\n"))
                .collect();
            parse_prometheus(&wanted_only).map_err(|_| format!("not Prometheus text: {first}"))?
        }
    };
    let mut out = BTreeMap::new();
    for family in exposition.families.values() {
        // Counters may be listed under their family name, without `_total`.
        let names = [
            family.family_name.clone(),
            format!("{}_total", family.family_name),
        ];
        let Some(name) = names.iter().find(|n| wanted.contains(n)) else {
            continue;
        };
        let mut sum = None;
        for sample in family.iter_samples() {
            let v = match &sample.value {
                PrometheusValue::Gauge(n) | PrometheusValue::Unknown(n) => n.as_f64(),
                PrometheusValue::Counter(c) => c.value.as_f64(),
                _ => continue,
            };
            *sum.get_or_insert(0.0) += v;
        }
        if let Some(v) = sum {
            out.insert(name.clone(), v);
        }
    }
    Ok(out)
}

/// The series of one phase: when each scrape was taken and what it read.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerSeries {
    /// Seconds from the start of the measured requests.
    pub t_s: Vec<f64>,
    /// Each kept metric at each scrape (`null` where a scrape lacked it).
    pub values: BTreeMap<String, Vec<Option<f64>>>,
    /// Scrapes that failed, and the last reason.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub failed: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl ServerSeries {
    /// Adds one scrape at `t_s`.
    pub fn push(&mut self, t_s: f64, read: &BTreeMap<String, f64>) {
        let n = self.t_s.len();
        self.t_s.push(t_s);
        for (name, v) in read {
            self.values
                .entry(name.clone())
                .or_insert_with(|| vec![None; n])
                .push(Some(*v));
        }
        for column in self.values.values_mut() {
            column.resize(n + 1, None);
        }
    }

    /// The series of the first of `q`'s names that was read at all.
    fn of(&self, q: &Quantity) -> Option<Vec<f64>> {
        q.names.iter().find_map(|name| {
            let v: Vec<f64> = self.values.get(*name)?.iter().flatten().copied().collect();
            (!v.is_empty()).then_some(v)
        })
    }
}

/// The gate figures of one or more phases. A figure no scrape could give
/// is absent (so a gate on it reports "not measured", never 0): a gauge
/// needs a value, a counter two, a hit rate a query.
pub fn summarise(phases: &[&ServerSeries]) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    for q in GAUGES {
        let values: Vec<f64> = phases.iter().filter_map(|p| p.of(q)).flatten().collect();
        if values.is_empty() {
            continue;
        }
        let peak = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        out.insert(format!("{}_peak", q.key), peak);
        out.insert(format!("{}_mean", q.key), mean);
    }
    // A counter's increase within each phase, summed over phases.
    let increase = |q: &Quantity| -> Option<f64> {
        let per_phase: Vec<f64> = phases
            .iter()
            .filter_map(|p| p.of(q))
            .filter(|v| v.len() >= 2)
            .map(|v| (v[v.len() - 1] - v[0]).max(0.0))
            .collect();
        (!per_phase.is_empty()).then(|| per_phase.iter().sum())
    };
    if let Some(p) = increase(&PREEMPTIONS) {
        out.insert("preemptions".into(), p);
    }
    if let (Some(queries), Some(hits)) = (increase(&PREFIX_QUERIES), increase(&PREFIX_HITS)) {
        if queries > 0.0 {
            out.insert("prefix_cache_hit_rate".into(), hits / queries);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP vllm:num_requests_running Running.\n\
        # TYPE vllm:num_requests_running gauge\n\
        vllm:num_requests_running{model_name=\"a\"} 3\n\
        vllm:num_requests_running{model_name=\"b\"} 1\n\
        # TYPE vllm:prefix_cache_hits_total counter\n\
        vllm:prefix_cache_hits_total{model_name=\"a\"} 40\n\
        # TYPE vllm:prefix_cache_queries_total counter\n\
        vllm:prefix_cache_queries_total{model_name=\"a\"} 100\n\
        # TYPE broken counter\n\
        broken_total 3\n\
        # TYPE vllm:time_to_first_token_seconds histogram\n\
        vllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} 2\n\
        vllm:time_to_first_token_seconds_sum 0.1\n\
        vllm:time_to_first_token_seconds_count 2\n\
        # TYPE other gauge\n\
        other 7";

    #[test]
    fn scrapes_sum_label_sets_and_keep_only_what_is_wanted() {
        let read = parse(TEXT, &default_names()).unwrap();
        assert_eq!(read["vllm:num_requests_running"], 4.0);
        assert_eq!(read["vllm:prefix_cache_hits_total"], 40.0);
        assert_eq!(read["vllm:prefix_cache_queries_total"], 100.0);
        assert!(!read.contains_key("other"));
        assert!(parse("<html>", &default_names()).is_err());
    }

    #[test]
    fn figures_come_from_the_series_and_only_from_measured_values() {
        let mut phase = ServerSeries::default();
        let at = |pairs: &[(&str, f64)]| -> BTreeMap<String, f64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        phase.push(
            0.0,
            &at(&[
                ("vllm:num_requests_running", 0.0),
                ("vllm:prefix_cache_queries_total", 1000.0),
                ("vllm:prefix_cache_hits_total", 100.0),
            ]),
        );
        phase.push(0.5, &at(&[("vllm:num_requests_running", 8.0)]));
        phase.push(
            1.0,
            &at(&[
                ("vllm:num_requests_running", 4.0),
                ("vllm:prefix_cache_queries_total", 3000.0),
                ("vllm:prefix_cache_hits_total", 1600.0),
            ]),
        );
        assert_eq!(phase.values["vllm:prefix_cache_hits_total"][1], None);
        let s = summarise(&[&phase]);
        assert_eq!(s["running_peak"], 8.0);
        assert_eq!(s["running_mean"], 4.0);
        // (1600 − 100) / (3000 − 1000): the phase's own lookups only.
        assert_eq!(s["prefix_cache_hit_rate"], 0.75);
        assert!(!s.contains_key("kv_cache_usage_peak"));
        assert!(!s.contains_key("preemptions"));
        // No scrape at all: no figure.
        assert!(summarise(&[&ServerSeries::default()]).is_empty());
        for key in s.keys() {
            assert!(KEYS.contains(&key.as_str()), "{key}");
        }
    }
}
