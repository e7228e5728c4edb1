//! What a run says as it goes. The runners emit these events in order;
//! reporters (the console, the JSON results file, the Markdown summary, the
//! test harness) consume them, each with the results gathered so far, so
//! every output is written from one place as soon as there is something
//! to write.

use crate::results::{CaseError, CaseReport, IgnoredCase, RunResults, SuiteReport};

/// One step of a run.
#[derive(Debug)]
pub enum Event<'a> {
    /// The run is about to start measuring (the results file can be created).
    Started,
    /// A case this machine cannot run.
    Ignored(&'a IgnoredCase),
    /// A target side of a case is about to be measured (`case: candidate `name``).
    Measuring(&'a str),
    /// A scenario was measured on both sides and decided.
    ScenarioFinished(&'a CaseReport),
    /// Every scenario of the run is done (where a cross-case table goes).
    ScenariosDone,
    /// A quality suite was scored on both sides and decided.
    SuiteFinished(&'a SuiteReport),
    /// A case (scenario or suite) could not be measured.
    CaseFailed(&'a CaseError),
    /// The run ended: `so_far` is complete and holds the verdict.
    Finished,
}

/// A consumer of run events.
pub trait Reporter {
    /// Hears one event; `so_far` holds every result up to and including it.
    fn event(&mut self, event: &Event<'_>, so_far: &RunResults);
}

/// Several reporters hearing the same events, in order.
pub struct Fanout<'a>(pub Vec<&'a mut dyn Reporter>);

impl Reporter for Fanout<'_> {
    fn event(&mut self, event: &Event<'_>, so_far: &RunResults) {
        for r in &mut self.0 {
            r.event(event, so_far);
        }
    }
}

/// A reporter that keeps every event's kind, for tests and for callers
/// that only want the final results.
#[derive(Debug, Default)]
pub struct Recorder {
    pub seen: Vec<String>,
}

impl Reporter for Recorder {
    fn event(&mut self, event: &Event<'_>, _: &RunResults) {
        self.seen.push(match event {
            Event::Started => "started".into(),
            Event::Ignored(c) => format!("ignored {}", c.name),
            Event::Measuring(what) => format!("measuring {what}"),
            Event::ScenarioFinished(c) => format!("scenario {}", c.name),
            Event::ScenariosDone => "scenarios done".into(),
            Event::SuiteFinished(s) => format!("suite {}", s.name),
            Event::CaseFailed(e) => format!("error {}", e.name),
            Event::Finished => "finished".into(),
        });
    }
}
