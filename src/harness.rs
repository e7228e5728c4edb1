//! Turns case files into libtest-mimic trials (`tests/gate.rs`).
//!
//! Nextest lists the trials once, then runs each in its own process with
//! `--exact NAME`; in that mode only the file the name points at is read.
//! Cases this machine cannot run are marked ignored at list time, because a
//! run-time skip would show as a pass under nextest.

use libtest_mimic::{Arguments, Failed, Trial};

use crate::discover::{Case, Project};
use crate::events::{Event, Reporter};
use crate::report;
use crate::run::RunOptions;

/// Entry point of the `gate` test binary. The project is found at run time
/// (see [`project_root`]), so a binary unpacked from a nextest archive on
/// another machine reads the case files there; without a project it fails
/// instead of listing no test.
pub fn main() -> std::process::ExitCode {
    crate::open_files::raise_soft_limit();
    let mut args = Arguments::from_args();
    // Benchmarks measure time: one at a time unless asked otherwise.
    if args.test_threads.is_none() {
        args.test_threads = Some(1);
    }
    let root = match project_root(
        std::env::var_os("SERVEGATE_ROOT"),
        std::env::var_os("CARGO_MANIFEST_DIR"),
        std::env::current_dir().ok(),
    ) {
        Ok(root) => root,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let project = Project::open(root);
    let trials = trials(&project, &args);
    libtest_mimic::run(&args, trials).exit_code()
}

/// The project folder: `SERVEGATE_ROOT` when set, else `CARGO_MANIFEST_DIR`
/// as the test runner sets it for this process (nextest remaps it when it
/// runs an archive elsewhere), else the working folder. It must hold
/// `servegate.toml`.
pub fn project_root(
    servegate_root: Option<std::ffi::OsString>,
    manifest_dir: Option<std::ffi::OsString>,
    working_dir: Option<std::path::PathBuf>,
) -> Result<std::path::PathBuf, String> {
    let (root, from) = if let Some(r) = servegate_root.filter(|r| !r.is_empty()) {
        (r.into(), "SERVEGATE_ROOT")
    } else if let Some(m) = manifest_dir.filter(|m| !m.is_empty()) {
        (m.into(), "CARGO_MANIFEST_DIR")
    } else if let Some(w) = working_dir {
        (w, "the working folder")
    } else {
        return Err("no project folder: set SERVEGATE_ROOT".into());
    };
    let root: std::path::PathBuf = root;
    if root.join(crate::config::PROJECT_FILE).is_file() {
        Ok(root)
    } else {
        Err(format!(
            "{} (from {from}) has no {}: no case to run. Point SERVEGATE_ROOT at the project, \
             or run the tests from its folder (an archive needs `--workspace-remap PROJECT`)",
            root.display(),
            crate::config::PROJECT_FILE
        ))
    }
}

/// The trials for these arguments.
pub fn trials(project: &Project, args: &Arguments) -> Vec<Trial> {
    if args.exact && !args.list {
        if let Some(name) = &args.filter {
            return exact_trials(project, name);
        }
    }
    let mut trials = Vec::new();
    for (file, loaded) in project.load_all() {
        match loaded {
            Ok(cases) => trials.extend(cases.into_iter().map(|c| case_trial(project, c))),
            Err(e) => trials.push(error_trial(file.name(), e.to_string())),
        }
    }
    trials
}

/// Reads only the file `name` points at. A name that resolves to nothing
/// still yields a failing trial of that name, so it never passes by running nothing.
fn exact_trials(project: &Project, name: &str) -> Vec<Trial> {
    let Some(file) = project.file_for_name(name) else {
        return vec![error_trial(
            name.to_string(),
            format!("no case file for `{name}`"),
        )];
    };
    match project.load(&file) {
        Ok(cases) => {
            let mut matching: Vec<Trial> = cases
                .into_iter()
                .filter(|c| c.name == name)
                .map(|c| case_trial(project, c))
                .collect();
            if matching.is_empty() {
                matching.push(error_trial(
                    name.to_string(),
                    format!("{} has no case named `{name}`", file.path.display()),
                ));
            }
            matching
        }
        Err(e) => vec![error_trial(name.to_string(), e.to_string())],
    }
}

fn error_trial(name: String, message: String) -> Trial {
    Trial::test(name, move || Err(Failed::from(message)))
}

fn case_trial(project: &Project, case: Case) -> Trial {
    let ignored = case.ignore_reason.is_some();
    let name = case.name.clone();
    let project = project.clone();
    Trial::test(name, move || run_trial(&project, &case)).with_ignored_flag(ignored)
}

fn run_trial(project: &Project, case: &Case) -> Result<(), Failed> {
    let mut reporter = TrialReporter {
        cases_dir: case.config.results_dir.join("cases"),
    };
    let options = RunOptions {
        keep_records: true,
        progress: false,
    };
    let results = crate::run::run(project, &[case], options, &mut reporter);
    if let Some(e) = results.errors.first() {
        return Err(Failed::from(e.error.clone()));
    }
    if let Some(r) = results.cases.iter().find(|r| !r.passed) {
        return Err(Failed::from(report::failure_message(r)));
    }
    if let Some(s) = results.suites.iter().find(|s| !s.passed) {
        return Err(Failed::from(report::quality::failure_message(s)));
    }
    if results.cases.is_empty() && results.suites.is_empty() {
        return Err(Failed::from(format!("{}: nothing was measured", case.name)));
    }
    Ok(())
}

/// One trial's reporter: the case's tables on stdout (nextest shows them
/// with the verdict) and its report under `<results_dir>/cases/`, where
/// `servegate report` combines the trials of a run.
struct TrialReporter {
    cases_dir: std::path::PathBuf,
}

impl TrialReporter {
    fn save<T: serde::Serialize>(&self, name: &str, report: &T) {
        let path = self
            .cases_dir
            .join(format!("{}.json", crate::files::file_stem(name)));
        if let Err(e) = crate::files::write_json_atomic(&path, report) {
            eprintln!("warning: could not write {}: {e:#}", path.display());
        }
    }
}

impl Reporter for TrialReporter {
    fn event(&mut self, event: &Event<'_>, _: &crate::results::RunResults) {
        match event {
            Event::Measuring(what) => eprintln!("running {what} …"),
            Event::ScenarioFinished(r) => {
                println!(
                    "{}\n{}",
                    report::target_table(r),
                    report::gate_table(&r.gate)
                );
                self.save(&r.name, *r);
            }
            Event::SuiteFinished(r) => {
                println!("{}", report::quality::suite_text(r));
                self.save(&r.name, *r);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::project_root;

    #[test]
    fn the_project_is_found_at_run_time_or_the_binary_says_why_not() {
        let project = tempfile::tempdir().unwrap();
        std::fs::write(project.path().join("servegate.toml"), "").unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let p = |d: &tempfile::TempDir| Some(d.path().as_os_str().to_owned());
        // SERVEGATE_ROOT first, then the runner's CARGO_MANIFEST_DIR, then the working folder.
        assert_eq!(
            project_root(p(&project), p(&elsewhere), None).unwrap(),
            project.path()
        );
        assert_eq!(
            project_root(None, p(&project), None).unwrap(),
            project.path()
        );
        assert_eq!(
            project_root(None, None, Some(project.path().to_path_buf())).unwrap(),
            project.path()
        );
        // A folder without servegate.toml is an error naming it and where it came from.
        let e = project_root(None, p(&elsewhere), None).unwrap_err();
        assert!(
            e.contains("CARGO_MANIFEST_DIR") && e.contains("servegate.toml"),
            "{e}"
        );
    }
}
