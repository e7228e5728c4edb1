//! Configuration errors that always say where: file, line and key.

use std::fmt;
use std::path::PathBuf;

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    File(PathBuf),
    /// An environment variable, by name.
    Env(String),
    /// A built-in default or a value whose source is unknown.
    Default,
}

/// A configuration problem located as precisely as the source allows.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ConfigError {
    pub origin: Origin,
    /// 1-based line in the file, when the key could be found there.
    pub line: Option<usize>,
    /// Dotted key path such as `workload.concurrency`.
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    pub fn in_file(file: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self {
            origin: Origin::File(file.into()),
            line: None,
            key: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.origin {
            Origin::File(path) => {
                write!(f, "{}", path.display())?;
                if let Some(line) = self.line {
                    write!(f, ":{line}")?;
                }
            }
            Origin::Env(var) => write!(f, "environment variable {var}")?,
            Origin::Default => write!(f, "built-in default")?,
        }
        if let Some(key) = &self.key {
            write!(f, ": key `{key}`")?;
        }
        write!(f, ": {}", self.message)
    }
}
