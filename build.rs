//! Records the commit the binary was built from, for `servegate --version`.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=BUILD_GIT_COMMIT={commit}");
    // Build again when HEAD moves: the file HEAD names a branch whose ref
    // file changes with each commit (packed refs change `packed-refs`).
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let dir = std::path::Path::new(&dir);
        println!("cargo:rerun-if-changed={}", dir.join("HEAD").display());
        if let Ok(head) = std::fs::read_to_string(dir.join("HEAD")) {
            if let Some(r) = head.strip_prefix("ref: ") {
                let common = git(&["rev-parse", "--git-common-dir"])
                    .map(std::path::PathBuf::from)
                    .unwrap_or_else(|| dir.to_path_buf());
                println!("cargo:rerun-if-changed={}", common.join(r.trim()).display());
                println!(
                    "cargo:rerun-if-changed={}",
                    common.join("packed-refs").display()
                );
            }
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
