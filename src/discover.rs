//! Finds case files, loads them over the project defaults and expands matrices.
//!
//! A case's name is `scenario::<stem>` or `suite::<stem>`, plus `::<point>`
//! for a matrix point, so a name alone says which single file to read.

use std::path::{Path, PathBuf};

use crate::config::{
    self, CaseConfig, CaseKind, ConfigError, EnvOverride, Layers, PromptSource, RequestRate,
    PROJECT_FILE,
};

/// A project: the folder holding `servegate.toml`, and the environment overrides in force.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub env: Vec<EnvOverride>,
}

/// One case file on disk.
#[derive(Debug, Clone, PartialEq)]
pub struct CaseFile {
    pub kind: CaseKind,
    pub stem: String,
    pub path: PathBuf,
}

impl CaseFile {
    pub fn name(&self) -> String {
        format!("{}::{}", self.kind.prefix(), self.stem)
    }
}

/// One runnable case: a file, or one point of a file's matrix.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: String,
    pub kind: CaseKind,
    pub file: PathBuf,
    pub config: CaseConfig,
    /// Why this machine cannot run the case; it is then listed as ignored.
    pub ignore_reason: Option<String>,
}

impl Project {
    /// A project at `root` configured by this process's `SERVEGATE_*` variables.
    pub fn open(root: impl Into<PathBuf>) -> Self {
        Self::with_env(root, config::env_overrides(std::env::vars()))
    }

    pub fn with_env(root: impl Into<PathBuf>, env: Vec<EnvOverride>) -> Self {
        Self {
            root: root.into(),
            env,
        }
    }

    /// Walks up from `start` to the first folder holding `servegate.toml`.
    pub fn find_root(start: &Path) -> Option<PathBuf> {
        start
            .ancestors()
            .find(|dir| dir.join(PROJECT_FILE).is_file())
            .map(Path::to_path_buf)
    }

    pub fn project_file(&self) -> PathBuf {
        self.root.join(PROJECT_FILE)
    }

    /// Every case file, scenarios then suites, each sorted by stem.
    pub fn case_files(&self) -> Vec<CaseFile> {
        let mut out = Vec::new();
        for kind in [CaseKind::Scenario, CaseKind::Suite] {
            let Ok(entries) = std::fs::read_dir(self.root.join(kind.dir())) else {
                continue;
            };
            let mut files: Vec<CaseFile> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "toml"))
                .filter_map(|path| {
                    let stem = path.file_stem()?.to_str()?.to_string();
                    Some(CaseFile { kind, stem, path })
                })
                .collect();
            files.sort_by(|a, b| a.stem.cmp(&b.stem));
            out.extend(files);
        }
        out
    }

    /// The file a case name refers to, without reading any case file.
    pub fn file_for_name(&self, name: &str) -> Option<CaseFile> {
        let mut parts = name.split("::");
        let kind = match parts.next()? {
            "scenario" => CaseKind::Scenario,
            "suite" => CaseKind::Suite,
            _ => return None,
        };
        let stem = parts.next()?.to_string();
        let path = self.root.join(kind.dir()).join(format!("{stem}.toml"));
        path.is_file().then_some(CaseFile { kind, stem, path })
    }

    /// Loads one file over the project defaults and expands its matrix.
    pub fn load(&self, file: &CaseFile) -> Result<Vec<Case>, ConfigError> {
        let project_file = self.project_file();
        let mut config = config::load(&Layers {
            project_file: &project_file,
            case_file: Some(&file.path),
            kind: Some(file.kind),
            env: &self.env,
        })?;
        // Runners get absolute paths: the root is applied here, once.
        config::resolve_all(&mut config, &self.root);
        let ignore_reason = self.ignore_reason(&config).or_else(|| {
            // A suite whose records this machine lacks is ignored, not failed.
            (file.kind == CaseKind::Suite)
                .then(|| crate::quality::sources::missing_data(&config))
                .flatten()
        });
        // An axis the file varies stays in the point names even when the
        // environment pins it to one value, so names (and the history and
        // filters built on them) do not change under an override.
        let file_matrix = if self.env.is_empty() {
            config.matrix.clone()
        } else {
            config::load(&Layers {
                project_file: &project_file,
                case_file: Some(&file.path),
                kind: Some(file.kind),
                env: &[],
            })
            .map(|c| c.matrix)
            .unwrap_or_default()
        };
        Ok(expand_named(&config, &file_matrix)
            .into_iter()
            .map(|(suffix, config)| Case {
                name: match suffix {
                    Some(s) => format!("{}::{s}", file.name()),
                    None => file.name(),
                },
                kind: file.kind,
                file: file.path.clone(),
                config,
                ignore_reason: ignore_reason.clone(),
            })
            .collect())
    }

    /// Every case of every file; a file that fails to load yields its error instead.
    pub fn load_all(&self) -> Vec<(CaseFile, Result<Vec<Case>, ConfigError>)> {
        self.case_files()
            .into_iter()
            .map(|f| {
                let cases = self.load(&f);
                (f, cases)
            })
            .collect()
    }

    fn ignore_reason(&self, c: &CaseConfig) -> Option<String> {
        if c.requires_gpu && !crate::gpu::available() {
            return Some(format!("requires a GPU ({})", crate::gpu::describe()));
        }
        c.requires_files
            .iter()
            .find(|p| !p.exists())
            .map(|p| format!("requires {} which is absent", p.display()))
    }
}

/// Expands the matrix into points. Each point's name lists only the axes that
/// take more than one value, in the order prompts, max_tokens, concurrency,
/// num_requests (`short_mt64_c1`); a case with no varying axis keeps its file's name.
pub fn expand(config: &CaseConfig) -> Vec<(Option<String>, CaseConfig)> {
    expand_named(config, &config.matrix)
}

/// `expand`, naming also every axis that `named` varies (the file's own
/// matrix, before environment overrides).
pub fn expand_named(
    config: &CaseConfig,
    named: &crate::config::MatrixConfig,
) -> Vec<(Option<String>, CaseConfig)> {
    let varies = |axis: Option<usize>| axis.is_some_and(|n| n > 1);
    let m = &config.matrix;
    let w = &config.workload;
    let prompts: Vec<PromptSource> = match &m.prompts {
        Some(sources) => sources.clone(),
        None => vec![w.prompts.clone()],
    };
    let max_tokens = m.max_tokens.clone().unwrap_or_else(|| vec![w.max_tokens]);
    let concurrency = m.concurrency.clone().unwrap_or_else(|| vec![w.concurrency]);
    let num_requests = m
        .num_requests
        .clone()
        .unwrap_or_else(|| vec![w.num_requests]);
    // `None`: the workload's own rate (and cap).
    let rates: Vec<Option<RequestRate>> = match &m.request_rate {
        Some(r) => r.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    let caps: Vec<Option<u32>> = match &m.max_concurrency {
        Some(c) => c.iter().copied().map(Some).collect(),
        None => vec![None],
    };
    let mut loads = Vec::new();
    for &rate in &rates {
        for &cap in &caps {
            loads.push((rate, cap));
        }
    }
    let mut points = Vec::new();
    for p in &prompts {
        for &mt in &max_tokens {
            for &c in &concurrency {
                for &(rate, cap) in &loads {
                    for &n in &num_requests {
                        let mut parts = Vec::new();
                        if prompts.len() > 1 || varies(named.prompts.as_ref().map(Vec::len)) {
                            parts.push(p.label());
                        }
                        if max_tokens.len() > 1 || varies(named.max_tokens.as_ref().map(Vec::len)) {
                            parts.push(format!("mt{mt}"));
                        }
                        if concurrency.len() > 1 || varies(named.concurrency.as_ref().map(Vec::len))
                        {
                            parts.push(format!("c{c}"));
                        }
                        if let Some(rate) = rate.filter(|_| {
                            rates.len() > 1 || varies(named.request_rate.as_ref().map(Vec::len))
                        }) {
                            parts.push(rate.label());
                        }
                        if let Some(cap) = cap.filter(|_| {
                            caps.len() > 1 || varies(named.max_concurrency.as_ref().map(Vec::len))
                        }) {
                            parts.push(format!("mc{cap}"));
                        }
                        if num_requests.len() > 1
                            || varies(named.num_requests.as_ref().map(Vec::len))
                        {
                            parts.push(format!("n{n}"));
                        }
                        let mut point = config.clone();
                        point.workload.prompts = p.clone();
                        point.workload.max_tokens = mt;
                        point.workload.concurrency = c;
                        point.workload.num_requests = n;
                        if let Some(cap) = cap {
                            point.workload.max_concurrency = Some(cap);
                        }
                        match rate {
                            Some(RequestRate::PerSecond(r)) => point.workload.rate = Some(r),
                            // Every request at once: a closed loop as wide as
                            // the cap, or as the whole run without one.
                            Some(RequestRate::Inf) => {
                                point.workload.rate = None;
                                point.workload.concurrency = point
                                    .workload
                                    .max_concurrency
                                    .unwrap_or(n)
                                    .min(config::limits::MAX_CONCURRENCY as u32);
                            }
                            None => {}
                        }
                        point.matrix = Default::default();
                        let suffix = (!parts.is_empty()).then(|| parts.join("_"));
                        points.push((suffix, point));
                    }
                }
            }
        }
    }
    number_repeated_names(&mut points);
    points
}

/// Two points of the same name would be one test twice (two files of the
/// same name in different folders, a source listed twice): each repeated
/// name gets its position among its namesakes, `_1`, `_2`, ….
fn number_repeated_names(points: &mut [(Option<String>, CaseConfig)]) {
    let mut counts: std::collections::HashMap<String, usize> = Default::default();
    for (name, _) in points.iter() {
        if let Some(n) = name {
            *counts.entry(n.clone()).or_default() += 1;
        }
    }
    let mut seen: std::collections::HashMap<String, usize> = Default::default();
    for (name, _) in points.iter_mut() {
        if let Some(n) = name {
            if counts[n.as_str()] > 1 {
                let k = seen.entry(n.clone()).or_default();
                *k += 1;
                *n = format!("{n}_{k}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::MatrixConfig;

    fn base() -> CaseConfig {
        toml::from_str("").unwrap()
    }

    #[test]
    fn matrix_names_list_only_varying_axes() {
        let mut c = base();
        c.matrix = MatrixConfig {
            prompts: Some(vec![
                PromptSource::Set("short".into()),
                PromptSource::Set("medium".into()),
            ]),
            max_tokens: Some(vec![64, 128]),
            concurrency: Some(vec![1, 2, 4]),
            num_requests: Some(vec![10]),
            ..MatrixConfig::default()
        };
        let points = expand(&c);
        assert_eq!(points.len(), 12);
        assert_eq!(points[0].0.as_deref(), Some("short_mt64_c1"));
        assert_eq!(points[11].0.as_deref(), Some("medium_mt128_c4"));
        assert_eq!(points[11].1.workload.concurrency, 4);
        assert_eq!(points[11].1.workload.num_requests, 10);
    }

    #[test]
    fn file_sources_are_named_by_their_files_and_never_twice_alike() {
        let mut c = base();
        let file = |kind: &str, path: &str| -> PromptSource {
            toml::from_str::<toml::Value>(&format!("p = {{ {kind} = \"{path}\" }}"))
                .unwrap()
                .get("p")
                .unwrap()
                .clone()
                .try_into()
                .unwrap()
        };
        c.matrix = MatrixConfig {
            prompts: Some(vec![
                file("sharegpt", "data/chat.json"),
                file("sharegpt", "data/support tickets.json"),
                file("custom", "a/prompts.jsonl"),
                file("custom", "b/prompts.jsonl"),
            ]),
            ..MatrixConfig::default()
        };
        let names: Vec<_> = expand(&c).into_iter().map(|p| p.0.unwrap()).collect();
        assert_eq!(
            names,
            [
                "sharegpt_chat",
                "sharegpt_support_tickets",
                "custom_prompts_1",
                "custom_prompts_2"
            ]
        );
    }

    #[test]
    fn no_matrix_is_one_unnamed_point() {
        let points = expand(&base());
        assert_eq!(points.len(), 1);
        assert_eq!(points[0].0, None);
    }
}
