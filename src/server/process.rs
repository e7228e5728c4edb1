//! Child processes of `command` targets: each runs in its own process group
//! with stdout and stderr in a log file, and the whole group is stopped
//! (SIGTERM, a grace period, then SIGKILL) when the handle is stopped or
//! dropped, so a panic unwinding through the runner stops it too. Groups are
//! also registered with a process-wide signal handler that stops them on
//! SIGINT, SIGTERM or SIGHUP before servegate exits.
//!
//! A guardian process (`guardian`) stops them too when servegate dies
//! without running any handler (SIGKILL).
//!
//! A descendant that leaves the group (`setsid`) escapes all of this; servers
//! that fork workers normally keep the group.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard, Once};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{kill, killpg, Signal};
use nix::unistd::Pid;

/// Lines of a log quoted in error messages.
pub const TAIL_LINES: usize = 40;

/// How long the signal handler lets groups stop before SIGKILL: short, since
/// whoever interrupted servegate (a user, nextest's timeout) is waiting.
const INTERRUPT_GRACE: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct Spec {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub cwd: Option<PathBuf>,
    pub log: PathBuf,
    /// Between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// A running child, leader of its own process group.
#[derive(Debug)]
pub struct ChildProcess {
    child: Child,
    pgid: i32,
    log: PathBuf,
    grace: Duration,
    status: Option<ExitStatus>,
    stopped: bool,
}

impl ChildProcess {
    /// Starts `spec.argv` in a new process group, output appended to `spec.log`.
    pub fn spawn(spec: &Spec) -> std::io::Result<Self> {
        let (program, args) = spec
            .argv
            .split_first()
            .ok_or_else(|| std::io::Error::other("empty command"))?;
        if let Some(dir) = spec.log.parent() {
            std::fs::create_dir_all(dir)?;
        }
        // Handlers first: a signal arriving just after the spawn must find them.
        install_signal_handler();
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&spec.log)?;
        log_line(&mut log, &format!("starting {}", shell_words(&spec.argv)));
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(spec.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .process_group(0);
        if let Some(dir) = &spec.cwd {
            cmd.current_dir(dir);
        }
        let child = {
            let mut registry = registry();
            if registry.shutting_down {
                return Err(std::io::Error::other("servegate is shutting down"));
            }
            let child = cmd.spawn().inspect_err(|e| {
                log_line(&mut log, &format!("could not start {program}: {e}"));
            })?;
            registry.groups.push(Group {
                pgid: child.id() as i32,
                grace: spec.grace,
                log: Some(spec.log.clone()),
            });
            // Even a SIGKILL of servegate must not leave the server running.
            super::guardian::watch(child.id() as i32);
            child
        };
        let pgid = child.id() as i32;
        log_line(&mut log, &format!("pid {pgid} (process group {pgid})"));
        Ok(Self {
            child,
            pgid,
            log: spec.log.clone(),
            grace: spec.grace,
            status: None,
            stopped: false,
        })
    }

    /// Process id of the leader, which is also the process group id.
    pub fn pgid(&self) -> i32 {
        self.pgid
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The leader's exit status once it has exited (never blocks).
    pub fn exit_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            self.status = self.child.try_wait().ok().flatten();
        }
        self.status
    }

    /// Stops the whole group: SIGTERM, up to the grace period for every
    /// member to exit, then SIGKILL; reaps the leader. Idempotent; blocks for
    /// at most the grace period plus a moment.
    pub fn stop(&mut self) -> StopOutcome {
        if self.stopped {
            return StopOutcome::AlreadyStopped;
        }
        self.stopped = true;
        let started = Instant::now();
        let (pgid, grace) = (self.pgid, self.grace);
        let outcome = stop_group(pgid, grace, &mut || self.exit_status().is_some());
        if self.status.is_none() {
            self.status = self.child.wait().ok();
        }
        unregister_group(self.pgid);
        let status = self
            .status
            .map(describe_status)
            .unwrap_or_else(|| "status unknown".into());
        let how = match outcome {
            StopOutcome::Exited => "had already exited".to_string(),
            StopOutcome::Terminated => format!(
                "stopped by SIGTERM in {:.2} s",
                started.elapsed().as_secs_f64()
            ),
            StopOutcome::Killed => format!(
                "still running {:.1} s after SIGTERM; killed with SIGKILL",
                self.grace.as_secs_f64()
            ),
            StopOutcome::AlreadyStopped => unreachable!("first stop"),
        };
        if let Ok(mut log) = OpenOptions::new().append(true).open(&self.log) {
            log_line(
                &mut log,
                &format!("process group {} {how} (leader: {status})", self.pgid),
            );
        }
        outcome
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        self.stop();
    }
}

/// How a group stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopOutcome {
    /// Nothing of the group was left when the stop began.
    Exited,
    /// Gone within the grace period after SIGTERM.
    Terminated,
    /// Still there after the grace period; SIGKILL was needed.
    Killed,
    AlreadyStopped,
}

/// Stops group `pgid`. `leader_reaped` reaps the leader when it is our child
/// (a zombie leader would keep the group alive) and says whether it is gone.
pub(crate) fn stop_group(
    pgid: i32,
    grace: Duration,
    leader_reaped: &mut dyn FnMut() -> bool,
) -> StopOutcome {
    leader_reaped();
    if !group_alive(pgid) {
        return StopOutcome::Exited;
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        leader_reaped();
        if !group_alive(pgid) {
            return StopOutcome::Terminated;
        }
        if Instant::now() >= deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = killpg(Pid::from_raw(pgid), Signal::SIGKILL);
    // SIGKILL cannot be ignored; members vanish as soon as the kernel has torn them down.
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        leader_reaped();
        if !group_alive(pgid) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    StopOutcome::Killed
}

/// Whether any process of group `pgid` is still running. Zombies (exited,
/// waiting for a parent to reap them) do not count.
pub fn group_alive(pgid: i32) -> bool {
    match killpg(Pid::from_raw(pgid), None) {
        Err(Errno::ESRCH) => false,
        _ => match proc_entries() {
            Some(entries) => entries
                .iter()
                .any(|e| e.pgrp == pgid && e.state != 'Z' && e.state != 'X'),
            None => true,
        },
    }
}

/// The process group of process `pid`, from `/proc`.
pub fn group_of(pid: u32) -> Option<i32> {
    proc_stat(pid as i32).map(|e| e.pgrp)
}

/// Whether process `pid` exists and is not a zombie.
pub fn process_alive(pid: i32) -> bool {
    match kill(Pid::from_raw(pid), None) {
        Err(Errno::ESRCH) => false,
        _ => match proc_stat(pid) {
            Some(e) => e.state != 'Z' && e.state != 'X',
            None => !Path::new("/proc/self").exists(),
        },
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct ProcEntry {
    state: char,
    pgrp: i32,
}

/// Fields of `/proc/PID/stat`: `pid (comm) state ppid pgrp …`; comm may hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<ProcEntry> {
    let after = &text[text.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(ProcEntry { state, pgrp })
}

fn proc_stat(pid: i32) -> Option<ProcEntry> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Every process in `/proc`, or `None` where there is no `/proc`.
fn proc_entries() -> Option<Vec<ProcEntry>> {
    let dir = std::fs::read_dir("/proc").ok()?;
    Some(
        dir.filter_map(Result::ok)
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter_map(proc_stat)
            .collect(),
    )
}

/// `exit status: 3`, `killed by signal 9 (SIGKILL)`.
pub fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status: {code}"),
        (None, Some(sig)) => match Signal::try_from(sig) {
            Ok(s) => format!("killed by signal {sig} ({})", s.as_str()),
            Err(_) => format!("killed by signal {sig}"),
        },
        _ => status.to_string(),
    }
}

fn log_line(log: &mut File, text: &str) {
    let _ = writeln!(log, "[servegate {}] {text}", timestamp());
}

/// Local time with microseconds, RFC 3339: the format of servegate's lines in server logs.
pub fn timestamp() -> String {
    chrono::Local::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, false)
}

/// An argv as one could paste it into a shell.
pub fn shell_words(argv: &[String]) -> String {
    argv.iter()
        .map(|a| {
            if !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The last `n` lines of `text` (a final line without a newline counts).
pub fn tail_lines(text: &str, n: usize) -> String {
    let trimmed = text.strip_suffix('\n').unwrap_or(text);
    if trimmed.is_empty() || n == 0 {
        return String::new();
    }
    let start = trimmed
        .rmatch_indices('\n')
        .nth(n - 1)
        .map_or(0, |(i, _)| i + 1);
    trimmed[start..].to_string()
}

/// The last `n` lines of a log file (reads at most its last 64 KiB).
pub fn tail_file(path: &Path, n: usize) -> std::io::Result<String> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    let skip = len.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(skip))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    let text = String::from_utf8_lossy(&bytes);
    // A window that starts mid-line would quote half a line first.
    let text = if skip > 0 {
        text.split_once('\n').map_or("", |(_, rest)| rest)
    } else {
        &text
    };
    Ok(tail_lines(text, n))
}

/// The block quoted in error messages: the last lines of a log, with its path.
pub fn quote_log(path: &Path) -> String {
    match tail_file(path, TAIL_LINES) {
        Ok(tail) if tail.is_empty() => format!("(log {} is empty)", path.display()),
        Ok(tail) => format!(
            "--- last {TAIL_LINES} lines of {} ---\n{tail}\n---",
            path.display()
        ),
        Err(e) => format!("(cannot read log {}: {e})", path.display()),
    }
}

// ---------------------------------------------------------------------------
// Process-wide registry of groups to stop when servegate is interrupted.

#[derive(Debug, Clone)]
struct Group {
    pgid: i32,
    grace: Duration,
    /// Where to note the stop.
    log: Option<PathBuf>,
}

struct Registry {
    groups: Vec<Group>,
    /// Files removed when servegate is interrupted (a shared server's state file).
    files: Vec<PathBuf>,
    shutting_down: bool,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry {
    groups: Vec::new(),
    files: Vec::new(),
    shutting_down: false,
});

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// Stops group `pgid` if servegate is interrupted (for groups this process
/// did not spawn through [`ChildProcess`], such as a detached supervisor).
pub fn register_group(pgid: i32, grace: Duration) {
    install_signal_handler();
    registry().groups.push(Group {
        pgid,
        grace,
        log: None,
    });
    super::guardian::watch(pgid);
}

pub fn unregister_group(pgid: i32) {
    registry().groups.retain(|g| g.pgid != pgid);
    super::guardian::unwatch(pgid);
}

/// Removes `path` if servegate is interrupted.
pub fn remove_on_interrupt(path: &Path) {
    install_signal_handler();
    registry().files.push(path.to_path_buf());
}

/// Ends the process on SIGINT, SIGTERM or SIGHUP with 128 + the signal,
/// stopping every registered server group first (installed at the first
/// server start anyway; `run` installs it at once for a consistent status).
pub fn exit_on_interrupt() {
    install_signal_handler();
}

/// Lets SIGINT end the process again where it arrived ignored: a shell
/// starts a background job (`servegate sim &`) with SIGINT ignored, though
/// nobody asked for that. Other ignored signals (a wrapper's `trap '' TERM`)
/// were asked for and stay as they are.
pub fn default_sigint() {
    // SAFETY: setting a signal's disposition to its default.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_DFL);
    }
}

pub fn keep_on_interrupt(path: &Path) {
    registry().files.retain(|p| p != path);
}

/// Installs (once) a thread that waits for SIGINT, SIGTERM and SIGHUP, stops
/// every registered group and exits with 128 + the signal number (130 for Ctrl-C).
fn install_signal_handler() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("servegate-signals".into())
            .spawn(move || {
                use tokio::signal::unix::{signal, SignalKind};
                let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .build()
                else {
                    let _ = ready_tx.send(());
                    return;
                };
                let code = runtime.block_on(async move {
                    let mut int = signal(SignalKind::interrupt()).ok();
                    let mut term = signal(SignalKind::terminate()).ok();
                    let mut hup = signal(SignalKind::hangup()).ok();
                    let _ = ready_tx.send(());
                    async fn next(s: &mut Option<tokio::signal::unix::Signal>) {
                        match s {
                            Some(s) => {
                                s.recv().await;
                            }
                            None => std::future::pending().await,
                        }
                    }
                    tokio::select! {
                        _ = next(&mut int) => Signal::SIGINT,
                        _ = next(&mut term) => Signal::SIGTERM,
                        _ = next(&mut hup) => Signal::SIGHUP,
                    }
                });
                interrupted(code);
            });
        if spawned.is_ok() {
            // Handlers are in place before the first child exists.
            let _ = ready_rx.recv_timeout(Duration::from_secs(5));
        }
    });
}

/// Called before the process exits on its own: when a signal is being
/// handled, its handler stops the servers and exits with 128 + the signal;
/// returning first would race it and exit with the run's own status.
pub fn wait_for_interrupt_handler() {
    if !registry().shutting_down {
        return;
    }
    // The handler waits at most the grace period, then 2 s after SIGKILL.
    std::thread::sleep(INTERRUPT_GRACE + Duration::from_secs(10));
}

fn interrupted(signal: Signal) -> ! {
    let (groups, files) = {
        let mut r = registry();
        r.shutting_down = true;
        (std::mem::take(&mut r.groups), std::mem::take(&mut r.files))
    };
    for g in &groups {
        let _ = killpg(Pid::from_raw(g.pgid), Signal::SIGTERM);
    }
    let grace = groups
        .iter()
        .map(|g| g.grace)
        .max()
        .unwrap_or_default()
        .min(INTERRUPT_GRACE);
    let deadline = Instant::now() + grace;
    while groups.iter().any(|g| group_alive(g.pgid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for g in &groups {
        if group_alive(g.pgid) {
            let _ = killpg(Pid::from_raw(g.pgid), Signal::SIGKILL);
        }
    }
    // Exit only once they are gone, so that nothing outlives servegate.
    let deadline = Instant::now() + Duration::from_secs(2);
    while groups.iter().any(|g| group_alive(g.pgid)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    for g in &groups {
        let log = g
            .log
            .as_ref()
            .and_then(|l| OpenOptions::new().append(true).open(l).ok());
        if let Some(mut log) = log {
            log_line(
                &mut log,
                &format!(
                    "process group {} stopped: servegate received {}",
                    g.pgid,
                    signal.as_str()
                ),
            );
        }
    }
    for f in &files {
        let _ = std::fs::remove_file(f);
    }
    if !groups.is_empty() {
        eprintln!(
            "servegate: received {}; stopped {} server process group(s)",
            signal.as_str(),
            groups.len()
        );
    }
    std::process::exit(128 + signal as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail_lines("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\nc", 2), "b\nc");
        assert_eq!(tail_lines("a\nb\nc\n", 10), "a\nb\nc");
        assert_eq!(tail_lines("", 3), "");
        assert_eq!(tail_lines("only", 1), "only");
        assert_eq!(tail_lines("a\nb\n", 0), "");
        let long: String = (0..100).map(|i| format!("line {i}\n")).collect();
        let tail = tail_lines(&long, TAIL_LINES);
        assert_eq!(tail.lines().count(), TAIL_LINES);
        assert!(tail.starts_with("line 60\n") && tail.ends_with("line 99"));
    }

    #[test]
    fn tail_of_a_large_file_starts_on_a_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.log");
        let text: String = (0..20_000).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&path, text).unwrap();
        let tail = tail_file(&path, 3).unwrap();
        assert_eq!(tail, "line 19997\nline 19998\nline 19999");
    }

    #[test]
    fn stat_lines_with_odd_command_names_parse() {
        let e = parse_stat("42 (my (odd) server) S 1 42 42 0 -1").unwrap();
        assert_eq!(
            e,
            ProcEntry {
                state: 'S',
                pgrp: 42
            }
        );
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn argv_is_quoted_for_display() {
        let argv = ["serve", "--port", "8000", "a b", "it's"].map(String::from);
        assert_eq!(shell_words(&argv), r"serve --port 8000 'a b' 'it'\''s'");
    }

    fn spec(dir: &Path, script: &str, grace_ms: u64) -> Spec {
        Spec {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            env: Vec::new(),
            cwd: None,
            log: dir.join("logs/t.log"),
            grace: Duration::from_millis(grace_ms),
        }
    }

    #[test]
    fn dropping_stops_the_whole_group_even_while_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let mut child =
            ChildProcess::spawn(&spec(dir.path(), "sleep 30 & sleep 30; wait", 2000)).unwrap();
        let pgid = child.pgid();
        assert!(group_alive(pgid));
        assert!(child.exit_status().is_none());
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || {
            let _owned = child;
            panic!("benchmark blew up");
        }));
        assert!(result.is_err());
        assert!(!group_alive(pgid), "group {pgid} outlived a panic");
        let log = std::fs::read_to_string(dir.path().join("logs/t.log")).unwrap();
        assert!(log.contains("stopped by SIGTERM"), "{log}");
    }

    #[test]
    fn a_member_ignoring_sigterm_is_killed_after_the_grace_period() {
        let dir = tempfile::tempdir().unwrap();
        let mut child =
            ChildProcess::spawn(&spec(dir.path(), "trap '' TERM; sleep 30 & wait", 300)).unwrap();
        let pgid = child.pgid();
        std::thread::sleep(Duration::from_millis(100));
        let started = Instant::now();
        assert_eq!(child.stop(), StopOutcome::Killed);
        assert!(started.elapsed() >= Duration::from_millis(300));
        assert!(!group_alive(pgid));
        assert_eq!(child.stop(), StopOutcome::AlreadyStopped);
        let status = child.exit_status().unwrap();
        assert_eq!(describe_status(status), "killed by signal 9 (SIGKILL)");
    }

    #[test]
    fn exit_status_and_missing_programs() {
        let dir = tempfile::tempdir().unwrap();
        let mut child = ChildProcess::spawn(&spec(dir.path(), "echo bye; exit 3", 1000)).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while child.exit_status().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        assert_eq!(
            describe_status(child.exit_status().unwrap()),
            "exit status: 3"
        );
        assert_eq!(child.stop(), StopOutcome::Exited);
        let quoted = quote_log(child.log_path());
        assert!(
            quoted.contains("bye") && quoted.contains("last 40 lines"),
            "{quoted}"
        );

        let mut s = spec(dir.path(), "", 1000);
        s.argv = vec!["/nonexistent/server".into()];
        assert!(ChildProcess::spawn(&s).is_err());
    }
}
