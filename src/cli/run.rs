//! `run`, `list`, `check` and `gate-check`: the project's cases.

use std::path::PathBuf;

use servegate::config::CaseKind;
use servegate::discover::{Case, Project};
use servegate::events::{Event, Fanout, Reporter};
use servegate::gatecheck;
use servegate::report::{self, RunResults};
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
    for section in report::console::side_sections(r) {
        println!("{section}");
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
pub(super) fn select(
    project: &Project,
    filter: Option<&str>,
    exact: bool,
) -> Result<Vec<Case>, CliError> {
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

/// `run`'s flags beyond the case filter.
pub(super) struct RunFlags {
    pub output: Option<PathBuf>,
    pub save_detailed: bool,
    pub markdown: Option<PathBuf>,
    /// `--goodput`: the objectives of every scenario, replacing its file's.
    pub slo: Option<servegate::metrics::Slo>,
    /// `--cold-connections`: no connection opened ahead of measuring.
    pub cold_connections: bool,
}

pub(super) fn run(
    project: &Project,
    filter: Option<&str>,
    exact: bool,
    flags: RunFlags,
    open_files: Option<u64>,
) -> Result<(), CliError> {
    let RunFlags {
        output,
        save_detailed,
        markdown,
        slo,
        cold_connections,
    } = flags;
    let mut cases = select(project, filter, exact)?;
    if let Some(slo) = slo {
        override_slo(&mut cases, slo);
    }
    if cold_connections {
        for c in cases.iter_mut().filter(|c| c.kind == CaseKind::Scenario) {
            c.config.workload.warm_connections = false;
        }
    }
    warn_open_files(&cases, open_files);
    if cases.is_empty() {
        return Err(CliError::Usage(format!(
            "no case matches {}",
            filter.unwrap_or("(all)")
        )));
    }
    // Ctrl-C ends the run with 130 whatever its targets; the results file
    // written so far stays, marked incomplete.
    servegate::server::process::exit_on_interrupt();
    let path = output.unwrap_or_else(|| {
        let started = chrono::Local::now();
        servegate::config::results_dir(&project.root, &project.env)
            .join(format!("run-{}.json", started.format("%Y%m%d-%H%M%S")))
    });
    let md_path = markdown.unwrap_or_else(|| path.with_extension("md"));
    let step_summary = std::env::var_os("GITHUB_STEP_SUMMARY")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let mut console = Console;
    let mut results_file = report::outputs::ResultsFile::new(path);
    let mut summary_file = report::outputs::SummaryFile::new(md_path, step_summary);
    let selected: Vec<&Case> = cases.iter().collect();
    let results = servegate::run::run(
        project,
        &selected,
        RunOptions {
            keep_records: save_detailed,
            progress: true,
        },
        // The file first: a case shown on the terminal is already on disk
        // when an interrupt follows.
        &mut Fanout(vec![&mut results_file, &mut summary_file, &mut console]),
    );
    print_written(&mut results_file, &mut summary_file);
    print_totals(&results)
}

/// Sets the goodput objectives of every scenario, replacing its file's
/// `workload.slo`; quality suites have none.
fn override_slo(cases: &mut [Case], slo: servegate::metrics::Slo) {
    for c in cases.iter_mut().filter(|c| c.kind == CaseKind::Scenario) {
        c.config.workload.slo = Some(slo);
    }
}

/// Streams in flight hold a socket each: warns when the open-file limit is
/// below what the busiest scenario needs.
fn warn_open_files(cases: &[Case], open_files: Option<u64>) {
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
}

/// Where the results and the summary went.
fn print_written(
    results_file: &mut report::outputs::ResultsFile,
    summary_file: &mut report::outputs::SummaryFile,
) {
    let path = results_file.path().to_path_buf();
    match results_file.written.take() {
        Some(Ok(written)) if written == path => println!("results: {}", path.display()),
        Some(Ok(written)) => eprintln!(
            "warning: could not write {}; the results were saved to {}",
            path.display(),
            written.display()
        ),
        Some(Err(e)) => eprintln!("warning: could not write {}: {e:#}", path.display()),
        None => {}
    }
    let md_path = summary_file.path().to_path_buf();
    match summary_file.written.take() {
        Some(Ok(())) => println!("summary: {}", md_path.display()),
        Some(Err(e)) => eprintln!("warning: could not write {}: {e:#}", md_path.display()),
        None => {}
    }
}

/// The counts, then each failure with its reason, as a test runner ends.
pub(super) fn print_totals(results: &RunResults) -> Result<(), CliError> {
    let (passed, failed, inconclusive, errors) = results.counts();
    let failed = failed + errors;
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

/// The run on the terminal: each case's tables as soon as it is decided,
/// what is being measured on stderr.
struct Console;

impl Reporter for Console {
    fn event(&mut self, event: &Event<'_>, so_far: &RunResults) {
        match event {
            Event::Started | Event::Finished => {}
            Event::Ignored(c) => println!("{}: ignored ({})", c.name, c.reason),
            Event::Measuring(what) => eprintln!("running {what} …"),
            Event::ScenarioFinished(r) => print_case(r),
            Event::ScenariosDone => {
                if !so_far.cases.is_empty() {
                    println!("\nCandidate / baseline ratios");
                    println!("{}", report::comparison_table(&so_far.cases));
                }
            }
            Event::SuiteFinished(r) => {
                println!("\n{} — {}", r.name, if r.passed { "pass" } else { "FAIL" });
                print!("{}", report::quality::suite_text(r));
            }
            Event::CaseFailed(e) => println!("\n{}: error: {}", e.name, e.error),
        }
    }
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
