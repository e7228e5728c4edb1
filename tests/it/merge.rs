//! A partitioned gate merged into one verdict: `servegate merge` over the
//! parts equals the unpartitioned run case for case, and refuses parts that
//! lack a case or hold one twice. (`ci/partition-check.sh` does the same
//! with real nextest partitions of the shipped project.)

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{add_prompts_and_scenarios, text, BIN};

fn servegate(dir: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .current_dir(dir)
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env("SERVEGATE_NO_PROGRESS", "1")
        .output()
        .expect("servegate runs")
}

/// Three quick scenarios on two embedded engines; `slow` fails its gate.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        "model = \"m\"\n\
         [targets.candidate]\nsim = { ttft_ms = 5.0, tpot_ms = 1.0 }\n\
         [targets.baseline]\nsim = { ttft_ms = 5.0, tpot_ms = 1.0 }\n\
         [workload]\nmax_tokens = 8\nconcurrency = 2\nnum_requests = 6\nwarmup = 1\n",
    )
    .unwrap();
    add_prompts_and_scenarios(root);
    for name in ["alpha", "beta"] {
        std::fs::write(
            root.join(format!("scenarios/{name}.toml")),
            "[gate]\nerror_rate = { max = 0.0 }\n",
        )
        .unwrap();
    }
    std::fs::write(
        root.join("scenarios/slow.toml"),
        "[targets.candidate]\nsim = { ttft_ms = 5.0, tpot_ms = 1.0, slowdown = 3.0 }\n\
         [gate]\nlatency_p50 = { max_ratio = 1.5 }\n",
    )
    .unwrap();
    dir
}

fn names_and_verdicts(path: &Path) -> Vec<(String, bool)> {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut out: Vec<(String, bool)> = v["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                c["passed"].as_bool().unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

#[test]
fn merged_parts_equal_the_whole_run_and_incomplete_or_doubled_parts_fail() {
    let dir = project();
    let root = dir.path();
    let whole = servegate(root, &["run", "--output", "whole.json"]);
    assert_eq!(whole.status.code(), Some(1), "slow fails: {}", text(&whole));
    for name in ["alpha", "beta", "slow"] {
        let out = servegate(
            root,
            &[
                "run",
                &format!("scenario::{name}"),
                "--exact",
                "--output",
                &format!("{name}.json"),
            ],
        );
        assert!(out.status.code().is_some(), "{}", text(&out));
    }
    // One part as the gate trials leave it: a folder of case files.
    let alpha: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("alpha.json")).unwrap()).unwrap();
    std::fs::create_dir_all(root.join("part-1/cases")).unwrap();
    std::fs::write(
        root.join("part-1/cases/scenario__alpha.json"),
        serde_json::to_string(&alpha["cases"][0]).unwrap(),
    )
    .unwrap();

    let merged = servegate(
        root,
        &[
            "merge",
            "part-1/cases",
            "beta.json",
            "slow.json",
            "--output",
            "merged.json",
            "--junit",
            "junit.xml",
            "--markdown",
            "summary.md",
            "--html",
            "report.html",
        ],
    );
    let out = text(&merged);
    assert_eq!(
        merged.status.code(),
        Some(1),
        "the merged verdict fails: {out}"
    );
    assert!(out.contains("2 passed, 1 failed"), "{out}");
    assert!(out.contains("scenario::slow: latency_p50 ratio"), "{out}");
    assert_eq!(
        names_and_verdicts(&root.join("merged.json")),
        names_and_verdicts(&root.join("whole.json"))
    );
    let junit = std::fs::read_to_string(root.join("junit.xml")).unwrap();
    assert!(
        junit.contains("tests=\"3\" failures=\"1\" errors=\"0\""),
        "{junit}"
    );
    assert!(
        junit.contains("name=\"scenario::slow\">\n      <failure message=\"latency_p50 ratio"),
        "{junit}"
    );
    assert!(root.join("summary.md").is_file() && root.join("report.html").is_file());

    // A part missing: the cases it held are named, and nothing passes.
    let missing = servegate(root, &["merge", "part-1/cases", "beta.json"]);
    let out = text(&missing);
    assert_eq!(missing.status.code(), Some(1), "{out}");
    assert!(
        out.contains("in no part") && out.contains("scenario::slow"),
        "{out}"
    );
    // A part given twice: the case and both parts are named.
    let twice = servegate(
        root,
        &[
            "merge",
            "part-1/cases",
            "alpha.json",
            "beta.json",
            "slow.json",
        ],
    );
    let out = text(&twice);
    assert_eq!(twice.status.code(), Some(1), "{out}");
    assert!(
        out.contains("scenario::alpha is in two parts: part-1/cases and alpha.json"),
        "{out}"
    );
}
