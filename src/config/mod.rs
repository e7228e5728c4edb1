//! Configuration: the schema, its layering and its validation.
//!
//! Layers, lowest first: built-in defaults, `servegate.toml`, the case file,
//! `SERVEGATE_*` environment variables, merged key by key except that a
//! target's kind of server is replaced (`layers`). Every error names the file
//! (or the variable), the line and the key.

mod env;
mod error;
mod layers;
pub mod limits;
mod locate;
mod paths;
pub mod placeholders;
mod sim;
mod types;
mod validate;

use std::path::{Path, PathBuf};

use figment::providers::{Format, Toml};
use figment::{Figment, Provider};

pub use env::{overrides as env_overrides, EnvOverride, RESERVED as RESERVED_ENV};
pub use error::{ConfigError, Origin};
pub use locate::{key_line, written_key_line};
pub use paths::{resolve, resolve_all};
pub use sim::{builtin_profile, CudaModel, SimParams, BUILTIN_PROFILES};
pub use types::*;
pub use validate::BUILTIN_TASKS;

/// File name of the project defaults; its folder is the project root.
pub const PROJECT_FILE: &str = "servegate.toml";

/// What kind of case a file describes, which decides its validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CaseKind {
    Scenario,
    Suite,
}

impl CaseKind {
    pub fn dir(self) -> &'static str {
        match self {
            CaseKind::Scenario => "scenarios",
            CaseKind::Suite => "suites",
        }
    }
    pub fn prefix(self) -> &'static str {
        match self {
            CaseKind::Scenario => "scenario",
            CaseKind::Suite => "suite",
        }
    }
}

/// The inputs of one configuration load.
pub struct Layers<'a> {
    pub project_file: &'a Path,
    pub case_file: Option<&'a Path>,
    pub kind: Option<CaseKind>,
    pub env: &'a [EnvOverride],
}

/// Merges the layers, deserialises and validates.
pub fn load(layers: &Layers<'_>) -> Result<CaseConfig, ConfigError> {
    // Where an error goes when no layer wrote the key at fault: the case's own file.
    let fallback = layers.case_file.unwrap_or(layers.project_file);
    let mut files = Vec::new();
    for file in std::iter::once(layers.project_file).chain(layers.case_file) {
        files.push(read_layer(file)?);
    }
    let env: Vec<&EnvOverride> = layers
        .env
        .iter()
        .filter(|o| o.applies_to(layers.kind))
        .collect();
    // The environment is one layer, however many variables it takes.
    let mut env_dict = env
        .iter()
        .fold(Figment::new(), |f, o| f.merge((*o).clone()))
        .data()
        .ok()
        .and_then(|mut data| data.remove(&figment::Profile::Default))
        .unwrap_or_default();
    let mut dicts: Vec<&mut figment::value::Dict> = files.iter_mut().map(|f| &mut f.dict).collect();
    dicts.push(&mut env_dict);
    layers::replace_target_kinds(&mut dicts);

    let mut figment = Figment::new();
    for file in files {
        figment = figment.merge(file);
    }
    for o in env {
        figment = figment.merge(o.clone());
    }
    let mut config: CaseConfig = figment
        .extract()
        .map_err(|e| from_figment(&figment, e, fallback))?;
    validate::validate(&config, layers.kind, &|key, message| {
        locate_key(&figment, key, message, fallback)
    })?;
    fold_sim_profiles(&mut config);
    Ok(config)
}

/// One file's values, after a syntax check that reports the line.
fn read_layer(file: &Path) -> Result<layers::FileLayer, ConfigError> {
    check_syntax(file)?;
    let toml = Toml::file_exact(file);
    let dict = toml
        .data()
        .map_err(|e| ConfigError::in_file(file, e.to_string()))?
        .remove(&figment::Profile::Default)
        .unwrap_or_default();
    Ok(layers::FileLayer {
        metadata: toml.metadata(),
        dict,
    })
}

/// Replaces a target's reference to a `[sim_profiles]` entry by the entry's
/// knobs, so that a target's `sim` table alone says how its engine behaves.
fn fold_sim_profiles(config: &mut CaseConfig) {
    let profiles = config.sim_profiles.clone();
    for target in config.targets.values_mut() {
        if let Some(sim) = &mut target.sim {
            if let Some(named) = sim.profile.as_ref().and_then(|p| profiles.get(p)) {
                let mut folded = sim.over(named);
                folded.profile = named.profile.clone();
                *sim = folded;
            }
        }
    }
}

/// Reads a file and reports TOML syntax errors with their line.
fn check_syntax(file: &Path) -> Result<(), ConfigError> {
    let source = std::fs::read_to_string(file)
        .map_err(|e| ConfigError::in_file(file, format!("cannot read: {e}")))?;
    if let Err(e) = source.parse::<toml::Table>() {
        let line = e.span().map(|s| locate::line_of(&source, s.start));
        return Err(ConfigError {
            origin: Origin::File(file.to_path_buf()),
            line,
            key: None,
            message: format!("invalid TOML: {}", e.message()),
        });
    }
    Ok(())
}

/// Builds a located error for `key` using the layer that set it.
fn locate_key(figment: &Figment, key: &str, message: String, fallback: &Path) -> ConfigError {
    let path: Vec<String> = key.split('.').map(str::to_string).collect();
    // The deepest prefix of the key that some layer wrote says where to point.
    let metadata = (1..=path.len())
        .rev()
        .find_map(|n| figment.find_metadata(&path[..n].join(".")));
    let (origin, line) = match metadata.map(|m| origin_and_line(m, &path)) {
        Some((Origin::Default, _)) | None => (Origin::File(fallback.to_path_buf()), None),
        Some(found) => found,
    };
    ConfigError {
        origin,
        line,
        key: Some(key.to_string()),
        message,
    }
}

fn origin_and_line(metadata: &figment::Metadata, path: &[String]) -> (Origin, Option<usize>) {
    if let Some(file) = metadata.source.as_ref().and_then(|s| s.file_path()) {
        let line = std::fs::read_to_string(file)
            .ok()
            .and_then(|src| key_line(&src, path));
        return (Origin::File(file.to_path_buf()), line);
    }
    let name = metadata.name.to_string();
    match name.strip_prefix("environment variable ") {
        Some(var) => (Origin::Env(var.to_string()), None),
        None => (Origin::Default, None),
    }
}

fn from_figment(figment: &Figment, error: figment::Error, fallback: &Path) -> ConfigError {
    let mut path = error.path.clone();
    let message = match &error.kind {
        figment::error::Kind::UnknownField(field, expected) => {
            if path.last() != Some(field) {
                path.push(field.clone());
            }
            format!("unknown key; expected one of: {}", expected.join(", "))
        }
        figment::error::Kind::MissingField(field) => {
            if path.last().map(|s| s.as_str()) != Some(field.as_ref()) {
                path.push(field.to_string());
            }
            "required key is missing".to_string()
        }
        kind => kind.to_string(),
    };
    let key = path.join(".");
    if key.is_empty() {
        let origin = error
            .metadata
            .as_ref()
            .map(|m| origin_and_line(m, &[]).0)
            .filter(|o| *o != Origin::Default)
            .unwrap_or_else(|| Origin::File(fallback.to_path_buf()));
        return ConfigError {
            origin,
            line: None,
            key: None,
            message,
        };
    }
    locate_key(figment, &key, message, fallback)
}

/// Reads the project file alone (no case), for project-wide settings.
pub fn load_project(root: &Path, env: &[EnvOverride]) -> Result<CaseConfig, ConfigError> {
    let file = root.join(PROJECT_FILE);
    load(&Layers {
        project_file: &file,
        case_file: None,
        kind: None,
        env,
    })
}

/// The project's results folder: its `results_dir`, resolved against the
/// root; `<root>/results` when the project file cannot be read.
pub fn results_dir(root: &Path, env: &[EnvOverride]) -> PathBuf {
    match load_project(root, env) {
        Ok(c) => resolve(root, &c.results_dir),
        Err(_) => root.join("results"),
    }
}
