//! The case pipeline end to end: files become trials, trials gate candidate
//! against baseline, bad configuration is reported with file, line and key.

use std::path::Path;
use std::process::Command;

use libtest_mimic::Arguments;
use servegate::config::{env_overrides, ConfigError, Origin};
use servegate::discover::Project;
use servegate::run::scenario;
use servegate::{harness, report};

use crate::common::{self, BIN};

/// A copy of the repository's case layout in a temporary folder.
fn copy_of_repository_layout() -> tempfile::TempDir {
    common::copy_of_repository(&["scenarios", "suites", "prompts"])
}

/// A small, fast project: two embedded engines and one prompt set.
fn small_project(candidate_sim: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        format!(
            "model = \"m\"\n\
             [targets.candidate]\nsim = {candidate_sim}\n\
             [targets.baseline]\nsim = {{ ttft_ms = 10.0, tpot_ms = 3.0 }}\n\
             [workload]\nmax_tokens = 24\nconcurrency = 2\nnum_requests = 8\nwarmup = 1\n"
        ),
    )
    .unwrap();
    common::add_prompts_and_scenarios(root);
    std::fs::write(
        root.join("scenarios/speed.toml"),
        "[gate]\nthroughput_total = { min_ratio = 0.9 }\nlatency_p50 = { max_ratio = 1.1 }\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    dir
}

fn project(root: &Path) -> Project {
    Project::with_env(root, Vec::new())
}

fn trial_names(project: &Project, args: &[&str]) -> Vec<String> {
    let args = Arguments::from_iter(std::iter::once("gate").chain(args.iter().copied()));
    harness::trials(project, &args)
        .iter()
        .map(|t| t.name().to_string())
        .collect()
}

fn servegate(root: &Path, args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("--root")
        .arg(root)
        .args(args)
        .env_remove("SERVEGATE_CONCURRENCY")
        .output()
        .unwrap()
}

#[test]
fn adding_a_scenario_file_adds_a_trial() {
    let dir = copy_of_repository_layout();
    let p = project(dir.path());
    let before = trial_names(&p, &["--list"]);
    assert!(
        before.contains(&"scenario::grid::short_mt64_c1".to_string()),
        "{before:?}"
    );
    assert!(before.contains(&"scenario::grid::medium_mt128_c4".to_string()));

    std::fs::write(
        dir.path().join("scenarios/zz_added.toml"),
        "[workload]\nconcurrency = 3\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let after = trial_names(&p, &["--list"]);
    assert_eq!(after.len(), before.len() + 1);
    assert!(after.contains(&"scenario::zz_added".to_string()));

    // The CLI sees the same cases.
    let out = servegate(dir.path(), &["list"]);
    assert!(out.status.success());
    let listed: Vec<String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(listed, after);
}

#[test]
fn env_list_override_expands_a_matrix_axis() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let env = env_overrides([("SERVEGATE_CONCURRENCY".to_string(), "1,2,4".to_string())]);
    let p = Project::with_env(dir.path(), env);
    let names = trial_names(&p, &["--list"]);
    assert_eq!(
        names,
        vec![
            "scenario::speed::c1",
            "scenario::speed::c2",
            "scenario::speed::c4"
        ]
    );
    let cases = p
        .load(&p.file_for_name("scenario::speed").unwrap())
        .unwrap();
    assert_eq!(cases[2].config.workload.concurrency, 4);
}

#[test]
fn exact_name_reads_only_its_own_file() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    std::fs::write(
        dir.path().join("scenarios/broken.toml"),
        "this is not toml = = =\n",
    )
    .unwrap();
    let p = project(dir.path());
    // Listing everything shows the broken file as a (failing) trial ...
    let all = trial_names(&p, &["--list"]);
    assert_eq!(all, vec!["scenario::broken", "scenario::speed"]);
    // ... but resolving one name never touches it.
    let args = Arguments::from_iter(["gate", "--exact", "scenario::speed"]);
    let trials = harness::trials(&p, &args);
    assert_eq!(trials.len(), 1);
    assert_eq!(trials[0].name(), "scenario::speed");
    // A name that resolves to nothing is a failing trial, never zero trials (a pass under nextest).
    let args = Arguments::from_iter(["gate", "--exact", "scenario::speed::c9"]);
    let trials = harness::trials(&p, &args);
    assert_eq!(trials.len(), 1);
    let conclusion = libtest_mimic::run(&args, trials);
    assert!(conclusion.has_failed());
}

#[test]
fn cases_this_machine_cannot_run_are_ignored_at_list_time() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    std::fs::write(
        dir.path().join("scenarios/needs_gpu.toml"),
        "requires_gpu = true\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("scenarios/needs_data.toml"),
        "requires_files = [\"data/absent.json\"]\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let p = project(dir.path());
    let args = Arguments::from_iter(["gate", "--list"]);
    let trials = harness::trials(&p, &args);
    let ignored: Vec<&str> = trials
        .iter()
        .filter(|t| t.has_ignored_flag())
        .map(|t| t.name())
        .collect();
    assert_eq!(ignored, vec!["scenario::needs_data", "scenario::needs_gpu"]);
    let out = servegate(dir.path(), &["list", "--reasons"]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("scenario::needs_gpu  (ignored: requires a GPU"),
        "{text}"
    );
    assert!(text.contains("absent.json which is absent"), "{text}");
}

#[test]
fn slower_candidate_fails_with_a_table_naming_the_metric() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0, slowdown = 1.3 }");
    let p = project(dir.path());
    let case = &p
        .load(&p.file_for_name("scenario::speed").unwrap())
        .unwrap()[0];
    let report = scenario::run_case(&p, case, Default::default()).unwrap();
    assert!(!report.passed);
    let tput = report
        .gate
        .iter()
        .find(|r| r.metric == "throughput_total")
        .unwrap();
    assert!(
        tput.ratio < 0.85 && tput.ratio > 0.6,
        "ratio {}",
        tput.ratio
    );
    let message = report::failure_message(&report);
    for needle in [
        "gate failed on",
        "throughput_total",
        "latency_p50",
        "metric",
        "candidate",
        "baseline",
        "ratio",
        "limit",
        "verdict",
        "FAIL",
    ] {
        assert!(message.contains(needle), "missing {needle:?} in\n{message}");
    }
    // The error-rate row held, and says so.
    let errors = report
        .gate
        .iter()
        .find(|r| r.metric == "error_rate")
        .unwrap();
    assert_eq!(errors.verdict, servegate::gate::Verdict::Pass);

    // The CLI exits 1 on a failed gate and prints the ratio table.
    let out = servegate(dir.path(), &["run"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("Thr/req") && stdout.contains("FAIL"),
        "{stdout}"
    );
}

#[test]
fn equal_engines_pass_and_write_results() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let output = dir.path().join("out/run.json");
    let out = servegate(dir.path(), &["run", "--output", output.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("TTFT") && stdout.contains("ThrTot"),
        "{stdout}"
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(results["passed"], true);
    let candidate = &results["cases"][0]["candidate"]["summary"];
    assert_eq!(candidate["completed"], 8);
    assert_eq!(candidate["total_output_tokens"], 8 * 24);
    // Configured TTFT is 10 ms; the measurement must land close to it.
    let ttft = candidate["ttft_ms"]["p50"].as_f64().unwrap();
    assert!((9.5..30.0).contains(&ttft), "ttft p50 {ttft}");
}

fn config_error(root: &Path, case: &str, body: &str) -> ConfigError {
    std::fs::write(root.join("scenarios").join(format!("{case}.toml")), body).unwrap();
    let p = project(root);
    p.load(&p.file_for_name(&format!("scenario::{case}")).unwrap())
        .expect_err("configuration should be rejected")
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let e = config_error(
        dir.path(),
        "typo",
        "description = \"x\"\n\n[workload]\nmax_tokens = 32\nconcurency = 4\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    assert_eq!(
        e.origin,
        Origin::File(dir.path().join("scenarios/typo.toml"))
    );
    assert_eq!(e.line, Some(5));
    assert_eq!(e.key.as_deref(), Some("workload.concurency"));
    let text = e.to_string();
    assert!(
        text.contains("typo.toml:5") && text.contains("workload.concurency"),
        "{text}"
    );
    assert!(text.contains("unknown key"), "{text}");
}

#[test]
fn type_error_names_file_line_and_key() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let e = config_error(
        dir.path(),
        "types",
        "[workload]\nmax_tokens = 32\n\n[gate]\nthroughput_total = { min_ratio = \"high\" }\n",
    );
    assert_eq!(e.line, Some(5), "{e}");
    assert_eq!(e.key.as_deref(), Some("gate.throughput_total.min_ratio"));
    assert!(e.to_string().contains("types.toml:5"), "{e}");
}

#[test]
fn semantic_errors_are_located_too() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let e = config_error(
        dir.path(),
        "metric",
        "[gate]\nerror_rate = { max = 0.0 }\nspeed_p50 = { max_ratio = 1.1 }\n",
    );
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("gate.speed_p50")),
        "{e}"
    );
    let e = config_error(
        dir.path(),
        "who",
        "candidate = \"nobody\"\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(1), Some("candidate")),
        "{e}"
    );
    let e = config_error(dir.path(), "syntax", "[gate]\nerror_rate = { max = 0.0 \n");
    assert_eq!(e.line, Some(2), "{e}");
}

#[test]
fn env_errors_name_the_variable() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    let env = env_overrides([("SERVEGATE_WORKLOAD__WARMUP".to_string(), "lots".to_string())]);
    let p = Project::with_env(dir.path(), env);
    let e = p
        .load(&p.file_for_name("scenario::speed").unwrap())
        .unwrap_err();
    assert_eq!(
        e.origin,
        Origin::Env("SERVEGATE_WORKLOAD__WARMUP".into()),
        "{e}"
    );
    assert_eq!(e.key.as_deref(), Some("workload.warmup"));
}

#[test]
fn check_and_run_exit_2_on_config_errors() {
    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    std::fs::write(
        dir.path().join("scenarios/bad.toml"),
        "[gate]\nbogus_p50 = { max = 1 }\n",
    )
    .unwrap();
    for cmd in [&["check"][..], &["run"][..]] {
        let out = servegate(dir.path(), cmd);
        assert_eq!(out.status.code(), Some(2), "{cmd:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("bad.toml:2") && stderr.contains("gate.bogus_p50"),
            "{stderr}"
        );
    }
}

/// The run API that `servegate run` and the test harness share: events come
/// in order, each with the results so far, and the results file written by
/// the file reporter is incomplete until the run ends.
#[test]
fn a_run_reports_each_case_as_it_finishes() {
    use servegate::events::{Event, Fanout, Recorder, Reporter};
    use servegate::report::outputs::ResultsFile;
    use servegate::results::RunResults;

    let dir = small_project("{ ttft_ms = 10.0, tpot_ms = 3.0 }");
    std::fs::write(
        dir.path().join("scenarios/needs_weights.toml"),
        "requires_files = [\"weights/absent.safetensors\"]\n[gate]\nthroughput_total = { min_ratio = 0.9 }\n",
    )
    .unwrap();
    let p = project(dir.path());
    let cases: Vec<_> = p
        .load_all()
        .into_iter()
        .flat_map(|(_, c)| c.unwrap())
        .collect();
    let selected: Vec<_> = cases.iter().collect();

    /// Checks what the results file holds while the run goes on.
    struct FileWatch(std::path::PathBuf, Vec<(String, bool, usize)>);
    impl Reporter for FileWatch {
        fn event(&mut self, event: &Event<'_>, so_far: &RunResults) {
            if let Event::ScenarioFinished(_) | Event::Finished = event {
                let on_disk = servegate::results::read(&self.0).unwrap();
                let what = if matches!(event, Event::Finished) {
                    "finished"
                } else {
                    "case"
                };
                self.1
                    .push((what.into(), on_disk.complete, so_far.cases.len()));
            }
        }
    }
    let path = dir.path().join("results/run.json");
    let mut recorder = Recorder::default();
    let mut file = ResultsFile::new(path.clone());
    let mut watch = FileWatch(path.clone(), Vec::new());
    let results = servegate::run::run(
        &p,
        &selected,
        Default::default(),
        &mut Fanout(vec![&mut recorder, &mut file, &mut watch]),
    );
    assert_eq!(
        recorder.seen,
        [
            "started",
            "ignored scenario::needs_weights",
            "measuring scenario::speed: candidate `candidate`",
            "measuring scenario::speed: baseline `baseline`",
            "scenario scenario::speed",
            "scenarios done",
            "finished"
        ]
    );
    // The file reporter had written the case, incomplete, before the watch
    // heard of it; at the end the file is complete.
    assert_eq!(
        watch.1,
        [
            ("case".to_string(), false, 1),
            ("finished".to_string(), true, 1)
        ]
    );
    assert!(results.complete && results.passed, "{results:?}");
    assert_eq!(results.ignored.len(), 1);
    assert_eq!(file.written.unwrap().unwrap(), path);
}
