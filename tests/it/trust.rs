//! A gate never passes what it could not measure, and the command line
//! behaves as a Unix tool: every check here is a way a user saw servegate
//! pass, print nothing useful, or panic, when it had nothing to go on.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use crate::common::{self, repo, text, Sim, BIN};

fn servegate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir).args(args).env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("servegate runs")
}

/// The embedded engine serving `model`, with short timings.
fn sim(model: &str) -> Sim {
    Sim::start(&["--model", model, "--ttft-ms", "2", "--itl-ms", "1"])
}

/// A project whose two `url` targets are `url`, asking for `model`.
fn url_project(url: &str, model: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        format!(
            "model = \"{model}\"\n[targets.candidate]\nurl = \"{url}\"\n\
             [targets.baseline]\nurl = \"{url}/v1\"\n\
             [workload]\nwarmup = 1\nnum_requests = 4\nmax_tokens = 8\n"
        ),
    )
    .unwrap();
    common::add_prompts_and_scenarios(root);
    std::fs::write(
        root.join("scenarios/one.toml"),
        "[workload]\nprompts = \"short\"\n[gate]\nthroughput_total = { min_ratio = 0.95 }\n\
         ttft_p50 = { max_ratio = 1.5 }\nerror_rate = { max = 1.0 }\n",
    )
    .unwrap();
    dir
}

fn latest_results(root: &Path) -> serde_json::Value {
    let mut files: Vec<_> = std::fs::read_dir(root.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.last().expect("a results file")).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every request fails (the server has no such model): before, the
/// throughput gate passed at 0/0 = 1.000 and the run exited 0.
#[test]
fn a_case_whose_every_request_failed_fails_with_the_servers_message() {
    let sim = sim("real-model");
    let dir = url_project(&sim.url, "no-such-model");
    let root = dir.path();
    let out = servegate(root, &["run"], &[]);
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("scenario::one — FAIL"), "{all}");
    assert!(stdout.contains("0 of 4 requests completed"), "{all}");
    // The reason, with its count, for each side: not only "4 failed".
    assert!(
        stdout.contains("HTTP 404: The model `no-such-model` does not exist. × 4"),
        "{all}"
    );
    assert!(stdout.contains("0 passed, 1 failed"), "{all}");
    assert!(!stdout.contains("1.000"), "no ratio may be shown: {all}");

    // Unmeasured values are null in the results, never 0.
    let results = latest_results(root);
    let case = &results["cases"][0];
    assert_eq!(case["passed"], false);
    assert!(case["candidate"]["summary"]["throughput_total"].is_null());
    assert!(case["candidate"]["summary"]["ttft_ms"]["p50"].is_null());
    assert_eq!(case["candidate"]["summary"]["error_rate"], 1.0);
    for row in case["gate"].as_array().unwrap() {
        assert_eq!(row["verdict"], "fail", "{row}");
        assert!(row["unmeasured"].as_str().unwrap().contains("0 of 4"));
    }
    let tput = case["gate"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["metric"] == "throughput_total")
        .unwrap();
    assert!(
        tput["ratio"].is_null() && tput["candidate"].is_null(),
        "{tput}"
    );

    // The Markdown summary says why, and the report reads the file back.
    let md_path = std::fs::read_dir(root.join("results"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "md"))
        .unwrap();
    let md = std::fs::read_to_string(md_path).unwrap();
    assert!(md.contains("not measured"), "{md}");
    assert!(md.contains("does not exist"), "{md}");
    let out = servegate(root, &["report", "results"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("0 of 4 requests completed"));

    // bench at the same server: exit 1, the message, nulls in the file.
    let file = root.join("bench.json");
    let out = servegate(
        root,
        &[
            "bench",
            "--base-url",
            &format!("{}/v1", sim.url),
            "--model",
            "no-such-model",
            "--concurrency",
            "1",
            "--max-tokens",
            "4",
            "--num-requests",
            "2",
            "--warmup",
            "0",
            "--prompt-length",
            "short",
            "--output",
            file.to_str().unwrap(),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(all.contains("does not exist. × 2"), "{all}");
    assert!(
        all.contains("no request completed at 1 of 1 points"),
        "{all}"
    );
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    let point = &saved["scenarios"][0];
    assert!(point["ttft_p50_ms"].is_null(), "{point}");
    assert!(point["throughput_total_tps"].is_null(), "{point}");
    assert_eq!(point["error_rate"], 1.0);
}

/// The old comparison step reads `data["scenarios"]` and these keys.
const OLD_READER: &str = r#"
import json, sys
data = json.load(open(sys.argv[1]))
for key in ("base_url", "model", "warmup", "num_requests"):
    assert key in data, key
names = []
for s in data["scenarios"]:
    for key in ("name", "prompt_length", "max_tokens", "concurrency",
                "ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "ttft_mean_ms",
                "throughput_mean_tps", "throughput_total_tps",
                "latency_p50_ms", "latency_p95_ms", "latency_p99_ms", "latency_mean_ms",
                "itl_p50_ms", "itl_p95_ms", "itl_mean_ms", "total_tokens", "total_time_s"):
        assert key in s, (s["name"], key)
    assert s["throughput_total_tps"] > 0 and s["ttft_p50_ms"] > 0
    names.append(s["name"])
print(" ".join(names))
"#;

#[test]
fn bench_writes_the_old_scripts_schema_and_takes_a_v1_base_url() {
    let sim = sim("m");
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("p")).unwrap();
    std::fs::write(
        root.join("p/prompts.json"),
        r#"{"short": ["Hello there", "What is a cache?"], "medium": ["Tell me about scheduling in a serving engine."]}"#,
    )
    .unwrap();
    let file = root.join("out.json");
    let out = servegate(
        root,
        &[
            "bench",
            "--base-url",
            &format!("{}/v1", sim.url),
            "--prompts-file",
            "p/prompts.json",
            "--prompt-length",
            "short",
            "medium",
            "--concurrency",
            "1,2",
            "--max-tokens",
            "4",
            "--num-requests",
            "3",
            "--warmup",
            "1",
            "--output",
            file.to_str().unwrap(),
        ],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let reader = Command::new("python3")
        .arg("-c")
        .arg(OLD_READER)
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(reader.status.success(), "{}", text(&reader));
    assert_eq!(
        String::from_utf8_lossy(&reader.stdout).trim(),
        "short_mt4_c1 short_mt4_c2 medium_mt4_c1 medium_mt4_c2"
    );
    // servegate compare reads the same file.
    let out = servegate(
        root,
        &["compare", file.to_str().unwrap(), file.to_str().unwrap()],
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("medium_mt4_c2") && stdout.contains("1.000"),
        "{stdout}"
    );
}

#[test]
fn compare_without_a_common_point_says_so_once_and_draws_no_table() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let file = |name: &str, point: &str| {
        let p = root.join(name);
        std::fs::write(
            &p,
            format!(
                r#"{{"base_url": "u", "model": "m", "warmup": 0, "num_requests": 1,
                    "scenarios": [{{"name": "{point}", "summary": {{"completed": 1, "failed": 0,
                    "error_rate": 0.0, "duration_s": 1.0, "total_output_tokens": 4,
                    "total_input_tokens": 0, "throughput_total": 4.0,
                    "total_token_throughput": 4.0, "request_throughput": 1.0,
                    "ttft_ms": {{"count": 0, "mean": null, "stddev": null, "min": null, "p50": null,
                                 "p90": null, "p95": null, "p99": null, "max": null}},
                    "tpot_ms": {{"count": 0}}, "itl_ms": {{"count": 0}}, "itl_per_token_ms": {{"count": 0}},
                    "e2e_ms": {{"count": 0}}, "queue_ms": {{"count": 0}}, "throughput_tps": {{"count": 0}},
                    "peak_concurrency": 1, "tokens_from_usage": 1, "tokens_from_events": 0}}}}]}}"#
            ),
        )
        .unwrap();
        p
    };
    let (a, b) = (
        file("a.json", "short_mt4_c1"),
        file("b.json", "long_mt4_c1"),
    );
    let out = servegate(
        root,
        &["compare", a.to_str().unwrap(), b.to_str().unwrap()],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert_eq!(all.matches("no point in common").count(), 1, "{all}");
    assert!(!all.contains('┌'), "no empty table: {all}");
}

/// `servegate list | head -1`: the reader is gone before servegate writes.
#[test]
fn a_closed_pipe_ends_quietly() {
    for args in [&["list"][..], &["check"][..], &["--help"][..]] {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(repo())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let status = child.wait().unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_ne!(status.code(), Some(101), "{args:?}: {stderr}");
        assert!(status.success(), "{args:?}: {status:?} {stderr}");
    }
}

#[test]
fn eval_without_a_baseline_prints_scores_only_and_fails_on_a_missing_model() {
    let sim = sim("m");
    let data = repo().join("datasets");
    let dir = tempfile::tempdir().unwrap();
    let out = servegate(
        dir.path(),
        &[
            "eval",
            "--url",
            &sim.url,
            "--tasks",
            "hellaswag",
            "--limit",
            "4",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("hellaswag acc:"), "{all}");
    // No verdict table without anything to compare with.
    assert!(!stdout.contains("limit"), "{all}");
    assert!(!stdout.contains('┌'), "{all}");

    let out = servegate(
        dir.path(),
        &[
            "eval",
            "--url",
            &sim.url,
            "--model",
            "absent",
            "--tasks",
            "hellaswag",
            "--limit",
            "2",
            "--data-dir",
            data.to_str().unwrap(),
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(1), "{all}");
    assert!(
        all.contains("HTTP 404: The model `absent` does not exist."),
        "{all}"
    );
}

/// A run of suites alone: the report shows the quality section and no
/// empty performance section, on the console, in Markdown and in HTML.
#[test]
fn a_report_of_suites_alone_has_no_empty_performance_section() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        "[targets.candidate]\nsim = { ttft_ms = 1.0, tpot_ms = 1.0 }\n\
         [targets.baseline]\nsim = { ttft_ms = 1.0, tpot_ms = 1.0 }\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("suites")).unwrap();
    std::fs::create_dir_all(root.join("datasets")).unwrap();
    std::fs::copy(
        repo().join("datasets/hellaswag.jsonl"),
        root.join("datasets/hellaswag.jsonl"),
    )
    .unwrap();
    std::fs::write(
        root.join("suites/q.toml"),
        "tasks = [\"hellaswag\"]\ndata = \"datasets\"\nlimit = 6\n[gate]\nmax_drop = 0.02\n",
    )
    .unwrap();
    let out = servegate(root, &["run"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = servegate(
        root,
        &[
            "report",
            "results",
            "--html",
            "r.html",
            "--markdown",
            "r.md",
        ],
        &[],
    );
    let all = text(&out);
    assert_eq!(out.status.code(), Some(0), "{all}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("suite::q — pass"), "{all}");
    assert!(stdout.contains("hellaswag"), "{all}");
    assert!(!stdout.contains("Candidate / baseline ratios"), "{all}");
    let html = std::fs::read_to_string(root.join("r.html")).unwrap();
    assert!(html.contains("id=\"quality\""), "quality section");
    for empty in [
        "id=\"summary\"",
        "id=\"ratios\"",
        "id=\"concurrency\"",
        "id=\"cdf\"",
        "id=\"gates\"",
    ] {
        assert!(!html.contains(empty), "an empty section {empty}");
    }
    let md = std::fs::read_to_string(root.join("r.md")).unwrap();
    assert!(md.contains("suite::q"), "{md}");
    assert!(!md.contains("| case | TTFT"), "{md}");
}
