//! Quality suites end to end against the embedded engine: the same engine on
//! both sides passes, a numerically broken candidate fails as DEGRADED with
//! the items that flipped, broken servers give clear errors, and suites
//! without data are listed as ignored.

use std::path::Path;
use std::process::Command;

use servegate::discover::Project;
use servegate::gate::quality::Status;
use servegate::run::suite::{self, SuiteReport};

use crate::common::{self, copy_dir, repo, Sim, BIN};

/// A project with the shipped sample records and two embedded engines.
pub fn project_with(candidate_sim: &str, suite: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        format!(
            "[targets.candidate]\nsim = {candidate_sim}\n\
             [targets.baseline]\nsim = {{ ttft_ms = 1.0, tpot_ms = 1.0 }}\n"
        ),
    )
    .unwrap();
    copy_dir(&repo().join("datasets"), &root.join("datasets"));
    std::fs::create_dir_all(root.join("suites")).unwrap();
    std::fs::write(root.join("suites/q.toml"), suite).unwrap();
    dir
}

pub fn run_suite(root: &Path) -> anyhow::Result<SuiteReport> {
    let project = Project::with_env(root, Vec::new());
    let (_, cases) = project.load_all().pop().expect("one suite file");
    let cases = cases.expect("the suite loads");
    let case = &cases[0];
    assert!(case.ignore_reason.is_none(), "{:?}", case.ignore_reason);
    suite::run_suites(&project, &[case], false, &mut |_| {})
        .pop()
        .unwrap()
}

const HELLASWAG_ARC: &str =
    "tasks = [\"hellaswag\", \"arc_easy\"]\ndata = \"datasets\"\n[gate]\nmax_drop = 0.02\n";

#[test]
fn the_same_engine_on_both_sides_passes() {
    let dir = project_with("{ ttft_ms = 1.0, tpot_ms = 1.0 }", HELLASWAG_ARC);
    let r = run_suite(dir.path()).unwrap();
    assert!(r.passed, "{}", servegate::report::quality::suite_text(&r));
    // acc and acc_norm of both tasks, all unchanged.
    assert_eq!(r.rows.len(), 4);
    for row in &r.rows {
        assert_eq!(row.status, Status::Ok);
        assert_eq!(row.diff, 0.0);
    }
    let hs = &r.candidate.tasks[0];
    assert_eq!(hs.task, "hellaswag");
    // The engine's language model knows the corpus the items were written
    // from: well above chance (0.25).
    let acc_norm = hs.metrics.iter().find(|m| m.name == "acc_norm").unwrap();
    assert!(acc_norm.value > 0.5, "{acc_norm:?}");
    assert!(acc_norm.stderr.unwrap() > 0.0);
    assert!(r.paired.iter().all(|p| p.flipped_items.is_empty()));
    // Requests are deduplicated and the same on both sides.
    assert_eq!(r.candidate.requests, r.baseline.as_ref().unwrap().requests);
}

#[test]
fn a_noisy_candidate_is_degraded_and_its_flips_are_written() {
    let dir = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0, logprob_noise = 8.0 }",
        HELLASWAG_ARC,
    );
    let r = run_suite(dir.path()).unwrap();
    assert!(!r.passed);
    let degraded: Vec<_> = r
        .rows
        .iter()
        .filter(|row| row.status == Status::Degraded)
        .collect();
    assert!(!degraded.is_empty(), "{:?}", r.rows);
    // The task with the most one-sided flips (the noise is seeded, so this is stable).
    let worst = r
        .paired
        .iter()
        .min_by(|a, b| a.paired.p_value.total_cmp(&b.paired.p_value))
        .unwrap();
    let p = &worst.paired;
    assert!(p.baseline_only > p.candidate_only, "{p:?}");
    assert!(p.p_value < 0.05, "{p:?}");
    let items = &worst.flipped_items;
    assert_eq!(items.len(), p.flipped.len());
    let item = items.iter().find(|i| i.baseline_right).unwrap();
    assert_eq!(item.baseline, item.gold);
    assert_ne!(item.candidate, item.gold);
    let message = servegate::report::quality::failure_message(&r);
    assert!(message.contains("DEGRADED"), "{message}");

    // The reports show the verdicts, the chart and the flipped items.
    let quality = servegate::report::quality::task_scores(std::slice::from_ref(&r));
    let mut results: servegate::report::RunResults = serde_json::from_value(serde_json::json!({
        "servegate_version": "", "started_at": "", "finished_at": "", "passed": false, "cases": []
    }))
    .unwrap();
    results.suites = vec![r.clone()];
    results.quality = quality;
    assert_eq!(results.counts(), (0, 1, 0, 0));
    let html = servegate::report::html::render(std::slice::from_ref(&results));
    assert!(html.contains("DEGRADED"));
    assert!(html.contains("items answered differently"));
    assert!(!html.contains("no quality results"));
    let md = servegate::report::markdown::run_summary(&results);
    assert!(md.contains("| arc_easy | acc |"), "{md}");
    // Results round-trip through JSON, flipped items included.
    let text = serde_json::to_string(&results).unwrap();
    let back: servegate::report::RunResults = serde_json::from_str(&text).unwrap();
    assert_eq!(
        back.suites[0].paired[0].flipped_items.len(),
        r.paired[0].flipped_items.len()
    );
}

#[test]
fn expected_values_gate_without_a_baseline() {
    // A noisy candidate cannot keep the sample's perfect arc_easy score.
    let dir = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0, logprob_noise = 5.0, seed = 1 }",
        "tasks = [\"arc_easy\"]\ndata = \"datasets\"\n[gate]\nexpected = { arc_easy = 1.0 }\nrtol = 0.001\n",
    );
    let r = run_suite(dir.path()).unwrap();
    assert!(r.baseline.is_none());
    assert_eq!(r.rows.len(), 1);
    assert_eq!(r.rows[0].reference_kind, "expected");
    // Below 1.0 × 0.999.
    assert_eq!(r.rows[0].status, Status::Degraded);
    assert!(!r.passed);
}

#[test]
fn every_task_format_runs_on_the_shipped_data() {
    let suite = std::fs::read_to_string(repo().join("suites/standard.toml")).unwrap();
    let dir = project_with("{ ttft_ms = 1.0, tpot_ms = 1.0 }", &suite);
    let r = run_suite(dir.path()).unwrap();
    assert!(r.passed, "{}", servegate::report::quality::suite_text(&r));
    let names: Vec<&str> = r.candidate.tasks.iter().map(|t| t.task.as_str()).collect();
    assert_eq!(
        names,
        [
            "hellaswag",
            "arc_easy",
            "arc_challenge",
            "truthfulqa_mc2",
            "mmlu",
            "faq"
        ]
    );
    let mmlu = r.candidate.tasks.iter().find(|t| t.task == "mmlu").unwrap();
    assert!(mmlu.subtasks.len() >= 3, "{:?}", mmlu.subtasks);
    for t in &r.candidate.tasks {
        for m in &t.metrics {
            assert!((0.0..=1.0).contains(&m.value), "{} {m:?}", t.task);
        }
    }
}

/// Two examples per question from the shipped `*_train.jsonl` and
/// `mmlu_dev.jsonl`: the suite runs and passes on identical engines; without
/// hellaswag's train file the suite is listed as ignored, saying which file.
#[test]
fn few_shot_suites_run_and_name_a_missing_few_shot_file() {
    let suite =
        "tasks = [\"hellaswag\", \"arc_easy\", \"arc_challenge\", \"truthfulqa_mc2\", \"mmlu\"]\n\
                 data = \"datasets\"\nnum_fewshot = 2\n[gate]\nmax_drop = 0.02\n";
    let dir = project_with("{ ttft_ms = 1.0, tpot_ms = 1.0 }", suite);
    let r = run_suite(dir.path()).unwrap();
    assert!(r.passed, "{}", servegate::report::quality::suite_text(&r));
    assert_eq!(r.candidate.tasks.len(), 5);
    // Every item of both sides is on record, with its few-shot context.
    let samples = r.samples.as_ref().expect("a samples file");
    let lines: Vec<servegate::results::SampleLine> = std::fs::read_to_string(samples)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let items: usize = r.tasks.iter().map(|t| t.items).sum();
    assert_eq!(lines.len(), 2 * items, "{}", samples.display());
    assert_eq!(lines.iter().filter(|l| l.side == "baseline").count(), items);
    let first = lines.iter().find(|l| l.item.task == "arc_easy").unwrap();
    assert_eq!(first.item.doc_id, 0);
    assert_eq!(
        first.item.context.matches("Question: ").count(),
        3,
        "{first:?}"
    );
    let servegate::results::ItemScores::Choice {
        loglikelihoods,
        continuations,
        acc,
        ..
    } = &first.item.scores
    else {
        panic!("a multiple-choice item: {first:?}")
    };
    assert_eq!(loglikelihoods.len(), continuations.len());
    assert!(*acc == 1.0 || *acc == 0.0);

    std::fs::remove_file(dir.path().join("datasets/hellaswag_train.jsonl")).unwrap();
    let out = Command::new(BIN)
        .args(["--root"])
        .arg(dir.path())
        .args(["list", "--reasons"])
        .env_remove("SERVEGATE_DATA_DIR")
        .env("HF_HUB_CACHE", dir.path().join("no-cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("ignored"), "{text}");
    assert!(text.contains("few-shot examples"), "{text}");
    assert!(text.contains("hellaswag_train"), "{text}");
}

#[test]
fn retries_ride_out_a_flaky_server() {
    let clean = project_with("{ ttft_ms = 1.0, tpot_ms = 1.0 }", HELLASWAG_ARC);
    let flaky = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0, error_rate = 0.2, seed = 7 }",
        &format!("{HELLASWAG_ARC}[scoring]\nmax_retries = 8\n"),
    );
    let a = run_suite(clean.path()).unwrap();
    let b = run_suite(flaky.path()).unwrap();
    assert!(b.passed);
    let values = |r: &SuiteReport| -> Vec<f64> {
        r.candidate
            .tasks
            .iter()
            .flat_map(|t| t.metrics.iter().map(|m| m.value))
            .collect()
    };
    assert_eq!(values(&a), values(&b));
}

#[test]
fn suites_without_their_data_are_listed_as_ignored() {
    let dir = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0 }",
        "tasks = [\"hellaswag\"]\nlimit = 10\n",
    );
    let out = Command::new(BIN)
        .args(["--root"])
        .arg(dir.path())
        .args(["list", "--reasons"])
        .env_remove("SERVEGATE_DATA_DIR")
        .env("HF_HUB_CACHE", dir.path().join("no-cache"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("suite::q"), "{text}");
    assert!(text.contains("ignored"), "{text}");
    assert!(text.contains("hellaswag"), "{text}");
    // The data directory makes it runnable.
    let out = Command::new(BIN)
        .args(["--root"])
        .arg(dir.path())
        .args(["list", "--reasons"])
        .env("SERVEGATE_DATA_DIR", dir.path().join("datasets"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains("ignored"), "{text}");
}

#[test]
fn gate_keys_of_the_wrong_kind_are_located() {
    let dir = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0 }",
        "tasks = [\"hellaswag\"]\ndata = \"datasets\"\n[gate]\nthroughput = { min_ratio = 0.9 }\n",
    );
    let out = Command::new(BIN)
        .args(["--root"])
        .arg(dir.path())
        .arg("check")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("q.toml:4"), "{text}");
    assert!(text.contains("gate.throughput"), "{text}");
}

/// A standalone engine for the CLI tests (1 ms a token) with `extra` flags;
/// killed when dropped.
fn standalone_engine(extra: &[&str]) -> Sim {
    let mut args = vec!["--ttft-ms", "1", "--itl-ms", "1"];
    args.extend_from_slice(extra);
    Sim::start(&args)
}

fn eval_cli(args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new(BIN)
        .arg("eval")
        .args(args)
        .args(["--data-dir"])
        .arg(repo().join("datasets"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn eval_command_gates_a_candidate_against_a_baseline() {
    let good = standalone_engine(&[]);
    let noisy = standalone_engine(&["--logprob-noise", "4.0"]);
    let out_dir = tempfile::tempdir().unwrap();
    let output = out_dir.path().join("eval.json");
    let (code, text) = eval_cli(&[
        "--url",
        &good.url,
        "--baseline-url",
        &good.url,
        "--tasks",
        "hellaswag,arc_easy",
        "--limit",
        "20",
        "--output",
        output.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("OK"), "{text}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    assert_eq!(saved["tasks"][0]["items"], 20);
    // The items beside the results: 40 per side.
    let samples = out_dir.path().join("eval.samples.jsonl");
    assert_eq!(saved["samples"], samples.to_str().unwrap());
    let lines = std::fs::read_to_string(&samples).unwrap();
    assert_eq!(lines.lines().count(), 80, "{lines}");
    assert!(text.contains("samples: "), "{text}");
    let (code, text) = eval_cli(&[
        "--url",
        &noisy.url,
        "--baseline-url",
        &good.url,
        "--suite",
        "quick",
    ]);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("DEGRADED"), "{text}");
    assert!(text.contains("McNemar"), "{text}");
}

#[test]
fn eval_sends_generative_tasks_to_the_endpoint_asked_for() {
    let engine = standalone_engine(&[]);
    let out_dir = tempfile::tempdir().unwrap();
    // Each line of the samples file: the messages sent, when there were any.
    let sent = |endpoint: &str| -> Vec<serde_json::Value> {
        let output = out_dir.path().join(format!("{endpoint}.json"));
        let (code, text) = eval_cli(&[
            "--url",
            &engine.url,
            "--tasks",
            "gsm8k",
            "--limit",
            "3",
            "--num-fewshot",
            "2",
            "--endpoint",
            endpoint,
            "--output",
            output.to_str().unwrap(),
        ]);
        assert_eq!(code, Some(0), "{text}");
        std::fs::read_to_string(out_dir.path().join(format!("{endpoint}.samples.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["messages"].clone())
            .collect()
    };
    let chat = sent("chat");
    assert_eq!(chat.len(), 3);
    for messages in &chat {
        // Two worked examples as their own turns, then the question.
        let roles: Vec<&str> = messages
            .as_array()
            .expect("chat items record their messages")
            .iter()
            .map(|m| m["role"].as_str().unwrap())
            .collect();
        assert_eq!(roles, ["user", "assistant", "user", "assistant", "user"]);
    }
    let completions = sent("completions");
    assert_eq!(completions.len(), 3);
    assert!(completions.iter().all(|m| m.is_null()), "{completions:?}");
    let (code, text) = eval_cli(&["--url", &engine.url, "--endpoint", "grpc"]);
    assert_eq!(code, Some(2), "{text}");
    assert!(text.contains("--endpoint"), "{text}");
}

#[test]
fn eval_inside_a_project_reads_its_data_folder() {
    let engine = standalone_engine(&[]);
    let project = tempfile::tempdir().unwrap();
    let root = project.path();
    std::fs::write(root.join("servegate.toml"), "").unwrap();
    let nested = root.join("sub");
    std::fs::create_dir_all(&nested).unwrap();
    let eval_in = |dir: &Path| {
        let out = Command::new(BIN)
            .current_dir(dir)
            // An empty Hugging Face cache, so only the project's folders count.
            .env("HF_HUB_CACHE", root.join("hf-cache"))
            .env_remove("SERVEGATE_DATA_DIR")
            .env_remove("SERVEGATE_ROOT")
            .args([
                "eval",
                "--url",
                &engine.url,
                "--tasks",
                "arc_easy",
                "--limit",
                "5",
            ])
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code(), text)
    };
    // No datasets/ yet: nothing to read, and the message says where it looked.
    let (code, text) = eval_in(&nested);
    assert_eq!(code, Some(1), "{text}");
    assert!(text.contains("no records for arc_easy"), "{text}");
    // The project's datasets/ folder, found from a subfolder.
    std::fs::create_dir_all(root.join("datasets")).unwrap();
    std::fs::copy(
        repo().join("datasets/arc_easy.jsonl"),
        root.join("datasets/arc_easy.jsonl"),
    )
    .unwrap();
    let (code, text) = eval_in(&nested);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("5 items from"), "{text}");
    assert!(text.contains("datasets/arc_easy.jsonl"), "{text}");
    // The project's `data_dir` key wins over datasets/.
    std::fs::rename(root.join("datasets"), root.join("records")).unwrap();
    std::fs::create_dir_all(root.join("datasets")).unwrap();
    std::fs::write(root.join("servegate.toml"), "data_dir = \"records\"\n").unwrap();
    let (code, text) = eval_in(&nested);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("records/arc_easy.jsonl"), "{text}");
}

#[test]
fn a_server_without_prompt_logprobs_is_an_error_not_chance() {
    // A server that answers completions but never echoes the prompt.
    let rt = common::rt();
    let url = rt.block_on(async {
        use axum::{routing::post, Json, Router};
        let app = Router::new()
            .route(
                "/v1/completions",
                post(|| async {
                    Json(serde_json::json!({"choices": [{"index": 0, "text": "x",
                        "logprobs": {"tokens": ["x"], "token_logprobs": [-0.5], "top_logprobs": [{"x": -0.5}]}}]}))
                }),
            )
            .route(
                "/v1/models",
                axum::routing::get(|| async {
                    Json(serde_json::json!({"data": [{"id": "m"}]}))
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}")
    });
    let tokenizer = repo().join("src/sim/data/tokenizer.json");
    let spec = suite::AdhocEval {
        url,
        model: None,
        baseline_url: None,
        baseline_model: None,
        tasks: vec!["arc_easy".into()],
        limit: Some(3),
        num_fewshot: None,
        tolerance: 0.02,
        two_sided: false,
        tokenizer: Some(tokenizer),
        data_dir: Some(repo().join("datasets")),
        concurrency: 2,
        endpoint: Default::default(),
        api_key: None,
        timeout_s: 120.0,
    };
    let e = rt.block_on(suite::adhoc(&spec)).unwrap_err();
    assert!(e.contains("ignores `echo`"), "{e}");
}
