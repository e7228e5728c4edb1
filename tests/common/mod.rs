//! Helpers shared by the integration tests. Each test binary uses a part of them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// The repository (for its prompt sets and case layout).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Gives the project at `root` the repository's short prompt set and an
/// empty `scenarios/`.
pub fn add_prompts_and_scenarios(root: &Path) {
    std::fs::create_dir_all(root.join("prompts")).unwrap();
    std::fs::copy(
        repo().join("prompts/short.txt"),
        root.join("prompts/short.txt"),
    )
    .unwrap();
    std::fs::create_dir_all(root.join("scenarios")).unwrap();
}

/// A two-worker runtime, as the runner uses.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
