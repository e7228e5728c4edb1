//! Reports: console tables, the JSON results file, a Markdown summary, a
//! self-contained HTML page with charts, history over saved runs, and the
//! comparison of two saved runs. Pure rendering: callers read and write files.

pub mod compare;
pub mod console;
pub mod history;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod outputs;
pub mod quality;
pub mod regressions;

pub use crate::results::{sort_by_start, CaseError, IgnoredCase, RunResults, TaskScore};

pub use console::{comparison_table, failure_message, gate_table, target_table};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::files::{file_stem, write_atomic, write_json_atomic};
    use crate::results::read as read_results;

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

    #[test]
    fn reads_run_files_and_single_case_files() {
        let dir = tempfile::tempdir().unwrap();
        let run = fixtures::run(&[("scenario::a", 1.0), ("scenario::b", 0.8)]);
        let path = dir.path().join("run.json");
        write_json_atomic(&path, &run).unwrap();
        let back = read_results(&path).unwrap();
        assert_eq!(back.cases.len(), 2);
        assert_eq!(back.environment, run.environment);
        let case = dir.path().join("case.json");
        write_json_atomic(&case, &run.cases[1]).unwrap();
        let single = read_results(&case).unwrap();
        assert_eq!(single.cases[0].name, "scenario::b");
        std::fs::write(dir.path().join("other.json"), "{\"x\": 1}").unwrap();
        let e = read_results(&dir.path().join("other.json")).unwrap_err();
        assert!(
            e.to_string().contains("not a servegate results file"),
            "{e}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn written_files_are_readable_by_others() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.html");
        write_atomic(&path, b"<html></html>").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o644);
    }
}

/// Synthetic results for the report modules' tests.
#[cfg(test)]
pub(crate) mod fixtures {
    use super::*;
    use crate::config::{CaseConfig, Limit};
    use crate::gate::{self, Sample};
    use crate::metrics::{MetricKey, RequestRecord, Summary, TokenSource};
    use crate::results::{CaseReport, TargetReport};

    /// `n` requests of 8 tokens one after the other, each taking `scale` ×
    /// 100 ms (± a little).
    pub fn records(n: usize, scale: f64) -> Vec<RequestRecord> {
        let mut t = 0.0;
        (0..n)
            .map(|i| {
                let e2e = scale * (0.1 + (i % 3) as f64 * 0.002);
                let start = t;
                t += e2e;
                RequestRecord {
                    start_s: start,
                    end_s: start + e2e,
                    event_times_s: (1..=8).map(|k| e2e * k as f64 / 8.0).collect(),
                    event_tokens: Vec::new(),
                    output_tokens: 8,
                    token_source: TokenSource::Usage,
                    input_tokens: Some(4),
                    queue_s: 0.0,
                    error: None,
                    error_kind: None,
                    turn: None,
                }
            })
            .collect()
    }

    fn target(name: &str, records: Vec<RequestRecord>) -> TargetReport {
        TargetReport {
            target: name.into(),
            url: "http://127.0.0.1:1".into(),
            model: "m".into(),
            summary: Summary::from_records(&records, None),
            runs: Vec::new(),
            run_offsets_s: Vec::new(),
            errors: Default::default(),
            records,
            log: None,
            recorded_from: None,
            gpu_memory: Vec::new(),
            gpu_mem_peak_source: None,
            probe: None,
            server_metrics: Vec::new(),
            sweep: Vec::new(),
            steady_windows: Vec::new(),
        }
    }

    /// A case whose candidate takes `slowdown` × the baseline's time.
    pub fn case(name: &str, slowdown: f64) -> CaseReport {
        let mut config: CaseConfig = toml::from_str("").unwrap();
        config.gate.insert(
            MetricKey::parse("throughput_total").unwrap(),
            Limit {
                min_ratio: Some(0.95),
                confidence: Some(0.95),
                ..Default::default()
            },
        );
        config.gate.insert(
            MetricKey::parse("error_rate").unwrap(),
            Limit {
                max: Some(0.0),
                ..Default::default()
            },
        );
        let candidate = target("candidate", records(12, slowdown));
        let baseline = target("baseline", records(12, 1.0));
        let (cr, br) = (candidate.record_runs(), baseline.record_runs());
        let rows = gate::evaluate_samples(
            &config.gate,
            &Sample {
                summary: &candidate.summary,
                runs: &cr,
                slo: None,
            },
            &Sample {
                summary: &baseline.summary,
                runs: &br,
                slo: None,
            },
            &Default::default(),
        );
        CaseReport {
            name: name.into(),
            file: "scenarios/x.toml".into(),
            description: Some("a | piped <description>".into()),
            workload: config.workload.clone(),
            passed: gate::all_pass(&rows),
            config: Some(config),
            candidate,
            baseline,
            gate: rows,
            roofline: None,
        }
    }

    #[test]
    fn runs_sort_by_start_time_whatever_the_order_given() {
        let at = |t: &str| RunResults {
            started_at: t.into(),
            ..run(&[])
        };
        // 10:00+02:00 is 08:00 UTC: earlier than 09:00 UTC.
        let mut runs = vec![
            at("2025-01-02T09:00:00+00:00"),
            at(""),
            at("2025-01-02T10:00:00+02:00"),
            at("2025-01-01T23:00:00+00:00"),
        ];
        sort_by_start(&mut runs);
        let order: Vec<&str> = runs.iter().map(|r| r.started_at.as_str()).collect();
        assert_eq!(
            order,
            [
                "2025-01-01T23:00:00+00:00",
                "2025-01-02T10:00:00+02:00",
                "2025-01-02T09:00:00+00:00",
                ""
            ]
        );
    }

    pub fn run(cases: &[(&str, f64)]) -> RunResults {
        let cases: Vec<CaseReport> = cases.iter().map(|(n, s)| case(n, *s)).collect();
        RunResults {
            servegate_version: "0.0.0".into(),
            started_at: "2025-01-02T03:04:05+00:00".into(),
            finished_at: "2025-01-02T03:05:05+00:00".into(),
            // One case could not run, so the run fails whatever the gates say.
            passed: false,
            complete: true,
            environment: Some(crate::environment::Environment {
                servegate_version: "0.0.0".into(),
                git_commit: Some("0123456789abcdef0123456789abcdef01234567".into()),
                git_dirty: Some(true),
                os: "linux".into(),
                arch: "x86_64".into(),
                cpu: Some("Test CPU".into()),
                cpus: 2,
                gpu: "no GPU".into(),
            }),
            cases,
            errors: vec![CaseError {
                name: "suite::q".into(),
                error: "not implemented".into(),
            }],
            ignored: vec![IgnoredCase {
                name: "scenario::gpu".into(),
                reason: "requires a GPU".into(),
            }],
            suites: Vec::new(),
            quality: Vec::new(),
        }
    }
}
