//! Checks that serde cannot express: cross-references, ranges, known metric names.

use super::limits::{self, count, number};
use super::{
    Baseline, CaseConfig, CaseKind, ChoiceSource, ConfigError, Limit, QualityGate, TargetSpec,
    WorkloadConfig,
};

use crate::metrics::MetricName;

/// The built-in task names, in the order they are listed to users.
pub const BUILTIN_TASKS: [&str; 6] = [
    "hellaswag",
    "arc_easy",
    "arc_challenge",
    "truthfulqa_mc2",
    "mmlu",
    "gsm8k",
];

type At<'a> = &'a dyn Fn(&str, String) -> ConfigError;

pub(super) fn validate(
    c: &CaseConfig,
    kind: Option<CaseKind>,
    at: At<'_>,
) -> Result<(), ConfigError> {
    for (name, profile) in &c.sim_profiles {
        if profile
            .profile
            .as_ref()
            .is_some_and(|p| super::builtin_profile(p).is_none())
        {
            return Err(at(
                &format!("sim_profiles.{name}.profile"),
                format!(
                    "a profile may build only on a built-in one ({})",
                    super::BUILTIN_PROFILES.join(", ")
                ),
            ));
        }
        super::SimParams::resolve(profile, &c.sim_profiles)
            .map_err(|(knob, message)| at(&format!("sim_profiles.{name}.{knob}"), message))?;
    }
    for (name, spec) in &c.targets {
        target(name, spec, &c.sim_profiles, at)?;
    }
    if let Some(kind) = kind {
        if let Baseline::Recorded(r) = &c.baseline {
            if r.results.as_os_str().is_empty() {
                return Err(at(
                    "baseline.results",
                    "needs the path of a results file".into(),
                ));
            }
        }
        let names = [
            ("candidate", Some(&c.candidate[..])),
            ("baseline", c.baseline.target()),
        ];
        for (key, name) in names {
            let Some(name) = name else { continue };
            if !c.targets.contains_key(name) {
                let known: Vec<&str> = c.targets.keys().map(String::as_str).collect();
                return Err(at(
                    key,
                    format!("no target named `{name}` (targets: {})", known.join(", ")),
                ));
            }
        }
        match kind {
            CaseKind::Scenario => scenario(c, at)?,
            CaseKind::Suite => suite(c, at)?,
        }
    }
    Ok(())
}

fn target(
    name: &str,
    spec: &TargetSpec,
    profiles: &std::collections::BTreeMap<String, super::SimSpec>,
    at: At<'_>,
) -> Result<(), ConfigError> {
    let key = format!("targets.{name}");
    let kinds = [
        spec.url.is_some(),
        spec.command.is_some(),
        spec.sim.is_some(),
    ];
    match kinds.iter().filter(|&&k| k).count() {
        0 => {
            return Err(at(
                &key,
                "set one of `url` (a running server), `command` (a server to start) or `sim` (the embedded engine)".into(),
            ))
        }
        1 => {}
        _ => {
            return Err(at(
                &key,
                "set exactly one of `url`, `command` or `sim`".into(),
            ))
        }
    }
    if let Some(url) = &spec.url {
        let parsed = reqwest::Url::parse(url)
            .map_err(|e| at(&format!("{key}.url"), format!("not a URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(at(
                &format!("{key}.url"),
                "URL scheme must be http or https".into(),
            ));
        }
    }
    if let Some(sim) = &spec.sim {
        super::SimParams::resolve(sim, profiles)
            .map_err(|(knob, message)| at(&format!("{key}.sim.{knob}"), message))?;
    }
    match &spec.command {
        Some(argv) => command(&key, spec, argv, at)?,
        None => {
            let set = [
                ("shell", spec.shell),
                ("build", spec.build.is_some()),
                ("env", !spec.env.is_empty()),
                ("cwd", spec.cwd.is_some()),
                ("port", spec.port.is_some()),
            ];
            if let Some((field, _)) = set.iter().find(|(_, s)| *s) {
                return Err(at(
                    &format!("{key}.{field}"),
                    format!("`{field}` applies to `command` targets only"),
                ));
            }
        }
    }
    if !spec.ready.starts_with('/') {
        return Err(at(
            &format!("{key}.ready"),
            "must be a path starting with `/`".into(),
        ));
    }
    for (field, value) in [
        ("ready_timeout_s", spec.ready_timeout_s),
        ("stop_timeout_s", spec.stop_timeout_s),
    ] {
        number(value, limits::TIMEOUT_S).map_err(|e| at(&format!("{key}.{field}"), e))?;
    }
    Ok(())
}

/// A `command` target: argv shape and placeholders.
fn command(key: &str, spec: &TargetSpec, argv: &[String], at: At<'_>) -> Result<(), ConfigError> {
    use super::placeholders;
    for (field, argv) in [("command", Some(argv)), ("build", spec.build.as_deref())] {
        let Some(argv) = argv else { continue };
        let field = format!("{key}.{field}");
        if argv.first().is_none_or(|p| p.trim().is_empty()) {
            return Err(at(&field, "needs at least a program".into()));
        }
        if spec.shell && argv.len() != 1 {
            return Err(at(
                &field,
                "with `shell = true`, write the command as one string: [\"./serve --port {port}\"]"
                    .into(),
            ));
        }
        for arg in argv {
            placeholders::check(arg).map_err(|e| at(&field, e))?;
        }
    }
    for (var, value) in &spec.env {
        placeholders::check(value).map_err(|e| at(&format!("{key}.env.{var}"), e))?;
    }
    let uses_port = argv
        .iter()
        .chain(spec.env.values())
        .any(|a| placeholders::uses(a, "port"));
    if !uses_port && spec.port.is_none() {
        return Err(at(
            &format!("{key}.command"),
            "no `{port}` placeholder: add one so a free port is chosen, or set `port` to the port the server listens on".into(),
        ));
    }
    if spec.port == Some(0) {
        return Err(at(
            &format!("{key}.port"),
            "must be a port number, not 0".into(),
        ));
    }
    Ok(())
}

/// A scenario: no suite keys, a workload within its ranges, a matrix, and a
/// gate of known metrics. Checked in this order, so the first error reported
/// is the first one in the file's reading order that users expect.
fn scenario(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    no_suite_keys(c, at)?;
    workload(c, at)?;
    matrix(c, at)?;
    count(c.repeats.into(), 1, limits::MAX_REPEATS).map_err(|e| at("repeats", e))?;
    number(c.server_metrics.interval_s, limits::SCRAPE_INTERVAL_S)
        .map_err(|e| at("server_metrics.interval_s", e))?;
    scenario_gate(c, at)
}

/// Quality tasks and accuracy tolerances are a suite's; in a scenario they
/// would be silently ignored, so they are rejected.
fn no_suite_keys(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if !c.tasks.is_empty() {
        return Err(at(
            "tasks",
            "quality tasks belong in a suite (suites/), not a scenario".into(),
        ));
    }
    for (key, set) in [
        ("limit", c.limit.is_some()),
        ("num_fewshot", c.num_fewshot.is_some()),
        ("data", c.data.is_some()),
    ] {
        if set {
            return Err(at(
                key,
                format!("`{key}` belongs in a suite (suites/), not a scenario"),
            ));
        }
    }
    if !c.gate.quality.is_empty() {
        // Point at the first tolerance set, in the order the keys are listed.
        let key = QualityGate::KEYS
            .iter()
            .find(|k| match **k {
                "max_drop" => c.gate.quality.max_drop.is_some(),
                "two_sided" => c.gate.quality.two_sided.is_some(),
                "expected" => !c.gate.quality.expected.is_empty(),
                _ => c.gate.quality.rtol.is_some(),
            })
            .unwrap_or(&"max_drop");
        return Err(at(
            &format!("gate.{key}"),
            "accuracy tolerances belong in a suite (suites/); a scenario's gate limits metrics, e.g. `throughput = { min_ratio = 0.95 }`".into(),
        ));
    }
    Ok(())
}

/// Every `[workload]` value within `limits`, so that the load generator
/// cannot panic or exhaust memory on it.
fn workload(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    workload_counts(&c.workload, at)?;
    workload_numbers(&c.workload, at)?;
    synthetic_prompts(c, at)?;
    // Each matrix source as if it were the workload's own, its errors
    // located at the axis.
    for source in c.matrix.prompts.iter().flatten() {
        let mut point = c.clone();
        point.workload.prompts = source.clone();
        let at_axis = |key: &str, message: String| {
            let what = key.strip_prefix("workload.").unwrap_or(key);
            at("matrix.prompts", format!("{what}: {message}"))
        };
        synthetic_prompts(&point, &at_axis)?;
    }
    slo(&c.workload, at)?;
    sweep(&c.workload, at)?;
    let w = &c.workload;
    if w.steady_state && w.rate.is_some() && w.max_concurrency.is_none() {
        return Err(at(
            "workload.steady_state",
            "an open loop's steady state is at `max_concurrency` in flight: set it".into(),
        ));
    }
    Ok(())
}

/// The workload's whole-number keys, the optional ones only when set.
fn workload_counts(w: &WorkloadConfig, at: At<'_>) -> Result<(), ConfigError> {
    let counts = [
        (
            "workload.concurrency",
            w.concurrency,
            1,
            limits::MAX_CONCURRENCY,
        ),
        (
            "workload.num_requests",
            w.num_requests,
            1,
            limits::MAX_REQUESTS,
        ),
        ("workload.warmup", w.warmup, 0, limits::MAX_REQUESTS),
        ("workload.max_tokens", w.max_tokens, 1, limits::MAX_TOKENS),
    ];
    let optional_counts = [
        ("workload.min_tokens", w.min_tokens, 0, limits::MAX_TOKENS),
        (
            "workload.max_concurrency",
            w.max_concurrency,
            1,
            limits::MAX_CONCURRENCY,
        ),
    ];
    let set = optional_counts
        .into_iter()
        .filter_map(|(key, v, lo, hi)| Some((key, v?, lo, hi)));
    for (key, value, lo, hi) in counts.into_iter().chain(set) {
        count(value.into(), lo, hi).map_err(|e| at(key, e))?;
    }
    Ok(())
}

/// The workload's real-number keys: the rate when set, then the others.
fn workload_numbers(w: &WorkloadConfig, at: At<'_>) -> Result<(), ConfigError> {
    if let Some(rate) = w.rate {
        number(rate, limits::RATE).map_err(|e| at("workload.rate", e))?;
    }
    for (key, value, range) in [
        ("workload.ramp_up_s", w.ramp_up_s, limits::RAMP_UP_S),
        ("workload.burstiness", w.burstiness, limits::BURSTINESS),
        (
            "workload.request_timeout_s",
            w.request_timeout_s,
            limits::TIMEOUT_S,
        ),
        ("workload.temperature", w.temperature, limits::TEMPERATURE),
    ] {
        number(value, range).map_err(|e| at(key, e))?;
    }
    Ok(())
}

/// The most turns one conversation sends.
const MAX_TURNS: u64 = 256;

/// Synthetic prompts: their sizes, and a tokenizer to make them exactly
/// that many tokens long.
fn synthetic_prompts(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    use super::PromptSource;
    let tokens = |key: &str, v: u32, least: u64| {
        count(v.into(), least, limits::MAX_TOKENS)
            .map(drop)
            .map_err(|e| at(&format!("workload.prompts.{key}"), e))
    };
    match &c.workload.prompts {
        PromptSource::Synthetic { synthetic } => {
            tokens("synthetic.input_tokens", synthetic.input_tokens, 1)?;
            count(synthetic.count.into(), 1, limits::MAX_SYNTHETIC_PROMPTS)
                .map_err(|e| at("workload.prompts.synthetic.count", e))?;
        }
        PromptSource::Random { random: r } => {
            tokens("random.input_len", r.input_len, 1)?;
            tokens("random.output_len", r.output_len, 1)?;
            tokens("random.prefix_len", r.prefix_len, 0)?;
            // Below 1, so the shortest draw keeps at least one token.
            number(r.range_ratio, (0.0, 0.999))
                .map_err(|e| at("workload.prompts.random.range_ratio", e))?;
        }
        PromptSource::PrefixRepetition {
            prefix_repetition: p,
        } => {
            count(p.num_prefixes.into(), 1, limits::MAX_SYNTHETIC_PROMPTS)
                .map_err(|e| at("workload.prompts.prefix_repetition.num_prefixes", e))?;
            tokens("prefix_repetition.prefix_len", p.prefix_len, 1)?;
            tokens("prefix_repetition.suffix_len", p.suffix_len, 1)?;
            tokens("prefix_repetition.output_len", p.output_len, 1)?;
        }
        PromptSource::Trace { trace } => {
            number(trace.time_scale, (0.001, 1000.0))
                .map_err(|e| at("workload.prompts.trace.time_scale", e))?;
            if c.workload.rate.is_some() {
                return Err(at(
                    "workload.rate",
                    "a trace sends each request at its own time: remove `rate`".into(),
                ));
            }
        }
        PromptSource::Conversations { conversations: v } => {
            let key = |k: &str| format!("workload.prompts.conversations.{k}");
            if let Some(t) = v.output_tokens {
                tokens("conversations.output_tokens", t, 1)?;
            }
            number(v.think_time_s, (0.0, 600.0)).map_err(|e| at(&key("think_time_s"), e))?;
            if c.workload.sweep.is_some() {
                return Err(at(
                    "workload.sweep",
                    "a sweep paces single requests; conversations go in sessions: remove one"
                        .into(),
                ));
            }
            match (&v.sharegpt, v.turns, v.input_tokens) {
                (Some(_), None, None) => {
                    if let Some(m) = v.max_turns {
                        count(m.into(), 1, MAX_TURNS).map_err(|e| at(&key("max_turns"), e))?;
                    }
                    // Texts from the file: no tokenizer needed.
                    return Ok(());
                }
                (None, Some(turns), Some(input)) => {
                    count(turns.into(), 1, MAX_TURNS).map_err(|e| at(&key("turns"), e))?;
                    tokens("conversations.input_tokens", input, 1)?;
                    if v.max_turns.is_some() {
                        return Err(at(
                            &key("max_turns"),
                            "`max_turns` caps a ShareGPT file's conversations; made ones have `turns`"
                                .into(),
                        ));
                    }
                }
                _ => {
                    return Err(at(
                        "workload.prompts.conversations",
                        "give either `sharegpt = \"file.json\"` or both `turns` and `input_tokens`"
                            .into(),
                    ))
                }
            }
        }
        _ => return Ok(()),
    }
    // The embedded engine lends its tokenizer; a running server its `/tokenize`.
    let lent = c
        .targets
        .get(&c.candidate)
        .is_some_and(|t| t.sim.is_some() || t.url.is_some());
    if c.tokenizer.is_none() && !lent {
        return Err(at(
            "workload.prompts",
            "prompts of an exact token length need `tokenizer` (a tokenizer.json path; an embedded-engine candidate lends its own, a `url` candidate its /tokenize)"
                .into(),
        ));
    }
    Ok(())
}

/// A sweep needs objectives to meet and a saturated load above one request.
fn sweep(w: &WorkloadConfig, at: At<'_>) -> Result<(), ConfigError> {
    let Some(s) = &w.sweep else { return Ok(()) };
    count(s.rates.into(), 1, 20).map_err(|e| at("workload.sweep.rates", e))?;
    number(s.meet, (0.01, 1.0)).map_err(|e| at("workload.sweep.meet", e))?;
    if w.slo.is_none() {
        return Err(at(
            "workload.sweep",
            "a sweep finds the highest rate meeting `workload.slo`: set it".into(),
        ));
    }
    if w.concurrency < 2 {
        return Err(at(
            "workload.sweep",
            "a sweep saturates the server at `workload.concurrency`: set it above 1".into(),
        ));
    }
    Ok(())
}

/// The service-level objectives that are set, each within `SLO_MS`.
fn slo(w: &WorkloadConfig, at: At<'_>) -> Result<(), ConfigError> {
    let Some(slo) = &w.slo else { return Ok(()) };
    for (field, v) in [
        ("ttft_ms", slo.ttft_ms),
        ("tpot_ms", slo.tpot_ms),
        ("e2e_ms", slo.e2e_ms),
    ] {
        if let Some(v) = v {
            number(v, limits::SLO_MS).map_err(|e| at(&format!("workload.slo.{field}"), e))?;
        }
    }
    Ok(())
}

/// A scenario's gate: known metrics only, at least one, each limit valid.
fn scenario_gate(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if let Some(name) = c.gate.unknown.first() {
        return Err(at(
            &format!("gate.{name}"),
            format!("unknown metric `{name}`; known: {}", MetricName::help()),
        ));
    }
    if c.gate.is_empty() {
        return Err(at(
            "gate",
            "a scenario needs at least one gate entry".into(),
        ));
    }
    for (metric, limit) in &c.gate {
        gate_entry(metric.as_str(), limit, at)?;
    }
    Ok(())
}

/// Every axis value within its workload key's range, and at most
/// `MAX_MATRIX_POINTS` points, counted before anything is expanded.
fn matrix(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    let m = &c.matrix;
    let numeric = [
        ("matrix.max_tokens", &m.max_tokens, limits::MAX_TOKENS),
        (
            "matrix.concurrency",
            &m.concurrency,
            limits::MAX_CONCURRENCY,
        ),
        ("matrix.num_requests", &m.num_requests, limits::MAX_REQUESTS),
    ];
    for (key, axis, hi) in numeric {
        if let Some(values) = axis {
            if values.is_empty() {
                return Err(at(key, "a matrix axis needs at least one value".into()));
            }
            for &v in values {
                count(v.into(), 1, hi).map_err(|e| at(key, format!("values {e}")))?;
            }
        }
    }
    if let Some(caps) = &m.max_concurrency {
        if caps.is_empty() {
            return Err(at(
                "matrix.max_concurrency",
                "a matrix axis needs at least one value".into(),
            ));
        }
        for &v in caps {
            count(v.into(), 1, limits::MAX_CONCURRENCY)
                .map_err(|e| at("matrix.max_concurrency", format!("values {e}")))?;
        }
    }
    if let Some(rates) = &m.request_rate {
        if rates.is_empty() {
            return Err(at(
                "matrix.request_rate",
                "a matrix axis needs at least one value".into(),
            ));
        }
        for rate in rates {
            if let super::RequestRate::PerSecond(r) = rate {
                number(*r, limits::RATE)
                    .map_err(|e| at("matrix.request_rate", format!("values {e}")))?;
            }
        }
    }
    if m.prompts.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(at(
            "matrix.prompts",
            "a matrix axis needs at least one value".into(),
        ));
    }
    let lengths = [
        ("prompts", m.prompts.as_ref().map(Vec::len)),
        ("max_tokens", m.max_tokens.as_ref().map(Vec::len)),
        ("concurrency", m.concurrency.as_ref().map(Vec::len)),
        ("num_requests", m.num_requests.as_ref().map(Vec::len)),
        ("request_rate", m.request_rate.as_ref().map(Vec::len)),
        ("max_concurrency", m.max_concurrency.as_ref().map(Vec::len)),
    ];
    let points = lengths
        .iter()
        .filter_map(|(_, n)| *n)
        .fold(1u64, |p, n| p.saturating_mul(n as u64));
    if points > limits::MAX_MATRIX_POINTS {
        let axes: Vec<String> = lengths
            .iter()
            .filter_map(|(axis, n)| Some(format!("{axis} {}", (*n)?)))
            .collect();
        return Err(at(
            "matrix",
            format!(
                "{points} points ({}); at most {} per file",
                axes.join(" × "),
                limits::MAX_MATRIX_POINTS
            ),
        ));
    }
    Ok(())
}

fn gate_entry(metric: &str, limit: &Limit, at: At<'_>) -> Result<(), ConfigError> {
    let key = format!("gate.{metric}");
    if limit.is_empty() {
        return Err(at(
            &key,
            "set at least one of min_ratio, max_ratio, min, max".into(),
        ));
    }
    for (field, value) in [
        ("min_ratio", limit.min_ratio),
        ("max_ratio", limit.max_ratio),
        ("min", limit.min),
        ("max", limit.max),
    ] {
        if let Some(v) = value {
            let ratio = field.ends_with("ratio");
            if !v.is_finite() || (ratio && v <= 0.0) {
                return Err(at(&format!("{key}.{field}"), format!("invalid limit {v}")));
            }
        }
    }
    if let Some(level) = limit.confidence {
        if !(level.is_finite() && level > 0.0 && level < 1.0) {
            return Err(at(
                &format!("{key}.confidence"),
                format!("must be a level between 0 and 1 (e.g. 0.95), got {level}"),
            ));
        }
        if limit.min_ratio.is_none() && limit.max_ratio.is_none() {
            return Err(at(
                &format!("{key}.confidence"),
                "applies to ratio limits; set min_ratio or max_ratio (absolute limits are checked on the measured value)".into(),
            ));
        }
    }
    Ok(())
}

/// A suite: known tasks, scoring within its ranges, a gate of accuracy
/// tolerances with something to compare with, and no scenario keys.
/// Checked in this order, so the first error reported stays the same.
fn suite(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    suite_tasks(c, at)?;
    suite_counts(c, at)?;
    quality_gate(c, at)?;
    mc_tasks(c, at)?;
    gen_tasks(c, at)?;
    if c.matrix != Default::default() {
        return Err(at(
            "matrix",
            "a matrix belongs in a scenario, not a suite".into(),
        ));
    }
    Ok(())
}

/// At least one task, each built in or declared under `[mc_tasks]`.
fn suite_tasks(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if c.tasks.is_empty() {
        return Err(at("tasks", "a suite needs at least one task".into()));
    }
    for task in &c.tasks {
        if !BUILTIN_TASKS.contains(&task.as_str())
            && !c.mc_tasks.contains_key(task)
            && !c.gen_tasks.contains_key(task)
        {
            return Err(at(
                "tasks",
                format!(
                    "unknown task `{task}` (built in: {}; or declare it under [mc_tasks.{task}] or [gen_tasks.{task}])",
                    BUILTIN_TASKS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// `limit`, `num_fewshot` and `[scoring]` within `limits`.
fn suite_counts(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if let Some(limit) = c.limit {
        count(limit as u64, 1, limits::MAX_LIMIT).map_err(|e| at("limit", e))?;
    }
    if let Some(shots) = c.num_fewshot {
        count(shots.into(), 0, limits::MAX_FEWSHOT).map_err(|e| at("num_fewshot", e))?;
    }
    let s = &c.scoring;
    for (key, value, lo, hi) in [
        (
            "scoring.concurrency",
            s.concurrency.into(),
            1,
            limits::MAX_CONCURRENCY,
        ),
        (
            "scoring.max_retries",
            s.max_retries.into(),
            0,
            limits::MAX_RETRIES,
        ),
        (
            "scoring.max_length",
            s.max_length as u64,
            1,
            limits::MAX_LENGTH,
        ),
    ] {
        count(value, lo, hi).map_err(|e| at(key, e))?;
    }
    number(s.timeout_s, limits::TIMEOUT_S).map_err(|e| at("scoring.timeout_s", e))?;
    Ok(())
}

/// A suite's gate: tolerances only (no metric limits), each in range, and
/// a baseline or `expected` values to compare with.
fn quality_gate(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    let scenario_keys = c.gate.limits.keys().map(|k| k.as_str());
    if let Some(metric) = scenario_keys
        .chain(c.gate.unknown.iter().map(String::as_str))
        .next()
    {
        return Err(at(
            &format!("gate.{metric}"),
            "a suite's gate takes max_drop, two_sided, expected and rtol; metric limits belong in a scenario".into(),
        ));
    }
    let q = &c.gate.quality;
    if let Some(d) = q.max_drop {
        if !(d.is_finite() && d >= 0.0) {
            return Err(at("gate.max_drop", format!("must be 0 or more, got {d}")));
        }
    }
    if let Some(r) = q.rtol {
        if !(r.is_finite() && (0.0..1.0).contains(&r)) {
            return Err(at("gate.rtol", format!("must be in [0, 1), got {r}")));
        }
        if q.expected.is_empty() {
            return Err(at(
                "gate.rtol",
                "applies to `expected` values; with a live baseline use max_drop".into(),
            ));
        }
    }
    expected(c, at)?;
    if c.baseline.target().is_none() && q.expected.is_empty() {
        return Err(at(
            "baseline",
            "a suite compares with a live baseline target or with `gate.expected` values".into(),
        ));
    }
    Ok(())
}

/// Each `gate.expected` value a fraction, for one of this suite's tasks.
fn expected(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    for (key, &value) in &c.gate.quality.expected {
        number(value, limits::FRACTION).map_err(|e| at(&format!("gate.expected.{key}"), e))?;
        // `task` or `task.metric`: the task is what must be in the suite.
        let task = key.split('.').next().unwrap_or(key);
        if !c.tasks.iter().any(|t| t == task) {
            return Err(at(
                &format!("gate.expected.{key}"),
                format!("`{task}` is not one of this suite's tasks"),
            ));
        }
    }
    Ok(())
}

/// Declared generative tasks: a template and a target, patterns that
/// compile, a generation length within range. (Templates are read with
/// the records, where an error can name the record and field.)
fn gen_tasks(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    use crate::pyregex::python_regex;
    for (name, spec) in &c.gen_tasks {
        let key = |k: &str| format!("gen_tasks.{name}.{k}");
        for (k, v) in [("template", &spec.template), ("target", &spec.target)] {
            if v.trim().is_empty() {
                return Err(at(&key(k), "must not be empty".into()));
            }
        }
        count(spec.max_tokens.into(), 1, limits::MAX_GEN_TOKENS)
            .map_err(|e| at(&key("max_tokens"), e))?;
        for (i, f) in spec.filters.iter().enumerate() {
            let fk = |k: &str| key(&format!("filters.{i}.{k}"));
            python_regex(&f.regex).map_err(|e| at(&fk("regex"), e))?;
            if !(-1000..=1000).contains(&f.group_select) {
                return Err(at(
                    &fk("group_select"),
                    format!("must be between -1000 and 1000 (got {})", f.group_select),
                ));
            }
            if f.name.is_empty() || spec.filters[..i].iter().any(|g| g.name == f.name) {
                return Err(at(&fk("name"), "must be non-empty and unique".into()));
            }
        }
        for (i, p) in spec.exact_match.regexes_to_ignore.iter().enumerate() {
            python_regex(p)
                .map_err(|e| at(&key(&format!("exact_match.regexes_to_ignore.{i}")), e))?;
        }
    }
    Ok(())
}

/// Declared multiple-choice tasks: a template, and at least two fixed choices.
fn mc_tasks(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    for (name, spec) in &c.mc_tasks {
        if spec.template.trim().is_empty() {
            return Err(at(
                &format!("mc_tasks.{name}.template"),
                "must not be empty".into(),
            ));
        }
        if matches!(&spec.choices, ChoiceSource::Fixed(list) if list.len() < 2) {
            return Err(at(
                &format!("mc_tasks.{name}.choices"),
                "needs at least two choices".into(),
            ));
        }
    }
    Ok(())
}
