//! Getting a server to talk to: an already running `url`, a `command` that
//! servegate starts and stops, or the embedded `sim` engine.
//!
//! - `process`: child process groups, logs, teardown on every exit path;
//! - `pool`: which targets run when (exclusive targets never overlap, each
//!   target starts once for all the cases of a run);
//! - `shared`: servers kept up across processes (`servegate up` / `down`).

mod guardian;
pub mod pool;
pub mod process;
pub mod shared;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::client::Client;
use crate::config::placeholders::{self, Vars};
use crate::config::{self, TargetSpec};
use crate::sim::SimServer;
use process::ChildProcess;

/// Where targets put what they write.
#[derive(Debug, Clone)]
pub struct TargetEnv {
    /// The project root: the default working folder of commands.
    pub root: PathBuf,
    /// The run's results folder; logs go to `logs/`, shared servers' state to `servers/`.
    pub results_dir: PathBuf,
}

impl TargetEnv {
    pub fn new(root: &Path, results_dir: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
            results_dir: config::resolve(root, results_dir),
        }
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.results_dir.join("logs")
    }
    pub fn servers_dir(&self) -> PathBuf {
        self.results_dir.join("servers")
    }
}

/// A server ready for requests. Anything it started stops when it is dropped.
pub struct RunningTarget {
    pub name: String,
    pub url: String,
    pub model: String,
    pub client: Client,
    /// Never runs beside another target.
    pub exclusive: bool,
    /// The server's log, for `command` targets.
    pub log: Option<PathBuf>,
    kind: Kind,
    /// The probe's findings, asked once per start of the server.
    probed: Option<std::sync::Arc<crate::probe::ProbeReport>>,
}

enum Kind {
    Url,
    Sim(#[allow(dead_code)] SimServer),
    Process(ChildProcess),
    Shared(shared::Lease),
}

impl RunningTarget {
    /// Starts (or reaches) the target and waits until it is ready.
    pub async fn start(
        name: &str,
        spec: &TargetSpec,
        project_model: &str,
        env: &TargetEnv,
    ) -> anyhow::Result<Self> {
        let model = spec
            .model
            .clone()
            .unwrap_or_else(|| project_model.to_string());
        let api_key = api_key(name, spec)?;
        let ready_timeout = Duration::from_secs_f64(spec.ready_timeout_s);
        let (url, kind, log) = if let Some(url) = &spec.url {
            (url.clone(), Kind::Url, None)
        } else if let Some(sim) = spec.sim.as_ref().filter(|s| s.cuda == Some(true)) {
            // A GPU engine runs as a server process of its own: the CUDA
            // context and the device memory are its, never servegate's.
            let process = cuda_sim_command(spec, sim)?;
            let (child, url) = start_command(name, &process, &model, env, api_key.clone()).await?;
            let log = child.log_path().to_path_buf();
            (url, Kind::Process(child), Some(log))
        } else if let Some(sim) = &spec.sim {
            let server = SimServer::start_local(sim, &model).map_err(|e| {
                anyhow::anyhow!("target `{name}`: cannot start embedded engine: {e}")
            })?;
            (server.url(), Kind::Sim(server), None)
        } else if let Some(lease) = shared::find(env, name, spec, &model).await {
            let log = lease.log.clone();
            (lease.url.clone(), Kind::Shared(lease), Some(log))
        } else {
            let (child, url) = start_command(name, spec, &model, env, api_key.clone()).await?;
            let log = child.log_path().to_path_buf();
            (url, Kind::Process(child), Some(log))
        };
        let client = Client::new(&url, api_key)?;
        if matches!(kind, Kind::Url | Kind::Sim(_)) {
            client
                .wait_ready(&spec.ready, ready_timeout)
                .await
                .map_err(|e| anyhow::anyhow!("target `{name}` not ready: {e}"))?;
        }
        Ok(Self {
            name: name.to_string(),
            url,
            model,
            client,
            exclusive: spec.is_exclusive(),
            log,
            kind,
            probed: None,
        })
    }

    /// What the server supports: probed on first use, then remembered for
    /// as long as this server runs (every case of a run asks the same one).
    pub async fn probe(&mut self, timeout: Duration) -> std::sync::Arc<crate::probe::ProbeReport> {
        if let Some(report) = &self.probed {
            return report.clone();
        }
        let report = crate::probe::probe(&self.client, Some(&self.model), timeout).await;
        let report = std::sync::Arc::new(report);
        self.probed = Some(report.clone());
        report
    }

    /// `None` while the server runs; once it has exited, what is known about
    /// how. Only targets servegate started (or a shared server) can tell.
    pub fn exited(&mut self) -> Option<String> {
        match &mut self.kind {
            Kind::Process(child) => child
                .exit_status()
                .map(|s| format!("exited ({})", process::describe_status(s))),
            Kind::Shared(lease) => (!lease.server_alive()).then(|| "exited".to_string()),
            Kind::Url | Kind::Sim(_) => None,
        }
    }

    /// The process group of a server servegate started.
    pub fn process_group(&self) -> Option<i32> {
        match &self.kind {
            Kind::Process(child) => Some(child.pgid()),
            _ => None,
        }
    }

    /// The last lines of the server's log, formatted for an error message.
    pub fn quote_log(&self) -> Option<String> {
        self.log.as_deref().map(process::quote_log)
    }

    /// Stops what this target started (also done on drop).
    pub fn stop(&mut self) {
        if let Kind::Process(child) = &mut self.kind {
            child.stop();
        }
    }
}

pub fn api_key(name: &str, spec: &TargetSpec) -> anyhow::Result<Option<String>> {
    match &spec.api_key_env {
        Some(var) => Ok(Some(std::env::var(var).map_err(|_| {
            anyhow::anyhow!("target `{name}`: environment variable {var} (api_key_env) is not set")
        })?)),
        None => Ok(None),
    }
}

/// What a `command` target runs, placeholders replaced. Pure.
#[derive(Debug, Clone, PartialEq)]
pub struct Invocation {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: PathBuf,
}

/// Builds the argv of `command` (or of `build`) for this port and model.
pub fn invocation(
    spec: &TargetSpec,
    argv: &[String],
    root: &Path,
    vars: &Vars,
) -> Result<Invocation, String> {
    let cwd = match &spec.cwd {
        Some(dir) => config::resolve(root, dir),
        None => root.to_path_buf(),
    };
    let mut argv = argv
        .iter()
        .map(|a| placeholders::substitute(a, vars))
        .collect::<Result<Vec<_>, _>>()?;
    if spec.shell {
        argv = vec!["/bin/sh".into(), "-c".into(), argv.join(" ")];
    } else if let Some(program) = argv.first_mut() {
        // `./target/release/server` means the one under the working folder.
        if program.contains('/') && Path::new(program.as_str()).is_relative() {
            *program = cwd.join(&*program).to_string_lossy().into_owned();
        }
    }
    let env = spec
        .env
        .iter()
        .map(|(k, v)| Ok((k.clone(), placeholders::substitute(v, vars)?)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Invocation { argv, env, cwd })
}

/// A log file name unique within this results folder: target, time, servegate's pid, a counter.
pub fn log_path(logs_dir: &Path, target: &str, what: &str) -> PathBuf {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let stem = crate::files::file_stem(target);
    let time = chrono::Local::now().format("%Y%m%d-%H%M%S");
    logs_dir.join(format!(
        "{stem}{what}-{time}-{}-{n}.log",
        std::process::id()
    ))
}

/// A free loopback port. Another process could take it before the server
/// binds it; the server then fails to start and the error quotes its log.
fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind(("127.0.0.1", 0))?
        .local_addr()?
        .port())
}

/// Runs `build` once per servegate process for each distinct build command.
async fn build_once(
    name: &str,
    spec: &TargetSpec,
    vars: &Vars,
    env: &TargetEnv,
) -> anyhow::Result<()> {
    static BUILT: Mutex<Option<HashSet<String>>> = Mutex::new(None);
    let Some(build) = &spec.build else {
        return Ok(());
    };
    let inv = invocation(spec, build, &env.root, vars).map_err(anyhow::Error::msg)?;
    let key = format!("{:?}", (&inv.argv, &inv.env, &inv.cwd));
    let seen = |insert: bool| {
        let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
        let set = built.get_or_insert_with(HashSet::new);
        if insert {
            set.insert(key.clone());
        }
        set.contains(&key)
    };
    if seen(false) {
        return Ok(());
    }
    let log = log_path(&env.logs_dir(), name, "-build");
    let mut child = spawn(name, spec, inv, &log, "run build")?;
    let status = loop {
        if let Some(status) = child.exit_status() {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    child.stop();
    if !status.success() {
        anyhow::bail!(
            "target `{name}`: build failed ({})\n{}",
            process::describe_status(status),
            process::quote_log(&log)
        );
    }
    seen(true);
    Ok(())
}

/// Spawns an invocation of target `name` with its output in `log`.
fn spawn(
    name: &str,
    spec: &TargetSpec,
    inv: Invocation,
    log: &Path,
    what: &str,
) -> anyhow::Result<ChildProcess> {
    let program = inv.argv[0].clone();
    ChildProcess::spawn(&process::Spec {
        argv: inv.argv,
        env: inv.env,
        cwd: Some(inv.cwd),
        log: log.to_path_buf(),
        grace: Duration::from_secs_f64(spec.stop_timeout_s),
    })
    .map_err(|e| {
        anyhow::anyhow!(
            "target `{name}`: cannot {what} `{program}`: {e}\n{}",
            process::quote_log(log)
        )
    })
}

/// A `cuda`-mode embedded engine as a `command` target: this binary's
/// `sim`, given every knob.
fn cuda_sim_command(spec: &TargetSpec, sim: &crate::config::SimSpec) -> anyhow::Result<TargetSpec> {
    let exe = std::env::current_exe().context("cannot find servegate's own binary")?;
    let argv = vec![
        exe.to_string_lossy().into_owned(),
        "sim".into(),
        "--port".into(),
        "{port}".into(),
        "--model".into(),
        "{model}".into(),
        "--spec-json".into(),
        serde_json::to_string(sim)?,
    ];
    Ok(TargetSpec {
        command: Some(argv),
        sim: None,
        ..spec.clone()
    })
}

/// Spawns a `command` target and waits until it answers `ready` with 200.
pub(crate) async fn start_command(
    name: &str,
    spec: &TargetSpec,
    model: &str,
    env: &TargetEnv,
    api_key: Option<String>,
) -> anyhow::Result<(ChildProcess, String)> {
    let argv = spec.command.as_deref().unwrap_or_default();
    let port = match spec.port {
        Some(p) => p,
        None => free_port().context("cannot find a free port")?,
    };
    let vars = Vars {
        port,
        model: model.to_string(),
    };
    build_once(name, spec, &vars, env).await?;
    let inv = invocation(spec, argv, &env.root, &vars).map_err(anyhow::Error::msg)?;
    let log = log_path(&env.logs_dir(), name, "");
    let mut child = spawn(name, spec, inv, &log, "start")?;
    let url = format!("http://127.0.0.1:{port}");
    let probe_url = format!("{url}{}", spec.ready);
    let timeout = Duration::from_secs_f64(spec.ready_timeout_s);
    let deadline = Instant::now() + timeout;
    // The client's probe: a body that never comes times out, and `/v1/models`
    // must answer a model list, not any page with status 200.
    let client = Client::new(&url, api_key)?;
    let mut last = "no answer yet".to_string();
    loop {
        if let Some(status) = child.exit_status() {
            child.stop();
            anyhow::bail!(
                "target `{name}` exited before it was ready ({})\n{}",
                process::describe_status(status),
                process::quote_log(&log)
            );
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            child.stop();
            anyhow::bail!(
                "target `{name}` not ready within {:.1} s: GET {probe_url}: {last}\n{}",
                timeout.as_secs_f64(),
                process::quote_log(&log)
            );
        }
        match client
            .probe_ready(&spec.ready, left.min(Duration::from_secs(2)))
            .await
        {
            Ok(()) => break,
            Err(e) => last = e,
        }
        tokio::time::sleep(left.min(Duration::from_millis(50))).await;
    }
    Ok((child, url))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(toml_text: &str) -> TargetSpec {
        toml::from_str(toml_text).unwrap()
    }

    fn vars() -> Vars {
        Vars {
            port: 9001,
            model: "m".into(),
        }
    }

    #[test]
    fn argv_gets_placeholders_and_a_resolved_program() {
        let s = spec(
            r#"command = ["./bin/serve", "--port", "{port}", "--model={model}"]
               env = { PORT = "{port}", PLAIN = "x" }
               cwd = "engine""#,
        );
        let inv = invocation(&s, s.command.as_ref().unwrap(), Path::new("/p"), &vars()).unwrap();
        assert_eq!(
            inv.argv,
            ["/p/engine/./bin/serve", "--port", "9001", "--model=m"]
        );
        assert_eq!(inv.cwd, Path::new("/p/engine"));
        assert_eq!(
            inv.env,
            vec![("PLAIN".into(), "x".into()), ("PORT".into(), "9001".into())]
        );
        // A bare name is looked up on PATH, not in the working folder.
        let s = spec(r#"command = ["vllm", "serve", "{model}"]"#);
        let inv = invocation(&s, s.command.as_ref().unwrap(), Path::new("/p"), &vars()).unwrap();
        assert_eq!(inv.argv, ["vllm", "serve", "m"]);
        assert_eq!(inv.cwd, Path::new("/p"));
    }

    #[test]
    fn shell_commands_run_through_sh() {
        let s = spec(
            r#"command = ["exec ./serve --port {port} 2>&1"]
                        shell = true"#,
        );
        let inv = invocation(&s, s.command.as_ref().unwrap(), Path::new("/p"), &vars()).unwrap();
        assert_eq!(inv.argv, ["/bin/sh", "-c", "exec ./serve --port 9001 2>&1"]);
    }

    #[test]
    fn command_targets_are_exclusive_by_default() {
        assert!(spec(r#"command = ["x", "{port}"]"#).is_exclusive());
        assert!(!spec(
            r#"command = ["x", "{port}"]
                         exclusive = false"#
        )
        .is_exclusive());
        assert!(!spec(r#"url = "http://127.0.0.1:1""#).is_exclusive());
        assert!(spec(
            r#"sim = {}
                        exclusive = true"#
        )
        .is_exclusive());
    }

    #[test]
    fn log_names_are_distinct_and_file_safe() {
        let a = log_path(Path::new("/r/logs"), "scenario::x y", "");
        let b = log_path(Path::new("/r/logs"), "scenario::x y", "");
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_str().unwrap();
        assert!(
            name.starts_with("scenario__x_y-") && name.ends_with(".log"),
            "{name}"
        );
    }
}
