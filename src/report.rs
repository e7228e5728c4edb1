//! Console tables and JSON results.

use std::io::Write;
use std::path::Path;

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{Cell, CellAlignment, Table};
use serde::{Deserialize, Serialize};

use crate::gate::{GateRow, Verdict};
use crate::metrics::Summary;
use crate::runner::{CaseReport, TargetReport};

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED);
    t.set_header(header.iter().map(Cell::new));
    for i in 1..header.len() {
        if let Some(col) = t.column_mut(i) {
            col.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn num(v: f64) -> String {
    if !v.is_finite() {
        return if v.is_nan() {
            "n/a".into()
        } else {
            "inf".into()
        };
    }
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 100.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

/// metric, candidate, baseline, ratio, limit, verdict: the failure message of a trial.
pub fn gate_table(rows: &[GateRow]) -> String {
    let mut t = table(&[
        "metric",
        "candidate",
        "baseline",
        "ratio",
        "limit",
        "verdict",
    ]);
    for r in rows {
        let unit = if r.unit.is_empty() {
            String::new()
        } else {
            format!(" {}", r.unit)
        };
        t.add_row(vec![
            Cell::new(&r.metric).set_alignment(CellAlignment::Left),
            Cell::new(format!("{}{unit}", num(r.candidate))),
            Cell::new(format!("{}{unit}", num(r.baseline))),
            Cell::new(format!("{:.3}", r.ratio)),
            Cell::new(&r.limit),
            Cell::new(r.verdict.to_string()),
        ]);
    }
    t.to_string()
}

/// Per-target metrics of one case, in the old comparison script's terms.
pub fn target_table(report: &CaseReport) -> String {
    let mut t = table(&[
        "target",
        "ok",
        "err",
        "TTFT p50",
        "TTFT p99",
        "ITL p50",
        "ITL p95",
        "TPOT p50",
        "E2E p50",
        "E2E p99",
        "tok/s/req",
        "tok/s total",
        "req/s",
    ]);
    for tr in [&report.candidate, &report.baseline] {
        let s = &tr.summary;
        t.add_row(vec![
            format!("{} ({})", role(report, tr), tr.target),
            s.completed.to_string(),
            s.failed.to_string(),
            num(s.ttft_ms.p50),
            num(s.ttft_ms.p99),
            num(s.itl_ms.p50),
            num(s.itl_ms.p95),
            num(s.tpot_ms.p50),
            num(s.e2e_ms.p50),
            num(s.e2e_ms.p99),
            num(s.throughput_tps.mean),
            num(s.throughput_total),
            num(s.request_throughput),
        ]);
    }
    t.to_string()
}

fn role(report: &CaseReport, tr: &TargetReport) -> &'static str {
    if std::ptr::eq(tr, &report.candidate) {
        "candidate"
    } else {
        "baseline"
    }
}

/// Ratio table across cases (candidate / baseline): TTFT p50, per-request
/// throughput, total throughput, latency p50, as the old script printed.
pub fn comparison_table(reports: &[CaseReport]) -> String {
    let mut t = table(&["case", "TTFT", "Thr/req", "ThrTot", "Latency", "gate"]);
    for r in reports {
        let (c, b): (&Summary, &Summary) = (&r.candidate.summary, &r.baseline.summary);
        t.add_row(vec![
            r.name.clone(),
            format!("{:.3}", crate::gate::ratio(c.ttft_ms.p50, b.ttft_ms.p50)),
            format!(
                "{:.3}",
                crate::gate::ratio(c.throughput_tps.mean, b.throughput_tps.mean)
            ),
            format!(
                "{:.3}",
                crate::gate::ratio(c.throughput_total, b.throughput_total)
            ),
            format!("{:.3}", crate::gate::ratio(c.e2e_ms.p50, b.e2e_ms.p50)),
            if r.passed {
                "pass".into()
            } else {
                "FAIL".into()
            },
        ]);
    }
    t.to_string()
}

/// The message a failed trial shows: what failed, then the full gate table.
pub fn failure_message(report: &CaseReport) -> String {
    let failed: Vec<&str> = report
        .gate
        .iter()
        .filter(|r| r.verdict == Verdict::Fail)
        .map(|r| r.metric.as_str())
        .collect();
    let mut msg = format!(
        "{}: gate failed on {}\n{}",
        report.name,
        failed.join(", "),
        gate_table(&report.gate)
    );
    for tr in [&report.candidate, &report.baseline] {
        for (reason, count) in &tr.errors {
            msg.push_str(&format!("\n{} ({}): {count} × {reason}", tr.target, tr.url));
        }
    }
    msg
}

/// One run's results file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResults {
    pub servegate_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub passed: bool,
    pub cases: Vec<CaseReport>,
    /// Cases that could not be measured, with the reason.
    #[serde(default)]
    pub errors: Vec<CaseError>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CaseError {
    pub name: String,
    pub error: String,
}

/// Writes JSON to `path` atomically: a temporary file in the same folder,
/// flushed and synced, then renamed over the destination.
pub fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    serde_json::to_writer_pretty(&mut tmp, value)?;
    tmp.write_all(b"\n")?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// A file-name-safe form of a case name (`scenario::grid::c4` → `scenario__grid__c4`).
pub fn file_stem(name: &str) -> String {
    name.replace("::", "__")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/r.json");
        write_json_atomic(&path, &vec![1, 2, 3]).unwrap();
        write_json_atomic(&path, &vec![4]).unwrap();
        let back: Vec<u32> =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, vec![4]);
        let leftovers = std::fs::read_dir(dir.path().join("sub")).unwrap().count();
        assert_eq!(leftovers, 1, "no temporary files remain");
    }

    #[test]
    fn stems_are_file_safe() {
        assert_eq!(
            file_stem("scenario::grid::short_mt64_c1"),
            "scenario__grid__short_mt64_c1"
        );
        assert_eq!(file_stem("a/b c"), "a_b_c");
    }
}
