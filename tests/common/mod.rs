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
    pub port: u16,
    pub url: String,
}

impl Sim {
    /// Starts the engine with `args` (knobs, `--model`) and waits until it listens.
    pub fn start(args: &[&str]) -> Sim {
        let port = free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_servegate"))
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
            port,
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
