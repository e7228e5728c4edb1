//! Layered configuration as the README describes it: a higher layer's target
//! replaces a lower layer's kind of server, the environment's matrix
//! shorthands shape scenarios only, tool variables do what they say, every
//! error names a file, and `servegate sim` flags apply over a profile.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use servegate::config::{env_overrides, ConfigError, Origin};
use servegate::discover::{Case, Project};
use servegate::sim::SimServer;

use crate::common::{self, Sim, BIN};

/// A project whose candidate and baseline are embedded engines, with one
/// scenario `speed` and the short prompt set.
fn sim_project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::write(
        root.join("servegate.toml"),
        "model = \"m\"\n\
         [targets.candidate]\nsim = { ttft_ms = 5.0, tpot_ms = 1.0 }\nmodel = \"m\"\nready_timeout_s = 20.0\n\
         [targets.baseline]\nsim = { ttft_ms = 5.0, tpot_ms = 1.0 }\n\
         [workload]\nmax_tokens = 8\nnum_requests = 6\nwarmup = 1\n",
    )
    .unwrap();
    common::add_prompts_and_scenarios(root);
    write(
        root,
        "scenarios/speed.toml",
        "[gate]\nerror_rate = { max = 0.0 }\n",
    );
    dir
}

fn write(root: &Path, file: &str, body: &str) {
    std::fs::write(root.join(file), body).unwrap();
}

fn load(root: &Path, name: &str, env: &[(&str, &str)]) -> Result<Vec<Case>, ConfigError> {
    let env = env_overrides(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let p = Project::with_env(root, env);
    p.load(&p.file_for_name(name).expect("case file exists"))
}

/// Runs the CLI on `root` with only the given `SERVEGATE_*` variables.
fn servegate(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("--root").arg(root).args(args);
    for (k, _) in std::env::vars() {
        if k.starts_with("SERVEGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.envs(env.iter().copied()).output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The shipped project (servegate.toml, scenarios, suites, prompts, datasets).
fn shipped_project() -> tempfile::TempDir {
    common::copy_of_repository(&["scenarios", "suites", "prompts", "datasets"])
}

// --- 1. A higher layer's target replaces the lower layer's kind ----------

#[test]
fn a_case_command_replaces_the_project_sim_and_runs() {
    let dir = sim_project();
    let root = dir.path();
    let command = format!(
        "[targets.candidate]\ncommand = [\"{BIN}\", \"sim\", \"--port\", \"{{port}}\", \"--model\", \"{{model}}\", \"--ttft-ms\", \"5\", \"--itl-ms\", \"1\"]\n\
         [gate]\nerror_rate = {{ max = 0.0 }}\n"
    );
    write(root, "scenarios/started.toml", &command);
    let cases = load(root, "scenario::started", &[]).unwrap();
    let target = &cases[0].config.targets["candidate"];
    assert!(
        target.command.is_some() && target.sim.is_none(),
        "{target:?}"
    );
    // Keys about talking to the server carry over; `exclusive` follows the new kind.
    assert_eq!(target.model.as_deref(), Some("m"));
    assert_eq!(target.ready_timeout_s, 20.0);
    assert!(target.is_exclusive());

    let out = servegate(root, &["run", "--exact", "scenario::started"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

#[test]
fn an_environment_url_replaces_a_sim_baseline() {
    let dir = sim_project();
    let root = dir.path();
    let server =
        SimServer::start_local(&servegate::config::SimSpec::constant(5.0, 1.0), "m").unwrap();
    let url = server.url();
    let env = [("SERVEGATE_TARGETS__BASELINE__URL", url.as_str())];
    let cases = load(root, "scenario::speed", &env).unwrap();
    let baseline = &cases[0].config.targets["baseline"];
    assert_eq!(baseline.url.as_deref(), Some(url.as_str()));
    assert!(baseline.sim.is_none());

    let output = root.join("run.json");
    let out = servegate(root, &["run", "--output", output.to_str().unwrap()], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The baseline really was the server behind the URL.
    let metrics = common::rt().block_on(async {
        reqwest::get(format!("{url}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    let served: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("vllm:request_total"))
        .and_then(|rest| rest.split_whitespace().last())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no request_total in {metrics}"));
    // warmup 1 + 6 measured requests.
    assert!(served >= 7.0, "baseline served {served} requests");
}

#[test]
fn the_same_kind_still_merges_key_by_key() {
    let dir = sim_project();
    let root = dir.path();
    write(
        root,
        "scenarios/slow.toml",
        "[targets.candidate]\nsim = { slowdown = 2.0 }\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    let cases = load(root, "scenario::slow", &[]).unwrap();
    let sim = cases[0].config.targets["candidate"].sim.clone().unwrap();
    assert_eq!(
        (sim.ttft_ms, sim.tpot_ms, sim.slowdown),
        (Some(5.0), Some(1.0), Some(2.0))
    );
}

#[test]
fn replaced_targets_still_report_file_line_and_key() {
    let dir = sim_project();
    let root = dir.path();
    // A command with no {port}: the error points into the case file.
    write(
        root,
        "scenarios/noport.toml",
        "description = \"x\"\n[targets.candidate]\ncommand = [\"./serve\"]\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    let e = load(root, "scenario::noport", &[]).unwrap_err();
    assert_eq!(e.origin, Origin::File(root.join("scenarios/noport.toml")));
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(3), Some("targets.candidate.command")),
        "{e}"
    );
    // A command-only key over a sim target is still an error of that key.
    write(
        root,
        "scenarios/port.toml",
        "[targets.candidate]\nport = 9000\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    let e = load(root, "scenario::port", &[]).unwrap_err();
    assert_eq!(
        (e.line, e.key.as_deref()),
        (Some(2), Some("targets.candidate.port")),
        "{e}"
    );
    // A bad URL from the environment names the variable.
    let e = load(
        root,
        "scenario::speed",
        &[("SERVEGATE_TARGETS__BASELINE__URL", "ftp://host")],
    )
    .unwrap_err();
    assert_eq!(
        e.origin,
        Origin::Env("SERVEGATE_TARGETS__BASELINE__URL".into()),
        "{e}"
    );
    assert_eq!(e.key.as_deref(), Some("targets.baseline.url"));
}

// --- 2. Matrix shorthands shape scenarios, not suites ---------------------

#[test]
fn num_requests_shorthand_applies_to_scenarios_and_leaves_suites_alone() {
    let dir = shipped_project();
    let root = dir.path();
    let env = [("SERVEGATE_NUM_REQUESTS", "4"), ("SERVEGATE_WARMUP", "1")];
    for cmd in ["list", "check"] {
        let out = servegate(root, &[cmd], &env);
        assert_eq!(out.status.code(), Some(0), "{cmd}: {}", text(&out));
    }
    let listed = String::from_utf8(servegate(root, &["list"], &env).stdout).unwrap();
    assert!(listed.contains("suite::quick"), "{listed}");
    assert!(listed.contains("scenario::grid::short_mt64_c1"), "{listed}");

    let output = root.join("run.json");
    let out = servegate(
        root,
        &[
            "run",
            "--exact",
            "scenario::grid::short_mt64_c1",
            "--output",
            output.to_str().unwrap(),
        ],
        &env,
    );
    assert!(out.status.code().is_some_and(|c| c < 2), "{}", text(&out));
    let results: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
    for side in ["candidate", "baseline"] {
        assert_eq!(
            results["cases"][0][side]["summary"]["completed"], 4,
            "{side}: {results}"
        );
    }
}

#[test]
fn every_matrix_shorthand_skips_suites() {
    let dir = shipped_project();
    let root = dir.path();
    let env = [
        ("SERVEGATE_CONCURRENCY", "1,2"),
        ("SERVEGATE_MAX_TOKENS", "16"),
        ("SERVEGATE_PROMPT_LENGTH", "short"),
        ("SERVEGATE_MATRIX__NUM_REQUESTS", "3"),
        ("SERVEGATE_WARMUP", "0"),
    ];
    let suite = load(root, "suite::quick", &env).unwrap();
    assert_eq!(suite.len(), 1);
    assert_eq!(suite[0].config.matrix, Default::default());
    let scenario = load(root, "scenario::batching", &env).unwrap();
    assert_eq!(scenario.len(), 2, "one point per concurrency");
    assert!(scenario.iter().all(|c| c.config.workload.max_tokens == 16
        && c.config.workload.num_requests == 3
        && c.config.workload.warmup == 0));
    let out = servegate(root, &["check"], &env);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

// --- 3. Tool variables -----------------------------------------------------

/// `servegate run` under a pseudo-terminal (indicatif draws only on one).
fn run_on_a_terminal(root: &Path, no_progress: Option<&str>) -> String {
    let line = format!(
        "'{BIN}' --root '{}' run --exact scenario::speed",
        root.display()
    );
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"]);
    cmd.env_remove("SERVEGATE_NO_PROGRESS");
    if let Some(v) = no_progress {
        cmd.env("SERVEGATE_NO_PROGRESS", v);
    }
    let out = cmd
        .output()
        .expect("`script` (util-linux) runs a command on a pseudo-terminal");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn no_progress_hides_the_progress_bars_of_run() {
    let dir = sim_project();
    // The bar's template ends in `{pos}/{len}`; 6 measured requests.
    let bar = "] 6/6";
    let shown = run_on_a_terminal(dir.path(), None);
    assert!(shown.contains(bar), "a terminal shows the bar:\n{shown}");
    let hidden = run_on_a_terminal(dir.path(), Some("1"));
    assert!(!hidden.contains(bar), "SERVEGATE_NO_PROGRESS=1:\n{hidden}");
    assert!(hidden.contains("TTFT"), "the tables remain:\n{hidden}");
}

#[test]
fn undocumented_servegate_variables_are_errors_not_silent() {
    // SERVEGATE_LOG configured nothing (servegate has no logging), so it is
    // no longer reserved: like any unknown key it is reported.
    let dir = sim_project();
    let e = load(dir.path(), "scenario::speed", &[("SERVEGATE_LOG", "debug")]).unwrap_err();
    assert_eq!(e.origin, Origin::Env("SERVEGATE_LOG".into()), "{e}");
    assert!(e.to_string().contains("unknown key"), "{e}");
}

// --- 4. Every error names a file; check says ok only for good files -------

#[test]
fn a_scenario_without_a_gate_names_its_file() {
    let dir = sim_project();
    let root = dir.path();
    write(
        root,
        "scenarios/nogate.toml",
        "[workload]\nconcurrency = 2\n",
    );
    let e = load(root, "scenario::nogate", &[]).unwrap_err();
    assert_eq!(e.origin, Origin::File(root.join("scenarios/nogate.toml")));
    assert_eq!(e.key.as_deref(), Some("gate"));
    let out = servegate(root, &["check"], &[]);
    assert_eq!(out.status.code(), Some(2));
    let all = text(&out);
    assert!(all.contains("nogate.toml: key `gate`"), "{all}");
    assert!(!all.contains("built-in default"), "{all}");
}

#[test]
fn check_never_says_ok_for_a_file_it_rejects() {
    let dir = sim_project();
    let root = dir.path();
    write(
        root,
        "scenarios/noprompts.toml",
        "[workload]\nprompts = \"nosuchset\"\n[gate]\nerror_rate = { max = 0.0 }\n",
    );
    let out = servegate(root, &["check"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("noprompts.toml"), "{stderr}");
    assert!(!stdout.contains("noprompts.toml"), "{stdout}");
    assert!(
        stdout.contains("ok  ") && stdout.contains("speed.toml"),
        "{stdout}"
    );
}

// --- 5. `servegate sim` flags apply over a profile ------------------------

/// Seconds a non-streaming request for `max_tokens` takes.
async fn timed(url: &str, max_tokens: u32) -> f64 {
    let start = Instant::now();
    let r = reqwest::Client::new()
        .post(format!("{url}/v1/completions"))
        .json(&serde_json::json!({"model": "servegate-sim", "prompt": "the cat", "max_tokens": max_tokens}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.bytes().await.unwrap();
    start.elapsed().as_secs_f64()
}

#[test]
fn sim_flags_apply_over_a_profile() {
    // A standalone engine, listening when `start` returns; killed when dropped.
    let engine = Sim::start(&["--profile", "engine", "--ttft-ms", "300", "--itl-ms", "40"]);
    let url = engine.url.clone();
    let (first, six) =
        common::rt().block_on(async { (timed(&url, 1).await, timed(&url, 6).await) });
    drop(engine);
    // The first token comes at least `--ttft-ms` after arrival; each later
    // one at least `--itl-ms` after the one before (engine mode floors).
    assert!((0.29..2.0).contains(&first), "ttft {first} s");
    assert!((0.49..3.0).contains(&six), "6 tokens in {six} s");
}

/// Pinning an axis the file varies to one value keeps it in the names, so
/// history and filters still match the cases.
#[test]
fn a_single_value_override_keeps_the_point_names() {
    let out = Command::new(BIN)
        .args(["list", "grid"])
        .current_dir(common::repo())
        .env("SERVEGATE_CONCURRENCY", "1,2,4")
        .env("SERVEGATE_MAX_TOKENS", "64")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect();
    assert_eq!(names.len(), 6, "{names:?}");
    assert!(
        names.contains(&"scenario::grid::medium_mt64_c4".to_string()),
        "{names:?}"
    );
    assert!(names.iter().all(|n| n.contains("_mt64_")), "{names:?}");
}
