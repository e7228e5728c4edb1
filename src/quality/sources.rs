//! Where a suite's task records are: the task's or the suite's own files,
//! the suite's data folder, the project's data folder, or the Hugging Face
//! cache. The configuration's paths are absolute already (see `config::resolve_all`).

use super::data;
use super::tasks::Task;
use crate::config::{CaseConfig, DataPaths};

/// Where a task's records are, or a message listing where they were looked for.
pub fn locate(c: &CaseConfig, task: &Task) -> Result<data::RecordSource, String> {
    let name = task.name();
    let explicit = match (task, &c.data) {
        (Task::Generic { spec, .. }, _) if spec.data.is_some() => spec.data.clone(),
        (Task::Generation { spec, .. }, _) if spec.data.is_some() => spec.data.clone(),
        (_, Some(DataPaths::Files(files))) => files.get(name).cloned(),
        _ => None,
    };
    let folder = match &c.data {
        Some(DataPaths::Folder(f)) => Some(f.clone()),
        _ => None,
    };
    let data_dir = c.data_dir.clone();
    let hub = task.hub_source();
    data::locate(
        name,
        explicit.as_deref(),
        folder.as_deref(),
        data_dir.as_deref(),
        hub.as_ref().map(|h| (h.repo, h.config, h.split)),
    )
}

/// The records few-shot examples are drawn from: `<task>_<split>` found as
/// the task's records are (`hellaswag_train.jsonl`, `mmlu_dev.jsonl`), none
/// for a task that draws from the records it evaluates (truthfulqa_mc2).
pub fn fewshot_records(c: &CaseConfig, task: &Task) -> Result<Vec<serde_json::Value>, String> {
    match locate_fewshot(c, task)? {
        Some(source) => data::read_source(&source),
        None => Ok(Vec::new()),
    }
}

/// Where a task's few-shot records are (`None` for a task that takes none).
fn locate_fewshot(c: &CaseConfig, task: &Task) -> Result<Option<data::RecordSource>, String> {
    let Some(split) = task.fewshot_split() else {
        return Ok(None);
    };
    let folder = match &c.data {
        Some(DataPaths::Folder(f)) => Some(f.clone()),
        _ => None,
    };
    let data_dir = c.data_dir.clone();
    let hub = task.fewshot_hub_source();
    data::locate(
        &format!("{}_{split}", task.name()),
        None,
        folder.as_deref(),
        data_dir.as_deref(),
        hub.as_ref().map(|h| (h.repo, h.config, h.split)),
    )
    .map(Some)
}

/// Why a suite cannot run on this machine (its data is missing), for listing.
pub fn missing_data(c: &CaseConfig) -> Option<String> {
    for name in &c.tasks {
        let Ok(task) = Task::resolve(name, &c.mc_tasks, &c.gen_tasks) else {
            continue;
        };
        if let Err(e) = locate(c, &task) {
            return Some(e);
        }
        if c.num_fewshot.unwrap_or_else(|| task.default_fewshot()) > 0 {
            if let Err(e) = locate_fewshot(c, &task) {
                return Some(format!("few-shot examples: {e}"));
            }
        }
    }
    None
}
