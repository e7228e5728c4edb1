//! Facts about where a run happened, recorded in every results file: the
//! servegate version, the git commit of the tested project tree (when it is a
//! git checkout and `git` is installed), the host CPU and the GPU.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub servegate_version: String,
    /// `git rev-parse HEAD` of the project folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_commit: Option<String>,
    /// Whether the project tree had uncommitted changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git_dirty: Option<bool>,
    pub os: String,
    pub arch: String,
    /// CPU model name (`/proc/cpuinfo`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<String>,
    /// Logical CPUs available to servegate.
    pub cpus: usize,
    /// GPU description (`gpu::describe`).
    pub gpu: String,
}

impl Environment {
    /// Collects the facts for a project rooted at `root`.
    pub fn collect(root: &Path) -> Self {
        let git = |args: &[&str]| -> Option<String> {
            let out = Command::new("git")
                .arg("-C")
                .arg(root)
                .args(args)
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        };
        let git_commit = git(&["rev-parse", "HEAD"]).filter(|c| !c.is_empty());
        let git_dirty = git_commit
            .as_ref()
            .and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]))
            .map(|s| !s.is_empty());
        Self {
            servegate_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit,
            git_dirty,
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
            cpu: std::fs::read_to_string("/proc/cpuinfo")
                .ok()
                .and_then(|text| cpu_model(&text)),
            cpus: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            gpu: crate::gpu::describe(),
        }
    }

    /// One line: `servegate 0.1.0 · commit 1a2b3c4d (modified) · Intel … × 2 · no GPU`.
    pub fn one_line(&self) -> String {
        let mut parts = vec![format!("servegate {}", self.servegate_version)];
        if let Some(c) = &self.git_commit {
            let short: String = c.chars().take(10).collect();
            let dirty = if self.git_dirty == Some(true) {
                " (modified)"
            } else {
                ""
            };
            parts.push(format!("commit {short}{dirty}"));
        }
        parts.push(format!(
            "{} × {} ({}/{})",
            self.cpu.as_deref().unwrap_or("unknown CPU"),
            self.cpus,
            self.os,
            self.arch
        ));
        parts.push(self.gpu.clone());
        parts.join(" · ")
    }
}

/// The first `model name` of a `/proc/cpuinfo` text (x86), else its
/// `Hardware`/`Model` line (ARM boards).
pub fn cpu_model(cpuinfo: &str) -> Option<String> {
    ["model name", "Hardware", "Model"].iter().find_map(|key| {
        cpuinfo.lines().find_map(|line| {
            let (k, v) = line.split_once(':')?;
            (k.trim() == *key && !v.trim().is_empty()).then(|| v.trim().to_string())
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_model_from_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) CPU @ 2.20GHz\nflags\t: fpu\n";
        assert_eq!(
            cpu_model(text).as_deref(),
            Some("Intel(R) Xeon(R) CPU @ 2.20GHz")
        );
        assert_eq!(cpu_model("processor : 0\n"), None);
    }

    #[test]
    fn collects_git_commit_of_a_repository() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let env = Environment::collect(here);
        assert_eq!(env.servegate_version, env!("CARGO_PKG_VERSION"));
        assert!(env.cpus >= 1);
        assert!(env.one_line().contains("servegate"));
        // Outside a repository (or without git) there is no commit, and no error.
        let dir = tempfile::tempdir().unwrap();
        let outside = Environment::collect(dir.path());
        if outside.git_commit.is_none() {
            assert_eq!(outside.git_dirty, None);
        }
        if let Some(c) = &env.git_commit {
            assert_eq!(c.len(), 40, "{c}");
        }
    }
}
