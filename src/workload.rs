//! Prompt sources and arrival schedules. Sending requests is `loadgen`'s job.

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma};
use serde::Deserialize;

use crate::config::{
    ConversationPrompts, PrefixRepetitionPrompts, PromptSource, RandomPrompts, TracePrompts,
};
use crate::tokenizer::Codec;

/// One prompt, with its length in tokens when a tokenizer was available.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    pub text: String,
    pub tokens: Option<u32>,
    /// This request's own output length (generated datasets), in place of
    /// the workload's `max_tokens`.
    pub max_tokens: Option<u32>,
    /// When a trace sent it, in seconds from the trace's first request.
    pub arrival_s: Option<f64>,
    /// Its place in a conversation (0 starts a session; see `conversation`).
    pub turn: Option<u32>,
}

impl Prompt {
    pub fn text(text: String, tokenizer: Option<&dyn Codec>) -> Self {
        Self {
            tokens: tokenizer
                .and_then(|t| t.count_text(&text).ok())
                .map(|n| n as u32),
            text,
            max_tokens: None,
            arrival_s: None,
            turn: None,
        }
    }
}

/// Loads prompts from `source`. Set names resolve against `dir`; other paths
/// against `root`. Generated datasets need `tokenizer` and make `wanted`
/// prompts (one per request), drawn from `seed`.
pub fn load_prompts(
    root: &Path,
    dir: &Path,
    source: &PromptSource,
    tokenizer: Option<&dyn Codec>,
    wanted: usize,
    seed: u64,
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
        PromptSource::Random { random } => {
            let tok = tokenizer.ok_or("random prompts need a tokenizer")?;
            return random_prompts(tok, &project_text(dir), random, wanted, seed);
        }
        PromptSource::Custom { custom } => {
            return load_custom(&root.join(custom), tokenizer);
        }
        PromptSource::Trace { trace } => {
            let tok = tokenizer.ok_or("trace prompts need a tokenizer")?;
            let rows = trace_rows(root, trace, wanted)?;
            let source = project_text(dir);
            return rows[..wanted]
                .iter()
                .enumerate()
                .map(|(i, row)| {
                    Ok(Prompt {
                        text: tok.exact_prompt(&source, row.input_tokens as usize, i * 31)?,
                        tokens: Some(row.input_tokens),
                        max_tokens: Some(row.output_tokens),
                        arrival_s: Some(row.arrival_s),
                        turn: None,
                    })
                })
                .collect();
        }
        PromptSource::Conversations { conversations } => {
            return conversation_prompts(root, dir, conversations, tokenizer, wanted);
        }
        PromptSource::PrefixRepetition { prefix_repetition } => {
            let tok = tokenizer.ok_or("prefix_repetition prompts need a tokenizer")?;
            return prefix_repetition_prompts(
                tok,
                &project_text(dir),
                prefix_repetition,
                wanted,
                seed,
            );
        }
    };
    Ok(texts
        .into_iter()
        .map(|text| Prompt::text(text, tokenizer))
        .collect())
}

/// Every session's user messages in order, flattened, each marked with its
/// turn: a ShareGPT file's human turns (the file's own answers are not sent:
/// each turn carries the server's answers), or `wanted` made sessions of
/// exact-length messages.
fn conversation_prompts(
    root: &Path,
    dir: &Path,
    spec: &ConversationPrompts,
    tokenizer: Option<&dyn Codec>,
    wanted: usize,
) -> Result<Vec<Prompt>, String> {
    let sessions: Vec<Vec<Prompt>> = match (&spec.sharegpt, spec.turns, spec.input_tokens) {
        (Some(path), _, _) => load_sharegpt_sessions(&root.join(path))?
            .into_iter()
            .map(|turns| {
                let cap = spec.max_turns.map_or(turns.len(), |m| m as usize);
                turns
                    .into_iter()
                    .take(cap)
                    .map(|t| Prompt::text(t, tokenizer))
                    .collect()
            })
            .collect(),
        (None, Some(turns), Some(input)) => {
            let tok = tokenizer.ok_or("made conversations need a tokenizer")?;
            let source = project_text(dir);
            let mut sessions = Vec::with_capacity(wanted);
            for s in 0..wanted {
                let mut messages = Vec::with_capacity(turns as usize);
                for t in 0..turns as usize {
                    let offset = (s * turns as usize + t) * 31;
                    let text = tok.exact_prompt(&source, input as usize, offset)?;
                    messages.push(Prompt {
                        text,
                        tokens: Some(input),
                        max_tokens: None,
                        arrival_s: None,
                        turn: None,
                    });
                }
                sessions.push(messages);
            }
            sessions
        }
        _ => return Err("conversations need `sharegpt`, or `turns` and `input_tokens`".into()),
    };
    Ok(sessions
        .into_iter()
        .flat_map(|session| {
            session.into_iter().enumerate().map(|(t, mut p)| {
                p.turn = Some(t as u32);
                p.max_tokens = spec.output_tokens;
                p
            })
        })
        .collect())
}

/// `{"prompt": "…", "output_tokens": N}` per line (`output_tokens`
/// optional), as `vllm bench serve --dataset-name custom` reads them.
fn load_custom(path: &Path, tokenizer: Option<&dyn Codec>) -> Result<Vec<Prompt>, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Line {
        prompt: String,
        #[serde(default)]
        output_tokens: Option<u32>,
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut prompts = Vec::new();
    for (i, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let l: Line =
            serde_json::from_str(line).map_err(|e| format!("{}:{}: {e}", path.display(), i + 1))?;
        if l.output_tokens == Some(0) {
            return Err(format!(
                "{}:{}: output_tokens must be at least 1",
                path.display(),
                i + 1
            ));
        }
        let mut p = Prompt::text(l.prompt, tokenizer);
        p.max_tokens = l.output_tokens;
        prompts.push(p);
    }
    if prompts.is_empty() {
        return Err(format!("{}: no prompts", path.display()));
    }
    Ok(prompts)
}

/// The trace's rows, at least `wanted` of them.
fn trace_rows(root: &Path, trace: &TracePrompts, wanted: usize) -> Result<Vec<TraceRow>, String> {
    let path = root.join(&trace.path);
    let rows = load_trace(&path, trace.time_scale)?;
    if rows.len() < wanted {
        return Err(format!(
            "{}: {} requests in the trace; warmup + num_requests = {wanted}",
            path.display(),
            rows.len()
        ));
    }
    Ok(rows)
}

/// Checks a trace file without making its prompts.
pub fn check_trace(root: &Path, trace: &TracePrompts, wanted: usize) -> Result<(), String> {
    trace_rows(root, trace, wanted).map(drop)
}

/// One request of a trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceRow {
    pub arrival_s: f64,
    pub input_tokens: u32,
    pub output_tokens: u32,
}

/// A trace in BurstGPT's CSV columns (`Timestamp` in seconds, `Request
/// tokens`, `Response tokens`; others ignored), sorted by time, arrivals
/// from the first request and gaps multiplied by `time_scale`. Counts of 0
/// (BurstGPT's failed requests) become 1: a request needs a token.
pub fn load_trace(path: &Path, time_scale: f64) -> Result<Vec<TraceRow>, String> {
    let at = |e: String| format!("{}: {e}", path.display());
    let mut reader = csv::Reader::from_path(path).map_err(|e| at(e.to_string()))?;
    let headers = reader.headers().map_err(|e| at(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h.trim().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                at(format!(
                    "no `{name}` column (columns: {})",
                    headers.iter().collect::<Vec<_>>().join(", ")
                ))
            })
    };
    let (time, input, output) = (
        column("Timestamp")?,
        column("Request tokens")?,
        column("Response tokens")?,
    );
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| at(e.to_string()))?;
        // Line i + 2: the header is line 1.
        let field = |c: usize, name: &str| -> Result<f64, String> {
            let v = record.get(c).unwrap_or("").trim();
            v.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite() && *x >= 0.0)
                .ok_or_else(|| {
                    format!(
                        "{}:{}: `{name}` is `{v}`, not a count",
                        path.display(),
                        i + 2
                    )
                })
        };
        let tokens = |c: usize, name: &str| -> Result<u32, String> {
            Ok((field(c, name)?.round() as u64).clamp(1, crate::config::limits::MAX_TOKENS) as u32)
        };
        rows.push(TraceRow {
            arrival_s: field(time, "Timestamp")?,
            input_tokens: tokens(input, "Request tokens")?,
            output_tokens: tokens(output, "Response tokens")?,
        });
    }
    if rows.is_empty() {
        return Err(at("no requests".into()));
    }
    rows.sort_by(|a, b| a.arrival_s.total_cmp(&b.arrival_s));
    let first = rows[0].arrival_s;
    for r in &mut rows {
        r.arrival_s = (r.arrival_s - first) * time_scale;
    }
    Ok(rows)
}

/// A length drawn uniformly from `len × [1 − ratio, 1 + ratio]` (at least 1),
/// as `vllm bench serve --random-range-ratio` draws it.
fn draw_len(rng: &mut impl rand::Rng, len: u32, ratio: f64) -> u32 {
    let lo = ((len as f64) * (1.0 - ratio)).floor().max(1.0) as u32;
    let hi = ((len as f64) * (1.0 + ratio)).ceil().max(lo as f64) as u32;
    rng.random_range(lo..=hi)
}

/// `wanted` prompts of `random`'s token-exact lengths, each with its
/// output length; the same `seed` gives the same requests.
fn random_prompts(
    tok: &dyn Codec,
    source: &str,
    random: &RandomPrompts,
    wanted: usize,
    seed: u64,
) -> Result<Vec<Prompt>, String> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words = source.split_whitespace().count().max(1);
    let prefix = match random.prefix_len {
        0 => String::new(),
        n => tok.exact_prompt(source, n as usize, 0)?,
    };
    (0..wanted.max(1))
        .map(|_| {
            let input = draw_len(&mut rng, random.input_len, random.range_ratio);
            let output = draw_len(&mut rng, random.output_len, random.range_ratio);
            let offset = rng.random_range(0..words);
            let total = (random.prefix_len + input) as usize;
            let text = tok.exact_prompt_after(&prefix, source, total, offset)?;
            Ok(Prompt {
                text,
                tokens: Some(total as u32),
                max_tokens: Some(output),
                arrival_s: None,
                turn: None,
            })
        })
        .collect()
}

/// `wanted` prompts: `num_prefixes` shared prefixes, each request's own
/// suffix after one, in a shuffled order.
fn prefix_repetition_prompts(
    tok: &dyn Codec,
    source: &str,
    spec: &PrefixRepetitionPrompts,
    wanted: usize,
    seed: u64,
) -> Result<Vec<Prompt>, String> {
    use rand::seq::SliceRandom;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let words = source.split_whitespace().count().max(1);
    let prefixes: Vec<String> = (0..spec.num_prefixes as usize)
        .map(|k| {
            // Spread over the source text so prefixes differ from the first word.
            let at = (k * words / spec.num_prefixes as usize + k * 7) % words;
            // Different prefixes must differ in their first block: a
            // leading marker makes sure of it whatever the source text.
            let head = format!("Context {k}:");
            let text = tok.exact_prompt_after(&head, source, spec.prefix_len as usize, at)?;
            Ok(text)
        })
        .collect::<Result<_, String>>()?;
    let total = (spec.prefix_len + spec.suffix_len) as usize;
    let mut prompts = (0..wanted.max(1))
        .map(|i| {
            let offset = rng.random_range(0..words);
            let text =
                tok.exact_prompt_after(&prefixes[i % prefixes.len()], source, total, offset)?;
            Ok(Prompt {
                text,
                tokens: Some(total as u32),
                max_tokens: Some(spec.output_len),
                arrival_s: None,
                turn: None,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    prompts.shuffle(&mut rng);
    Ok(prompts)
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

/// The human turns of every conversation in a ShareGPT-format file that has one.
pub fn load_sharegpt_sessions(path: &Path) -> Result<Vec<Vec<String>>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let entries: Vec<ShareGptEntry> = serde_json::from_str(&text)
        .map_err(|e| format!("{}: not ShareGPT JSON: {e}", path.display()))?;
    let sessions: Vec<Vec<String>> = entries
        .into_iter()
        .map(|e| {
            e.conversations
                .into_iter()
                .filter(|t| (t.from == "human" || t.from == "user") && !t.value.trim().is_empty())
                .map(|t| t.value)
                .collect::<Vec<_>>()
        })
        .filter(|turns| !turns.is_empty())
        .collect();
    if sessions.is_empty() {
        return Err(format!(
            "{}: no conversation with a human turn",
            path.display()
        ));
    }
    Ok(sessions)
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
