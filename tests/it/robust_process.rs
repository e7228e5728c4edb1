//! The process as scripts and CI use it: signals that arrive ignored, a
//! small open-file limit, results that must survive both.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::common::{free_port, Sim, BIN};

/// `bench` at `sim` with one prompt, `concurrency` streams and as many
/// requests, through bash after `limits` (e.g. `ulimit -n 80`), in a
/// temporary folder; its output file is `out.json` there.
fn bench_under(
    sim: &Sim,
    limits: &str,
    concurrency: u32,
    max_tokens: u32,
) -> (Output, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("p.json"), r#"{"short": ["Hello there"]}"#).unwrap();
    let script = format!(
        "{limits} '{BIN}' bench --base-url {} --prompts-file p.json \
         --prompt-length short --concurrency {concurrency} --max-tokens {max_tokens} \
         --num-requests {concurrency} --warmup 0 --output out.json",
        sim.url
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .output()
        .unwrap();
    (out, dir)
}

fn saved(dir: &tempfile::TempDir) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.path().join("out.json")).expect("results written");
    serde_json::from_str(&text).unwrap()
}

/// `servegate sim &` in a script: the shell starts it with SIGINT ignored,
/// and `kill -INT` must still stop it.
#[test]
fn sim_in_the_background_of_a_script_stops_on_sigint() {
    let port = free_port();
    let script = format!(
        "'{BIN}' sim --port {port} >/dev/null 2>&1 &\n\
         pid=$!\n\
         echo $pid\n\
         i=0; while ! (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; do i=$((i+1)); [ $i -gt 200 ] && exit 3; sleep 0.05; done\n\
         kill -INT $pid\n\
         i=0; while kill -0 $pid 2>/dev/null; do i=$((i+1)); if [ $i -gt 100 ]; then kill -9 $pid; exit 4; fi; sleep 0.05; done\n\
         wait $pid; echo \"status $?\"\n"
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("status 130"), "{stdout}");
}

/// A soft open-file limit below the concurrency is raised to the hard limit
/// at start, so every stream gets its socket.
#[test]
fn a_low_soft_open_file_limit_is_raised() {
    let sim = Sim::start(&["--ttft-ms", "50", "--itl-ms", "5"]);
    let (out, dir) = bench_under(&sim, "ulimit -S -n 64 &&", 150, 4);
    let all = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("Too many open files"), "{all}");
    assert_eq!(
        saved(&dir)["scenarios"][0]["summary"]["completed"],
        150,
        "{all}"
    );
}

/// A hard limit too small for the concurrency: servegate says so before it
/// starts, the requests that get no socket fail with the reason, and the
/// results are still written.
#[test]
fn a_hard_open_file_limit_too_small_warns_and_loses_nothing() {
    let sim = Sim::start(&["--ttft-ms", "200", "--itl-ms", "5"]);
    let (out, dir) = bench_under(&sim, "ulimit -n 80 &&", 150, 4);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stderr.contains("warning: concurrency 150 needs about 214 open files but the limit is 80"),
        "{stderr}"
    );
    let saved = saved(&dir);
    let summary = &saved["scenarios"][0]["summary"];
    let (completed, failed) = (
        summary["completed"].as_u64().unwrap(),
        summary["failed"].as_u64().unwrap(),
    );
    assert_eq!(completed + failed, 150, "{stdout}\n{stderr}");
    // The requests that got no socket say why.
    if failed > 0 {
        assert!(stdout.contains("Too many open files"), "{stdout}");
    }
}

/// 2,000 streams from one client on a small machine: every request is
/// measured, and the results say whether the client kept up (the mark and
/// the warning agree with the lateness measured).
#[test]
fn two_thousand_streams_are_measured_and_client_saturation_is_marked() {
    let sim = Sim::start(&["--ttft-ms", "50", "--itl-ms", "20"]);
    let started = Instant::now();
    let (out, dir) = bench_under(&sim, "", 2000, 16);
    let wall = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let saved = saved(&dir);
    let summary = &saved["scenarios"][0]["summary"];
    assert_eq!(summary["completed"], 2000);
    let lag = &summary["client_lag"];
    let saturated = lag["saturated"]
        .as_bool()
        .expect("the client's lag is recorded");
    assert_eq!(
        saturated,
        stdout.contains("could not keep up"),
        "the warning follows the mark: {stdout}"
    );
    println!(
        "2000 streams: {:.1} s, client lag p99 {:.1} ms (max {:.1}), saturated: {saturated}, \
         TTFT p50 {:.0} ms (server: 50), ITL p50 {:.2} ms (server: 20)",
        wall.as_secs_f64(),
        lag["p99_ms"].as_f64().unwrap(),
        lag["max_ms"].as_f64().unwrap(),
        saved["scenarios"][0]["ttft_p50_ms"].as_f64().unwrap(),
        saved["scenarios"][0]["itl_p50_ms"].as_f64().unwrap(),
    );
}

/// Flag values no run can use are usage errors naming the flag, never a
/// panic or a silent substitute.
#[test]
fn unusable_flag_values_are_usage_errors() {
    let repo = env!("CARGO_MANIFEST_DIR");
    for (args, flag) in [
        (
            &["eval", "--url", "http://127.0.0.1:9", "--concurrency", "0"][..],
            "--concurrency",
        ),
        (
            &["eval", "--url", "http://127.0.0.1:9", "--tolerance", "NaN"][..],
            "--tolerance",
        ),
        (&["up", "--idle-timeout", "1e30"][..], "--idle-timeout"),
        (
            &["bench", "--request-timeout", "1e30"][..],
            "--request-timeout",
        ),
        (&["bench", "--rate", "1e-300"][..], "--rate"),
        (&["bench", "--warmup", "4294967295"][..], "--warmup"),
    ] {
        let out = Command::new(BIN)
            .args(args)
            .current_dir(repo)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(flag), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

/// Ctrl-C after the second case: the results file is valid JSON holding
/// the finished cases, marked incomplete, and `report` says so.
#[test]
fn an_interrupted_run_keeps_the_finished_cases_marked_incomplete() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        "[targets.candidate]\nsim = { ttft_ms = 5.0, tpot_ms = 5.0 }\n\
         [targets.baseline]\nsim = { ttft_ms = 5.0, tpot_ms = 5.0 }\n\
         [workload]\nwarmup = 0\nnum_requests = 12\nmax_tokens = 16\n",
    )
    .unwrap();
    std::fs::create_dir_all(root.join("prompts")).unwrap();
    std::fs::write(root.join("prompts/short.txt"), "hello there\n").unwrap();
    std::fs::create_dir_all(root.join("scenarios")).unwrap();
    for name in ["a", "b", "c", "d", "e", "f"] {
        std::fs::write(
            root.join(format!("scenarios/{name}.toml")),
            "[workload]\nprompts = \"short\"\n[gate]\nerror_rate = { max = 0.0 }\n",
        )
        .unwrap();
    }
    let out = root.join("run.json");
    let mut child = Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "run", "--output"])
        .arg(&out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let finished = |v: &serde_json::Value| v["cases"].as_array().map_or(0, Vec::len);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let saved = std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        if saved.as_ref().is_some_and(|v| finished(v) >= 2) {
            break;
        }
        assert!(Instant::now() < deadline, "two cases never finished");
        std::thread::sleep(Duration::from_millis(20));
    }
    nix_kill(child.id(), libc::SIGINT);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).expect("valid JSON");
    assert_eq!(saved["complete"], false);
    let n = finished(&saved);
    assert!((2..6).contains(&n), "{n} cases");
    for case in saved["cases"].as_array().unwrap() {
        assert_eq!(case["passed"], true, "{case}");
    }
    let report = Command::new(BIN)
        .args(["report"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(report.status.success());
    assert!(String::from_utf8_lossy(&report.stdout).contains("incomplete run"));
}

fn nix_kill(pid: u32, signal: i32) {
    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}
