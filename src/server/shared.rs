//! Servers kept up across processes: `servegate up` starts `command` targets
//! under a detached supervisor, `servegate down` stops them, and every
//! servegate process (each nextest test is one) that needs a target with the
//! same specification uses the running server instead of starting its own.
//!
//! State lives in `<results_dir>/servers/`: `NAME.json` says where a server
//! listens and who supervises it; a user holds `NAME.PID.N.lease` while it
//! sends requests. The supervisor stops the server after `idle_timeout` with
//! no live lease, when it receives SIGTERM (`servegate down`), or when the
//! server exits, and removes the state file in each case.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use super::process::{self, group_alive, process_alive};
use super::TargetEnv;
use crate::config::TargetSpec;

/// The hidden subcommand that supervises one shared server.
pub const SUPERVISE: &str = "__supervise";

/// What `servegate up` leaves for other processes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ServerState {
    pub target: String,
    pub url: String,
    pub model: String,
    pub spec: TargetSpec,
    pub supervisor_pid: i32,
    pub server_pgid: i32,
    pub log: PathBuf,
    #[serde(default)]
    pub idle_timeout_s: Option<f64>,
    pub started_at: String,
}

fn state_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{}.json", crate::files::file_stem(name)))
}

fn read_state(path: &Path) -> Option<ServerState> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Lease files of target `name`: `(path, holder pid)`.
fn leases(dir: &Path, name: &str) -> Vec<(PathBuf, i32)> {
    let prefix = format!("{}.", crate::files::file_stem(name));
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let file = e.file_name().to_str()?.to_string();
            let middle = file.strip_prefix(&prefix)?.strip_suffix(".lease")?;
            let pid = middle.split('.').next()?.parse().ok()?;
            Some((e.path(), pid))
        })
        .collect()
}

/// Whether some live process holds a lease; stale leases are removed.
fn leased(dir: &Path, name: &str) -> bool {
    let mut any = false;
    for (path, pid) in leases(dir, name) {
        if process_alive(pid) {
            any = true;
        } else {
            let _ = std::fs::remove_file(path);
        }
    }
    any
}

/// A shared server in use by this process; the lease file goes on drop.
#[derive(Debug)]
pub struct Lease {
    pub url: String,
    pub log: PathBuf,
    path: PathBuf,
    server_pgid: i32,
}

impl Lease {
    pub fn server_alive(&self) -> bool {
        group_alive(self.server_pgid)
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A running shared server for exactly this target, leased; `None` when
/// there is none (the caller then starts its own).
pub async fn find(env: &TargetEnv, name: &str, spec: &TargetSpec, model: &str) -> Option<Lease> {
    let dir = env.servers_dir();
    let path = state_path(&dir, name);
    let state = read_state(&path)?;
    if state.spec != *spec || state.model != model {
        eprintln!(
            "note: the shared server for `{name}` ({}) was started with another configuration; starting a separate one",
            state.url
        );
        return None;
    }
    if !process_alive(state.supervisor_pid) || !group_alive(state.server_pgid) {
        return None;
    }
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let lease_path = dir.join(format!(
        "{}.{}.{}.lease",
        crate::files::file_stem(name),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&lease_path, b"").ok()?;
    let lease = Lease {
        url: state.url.clone(),
        log: state.log.clone(),
        path: lease_path,
        server_pgid: state.server_pgid,
    };
    // The supervisor removes the state file before it checks leases for the
    // last time, so a lease taken while the state file still exists is seen.
    if !path.exists() {
        return None;
    }
    let api_key = super::api_key(name, spec).ok()?;
    let client = crate::client::Client::new(&state.url, api_key).ok()?;
    client
        .wait_ready(&spec.ready, Duration::from_secs(5))
        .await
        .ok()
        .map(|()| lease)
}

/// Runs in the detached supervisor: starts the server, publishes its state,
/// and stops it when idle, told to, or when it exits. Returns the exit code.
pub fn supervise(
    env: &TargetEnv,
    name: &str,
    spec: &TargetSpec,
    model: &str,
    idle_timeout: Option<Duration>,
) -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    let api_key = match super::api_key(name, spec) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("error: {e:#}");
            return 1;
        }
    };
    let (mut child, url) =
        match runtime.block_on(super::start_command(name, spec, model, env, api_key)) {
            Ok(started) => started,
            Err(e) => {
                eprintln!("error: {e:#}");
                return 1;
            }
        };
    let dir = env.servers_dir();
    let path = state_path(&dir, name);
    let state = ServerState {
        target: name.to_string(),
        url: url.clone(),
        model: model.to_string(),
        spec: spec.clone(),
        supervisor_pid: std::process::id() as i32,
        server_pgid: child.pgid(),
        log: child.log_path().to_path_buf(),
        idle_timeout_s: idle_timeout.map(|d| d.as_secs_f64()),
        started_at: process::timestamp(),
    };
    process::remove_on_interrupt(&path);
    if let Err(e) = crate::files::write_json_atomic(&path, &state) {
        eprintln!("error: cannot write {}: {e:#}", path.display());
        return 1;
    }
    eprintln!("serving `{name}` at {url} (log {})", state.log.display());
    let mut last_used = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        if let Some(status) = child.exit_status() {
            let _ = std::fs::remove_file(&path);
            eprintln!(
                "server `{name}` exited ({})",
                process::describe_status(status)
            );
            return 1;
        }
        let Some(idle) = idle_timeout else { continue };
        if leased(&dir, name) {
            last_used = Instant::now();
            continue;
        }
        if last_used.elapsed() < idle {
            continue;
        }
        // Unpublish first, then look for a lease taken meanwhile (see `find`).
        let _ = std::fs::remove_file(&path);
        if leased(&dir, name) {
            let _ = crate::files::write_json_atomic(&path, &state);
            last_used = Instant::now();
            continue;
        }
        eprintln!("`{name}` idle for {:.0} s; stopping it", idle.as_secs_f64());
        child.stop();
        process::keep_on_interrupt(&path);
        return 0;
    }
}

/// One line of `servegate up`'s output.
#[derive(Debug, Clone, PartialEq)]
pub struct Up {
    pub target: String,
    pub url: String,
    pub already_running: bool,
}

/// Starts a supervisor for each target (unless one with the same
/// configuration is running) and waits until each server is ready.
/// `servegate_exe` is the binary to run as supervisor; `root` the project.
pub fn up(
    servegate_exe: &Path,
    root: &Path,
    env: &TargetEnv,
    targets: &[(String, TargetSpec)],
    model: &str,
    idle_timeout: Option<Duration>,
) -> anyhow::Result<Vec<Up>> {
    let dir = env.servers_dir();
    std::fs::create_dir_all(&dir)?;
    let mut out = Vec::new();
    for (name, spec) in targets {
        let path = state_path(&dir, name);
        if let Some(state) = read_state(&path) {
            let alive = process_alive(state.supervisor_pid) && group_alive(state.server_pgid);
            if alive && state.spec == *spec && state.model == model {
                out.push(Up {
                    target: name.clone(),
                    url: state.url,
                    already_running: true,
                });
                continue;
            }
            if alive {
                anyhow::bail!(
                    "`{name}` is already up at {} with another configuration; run `servegate down {name}` first",
                    state.url
                );
            }
            let _ = std::fs::remove_file(&path);
        }
        let log = super::log_path(&env.logs_dir(), name, "-supervisor");
        std::fs::create_dir_all(env.logs_dir())?;
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = Command::new(servegate_exe);
        cmd.arg("--root").arg(root).arg(SUPERVISE).arg(name);
        if let Some(idle) = idle_timeout {
            cmd.arg("--idle-timeout")
                .arg(idle.as_secs_f64().to_string());
        }
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // A session of its own: neither a terminal's hangup nor a test
        // runner cleaning up the process group of `servegate up` reaches it.
        // SAFETY: setsid is async-signal-safe and touches no memory.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
                nix::unistd::setsid()
                    .map(|_| ())
                    .map_err(std::io::Error::from)
            });
        }
        let mut supervisor = cmd.spawn()?;
        let pid = supervisor.id() as i32;
        let grace = Duration::from_secs_f64(spec.stop_timeout_s);
        process::register_group(pid, grace);
        let ready = loop {
            if let Some(state) = read_state(&path).filter(|s| s.supervisor_pid == pid) {
                break Ok(state);
            }
            if let Some(status) = supervisor.try_wait()? {
                break Err(anyhow::anyhow!(
                    "`{name}` did not come up (supervisor {})\n{}",
                    process::describe_status(status),
                    std::fs::read_to_string(&log).unwrap_or_default().trim_end()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        process::unregister_group(pid);
        let state = ready?;
        out.push(Up {
            target: name.clone(),
            url: state.url,
            already_running: false,
        });
    }
    Ok(out)
}

/// Stops the shared servers named (all when `names` is empty); returns
/// the names stopped. Waits until nothing of theirs is left running.
pub fn down(env: &TargetEnv, names: &[String]) -> anyhow::Result<Vec<String>> {
    let dir = env.servers_dir();
    let mut states: Vec<(PathBuf, ServerState)> = Vec::new();
    if names.is_empty() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for e in entries.filter_map(Result::ok) {
                let path = e.path();
                if path.extension().is_some_and(|x| x == "json") {
                    if let Some(s) = read_state(&path) {
                        states.push((path, s));
                    }
                }
            }
        }
    } else {
        for name in names {
            let path = state_path(&dir, name);
            match read_state(&path) {
                Some(s) => states.push((path, s)),
                None => eprintln!("`{name}` is not up"),
            }
        }
    }
    states.sort_by(|a, b| a.1.target.cmp(&b.1.target));
    let mut stopped = Vec::new();
    for (path, state) in states {
        let sup = state.supervisor_pid;
        // Checked once: an exiting process's command line reads empty before
        // it is gone, so asking again would stop waiting too early.
        let ours = process_alive(sup) && is_supervisor(sup);
        if ours {
            let _ = kill(Pid::from_raw(sup), Signal::SIGTERM);
        }
        // The supervisor stops its server (SIGTERM, then SIGKILL within 5 s).
        let deadline = Instant::now() + Duration::from_secs(10);
        while ((ours && process_alive(sup)) || group_alive(state.server_pgid))
            && Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(20));
        }
        if ours && process_alive(sup) {
            let _ = kill(Pid::from_raw(sup), Signal::SIGKILL);
        }
        if group_alive(state.server_pgid) {
            process::stop_group(
                state.server_pgid,
                Duration::from_secs_f64(state.spec.stop_timeout_s),
                &mut || false,
            );
        }
        let _ = std::fs::remove_file(&path);
        for (lease, _) in leases(&dir, &state.target) {
            let _ = std::fs::remove_file(lease);
        }
        stopped.push(state.target);
    }
    Ok(stopped)
}

/// Guards against a recycled pid: the process must be a servegate supervisor.
fn is_supervisor(pid: i32) -> bool {
    match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(bytes) => bytes
            .split(|&b| b == 0)
            .any(|arg| arg == SUPERVISE.as_bytes()),
        Err(_) => !Path::new("/proc/self").exists(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leases_are_found_by_target_and_stale_ones_removed() {
        let dir = tempfile::tempdir().unwrap();
        let me = std::process::id();
        std::fs::write(dir.path().join(format!("candidate.{me}.0.lease")), "").unwrap();
        std::fs::write(dir.path().join("candidate.json"), "{}").unwrap();
        std::fs::write(dir.path().join("candidate-b.1.0.lease"), "").unwrap();
        let found = leases(dir.path(), "candidate");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1, me as i32);
        assert!(leased(dir.path(), "candidate"));
        // A lease whose holder is gone does not keep a server up.
        std::fs::write(dir.path().join("other.999999999.0.lease"), "").unwrap();
        std::fs::remove_file(&found[0].0).unwrap();
        assert!(!leased(dir.path(), "other"));
        assert!(!dir.path().join("other.999999999.0.lease").exists());
    }

    #[test]
    fn state_round_trips() {
        let state = ServerState {
            target: "candidate".into(),
            url: "http://127.0.0.1:9".into(),
            model: "m".into(),
            spec: toml::from_str(r#"command = ["serve", "{port}"]"#).unwrap(),
            supervisor_pid: 1,
            server_pgid: 2,
            log: "logs/x.log".into(),
            idle_timeout_s: Some(60.0),
            started_at: "now".into(),
        };
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<ServerState>(&text).unwrap(), state);
    }
}
