//! `run`, `list`, `check` and `gate-check`: the project's cases.

use std::path::PathBuf;

use servegate::config::CaseKind;
use servegate::discover::{Case, Project};
use servegate::environment::Environment;
use servegate::files;
use servegate::gatecheck;
use servegate::report::{self, CaseError, RunResults};
use servegate::run::scenario::{self, CaseReport, RunOptions};

use super::CliError;

/// The representative point `gate-check` measures by default.
pub(super) const DEFAULT_GATE_CHECK_CASE: &str = "scenario::grid::short_mt64_c4";

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
fn select(project: &Project, filter: Option<&str>, exact: bool) -> Result<Vec<Case>, CliError> {
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
        Err(CliError::InvalidReported)
    } else {
        Ok(cases)
    }
}

pub(super) fn list(project: &Project, filter: Option<&str>, reasons: bool) -> Result<(), CliError> {
    let cases = select(project, filter, false)?;
    for c in cases {
        match (&c.ignore_reason, reasons) {
            (Some(why), true) => println!("{}  (ignored: {why})", c.name),
            _ => println!("{}", c.name),
        }
    }
    Ok(())
}

pub(super) fn check(project: &Project) -> Result<(), CliError> {
    let mut errors = 0;
    let mut count = 0;
    for (file, loaded) in project.load_all() {
        match loaded {
            Ok(cases) => {
                let before = errors;
                for c in &cases {
                    if let Err(e) = scenario::check_case(project, c) {
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
        Err(CliError::InvalidReported)
    } else {
        println!("{count} cases valid");
        Ok(())
    }
}

pub(super) fn run(
    project: &Project,
    filter: Option<&str>,
    exact: bool,
    output: Option<PathBuf>,
    save_detailed: bool,
    markdown: Option<PathBuf>,
    open_files: Option<u64>,
) -> Result<(), CliError> {
    let cases = select(project, filter, exact)?;
    let most = cases
        .iter()
        .filter(|c| c.kind == CaseKind::Scenario)
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
        return Err(CliError::Usage(format!(
            "no case matches {}",
            filter.unwrap_or("(all)")
        )));
    }
    // Ctrl-C ends the run with 130 whatever its targets; the results file
    // written so far stays, marked incomplete.
    servegate::server::process::exit_on_interrupt();
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
        .partition(|c| c.kind == CaseKind::Suite);
    let path = output.unwrap_or_else(|| {
        servegate::config::results_dir(&project.root, &project.env)
            .join(format!("run-{}.json", started.format("%Y%m%d-%H%M%S")))
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
        if let Err(e) = files::write_json_atomic(&path, results) {
            if !save_failed {
                eprintln!("warning: could not write {}: {e:#}", path.display());
                save_failed = true;
            }
        }
    };
    save(&results);
    // Every target starts once for all the cases that use it.
    scenario::run_cases_reporting(
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
    servegate::run::suite::run_suites_reporting(
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
    match files::write_json_keeping(&path, &results) {
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
    match files::write_atomic(&md_path, summary.as_bytes()) {
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
    let failures = results.failure_lines();
    if !failures.is_empty() {
        println!("failures:");
        for line in failures {
            println!("    {line}");
        }
    }
    if failed == 0 {
        Ok(())
    } else {
        Err(CliError::FailedQuietly)
    }
}

fn append_text(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{text}")
}

pub(super) fn gate_check(
    project: &Project,
    filter: &str,
    trials: u32,
    slowdown: f64,
) -> Result<(), CliError> {
    let cases: Vec<Case> = select(project, Some(filter), false)?
        .into_iter()
        .filter(|c| c.kind == CaseKind::Scenario && c.ignore_reason.is_none())
        .collect();
    if cases.is_empty() {
        return Err(CliError::Usage(format!("no scenario matches {filter}")));
    }
    if trials == 0 || !(slowdown.is_finite() && slowdown > 0.0) {
        return Err(CliError::Usage(
            "--trials must be at least 1 and --slowdown positive".into(),
        ));
    }
    let options = gatecheck::GateCheckOptions { trials, slowdown };
    let step = (trials / 10).max(1);
    let outcome = gatecheck::run(project, &cases, &options, |done, total| {
        if done % step == 0 || done == total {
            eprintln!("gate-check: {done}/{total} trials");
        }
    });
    let r = outcome.map_err(|e| CliError::Failed(format!("{e:#}")))?;
    print!("{}", gatecheck::table(&r));
    if r.meets_targets() {
        Ok(())
    } else {
        Err(CliError::FailedQuietly)
    }
}
