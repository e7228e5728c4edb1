//! `SERVEGATE_*` environment overrides, the last configuration layer.
//!
//! figment's own `Env` provider guesses types from the text (`1,2,4` stays a
//! string, `0123` becomes a number), so the mapping from variable to key and
//! the typing of each value are done here, where the schema is known.

use figment::value::{Dict, Map, Value};
use figment::{Metadata, Profile, Provider};

/// Variables with the prefix that configure the tool itself, not a case
/// (the project root; hiding progress bars, see `run::progress::progress_bar`).
pub const RESERVED: &[&str] = &["SERVEGATE_ROOT", "SERVEGATE_NO_PROGRESS"];

const PREFIX: &str = "SERVEGATE_";

/// One environment variable turned into a value at a key path.
#[derive(Debug, Clone)]
pub struct EnvOverride {
    pub var: String,
    pub key: String,
    pub value: Value,
}

impl EnvOverride {
    pub fn label(var: &str) -> String {
        format!("environment variable {var}")
    }

    /// Whether this override reaches a case of `kind`. The environment applies
    /// to every case at once, so a matrix set there (`SERVEGATE_CONCURRENCY`,
    /// `SERVEGATE_MATRIX__…`) shapes scenarios and leaves suites, which have
    /// no matrix, alone.
    pub fn applies_to(&self, kind: Option<super::CaseKind>) -> bool {
        let matrix = self.key == "matrix" || self.key.starts_with("matrix.");
        !(matrix && kind == Some(super::CaseKind::Suite))
    }
}

impl Provider for EnvOverride {
    fn metadata(&self) -> Metadata {
        Metadata::named(Self::label(&self.var))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let dict = match figment::util::nest(&self.key, self.value.clone()) {
            Value::Dict(_, dict) => dict,
            _ => Dict::new(),
        };
        Ok(Profile::Default.collect(dict))
    }
}

/// Maps the old comparison script's flat names onto the schema. A list-valued
/// shorthand becomes a matrix axis, so `SERVEGATE_CONCURRENCY=1,2,4` runs three points.
fn shorthand(name: &str) -> Option<&'static str> {
    Some(match name {
        "MODEL" => "model",
        "NUM_REQUESTS" => "matrix.num_requests",
        "CONCURRENCY" => "matrix.concurrency",
        "MAX_TOKENS" => "matrix.max_tokens",
        "PROMPTS" | "PROMPT_LENGTH" => "matrix.prompts",
        "WARMUP" => "workload.warmup",
        "RESULTS_DIR" => "results_dir",
        // The names `servegate bench --request-timeout` and `eval --timeout` read.
        "REQUEST_TIMEOUT" => "workload.request_timeout_s",
        "SCORING_TIMEOUT" => "scoring.timeout_s",
        _ => return None,
    })
}

/// Keys whose values are text even when they look like numbers.
fn is_string_key(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    matches!(
        parts.as_slice(),
        ["model" | "description" | "candidate" | "baseline" | "results_dir" | "prompts_dir"]
            | ["workload", "prompts"]
            | ["baseline", "results" | "role"]
            | [
                "targets",
                _,
                "url" | "model" | "api_key_env" | "ready" | "cwd"
            ]
            | ["targets", _, "env", _]
    )
}

/// Keys whose values are lists; a comma-separated value is split.
fn list_element_is_text(key: &str) -> Option<bool> {
    match key {
        "matrix.prompts" | "tasks" => Some(true),
        "matrix.max_tokens" | "matrix.concurrency" | "matrix.num_requests" => Some(false),
        "requires_files" => Some(true),
        _ => None,
    }
}

fn scalar(text: &str, as_text: bool) -> Value {
    if as_text {
        return Value::from(text.to_string());
    }
    let parsed = format!("v = {text}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"));
    parsed
        .and_then(|v| Value::serialize(v).ok())
        .unwrap_or_else(|| Value::from(text.to_string()))
}

/// Turns `(name, value)` pairs into overrides; unrelated variables are ignored.
pub fn overrides<I>(vars: I) -> Vec<EnvOverride>
where
    I: IntoIterator<Item = (String, String)>,
{
    let mut out: Vec<EnvOverride> = vars
        .into_iter()
        .filter(|(name, _)| name.starts_with(PREFIX) && !RESERVED.contains(&name.as_str()))
        .filter_map(|(var, raw)| {
            let rest = &var[PREFIX.len()..];
            if rest.is_empty() {
                return None;
            }
            let key = match shorthand(rest) {
                Some(key) => key.to_string(),
                None => rest
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join("."),
            };
            let value = match list_element_is_text(&key) {
                Some(text) => {
                    let inner = raw.trim().trim_start_matches('[').trim_end_matches(']');
                    let items = inner
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(|item| scalar(item.trim_matches('"'), text))
                        .collect::<Vec<_>>();
                    Value::from(items)
                }
                None => scalar(raw.trim(), is_string_key(&key)),
            };
            Some(EnvOverride { var, key, value })
        })
        .collect();
    // Deterministic layering regardless of the order the OS lists variables in.
    out.sort_by(|a, b| a.var.cmp(&b.var));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(name: &str, value: &str) -> EnvOverride {
        let mut v = overrides([(name.to_string(), value.to_string())]);
        assert_eq!(v.len(), 1, "{name} should map");
        v.remove(0)
    }

    #[test]
    fn comma_lists_become_matrix_axes() {
        let o = one("SERVEGATE_CONCURRENCY", "1,2,4");
        assert_eq!(o.key, "matrix.concurrency");
        let list: Vec<u32> = o.value.deserialize().unwrap();
        assert_eq!(list, vec![1, 2, 4]);
        let o = one("SERVEGATE_MAX_TOKENS", "[64, 128]");
        let list: Vec<u32> = o.value.deserialize().unwrap();
        assert_eq!(list, vec![64, 128]);
    }

    #[test]
    fn string_keys_stay_strings() {
        let o = one("SERVEGATE_MODEL", "0123");
        assert_eq!(o.value.deserialize::<String>().unwrap(), "0123");
        let o = one("SERVEGATE_TARGETS__BASELINE__URL", "http://127.0.0.1:8200");
        assert_eq!(o.key, "targets.baseline.url");
    }

    #[test]
    fn nested_scalars_are_typed_and_reserved_names_skipped() {
        let o = one("SERVEGATE_WORKLOAD__WARMUP", "5");
        assert_eq!(o.key, "workload.warmup");
        assert_eq!(o.value.deserialize::<u32>().unwrap(), 5);
        assert!(overrides([("SERVEGATE_ROOT".into(), "/x".into())]).is_empty());
        assert!(overrides([("OTHER".into(), "1".into())]).is_empty());
    }

    #[test]
    fn the_ad_hoc_timeout_variables_set_the_case_timeouts() {
        let o = one("SERVEGATE_REQUEST_TIMEOUT", "5");
        assert_eq!(o.key, "workload.request_timeout_s");
        assert_eq!(o.value.deserialize::<f64>().unwrap(), 5.0);
        let o = one("SERVEGATE_SCORING_TIMEOUT", "2.5");
        assert_eq!(o.key, "scoring.timeout_s");
        assert_eq!(o.value.deserialize::<f64>().unwrap(), 2.5);
    }
}
