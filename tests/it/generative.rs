//! Generative suites end to end against the embedded engine: gsm8k with
//! both of lm-eval's answer filters gated, every item on record, answers
//! that flipped shown, recorded values with a relative tolerance, the chat
//! endpoint, and a user generation task with its own filters.

use servegate::discover::Project;
use servegate::gate::quality::Status;
use servegate::results::{ItemScores, SampleLine};

use crate::quality::{project_with, run_suite};

const CLEAN: &str = "{ ttft_ms = 1.0, tpot_ms = 1.0 }";

fn samples(r: &servegate::run::suite::SuiteReport) -> Vec<SampleLine> {
    let path = r.samples.as_ref().expect("a samples file");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn gsm8k_gates_both_filters_and_records_every_generation() {
    let suite = "tasks = [\"gsm8k\"]\ndata = \"datasets\"\nlimit = 12\n[gate]\nmax_drop = 0.05\n";
    let dir = project_with(CLEAN, suite);
    let r = run_suite(dir.path()).unwrap();
    let text = servegate::report::quality::suite_text(&r);
    assert!(r.passed, "{text}");
    let metrics: Vec<&str> = r.rows.iter().map(|row| row.metric.as_str()).collect();
    assert_eq!(
        metrics,
        ["exact_match,strict-match", "exact_match,flexible-extract"]
    );
    assert!(r.rows.iter().all(|row| row.status == Status::Ok));
    assert_eq!(r.candidate.tasks[0].items, 12);
    let lines = samples(&r);
    assert_eq!(lines.len(), 24);
    let first = &lines[0];
    // lm-eval's default for gsm8k: five worked examples, then the question.
    assert_eq!(first.item.context.matches("Question: ").count(), 6);
    assert!(first.item.context.ends_with("\nAnswer:"));
    let ItemScores::Generated {
        generated,
        reference,
        filtered,
        exact_match,
        messages,
    } = &first.item.scores
    else {
        panic!("a generated item: {first:?}")
    };
    assert!(!generated.is_empty());
    assert!(
        !generated.contains("Question:"),
        "stops before the next question: {generated:?}"
    );
    assert!(reference.contains("#### "));
    assert!(messages.is_none());
    assert_eq!(
        filtered.keys().collect::<Vec<_>>(),
        ["flexible-extract", "strict-match"]
    );
    assert!(exact_match.values().all(|v| *v == 0.0 || *v == 1.0));
}

#[test]
fn a_candidate_that_answers_differently_shows_the_answers_that_flipped() {
    let suite = "tasks = [\"gsm8k\"]\ndata = \"datasets\"\nlimit = 10\nnum_fewshot = 2\n\
                 [gate]\nmax_drop = 0.05\n";
    // Noise on the log-probabilities changes what greedy decoding picks.
    let dir = project_with(
        "{ ttft_ms = 1.0, tpot_ms = 1.0, logprob_noise = 3.0 }",
        suite,
    );
    let r = run_suite(dir.path()).unwrap();
    let paired = &r.paired[0];
    assert_eq!(paired.paired.task, "gsm8k");
    assert!(!paired.flipped_items.is_empty(), "{paired:?}");
    let item = &paired.flipped_items[0];
    assert_ne!(item.candidate, item.baseline, "{item:?}");
    assert!(item.question.ends_with("Answer:"), "{item:?}");
    assert!(item.gold.contains("#### "), "{item:?}");
    // Under each filter: strict-match | flexible-extract.
    assert_eq!(item.candidate.matches(" | ").count(), 1, "{item:?}");
}

#[test]
fn recorded_values_gate_each_filter_with_a_relative_tolerance() {
    // vLLM's rule: pass when measured >= expected × (1 − rtol). The engine
    // is no arithmetician: far below 0.6 on both filters.
    let suite = "tasks = [\"gsm8k\"]\ndata = \"datasets\"\nlimit = 8\n\
                 [gate]\nrtol = 0.1\n\
                 expected = { gsm8k = 0.6, \"gsm8k.exact_match,flexible-extract\" = 0.6 }\n";
    let dir = project_with(CLEAN, suite);
    let r = run_suite(dir.path()).unwrap();
    assert!(!r.passed);
    assert!(r.baseline.is_none(), "recorded values replace the baseline");
    assert_eq!(r.rows.len(), 2);
    for row in &r.rows {
        assert_eq!(row.status, Status::Degraded, "{row:?}");
        assert_eq!(row.reference_kind, "expected");
        assert_eq!(row.limit, ">= expected × (1 − 0.1)");
    }
}

#[test]
fn a_user_generation_task_through_the_chat_endpoint() {
    let suite = r#"
tasks = ["sums"]
data = "datasets"
endpoint = "chat"
num_fewshot = 1

[gen_tasks.sums]
data = "sums.jsonl"
template = "Q: {q}\nA:"
target = "{a}"
stop = ["\n"]
max_tokens = 12

[[gen_tasks.sums.filters]]
name = "number"
regex = '(\d+)'
group_select = -1

[gen_tasks.sums.exact_match]
ignore_case = true

[gate]
max_drop = 0.0
"#;
    let dir = project_with(CLEAN, suite);
    let records = "{\"q\": \"What is 2 and 3?\", \"a\": \"5\"}\n\
                   {\"q\": \"What is 4 and 4?\", \"a\": \"8\"}\n\
                   {\"q\": \"What is 1 and 6?\", \"a\": \"7\"}\n";
    std::fs::write(dir.path().join("sums.jsonl"), records).unwrap();
    std::fs::write(
        dir.path().join("datasets/sums_dev.jsonl"),
        "{\"q\": \"What is 1 and 1?\", \"a\": \"2\"}\n",
    )
    .unwrap();
    let r = run_suite(dir.path()).unwrap();
    assert!(r.passed, "{}", servegate::report::quality::suite_text(&r));
    assert_eq!(r.rows[0].metric, "exact_match,number");
    let lines = samples(&r);
    let ItemScores::Generated {
        messages,
        generated,
        filtered,
        ..
    } = &lines[0].item.scores
    else {
        panic!("a generated item")
    };
    // lm-eval's default with a chat template: the example as its own turns.
    let messages = messages.as_ref().expect("the chat messages sent");
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    assert_eq!(messages[1]["content"], "2");
    assert_eq!(messages[2]["content"], "Q: What is 2 and 3?\nA:");
    assert!(
        !generated.contains('\n'),
        "stopped at the newline: {generated:?}"
    );
    let answer = &filtered["number"];
    assert!(
        answer == "[invalid]" || answer.chars().all(|c| c.is_ascii_digit()),
        "{answer:?}"
    );
}

#[test]
fn a_broken_filter_is_a_config_error_naming_its_key() {
    let suite = "tasks = [\"sums\"]\n[gen_tasks.sums]\ntemplate = \"{q}\"\ntarget = \"{a}\"\n\
                 [[gen_tasks.sums.filters]]\nname = \"n\"\nregex = \"(\\\\d+\"\n[gate]\nmax_drop = 0.0\n";
    let dir = project_with(CLEAN, suite);
    let p = Project::with_env(dir.path(), Vec::new());
    let (_, cases) = p.load_all().pop().unwrap();
    let e = cases.expect_err("a regex that does not compile");
    assert_eq!(
        e.key.as_deref(),
        Some("gen_tasks.sums.filters.0.regex"),
        "{e}"
    );
    assert!(e.to_string().contains("q.toml"), "{e}");
}

/// Text prompts (lm-eval's `tokenized_requests=False`) score exactly as
/// token-id prompts on a server that tokenises as the local tokenizer does,
/// and the results say how prompts were sent.
#[test]
fn text_prompts_score_as_token_prompts_do() {
    let suite = |format: &str| {
        format!(
            "tasks = [\"arc_easy\", \"truthfulqa_mc2\", \"gsm8k\"]\ndata = \"datasets\"\nlimit = 6\n\
             num_fewshot = 1\nprompt_format = \"{format}\"\n[gate]\nmax_drop = 0.0\n"
        )
    };
    let noisy = "{ ttft_ms = 1.0, tpot_ms = 1.0, logprob_noise = 0.5 }";
    let tokens = run_suite(project_with(noisy, &suite("tokens")).path()).unwrap();
    let text = run_suite(project_with(noisy, &suite("text")).path()).unwrap();
    let values = |r: &servegate::run::suite::SuiteReport| -> Vec<(String, f64)> {
        r.candidate
            .tasks
            .iter()
            .flat_map(|t| {
                t.metrics
                    .iter()
                    .map(|m| (format!("{} {}", t.task, m.name), m.value))
            })
            .collect()
    };
    assert_eq!(values(&tokens), values(&text));
    assert_eq!(
        text.candidate.prompt_format.as_deref(),
        Some("text (prompt_format)")
    );
    // Auto on the embedded engine: it takes token ids, the probe finds.
    let auto = run_suite(project_with(CLEAN, &suite("auto")).path()).unwrap();
    let how = auto.candidate.prompt_format.clone().unwrap();
    assert!(
        how.starts_with("token ids: the probe found them taken"),
        "{how}"
    );
}
