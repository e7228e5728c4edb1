//! vLLM's `bench serve` reporting flags end to end against the embedded
//! engine: `bench --percentile-metrics/--metric-percentiles`, and
//! `run --goodput` overriding the case files' objectives.

use std::path::Path;

use serde_json::Value;

use crate::common::{self, Sim, BIN};

/// `--percentile-metrics ttft,e2el --metric-percentiles 50,90`: a table of
/// those figures and vLLM's keys in the output file, the same numbers the
/// summary holds; without the flags neither; a bad value names its flag.
#[test]
fn bench_reports_vllm_percentile_metrics() {
    let engine = Sim::start(&["--profile", "engine"]);
    let dir = tempfile::tempdir().unwrap();
    let prompts = dir.path().join("prompts.json");
    std::fs::write(
        &prompts,
        r#"{"short": ["Tell me a story.", "What is the capital of France?", "Count to ten."]}"#,
    )
    .unwrap();
    let bench = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["bench", "--base-url", &engine.url, "--prompts-file"])
            .arg(&prompts)
            .args([
                "--prompt-length",
                "short",
                "--max-tokens",
                "8",
                "--warmup",
                "1",
            ])
            .args(extra)
            .output()
            .unwrap()
    };
    let out = dir.path().join("out.json");
    let ran = bench(&[
        "--concurrency",
        "2",
        "--num-prompts",
        "8",
        "--percentile-metrics",
        "ttft,e2el",
        "--metric-percentiles",
        "50,90",
        "--output",
        out.to_str().unwrap(),
    ]);
    let console = common::text(&ran);
    assert_eq!(ran.status.code(), Some(0), "{console}");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(stdout.contains("Latency percentiles (ms)"), "{console}");
    let header = stdout
        .lines()
        .find(|l| l.contains("metric"))
        .unwrap_or_else(|| panic!("no percentile table: {console}"));
    assert!(
        header.contains("p50 ms") && header.contains("p90 ms") && !header.contains("p99"),
        "{header}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("short_mt8_c2") && (l.contains(" ttft ") || l.contains(" e2el ")))
        .collect();
    assert_eq!(rows.len(), 2, "{console}");

    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let point = file["scenarios"][0].as_object().unwrap();
    let mut keys: Vec<&str> = point
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with('p') && k.ends_with("_ms") && k[1..2].parse::<u8>().is_ok())
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        ["p50_e2el_ms", "p50_ttft_ms", "p90_e2el_ms", "p90_ttft_ms"],
        "only the figures asked for, in vLLM's names"
    );
    let ms = |k: &str| {
        point[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k}: {}", point[k]))
    };
    for metric in ["ttft", "e2el"] {
        let (p50, p90) = (
            ms(&format!("p50_{metric}_ms")),
            ms(&format!("p90_{metric}_ms")),
        );
        assert!(p50 > 0.0 && p50 <= p90, "{metric}: p50 {p50}, p90 {p90}");
    }
    assert!(ms("p50_ttft_ms") < ms("p50_e2el_ms"));
    // The same definitions as the summary's distributions.
    let summary = &point["summary"];
    for (key, series, stat) in [
        ("p50_ttft_ms", "ttft_ms", "p50"),
        ("p90_ttft_ms", "ttft_ms", "p90"),
        ("p50_e2el_ms", "e2e_ms", "p50"),
        ("p90_e2el_ms", "e2e_ms", "p90"),
    ] {
        let want = summary[series][stat].as_f64().unwrap();
        assert!(
            (ms(key) - want).abs() <= 1e-9 * want,
            "{key}: {} vs {want}",
            ms(key)
        );
    }

    // Without the flags: no table, no keys.
    let plain = dir.path().join("plain.json");
    let ran = bench(&[
        "--concurrency",
        "1",
        "--num-prompts",
        "2",
        "--output",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(ran.status.code(), Some(0), "{}", common::text(&ran));
    assert!(!String::from_utf8_lossy(&ran.stdout).contains("percentiles"));
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&plain).unwrap()).unwrap();
    assert!(file["scenarios"][0].get("p99_ttft_ms").is_none(), "{file}");

    // Bad values are usage errors naming the flag, before any request.
    for (flag, value, said) in [
        ("--metric-percentiles", "0", "`0`"),
        ("--metric-percentiles", "50,101", "`101`"),
        ("--metric-percentiles", "p99", "`p99`"),
        ("--percentile-metrics", "ttft,latency", "`latency`"),
    ] {
        let ran = bench(&[flag, value]);
        let stderr = String::from_utf8_lossy(&ran.stderr);
        assert_eq!(ran.status.code(), Some(2), "{}", common::text(&ran));
        assert!(
            stderr.contains(&format!("{flag}:")) && stderr.contains(said),
            "{stderr}"
        );
    }
}

/// `servegate run` of `case` in `root` with `extra` flags: exit code, console, results.
fn run(root: &Path, case: &str, extra: &[&str]) -> (Option<i32>, String, Value) {
    let output = root.join("results.json");
    let _ = std::fs::remove_file(&output);
    let out = std::process::Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "run", case, "--output"])
        .arg(&output)
        .args(extra)
        .output()
        .unwrap();
    let console = common::text(&out);
    let results = std::fs::read_to_string(&output)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code(), console, results)
}

/// `run --goodput` replaces the case file's `workload.slo` (not merged with
/// it): every side's goodput is measured against the flag's objectives and a
/// `goodput` gate checks them.
#[test]
fn run_goodput_overrides_case_objectives() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("servegate.toml"),
        "[targets.candidate]\nsim = { profile = \"engine\" }\n\
         [targets.baseline]\nsim = { profile = \"engine\" }\n",
    )
    .unwrap();
    common::add_prompts_and_scenarios(dir.path());
    // The file's own objective no request can meet.
    std::fs::write(
        dir.path().join("scenarios/slo.toml"),
        "[workload]\nprompts = \"short\"\nmax_tokens = 4\nconcurrency = 2\n\
         num_requests = 6\nwarmup = 0\nslo = { ttft_ms = 0.001 }\n\
         [gate]\ngoodput = { min = 0.001 }\n",
    )
    .unwrap();
    let goodput = |results: &Value, side: &str| -> (f64, f64) {
        let s = &results["cases"][0][side]["summary"];
        (
            s["goodput"]
                .as_f64()
                .unwrap_or_else(|| panic!("no goodput: {s}")),
            s["request_throughput"].as_f64().unwrap(),
        )
    };

    // The file's objective: goodput 0, the gate fails.
    let (code, console, results) = run(dir.path(), "scenario::slo", &[]);
    assert_eq!(code, Some(1), "{console}");
    assert_eq!(goodput(&results, "candidate").0, 0.0, "{console}");

    // A loose objective replaces it: every request counts.
    let (code, console, results) = run(dir.path(), "scenario::slo", &["--goodput", "e2el:60000"]);
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(
        results["cases"][0]["workload"]["slo"],
        serde_json::json!({ "e2e_ms": 60000.0 }),
        "the flag's objectives alone"
    );
    for side in ["candidate", "baseline"] {
        let (good, all) = goodput(&results, side);
        assert!(
            all > 0.0 && (good - all).abs() <= 1e-9 * all,
            "{side}: {good} vs {all}"
        );
    }

    // A strict one: no request meets it, goodput 0 and the gate fails.
    let (code, console, results) = run(dir.path(), "scenario::slo", &["--goodput", "e2el:0.001"]);
    assert_eq!(code, Some(1), "{console}");
    for side in ["candidate", "baseline"] {
        let (good, all) = goodput(&results, side);
        assert!(good == 0.0 && all > 0.0, "{side}: {good} of {all}");
    }

    // A malformed objective is a usage error naming it.
    let (code, console, _) = run(dir.path(), "scenario::slo", &["--goodput", "e2el=5"]);
    assert_eq!(code, Some(2), "{console}");
    assert!(console.contains("--goodput `e2el=5`"), "{console}");
}
