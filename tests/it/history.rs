//! `servegate history` over real runs of the embedded engine: a candidate
//! slowed from run 5 on is named as a regression since run 5 (with the
//! commits around it), and the command refuses to pass what it could not
//! judge: no runs, too few runs, files that are not runs.

use std::path::Path;
use std::process::{Command, Output};

use crate::common::{add_prompts_and_scenarios, text, BIN};

fn servegate(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("GITHUB_STEP_SUMMARY")
        .env_remove("SERVEGATE_TARGETS__CANDIDATE__SIM__SLOWDOWN")
        .env("SERVEGATE_NO_PROGRESS", "1")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("servegate runs")
}

/// One quick scenario on two embedded engines, gated on latency and
/// throughput ratios and on the candidate's error rate.
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        "model = \"m\"\n\
         [targets.candidate]\nsim = { ttft_ms = 20.0, tpot_ms = 5.0 }\n\
         [targets.baseline]\nsim = { ttft_ms = 20.0, tpot_ms = 5.0 }\n\
         [workload]\nmax_tokens = 8\nconcurrency = 2\nnum_requests = 8\nwarmup = 1\n",
    )
    .unwrap();
    add_prompts_and_scenarios(root);
    std::fs::write(
        root.join("scenarios/tiny.toml"),
        "[gate]\nlatency_p50 = { max_ratio = 1.5 }\nthroughput_total = { min_ratio = 0.5 }\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    dir
}

fn git(root: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .current_dir(root)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// Ten nightly runs, each at its own commit when git is at hand; the
/// candidate is 30% slower from run 5 on.
#[test]
fn a_slowdown_from_run_5_is_named_as_a_regression_since_run_5() {
    let dir = project();
    let root = dir.path();
    let has_git = git(root, &["init", "-q"]);
    let mut commits = Vec::new();
    for night in 1..=10 {
        if has_git {
            assert!(git(
                root,
                &[
                    "commit",
                    "-q",
                    "--allow-empty",
                    "-m",
                    &format!("night {night}")
                ]
            ));
            let head = Command::new("git")
                .current_dir(root)
                .args(["rev-parse", "HEAD"])
                .output()
                .unwrap();
            commits.push(String::from_utf8_lossy(&head.stdout).trim().to_string());
        }
        let slowdown = if night >= 5 { "1.3" } else { "1.0" };
        let out = servegate(
            root,
            &["run", "--output", &format!("results/run-{night:02}.json")],
            &[("SERVEGATE_TARGETS__CANDIDATE__SIM__SLOWDOWN", slowdown)],
        );
        assert_eq!(out.status.code(), Some(0), "night {night}: {}", text(&out));
    }
    let out = servegate(
        root,
        &[
            "history",
            "results",
            "--fail-on-regression",
            "--json",
            "history.json",
            "--markdown",
            "history.md",
        ],
        &[],
    );
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(1), "{shown}");
    assert!(shown.contains("History: 10 runs"), "{shown}");
    assert!(
        shown.contains("scenario::tiny latency_p50 (ratio): threshold since run 5"),
        "{shown}"
    );
    let report = json(&root.join("history.json"));
    let regressions = report["regressions"].as_array().unwrap();
    let latency = regressions
        .iter()
        .find(|r| r["metric"] == "latency_p50")
        .expect("latency is named");
    assert_eq!(latency["case"], "scenario::tiny", "{latency}");
    assert_eq!(latency["since_run"], 5, "{latency}");
    if has_git {
        // The last commit measured fast and the first measured slow.
        assert_eq!(latency["commit_before"], commits[3].as_str(), "{latency}");
        assert_eq!(latency["commit_after"], commits[4].as_str(), "{latency}");
    }
    // Throughput (a rate over the whole phase, noisier on a busy machine
    // than a median) falls too; it is named from run 5 or soon after.
    let throughput = regressions
        .iter()
        .find(|r| r["metric"] == "throughput_total")
        .unwrap_or_else(|| panic!("throughput is named: {report}"));
    let since = throughput["since_run"].as_u64().unwrap();
    assert!((5..=7).contains(&since), "{throughput}");
    let change = latency["change"].as_f64().unwrap();
    assert!((0.2..0.4).contains(&change), "about +30%: {latency}");
    // The error rate (an absolute limit) is followed as the candidate's value, and it held.
    assert!(!regressions.iter().any(|r| r["metric"] == "error_rate"));
    let md = std::fs::read_to_string(root.join("history.md")).unwrap();
    assert!(
        md.starts_with("## servegate history: ❌ regression in the latest runs"),
        "{md}"
    );
    if has_git {
        let short: String = commits[3].chars().take(10).collect();
        assert!(shown.contains(&format!("commits {short}..")), "{shown}");
    }

    // The same runs committed to a branch that collects results, read with
    // --git-ref after they are gone from the working tree.
    if has_git {
        assert!(git(root, &["checkout", "-q", "-b", "nightly-results"]));
        assert!(git(root, &["add", "results"]));
        assert!(git(root, &["commit", "-q", "-m", "ten nights"]));
        assert!(git(root, &["checkout", "-q", "-"]));
        assert!(git(root, &["clean", "-qfdx", "results"]));
        assert!(!root.join("results").exists());
        let out = servegate(
            root,
            &[
                "history",
                "results",
                "--git-ref",
                "nightly-results",
                "--fail-on-regression",
            ],
            &[],
        );
        let from_git = text(&out);
        assert_eq!(out.status.code(), Some(1), "{from_git}");
        assert!(from_git.contains("History: 10 runs"), "{from_git}");
        assert!(
            from_git.contains("scenario::tiny latency_p50 (ratio): threshold since run 5"),
            "{from_git}"
        );
        let out = servegate(
            root,
            &["history", "nowhere", "--git-ref", "nightly-results"],
            &[],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(
            text(&out).contains("nowhere: nothing at nightly-results"),
            "{}",
            text(&out)
        );
        assert!(git(
            root,
            &["checkout", "-q", "nightly-results", "--", "results"]
        ));
    }

    // Four runs before and six after: the change point test needs a looser
    // significance than the default to place the split (the smallest
    // p-value four runs allow is 2 / C(10, 4) ≈ 0.01), and places it at run 5.
    let out = servegate(
        root,
        &[
            "history",
            "results",
            "--significance",
            "0.05",
            "--json",
            "loose.json",
        ],
        &[],
    );
    assert_eq!(
        out.status.code(),
        Some(0),
        "without --fail-on-regression: {}",
        text(&out)
    );
    let loose = json(&root.join("loose.json"));
    let cps = loose["change_points"].as_array().unwrap();
    let latency = cps
        .iter()
        .find(|c| c["metric"] == "latency_p50")
        .unwrap_or_else(|| panic!("a latency change point: {loose}"));
    assert_eq!(latency["run"], 5, "{latency}");
    assert_eq!(latency["direction"], "regression", "{latency}");
    assert_eq!(latency["reaches_latest"], true, "{latency}");
    assert!(latency["p_value"].as_f64().unwrap() <= 0.05, "{latency}");
    let [lo, hi] = [0, 1].map(|i| latency["interval"][i].as_f64().unwrap());
    assert!(lo > 0.1 && hi < 0.5 && lo < hi, "{latency}");
    assert!(
        loose["regressions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["method"] == "change point" && r["since_run"] == 5),
        "{loose}"
    );
}

/// No runs, too few, files that are not runs: exit 2 and say why. Steady
/// runs pass; an interrupted run is skipped with a note.
#[test]
fn history_passes_only_what_it_could_judge() {
    let dir = project();
    let root = dir.path();
    std::fs::create_dir_all(root.join("empty")).unwrap();
    let out = servegate(root, &["history", "empty", "--fail-on-regression"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no complete run to analyse in empty"),
        "{}",
        text(&out)
    );

    let run = servegate(root, &["run", "--output", "one.json"], &[]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let one = json(&root.join("one.json"));
    // Copies of the one run, a day apart: a steady history.
    std::fs::create_dir_all(root.join("steady")).unwrap();
    let copy = |i: usize, complete: bool| {
        let mut r = one.clone();
        r["started_at"] = format!("2025-03-{:02}T02:00:00+00:00", i + 1).into();
        r["complete"] = complete.into();
        std::fs::write(
            root.join(format!("steady/run-{i:02}.json")),
            serde_json::to_string(&r).unwrap(),
        )
        .unwrap();
    };
    for i in 0..5 {
        copy(i, true);
    }
    copy(5, false);
    let out = servegate(root, &["history", "steady", "--fail-on-regression"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(2), "{shown}");
    assert!(
        shown.contains("5 complete runs cannot show a regression"),
        "{shown}"
    );
    assert!(shown.contains("at least 6 runs are needed"), "{shown}");
    assert!(shown.contains("run-05.json: incomplete"), "{shown}");

    copy(6, true);
    let out = servegate(root, &["history", "steady", "--fail-on-regression"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("History: 6 runs"), "{shown}");
    assert!(
        shown.contains("skipped: steady/run-05.json: incomplete"),
        "{shown}"
    );
    assert!(shown.contains("No change point in 3 series."), "{shown}");
    assert!(
        shown.contains("No regression in the latest runs."),
        "{shown}"
    );

    // A case's own report is not a run.
    std::fs::write(
        root.join("case.json"),
        serde_json::to_string(&one["cases"][0]).unwrap(),
    )
    .unwrap();
    let out = servegate(root, &["history", "steady", "case.json"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("case.json: one case's report, not a run"),
        "{}",
        text(&out)
    );
    // Nor is a file that is not there, or bad thresholds.
    let out = servegate(root, &["history", "nowhere"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let out = servegate(root, &["history", "steady", "--permutations", "20"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("use at least 99"), "{}", text(&out));

    // The benchmark runs end to end on a small shape.
    let out = servegate(root, &["history", "--bench-synthetic", "12x2"], &[]);
    let shown = text(&out);
    assert_eq!(out.status.code(), Some(0), "{shown}");
    assert!(shown.contains("read + analysis:"), "{shown}");
}
