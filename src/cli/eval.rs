//! `eval`: ad-hoc quality evaluation of a server by URL.

use std::path::PathBuf;

use servegate::files;
use servegate::report;
use servegate::run::suite::TaskPreset;

use super::{project_root, runtime, CliError, EndpointArg};

#[derive(clap::Args)]
pub(super) struct EvalArgs {
    /// The server to evaluate (its base URL, e.g. http://127.0.0.1:8000).
    #[arg(long)]
    url: String,
    /// Model name; the server's first model when omitted.
    #[arg(long)]
    model: Option<String>,
    /// Comma-separated tasks (hellaswag, arc_easy, arc_challenge, truthfulqa_mc2, mmlu, gsm8k).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    tasks: Vec<String>,
    /// A task list of the old script: quick (hellaswag), standard (+ arc_easy,
    /// truthfulqa_mc2), full (+ mmlu). Used when --tasks is not given.
    #[arg(long, value_enum)]
    suite: Option<SuiteArg>,
    /// First N documents of each task (per subject for mmlu).
    #[arg(long)]
    limit: Option<usize>,
    /// Few-shot examples per question, drawn as lm-eval draws them (truthfulqa_mc2 stays 0-shot).
    #[arg(long)]
    num_fewshot: Option<u32>,
    /// The reference server; without it the scores are only reported.
    #[arg(long)]
    baseline_url: Option<String>,
    /// The baseline's model name (default: the candidate's).
    #[arg(long)]
    baseline_model: Option<String>,
    /// Largest allowed accuracy drop below the baseline.
    #[arg(long, default_value_t = 0.02)]
    tolerance: f64,
    /// Fail on a change beyond the tolerance either way.
    #[arg(long)]
    two_sided: bool,
    /// A tokenizer.json (default: the Hugging Face cache for the model, else the server's /tokenize).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// A folder of <task>.jsonl or <task>.parquet records (default, inside a
    /// project: its `data_dir`, else its `datasets/` folder; then the Hugging Face cache).
    #[arg(long, env = "SERVEGATE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The API generative tasks (gsm8k) drive: /v1/completions, or
    /// /v1/chat/completions with each few-shot example as its own turn.
    /// Multiple-choice tasks always score through /v1/completions.
    #[arg(long, value_enum, default_value = "completions")]
    endpoint: EndpointArg,
    /// Requests in flight at once, per server.
    #[arg(long, default_value_t = 8)]
    concurrency: u32,
    /// Write the report here (JSON, atomically).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Environment variable holding an API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Seconds one scoring request may take, answer included (`[scoring] timeout_s`).
    #[arg(long, env = "SERVEGATE_SCORING_TIMEOUT", default_value_t = 120.0)]
    timeout: f64,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SuiteArg {
    Quick,
    Standard,
    Full,
}

impl From<SuiteArg> for TaskPreset {
    fn from(suite: SuiteArg) -> Self {
        match suite {
            SuiteArg::Quick => TaskPreset::Quick,
            SuiteArg::Standard => TaskPreset::Standard,
            SuiteArg::Full => TaskPreset::Full,
        }
    }
}

/// The data folder `servegate eval` uses without `--data-dir`: inside a
/// project, its `data_dir`, else its `datasets/` folder when there is one, so
/// that the project's own records are found as its suites find them.
fn eval_data_dir(root: Option<PathBuf>) -> Option<PathBuf> {
    let root = project_root(root)?;
    match servegate::config::load_project(&root, &[]) {
        Ok(c) if c.data_dir.is_some() => c.data_dir.map(|d| servegate::config::resolve(&root, &d)),
        _ => Some(root.join("datasets")).filter(|d| d.is_dir()),
    }
}

/// `servegate eval`: one server scored, or a candidate gated against a baseline.
pub(super) fn eval(args: &EvalArgs, root: Option<PathBuf>) -> Result<(), CliError> {
    {
        use servegate::config::limits::{count, number, FRACTION, MAX_CONCURRENCY};
        let checks = [
            (
                "--concurrency",
                count(args.concurrency.into(), 1, MAX_CONCURRENCY).map(drop),
            ),
            ("--tolerance", number(args.tolerance, FRACTION).map(drop)),
        ];
        if let Some((flag, Err(e))) = checks.into_iter().find(|(_, r)| r.is_err()) {
            return Err(CliError::Usage(format!("{flag}: {e}")));
        }
    }
    let tasks: Vec<String> = if !args.tasks.is_empty() {
        args.tasks.clone()
    } else {
        args.suite
            .map_or(TaskPreset::Quick, TaskPreset::from)
            .tasks()
    };
    let api_key = args
        .api_key_env
        .as_ref()
        .and_then(|name| std::env::var(name).ok());
    let spec = servegate::run::suite::AdhocEval {
        url: args.url.clone(),
        model: args.model.clone(),
        baseline_url: args.baseline_url.clone(),
        baseline_model: args.baseline_model.clone(),
        tasks,
        limit: args.limit,
        num_fewshot: args.num_fewshot,
        tolerance: args.tolerance,
        two_sided: args.two_sided,
        tokenizer: args.tokenizer.clone(),
        data_dir: args.data_dir.clone().or_else(|| eval_data_dir(root)),
        concurrency: args.concurrency,
        endpoint: args.endpoint.into(),
        api_key,
        timeout_s: args.timeout,
    };
    let mut report = runtime()
        .block_on(servegate::run::suite::adhoc(&spec))
        .map_err(CliError::Failed)?;
    print!("{}", report::quality::suite_text(&report));
    if report.baseline.is_none() {
        for t in &report.candidate.tasks {
            for m in &t.metrics {
                println!(
                    "{} {}: {:.4}{}",
                    t.task,
                    m.name,
                    m.value,
                    m.stderr.map(|s| format!(" ± {s:.4}")).unwrap_or_default()
                );
            }
        }
    }
    if let Some(path) = &args.output {
        // The items go beside the results: out.json → out.samples.jsonl.
        let samples = path.with_extension("samples.jsonl");
        files::write_atomic(&samples, report.sample_lines().as_bytes()).map_err(|e| {
            CliError::Failed(format!("could not write {}: {e:#}", samples.display()))
        })?;
        report.samples = Some(samples.clone());
        println!("samples: {}", samples.display());
        files::write_json_atomic(path, &report)
            .map_err(|e| CliError::Failed(format!("could not write {}: {e:#}", path.display())))?;
        println!("results: {}", path.display());
    }
    let unscored = report.candidate.unscored();
    if !unscored.is_empty() {
        eprintln!(
            "error: nothing was scored for {} (no item, or no value)",
            unscored.join(", ")
        );
    }
    if report.passed {
        Ok(())
    } else {
        Err(CliError::FailedQuietly)
    }
}
