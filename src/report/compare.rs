//! `servegate compare A.json B.json`: the ratio table of two saved runs,
//! A / B, point by point (the old comparison script's last step).
//!
//! Either file may be a `servegate run` results file (one entry per case,
//! taking the chosen target of each) or a `servegate bench --output` file
//! (one entry per grid point). Entries are matched by name.

use serde_json::Value;

use super::console::{interval_text, ratios, table};
use crate::gate::{bootstrap, Interval};
use crate::metrics::{MetricName, RequestRecord, Summary};
use crate::results::TargetReport;

/// One measured point of a saved run.
#[derive(Debug, Clone)]
pub struct Entry {
    pub name: String,
    pub summary: Summary,
    /// Per-request records split by measured phase (empty when not saved).
    pub runs: Vec<Vec<RequestRecord>>,
}

impl Entry {
    fn from_target(name: &str, t: &TargetReport) -> Self {
        Self {
            name: name.to_string(),
            summary: t.summary.clone(),
            runs: t.record_runs().into_iter().map(<[_]>::to_vec).collect(),
        }
    }
}

/// Which target of a `servegate run` file to compare.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Side {
    #[default]
    Candidate,
    Baseline,
}

/// The entries of a saved file (parsed JSON).
pub fn entries(value: &Value, side: Side) -> anyhow::Result<Vec<Entry>> {
    if value.get("cases").is_some() {
        let run: super::RunResults = serde_json::from_value(value.clone())?;
        return Ok(run
            .cases
            .iter()
            .map(|c| {
                let t = match side {
                    Side::Candidate => &c.candidate,
                    Side::Baseline => &c.baseline,
                };
                Entry::from_target(&c.name, t)
            })
            .collect());
    }
    if value.get("gate").is_some() && value.get("candidate").is_some() {
        let case: crate::results::CaseReport = serde_json::from_value(value.clone())?;
        let t = match side {
            Side::Candidate => &case.candidate,
            Side::Baseline => &case.baseline,
        };
        return Ok(vec![Entry::from_target(&case.name, t)]);
    }
    // `scenarios` is the old comparison script's key, which `bench` writes;
    // `results` is what earlier servegate versions wrote.
    let points = ["scenarios", "results"]
        .iter()
        .find_map(|k| value.get(k).and_then(Value::as_array));
    if let Some(points) = points {
        return points
            .iter()
            .map(|p| {
                let name = p
                    .get("name")
                    .and_then(Value::as_str)
                    .ok_or_else(|| anyhow::anyhow!("a result without `name`"))?
                    .to_string();
                let summary: Summary = serde_json::from_value(
                    p.get("summary")
                        .cloned()
                        .ok_or_else(|| anyhow::anyhow!("`{name}` has no `summary`"))?,
                )?;
                let details: Vec<RequestRecord> = match p.get("details") {
                    Some(d) => serde_json::from_value(d.clone())?,
                    None => Vec::new(),
                };
                Ok(Entry {
                    name,
                    summary,
                    runs: if details.is_empty() {
                        Vec::new()
                    } else {
                        vec![details]
                    },
                })
            })
            .collect();
    }
    anyhow::bail!("neither a `servegate run` results file nor a `servegate bench` output")
}

/// One compared point.
#[derive(Debug, Clone)]
pub struct Row {
    pub name: String,
    /// TTFT, Thr/req, ThrTot, Latency: A / B.
    pub ratios: [f64; 4],
    /// Interval of the ThrTot ratio, when both files kept records.
    pub throughput_interval: Option<Interval>,
}

/// The matched rows (in A's order) and the names found in only one file.
pub fn compare(a: &[Entry], b: &[Entry]) -> (Vec<Row>, Vec<String>) {
    let mut rows = Vec::new();
    let mut unmatched = Vec::new();
    for ea in a {
        let Some(eb) = b.iter().find(|e| e.name == ea.name) else {
            unmatched.push(format!("{} (only in A)", ea.name));
            continue;
        };
        let ra: Vec<&[RequestRecord]> = ea.runs.iter().map(Vec::as_slice).collect();
        let rb: Vec<&[RequestRecord]> = eb.runs.iter().map(Vec::as_slice).collect();
        let level = crate::gate::DEFAULT_LEVEL;
        let throughput_interval = bootstrap::ratio_interval(
            MetricName::ThroughputTotal,
            "throughput_total",
            (&ra, None),
            (&rb, None),
            level,
            &bootstrap::Options::default(),
        )
        .map(|(lo, hi)| Interval { lo, hi, level });
        rows.push(Row {
            name: ea.name.clone(),
            ratios: ratios(&ea.summary, &eb.summary),
            throughput_interval,
        });
    }
    for eb in b {
        if !a.iter().any(|e| e.name == eb.name) {
            unmatched.push(format!("{} (only in B)", eb.name));
        }
    }
    (rows, unmatched)
}

/// The ratio table: point, TTFT, Thr/req, ThrTot (with its interval), Latency.
pub fn table_text(rows: &[Row]) -> String {
    let mut t = table(&[
        "point",
        "TTFT",
        "Thr/req",
        "ThrTot",
        "ThrTot 95% CI",
        "Latency",
    ]);
    for r in rows {
        let [ttft, per_req, total, latency] = r.ratios;
        t.add_row(vec![
            r.name.clone(),
            super::console::ratio_text(ttft),
            super::console::ratio_text(per_req),
            super::console::ratio_text(total),
            interval_text(r.throughput_interval.as_ref()),
            super::console::ratio_text(latency),
        ]);
    }
    t.to_string()
}
