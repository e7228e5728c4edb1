//! Every path a case names, taken against the project root once, when the
//! case is loaded: runners receive absolute paths and never need the root
//! to find a file. Pure: no file is read here.

use std::path::{Path, PathBuf};

use super::{Baseline, CaseConfig, DataPaths, PromptSource};

/// `path` against `root`, unless it is absolute already.
pub fn resolve(root: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        root.join(path)
    }
}

/// Makes every path of `c` absolute against `root`: the results, prompt,
/// tokenizer, weight and data folders and files, the files a case requires,
/// command targets' working folders, recorded baselines and ShareGPT files.
pub fn resolve_all(c: &mut CaseConfig, root: &Path) {
    let at = |p: &mut PathBuf| *p = resolve(root, p);
    at(&mut c.results_dir);
    at(&mut c.prompts_dir);
    c.tokenizer.iter_mut().for_each(at);
    c.model_dir.iter_mut().for_each(at);
    c.data_dir.iter_mut().for_each(at);
    c.requires_files.iter_mut().for_each(at);
    match &mut c.data {
        Some(DataPaths::Folder(f)) => at(f),
        Some(DataPaths::Files(files)) => files.values_mut().for_each(at),
        None => {}
    }
    for task in c.mc_tasks.values_mut() {
        task.data.iter_mut().for_each(at);
    }
    for task in c.gen_tasks.values_mut() {
        task.data.iter_mut().for_each(at);
    }
    for target in c.targets.values_mut() {
        target.cwd.iter_mut().for_each(at);
    }
    if let Baseline::Recorded(r) = &mut c.baseline {
        at(&mut r.results);
    }
    let matrix = c.matrix.prompts.iter_mut().flatten();
    for source in std::iter::once(&mut c.workload.prompts).chain(matrix) {
        match source {
            PromptSource::ShareGpt { sharegpt } => at(sharegpt),
            PromptSource::Custom { custom } => at(custom),
            PromptSource::Trace { trace } => at(&mut trace.path),
            PromptSource::Conversations { conversations } => {
                conversations.sharegpt.iter_mut().for_each(at)
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_join_the_root_and_absolute_ones_stay() {
        let mut c: CaseConfig = toml::from_str(
            r#"
            tokenizer = "tok/tokenizer.json"
            data_dir = "/data/hub"
            requires_files = ["weights/model.safetensors"]
            data = { hellaswag = "sets/h.jsonl" }
            baseline = { results = "results/before.json" }
            [workload]
            prompts = { sharegpt = "convs.json" }
            [targets.candidate]
            command = ["./serve", "{port}"]
            cwd = "engine"
            "#,
        )
        .unwrap();
        resolve_all(&mut c, Path::new("/p"));
        assert_eq!(c.results_dir, Path::new("/p/results"));
        assert_eq!(c.prompts_dir, Path::new("/p/prompts"));
        assert_eq!(c.tokenizer.unwrap(), Path::new("/p/tok/tokenizer.json"));
        assert_eq!(c.data_dir.unwrap(), Path::new("/data/hub"));
        assert_eq!(
            c.requires_files,
            [Path::new("/p/weights/model.safetensors")]
        );
        let Some(DataPaths::Files(files)) = &c.data else {
            panic!("files")
        };
        assert_eq!(files["hellaswag"], Path::new("/p/sets/h.jsonl"));
        let Baseline::Recorded(r) = &c.baseline else {
            panic!("recorded")
        };
        assert_eq!(r.results, Path::new("/p/results/before.json"));
        assert_eq!(
            c.workload.prompts,
            PromptSource::ShareGpt {
                sharegpt: "/p/convs.json".into()
            }
        );
        assert_eq!(
            c.targets["candidate"].cwd.as_deref(),
            Some(Path::new("/p/engine"))
        );
    }
}
