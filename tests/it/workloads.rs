//! Generated workloads (`random`, `prefix_repetition`) and the server's own
//! `/metrics` scraped during a run, end to end through `servegate run`
//! against the embedded engine.

use std::path::Path;

use serde_json::Value;

use crate::common::{self, Sim, BIN};

/// A project in a temporary folder with `servegate.toml` and the scenarios given.
fn project(config: &str, scenarios: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    common::copy_dir(&common::repo().join("prompts"), &dir.path().join("prompts"));
    std::fs::write(dir.path().join("servegate.toml"), config).unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios")).unwrap();
    for (name, text) in scenarios {
        std::fs::write(dir.path().join(format!("scenarios/{name}.toml")), text).unwrap();
    }
    dir
}

/// `servegate run` in `root` with `--output`: exit code, console, results.
fn run(root: &Path, case: &str) -> (Option<i32>, String, Value) {
    let output = root.join(format!("{case}.json"));
    let out = std::process::Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "run", "--save-detailed"])
        .arg(format!("scenario::{case}"))
        .arg("--output")
        .arg(&output)
        .output()
        .unwrap();
    let console = common::text(&out);
    let results = std::fs::read_to_string(&output)
        .map(|t| serde_json::from_str(&t).unwrap())
        .unwrap_or(Value::Null);
    (out.status.code(), console, results)
}

/// `servegate check` in `root`, which must exit 2: its error text.
fn check_fails(root: &Path) -> String {
    let check = std::process::Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&check.stderr).to_string();
    assert_eq!(check.status.code(), Some(2), "{err}");
    err
}

/// The case names `servegate list FILTER` prints in `root`.
fn list(root: &Path, filter: &str) -> Vec<String> {
    let out = std::process::Command::new(BIN)
        .args(["--root", root.to_str().unwrap(), "list", filter])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// (input, output) tokens of every measured request, as the engine's usage reported them.
fn lengths(side: &Value) -> Vec<(u64, u64)> {
    let mut v: Vec<(u64, u64)> = side["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["input_tokens"].as_u64().unwrap(),
                r["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

const TWO_ENGINES: &str = "[targets.a]\nsim = { profile = \"engine\" }\n\
    [targets.b]\nsim = { profile = \"engine\" }\n";

#[test]
fn random_prompts_have_exactly_the_requested_token_counts() {
    let dir = project(
        &format!("candidate = \"a\"\nbaseline = \"b\"\n{TWO_ENGINES}"),
        &[
            (
                "exact",
                "[workload]\nprompts = { random = { input_len = 96, output_len = 12 } }\n\
                 num_requests = 12\nwarmup = 2\nconcurrency = 4\n[gate]\nerror_rate = { max = 0.0 }\n",
            ),
            (
                "spread",
                "[workload]\nprompts = { random = { input_len = 100, output_len = 20, range_ratio = 0.5, prefix_len = 16 } }\n\
                 num_requests = 24\nwarmup = 0\nconcurrency = 4\nseed = 7\n[gate]\nerror_rate = { max = 0.0 }\n",
            ),
        ],
    );
    let (code, console, results) = run(dir.path(), "exact");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    for side in ["candidate", "baseline"] {
        let got = lengths(&case[side]);
        assert_eq!(got.len(), 12, "{console}");
        assert!(got.iter().all(|&l| l == (96, 12)), "{side}: {got:?}");
        assert_eq!(case[side]["summary"]["tokens_from_usage"], 12);
    }

    let (code, console, results) = run(dir.path(), "spread");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    let (a, b) = (lengths(&case["candidate"]), lengths(&case["baseline"]));
    // Seeded: both sides got the same requests.
    assert_eq!(a, b);
    // The prefix counts in the input: 16 + 100 × [0.5, 1.5].
    assert!(
        a.iter()
            .all(|&(i, o)| (66..=166).contains(&i) && (10..=30).contains(&o)),
        "{a:?}"
    );
    let distinct: std::collections::BTreeSet<u64> = a.iter().map(|l| l.0).collect();
    assert!(distinct.len() >= 10, "lengths vary: {distinct:?}");
}

/// The workload that shows prefix caching: with the engine's cache on, most
/// prompt tokens are found cached and TTFT drops; with it off the hit rate
/// reads 0 and a gate on it fails, saying so.
#[test]
fn prefix_repetition_shows_the_prefix_cache_working_or_not() {
    let config = "candidate = \"cached\"\nbaseline = \"uncached\"\n\
        [targets.cached]\nsim = { profile = \"engine\", prefix_caching = true, prefill_ms_per_token = 0.05 }\n\
        [targets.uncached]\nsim = { profile = \"engine\", prefill_ms_per_token = 0.05 }\n";
    let workload = "[workload]\n\
        prompts = { prefix_repetition = { num_prefixes = 2, prefix_len = 512, suffix_len = 32, output_len = 8 } }\n\
        concurrency = 4\nnum_requests = 40\nwarmup = 4\n\
        [server_metrics]\ninterval_s = 0.1\n";
    let gated = |candidate: &str| {
        format!(
            "candidate = \"{candidate}\"\n{workload}[gate]\nprefix_cache_hit_rate = {{ min = 0.5 }}\n"
        )
    };
    let dir = project(
        config,
        &[
            (
                "compare",
                &format!("{workload}[gate]\nttft_p50 = {{ max_ratio = 0.8 }}\n"),
            ),
            ("on", &gated("cached")),
            ("off", &gated("uncached")),
        ],
    );
    let (code, console, results) = run(dir.path(), "compare");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    let figure = |side: &str, key: &str| case[side]["summary"]["server"][key].as_f64();
    let on = figure("candidate", "prefix_cache_hit_rate").unwrap();
    let off = figure("baseline", "prefix_cache_hit_rate").unwrap();
    // 512 of every 544 prompt tokens, but for each prefix's first request.
    assert!(on > 0.85, "{on}");
    assert_eq!(off, 0.0);
    let ttft = |side: &str| case[side]["summary"]["ttft_ms"]["p50"].as_f64().unwrap();
    assert!(ttft("candidate") < 0.7 * ttft("baseline"), "{console}");
    for side in ["candidate", "baseline"] {
        assert!(lengths(&case[side]).iter().all(|&l| l == (544, 8)));
        assert!(figure(side, "kv_cache_usage_peak").unwrap() > 0.0);
        // Scraped every 0.1 s: the peak seen lies between 1 and the 4 asked.
        let peak = figure(side, "running_peak").unwrap();
        assert!((1.0..=4.0).contains(&peak), "{side}: {peak}");
    }
    assert!(console.contains("prefix-cache hit rate"), "{console}");

    let (code, console, _) = run(dir.path(), "on");
    assert_eq!(code, Some(0), "{console}");
    let (code, console, _) = run(dir.path(), "off");
    assert_eq!(code, Some(1), "{console}");
    let row = console
        .lines()
        .find(|l| l.contains("prefix_cache_hit_rate"))
        .unwrap_or_else(|| panic!("{console}"));
    assert!(row.contains("FAIL") && row.contains(">= 0.5"), "{console}");
}

/// The scraped series are the engine's own counters: over the measured
/// requests they rose by exactly the tokens the client counted, and the
/// last scrape reads what the engine says once the run is over.
#[test]
fn scraped_series_match_the_engines_counters() {
    let engine = Sim::start(&["--profile", "engine", "--model", "servegate-sim"]);
    let dir = project(
        &format!(
            "[targets.candidate]\nurl = \"{0}\"\n[targets.baseline]\nurl = \"{0}\"\n",
            engine.url
        ),
        &[(
            "scraped",
            "[workload]\nprompts = \"short\"\nmax_tokens = 16\nconcurrency = 4\nnum_requests = 20\nwarmup = 3\n\
             [server_metrics]\ninterval_s = 0.05\nnames = [\"vllm:generation_tokens_total\", \"vllm:prompt_tokens_total\"]\n\
             [gate]\nerror_rate = { max = 0.0 }\n",
        )],
    );
    let (code, console, results) = run(dir.path(), "scraped");
    assert_eq!(code, Some(0), "{console}");
    let side = &results["cases"][0]["baseline"];
    let series = &side["server_metrics"][0];
    let column = |name: &str| -> Vec<f64> {
        series["values"][name]
            .as_array()
            .unwrap_or_else(|| panic!("{name}: {series}"))
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let generated = column("vllm:generation_tokens_total");
    let prompted = column("vllm:prompt_tokens_total");
    assert!(generated.len() >= 3, "{series}");
    assert!(generated.windows(2).all(|w| w[0] <= w[1]), "{generated:?}");
    let records = side["records"].as_array().unwrap();
    let sum = |key: &str| -> f64 { records.iter().map(|r| r[key].as_f64().unwrap()).sum() };
    assert_eq!(
        generated[generated.len() - 1] - generated[0],
        sum("output_tokens")
    );
    assert_eq!(
        prompted[prompted.len() - 1] - prompted[0],
        sum("input_tokens")
    );
    // Nothing ran since: the engine's counter now is the last one scraped.
    let url = format!("{}/metrics", engine.url);
    let metrics =
        common::rt().block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() });
    let now: f64 = metrics
        .lines()
        .find(|l| l.starts_with("vllm:generation_tokens_total"))
        .and_then(|l| l.rsplit(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(now, generated[generated.len() - 1]);
}

/// A `vllm bench serve` command line pasted into `servegate bench`: the
/// random dataset's exact lengths, `--request-rate inf` with
/// `--max-concurrency`, goodput objectives, `--result-filename`.
#[test]
fn bench_takes_vllm_bench_serve_flags() {
    let engine = Sim::start(&["--profile", "engine"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("result.json");
    let tokenizer = common::repo().join("src/sim/data/tokenizer.json");
    let bench = |extra: &[&str]| {
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["bench", "--base-url", &engine.url])
            .args(extra)
            .output()
            .unwrap()
    };
    let ran = bench(&[
        "--dataset-name",
        "random",
        "--random-input-len",
        "64",
        "--random-output-len",
        "8",
        "--num-prompts",
        "12",
        "--max-concurrency",
        "3",
        "--request-rate",
        "inf",
        "--goodput",
        "ttft:5000",
        "e2el:60000",
        "--tokenizer",
        tokenizer.to_str().unwrap(),
        "--result-filename",
        out.to_str().unwrap(),
    ]);
    let console = common::text(&ran);
    assert_eq!(ran.status.code(), Some(0), "{console}");
    assert!(console.contains("goodput req/s"), "{console}");
    let file: Value = serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let point = &file["scenarios"][0];
    assert_eq!(point["name"], "random_in64_out8_mt8_c3", "{point}");
    let s = &point["summary"];
    assert_eq!(s["completed"], 12);
    assert_eq!(s["total_input_tokens"], 12 * 64, "{s}");
    assert_eq!(s["total_output_tokens"], 12 * 8, "{s}");
    assert_eq!(s["peak_concurrency"], 3, "{s}");
    // Generous objectives: every request meets them.
    assert_eq!(s["goodput"], s["request_throughput"], "{s}");

    // A malformed objective is a usage error naming it.
    let ran = bench(&["--goodput", "ttft=5", "--num-prompts", "1"]);
    assert_eq!(ran.status.code(), Some(2), "{}", common::text(&ran));
    assert!(String::from_utf8_lossy(&ran.stderr).contains("`ttft=5`"));
}

/// `request_rate` as a matrix axis, `inf` included, with `max_concurrency`:
/// one test per point, each named by its rate, each load as asked.
#[test]
fn request_rate_is_a_matrix_axis_with_inf() {
    let dir = project(
        "[targets.candidate]\nsim = { profile = \"engine\" }\n\
         [targets.baseline]\nsim = { profile = \"engine\" }\n",
        &[(
            "rates",
            "[workload]\nprompts = \"short\"\nmax_tokens = 8\nnum_requests = 12\nwarmup = 0\n\
             [matrix]\nrequest_rate = [20.0, \"inf\"]\nmax_concurrency = [3]\n\
             [gate]\nerror_rate = { max = 0.0 }\n",
        )],
    );
    assert_eq!(
        list(dir.path(), "rates"),
        ["scenario::rates::r20", "scenario::rates::rinf"]
    );
    let (code, console, results) = run(dir.path(), "rates::rinf");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    assert_eq!(
        case["candidate"]["summary"]["peak_concurrency"], 3,
        "{case}"
    );
    assert_eq!(case["workload"]["rate"], Value::Null);
    let (code, console, results) = run(dir.path(), "rates::r20");
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(results["cases"][0]["workload"]["rate"], 20.0);
    // A rate that is neither a number nor "inf" names the key.
    std::fs::write(
        dir.path().join("scenarios/rates.toml"),
        "[matrix]\nrequest_rate = [\"fast\"]\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let err = check_fails(dir.path());
    assert!(
        err.contains("rates.toml") && err.contains("`fast` is not a rate"),
        "{err}"
    );
}

/// A sweep finds the embedded engine's configured capacity: 4 sequences
/// at most, 10 steps of 10 ms per request, so 40 requests a second. The
/// highest rate within the objectives lies within 10% of it, and a gate on
/// it fails a candidate half as fast again.
#[test]
fn a_sweep_finds_the_engines_capacity() {
    let engine = "profile = \"engine\", max_num_seqs = 4, step_base_ms = 10, step_per_seq_ms = 0, prefill_ms_per_token = 0";
    let dir = project(
        &format!(
            "[targets.candidate]\nsim = {{ {engine} }}\n[targets.baseline]\nsim = {{ {engine} }}\n\
             [targets.slower]\nsim = {{ {engine}, slowdown = 1.5 }}\n"
        ),
        &[(
            "sweep",
            "[workload]\nprompts = \"short\"\nmax_tokens = 10\nconcurrency = 16\nnum_requests = 30\nwarmup = 4\n\
             burstiness = 1000\nslo = { e2e_ms = 250 }\nsweep = { rates = 8 }\n\
             [gate]\nmax_rate_within_slo = { min_ratio = 0.9 }\n",
        )],
    );
    let (code, console, results) = run(dir.path(), "sweep");
    assert_eq!(code, Some(0), "{console}");
    assert!(
        console.contains("highest rate within the objectives"),
        "{console}"
    );
    let side = &results["cases"][0]["candidate"];
    let best = side["summary"]["max_rate_within_slo"].as_f64().unwrap();
    assert!((36.0..=44.0).contains(&best), "{best} req/s\n{console}");
    let points = side["sweep"].as_array().unwrap();
    assert_eq!(points.len(), 10, "synchronous, saturated, 8 constant");
    assert_eq!(points[0]["kind"], "synchronous");
    // Saturated: the closed loop of 16 queues past the objective.
    assert_eq!(points[1]["kind"], "saturated");
    assert_eq!(points[1]["meets"], false, "{}", points[1]);
    let saturated = points[1]["rate"].as_f64().unwrap();
    assert!((36.0..=44.0).contains(&saturated), "{saturated}");

    // A slower candidate: its highest rate is about 27 req/s, the gate fails.
    let config = std::fs::read_to_string(dir.path().join("servegate.toml")).unwrap();
    std::fs::write(
        dir.path().join("servegate.toml"),
        format!("candidate = \"slower\"\n{config}"),
    )
    .unwrap();
    let (code, console, _) = run(dir.path(), "sweep");
    assert_eq!(code, Some(1), "{console}");
    let row = console
        .lines()
        .find(|l| l.contains("max_rate_within_slo"))
        .unwrap_or_else(|| panic!("{console}"));
    assert!(row.contains("FAIL"), "{console}");
}

/// A BurstGPT-style trace replayed at half its pace: each request starts at
/// its (scaled) timestamp with its own token counts; a `custom` JSON-lines
/// file sets each request's output length.
#[test]
fn traces_replay_at_their_own_pace_and_custom_files_set_lengths() {
    let dir = project(
        &format!("candidate = \"a\"\nbaseline = \"b\"\n{TWO_ENGINES}"),
        &[
            (
                "trace",
                "[workload]\nprompts = { trace = { path = \"burst.csv\", time_scale = 0.5 } }\n\
                 num_requests = 6\nwarmup = 0\nconcurrency = 8\n[gate]\nerror_rate = { max = 0.0 }\n",
            ),
            (
                "custom",
                "[workload]\nprompts = { custom = \"mine.jsonl\" }\nmax_tokens = 32\n\
                 num_requests = 3\nwarmup = 0\n[gate]\nerror_rate = { max = 0.0 }\n",
            ),
        ],
    );
    // Out of order on purpose, with BurstGPT's other columns and a failed (0-token) response.
    std::fs::write(
        dir.path().join("burst.csv"),
        "Timestamp,Model,Request tokens,Response tokens,Total tokens,Log Type\n\
         10.0,ChatGPT,40,5,45,Conversation log\n\
         10.4,ChatGPT,20,0,20,Conversation log\n\
         10.2,GPT-4,30,7,37,API log\n\
         11.0,ChatGPT,50,3,53,API log\n\
         11.2,ChatGPT,25,4,29,API log\n\
         12.0,GPT-4,60,6,66,Conversation log\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("mine.jsonl"),
        "{\"prompt\": \"Name three rivers.\", \"output_tokens\": 4}\n\
         {\"prompt\": \"Count to ten.\"}\n\n\
         {\"prompt\": \"Say hello.\", \"output_tokens\": 2}\n",
    )
    .unwrap();
    let (code, console, results) = run(dir.path(), "trace");
    assert_eq!(code, Some(0), "{console}");
    let mut records: Vec<(f64, u64, u64)> = results["cases"][0]["candidate"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["start_s"].as_f64().unwrap(),
                r["input_tokens"].as_u64().unwrap(),
                r["output_tokens"].as_u64().unwrap(),
            )
        })
        .collect();
    records.sort_by(|a, b| a.0.total_cmp(&b.0));
    let expected = [
        (0.0, 40, 5),
        (0.1, 30, 7),
        (0.2, 20, 1),
        (0.5, 50, 3),
        (0.6, 25, 4),
        (1.0, 60, 6),
    ];
    for (got, want) in records.iter().zip(expected) {
        assert_eq!((got.1, got.2), (want.1, want.2), "{records:?}");
        assert!(
            (got.0 - want.0).abs() < 0.05,
            "sent at {} s, not {} s",
            got.0,
            want.0
        );
    }

    let (code, console, results) = run(dir.path(), "custom");
    assert_eq!(code, Some(0), "{console}");
    let mut outputs: Vec<u64> = results["cases"][0]["baseline"]["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["output_tokens"].as_u64().unwrap())
        .collect();
    outputs.sort();
    assert_eq!(outputs, [2, 4, 32]);

    // A trace shorter than the run names the file and both counts.
    std::fs::write(
        dir.path().join("burst.csv"),
        "Timestamp,Request tokens,Response tokens\n0,4,4\n",
    )
    .unwrap();
    let err = check_fails(dir.path());
    assert!(
        err.contains("burst.csv: 1 requests in the trace; warmup + num_requests = 6"),
        "{err}"
    );
}

/// `steady_state`: with workers ramped up over 0.4 s, only the requests
/// wholly inside the plateau at 4 in flight are measured, and the results
/// say which window that was.
#[test]
fn steady_state_measures_only_the_plateau() {
    let dir = project(
        "[targets.candidate]\nsim = { ttft_ms = 20, tpot_ms = 5 }\n\
         [targets.baseline]\nsim = { ttft_ms = 20, tpot_ms = 5 }\n",
        &[(
            "plateau",
            "[workload]\nprompts = \"short\"\nmax_tokens = 20\nconcurrency = 4\nramp_up_s = 0.4\n\
             num_requests = 40\nwarmup = 0\nsteady_state = true\n[gate]\nerror_rate = { max = 0.0 }\n",
        )],
    );
    let (code, console, results) = run(dir.path(), "plateau");
    assert_eq!(code, Some(0), "{console}");
    let side = &results["cases"][0]["candidate"];
    let window = &side["steady_windows"][0];
    assert_eq!(window["target"], 4, "{window}");
    assert_eq!(window["of"], 40);
    let kept = window["kept"].as_u64().unwrap();
    // The ramp (0.4 s, about 3 requests per late worker) and the drain are out.
    assert!((20..=36).contains(&kept), "{window}");
    let (start, end) = (
        window["start_s"].as_f64().unwrap(),
        window["end_s"].as_f64().unwrap(),
    );
    assert!(start >= 0.29, "the 4th worker starts at 0.3 s: {window}");
    let records = side["records"].as_array().unwrap();
    assert_eq!(records.len() as u64, kept);
    assert!(records
        .iter()
        .all(|r| r["start_s"].as_f64().unwrap() >= start && r["end_s"].as_f64().unwrap() <= end));
    assert_eq!(side["summary"]["completed"].as_u64().unwrap(), kept);
    assert!(
        console.contains("steady state:") && console.contains("at 4 in flight"),
        "{console}"
    );
}

/// Conversations end to end: every turn's prompt holds the history (its
/// length grows by the previous turn's message and answer), later turns
/// are where the engine's prefix cache shows, and a ShareGPT file's human
/// turns make the sessions, capped at `max_turns`.
#[test]
fn conversations_grow_their_history_and_show_the_prefix_cache() {
    let config = "candidate = \"cached\"\nbaseline = \"uncached\"\n\
        [targets.cached]\nsim = { profile = \"engine\", prefix_caching = true, prefill_ms_per_token = 0.1 }\n\
        [targets.uncached]\nsim = { profile = \"engine\", prefill_ms_per_token = 0.1 }\n";
    let dir = project(
        config,
        &[
            (
                "chat",
                "[workload]\nendpoint = \"chat\"\n\
                 prompts = { conversations = { turns = 4, input_tokens = 200, output_tokens = 16, think_time_s = 0.05 } }\n\
                 concurrency = 2\nnum_requests = 6\nwarmup = 1\n\
                 [gate]\nlater_turn_ttft_p50 = { max_ratio = 0.9 }\n",
            ),
            (
                "shared",
                "candidate = \"uncached\"\n[workload]\n\
                 prompts = { conversations = { sharegpt = \"convs.json\", max_turns = 2 } }\n\
                 max_tokens = 5\nconcurrency = 2\nnum_requests = 3\nwarmup = 0\n\
                 [gate]\nerror_rate = { max = 0.0 }\n",
            ),
        ],
    );
    let (code, console, results) = run(dir.path(), "chat");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    for side in ["candidate", "baseline"] {
        let summary = &case[side]["summary"];
        assert_eq!(summary["sessions"]["sessions"], 6, "{summary}");
        assert_eq!(summary["sessions"]["completed"], 6);
        let turns = summary["turns"].as_array().unwrap();
        assert_eq!(turns.len(), 4);
        // Each turn's prompt holds the previous one, its 16-token answer and
        // a new 200-token message.
        let mut records: Vec<&Value> = case[side]["records"].as_array().unwrap().iter().collect();
        records.sort_by_key(|r| (r["turn"]["session"].as_u64(), r["turn"]["index"].as_u64()));
        for pair in records.windows(2) {
            if pair[1]["turn"]["index"].as_u64() == Some(0) {
                continue;
            }
            let (a, b) = (
                pair[0]["input_tokens"].as_u64().unwrap(),
                pair[1]["input_tokens"].as_u64().unwrap(),
            );
            assert!(b >= a + 16 + 200, "{side}: {a} then {b}");
        }
    }
    let turn_ttft = |side: &str, t: usize| {
        case[side]["summary"]["turns"][t]["ttft_ms"]["p50"]
            .as_f64()
            .unwrap()
    };
    // The last turn's 800-token history is cached on one side only.
    assert!(
        turn_ttft("candidate", 3) < 0.7 * turn_ttft("baseline", 3),
        "{console}"
    );
    assert!(console.contains("turns, candidate `cached`"), "{console}");
    assert!(console.contains("6 of 6 completed every turn"), "{console}");

    let conversation = |turns: &[&str]| {
        serde_json::json!({"conversations": turns.iter().flat_map(|t| [
            serde_json::json!({"from": "human", "value": t}),
            serde_json::json!({"from": "gpt", "value": "an answer from the file, never sent"}),
        ]).collect::<Vec<_>>()})
    };
    let file = serde_json::json!([
        conversation(&[
            "Name three rivers.",
            "Which is longest?",
            "And the shortest?"
        ]),
        conversation(&["Say hello."]),
    ]);
    std::fs::write(dir.path().join("convs.json"), file.to_string()).unwrap();
    let (code, console, results) = run(dir.path(), "shared");
    assert_eq!(code, Some(0), "{console}");
    let sessions = &results["cases"][0]["candidate"]["summary"]["sessions"];
    // Sessions 1 and 3 take the first conversation (two turns kept), session 2 the second.
    assert_eq!(sessions["sessions"], 3, "{sessions}");
    assert_eq!(sessions["turns"]["max"], 2.0, "{sessions}");
    assert_eq!(sessions["turns"]["min"], 1.0, "{sessions}");
}

/// With no tokenizer file, generated prompts are made through a running
/// server's own `/tokenize` and `/detokenize`: a `url` candidate's in a
/// scenario, the server's in `bench`; the lengths are exact by the
/// server's usage. A server without `/tokenize` gets an error saying so.
#[test]
fn generated_prompts_use_the_servers_tokenize_endpoint() {
    let engine = Sim::start(&["--profile", "engine"]);
    let dir = project(
        &format!(
            "model = \"servegate-sim\"\n[targets.candidate]\nurl = \"{0}\"\n[targets.baseline]\nurl = \"{0}\"\n",
            engine.url
        ),
        &[(
            "served",
            "[workload]\nprompts = { random = { input_len = 40, output_len = 6, range_ratio = 0.5 } }\n\
             num_requests = 10\nwarmup = 1\nconcurrency = 2\n[gate]\nerror_rate = { max = 0.0 }\n",
        )],
    );
    let (code, console, results) = run(dir.path(), "served");
    assert_eq!(code, Some(0), "{console}");
    let case = &results["cases"][0];
    let (a, b) = (lengths(&case["candidate"]), lengths(&case["baseline"]));
    assert_eq!(a, b);
    assert!(
        a.iter()
            .all(|&(i, o)| (20..=60).contains(&i) && (3..=9).contains(&o)),
        "{a:?}"
    );

    let bench = |url: &str| {
        std::process::Command::new(BIN)
            .current_dir(dir.path())
            .args(["bench", "--base-url", url, "--dataset-name", "random"])
            .args(["--random-input-len", "48", "--random-output-len", "4"])
            .args([
                "--num-prompts",
                "4",
                "--warmup",
                "0",
                "--max-concurrency",
                "2",
            ])
            .args(["--save-result", "--result-filename", "out.json"])
            .output()
            .unwrap()
    };
    let ran = bench(&engine.url);
    let console = common::text(&ran);
    assert_eq!(ran.status.code(), Some(0), "{console}");
    assert!(console.contains("the server's own tokenizer"), "{console}");
    let file: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.json")).unwrap())
            .unwrap();
    assert_eq!(
        file["scenarios"][0]["summary"]["total_input_tokens"],
        4 * 48
    );

    // Where nothing tokenizes, the error says so.
    let nowhere = format!("http://127.0.0.1:{}", common::free_port());
    let client = servegate::client::Client::new(&nowhere, None).unwrap();
    let err = servegate::server_tokenizer::ServerTokenizer::connect(client, "m")
        .err()
        .expect("no server, no tokenizer");
    assert!(
        err.contains("gives no tokenizer through /tokenize"),
        "{err}"
    );
}

/// The prompts axis takes any prompt source: generated datasets and
/// conversations are points of one matrix, each named by its source, and
/// a bad source is an error at the axis.
#[test]
fn generated_datasets_are_matrix_points() {
    let dir = project(
        &format!("candidate = \"a\"\nbaseline = \"b\"\n{TWO_ENGINES}"),
        &[(
            "shapes",
            "[workload]\nnum_requests = 4\nwarmup = 0\nconcurrency = 2\n\
             [matrix]\nprompts = [\"short\", { random = { input_len = 32, output_len = 4 } }, \
             { conversations = { turns = 2, input_tokens = 16, output_tokens = 4 } }]\n\
             [gate]\nerror_rate = { max = 0.0 }\n",
        )],
    );
    assert_eq!(
        list(dir.path(), "shapes"),
        [
            "scenario::shapes::short",
            "scenario::shapes::random_in32_out4",
            "scenario::shapes::conv2x16"
        ]
    );
    let (code, console, results) = run(dir.path(), "shapes::random_in32_out4");
    assert_eq!(code, Some(0), "{console}");
    assert!(lengths(&results["cases"][0]["candidate"])
        .iter()
        .all(|&l| l == (32, 4)));
    let (code, console, results) = run(dir.path(), "shapes::conv2x16");
    assert_eq!(code, Some(0), "{console}");
    assert_eq!(
        results["cases"][0]["candidate"]["summary"]["sessions"]["completed"],
        4
    );

    std::fs::write(
        dir.path().join("scenarios/shapes.toml"),
        "[matrix]\nprompts = [{ random = { input_len = 0, output_len = 4 } }]\n[gate]\nerror_rate = { max = 0.0 }\n",
    )
    .unwrap();
    let err = check_fails(dir.path());
    assert!(
        err.contains("shapes.toml:2: key `matrix.prompts`: prompts.random.input_len"),
        "{err}"
    );
}
