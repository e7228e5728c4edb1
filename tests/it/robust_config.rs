//! Hostile configuration: `servegate check` never panics, every rejection
//! names a file (and, where the key is written there, its line and the key),
//! and whatever `check` accepts turns into the run-time values (durations,
//! arrival schedules, the engine's step times) without panicking.
//!
//! The property test mutates the shipped case files and `servegate.toml`:
//! numbers at their extremes, wrong types, huge strings, removed keys,
//! duplicated lines and tables, truncated or non-UTF-8 bytes, deep nesting,
//! huge matrices and a directory in place of a file. `ROBUST_CONFIG_CASES`
//! raises the number of cases for a longer search.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::sample::Index;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use toml_edit::{DocumentMut, Item, Value};

use servegate::config::{self, limits, CaseKind, ConfigError, Origin, SimParams};
use servegate::discover::{Case, Project};
use servegate::metrics::RequestRecord;

use crate::common::{repo, BIN};

/// Keys the mutations aim at: every number of the schema, and some others.
const KEYS: &[&str] = &[
    "workload.max_tokens",
    "workload.min_tokens",
    "workload.concurrency",
    "workload.ramp_up_s",
    "workload.rate",
    "workload.burstiness",
    "workload.max_concurrency",
    "workload.seed",
    "workload.num_requests",
    "workload.warmup",
    "workload.request_timeout_s",
    "workload.temperature",
    "workload.slo.ttft_ms",
    "workload.slo.e2e_ms",
    "workload.prompts",
    "workload.prompts.synthetic.input_tokens",
    "workload.prompts.synthetic.count",
    "targets.candidate.ready_timeout_s",
    "targets.baseline.stop_timeout_s",
    "targets.candidate.port",
    "targets.candidate.sim.ttft_ms",
    "targets.candidate.sim.tpot_ms",
    "targets.baseline.sim.max_num_seqs",
    "targets.baseline.sim.max_batch_tokens",
    "targets.candidate.sim.kv_capacity_tokens",
    "targets.candidate.sim.step_base_ms",
    "targets.baseline.sim.step_per_seq_ms",
    "targets.candidate.sim.prefill_ms_per_token",
    "targets.candidate.sim.slowdown",
    "targets.baseline.sim.logprob_noise",
    "targets.candidate.sim.error_rate",
    "targets.candidate.sim.drop_rate",
    "targets.baseline.sim.stall_ms",
    "targets.candidate.sim.startup_delay_ms",
    "targets.candidate.sim.crash_after",
    "targets.candidate.sim.profile",
    "sim_profiles.p.slowdown",
    "repeats",
    "limit",
    "num_fewshot",
    "model_weights_bytes",
    "scoring.concurrency",
    "scoring.max_retries",
    "scoring.timeout_s",
    "scoring.max_length",
    "gate.error_rate.max",
    "gate.throughput_total.min_ratio",
    "gate.ttft_p50.confidence",
    "gate.max_drop",
    "gate.rtol",
    "gate.expected.hellaswag",
    "matrix.max_tokens",
    "matrix.concurrency",
    "matrix.num_requests",
    "matrix.prompts",
    "model",
    "description",
    "candidate",
    "baseline",
    "tasks",
    "tokenizer",
];

/// Whether a mutation of `key` in the file `name` can make a valid case, so
/// that most cases aim at keys the file's kind reads (a scenario's `limit`
/// is rejected before any range is looked at).
fn applies(name: &str, key: &str) -> bool {
    let scenario_only = [
        "workload.",
        "matrix.",
        "repeats",
        "gate.error_rate",
        "gate.throughput",
        "gate.ttft",
    ];
    let suite_only = [
        "limit",
        "num_fewshot",
        "scoring.",
        "gate.max_drop",
        "gate.rtol",
        "gate.expected",
        "tasks",
    ];
    let starts = |list: &[&str]| list.iter().any(|p| key.starts_with(p));
    if name.starts_with("scenarios/") {
        !starts(&suite_only)
    } else if name.starts_with("suites/") {
        !starts(&scenario_only)
    } else {
        // servegate.toml: workload and scoring are read by one kind and
        // ignored by the other; the rest would break one of them.
        starts(&[
            "workload.",
            "scoring.",
            "targets.",
            "sim_profiles.",
            "model",
        ])
    }
}

/// Extreme and boundary values. Integers are written as TOML integers, the
/// rest as floats (`inf` and `nan` are TOML too).
#[derive(Debug, Clone)]
enum Extreme {
    Int(i64),
    Float(f64),
}

fn extremes() -> Vec<Extreme> {
    use Extreme::*;
    vec![
        Int(0),
        Int(-1),
        Int(1),
        Int(u32::MAX as i64),
        Int(u32::MAX as i64 + 1),
        Int(i64::MAX),
        Int(i64::MIN),
        Int(1_000_000),
        Int(1_000_001),
        Int(100_000),
        Int(100_001),
        Int(86_400),
        Int(65_535),
        Int(65_536),
        Float(0.0),
        Float(-0.0),
        Float(-1.0),
        Float(1e-300),
        Float(1e300),
        Float(1e30),
        Float(f64::INFINITY),
        Float(f64::NEG_INFINITY),
        Float(f64::NAN),
        Float(f64::MIN_POSITIVE),
        Float(f64::MAX),
        Float(0.001),
        Float(0.0009),
        Float(86_400.0),
        Float(86_400.5),
        Float(86_400_000.0),
        Float(86_400_001.0),
        Float(1e6),
        Float(1e6 + 1.0),
        Float(1000.0),
        Float(1000.5),
        Float(0.5),
        Float(1.0),
        Float(2.0),
        Float(2.5),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    /// A key set to an extreme number.
    Number { key: Index, value: Index },
    /// A key set to a value of another type.
    WrongType { key: Index, kind: u8 },
    /// A key set to a string of `len` bytes.
    HugeString { key: Index, len: usize },
    /// One of the file's keys removed.
    Remove { which: Index },
    /// A key that does not exist.
    Unknown { key: Index },
    /// One line written twice (a duplicated key or table header).
    DuplicateLine { which: Index },
    /// A matrix with long axes.
    HugeMatrix { axes: Vec<(u8, usize)> },
    /// The file cut at a byte (possibly inside a UTF-8 sequence).
    Truncate { at: Index },
    /// Raw bytes, likely not UTF-8, put somewhere.
    Bytes { at: Index, bytes: Vec<u8> },
    /// Deeply nested arrays, inline tables or dotted keys.
    Deep { kind: u8, depth: usize },
    /// A directory where the file should be.
    Directory,
    /// An empty file.
    Empty,
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        16 => (any::<Index>(), any::<Index>()).prop_map(|(key, value)| Mutation::Number { key, value }),
        2 => (any::<Index>(), 0u8..5).prop_map(|(key, kind)| Mutation::WrongType { key, kind }),
        1 => (any::<Index>(), prop_oneof![Just(0usize), Just(4096), Just(1 << 20)])
            .prop_map(|(key, len)| Mutation::HugeString { key, len }),
        2 => any::<Index>().prop_map(|which| Mutation::Remove { which }),
        1 => any::<Index>().prop_map(|key| Mutation::Unknown { key }),
        1 => any::<Index>().prop_map(|which| Mutation::DuplicateLine { which }),
        1 => prop::collection::vec((0u8..4, prop_oneof![1usize..4, Just(101), Just(1000), Just(2000)]), 1..4)
            .prop_map(|axes| Mutation::HugeMatrix { axes }),
        1 => any::<Index>().prop_map(|at| Mutation::Truncate { at }),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..8))
            .prop_map(|(at, bytes)| Mutation::Bytes { at, bytes }),
        1 => (0u8..3, prop_oneof![Just(10usize), Just(200), Just(20_000)])
            .prop_map(|(kind, depth)| Mutation::Deep { kind, depth }),
        1 => Just(Mutation::Directory),
        1 => Just(Mutation::Empty),
    ]
}

/// One generated input: which shipped file to mutate, a case file to load
/// alongside (when the mutated one is `servegate.toml`), and the mutations.
#[derive(Debug, Clone)]
struct Input {
    file: Index,
    /// Also run the binary's `check` on this one.
    binary: bool,
    case: Index,
    mutations: Vec<Mutation>,
}

fn input() -> impl Strategy<Value = Input> {
    (
        any::<Index>(),
        prop::bool::weighted(0.15),
        any::<Index>(),
        // Mostly one mutation, so that many cases are accepted and their
        // run-time values are built.
        prop_oneof![
            3 => prop::collection::vec(mutation(), 1..2),
            1 => prop::collection::vec(mutation(), 2..4),
        ],
    )
        .prop_map(|(file, binary, case, mutations)| Input {
            file,
            binary,
            case,
            mutations,
        })
}

/// The shipped files, relative to the repository: `servegate.toml` first.
fn shipped() -> Vec<String> {
    let mut out = vec![config::PROJECT_FILE.to_string()];
    for dir in ["scenarios", "suites"] {
        let mut names: Vec<String> = std::fs::read_dir(repo().join(dir))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .map(|n| format!("{dir}/{n}"))
            .collect();
        names.sort();
        out.extend(names);
    }
    out
}

/// What a mutated file holds on disk.
enum Content {
    Bytes(Vec<u8>),
    Directory,
}

/// Sets `path` in `doc`, making tables on the way (replacing non-tables).
fn set(doc: &mut DocumentMut, path: &str, value: Item) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for part in &parts[..parts.len() - 1] {
        if !table.get(part).is_some_and(Item::is_table_like) {
            table.insert(part, Item::Table(toml_edit::Table::new()));
        }
        table = table
            .get_mut(part)
            .and_then(Item::as_table_like_mut)
            .expect("just made a table");
    }
    table.insert(parts[parts.len() - 1], value);
}

/// Every dotted key path written in `table`.
fn key_paths(table: &dyn toml_edit::TableLike, prefix: &str, out: &mut Vec<String>) {
    for (key, item) in table.iter() {
        let path = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        if let Some(t) = item.as_table_like() {
            key_paths(t, &path, out);
        }
        out.push(path);
    }
}

fn remove(doc: &mut DocumentMut, path: &str) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut table: &mut dyn toml_edit::TableLike = doc.as_table_mut();
    for part in &parts[..parts.len() - 1] {
        match table.get_mut(part).and_then(Item::as_table_like_mut) {
            Some(t) => table = t,
            None => return,
        }
    }
    table.remove(parts[parts.len() - 1]);
}

fn apply(content: Content, m: &Mutation, name: &str) -> Content {
    let bytes = match content {
        Content::Directory => return Content::Directory,
        Content::Bytes(b) => b,
    };
    let doc = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|s| s.parse::<DocumentMut>().ok());
    let edit = |f: &mut dyn FnMut(&mut DocumentMut)| match doc.clone() {
        Some(mut d) => {
            f(&mut d);
            Content::Bytes(d.to_string().into_bytes())
        }
        None => Content::Bytes(bytes.clone()),
    };
    match m {
        Mutation::Number { key, value } => {
            let v = match &extremes()[value.index(extremes().len())] {
                Extreme::Int(i) => Value::from(*i),
                Extreme::Float(f) => Value::from(*f),
            };
            let keys: Vec<&str> = KEYS.iter().copied().filter(|k| applies(name, k)).collect();
            let key = keys[key.index(keys.len())];
            edit(&mut |d| set(d, key, Item::Value(v.clone())))
        }
        Mutation::WrongType { key, kind } => {
            let v = match kind {
                0 => Value::from("text"),
                1 => Value::from(true),
                2 => Value::Array(toml_edit::Array::from_iter([1i64, 2])),
                3 => Value::InlineTable(toml_edit::InlineTable::new()),
                _ => Value::from(1.5),
            };
            let key = KEYS[key.index(KEYS.len())];
            edit(&mut |d| set(d, key, Item::Value(v.clone())))
        }
        Mutation::HugeString { key, len } => {
            let key = KEYS[key.index(KEYS.len())];
            let s = "x".repeat(*len);
            edit(&mut |d| set(d, key, Item::Value(Value::from(s.clone()))))
        }
        Mutation::Remove { which } => edit(&mut |d| {
            let mut paths = Vec::new();
            key_paths(d.as_table(), "", &mut paths);
            if !paths.is_empty() {
                let path = paths[which.index(paths.len())].clone();
                remove(d, &path);
            }
        }),
        Mutation::Unknown { key } => {
            let key = format!("{}_typo", KEYS[key.index(KEYS.len())]);
            edit(&mut |d| set(d, &key, Item::Value(Value::from(1i64))))
        }
        Mutation::DuplicateLine { which } => {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            let lines: Vec<&str> = text.lines().collect();
            if lines.is_empty() {
                return Content::Bytes(bytes);
            }
            let line = lines[which.index(lines.len())];
            Content::Bytes(format!("{text}\n{line}\n").into_bytes())
        }
        Mutation::HugeMatrix { axes } => edit(&mut |d| {
            for &(axis, len) in axes {
                let (key, values): (&str, toml_edit::Array) = match axis {
                    // Shipped sets only: a missing one fails every point, and
                    // thousands of failing points are slow to locate in debug.
                    0 => (
                        "matrix.prompts",
                        (0..len)
                            .map(|i| ["short", "medium", "long"][i % 3])
                            .collect(),
                    ),
                    1 => ("matrix.max_tokens", (1..=len as i64).collect()),
                    2 => ("matrix.concurrency", (1..=len as i64).collect()),
                    _ => ("matrix.num_requests", (1..=len as i64).collect()),
                };
                set(d, key, Item::Value(Value::Array(values)));
            }
        }),
        Mutation::Truncate { at } => {
            let at = at.index(bytes.len() + 1);
            Content::Bytes(bytes[..at].to_vec())
        }
        Mutation::Bytes { at, bytes: extra } => {
            let at = at.index(bytes.len() + 1);
            let mut out = bytes[..at].to_vec();
            out.extend_from_slice(extra);
            out.extend_from_slice(&bytes[at..]);
            Content::Bytes(out)
        }
        Mutation::Deep { kind, depth } => {
            let d = *depth;
            let text = match kind {
                0 => format!("deep = {}1{}\n", "[".repeat(d), "]".repeat(d)),
                1 => format!("deep = {}1{}\n", "{ a = ".repeat(d), " }".repeat(d)),
                _ => format!("{} = 1\n", vec!["workload"; d].join(".")),
            };
            let mut out = bytes;
            out.extend_from_slice(text.as_bytes());
            Content::Bytes(out)
        }
        Mutation::Directory => Content::Directory,
        Mutation::Empty => Content::Bytes(Vec::new()),
    }
}

/// A project holding `servegate.toml` and one case file, with the
/// repository's prompt sets and sample records.
fn project(files: &[(&str, &Content)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for sub in ["scenarios", "suites"] {
        std::fs::create_dir_all(root.join(sub)).unwrap();
    }
    for shared in ["prompts", "datasets"] {
        std::os::unix::fs::symlink(repo().join(shared), root.join(shared)).unwrap();
    }
    for (name, content) in files {
        let path = root.join(name);
        match content {
            Content::Bytes(b) => std::fs::write(&path, b).unwrap(),
            Content::Directory => std::fs::create_dir_all(&path).unwrap(),
        }
    }
    dir
}

/// Whether `path` (dotted) is written in the TOML source `src`.
fn written(src: &str, path: &[String]) -> bool {
    let Ok(doc) = src.parse::<toml_edit::ImDocument<String>>() else {
        return false;
    };
    let mut table: &dyn toml_edit::TableLike = doc.as_table();
    for (i, part) in path.iter().enumerate() {
        let Some(item) = table.get(part) else {
            return false;
        };
        if i + 1 == path.len() {
            return true;
        }
        match item.as_table_like() {
            Some(t) => table = t,
            None => return false,
        }
    }
    false
}

/// A rejection names one of the project's files; where the key at fault is
/// written in that file, the error gives its line too.
fn check_error(e: &ConfigError, files: &[PathBuf]) -> Result<(), TestCaseError> {
    let Origin::File(file) = &e.origin else {
        return Err(TestCaseError::fail(format!("error names no file: {e}")));
    };
    prop_assert!(files.contains(file), "error names another file: {e}");
    if let Some(key) = &e.key {
        let path: Vec<String> = key.split('.').map(str::to_string).collect();
        let src = std::fs::read_to_string(file).unwrap_or_default();
        if written(&src, &path) {
            prop_assert!(e.line.is_some(), "no line for a written key: {e}");
            // A prompt set named by the matrix is reported on the matrix's line.
            if key != "workload.prompts" {
                prop_assert_eq!(e.line, config::key_line(&src, &path), "wrong line: {}", e);
            }
        }
    }
    prop_assert!(!e.message.trim().is_empty(), "empty message: {e}");
    Ok(())
}

/// Builds, without sending anything, the values the runner derives from an
/// accepted case; any panic fails the property.
fn runtime_values(case: &Case) -> Result<(), TestCaseError> {
    let c = &case.config;
    for spec in c.targets.values() {
        let _ = Duration::from_secs_f64(spec.ready_timeout_s);
        let _ = Duration::from_secs_f64(spec.stop_timeout_s);
        prop_assert!(Instant::now()
            .checked_add(Duration::from_secs_f64(spec.ready_timeout_s))
            .is_some());
        if let Some(sim) = &spec.sim {
            let p = SimParams::resolve(sim, &c.sim_profiles).map_err(|e| {
                TestCaseError::fail(format!("accepted sim does not resolve: {e:?}"))
            })?;
            // The engine's longest step: every sequence running, a full prefill.
            let step = p
                .step_per_seq
                .checked_mul(p.max_num_seqs as u32)
                .and_then(|s| s.checked_add(p.step_base))
                .and_then(|s| {
                    s.checked_add(p.prefill_per_token.checked_mul(p.max_batch_tokens as u32)?)
                });
            prop_assert!(step.is_some(), "step overflows: {p:?}");
            let now = Instant::now();
            for d in [step.unwrap(), p.ttft, p.tpot, p.stall, p.startup_delay] {
                prop_assert!(now.checked_add(d).is_some(), "{d:?} past the clock");
            }
        }
    }
    match case.kind {
        CaseKind::Scenario => {
            let w = &c.workload;
            let timeout = Duration::from_secs_f64(w.request_timeout_s);
            prop_assert!(Instant::now().checked_add(timeout).is_some());
            let _ = Duration::from_secs_f64(w.ramp_up_s);
            // The runner keeps a record per request of a phase.
            let records = (w.warmup.max(w.num_requests) as usize)
                .saturating_mul(std::mem::size_of::<RequestRecord>());
            prop_assert!(records < 1 << 30, "{records} bytes of records");
            if let Some(rate) = w.rate {
                let times = servegate::workload::arrival_times(
                    w.num_requests as usize,
                    rate,
                    w.burstiness,
                    w.seed,
                );
                let last = *times.last().unwrap();
                prop_assert!(last.is_finite() && last >= 0.0, "last arrival {last}");
                let _ = Duration::from_secs_f64(last);
            }
            prop_assert!(c.repeats >= 1);
        }
        CaseKind::Suite => {
            let _ = servegate::run::suite::send_options(c);
        }
    }
    Ok(())
}

/// Loads the project as `servegate check` does; checks every error and
/// every accepted case. Returns whether something was rejected.
fn check_library(root: &Path, files: &[PathBuf]) -> Result<bool, TestCaseError> {
    let project = Project::with_env(root, Vec::new());
    let mut rejected = false;
    for (_, loaded) in project.load_all() {
        match loaded {
            Err(e) => {
                rejected = true;
                check_error(&e, files)?;
            }
            Ok(cases) => {
                prop_assert!(cases.len() as u64 <= limits::MAX_MATRIX_POINTS);
                for case in &cases {
                    match servegate::run::scenario::check_case(&project, case) {
                        Err(e) => {
                            rejected = true;
                            check_error(&e, files)?;
                        }
                        Ok(()) => runtime_values(case)?,
                    }
                }
            }
        }
    }
    Ok(rejected)
}

/// Runs `servegate check`: exit 0 or 2, no panic, each error names a file.
fn check_binary(root: &Path) -> Result<(), TestCaseError> {
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .arg("check")
        .env_remove("SERVEGATE_ROOT")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    prop_assert!(!stderr.contains("panicked"), "check panicked:\n{stderr}");
    prop_assert!(
        matches!(out.status.code(), Some(0 | 2)),
        "check exited {:?}:\n{stderr}",
        out.status
    );
    for line in stderr.lines().filter(|l| l.starts_with("error: ")) {
        prop_assert!(
            line.starts_with(&format!("error: {}", root.display())),
            "error names no file: {line}"
        );
    }
    Ok(())
}

#[test]
fn hostile_configuration_never_panics_and_always_names_a_file() {
    let cases: u32 = std::env::var("ROBUST_CONFIG_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(6000);
    let names = shipped();
    let originals: Vec<Vec<u8>> = names
        .iter()
        .map(|n| std::fs::read(repo().join(n)).unwrap())
        .collect();
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let count = std::cell::Cell::new(0u32);
    let rejected = std::cell::Cell::new(0u32);
    let slowest = std::cell::RefCell::new((Duration::ZERO, String::new()));
    let result = runner.run(&input(), |input| {
        count.set(count.get() + 1);
        let what = std::cell::RefCell::new(String::new());
        let case_started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            one_case(&input, &names, &originals, &rejected, &what)
        }));
        let took = case_started.elapsed();
        if took > slowest.borrow().0 {
            *slowest.borrow_mut() = (took, format!("{:?}", input.mutations));
        }
        match outcome {
            Ok(r) => r.map_err(|e| TestCaseError::fail(format!("{}: {e}", what.borrow()))),
            Err(panic) => {
                let message = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                Err(TestCaseError::fail(format!(
                    "{}: panicked: {message}",
                    what.borrow()
                )))
            }
        }
    });

    let elapsed = started.elapsed().as_secs_f64();
    let (took, mutations) = slowest.into_inner();
    println!(
        "config fuzz: {} cases, {elapsed:.1} s ({} rejected; slowest {:.2} s: {mutations})",
        count.get(),
        rejected.get(),
        took.as_secs_f64()
    );
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Builds the project of one input and checks it; `what` says, for a
/// failure message, which file was mutated and how.
fn one_case(
    input: &Input,
    names: &[String],
    originals: &[Vec<u8>],
    rejected: &std::cell::Cell<u32>,
    what: &std::cell::RefCell<String>,
) -> Result<(), TestCaseError> {
    let target = input.file.index(names.len());
    let mut content = Content::Bytes(originals[target].clone());
    for m in &input.mutations {
        content = apply(content, m, &names[target]);
    }
    *what.borrow_mut() = match &content {
        Content::Directory => format!("{} made a directory", names[target]),
        Content::Bytes(b) if b.len() <= 4000 => format!(
            "{} mutated ({:?}) into:\n{}\n",
            names[target],
            input.mutations,
            String::from_utf8_lossy(b)
        ),
        Content::Bytes(b) => format!("{} mutated into {} bytes", names[target], b.len()),
    };
    // The case loaded beside a mutated servegate.toml.
    let case = if target == 0 {
        1 + input.case.index(names.len() - 1)
    } else {
        target
    };
    let (project_file, case_file) = if target == 0 {
        (content, Content::Bytes(originals[case].clone()))
    } else {
        (Content::Bytes(originals[0].clone()), content)
    };
    let dir = project(&[
        (names[0].as_str(), &project_file),
        (names[case].as_str(), &case_file),
    ]);
    let root = dir.path();
    let mut files = vec![root.join(config::PROJECT_FILE)];
    for sub in ["scenarios", "suites"] {
        for e in std::fs::read_dir(root.join(sub)).unwrap() {
            files.push(e.unwrap().path());
        }
    }
    if check_library(root, &files)? {
        rejected.set(rejected.get() + 1);
    }
    // The binary on a sample: it costs a process start each time.
    if input.binary {
        check_binary(root)?;
    }
    Ok(())
}

/// A project with the repository's `servegate.toml` and prompt sets, and the
/// given case files.
fn project_with(files: &[(&str, &str)]) -> tempfile::TempDir {
    let project_file = std::fs::read(repo().join(config::PROJECT_FILE)).unwrap();
    let dir = project(&[(config::PROJECT_FILE, &Content::Bytes(project_file))]);
    for (name, body) in files {
        std::fs::write(dir.path().join(name), body).unwrap();
    }
    dir
}

/// The first error `servegate check` would print for the project's one case file.
fn first_error(root: &Path) -> String {
    let project = Project::with_env(root, Vec::new());
    for (_, loaded) in project.load_all() {
        match loaded {
            Err(e) => return e.to_string(),
            Ok(cases) => {
                for case in &cases {
                    if let Err(e) = servegate::run::scenario::check_case(&project, case) {
                        return e.to_string();
                    }
                }
            }
        }
    }
    String::new()
}

const GATE: &str = "[gate]\nerror_rate = { max = 0.0 }\n";
const SUITE: &str = "tasks = [\"hellaswag\"]\ndata = \"datasets\"\n[gate]\nmax_drop = 0.02\n";

/// Each value that once passed validation and then panicked, aborted or
/// was silently changed, with the error `check` now gives.
#[test]
fn values_a_run_cannot_use_are_rejected_with_file_line_key_and_range() {
    let day = "between 0.001 and 86400";
    let ms = "between 0 and 86400000";
    // (file, body, line, key, message)
    let scenario = |body: &str| format!("{body}{GATE}");
    let cases: Vec<(&str, String, usize, &str, String)> = vec![
        (
            "scenarios/x.toml",
            scenario("[workload]\nrequest_timeout_s = 1e30\n"),
            2,
            "workload.request_timeout_s",
            format!("must be a number {day} (got 1e30)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nramp_up_s = 1e30\n"),
            2,
            "workload.ramp_up_s",
            "must be a number between 0 and 86400 (got 1e30)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nrate = 1e-300\n"),
            2,
            "workload.rate",
            "must be a number between 0.001 and 1000000 (got 1e-300)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nrate = 1e300\nburstiness = 1e10\n"),
            2,
            "workload.rate",
            "must be a number between 0.001 and 1000000 (got 1e300)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nrate = 8.0\nburstiness = 1e10\n"),
            3,
            "workload.burstiness",
            "must be a number between 0.001 and 1000 (got 1e10)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nwarmup = 4294967295\n"),
            2,
            "workload.warmup",
            "must be a whole number between 0 and 1000000 (got 4294967295)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nnum_requests = 1000001\n"),
            2,
            "workload.num_requests",
            "must be a whole number between 1 and 1000000 (got 1000001)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nconcurrency = 100001\n"),
            2,
            "workload.concurrency",
            "must be a whole number between 1 and 100000 (got 100001)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nmax_tokens = 4294967295\n"),
            2,
            "workload.max_tokens",
            "must be a whole number between 1 and 1000000 (got 4294967295)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("repeats = 4294967295\n"),
            1,
            "repeats",
            "must be a whole number between 1 and 1000 (got 4294967295)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[matrix]\nconcurrency = [1, 100001]\n"),
            2,
            "matrix.concurrency",
            "values must be a whole number between 1 and 100000 (got 100001)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nsim = { ttft_ms = 1e30 }\n"),
            2,
            "targets.candidate.sim.ttft_ms",
            format!("must be a number {ms} (got 1e30)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.baseline]\nsim = { tpot_ms = nan }\n"),
            2,
            "targets.baseline.sim.tpot_ms",
            format!("must be a number {ms} (got NaN)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nsim = { stall_ms = 1e30 }\n"),
            2,
            "targets.candidate.sim.stall_ms",
            format!("must be a number {ms} (got 1e30)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nsim = { startup_delay_ms = inf }\n"),
            2,
            "targets.candidate.sim.startup_delay_ms",
            format!("must be a number {ms} (got inf)"),
        ),
        (
            "scenarios/x.toml",
            scenario(
                "[targets.candidate]\nsim = { profile = \"engine\", step_per_seq_ms = 1e20 }\n",
            ),
            2,
            "targets.candidate.sim.step_per_seq_ms",
            format!("must be a number {ms} (got 1e20)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nsim = { slowdown = 1e30 }\n"),
            2,
            "targets.candidate.sim.slowdown",
            "must be a number between 0.001 and 1000 (got 1e30)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nsim = { max_num_seqs = 4294967295 }\n"),
            2,
            "targets.candidate.sim.max_num_seqs",
            "must be a whole number between 1 and 100000 (got 4294967295)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.candidate]\nready_timeout_s = 1e30\n"),
            2,
            "targets.candidate.ready_timeout_s",
            format!("must be a number {day} (got 1e30)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[targets.baseline]\nstop_timeout_s = 1e30\n"),
            2,
            "targets.baseline.stop_timeout_s",
            format!("must be a number {day} (got 1e30)"),
        ),
        (
            "scenarios/x.toml",
            scenario("[sim_profiles.p]\nstall_ms = -1\n"),
            2,
            "sim_profiles.p.stall_ms",
            format!("must be a number {ms} (got -1)"),
        ),
        (
            "suites/s.toml",
            format!("{SUITE}[scoring]\ntimeout_s = inf\n"),
            6,
            "scoring.timeout_s",
            format!("must be a number {day} (got inf)"),
        ),
        (
            "suites/s.toml",
            format!("{SUITE}[scoring]\ntimeout_s = nan\n"),
            6,
            "scoring.timeout_s",
            format!("must be a number {day} (got NaN)"),
        ),
        (
            "suites/s.toml",
            format!("{SUITE}[scoring]\nmax_retries = 4294967295\n"),
            6,
            "scoring.max_retries",
            "must be a whole number between 0 and 10 (got 4294967295)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nprompts = { conversations = { turns = 3 } }\n"),
            2,
            "workload.prompts.conversations",
            "give either `sharegpt = \"file.json\"` or both `turns` and `input_tokens`".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nprompts = { conversations = { turns = 0, input_tokens = 8 } }\n"),
            2,
            "workload.prompts.conversations.turns",
            "must be a whole number between 1 and 256 (got 0)".into(),
        ),
        (
            "scenarios/x.toml",
            scenario("[workload]\nprompts = { conversations = { turns = 2, input_tokens = 8, think_time_s = -1 } }\n"),
            2,
            "workload.prompts.conversations.think_time_s",
            "must be a number between 0 and 600 (got -1)".into(),
        ),
        (
            "suites/s.toml",
            format!("limit = 9223372036854775807\n{SUITE}"),
            1,
            "limit",
            "must be a whole number between 1 and 1000000 (got 9223372036854775807)".into(),
        ),
    ];
    for (file, body, line, key, message) in cases {
        let dir = project_with(&[(file, &body)]);
        let want = format!(
            "{}:{line}: key `{key}`: {message}",
            dir.path().join(file).display()
        );
        assert_eq!(first_error(dir.path()), want, "{body}");
    }
}

/// A 1000 × 1000 matrix once took 8.6 GB in `check`: the points are now
/// counted before the matrix is expanded.
#[test]
fn a_huge_matrix_is_rejected_before_it_is_expanded() {
    let values: Vec<String> = (1..=1000).map(|v| v.to_string()).collect();
    let list = values.join(", ");
    let body = format!("[matrix]\nmax_tokens = [{list}]\nconcurrency = [{list}]\n{GATE}");
    let dir = project_with(&[("scenarios/grid.toml", &body)]);
    let started = Instant::now();
    let error = first_error(dir.path());
    assert_eq!(
        error,
        format!(
            "{}:1: key `matrix`: 1000000 points (max_tokens 1000 × concurrency 1000); at most 10000 per file",
            dir.path().join("scenarios/grid.toml").display()
        )
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    // The largest matrix allowed expands.
    let list: Vec<String> = (1..=100).map(|v| v.to_string()).collect();
    let list = list.join(", ");
    let body = format!("[matrix]\nmax_tokens = [{list}]\nnum_requests = [{list}]\n{GATE}");
    std::fs::write(dir.path().join("scenarios/grid.toml"), body).unwrap();
    let project = Project::with_env(dir.path(), Vec::new());
    let cases = project
        .load(&project.file_for_name("scenario::grid").unwrap())
        .unwrap();
    assert_eq!(cases.len(), 10_000);
}

/// The edges of every range are accepted and run: a day-long timeout and
/// ramp, the slowest and fastest arrival rates at both burstiness limits.
/// The engine's slowest knobs cannot run in a test; their durations and the
/// scheduler's longest step are built instead.
#[test]
fn values_at_the_limits_run() {
    let fast = "[targets.candidate]\nsim = { ttft_ms = 0.0, tpot_ms = 0.0 }\n\
                [targets.baseline]\nsim = { ttft_ms = 0.0, tpot_ms = 0.0 }\n";
    let workload = "max_tokens = 2\nwarmup = 0\nnum_requests = 3\nrequest_timeout_s = 86400\n";
    let bodies = [
        format!("{fast}[workload]\n{workload}ramp_up_s = 86400\n{GATE}"),
        format!("{fast}[workload]\n{workload}rate = 1e6\nburstiness = 0.001\n{GATE}"),
        format!("{fast}[workload]\n{workload}rate = 1e6\nburstiness = 1000\n{GATE}"),
    ];
    let dir = project_with(&[
        ("scenarios/a.toml", &bodies[0]),
        ("scenarios/b.toml", &bodies[1]),
        ("scenarios/c.toml", &bodies[2]),
    ]);
    let project = Project::with_env(dir.path(), Vec::new());
    let cases: Vec<Case> = project
        .load_all()
        .into_iter()
        .flat_map(|(_, c)| c.unwrap())
        .collect();
    for case in &cases {
        servegate::run::scenario::check_case(&project, case).unwrap();
    }
    let refs: Vec<&Case> = cases.iter().collect();
    let reports =
        servegate::run::scenario::run_cases(&project, &refs, Default::default(), &mut |_| {});
    for (case, report) in cases.iter().zip(reports) {
        let report = report.unwrap_or_else(|e| panic!("{}: {e:#}", case.name));
        assert_eq!(report.candidate.summary.completed, 3, "{}", case.name);
        assert!(report.passed, "{}", case.name);
    }
    // The slowest arrivals stay finite: 1000 requests at 0.001/s, shape 0.001.
    let times = servegate::workload::arrival_times(1000, 1e-3, 1e-3, 7);
    let last = *times.last().unwrap();
    assert!(
        last.is_finite()
            && Instant::now()
                .checked_add(Duration::from_secs_f64(last))
                .is_some()
    );
    // The engine at every upper limit.
    let slow = format!(
        "[targets.candidate]\nsim = {{ profile = \"engine\", slowdown = 1000, max_num_seqs = 100000, \
         max_batch_tokens = 4294967295, ttft_ms = 86400000, tpot_ms = 86400000, step_base_ms = 86400000, \
         step_per_seq_ms = 86400000, prefill_ms_per_token = 86400000, stall_ms = 86400000, \
         startup_delay_ms = 86400000, logprob_noise = 100, error_rate = 1, drop_rate = 1 }}\n{GATE}"
    );
    std::fs::write(dir.path().join("scenarios/a.toml"), slow).unwrap();
    let case = project
        .load(&project.file_for_name("scenario::a").unwrap())
        .unwrap();
    let c = &case[0].config;
    let sim = c.targets["candidate"].sim.as_ref().unwrap();
    let p = SimParams::resolve(sim, &c.sim_profiles).unwrap();
    let step = p
        .step_per_seq
        .checked_mul(p.max_num_seqs as u32)
        .and_then(|s| s.checked_add(p.step_base))
        .and_then(|s| s.checked_add(p.prefill_per_token.checked_mul(p.max_batch_tokens as u32)?))
        .expect("the longest step fits a Duration");
    assert!(Instant::now().checked_add(step).is_some());
}

/// Files that are not TOML, or not files: `check` reports each one by name
/// and exits 2, never panics.
#[test]
fn check_survives_unreadable_files() {
    let dir = project_with(&[("scenarios/ok.toml", GATE), ("scenarios/empty.toml", "")]);
    let root = dir.path();
    std::fs::write(
        root.join("scenarios/latin1.toml"),
        b"description = \"caf\xe9\"\n",
    )
    .unwrap();
    std::fs::write(root.join("scenarios/nul.toml"), b"\0\0\xff\xfe").unwrap();
    std::fs::create_dir(root.join("scenarios/folder.toml")).unwrap();
    let deep = |n: usize| format!("x = {}1{}\n", "[".repeat(n), "]".repeat(n));
    std::fs::write(root.join("scenarios/deep_array.toml"), deep(100_000)).unwrap();
    let inline = format!(
        "x = {}1{}\n",
        "{ a = ".repeat(100_000),
        " }".repeat(100_000)
    );
    std::fs::write(root.join("suites/deep_table.toml"), inline).unwrap();
    let dotted = format!("{} = 1\n", vec!["t"; 100_000].join("."));
    std::fs::write(root.join("suites/deep_key.toml"), dotted).unwrap();
    let headers: String = (1..2000)
        .map(|n| format!("[{}]\n", vec!["t"; n].join(".")))
        .collect();
    std::fs::write(root.join("suites/deep_headers.toml"), headers).unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .arg("check")
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stdout}{stderr}");
    for name in [
        "scenarios/empty.toml",
        "scenarios/latin1.toml",
        "scenarios/nul.toml",
        "scenarios/deep_array.toml",
        "suites/deep_table.toml",
        "suites/deep_key.toml",
        "suites/deep_headers.toml",
    ] {
        let named = format!("error: {}", root.join(name).display());
        assert!(stderr.contains(&named), "{name} not reported:\n{stderr}");
    }
    assert!(stdout.contains("scenarios/ok.toml"), "{stdout}");
    // A folder is not a case file: it is left out, not reported.
    assert!(!stdout.contains("folder.toml") && !stderr.contains("folder.toml"));

    // servegate.toml itself a folder, or empty of everything but garbage.
    let dir = project_with(&[("scenarios/ok.toml", GATE)]);
    let root = dir.path();
    std::fs::remove_file(root.join(config::PROJECT_FILE)).unwrap();
    std::fs::create_dir(root.join(config::PROJECT_FILE)).unwrap();
    let out = Command::new(BIN)
        .arg("--root")
        .arg(root)
        .arg("check")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    // Reported as missing: it is not a file.
    let want = format!("error: {} has no servegate.toml", root.display());
    assert_eq!(stderr.trim(), want);
}

/// `servegate bench` takes the same ranges from its flags.
#[test]
fn bench_flags_have_the_same_ranges() {
    for (flags, want) in [
        (
            &["--rate", "1e300", "--burstiness", "1e10"][..],
            "error: --burstiness: must be a number between 0.001 and 1000 (got 1e10)",
        ),
        (
            &["--rate", "1e-300"][..],
            "error: --rate: must be a number between 0.001 and 1000000 (got 1e-300)",
        ),
        (
            &["--warmup", "4294967295"][..],
            "error: --warmup: must be a whole number between 0 and 1000000 (got 4294967295)",
        ),
    ] {
        let out = Command::new(BIN)
            .args([
                "--root",
                repo().to_str().unwrap(),
                "bench",
                "--base-url",
                "http://127.0.0.1:9",
            ])
            .args(flags)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {stderr}");
        assert_eq!(stderr.trim(), want, "{flags:?}");
    }
}
