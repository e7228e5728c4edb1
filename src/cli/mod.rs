//! The subcommands: their arguments, one dispatch, one error type.
//!
//! Each group of subcommands has its file; a handler turns its arguments into
//! library options, calls the library, prints what it returns, and answers
//! `Ok(())` or a [`CliError`] that `main` maps to the exit status.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use servegate::discover::Project;

/// `println!` and `print!` for the command line: when the reader of stdout
/// has gone (`servegate list | head -1`), the rest of the output is dropped
/// quietly and the command finishes as it would have (results are still
/// written, servers still stopped), instead of panicking with exit 101.
macro_rules! println {
    () => {
        $crate::cli::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

macro_rules! print {
    ($($arg:tt)*) => {
        $crate::cli::write_stdout(format_args!($($arg)*))
    };
}

/// `--endpoint` of `bench` and `eval`: the OpenAI API driven.
#[derive(Clone, Copy, clap::ValueEnum)]
enum EndpointArg {
    Completions,
    Chat,
}

impl From<EndpointArg> for servegate::config::Endpoint {
    fn from(e: EndpointArg) -> Self {
        match e {
            EndpointArg::Completions => Self::Completions,
            EndpointArg::Chat => Self::Chat,
        }
    }
}

// The group files come after the macros, so that they print through them.
mod bench;
mod eval;
mod history;
mod probe;
mod report;
mod run;
mod servers;
mod sim;

pub(crate) fn write_stdout(text: std::fmt::Arguments<'_>) {
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
pub struct Cli {
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
        /// Goodput objectives of every scenario, vLLM's syntax: `ttft:200
        /// tpot:50 e2el:2000` (ms). Overrides the case files' `workload.slo`,
        /// so each case's goodput is measured and a `goodput` gate can be
        /// checked; quality suites are unaffected. Takes every word after it:
        /// give FILTER before it, or after `--`.
        #[arg(long, value_name = "NAME:MS", num_args = 1..)]
        goodput: Vec<String>,
        /// Open no connections ahead of the measured requests (every
        /// scenario's `workload.warm_connections = false`).
        #[arg(long)]
        cold_connections: bool,
    },
    /// Ratio table (A / B) of two saved runs: `servegate run` results or `servegate bench --output` files.
    Compare {
        /// The first results file (the numerator of every ratio).
        a: PathBuf,
        /// The second results file (the denominator).
        b: PathBuf,
        /// Which target of `servegate run` files to compare.
        #[arg(long, value_enum, default_value = "candidate")]
        target: report::SideArg,
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
    /// Regressions across saved runs: change points (E-divisive means) and
    /// a rolling-baseline threshold per case and gated metric.
    History(history::HistoryArgs),
    /// One verdict from the parts of a partitioned gate (`cargo nextest run
    /// --partition hash:K/N`): every case of the project in exactly one part.
    Merge {
        /// Each part: the folder of case files its trials wrote
        /// (`<results_dir>/cases/`), or its results file.
        #[arg(required = true)]
        parts: Vec<PathBuf>,
        /// Write the merged results file.
        #[arg(long)]
        output: Option<PathBuf>,
        /// Write the Markdown summary.
        #[arg(long)]
        markdown: Option<PathBuf>,
        /// Write one self-contained HTML page with charts.
        #[arg(long)]
        html: Option<PathBuf>,
        /// Write a JUnit XML report (one test case per case).
        #[arg(long)]
        junit: Option<PathBuf>,
    },
    /// Measure the gate itself on the embedded engine: false failures of
    /// A/A comparisons and detections of a slowed candidate.
    GateCheck {
        /// Cases whose name contains this (trials take turns among them).
        #[arg(default_value = run::DEFAULT_GATE_CHECK_CASE)]
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
    Bench(bench::BenchArgs),
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
        /// Send every stream at the same instant (default: spread over one
        /// request's duration, as independent users would be).
        #[arg(long)]
        lockstep: bool,
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
    Sim(sim::SimArgs),
    /// Ad-hoc quality evaluation of one server, or of a candidate against a
    /// baseline (lm-evaluation-harness's scoring, done natively).
    Eval(eval::EvalArgs),
    /// What a server supports, found with a few tiny requests: models,
    /// completions and chat (streamed and not), usage in streams, echoed
    /// prompt log-probabilities, token-id and list prompts, tokenize, BOS,
    /// /metrics, SSE comments.
    Probe(probe::ProbeArgs),
}

/// Why a command did not succeed; `main` maps it to the exit status.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A usage or configuration error: `error: …` on stderr, exit 2.
    #[error("{0}")]
    Usage(String),
    /// The command failed: `error: …` on stderr, exit 1.
    #[error("{0}")]
    Failed(String),
    /// Configuration errors, each already printed as it was found: exit 2.
    #[error("invalid configuration (reported above)")]
    InvalidReported,
    /// A failed gate, or a failure already reported: exit 1, nothing more said.
    #[error("failed (reported above)")]
    FailedQuietly,
    /// The exit status of a supervised server, passed on as it is.
    #[error("exit status {0}")]
    Status(u8),
}

impl CliError {
    /// Prints the message, if it has one not printed yet.
    pub fn report(&self) {
        match self {
            CliError::Usage(message) | CliError::Failed(message) => eprintln!("error: {message}"),
            CliError::InvalidReported | CliError::FailedQuietly | CliError::Status(_) => {}
        }
    }

    /// 2 for usage and configuration errors, 1 for failures.
    pub fn exit_code(&self) -> ExitCode {
        ExitCode::from(match self {
            CliError::Usage(_) | CliError::InvalidReported => 2,
            CliError::Failed(_) | CliError::FailedQuietly => 1,
            CliError::Status(code) => *code,
        })
    }
}

impl Cli {
    /// Runs the command.
    pub fn execute(self) -> Result<(), CliError> {
        // Each stream in flight holds a socket: use all the open files allowed.
        let open_files = servegate::open_files::raise_soft_limit();
        let root = self.root;
        match self.command {
            Command::Run {
                filter,
                exact,
                output,
                save_detailed,
                markdown,
                goodput,
                cold_connections,
            } => {
                let slo = parse_goodput(&goodput)
                    .map_err(|e| CliError::Usage(format!("--goodput {e}")))?;
                run::run(
                    &open_project(root)?,
                    filter.as_deref(),
                    exact,
                    run::RunFlags {
                        output,
                        save_detailed,
                        markdown,
                        slo,
                        cold_connections,
                    },
                    open_files,
                )
            }
            Command::List { filter, reasons } => {
                run::list(&open_project(root)?, filter.as_deref(), reasons)
            }
            Command::Check => run::check(&open_project(root)?),
            Command::GateCheck {
                filter,
                trials,
                slowdown,
            } => run::gate_check(&open_project(root)?, &filter, trials, slowdown),
            Command::Compare { a, b, target } => report::compare(&a, &b, target),
            Command::Report {
                results,
                html,
                markdown,
            } => report::report(&results, html.as_deref(), markdown.as_deref()),
            Command::History(args) => history::history(&args),
            Command::Merge {
                parts,
                output,
                markdown,
                html,
                junit,
            } => report::merge(
                &open_project(root)?,
                &parts,
                report::MergeOutputs {
                    results: output,
                    markdown,
                    html,
                    junit,
                },
            ),
            Command::Bench(args) => bench::bench(&args, root, open_files),
            Command::Eval(args) => eval::eval(&args, root),
            Command::Probe(args) => probe::probe(&args),
            Command::Sim(args) => sim::sim(&args, root),
            Command::Calibrate {
                levels,
                ttft_ms,
                itl_ms,
                tokens,
                lockstep,
            } => sim::calibrate(levels, ttft_ms, itl_ms, tokens, lockstep),
            Command::TrainTokenizer { output, vocab_size } => {
                sim::train_tokenizer(&output, vocab_size)
            }
            Command::Gpu { json } => sim::gpu(json),
            Command::Up {
                targets,
                idle_timeout,
            } => servers::up(&open_project(root)?, &targets, idle_timeout),
            Command::Down { targets } => servers::down(&open_project(root)?, &targets),
            Command::Supervise {
                target,
                idle_timeout,
            } => servers::supervise(&open_project(root)?, &target, idle_timeout),
        }
    }
}

/// `ttft:200 tpot:50 e2el:2000`, as `vllm bench serve --goodput` reads it.
fn parse_goodput(items: &[String]) -> Result<Option<servegate::metrics::Slo>, String> {
    if items.is_empty() {
        return Ok(None);
    }
    let mut slo = servegate::metrics::Slo::default();
    for item in items {
        let (name, value) = item
            .split_once(':')
            .ok_or_else(|| format!("`{item}`: expected NAME:MILLISECONDS"))?;
        let ms: f64 = value
            .parse()
            .map_err(|_| format!("`{item}`: `{value}` is not a number"))?;
        servegate::config::limits::number(ms, servegate::config::limits::SLO_MS)
            .map_err(|e| format!("`{item}`: {e}"))?;
        match name {
            "ttft" => slo.ttft_ms = Some(ms),
            "tpot" => slo.tpot_ms = Some(ms),
            "e2el" => slo.e2e_ms = Some(ms),
            _ => {
                return Err(format!(
                    "`{item}`: unknown objective `{name}` (ttft, tpot, e2el)"
                ))
            }
        }
    }
    Ok(Some(slo))
}

/// The project folder: `--root`, else the nearest folder up from here holding
/// servegate.toml.
fn project_root(root: Option<PathBuf>) -> Option<PathBuf> {
    root.or_else(|| {
        std::env::current_dir()
            .ok()
            .and_then(|d| Project::find_root(&d))
    })
}

/// The project the project commands (run, list, check, up, …) work in.
fn open_project(root: Option<PathBuf>) -> Result<Project, CliError> {
    match project_root(root) {
        Some(root) if root.join(servegate::config::PROJECT_FILE).is_file() => {
            Ok(Project::open(root))
        }
        Some(root) => Err(CliError::Usage(format!(
            "{} has no {}",
            root.display(),
            servegate::config::PROJECT_FILE
        ))),
        None => Err(CliError::Usage(format!(
            "no {} here or in any parent folder (use --root)",
            servegate::config::PROJECT_FILE
        ))),
    }
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
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
