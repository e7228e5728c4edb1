//! The `servegate` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use servegate::config::{CaseKind, SimSpec};
use servegate::discover::{Case, Project};
use servegate::report::{self, CaseError, RunResults};
use servegate::runner::{self, CaseReport, RunOptions};
use servegate::sim::SimServer;

#[derive(Parser)]
#[command(
    name = "servegate",
    version,
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
    },
    /// Print case names, one per line.
    List {
        filter: Option<String>,
        /// Also print why an ignored case is ignored.
        #[arg(long)]
        reasons: bool,
    },
    /// Validate every case file without running anything.
    Check,
    /// Run the embedded engine as a standalone server until interrupted.
    Sim {
        #[arg(long, default_value_t = 8100)]
        port: u16,
        #[arg(long, default_value = "127.0.0.1")]
        host: std::net::IpAddr,
        #[arg(long, default_value = "servegate-sim")]
        model: String,
        #[arg(long, default_value_t = SimSpec::default().ttft_ms)]
        ttft_ms: f64,
        #[arg(long, default_value_t = SimSpec::default().tpot_ms)]
        tpot_ms: f64,
        #[arg(long, default_value_t = 1.0)]
        slowdown: f64,
    },
}

/// Exit status for configuration and usage errors (clap uses 2 as well).
const CONFIG_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Sim {
        port,
        host,
        model,
        ttft_ms,
        tpot_ms,
        slowdown,
    } = &cli.command
    {
        let spec = SimSpec {
            ttft_ms: *ttft_ms,
            tpot_ms: *tpot_ms,
            slowdown: *slowdown,
        };
        return match SimServer::start(&spec, model, (*host, *port).into()) {
            Ok(server) => {
                eprintln!("servegate sim: serving `{model}` on {}", server.url());
                server.join();
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: cannot listen on {host}:{port}: {e}");
                ExitCode::FAILURE
            }
        };
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
        } => run(&project, filter.as_deref(), exact, output, save_detailed),
        Command::List { filter, reasons } => list(&project, filter.as_deref(), reasons),
        Command::Check => check(&project),
        Command::Sim { .. } => unreachable!("handled above"),
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
                for c in &cases {
                    if let Err(e) = runner::check_case(project, c) {
                        eprintln!("error: {e}");
                        errors += 1;
                    }
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
) -> ExitCode {
    let cases = match select(project, filter, exact) {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cases.is_empty() {
        eprintln!("error: no case matches {}", filter.unwrap_or("(all)"));
        return ExitCode::from(CONFIG_ERROR);
    }
    let started = chrono::Local::now();
    let mut reports: Vec<CaseReport> = Vec::new();
    let mut errors: Vec<CaseError> = Vec::new();
    let mut ignored = 0;
    for case in &cases {
        if let Some(why) = &case.ignore_reason {
            println!("{}: ignored ({why})", case.name);
            ignored += 1;
            continue;
        }
        if case.kind == CaseKind::Suite {
            let error = "quality evaluation not implemented yet".to_string();
            println!("{}: error: {error}", case.name);
            errors.push(CaseError {
                name: case.name.clone(),
                error,
            });
            continue;
        }
        eprintln!("running {} …", case.name);
        match runner::run_case(
            project,
            case,
            RunOptions {
                keep_records: save_detailed,
            },
        ) {
            Ok(r) => {
                println!("\n{} — {}", r.name, if r.passed { "pass" } else { "FAIL" });
                println!("{}", report::target_table(&r));
                println!("{}", report::gate_table(&r.gate));
                reports.push(r);
            }
            Err(e) => {
                println!("\n{}: error: {e:#}", case.name);
                errors.push(CaseError {
                    name: case.name.clone(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    if !reports.is_empty() {
        println!("\nCandidate / baseline ratios");
        println!("{}", report::comparison_table(&reports));
    }
    let failed = reports.iter().filter(|r| !r.passed).count() + errors.len();
    let passed = reports.len() - reports.iter().filter(|r| !r.passed).count();
    let results = RunResults {
        servegate_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started.to_rfc3339(),
        finished_at: chrono::Local::now().to_rfc3339(),
        passed: failed == 0,
        cases: reports,
        errors,
    };
    let path = output.unwrap_or_else(|| {
        let dir = match servegate::config::load_project(&project.root, &project.env) {
            Ok(c) => servegate::config::resolve(&project.root, &c.results_dir),
            Err(_) => project.root.join("results"),
        };
        dir.join(format!("run-{}.json", started.format("%Y%m%d-%H%M%S")))
    });
    match report::write_json_atomic(&path, &results) {
        Ok(()) => println!("results: {}", path.display()),
        Err(e) => eprintln!("warning: could not write {}: {e:#}", path.display()),
    }
    println!("{passed} passed, {failed} failed, {ignored} ignored");
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
