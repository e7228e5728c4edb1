//! Checks that serde cannot express: cross-references, ranges, known metric names.

use super::{CaseConfig, CaseKind, ConfigError, Limit, TargetSpec};
use crate::metrics::MetricName;

type At<'a> = &'a dyn Fn(&str, String) -> ConfigError;

pub(super) fn validate(
    c: &CaseConfig,
    kind: Option<CaseKind>,
    at: At<'_>,
) -> Result<(), ConfigError> {
    for (name, spec) in &c.targets {
        target(name, spec, at)?;
    }
    if let Some(kind) = kind {
        for key in ["candidate", "baseline"] {
            let name = if key == "candidate" {
                &c.candidate
            } else {
                &c.baseline
            };
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

fn target(name: &str, spec: &TargetSpec, at: At<'_>) -> Result<(), ConfigError> {
    let key = format!("targets.{name}");
    match (&spec.url, &spec.sim) {
        (Some(_), Some(_)) => {
            return Err(at(
                &key,
                "set exactly one of `url` or `sim`, not both".into(),
            ))
        }
        (None, None) => {
            return Err(at(
                &key,
                "set one of `url` (a running server) or `sim` (the embedded engine)".into(),
            ))
        }
        (Some(url), None) => {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| at(&format!("{key}.url"), format!("not a URL: {e}")))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(at(
                    &format!("{key}.url"),
                    "URL scheme must be http or https".into(),
                ));
            }
        }
        (None, Some(sim)) => {
            for (field, value, min_exclusive) in [
                ("ttft_ms", sim.ttft_ms, false),
                ("tpot_ms", sim.tpot_ms, false),
                ("slowdown", sim.slowdown, true),
            ] {
                if !value.is_finite() || value < 0.0 || (min_exclusive && value == 0.0) {
                    return Err(at(
                        &format!("{key}.sim.{field}"),
                        format!("must be a positive number, got {value}"),
                    ));
                }
            }
        }
    }
    if !spec.ready.starts_with('/') {
        return Err(at(
            &format!("{key}.ready"),
            "must be a path starting with `/`".into(),
        ));
    }
    if !positive(spec.ready_timeout_s) {
        return Err(at(
            &format!("{key}.ready_timeout_s"),
            "must be positive".into(),
        ));
    }
    Ok(())
}

fn scenario(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if !c.tasks.is_empty() {
        return Err(at(
            "tasks",
            "quality tasks belong in a suite (suites/), not a scenario".into(),
        ));
    }
    if c.limit.is_some() {
        return Err(at(
            "limit",
            "`limit` belongs in a suite (suites/), not a scenario".into(),
        ));
    }
    let w = &c.workload;
    for (key, value) in [
        ("workload.concurrency", w.concurrency),
        ("workload.num_requests", w.num_requests),
        ("workload.max_tokens", w.max_tokens),
    ] {
        if value == 0 {
            return Err(at(key, "must be at least 1".into()));
        }
    }
    if let Some(rate) = w.rate {
        if !positive(rate) {
            return Err(at(
                "workload.rate",
                format!("must be a positive number of requests per second, got {rate}"),
            ));
        }
    }
    if !(w.ramp_up_s.is_finite() && w.ramp_up_s >= 0.0) {
        return Err(at(
            "workload.ramp_up_s",
            "must be zero or a positive number of seconds".into(),
        ));
    }
    if !positive(w.burstiness) {
        return Err(at(
            "workload.burstiness",
            "must be positive (1 = Poisson)".into(),
        ));
    }
    if w.max_concurrency == Some(0) {
        return Err(at("workload.max_concurrency", "must be at least 1".into()));
    }
    if let super::PromptSource::Synthetic { synthetic } = &w.prompts {
        if synthetic.input_tokens == 0 || synthetic.count == 0 {
            return Err(at(
                "workload.prompts.synthetic",
                "input_tokens and count must be at least 1".into(),
            ));
        }
        if c.tokenizer.is_none() {
            return Err(at(
                "workload.prompts",
                "synthetic prompts of an exact token length need `tokenizer` (a tokenizer.json path)".into(),
            ));
        }
    }
    if let Some(slo) = &w.slo {
        for (field, v) in [
            ("ttft_ms", slo.ttft_ms),
            ("tpot_ms", slo.tpot_ms),
            ("e2e_ms", slo.e2e_ms),
        ] {
            if v.is_some_and(|v| !positive(v)) {
                return Err(at(
                    &format!("workload.slo.{field}"),
                    "must be positive".into(),
                ));
            }
        }
    }
    if !positive(w.request_timeout_s) {
        return Err(at("workload.request_timeout_s", "must be positive".into()));
    }
    if !(0.0..=2.0).contains(&w.temperature) {
        return Err(at("workload.temperature", "must be between 0 and 2".into()));
    }
    let m = &c.matrix;
    let numeric = [
        ("matrix.max_tokens", &m.max_tokens),
        ("matrix.concurrency", &m.concurrency),
        ("matrix.num_requests", &m.num_requests),
    ];
    for (key, axis) in numeric {
        if let Some(values) = axis {
            if values.is_empty() {
                return Err(at(key, "a matrix axis needs at least one value".into()));
            }
            if values.contains(&0) {
                return Err(at(key, "values must be at least 1".into()));
            }
        }
    }
    if m.prompts.as_ref().is_some_and(|p| p.is_empty()) {
        return Err(at(
            "matrix.prompts",
            "a matrix axis needs at least one value".into(),
        ));
    }
    if c.repeats == 0 {
        return Err(at("repeats", "must be at least 1".into()));
    }
    if c.gate.is_empty() {
        return Err(at(
            "gate",
            "a scenario needs at least one gate entry".into(),
        ));
    }
    for (metric, limit) in &c.gate {
        gate_entry(metric, limit, at)?;
    }
    Ok(())
}

fn gate_entry(metric: &str, limit: &Limit, at: At<'_>) -> Result<(), ConfigError> {
    let key = format!("gate.{metric}");
    if MetricName::parse(metric).is_none() {
        return Err(at(
            &key,
            format!("unknown metric `{metric}`; known: {}", MetricName::help()),
        ));
    }
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

fn suite(c: &CaseConfig, at: At<'_>) -> Result<(), ConfigError> {
    if c.tasks.is_empty() {
        return Err(at("tasks", "a suite needs at least one task".into()));
    }
    if c.matrix != Default::default() {
        return Err(at(
            "matrix",
            "a matrix belongs in a scenario, not a suite".into(),
        ));
    }
    Ok(())
}

fn positive(x: f64) -> bool {
    x.is_finite() && x > 0.0
}
