//! Running cases: scenarios (a workload against both targets, then the
//! gate) and quality suites (tasks scored on both targets, then the
//! tolerances). [`run`] is the one entry point the command line and the test
//! harness share: it runs every case it is given and tells a
//! [`Reporter`](crate::events::Reporter) what happens as it happens.

pub mod progress;
pub mod scenario;
pub mod suite;

use std::cell::RefCell;

use crate::config::CaseKind;
use crate::discover::{Case, Project};
use crate::environment::Environment;
use crate::events::{Event, Reporter};
use crate::results::{task_scores, CaseError, IgnoredCase, RunResults};
pub use scenario::RunOptions;

/// Runs `cases` (scenarios first, every target started once for all the
/// scenarios that use it, then suites) and returns the results, complete.
/// Cases marked ignored are reported as such and not run.
pub fn run(
    project: &Project,
    cases: &[&Case],
    options: RunOptions,
    reporter: &mut dyn Reporter,
) -> RunResults {
    let results = begun(project);
    // Both callbacks of a runner report through the same state.
    let state = RefCell::new((results, reporter));
    let emit = |event: &Event<'_>| {
        let mut s = state.borrow_mut();
        let (results, reporter) = &mut *s;
        reporter.event(event, results);
    };
    emit(&Event::Started);
    let mut runnable = Vec::new();
    for case in cases {
        match &case.ignore_reason {
            Some(why) => {
                let ignored = IgnoredCase {
                    name: case.name.clone(),
                    reason: why.clone(),
                };
                state.borrow_mut().0.ignored.push(ignored.clone());
                emit(&Event::Ignored(&ignored));
            }
            None => runnable.push(*case),
        }
    }
    let (suites, scenarios): (Vec<&Case>, Vec<&Case>) = runnable
        .into_iter()
        .partition(|c| c.kind == CaseKind::Suite);
    let failed = |name: &str, e: &anyhow::Error| {
        let error = CaseError {
            name: name.to_string(),
            error: format!("{e:#}"),
        };
        state.borrow_mut().0.errors.push(error.clone());
        emit(&Event::CaseFailed(&error));
    };
    scenario::run_cases_reporting(
        project,
        &scenarios,
        options,
        &mut |line| emit(&Event::Measuring(line)),
        &mut |i, outcome| match outcome {
            Ok(report) => {
                state.borrow_mut().0.cases.push(report.clone());
                emit(&Event::ScenarioFinished(report));
            }
            Err(e) => failed(&scenarios[i].name, e),
        },
    );
    if !scenarios.is_empty() {
        emit(&Event::ScenariosDone);
    }
    suite::run_suites_reporting(
        project,
        &suites,
        options.progress,
        &mut |line| emit(&Event::Measuring(line)),
        &mut |i, outcome| match outcome {
            Ok(report) => {
                {
                    let mut s = state.borrow_mut();
                    s.0.suites.push(report.clone());
                    s.0.quality = task_scores(&s.0.suites);
                }
                emit(&Event::SuiteFinished(report));
            }
            Err(e) => failed(&suites[i].name, e),
        },
    );
    finish(&mut state.borrow_mut().0);
    emit(&Event::Finished);
    state.into_inner().0
}

/// The results of a run that has just begun: nothing measured, incomplete.
fn begun(project: &Project) -> RunResults {
    RunResults {
        servegate_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: chrono::Local::now().to_rfc3339(),
        finished_at: String::new(),
        passed: false,
        complete: false,
        environment: Some(Environment::collect(&project.root)),
        cases: Vec::new(),
        errors: Vec::new(),
        ignored: Vec::new(),
        quality: Vec::new(),
        suites: Vec::new(),
    }
}

/// Marks the results complete with their verdict: passed only when no case
/// failed and none could not be measured.
fn finish(results: &mut RunResults) {
    let (_, failed, _, errors) = results.counts();
    results.finished_at = chrono::Local::now().to_rfc3339();
    results.passed = failed + errors == 0;
    results.complete = true;
}
