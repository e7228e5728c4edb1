//! Helpers shared by the integration test modules.

use std::path::{Path, PathBuf};

/// The `servegate` binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_servegate");

/// The repository (for its prompt sets and case layout).
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Copies the folder `from` to `to`, recursively.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &dest);
        } else {
            std::fs::copy(entry.path(), dest).unwrap();
        }
    }
}

/// A copy of the repository's project in a temporary folder:
/// `servegate.toml` and the folders `dirs` (e.g. `scenarios`, `prompts`).
pub fn copy_of_repository(dirs: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        repo().join("servegate.toml"),
        dir.path().join("servegate.toml"),
    )
    .unwrap();
    for sub in dirs {
        copy_dir(&repo().join(sub), &dir.path().join(sub));
    }
    dir
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

/// A free loopback port (bound, then released for a server to take).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `servegate sim` as a child process on a free port, stopped when dropped.
pub struct Sim {
    child: std::process::Child,
    pub url: String,
}

impl Sim {
    /// Starts the engine with `args` (knobs, `--model`) and waits until it listens.
    pub fn start(args: &[&str]) -> Sim {
        let port = free_port();
        let child = std::process::Command::new(BIN)
            .args(["sim", "--port", &port.to_string()])
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the engine did not listen on {port}"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Sim {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A finished command's status and both outputs, for assertion messages.
pub fn text(out: &std::process::Output) -> String {
    format!(
        "status {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
