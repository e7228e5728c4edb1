//! The `servegate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

/// `println!` and `print!` for the command line: when the reader of stdout
/// has gone (`servegate list | head -1`), the rest of the output is dropped
/// quietly and the command finishes as it would have (results are still
/// written, servers still stopped), instead of panicking with exit 101.
macro_rules! println {
    () => {
        write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

macro_rules! print {
    ($($arg:tt)*) => {
        write_stdout(format_args!($($arg)*))
    };
}

fn write_stdout(text: std::fmt::Arguments<'_>) {
    use std::io::Write;
    use std::sync::atomic::{AtomicBool, Ordering};
    static CLOSED: AtomicBool = AtomicBool::new(false);
    if CLOSED.load(Ordering::Relaxed) {
        return;
    }
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(text).and_then(|()| out.flush()) {
        // A closed pipe ends the output; any other failure does too, said once.
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("warning: cannot write to stdout: {e}");
        }
        CLOSED.store(true, Ordering::Relaxed);
    }
}

use clap::{Parser, Subcommand};

use servegate::adhoc::{self, BenchFile, Grid};
use servegate::calibrate;
use servegate::client::{Client, Limits};
use servegate::config::{CaseConfig, CaseKind, Endpoint, SimSpec, WorkloadConfig};
use servegate::discover::{Case, Project};
use servegate::environment::Environment;
use servegate::gatecheck;
use servegate::report::{self, CaseError, RunResults};
use servegate::runner::{self, CaseReport, RunOptions};
use servegate::sim::SimServer;
use servegate::target::{shared, TargetEnv};
use servegate::tokenizer::Tokenizer;
use servegate::workload;

/// `0.1.0 (commit 0123456789ab)`: the version and the commit built from.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("BUILD_GIT_COMMIT"),
    ")"
);

#[derive(Parser)]
#[command(
    name = "servegate",
    version = VERSION,
    about = "Gate LLM serving engines on performance and quality"
)]
struct Cli {
    /// Project folder (the one holding servegate.toml); found by walking up from the current folder when omitted.
    #[arg(long, global = true, env = "SERVEGATE_ROOT")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run cases (all, or those whose name contains FILTER) and gate each.
    Run {
        /// Run only the cases whose name contains this.
        filter: Option<String>,
        /// Match FILTER against whole names only.
        #[arg(long)]
        exact: bool,
        /// Results file (default: <results_dir>/run-<timestamp>.json).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Keep every request's record in the results file.
        #[arg(long)]
        save_detailed: bool,
        /// Markdown summary (default: the results file with `.md`); also
        /// appended to $GITHUB_STEP_SUMMARY when that is set.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Ratio table (A / B) of two saved runs: `servegate run` results or `servegate bench --output` files.
    Compare {
        /// The first results file (the numerator of every ratio).
        a: PathBuf,
        /// The second results file (the denominator).
        b: PathBuf,
        /// Which target of `servegate run` files to compare.
        #[arg(long, value_enum, default_value = "candidate")]
        target: SideArg,
    },
    /// Tables, history and reports from saved results (files, or folders of run-*.json), oldest first.
    Report {
        /// Results files, or folders of them.
        #[arg(required = true)]
        results: Vec<PathBuf>,
        /// Write one self-contained HTML page with charts.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write the Markdown summary of the latest run.
        #[arg(long)]
        markdown: Option<PathBuf>,
    },
    /// Measure the gate itself on the embedded engine: false failures of
    /// A/A comparisons and detections of a slowed candidate.
    GateCheck {
        /// Cases whose name contains this (trials take turns among them).
        #[arg(default_value = DEFAULT_GATE_CHECK_CASE)]
        filter: String,
        /// A/A trials, and as many slowed ones.
        #[arg(long, default_value_t = 300)]
        trials: u32,
        /// Slowdown of the slowed candidate (1.1: every time × 1.1).
        #[arg(long, default_value_t = 1.1)]
        slowdown: f64,
    },
    /// Print case names, one per line.
    List {
        /// List only the cases whose name contains this.
        filter: Option<String>,
        /// Also print why an ignored case is ignored.
        #[arg(long)]
        reasons: bool,
    },
    /// Validate every case file without running anything.
    Check,
    /// Print the GPUs the CUDA driver reports (needs a build with `--features cuda`).
    Gpu {
        /// Print the probe as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Start `command` targets (default: the project's candidate and baseline)
    /// and leave them running for later runs and tests; prints `NAME URL` lines.
    Up {
        /// Targets to start (default: the project's candidate and baseline).
        targets: Vec<String>,
        /// Stop a server after this many seconds without a user (0: never).
        #[arg(long, default_value_t = 600.0)]
        idle_timeout: f64,
    },
    /// Stop servers started by `servegate up` (all, or those named).
    Down {
        /// Targets to stop (default: all that `servegate up` started).
        targets: Vec<String>,
    },
    /// Supervises one server for `servegate up` (internal).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The target to supervise.
        target: String,
        /// Stop after this many idle seconds.
        #[arg(long)]
        idle_timeout: Option<f64>,
    },
    /// Ad-hoc grid benchmark of one server (the old comparison script's flags).
    Bench(BenchArgs),
    /// Measure servegate's own timing error against the embedded engine.
    Calibrate {
        /// Concurrency levels.
        #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [1u32, 64, 256, 1000])]
        levels: Vec<u32>,
        /// Configured time to first token of the engine.
        #[arg(long, default_value_t = 50.0)]
        ttft_ms: f64,
        /// Configured inter-token latency of the engine.
        #[arg(long, default_value_t = 20.0)]
        itl_ms: f64,
        /// Output tokens per request.
        #[arg(long, default_value_t = 32)]
        tokens: u32,
    },
    /// Train the embedded engine's BPE tokenizer on its corpus and write it
    /// (the shipped one is src/sim/data/tokenizer.json).
    TrainTokenizer {
        /// Where to write the tokenizer.
        #[arg(long, default_value = "src/sim/data/tokenizer.json")]
        output: PathBuf,
        /// Vocabulary size, special tokens included.
        #[arg(long, default_value_t = 1024)]
        vocab_size: usize,
    },
    /// Run the embedded engine as a standalone server until interrupted.
    Sim(SimArgs),
    /// Ad-hoc quality evaluation of one server, or of a candidate against a
    /// baseline (lm-evaluation-harness's scoring, done natively).
    Eval(EvalArgs),
}

#[derive(clap::Args)]
struct EvalArgs {
    /// The server to evaluate (its base URL, e.g. http://127.0.0.1:8000).
    #[arg(long)]
    url: String,
    /// Model name; the server's first model when omitted.
    #[arg(long)]
    model: Option<String>,
    /// Comma-separated tasks (hellaswag, arc_easy, arc_challenge, truthfulqa_mc2, mmlu).
    #[arg(long, value_delimiter = ',', num_args = 1..)]
    tasks: Vec<String>,
    /// A task list of the old script: quick (hellaswag), standard (+ arc_easy,
    /// truthfulqa_mc2), full (+ mmlu). Used when --tasks is not given.
    #[arg(long, value_enum)]
    suite: Option<SuiteArg>,
    /// First N documents of each task (per subject for mmlu).
    #[arg(long)]
    limit: Option<usize>,
    /// Few-shot examples (mmlu only).
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

#[derive(clap::Args)]
struct BenchArgs {
    /// The server's base URL (with or without a trailing `/v1`).
    #[arg(long, default_value = "http://localhost:8000")]
    base_url: String,
    /// Model name; the server's first model when omitted.
    #[arg(long)]
    model: Option<String>,
    /// Prompts in the `{"short": [...], "medium": [...]}` format (default: the project's prompt sets).
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Prompt sets to run (`1,2` or `1 2`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = ["short".to_string(), "medium".to_string()])]
    prompt_length: Vec<String>,
    /// Requests sent first and discarded, per point.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Measured requests per point.
    #[arg(long, default_value_t = 20)]
    num_requests: u32,
    /// Requests in flight at once (`1,2,4` or `1 2 4`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [1u32, 2, 4])]
    concurrency: Vec<u32>,
    /// Tokens to generate per request (`64,128` or `64 128`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [64u32, 128])]
    max_tokens: Vec<u32>,
    /// Write results here (JSON).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Open loop: requests per second (concurrency then caps requests in flight).
    #[arg(long)]
    rate: Option<f64>,
    /// Gamma shape of inter-arrival times (1 = Poisson).
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    /// The API to drive: /v1/completions or /v1/chat/completions.
    #[arg(long, value_enum, default_value = "completions")]
    endpoint: EndpointArg,
    /// A tokenizer.json, to count tokens when the server reports no usage.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Keep every request's timings in the output.
    #[arg(long)]
    save_detailed: bool,
    /// Environment variable holding an API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Seconds a request may take, response body included; a stalled or
    /// trickling one then fails as a timeout (also bounds the model lookup).
    #[arg(long, env = "SERVEGATE_REQUEST_TIMEOUT", default_value_t = 120.0)]
    request_timeout: f64,
}

#[derive(clap::Args)]
struct SimArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The model name the engine serves.
    #[arg(long, default_value = "servegate-sim")]
    model: String,
    /// `constant`, `engine`, or a `[sim_profiles]` entry of the project's servegate.toml.
    #[arg(long)]
    profile: Option<String>,
    /// Time to first token, ms (over the profile's).
    #[arg(long)]
    ttft_ms: Option<f64>,
    /// Time between tokens, ms (over the profile's).
    #[arg(long, visible_alias = "tpot-ms")]
    itl_ms: Option<f64>,
    /// Most sequences in one batch (engine profile).
    #[arg(long)]
    max_num_seqs: Option<u32>,
    /// Multiplies every time (1.1: 10% slower).
    #[arg(long)]
    slowdown: Option<f64>,
    /// Noise added to log-probabilities (standard deviation).
    #[arg(long)]
    logprob_noise: Option<f64>,
    /// Fraction of requests answered with HTTP 500.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Fraction of streams cut off midway.
    #[arg(long)]
    drop_rate: Option<f64>,
    /// A pause in every stream, ms.
    #[arg(long)]
    stall_ms: Option<f64>,
    /// Time before the server answers readiness, ms.
    #[arg(long)]
    startup_delay_ms: Option<f64>,
    /// Exit after this many requests (a crashing server, for tests).
    #[arg(long)]
    crash_after: Option<u64>,
    /// Seed of the engine's randomness (faults, noise).
    #[arg(long)]
    seed: Option<u64>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum SideArg {
    Candidate,
    Baseline,
}

/// The representative point `gate-check` measures by default.
const DEFAULT_GATE_CHECK_CASE: &str = "scenario::grid::short_mt64_c4";

#[derive(Clone, Copy, clap::ValueEnum)]
enum EndpointArg {
    Completions,
    Chat,
}

/// Exit status for configuration and usage errors (clap uses 2 as well).
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    let code = run_command();
    servegate::target::process::wait_for_interrupt_handler();
    code
}

fn run_command() -> ExitCode {
    let cli = Cli::parse();
    // Each stream in flight holds a socket: use all the open files allowed.
    let open_files = servegate::open_files::raise_soft_limit();
    if let Command::Bench(args) = &cli.command {
        let most = args.concurrency.iter().copied().max().unwrap_or(1);
        if let Some(w) = servegate::open_files::concurrency_warning(most as u64, open_files) {
            eprintln!("{w}");
        }
        return bench(args, cli.root.clone());
    }
    if let Command::Eval(args) = &cli.command {
        return eval(args, cli.root.clone());
    }
    if let Command::Compare { a, b, target } = &cli.command {
        return compare(a, b, *target);
    }
    if let Command::Report {
        results,
        html,
        markdown,
    } = &cli.command
    {
        return report_command(results, html.as_deref(), markdown.as_deref());
    }
    if let Command::TrainTokenizer { output, vocab_size } = &cli.command {
        let saved = servegate::sim::lm::train_tokenizer(*vocab_size)
            .and_then(|t| t.save(output, true).map_err(|e| e.to_string()));
        return match saved {
            Ok(()) => {
                println!("wrote {}", output.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Calibrate {
        levels,
        ttft_ms,
        itl_ms,
        tokens,
    } = &cli.command
    {
        let options = calibrate::CalibrateOptions {
            levels: levels.clone(),
            ttft_ms: *ttft_ms,
            itl_ms: *itl_ms,
            output_tokens: *tokens,
        };
        return match runtime().block_on(calibrate::run(&options)) {
            Ok(levels) => {
                println!("{}", calibrate::table(&options, &levels));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    if let Command::Gpu { json } = &cli.command {
        return gpu(*json);
    }
    if let Command::Sim(args) = &cli.command {
        return sim(args, cli.root.clone());
    }
    let root = match cli.root.clone().or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| Project::find_root(&d))
    }) {
        Some(root) if root.join(servegate::config::PROJECT_FILE).is_file() => root,
        Some(root) => {
            eprintln!(
                "error: {} has no {}",
                root.display(),
                servegate::config::PROJECT_FILE
            );
            return ExitCode::from(CONFIG_ERROR);
        }
        None => {
            eprintln!(
                "error: no {} here or in any parent folder (use --root)",
                servegate::config::PROJECT_FILE
            );
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let project = Project::open(root);
    match cli.command {
        Command::Run {
            filter,
            exact,
            output,
            save_detailed,
            markdown,
        } => run(
            &project,
            filter.as_deref(),
            exact,
            output,
            save_detailed,
            markdown,
            open_files,
        ),
        Command::List { filter, reasons } => list(&project, filter.as_deref(), reasons),
        Command::Check => check(&project),
        Command::Up {
            targets,
            idle_timeout,
        } => up(&project, &targets, idle_timeout),
        Command::Down { targets } => down(&project, &targets),
        Command::Supervise {
            target,
            idle_timeout,
        } => supervise(&project, &target, idle_timeout),
        Command::GateCheck {
            filter,
            trials,
            slowdown,
        } => gate_check(&project, &filter, trials, slowdown),
        Command::Sim(_)
        | Command::Gpu { .. }
        | Command::Bench(_)
        | Command::Eval(_)
        | Command::Calibrate { .. }
        | Command::Compare { .. }
        | Command::Report { .. }
        | Command::TrainTokenizer { .. } => {
            unreachable!("handled above")
        }
    }
}

/// One finished case on the console: tables, reasons, warnings.
fn print_case(r: &CaseReport) {
    println!("\n{} — {}", r.name, report::console::case_verdict(&r.gate));
    println!("{}", report::target_table(r));
    println!("{}", report::gate_table(&r.gate));
    if let Some(note) = report::console::unmeasured_note(&r.gate) {
        println!("{note}");
    }
    for (role, t) in [("candidate", &r.candidate), ("baseline", &r.baseline)] {
        if let Some(lines) = report::console::error_lines(role, t) {
            println!("{lines}");
        }
        let label = format!("{role} `{}`", t.target);
        if let Some(w) = report::console::client_lag_warning(&label, &t.summary) {
            println!("{w}");
        }
    }
    if let Some(note) = report::console::inconclusive_note(r) {
        println!("{note}");
    }
    if let Some(rl) = &r.roofline {
        println!(
            "roofline on {}: {:.1} tok/s per sequence at batch 1 allowed, {:.1} measured ({:.0}%)",
            rl.device,
            rl.ideal_tokens_per_s,
            rl.measured_tokens_per_s,
            rl.fraction * 100.0
        );
    }
}

fn matches(name: &str, filter: Option<&str>, exact: bool) -> bool {
    match filter {
        None => true,
        Some(f) if exact => name == f,
        Some(f) => name.contains(f),
    }
}

/// Loads every case; config errors of files the filter could select are fatal.
fn select(project: &Project, filter: Option<&str>, exact: bool) -> Result<Vec<Case>, ExitCode> {
    let mut cases = Vec::new();
    let mut failed = false;
    for (file, loaded) in project.load_all() {
        match loaded {
            Ok(cs) => cases.extend(cs.into_iter().filter(|c| matches(&c.name, filter, exact))),
            Err(e) => {
                let relevant = match filter {
                    None => true,
                    Some(f) => file.name().contains(f) || f.starts_with(&file.name()),
                };
                if relevant {
                    eprintln!("error: {e}");
                    failed = true;
                }
            }
        }
    }
    if failed {
        Err(ExitCode::from(CONFIG_ERROR))
    } else {
        Ok(cases)
    }
}

fn list(project: &Project, filter: Option<&str>, reasons: bool) -> ExitCode {
    let cases = match select(project, filter, false) {
        Ok(c) => c,
        Err(code) => return code,
    };
    for c in cases {
        match (&c.ignore_reason, reasons) {
            (Some(why), true) => println!("{}  (ignored: {why})", c.name),
            _ => println!("{}", c.name),
        }
    }
    ExitCode::SUCCESS
}

fn check(project: &Project) -> ExitCode {
    let mut errors = 0;
    let mut count = 0;
    for (file, loaded) in project.load_all() {
        match loaded {
            Ok(cases) => {
                let before = errors;
                for c in &cases {
                    if let Err(e) = runner::check_case(project, c) {
                        eprintln!("error: {e}");
                        errors += 1;
                    }
                }
                // A file is ok only when every one of its cases is.
                if errors > before {
                    continue;
                }
                count += cases.len();
                println!(
                    "ok  {} ({} case{})",
                    file.path.display(),
                    cases.len(),
                    if cases.len() == 1 { "" } else { "s" }
                );
            }
            Err(e) => {
                eprintln!("error: {e}");
                errors += 1;
            }
        }
    }
    if errors > 0 {
        eprintln!("{errors} error(s)");
        ExitCode::from(CONFIG_ERROR)
    } else {
        println!("{count} cases valid");
        ExitCode::SUCCESS
    }
}

fn run(
    project: &Project,
    filter: Option<&str>,
    exact: bool,
    output: Option<PathBuf>,
    save_detailed: bool,
    markdown: Option<PathBuf>,
    open_files: Option<u64>,
) -> ExitCode {
    let cases = match select(project, filter, exact) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let most = cases
        .iter()
        .filter(|c| c.kind == servegate::config::CaseKind::Scenario)
        .map(|c| {
            let w = &c.config.workload;
            match w.rate {
                Some(_) => w.max_concurrency.unwrap_or(w.num_requests),
                None => w.concurrency,
            }
        })
        .max();
    if let Some(w) =
        most.and_then(|n| servegate::open_files::concurrency_warning(n as u64, open_files))
    {
        eprintln!("{w}");
    }
    if cases.is_empty() {
        eprintln!("error: no case matches {}", filter.unwrap_or("(all)"));
        return ExitCode::from(CONFIG_ERROR);
    }
    // Ctrl-C ends the run with 130 whatever its targets; the results file
    // written so far stays, marked incomplete.
    servegate::target::process::exit_on_interrupt();
    let started = chrono::Local::now();
    let mut ignored = Vec::new();
    let mut runnable = Vec::new();
    for case in &cases {
        if let Some(why) = &case.ignore_reason {
            println!("{}: ignored ({why})", case.name);
            ignored.push(report::IgnoredCase {
                name: case.name.clone(),
                reason: why.clone(),
            });
        } else {
            runnable.push(case);
        }
    }
    let (suites, runnable): (Vec<&Case>, Vec<&Case>) = runnable
        .into_iter()
        .partition(|c| c.kind == servegate::config::CaseKind::Suite);
    let path = output.unwrap_or_else(|| {
        let dir = match servegate::config::load_project(&project.root, &project.env) {
            Ok(c) => servegate::config::resolve(&project.root, &c.results_dir),
            Err(_) => project.root.join("results"),
        };
        dir.join(format!("run-{}.json", started.format("%Y%m%d-%H%M%S")))
    });
    // The results file is rewritten after every case and marked incomplete
    // until the run ends: an interrupted run keeps what it measured.
    let mut results = RunResults {
        servegate_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started.to_rfc3339(),
        finished_at: String::new(),
        passed: false,
        complete: false,
        environment: Some(Environment::collect(&project.root)),
        cases: Vec::new(),
        errors: Vec::new(),
        ignored,
        quality: Vec::new(),
        suites: Vec::new(),
    };
    let mut save_failed = false;
    let mut save = |results: &RunResults| {
        if let Err(e) = report::write_json_atomic(&path, results) {
            if !save_failed {
                eprintln!("warning: could not write {}: {e:#}", path.display());
                save_failed = true;
            }
        }
    };
    save(&results);
    // Every target starts once for all the cases that use it.
    runner::run_cases_reporting(
        project,
        &runnable,
        RunOptions {
            keep_records: save_detailed,
            progress: true,
        },
        &mut |line| eprintln!("running {line} …"),
        &mut |i, result| {
            match result {
                Ok(r) => {
                    print_case(r);
                    results.cases.push(r.clone());
                }
                Err(e) => {
                    println!("\n{}: error: {e:#}", runnable[i].name);
                    results.errors.push(CaseError {
                        name: runnable[i].name.clone(),
                        error: format!("{e:#}"),
                    });
                }
            }
            save(&results);
        },
    );
    if !results.cases.is_empty() {
        println!("\nCandidate / baseline ratios");
        println!("{}", report::comparison_table(&results.cases));
    }
    servegate::eval::run_suites_reporting(
        project,
        &suites,
        true,
        &mut |line| eprintln!("running {line} …"),
        &mut |i, result| {
            match result {
                Ok(r) => {
                    println!("\n{} — {}", r.name, if r.passed { "pass" } else { "FAIL" });
                    print!("{}", report::quality::suite_text(r));
                    results.suites.push(r.clone());
                    results.quality = report::quality::task_scores(&results.suites);
                }
                Err(e) => {
                    println!("\n{}: error: {e:#}", suites[i].name);
                    results.errors.push(CaseError {
                        name: suites[i].name.clone(),
                        error: format!("{e:#}"),
                    });
                }
            }
            save(&results);
        },
    );
    let (passed, failed, _, errors) = results.counts();
    let failed = failed + errors;
    results.finished_at = chrono::Local::now().to_rfc3339();
    results.passed = failed == 0;
    results.complete = true;
    let inconclusive = results.counts().2;
    match report::write_json_keeping(&path, &results) {
        Ok(written) if written == path => println!("results: {}", path.display()),
        Ok(written) => eprintln!(
            "warning: could not write {}; the results were saved to {}",
            path.display(),
            written.display()
        ),
        Err(e) => eprintln!("warning: could not write {}: {e:#}", path.display()),
    }
    let summary = report::markdown::run_summary(&results);
    let md_path = markdown.unwrap_or_else(|| path.with_extension("md"));
    match write_text_atomic(&md_path, &summary) {
        Ok(()) => println!("summary: {}", md_path.display()),
        Err(e) => eprintln!("warning: could not write {}: {e:#}", md_path.display()),
    }
    if let Some(step_summary) = std::env::var_os("GITHUB_STEP_SUMMARY").filter(|v| !v.is_empty()) {
        if let Err(e) = append_text(std::path::Path::new(&step_summary), &summary) {
            eprintln!("warning: could not append to $GITHUB_STEP_SUMMARY: {e}");
        }
    }
    let inconclusive = if inconclusive > 0 {
        format!(" ({inconclusive} inconclusive)")
    } else {
        String::new()
    };
    println!(
        "{passed} passed{inconclusive}, {failed} failed, {} ignored",
        results.ignored.len()
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Prompt sets for `servegate bench`: from `--prompts-file`, else the project's prompt folder.
fn bench_prompt_sets(
    args: &BenchArgs,
    root: Option<PathBuf>,
) -> Result<Vec<(String, Vec<String>)>, String> {
    match &args.prompts_file {
        Some(file) => {
            let mut sets = workload::load_prompts_json(file)?;
            args.prompt_length
                .iter()
                .map(|name| {
                    sets.remove(name)
                        .filter(|p| !p.is_empty())
                        .map(|p| (name.clone(), p))
                        .ok_or_else(|| format!("{}: no prompts under `{name}`", file.display()))
                })
                .collect()
        }
        None => {
            let root = root
                .or_else(|| {
                    std::env::current_dir()
                        .ok()
                        .and_then(|d| Project::find_root(&d))
                })
                .ok_or(
                    "no --prompts-file and no servegate project here to take prompt sets from",
                )?;
            let dir = match servegate::config::load_project(&root, &[]) {
                Ok(c) => servegate::config::resolve(&root, &c.prompts_dir),
                Err(_) => root.join("prompts"),
            };
            args.prompt_length
                .iter()
                .map(|name| workload::load_prompt_set(&dir, name).map(|p| (name.clone(), p)))
                .collect()
        }
    }
}

fn bench(args: &BenchArgs, root: Option<PathBuf>) -> ExitCode {
    let usage_error = |message: String| {
        eprintln!("error: {message}");
        ExitCode::from(CONFIG_ERROR)
    };
    let prompt_sets = match bench_prompt_sets(args, root) {
        Ok(p) => p,
        Err(e) => return usage_error(e),
    };
    let tokenizer = match args
        .tokenizer
        .as_deref()
        .map(Tokenizer::from_file)
        .transpose()
    {
        Ok(t) => t,
        Err(e) => return usage_error(e),
    };
    // The same ranges as a scenario's workload keys, so a run cannot panic.
    {
        use servegate::config::limits::{self, count, number};
        let mut checks = vec![
            (
                "--burstiness",
                number(args.burstiness, limits::BURSTINESS).map(drop),
            ),
            (
                "--warmup",
                count(args.warmup.into(), 0, limits::MAX_REQUESTS).map(drop),
            ),
            (
                "--num-requests",
                count(args.num_requests.into(), 1, limits::MAX_REQUESTS).map(drop),
            ),
        ];
        if let Some(rate) = args.rate {
            checks.push(("--rate", number(rate, limits::RATE).map(drop)));
        }
        checks.push((
            "--request-timeout",
            number(args.request_timeout, limits::TIMEOUT_S).map(drop),
        ));
        for &c in &args.concurrency {
            checks.push((
                "--concurrency",
                count(c.into(), 1, limits::MAX_CONCURRENCY).map(drop),
            ));
        }
        for &t in &args.max_tokens {
            checks.push((
                "--max-tokens",
                count(t.into(), 1, limits::MAX_TOKENS).map(drop),
            ));
        }
        if let Some((flag, Err(e))) = checks.into_iter().find(|(_, r)| r.is_err()) {
            return usage_error(format!("{flag}: {e}"));
        }
    }
    let request_timeout = std::time::Duration::from_secs_f64(args.request_timeout);
    let api_key = match &args.api_key_env {
        Some(var) => match std::env::var(var) {
            Ok(k) => Some(k),
            Err(_) => return usage_error(format!("environment variable {var} is not set")),
        },
        None => None,
    };
    let endpoint = match args.endpoint {
        EndpointArg::Completions => Endpoint::Completions,
        EndpointArg::Chat => Endpoint::Chat,
    };
    let rt = runtime();
    let outcome: anyhow::Result<BenchFile> = rt.block_on(async {
        let client = Client::new(&args.base_url, api_key)?.with_limits(Limits {
            timeout: request_timeout,
            ..Limits::default()
        });
        client
            .wait_ready("/v1/models", std::time::Duration::from_secs(10))
            .await
            .map_err(anyhow::Error::msg)?;
        let model = match &args.model {
            Some(m) => m.clone(),
            None => client.first_model().await.map_err(anyhow::Error::msg)?,
        };
        let grid = Grid {
            prompt_sets,
            max_tokens: args.max_tokens.clone(),
            concurrency: args.concurrency.clone(),
            base: WorkloadConfig {
                endpoint,
                warmup: args.warmup,
                num_requests: args.num_requests,
                rate: args.rate,
                burstiness: args.burstiness,
                request_timeout_s: request_timeout.as_secs_f64(),
                ..WorkloadConfig::default()
            },
        };
        let results =
            adhoc::run_grid(&client, &model, &grid, tokenizer, args.save_detailed, true).await;
        Ok(BenchFile {
            base_url: args.base_url.clone(),
            model,
            warmup: args.warmup,
            num_requests: args.num_requests,
            endpoint,
            scenarios: results,
        })
    });
    // Closing the runtime closes every connection it held, so the results
    // file can be written even when the run used every file allowed.
    drop(rt);
    let file = match outcome {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}", adhoc::table(&file.scenarios));
    if let Some(errors) = adhoc::error_report(&file.scenarios) {
        println!("{errors}");
    }
    for p in &file.scenarios {
        if let Some(w) = report::console::client_lag_warning(&p.name, &p.summary) {
            println!("{w}");
        }
    }
    if let Some(path) = &args.output {
        match report::write_json_keeping(path, &file) {
            Ok(written) if written == *path => println!("results: {}", path.display()),
            Ok(written) => {
                eprintln!(
                    "error: cannot write {}; the results were saved to {}",
                    path.display(),
                    written.display()
                );
                return ExitCode::FAILURE;
            }
            Err(e) => {
                eprintln!("error: cannot write {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(panic) = file.panic() {
        eprintln!("error: {panic}");
        return ExitCode::FAILURE;
    }
    // A point with no completed request measured nothing: never a success.
    let unmeasured: Vec<&str> = file.unmeasured().iter().map(|p| p.name.as_str()).collect();
    if !unmeasured.is_empty() {
        eprintln!(
            "error: no request completed at {} of {} points: {}",
            unmeasured.len(),
            file.scenarios.len(),
            unmeasured.join(", ")
        );
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn sim(args: &SimArgs, root: Option<PathBuf>) -> ExitCode {
    let spec = SimSpec {
        profile: args.profile.clone(),
        ttft_ms: args.ttft_ms,
        tpot_ms: args.itl_ms,
        max_num_seqs: args.max_num_seqs,
        slowdown: args.slowdown,
        logprob_noise: args.logprob_noise,
        error_rate: args.error_rate,
        drop_rate: args.drop_rate,
        stall_ms: args.stall_ms,
        startup_delay_ms: args.startup_delay_ms,
        crash_after: args.crash_after,
        seed: args.seed,
        ..SimSpec::default()
    };
    // Profiles defined in the project's servegate.toml, when there is one.
    let profiles = root
        .or_else(|| {
            std::env::current_dir()
                .ok()
                .and_then(|d| Project::find_root(&d))
        })
        .and_then(|r| servegate::config::load_project(&r, &[]).ok())
        .map(|c| c.sim_profiles)
        .unwrap_or_default();
    let params = match servegate::config::SimParams::resolve(&spec, &profiles) {
        Ok(p) => p,
        Err((knob, message)) => {
            eprintln!("error: --{}: {message}", knob.replace('_', "-"));
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    // `servegate sim &` in a script starts with SIGINT ignored: handle it.
    servegate::target::process::default_sigint();
    match SimServer::start_with(params, &args.model, (args.host, args.port).into(), true) {
        Ok(server) => {
            eprintln!(
                "servegate sim: serving `{}` on {}",
                args.model,
                server.url()
            );
            server.join();
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot listen on {}:{}: {e}", args.host, args.port);
            ExitCode::FAILURE
        }
    }
}

/// The project's settings and where its targets write.
fn project_config(project: &Project) -> Result<(CaseConfig, TargetEnv), ExitCode> {
    match servegate::config::load_project(&project.root, &project.env) {
        Ok(c) => {
            let env = TargetEnv::new(&project.root, &c.results_dir);
            Ok((c, env))
        }
        Err(e) => {
            eprintln!("error: {e}");
            Err(ExitCode::from(CONFIG_ERROR))
        }
    }
}

fn up(project: &Project, names: &[String], idle_timeout: f64) -> ExitCode {
    // 0 means never; anything else must be a duration a timer can hold.
    if idle_timeout != 0.0 {
        use servegate::config::limits::{number, TIMEOUT_S};
        if let Err(e) = number(idle_timeout, TIMEOUT_S) {
            eprintln!("error: --idle-timeout: {e} (or 0: never)");
            return ExitCode::from(CONFIG_ERROR);
        }
    }
    let (config, env) = match project_config(project) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let names: Vec<String> = if names.is_empty() {
        let mut names = vec![config.candidate.clone()];
        names.extend(config.baseline.target().map(str::to_string));
        names.dedup();
        names
            .into_iter()
            .filter(|n| config.targets.get(n).is_some_and(|t| t.command.is_some()))
            .collect()
    } else {
        names.to_vec()
    };
    let mut targets = Vec::new();
    for name in &names {
        match config.targets.get(name) {
            Some(spec) if spec.command.is_some() => targets.push((name.clone(), spec.clone())),
            Some(_) => {
                eprintln!("error: `{name}` is not a `command` target; only those can be started");
                return ExitCode::from(CONFIG_ERROR);
            }
            None => {
                eprintln!("error: no target named `{name}` in servegate.toml");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    }
    if targets.is_empty() {
        eprintln!("nothing to start: neither candidate nor baseline is a `command` target");
        return ExitCode::SUCCESS;
    }
    if targets.iter().filter(|(_, t)| t.is_exclusive()).count() > 1 {
        eprintln!(
            "warning: {} are exclusive targets and will now run side by side",
            targets
                .iter()
                .map(|(n, _)| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("error: cannot find the servegate binary: {e}");
            return ExitCode::FAILURE;
        }
    };
    let idle = (idle_timeout > 0.0).then(|| std::time::Duration::from_secs_f64(idle_timeout));
    match shared::up(&exe, &project.root, &env, &targets, &config.model, idle) {
        Ok(ups) => {
            for u in ups {
                println!("{} {}", u.target, u.url);
                if u.already_running {
                    eprintln!("`{}` was already up", u.target);
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn down(project: &Project, names: &[String]) -> ExitCode {
    let env = match project_config(project) {
        Ok((_, env)) => env,
        Err(code) => return code,
    };
    match shared::down(&env, names) {
        Ok(stopped) => {
            for name in stopped {
                println!("stopped {name}");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn supervise(project: &Project, name: &str, idle_timeout: Option<f64>) -> ExitCode {
    let (config, env) = match project_config(project) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let Some(spec) = config.targets.get(name) else {
        eprintln!("error: no target named `{name}`");
        return ExitCode::from(CONFIG_ERROR);
    };
    let model = spec.model.clone().unwrap_or(config.model.clone());
    // `up` checked the value; a bad one from elsewhere means no idle stop.
    let idle = idle_timeout.and_then(|s| std::time::Duration::try_from_secs_f64(s).ok());
    let code = shared::supervise(&env, name, spec, &model, idle);
    ExitCode::from(code as u8)
}

fn gpu(json: bool) -> ExitCode {
    let probe = servegate::gpu::probe();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&probe).unwrap_or_default()
        );
        return ExitCode::SUCCESS;
    }
    match &probe {
        servegate::gpu::Probe::NotBuilt { reason } | servegate::gpu::Probe::NoDevice { reason } => {
            println!("no GPU: {reason}");
        }
        servegate::gpu::Probe::Devices { devices } => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            t.set_header(vec![
                "GPU",
                "name",
                "compute",
                "SMs",
                "memory",
                "free",
                "memory clock",
                "bus",
                "peak bandwidth",
            ]);
            let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
            for d in devices {
                t.add_row(vec![
                    d.index.to_string(),
                    d.name.clone(),
                    format!("{}.{}", d.compute_capability.0, d.compute_capability.1),
                    d.sm_count.to_string(),
                    gib(d.total_memory_bytes),
                    d.free_memory_bytes.map(gib).unwrap_or_else(|| "?".into()),
                    format!("{} MHz", d.memory_clock_khz / 1000),
                    format!("{} bit", d.bus_width_bits),
                    format!("{:.0} GB/s", d.peak_bandwidth_bytes_per_s / 1e9),
                ]);
            }
            println!("{t}");
        }
    }
    ExitCode::SUCCESS
}

/// Writes text atomically (temporary file in the same folder, then rename).
fn write_text_atomic(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    report::write_atomic(path, text.as_bytes())
}

fn append_text(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{text}")
}

fn compare(a: &std::path::Path, b: &std::path::Path, side: SideArg) -> ExitCode {
    let side = match side {
        SideArg::Candidate => report::compare::Side::Candidate,
        SideArg::Baseline => report::compare::Side::Baseline,
    };
    let load = |p: &std::path::Path| -> anyhow::Result<Vec<report::compare::Entry>> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", p.display()))?;
        report::compare::entries(&value, side)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", p.display()))
    };
    let (ea, eb) = match (load(a), load(b)) {
        (Ok(ea), Ok(eb)) => (ea, eb),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("error: {e:#}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let (rows, unmatched) = report::compare::compare(&ea, &eb);
    if rows.is_empty() {
        eprintln!(
            "error: {} and {} have no point in common ({} and {} points)",
            a.display(),
            b.display(),
            ea.len(),
            eb.len()
        );
        return ExitCode::FAILURE;
    }
    println!("A = {}\nB = {}\nratios A / B", a.display(), b.display());
    println!("{}", report::compare::table_text(&rows));
    for u in &unmatched {
        println!("not compared: {u}");
    }
    ExitCode::SUCCESS
}

/// Results files named on the command line; a folder stands for its
/// `run-*.json` files, or, without any, for all its `*.json` files (the case
/// reports the gate trials write under `<results_dir>/cases/`).
fn results_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            let json: Vec<PathBuf> = std::fs::read_dir(p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "json"))
                .collect();
            let is_run = |f: &PathBuf| {
                f.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("run-"))
            };
            let mut files: Vec<PathBuf> = if json.iter().any(is_run) {
                json.into_iter().filter(is_run).collect()
            } else {
                json
            };
            files.sort();
            if files.is_empty() {
                return Err(format!("{} holds no results (*.json)", p.display()));
            }
            out.extend(files);
        } else {
            out.push(p.clone());
        }
    }
    Ok(out)
}

fn report_command(
    paths: &[PathBuf],
    html: Option<&std::path::Path>,
    markdown: Option<&std::path::Path>,
) -> ExitCode {
    let files = match results_files(paths) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    };
    let mut runs = Vec::new();
    let mut single_cases = Vec::new();
    for f in &files {
        match report::read_results(f) {
            Ok(r) if r.is_single_case() => single_cases.push(r),
            Ok(r) => runs.push(r),
            Err(e) => {
                eprintln!("error: {e:#}");
                return ExitCode::from(CONFIG_ERROR);
            }
        }
    }
    // History reads oldest first, whatever order the files were named in.
    report::sort_by_start(&mut runs);
    // Case reports of single cases make up one run, the latest.
    if !single_cases.is_empty() {
        runs.push(RunResults::combine(single_cases));
    }
    let latest = runs.last().expect("at least one file (clap requires it)");
    if !latest.complete {
        println!("incomplete run: it was interrupted; only the cases below finished");
    }
    for c in &latest.cases {
        println!("\n{} — {}", c.name, report::console::case_verdict(&c.gate));
        println!("{}", report::target_table(c));
        println!("{}", report::gate_table(&c.gate));
        if let Some(note) = report::console::unmeasured_note(&c.gate) {
            println!("{note}");
        }
        for (role, t) in [("candidate", &c.candidate), ("baseline", &c.baseline)] {
            if let Some(lines) = report::console::error_lines(role, t) {
                println!("{lines}");
            }
        }
    }
    if !latest.cases.is_empty() {
        println!("\nCandidate / baseline ratios");
        println!("{}", report::comparison_table(&latest.cases));
    }
    for s in &latest.suites {
        println!("\n{} — {}", s.name, if s.passed { "pass" } else { "FAIL" });
        print!("{}", report::quality::suite_text(s));
    }
    for e in &latest.errors {
        println!("\n{}: error: {}", e.name, e.error);
    }
    for i in &latest.ignored {
        println!("{}: ignored ({})", i.name, i.reason);
    }
    if runs.len() > 1 {
        println!("\nHistory ({} runs, oldest first)", runs.len());
        println!("{}", report::history::history_table(&runs));
    }
    if let Some(path) = html {
        match write_text_atomic(path, &report::html::render(&runs)) {
            Ok(()) => println!("html: {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    if let Some(path) = markdown {
        match write_text_atomic(path, &report::markdown::run_summary(latest)) {
            Ok(()) => println!("markdown: {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    ExitCode::SUCCESS
}

fn gate_check(project: &Project, filter: &str, trials: u32, slowdown: f64) -> ExitCode {
    let cases: Vec<Case> = match select(project, Some(filter), false) {
        Ok(c) => c
            .into_iter()
            .filter(|c| c.kind == CaseKind::Scenario && c.ignore_reason.is_none())
            .collect(),
        Err(code) => return code,
    };
    if cases.is_empty() {
        eprintln!("error: no scenario matches {filter}");
        return ExitCode::from(CONFIG_ERROR);
    }
    if trials == 0 || !(slowdown.is_finite() && slowdown > 0.0) {
        eprintln!("error: --trials must be at least 1 and --slowdown positive");
        return ExitCode::from(CONFIG_ERROR);
    }
    let options = gatecheck::GateCheckOptions { trials, slowdown };
    let step = (trials / 10).max(1);
    let outcome = gatecheck::run(project, &cases, &options, |done, total| {
        if done % step == 0 || done == total {
            eprintln!("gate-check: {done}/{total} trials");
        }
    });
    match outcome {
        Ok(r) => {
            print!("{}", gatecheck::table(&r));
            if r.meets_targets() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The data folder `servegate eval` uses without `--data-dir`: inside a
/// project, its `data_dir`, else its `datasets/` folder when there is one, so
/// that the project's own records are found as its suites find them.
fn eval_data_dir(root: Option<PathBuf>) -> Option<PathBuf> {
    let root = root.or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| Project::find_root(&d))
    })?;
    match servegate::config::load_project(&root, &[]) {
        Ok(c) if c.data_dir.is_some() => c.data_dir.map(|d| servegate::config::resolve(&root, &d)),
        _ => Some(root.join("datasets")).filter(|d| d.is_dir()),
    }
}

/// `servegate eval`: one server scored, or a candidate gated against a baseline.
fn eval(args: &EvalArgs, root: Option<PathBuf>) -> ExitCode {
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
            eprintln!("error: {flag}: {e}");
            return ExitCode::from(CONFIG_ERROR);
        }
    }
    let tasks: Vec<String> = if !args.tasks.is_empty() {
        args.tasks.clone()
    } else {
        let list: &[&str] = match args.suite {
            Some(SuiteArg::Quick) | None => &["hellaswag"],
            Some(SuiteArg::Standard) => &["hellaswag", "arc_easy", "truthfulqa_mc2"],
            Some(SuiteArg::Full) => &["hellaswag", "arc_easy", "truthfulqa_mc2", "mmlu"],
        };
        list.iter().map(|s| s.to_string()).collect()
    };
    let api_key = args
        .api_key_env
        .as_ref()
        .and_then(|name| std::env::var(name).ok());
    let spec = servegate::eval::AdhocEval {
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
        api_key,
        timeout_s: args.timeout,
    };
    let report = match runtime().block_on(servegate::eval::adhoc(&spec)) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
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
        match report::write_json_atomic(path, &report) {
            Ok(()) => println!("results: {}", path.display()),
            Err(e) => {
                eprintln!("error: could not write {}: {e:#}", path.display());
                return ExitCode::FAILURE;
            }
        }
    }
    let unscored = report.candidate.unscored();
    if !unscored.is_empty() {
        eprintln!(
            "error: nothing was scored for {} (no item, or no value)",
            unscored.join(", ")
        );
    }
    if report.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod cli_tests {
    use super::Cli;
    use clap::CommandFactory;

    /// `--help` explains every flag and argument of every subcommand.
    #[test]
    fn every_argument_has_help_text() {
        fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
            for arg in cmd.get_arguments() {
                let id = arg.get_id().as_str();
                if ["help", "version"].contains(&id) {
                    continue;
                }
                if arg.get_help().is_none() && arg.get_long_help().is_none() {
                    missing.push(format!("{path} {id}"));
                }
            }
            for sub in cmd.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(&Cli::command(), "servegate", &mut missing);
        assert!(missing.is_empty(), "no help text: {missing:?}");
        Cli::command().debug_assert();
    }

    #[test]
    fn lists_take_commas_or_spaces() {
        use clap::Parser;
        for argv in [
            &[
                "servegate",
                "bench",
                "--concurrency",
                "1,2",
                "--max-tokens",
                "8",
            ][..],
            &[
                "servegate",
                "bench",
                "--concurrency",
                "1",
                "2",
                "--max-tokens",
                "8",
            ][..],
        ] {
            let cli = Cli::try_parse_from(argv).unwrap();
            let super::Command::Bench(b) = cli.command else {
                panic!("bench")
            };
            assert_eq!(b.concurrency, vec![1, 2]);
            assert_eq!(b.max_tokens, vec![8]);
        }
    }

    #[test]
    fn version_names_the_commit() {
        let v = Cli::command().render_version();
        assert!(v.contains("(commit "), "{v}");
    }
}
