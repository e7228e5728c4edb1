//! `report` and `compare`: tables and reports from saved results.

use std::path::{Path, PathBuf};

use servegate::files;
use servegate::report::{self, RunResults};

use super::CliError;

#[derive(Clone, Copy, clap::ValueEnum)]
pub(super) enum SideArg {
    Candidate,
    Baseline,
}

pub(super) fn compare(a: &Path, b: &Path, side: SideArg) -> Result<(), CliError> {
    let side = match side {
        SideArg::Candidate => report::compare::Side::Candidate,
        SideArg::Baseline => report::compare::Side::Baseline,
    };
    let load = |p: &Path| -> anyhow::Result<Vec<report::compare::Entry>> {
        let text = std::fs::read_to_string(p)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", p.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| anyhow::anyhow!("{}: not JSON: {e}", p.display()))?;
        report::compare::entries(&value, side)
            .map_err(|e| anyhow::anyhow!("{}: {e:#}", p.display()))
    };
    let (ea, eb) = match (load(a), load(b)) {
        (Ok(ea), Ok(eb)) => (ea, eb),
        (Err(e), _) | (_, Err(e)) => return Err(CliError::Usage(format!("{e:#}"))),
    };
    let (rows, unmatched) = report::compare::compare(&ea, &eb);
    if rows.is_empty() {
        return Err(CliError::Failed(format!(
            "{} and {} have no point in common ({} and {} points)",
            a.display(),
            b.display(),
            ea.len(),
            eb.len()
        )));
    }
    println!("A = {}\nB = {}\nratios A / B", a.display(), b.display());
    println!("{}", report::compare::table_text(&rows));
    for u in &unmatched {
        println!("not compared: {u}");
    }
    Ok(())
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

pub(super) fn report(
    paths: &[PathBuf],
    html: Option<&Path>,
    markdown: Option<&Path>,
) -> Result<(), CliError> {
    let files = results_files(paths).map_err(CliError::Usage)?;
    let mut runs = Vec::new();
    let mut single_cases = Vec::new();
    for f in &files {
        match servegate::results::read(f) {
            Ok(r) if r.is_single_case() => single_cases.push(r),
            Ok(r) => runs.push(r),
            Err(e) => return Err(CliError::Usage(format!("{e:#}"))),
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
        for section in report::console::side_sections(c) {
            println!("{section}");
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
        files::write_atomic(path, report::html::render(&runs).as_bytes())
            .map_err(|e| cannot_write(path, e))?;
        println!("html: {}", path.display());
    }
    if let Some(path) = markdown {
        files::write_atomic(path, report::markdown::run_summary(latest).as_bytes())
            .map_err(|e| cannot_write(path, e))?;
        println!("markdown: {}", path.display());
    }
    Ok(())
}

fn cannot_write(path: &Path, e: anyhow::Error) -> CliError {
    CliError::Failed(format!("cannot write {}: {e:#}", path.display()))
}

/// Where `merge` writes the merged run.
pub(super) struct MergeOutputs {
    pub results: Option<PathBuf>,
    pub markdown: Option<PathBuf>,
    pub html: Option<PathBuf>,
    pub junit: Option<PathBuf>,
}

pub(super) fn merge(
    project: &servegate::discover::Project,
    parts: &[PathBuf],
    outputs: MergeOutputs,
) -> Result<(), CliError> {
    let mut loaded = Vec::new();
    for part in parts {
        let run = read_part(part).map_err(CliError::Usage)?;
        println!(
            "part {}: {} case(s)",
            part.display(),
            run.cases.len() + run.suites.len() + run.errors.len()
        );
        loaded.push((part.display().to_string(), run));
    }
    let expected: Vec<String> = super::run::select(project, None, false)?
        .into_iter()
        .filter(|c| c.ignore_reason.is_none())
        .map(|c| c.name)
        .collect();
    let merged = servegate::results::merge_parts(loaded, &expected).map_err(|problems| {
        CliError::Failed(format!(
            "cannot merge the parts:\n  {}",
            problems.join("\n  ")
        ))
    })?;
    let write = |path: &Option<PathBuf>, what: &str, text: &dyn Fn() -> String| {
        if let Some(path) = path {
            files::write_atomic(path, text().as_bytes()).map_err(|e| cannot_write(path, e))?;
            println!("{what}: {}", path.display());
        }
        Ok::<(), CliError>(())
    };
    write(&outputs.results, "results", &|| {
        serde_json::to_string_pretty(&merged).expect("results serialise") + "\n"
    })?;
    write(&outputs.markdown, "summary", &|| {
        report::markdown::run_summary(&merged)
    })?;
    write(&outputs.html, "html", &|| {
        report::html::render(std::slice::from_ref(&merged))
    })?;
    write(&outputs.junit, "junit", &|| report::junit::junit(&merged))?;
    super::run::print_totals(&merged)
}

/// One part: a results file, or a folder of case files (every `*.json` in it).
fn read_part(path: &Path) -> Result<RunResults, String> {
    if !path.is_dir() {
        return servegate::results::read(path).map_err(|e| format!("{e:#}"));
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|f| f.is_file() && f.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut cases = Vec::new();
    for f in &files {
        cases.push(servegate::results::read(f).map_err(|e| format!("{e:#}"))?);
    }
    Ok(RunResults::combine(cases))
}
