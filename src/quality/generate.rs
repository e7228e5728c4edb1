//! Generative tasks, as lm-evaluation-harness 0.4 runs its `generate_until`
//! tasks: a prompt built from few-shot examples and the question, greedy
//! generation until a stop string, filters that extract an answer from the
//! generated text, and `exact_match` against the target.
//!
//! Pure: prompts, filters and scores. Sending the requests lives in
//! `generation`, reading records in `data`.

use std::collections::BTreeMap;

use serde_json::Value;

use super::pyrandom::{lm_eval_fewshot, PyRandom};
pub use super::tasks::{gsm8k_spec, metric_name, FALLBACK};
use super::tasks::{parse_template, render_record, LM_EVAL_FEWSHOT_SEED};
use crate::config::{ExactMatchSpec, FewshotSampler, FilterSpec, GenTaskSpec};
pub use crate::pyregex::python_regex;

/// One message of a prompt. As plain text it is `content + delimiter`; as
/// a chat message the delimiter is dropped (lm-eval's `Message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: &'static str,
    pub content: String,
    pub delimiter: String,
}

/// One question of a generative task, ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct GenDoc {
    /// Position in the task's records after `limit`.
    pub index: usize,
    /// Description, few-shot examples and the question, as turns.
    pub turns: Vec<Turn>,
    /// The reference answer (lm-eval's `doc_to_target`).
    pub target: String,
}

impl GenDoc {
    /// The prompt for `/v1/completions`: every turn as text.
    pub fn text(&self) -> String {
        self.turns
            .iter()
            .map(|t| format!("{}{}", t.content, t.delimiter))
            .collect()
    }

    /// The messages for `/v1/chat/completions`, as lm-eval's
    /// `apply_chat_template` gives them: the system turn, then every other
    /// turn collapsed into one user message (its text, delimiters
    /// included), or with `multiturn` the turns as they are.
    pub fn messages(&self, multiturn: bool) -> Vec<(&'static str, String)> {
        let (system, rest) = match self.turns.split_first() {
            Some((s, rest)) if s.role == "system" => (Some(s), rest),
            _ => (None, &self.turns[..]),
        };
        let mut out: Vec<(&'static str, String)> = system
            .map(|s| ("system", s.content.clone()))
            .into_iter()
            .collect();
        if multiturn {
            out.extend(rest.iter().map(|t| (t.role, t.content.clone())));
        } else {
            let mut user = String::new();
            for (i, t) in rest.iter().enumerate() {
                user.push_str(&t.content);
                if i + 1 < rest.len() {
                    user.push_str(&t.delimiter);
                }
            }
            out.push(("user", user));
        }
        out
    }
}

/// Turns records into questions: `limit` keeps the first N; `shots`
/// examples per question are drawn from `fewshot_records` as lm-eval's
/// default sampler draws them (`random.Random(1234)`, one draw per question,
/// in order), or the first N with `first_n`. The few-shot pool is a split of
/// its own, so the question itself is never excluded from it.
pub fn gen_docs(
    name: &str,
    spec: &GenTaskSpec,
    records: &[Value],
    limit: Option<usize>,
    shots: usize,
    fewshot_records: &[Value],
) -> Result<Vec<GenDoc>, String> {
    let question = parse_template(&spec.template).map_err(|e| format!("{name}: template: {e}"))?;
    let target = parse_template(&spec.target).map_err(|e| format!("{name}: target: {e}"))?;
    let render = |what: &'static str, i: usize, v: &Value| -> Result<(String, String), String> {
        Ok((
            render_record(&question, what, i, v)?,
            render_record(&target, what, i, v)?,
        ))
    };
    if shots > fewshot_records.len() {
        return Err(format!(
            "{name}: num_fewshot = {shots} but there are {} few-shot records",
            fewshot_records.len()
        ));
    }
    let pool: Vec<(String, String)> = if shots > 0 {
        fewshot_records
            .iter()
            .enumerate()
            .map(|(i, v)| render("few-shot record", i, v))
            .collect::<Result<_, _>>()?
    } else {
        Vec::new()
    };
    let mut rng = PyRandom::new(LM_EVAL_FEWSHOT_SEED);
    let take = limit.unwrap_or(records.len()).min(records.len());
    let mut docs = Vec::with_capacity(take);
    for (index, value) in records[..take].iter().enumerate() {
        let (q, target) = render("record", index, value)?;
        let mut turns = Vec::new();
        if !spec.description.is_empty() {
            turns.push(Turn {
                role: "system",
                content: spec.description.clone(),
                delimiter: String::new(),
            });
        }
        let picks = match (shots, spec.fewshot_sampler) {
            (0, _) => Vec::new(),
            (_, FewshotSampler::FirstN) => (0..shots).collect(),
            (_, FewshotSampler::Default) => lm_eval_fewshot(&mut rng, &pool, shots, None)
                .map_err(|e| format!("{name}: few-shot examples: {e}"))?,
        };
        for i in picks {
            let (eq, ea) = &pool[i];
            turns.push(Turn {
                role: "user",
                content: eq.clone(),
                delimiter: spec.target_delimiter.clone(),
            });
            turns.push(Turn {
                role: "assistant",
                content: ea.clone(),
                delimiter: spec.fewshot_delimiter.clone(),
            });
        }
        turns.push(Turn {
            role: "user",
            content: q,
            delimiter: String::new(),
        });
        docs.push(GenDoc {
            index,
            turns,
            target,
        });
    }
    Ok(docs)
}

/// A compiled answer filter: lm-eval's `regex` filter then `take_first`.
#[derive(Debug, Clone)]
pub struct Filter {
    pub name: String,
    regex: Option<fancy_regex::Regex>,
    group_select: i64,
    fallback: String,
}

impl Filter {
    /// lm-eval's filter when a task declares none: the whole output.
    pub fn none() -> Self {
        Filter {
            name: "none".into(),
            regex: None,
            group_select: 0,
            fallback: String::new(),
        }
    }

    pub fn compile(spec: &FilterSpec) -> Result<Self, String> {
        Ok(Filter {
            name: spec.name.clone(),
            regex: Some(python_regex(&spec.regex)?),
            group_select: spec.group_select,
            fallback: spec.fallback.clone(),
        })
    }

    /// The answer in `text`: like Python's `re.findall`, every match (its
    /// one group, or the tuple of its groups), the one at `group_select`
    /// (negative counts from the end); of a tuple, the first non-empty
    /// group; stripped. Nothing found gives the fallback.
    pub fn apply(&self, text: &str) -> String {
        let Some(re) = &self.regex else {
            return text.to_string();
        };
        let groups = re.captures_len() - 1;
        let matches: Vec<Vec<String>> = re
            .captures_iter(text)
            .filter_map(Result::ok)
            .map(|c| {
                if groups == 0 {
                    vec![c[0].to_string()]
                } else {
                    (1..=groups)
                        .map(|g| c.get(g).map_or(String::new(), |m| m.as_str().to_string()))
                        .collect()
                }
            })
            .collect();
        let n = matches.len() as i64;
        let at = if self.group_select < 0 {
            n + self.group_select
        } else {
            self.group_select
        };
        if matches.is_empty() {
            return self.fallback.clone();
        }
        // Python raises IndexError here; lm-eval would crash, so the
        // configuration check keeps group_select small and this falls back.
        let Some(found) = usize::try_from(at).ok().and_then(|i| matches.get(i)) else {
            return self.fallback.clone();
        };
        let picked = if groups <= 1 {
            found[0].clone()
        } else {
            match found.iter().find(|g| !g.is_empty()) {
                Some(g) => g.clone(),
                None => self.fallback.clone(),
            }
        };
        python_strip(&picked).to_string()
    }
}

/// The filters of a task, compiled (`none` when it declares none).
pub fn filters(spec: &GenTaskSpec) -> Result<Vec<Filter>, String> {
    if spec.filters.is_empty() {
        return Ok(vec![Filter::none()]);
    }
    spec.filters.iter().map(Filter::compile).collect()
}

fn python_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// `exact_match` with its options compiled.
#[derive(Debug, Clone)]
pub struct ExactMatch {
    ignore: Vec<fancy_regex::Regex>,
    ignore_case: bool,
    ignore_punctuation: bool,
}

impl ExactMatch {
    pub fn compile(spec: &ExactMatchSpec) -> Result<Self, String> {
        Ok(ExactMatch {
            ignore: spec
                .regexes_to_ignore
                .iter()
                .map(|p| python_regex(p))
                .collect::<Result<_, _>>()?,
            ignore_case: spec.ignore_case,
            ignore_punctuation: spec.ignore_punctuation,
        })
    }

    /// Both strings as lm-eval compares them: each ignored pattern removed
    /// (in order), lowercased, ASCII punctuation removed, per the options.
    pub fn normalise(&self, s: &str) -> String {
        let mut s = s.to_string();
        for re in &self.ignore {
            s = re.replace_all(&s, "").into_owned();
        }
        if self.ignore_case {
            s = s.to_lowercase();
        }
        if self.ignore_punctuation {
            s.retain(|c| !c.is_ascii_punctuation());
        }
        s
    }

    pub fn score(&self, prediction: &str, reference: &str) -> f64 {
        f64::from(u8::from(
            self.normalise(prediction) == self.normalise(reference),
        ))
    }
}

/// One generated answer, scored.
#[derive(Debug, Clone, PartialEq)]
pub struct GenOutcome {
    /// Per filter (by name): the extracted answer and its exact_match.
    pub filtered: BTreeMap<String, (String, f64)>,
}

/// Scores one generated text under every filter.
pub fn score_generation(
    filters: &[Filter],
    exact: &ExactMatch,
    generated: &str,
    target: &str,
) -> GenOutcome {
    GenOutcome {
        filtered: filters
            .iter()
            .map(|f| {
                let answer = f.apply(generated);
                let em = exact.score(&answer, target);
                (f.name.clone(), (answer, em))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn gsm8k_filters() -> (Vec<Filter>, ExactMatch) {
        let spec = gsm8k_spec();
        (
            filters(&spec).unwrap(),
            ExactMatch::compile(&spec.exact_match).unwrap(),
        )
    }

    #[test]
    fn strict_match_takes_the_first_hash_answer() {
        let (f, _) = gsm8k_filters();
        assert_eq!(f[0].apply("She has 3 + 4 = 7.\n#### 7"), "7");
        assert_eq!(f[0].apply("#### -1,250.5 then #### 9"), "-1,250.5");
        assert_eq!(f[0].apply("The answer is 7."), FALLBACK);
        assert_eq!(f[0].apply(""), FALLBACK);
    }

    #[test]
    fn flexible_extract_takes_the_last_number_from_either_group() {
        let (f, _) = gsm8k_filters();
        // Group 1 needs two characters; a lone digit falls to group 2.
        assert_eq!(f[1].apply("3 apples and 12 pears make 15."), "15.");
        assert_eq!(f[1].apply("so $1,200 in all"), "$1,200");
        assert_eq!(f[1].apply("he ate 5"), "5");
        assert_eq!(f[1].apply("-4 degrees"), "-4");
        assert_eq!(f[1].apply("no number here"), FALLBACK);
    }

    #[test]
    fn exact_match_ignores_what_gsm8k_ignores() {
        let (_, em) = gsm8k_filters();
        let target = "Each box holds 6, so 2 boxes hold 12.\n#### 1,200";
        assert_eq!(em.normalise(target), "1200");
        assert_eq!(em.score("$1,200.", target), 1.0);
        assert_eq!(em.score("1200", target), 1.0);
        assert_eq!(em.score("120", target), 0.0);
        assert_eq!(em.score(FALLBACK, target), 0.0);
        // Python's `$` also matches before a final newline.
        assert_eq!(em.normalise("5.\n"), "5\n");
    }

    #[test]
    fn options_apply_only_when_asked() {
        let plain = ExactMatch::compile(&ExactMatchSpec::default()).unwrap();
        assert_eq!(plain.score("Paris", "paris"), 0.0);
        let loose = ExactMatch::compile(&ExactMatchSpec {
            ignore_case: true,
            ignore_punctuation: true,
            regexes_to_ignore: vec![],
        })
        .unwrap();
        assert_eq!(loose.score("Paris!", "paris"), 1.0);
    }

    #[test]
    fn prompts_join_examples_as_lm_eval_does() {
        let spec = gsm8k_spec();
        let rec = |q: &str, a: &str| json!({"question": q, "answer": a});
        let records = vec![rec("Q1?", "A1\n#### 1"), rec("Q2?", "#### 2")];
        let pool = vec![rec("E1?", "#### 10"), rec("E2?", "#### 20")];
        let docs = gen_docs("gsm8k", &spec, &records, None, 0, &pool).unwrap();
        assert_eq!(docs[0].text(), "Question: Q1?\nAnswer:");
        assert_eq!(docs[0].target, "A1\n#### 1");
        let docs = gen_docs("gsm8k", &spec, &records, Some(1), 2, &pool).unwrap();
        assert_eq!(docs.len(), 1);
        let text = docs[0].text();
        // Both examples, in the order random.Random(1234).sample drew them.
        let first = text.find("Question: E").unwrap();
        assert!(text[first..].contains("\nAnswer: #### "), "{text}");
        assert!(text.ends_with("\n\nQuestion: Q1?\nAnswer:"), "{text}");
        assert_eq!(text.matches("\n\n").count(), 2);
        // As one chat message, the same text; as turns, no delimiters.
        assert_eq!(docs[0].messages(false), vec![("user", text.clone())]);
        let turns = docs[0].messages(true);
        assert_eq!(turns.len(), 5);
        assert_eq!(turns[1].0, "assistant");
        assert!(turns[1].1.starts_with("#### "));
        assert_eq!(turns[4], ("user", "Question: Q1?\nAnswer:".to_string()));
        let e = gen_docs("gsm8k", &spec, &records, None, 3, &pool).unwrap_err();
        assert!(e.contains("num_fewshot = 3"), "{e}");
    }

    #[test]
    fn a_description_is_the_system_turn() {
        let mut spec = gsm8k_spec();
        spec.description = "Solve.".into();
        let docs = gen_docs(
            "t",
            &spec,
            &[json!({"question": "Q", "answer": "A"})],
            None,
            0,
            &[],
        )
        .unwrap();
        assert_eq!(docs[0].text(), "Solve.Question: Q\nAnswer:");
        assert_eq!(
            docs[0].messages(false),
            vec![
                ("system", "Solve.".to_string()),
                ("user", "Question: Q\nAnswer:".to_string())
            ]
        );
    }
}
