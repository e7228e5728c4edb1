//! Real server targets: `command` targets started from TOML, waited for,
//! logged, compared one after the other and stopped on every path, with no
//! process left behind; servers shared through `servegate up` / `down`; and
//! baselines read from an earlier run's results.
//!
//! Every test that starts processes marks them with an environment variable
//! that all their descendants inherit, and ends by asserting that no process
//! carrying its mark (and no member of the server's process group) is left.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use servegate::config::env_overrides;
use servegate::discover::{Case, Project};
use servegate::run::scenario::{self, CaseReport};

use crate::common::{self, BIN};

/// A temporary project whose targets are given as TOML, with one scenario.
struct TestProject {
    dir: tempfile::TempDir,
    mark: String,
}

impl TestProject {
    /// `targets` is TOML for `[targets.*]`; `{mark}` in it becomes this test's mark.
    fn new(targets: &str, workload: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mark = format!(
            "servegate-test-{}",
            root.file_name().unwrap().to_string_lossy()
        );
        std::fs::write(
            root.join("servegate.toml"),
            format!(
                "model = \"m\"\n{}\n[workload]\n{workload}\n",
                targets.replace("{mark}", &mark)
            ),
        )
        .unwrap();
        common::add_prompts_and_scenarios(root);
        let p = Self { dir, mark };
        p.scenario("speed", "");
        p
    }

    /// A project whose candidate runs `./serve.sh {port}` (with `extra`
    /// settings) and whose baseline is the embedded engine.
    fn candidate_script(extra: &str) -> Self {
        Self::new(
            &format!(
                "[targets.candidate]\n{}[targets.baseline]\nsim = {{ ttft_ms = 5.0, tpot_ms = 2.0 }}\n",
                script_target("serve.sh", extra)
            ),
            SMALL_WORKLOAD,
        )
    }

    fn root(&self) -> &Path {
        self.dir.path()
    }

    fn scenario(&self, stem: &str, extra: &str) {
        std::fs::write(
            self.root().join(format!("scenarios/{stem}.toml")),
            format!("{extra}\n[gate]\nerror_rate = {{ max = 0.0 }}\nthroughput_total = {{ min_ratio = 0.5 }}\n"),
        )
        .unwrap();
    }

    /// Writes an executable shell script into the project.
    fn script(&self, name: &str, body: &str) {
        let path = self.root().join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    fn project(&self) -> Project {
        Project::with_env(self.root(), Vec::new())
    }

    fn case(&self, project: &Project, name: &str) -> Case {
        let file = project.file_for_name(name).unwrap();
        project.load(&file).unwrap().remove(0)
    }

    fn run(&self, name: &str) -> anyhow::Result<CaseReport> {
        let p = self.project();
        let case = self.case(&p, name);
        scenario::run_case(&p, &case, Default::default())
    }

    fn cli(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--root")
            .arg(self.root())
            .args(args)
            .env_remove("SERVEGATE_CONCURRENCY")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    /// Waits for a file a script writes (its pid) and reads the number in it.
    fn read_pid(&self, name: &str) -> i32 {
        let path = self.root().join(name);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|t| t.trim().parse().ok())
            {
                return pid;
            }
            assert!(
                Instant::now() < deadline,
                "{} never appeared",
                path.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn logs(&self) -> Vec<PathBuf> {
        let mut logs: Vec<PathBuf> = std::fs::read_dir(self.root().join("results/logs"))
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        logs
    }

    fn log_of(&self, target: &str) -> String {
        let logs: Vec<PathBuf> = self
            .logs()
            .into_iter()
            .filter(|p| {
                let name = p.file_name().unwrap().to_str().unwrap();
                name.starts_with(&format!("{target}-2"))
            })
            .collect();
        assert_eq!(logs.len(), 1, "one log for {target}: {logs:?}");
        std::fs::read_to_string(&logs[0]).unwrap()
    }

    /// Asserts that no process carrying this test's mark is left.
    fn assert_nothing_left(&self) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = processes_with_env(&self.mark);
            if left.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "processes outlived the test: {left:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Fields of `/proc/PID/stat` after the command name: state, ppid, pgrp.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = text[text.rfind(')')? + 1..].split_whitespace();
    let state = fields.next()?.chars().next()?;
    fields.next()?;
    Some((state, fields.next()?.parse().ok()?))
}

fn all_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Running (not zombie) processes whose environment contains `needle`.
fn processes_with_env(needle: &str) -> Vec<(i32, String)> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(stat(pid), Some((s, _)) if s != 'Z' && s != 'X'))
        .filter_map(|pid| {
            let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            let hit = env
                .split(|&b| b == 0)
                .any(|kv| String::from_utf8_lossy(kv).contains(needle));
            hit.then(|| {
                let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                (pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
            })
        })
        .collect()
}

/// Running members of process group `pgid`.
fn group_members(pgid: i32) -> Vec<i32> {
    all_pids()
        .into_iter()
        .filter(|&pid| matches!(stat(pid), Some((s, g)) if g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

fn alive(pid: i32) -> bool {
    matches!(stat(pid), Some((s, _)) if s != 'Z' && s != 'X')
}

fn assert_group_gone(pgid: i32) {
    let members = group_members(pgid);
    assert!(
        members.is_empty(),
        "process group {pgid} still has {members:?}"
    );
    // The kernel agrees: signalling the group finds nobody (or only zombies).
    let r = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(pgid), None);
    assert!(
        r == Err(nix::errno::Errno::ESRCH) || group_members(pgid).is_empty(),
        "{r:?}"
    );
}

/// TOML array for a `command` running the embedded engine through a script.
fn script_target(script: &str, extra: &str) -> String {
    format!(
        "command = [\"./{script}\", \"{{port}}\"]\nenv = {{ SG_TEST_MARK = \"{{mark}}\", SERVEGATE = \"{BIN}\" }}\n{extra}\n"
    )
}

const SIM: &str = "\"$SERVEGATE\" sim --port \"$1\" --model m --ttft-ms 5 --tpot-ms 2";

const SMALL_WORKLOAD: &str = "max_tokens = 8\nconcurrency = 2\nnum_requests = 6\nwarmup = 1";

fn embedded_baseline() -> &'static str {
    "[targets.baseline]\nsim = { ttft_ms = 5.0, tpot_ms = 2.0 }\n"
}

#[test]
fn slow_starter_becomes_ready() {
    let t = TestProject::candidate_script("ready_timeout_s = 15");
    t.script(
        "serve.sh",
        &format!("echo $$ > pid\necho warming up\nsleep 1.2\necho loaded\nexec {SIM}"),
    );
    let started = Instant::now();
    let report = t.run("scenario::speed").expect("case runs");
    assert!(started.elapsed() >= Duration::from_millis(1200));
    assert!(report.passed, "{:?}", report.gate);
    assert_eq!(report.candidate.summary.completed, 6);
    let log = t.log_of("candidate");
    assert!(
        log.contains("warming up") && log.contains("loaded"),
        "{log}"
    );
    assert_eq!(report.candidate.log.as_deref(), Some(t.logs()[0].as_path()));
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

#[test]
fn server_that_never_gets_ready_fails_within_its_timeout_quoting_its_log() {
    let t = TestProject::candidate_script("ready_timeout_s = 1.5\nstop_timeout_s = 2");
    // Prints, forks a child, and never listens.
    t.script(
        "serve.sh",
        "echo $$ > pid\ni=1; while [ $i -le 50 ]; do printf 'line-%03d\\n' $i; i=$((i+1)); done\nsleep 60 &\nsleep 60",
    );
    let started = Instant::now();
    let error = format!("{:#}", t.run("scenario::speed").unwrap_err());
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1500), "{took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");
    assert!(
        error.contains("target `candidate` not ready within 1.5 s"),
        "{error}"
    );
    assert!(error.contains("last 40 lines of"), "{error}");
    assert!(
        error.contains("line-050") && error.contains("line-020"),
        "{error}"
    );
    assert!(
        !error.contains("line-005"),
        "only the tail is quoted: {error}"
    );
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

#[test]
fn server_that_exits_while_starting_fails_at_once_with_its_status() {
    let t = TestProject::candidate_script("ready_timeout_s = 30");
    t.script(
        "serve.sh",
        "echo $$ > pid\necho 'fatal: no GPU found' >&2\nexit 3",
    );
    let started = Instant::now();
    let error = format!("{:#}", t.run("scenario::speed").unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(
        error.contains("target `candidate` exited before it was ready (exit status: 3)"),
        "{error}"
    );
    assert!(error.contains("fatal: no GPU found"), "{error}");
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

#[test]
fn server_that_crashes_mid_run_fails_the_case_with_lost_requests() {
    let t = TestProject::new(
        &format!(
            "[targets.candidate]\n{}{}",
            script_target("serve.sh", ""),
            embedded_baseline()
        ),
        "max_tokens = 20\nconcurrency = 1\nnum_requests = 20\nwarmup = 0\nrequest_timeout_s = 5",
    );
    // About 8 s of work; the engine dies after 1.5 s.
    t.script(
        "serve.sh",
        "echo $$ > pid\n\"$SERVEGATE\" sim --port \"$1\" --model m --ttft-ms 5 --tpot-ms 20 &\nS=$!\nsleep 1.5\necho 'engine crashed: CUDA error'\nkill -9 $S\nexit 7",
    );
    let started = Instant::now();
    let error = format!("{:#}", t.run("scenario::speed").unwrap_err());
    assert!(started.elapsed() < Duration::from_secs(8), "never hangs");
    assert!(
        error.contains("candidate target `candidate` exited (exit status: 7)"),
        "{error}"
    );
    assert!(error.contains("engine crashed: CUDA error"), "{error}");
    let lost: u32 = error
        .split(" of 20 measured requests lost")
        .next()
        .and_then(|head| head.rsplit(['\n', ' ']).next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no lost count in {error}"));
    assert!((5..=18).contains(&lost), "lost {lost}");
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

#[test]
fn server_ignoring_sigterm_is_killed_after_stop_timeout() {
    let t = TestProject::candidate_script("stop_timeout_s = 1");
    // An ignored signal stays ignored across exec.
    t.script(
        "serve.sh",
        &format!("trap '' TERM\necho $$ > pid\nexec {SIM}"),
    );
    let report = t.run("scenario::speed").expect("case runs");
    assert!(report.passed);
    let log = t.log_of("candidate");
    assert!(
        log.contains("still running 1.0 s after SIGTERM; killed with SIGKILL"),
        "{log}"
    );
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

#[test]
fn server_that_forks_leaves_no_child_behind() {
    let t = TestProject::candidate_script("stop_timeout_s = 1");
    // A forked helper that ignores SIGTERM and would outlive its parent.
    t.script(
        "serve.sh",
        &format!("echo $$ > pid\n(trap '' TERM; exec sleep 60) &\necho $! > helper\nexec {SIM}"),
    );
    let report = t.run("scenario::speed").expect("case runs");
    assert!(report.passed);
    let helper = t.read_pid("helper");
    assert!(!alive(helper), "forked helper {helper} survived");
    assert_group_gone(t.read_pid("pid"));
    t.assert_nothing_left();
}

/// `[servegate TIME] …` lines servegate writes into a server's log.
fn servegate_time(log: &str, contains: &str) -> chrono::DateTime<chrono::FixedOffset> {
    let line = log
        .lines()
        .find(|l| l.starts_with("[servegate ") && l.contains(contains))
        .unwrap_or_else(|| panic!("no `{contains}` line in\n{log}"));
    let time = &line["[servegate ".len()..line.find(']').unwrap()];
    chrono::DateTime::parse_from_rfc3339(time).unwrap()
}

/// `up <epoch seconds>` as the server script prints it when it starts.
fn script_time(log: &str) -> f64 {
    log.lines()
        .find_map(|l| l.strip_prefix("up "))
        .unwrap_or_else(|| panic!("no `up` line in\n{log}"))
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn exclusive_targets_never_overlap_and_start_once_per_run() {
    let t = TestProject::new(
        &format!(
            "[targets.candidate]\n{}\n[targets.baseline]\n{}",
            script_target("serve.sh", ""),
            script_target("serve.sh", "")
        ),
        SMALL_WORKLOAD,
    );
    t.scenario("second", "[workload]\nconcurrency = 1");
    t.script(
        "serve.sh",
        &format!("echo \"up $(date +%s.%N)\"\nexec {SIM}"),
    );
    let output = t.root().join("results/run.json");
    let out = t.cli(&["run", "--output", output.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    // Two cases, two targets, two starts: each target served both cases.
    assert_eq!(t.logs().len(), 2, "{:?}", t.logs());
    let candidate = t.log_of("candidate");
    let baseline = t.log_of("baseline");
    let candidate_stopped = servegate_time(&candidate, "stopped by SIGTERM");
    let baseline_started = servegate_time(&baseline, "starting");
    assert!(
        candidate_stopped < baseline_started,
        "candidate stopped {candidate_stopped}, baseline started {baseline_started}"
    );
    // The baseline's own clock agrees: it began after the candidate was gone.
    let baseline_up = script_time(&baseline);
    let stopped_epoch = candidate_stopped.timestamp_micros() as f64 / 1e6;
    assert!(
        baseline_up > stopped_epoch,
        "{baseline_up} vs {stopped_epoch}"
    );
    assert!(script_time(&candidate) < stopped_epoch);
    // Both cases ran against each server, in one stretch per server.
    let order: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("running "))
        .collect();
    assert_eq!(
        order,
        vec![
            "running scenario::second: candidate `candidate` …",
            "running scenario::speed: candidate `candidate` …",
            "running scenario::second: baseline `baseline` …",
            "running scenario::speed: baseline `baseline` …",
        ]
    );
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(t.root().join("results/run.json")).unwrap())
            .unwrap();
    assert_eq!(results["passed"], true);
    assert!(results["cases"][0]["candidate"]["log"]
        .as_str()
        .unwrap()
        .contains("candidate-"));
    t.assert_nothing_left();
}

#[test]
fn recorded_results_serve_as_the_baseline() {
    // The baseline target cannot start: a recorded baseline must not need it.
    let t = TestProject::new(
        "[targets.candidate]\nsim = { ttft_ms = 5.0, tpot_ms = 3.0 }\n\
         [targets.baseline]\ncommand = [\"/nonexistent/engine\", \"{port}\"]\n\
         [targets.reference]\nsim = { ttft_ms = 5.0, tpot_ms = 3.0 }\n",
        "max_tokens = 16\nconcurrency = 2\nnum_requests = 8\nwarmup = 1",
    );
    // Record a run of the reference engine as the candidate.
    t.scenario(
        "speed",
        "candidate = \"reference\"\nbaseline = \"reference\"",
    );
    let saved = t.root().join("saved/run.json");
    let out = t.cli(&["run", "--output", saved.to_str().unwrap()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    t.scenario("speed", "baseline = { results = \"saved/run.json\" }");
    let report = t
        .run("scenario::speed")
        .expect("gated against the recording");
    assert!(report.passed, "{:?}", report.gate);
    assert_eq!(report.baseline.target, "reference");
    assert_eq!(
        report.baseline.recorded_from.as_deref(),
        Some(t.root().join("saved/run.json").as_path())
    );
    assert!(t.logs().is_empty(), "no server was started");

    // A slower candidate fails against the same recording.
    let env = env_overrides([(
        "SERVEGATE_TARGETS__CANDIDATE__SIM__SLOWDOWN".to_string(),
        "2.5".to_string(),
    )]);
    let p = Project::with_env(t.root(), env);
    let case = t.case(&p, "scenario::speed");
    let report = scenario::run_case(&p, &case, Default::default()).unwrap();
    assert!(!report.passed);

    // Another workload cannot be compared with the recording.
    t.scenario(
        "speed",
        "baseline = { results = \"saved/run.json\" }\n[workload]\nmax_tokens = 32",
    );
    let error = format!("{:#}", t.run("scenario::speed").unwrap_err());
    assert!(
        error.contains("speed.toml:1: key `baseline.results`"),
        "{error}"
    );
    assert!(
        error.contains("workload.max_tokens = 32 (recorded: 16)"),
        "{error}"
    );

    // A case the recording lacks is named, and `check` finds it too.
    t.scenario("other", "baseline = { results = \"saved/run.json\" }");
    let error = format!("{:#}", t.run("scenario::other").unwrap_err());
    assert!(
        error.contains("has no measured case named `scenario::other`"),
        "{error}"
    );
    let out = t.cli(&["check"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("other.toml:1: key `baseline.results`"),
        "{stderr}"
    );
    t.assert_nothing_left();
}

/// Reads the `NAME URL` lines `servegate up` prints.
fn up_urls(out: &Output) -> Vec<(String, String)> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (n, u) = l.split_once(' ')?;
            Some((n.to_string(), u.to_string()))
        })
        .collect()
}

fn state(t: &TestProject, target: &str) -> serde_json::Value {
    let text =
        std::fs::read_to_string(t.root().join(format!("results/servers/{target}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[test]
fn up_shares_a_server_with_later_runs_and_down_stops_it() {
    let t = TestProject::candidate_script("");
    t.script("serve.sh", &format!("echo $$ > pid\nexec {SIM}"));
    let out = t.cli(&["up", "--idle-timeout", "0"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let urls = up_urls(&out);
    assert_eq!(urls.len(), 1, "only command targets start: {urls:?}");
    assert_eq!(urls[0].0, "candidate");
    let s = state(&t, "candidate");
    let supervisor = s["supervisor_pid"].as_i64().unwrap() as i32;
    let server = s["server_pgid"].as_i64().unwrap() as i32;
    assert_eq!(server, t.read_pid("pid"));
    assert!(alive(supervisor) && !group_members(server).is_empty());

    // A second `up` finds it; a run uses it instead of starting another.
    let again = t.cli(&["up", "candidate"]);
    assert_eq!(up_urls(&again), urls);
    let report = t
        .run("scenario::speed")
        .expect("case runs on the shared server");
    assert_eq!(report.candidate.url, urls[0].1);
    assert!(report.passed);
    assert!(!group_members(server).is_empty(), "still up after the run");
    let logs = t.logs();
    assert_eq!(
        logs.iter()
            .filter(|p| p.to_str().unwrap().contains("/candidate-2"))
            .count(),
        1,
        "{logs:?}"
    );

    let out = t.cli(&["down"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "stopped candidate\n");
    assert!(!alive(supervisor));
    assert_group_gone(server);
    assert!(!t.root().join("results/servers/candidate.json").exists());
    t.assert_nothing_left();
}

#[test]
fn shared_server_stops_itself_when_idle() {
    let t = TestProject::candidate_script("");
    t.script("serve.sh", &format!("echo $$ > pid\nexec {SIM}"));
    let out = t.cli(&["up", "candidate", "--idle-timeout", "1"]);
    assert_eq!(out.status.code(), Some(0));
    let s = state(&t, "candidate");
    let supervisor = s["supervisor_pid"].as_i64().unwrap() as i32;
    let server = s["server_pgid"].as_i64().unwrap() as i32;
    let deadline = Instant::now() + Duration::from_secs(10);
    while (alive(supervisor) || !group_members(server).is_empty()) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!alive(supervisor), "supervisor still running");
    assert_group_gone(server);
    assert!(!t.root().join("results/servers/candidate.json").exists());
    t.assert_nothing_left();
}

/// Starts `servegate run` on a server that never gets ready and ignores
/// SIGTERM, sends `signal` to servegate once the server runs, and checks
/// that servegate exits with 128 + the signal leaving nothing behind.
/// A `servegate run` whose server ignores SIGTERM and forks, once the
/// server is up: (servegate, the server's process group, the project).
fn run_with_a_stubborn_server() -> (std::process::Child, i32, TestProject) {
    let t = TestProject::candidate_script("ready_timeout_s = 60\nstop_timeout_s = 30");
    t.script(
        "serve.sh",
        "trap '' TERM\necho $$ > pid\n(exec sleep 60) &\nsleep 60",
    );
    let child = Command::new(BIN)
        .arg("--root")
        .arg(t.root())
        .arg("run")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let server = t.read_pid("pid");
    (child, server, t)
}

fn interrupt_run(signal: nix::sys::signal::Signal) {
    let (mut child, server, t) = run_with_a_stubborn_server();
    let started = Instant::now();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), signal).unwrap();
    let status = child.wait().unwrap();
    // The server ignores SIGTERM: servegate waits at most 5 s, then kills it.
    assert!(started.elapsed() < Duration::from_secs(8));
    assert_eq!(status.code(), Some(128 + signal as i32));
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "servegate: received {}; stopped 1 server process group",
            signal.as_str()
        )),
        "{stderr}"
    );
    let log = t.log_of("candidate");
    assert!(
        log.contains(&format!("servegate received {}", signal.as_str())),
        "{log}"
    );
    assert_group_gone(server);
    t.assert_nothing_left();
}

#[test]
fn ctrl_c_stops_the_servers_and_exits_130() {
    interrupt_run(nix::sys::signal::Signal::SIGINT);
}

#[test]
fn sigterm_from_a_test_runner_timeout_stops_the_servers() {
    interrupt_run(nix::sys::signal::Signal::SIGTERM);
}

#[test]
fn sighup_from_a_closed_terminal_stops_the_servers() {
    interrupt_run(nix::sys::signal::Signal::SIGHUP);
}

/// SIGKILL gives servegate no chance to clean up: its guardian process
/// sees it gone and stops the server group (SIGTERM, 5 s, SIGKILL).
#[test]
fn sigkill_of_servegate_still_stops_the_servers() {
    let (mut child, server, t) = run_with_a_stubborn_server();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.signal(), Some(9));
    // The server ignores SIGTERM: gone after the guardian's grace and SIGKILL.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !group_members(server).is_empty() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_group_gone(server);
    t.assert_nothing_left();
}

#[test]
fn build_runs_once_before_the_first_start_and_its_failure_is_quoted() {
    // Both targets share one build and run through the shell.
    let target = "command = [\"exec ./serve.sh {port}\"]\nbuild = [\"./build.sh && echo built >> count\"]\nshell = true\nenv = { SG_TEST_MARK = \"{mark}\" }\n";
    let t = TestProject::new(
        &format!("[targets.candidate]\n{target}[targets.baseline]\n{target}"),
        SMALL_WORKLOAD,
    );
    t.scenario("second", "");
    // The build makes the server script the targets run.
    t.script(
        "build.sh",
        &format!("printf '#!/bin/sh\\nexec \"%s\" sim --port \"$1\" --model m --ttft-ms 5 --tpot-ms 2\\n' '{BIN}' > serve.sh\nchmod +x serve.sh"),
    );
    let out = t.cli(&["run"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let count = std::fs::read_to_string(t.root().join("count")).unwrap();
    assert_eq!(count, "built\n", "one build for two targets and two cases");

    t.script(
        "build.sh",
        "echo 'error[E0425]: cannot find value `x` in this scope' >&2\nexit 101",
    );
    let error = format!("{:#}", t.run("scenario::speed").unwrap_err());
    assert!(
        error.contains("target `candidate`: build failed (exit status: 101)")
            && error.contains("error[E0425]: cannot find value `x`"),
        "{error}"
    );
    t.assert_nothing_left();
}

fn config_error(targets: &str, case: &str) -> String {
    let t = TestProject::new(targets, SMALL_WORKLOAD);
    t.scenario("speed", case);
    let p = t.project();
    p.load(&p.file_for_name("scenario::speed").unwrap())
        .expect_err("configuration should be rejected")
        .to_string()
}

#[test]
fn target_configuration_errors_name_file_line_and_key() {
    let base = embedded_baseline();
    let e = config_error(
        &format!("[targets.candidate]\nurl = \"http://127.0.0.1:1\"\ncommand = [\"x\", \"{{port}}\"]\n{base}"),
        "",
    );
    assert!(
        e.contains("servegate.toml:2: key `targets.candidate`")
            && e.contains("exactly one of `url`, `command` or `sim`"),
        "{e}"
    );
    let e = config_error(
        &format!("[targets.candidate]\ncommand = [\"serve\", \"--port\", \"{{prot}}\"]\n{base}"),
        "",
    );
    assert!(
        e.contains("servegate.toml:3: key `targets.candidate.command`")
            && e.contains("unknown placeholder `{prot}`"),
        "{e}"
    );
    let e = config_error(
        &format!("[targets.candidate]\ncommand = [\"serve\"]\n{base}"),
        "",
    );
    assert!(e.contains("no `{port}` placeholder"), "{e}");
    let e = config_error(
        &format!("[targets.candidate]\nshell = true\ncommand = [\"serve\", \"{{port}}\"]\n{base}"),
        "",
    );
    assert!(e.contains("as one string"), "{e}");
    let e = config_error(
        &format!("[targets.candidate]\nsim = {{}}\n\nstop_timeout_s = 1\nport = 80\n{base}"),
        "",
    );
    assert!(
        e.contains("servegate.toml:6: key `targets.candidate.port`")
            && e.contains("applies to `command` targets only"),
        "{e}"
    );
    let e = config_error(
        &format!(
            "[targets.candidate]\ncommand = [\"s\", \"{{port}}\"]\nstop_timeout_s = 0\n{base}"
        ),
        "",
    );
    assert!(e.contains("key `targets.candidate.stop_timeout_s`"), "{e}");
    // The baseline is a target name or a recorded results file, nothing else.
    let e = config_error(
        &format!("[targets.candidate]\nsim = {{}}\n{base}"),
        "description = \"x\"\nbaseline = 5",
    );
    assert!(
        e.contains("speed.toml:2: key `baseline`")
            && e.contains("a target name or a table { results"),
        "{e}"
    );
    let e = config_error(
        &format!("[targets.candidate]\nsim = {{}}\n{base}"),
        "baseline = { results = \"r.json\", side = \"x\" }",
    );
    assert!(e.contains("speed.toml:1: key `baseline.side`"), "{e}");
}
