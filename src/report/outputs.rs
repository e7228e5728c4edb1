//! The run's files as reporters: the JSON results file, rewritten
//! atomically after every case and marked incomplete until the run ends (so
//! an interrupted run keeps what it measured), and the Markdown summary,
//! written when the run ends (and appended to `$GITHUB_STEP_SUMMARY`).

use std::path::{Path, PathBuf};

use crate::events::{Event, Reporter};
use crate::files;
use crate::results::RunResults;

/// Keeps the results file up to date.
pub struct ResultsFile {
    path: PathBuf,
    warned: bool,
    /// Where the final results went, once the run finished: `path`, or a
    /// file in the temporary folder when `path` could not be written.
    pub written: Option<anyhow::Result<PathBuf>>,
}

impl ResultsFile {
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            warned: false,
            written: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Reporter for ResultsFile {
    fn event(&mut self, event: &Event<'_>, so_far: &RunResults) {
        match event {
            Event::Measuring(_) | Event::ScenariosDone => {}
            Event::Finished => self.written = Some(files::write_json_keeping(&self.path, so_far)),
            _ => {
                if let Err(e) = files::write_json_atomic(&self.path, so_far) {
                    if !self.warned {
                        eprintln!("warning: could not write {}: {e:#}", self.path.display());
                        self.warned = true;
                    }
                }
            }
        }
    }
}

/// Writes the Markdown summary when the run ends.
pub struct SummaryFile {
    path: PathBuf,
    /// Also appended here (a CI's job summary), when set.
    append_to: Option<PathBuf>,
    /// The outcome of writing `path`, once the run finished.
    pub written: Option<anyhow::Result<()>>,
}

impl SummaryFile {
    pub fn new(path: PathBuf, append_to: Option<PathBuf>) -> Self {
        Self {
            path,
            append_to,
            written: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Reporter for SummaryFile {
    fn event(&mut self, event: &Event<'_>, so_far: &RunResults) {
        if !matches!(event, Event::Finished) {
            return;
        }
        let summary = super::markdown::run_summary(so_far);
        self.written = Some(files::write_atomic(&self.path, summary.as_bytes()));
        if let Some(extra) = &self.append_to {
            if let Err(e) = append_text(extra, &summary) {
                eprintln!("warning: could not append to {}: {e}", extra.display());
            }
        }
    }
}

fn append_text(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{text}")
}
