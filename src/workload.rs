//! Prompt sources and arrival schedules. Sending requests is `loadgen`'s job.

use std::path::{Path, PathBuf};

use rand::SeedableRng;
use rand_distr::{Distribution, Gamma};
use serde::Deserialize;

use crate::config::PromptSource;
use crate::tokenizer::Tokenizer;

/// One prompt, with its length in tokens when a tokenizer was available.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub tokens: Option<u32>,
}

/// Loads prompts from `source`. Set names resolve against `dir`; other paths
/// against `root`. Synthetic prompts need `tokenizer`.
pub fn load_prompts(
    root: &Path,
    dir: &Path,
    source: &PromptSource,
    tokenizer: Option<&Tokenizer>,
) -> Result<Vec<Prompt>, String> {
    let texts = match source {
        PromptSource::Set(name) => load_prompt_set(dir, name)?,
        PromptSource::ShareGpt { sharegpt } => {
            let path = if sharegpt.is_absolute() {
                sharegpt.clone()
            } else {
                root.join(sharegpt)
            };
            load_sharegpt(&path)?
        }
        PromptSource::Synthetic { synthetic } => {
            let tok = tokenizer.ok_or("synthetic prompts need a tokenizer")?;
            let source = project_text(dir);
            (0..synthetic.count as usize)
                .map(|i| tok.exact_prompt(&source, synthetic.input_tokens as usize, i * 31))
                .collect::<Result<Vec<_>, _>>()?
        }
    };
    Ok(texts
        .into_iter()
        .map(|text| Prompt {
            tokens: tokenizer.map(|t| t.count(&text) as u32),
            text,
        })
        .collect())
}

/// Text to cut synthetic prompts from: every prompt set in `dir`, so their
/// vocabulary is natural language rather than one repeated token.
fn project_text(dir: &Path) -> String {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    let text: Vec<String> = files
        .iter()
        .filter(|p| p.extension().is_some_and(|e| e == "txt"))
        .filter_map(|p| std::fs::read_to_string(p).ok())
        .flat_map(|t| parse_text_prompts(&t))
        .collect();
    if text.is_empty() {
        "the quick brown fox jumps over the lazy dog while the engine serves tokens".to_string()
    } else {
        text.join(" ")
    }
}

/// Loads the prompt set `name` from `dir`: `NAME.txt` (one prompt per non-empty
/// line, `#` starts a comment line), `NAME.json` (a JSON array of strings), or
/// the `NAME` list of `prompts.json` (the old comparison script's format,
/// `{"short": [...], "medium": [...], "long": [...]}`).
pub fn load_prompt_set(dir: &Path, name: &str) -> Result<Vec<String>, String> {
    let candidates = prompt_set_paths(dir, name);
    let found = candidates.iter().find(|p| p.is_file());
    let prompts = match found {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            if path.extension().is_some_and(|e| e == "json") {
                serde_json::from_str::<Vec<String>>(&text).map_err(|e| {
                    format!("{}: expected a JSON array of strings: {e}", path.display())
                })?
            } else {
                parse_text_prompts(&text)
            }
        }
        None => {
            let combined = dir.join("prompts.json");
            let from_combined = combined
                .is_file()
                .then(|| load_prompts_json(&combined))
                .transpose()?
                .and_then(|mut sets| sets.remove(name));
            match from_combined {
                Some(p) => p,
                None => {
                    return Err(format!(
                        "prompt set `{name}` not found (looked for {} and key `{name}` in {})",
                        candidates
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", "),
                        combined.display()
                    ))
                }
            }
        }
    };
    if prompts.is_empty() {
        return Err(format!("prompt set `{name}` in {} is empty", dir.display()));
    }
    Ok(prompts)
}

/// `{"short": [...], "medium": [...]}`.
pub fn load_prompts_json(
    path: &Path,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| {
        format!(
            "{}: expected {{\"name\": [\"prompt\", ...], ...}}: {e}",
            path.display()
        )
    })
}

/// The files a prompt set name may refer to, in lookup order.
pub fn prompt_set_paths(dir: &Path, name: &str) -> Vec<PathBuf> {
    ["txt", "json"]
        .iter()
        .map(|ext| dir.join(format!("{name}.{ext}")))
        .collect()
}

fn parse_text_prompts(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

#[derive(Deserialize)]
struct ShareGptEntry {
    #[serde(default)]
    conversations: Vec<ShareGptTurn>,
}

#[derive(Deserialize)]
struct ShareGptTurn {
    from: String,
    value: String,
}

/// First human turn of every conversation in a ShareGPT-format file.
pub fn load_sharegpt(path: &Path) -> Result<Vec<String>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries: Vec<ShareGptEntry> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not ShareGPT JSON: {e}", path.display()))?;
    let prompts: Vec<String> = entries
        .into_iter()
        .filter_map(|e| {
            e.conversations
                .into_iter()
                .find(|t| t.from == "human" || t.from == "user")
                .map(|t| t.value)
        })
        .filter(|v| !v.trim().is_empty())
        .collect();
    if prompts.is_empty() {
        return Err(format!(
            "{}: no conversation with a human turn",
            path.display()
        ));
    }
    Ok(prompts)
}

/// Send times (seconds from the start of the phase) of `n` open-loop arrivals
/// at `rate` requests/s. Inter-arrival gaps are Gamma(shape = burstiness,
/// scale = 1 / (rate × burstiness)): mean 1/rate whatever the burstiness,
/// exponential (Poisson arrivals) at burstiness 1. The first request goes at 0.
/// `rate` and `burstiness` must lie within `config::limits::{RATE, BURSTINESS}`
/// (validation and `servegate bench` see to it): there the distribution
/// exists and the times stay far below what a `Duration` holds.
pub fn arrival_times(n: usize, rate: f64, burstiness: f64, seed: u64) -> Vec<f64> {
    if !rate.is_finite() {
        return vec![0.0; n];
    }
    let gamma = Gamma::new(burstiness, 1.0 / (rate * burstiness))
        .expect("rate and burstiness within limits");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut t = 0.0;
    (0..n)
        .map(|i| {
            if i > 0 {
                t += gamma.sample(&mut rng);
            }
            t
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_sets_skip_comments_and_blank_lines() {
        let p = parse_text_prompts("# header\n\nfirst prompt\n  second prompt  \n");
        assert_eq!(p, vec!["first prompt", "second prompt"]);
    }

    #[test]
    fn set_lookup_order_and_combined_file() {
        let dir = tempfile::tempdir().unwrap();
        let err = load_prompt_set(dir.path(), "nope").unwrap_err();
        assert!(
            err.contains("nope.txt") && err.contains("nope.json") && err.contains("prompts.json"),
            "{err}"
        );
        std::fs::write(dir.path().join("j.json"), r#"["a", "b"]"#).unwrap();
        assert_eq!(load_prompt_set(dir.path(), "j").unwrap(), vec!["a", "b"]);
        std::fs::write(
            dir.path().join("prompts.json"),
            r#"{"short": ["hi"], "medium": ["a longer one", "another"]}"#,
        )
        .unwrap();
        assert_eq!(load_prompt_set(dir.path(), "medium").unwrap().len(), 2);
        assert!(load_prompt_set(dir.path(), "long").is_err());
    }

    #[test]
    fn sharegpt_takes_first_human_turn() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sg.json");
        std::fs::write(
            &path,
            r#"[{"id":"1","conversations":[{"from":"human","value":"Q1"},{"from":"gpt","value":"A1"}]},
                {"id":"2","conversations":[{"from":"gpt","value":"only a reply"}]},
                {"id":"3","conversations":[{"from":"system","value":"s"},{"from":"human","value":"Q3"}]}]"#,
        )
        .unwrap();
        assert_eq!(load_sharegpt(&path).unwrap(), vec!["Q1", "Q3"]);
    }

    #[test]
    fn arrivals_have_the_requested_mean_rate_and_are_seeded() {
        let t = arrival_times(20_000, 50.0, 1.0, 7);
        assert_eq!(t[0], 0.0);
        let mean_gap = t[t.len() - 1] / (t.len() - 1) as f64;
        assert!((mean_gap - 0.02).abs() < 0.0005, "mean gap {mean_gap}");
        assert_eq!(t, arrival_times(20_000, 50.0, 1.0, 7));
        assert_ne!(t, arrival_times(20_000, 50.0, 1.0, 8));
        // Burstier arrivals keep the mean but spread the gaps more.
        let cv = |t: &[f64]| {
            let gaps: Vec<f64> = t.windows(2).map(|w| w[1] - w[0]).collect();
            let m = gaps.iter().sum::<f64>() / gaps.len() as f64;
            (gaps.iter().map(|g| (g - m).powi(2)).sum::<f64>() / gaps.len() as f64).sqrt() / m
        };
        let bursty = arrival_times(20_000, 50.0, 0.25, 7);
        assert!(
            cv(&t) > 0.95 && cv(&t) < 1.05,
            "Poisson gaps have CV 1, got {}",
            cv(&t)
        );
        assert!(cv(&bursty) > 1.8, "CV {}", cv(&bursty));
        assert!(arrival_times(3, f64::INFINITY, 1.0, 0)
            .iter()
            .all(|&x| x == 0.0));
    }
}
