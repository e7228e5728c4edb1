//! Task definitions: how dataset records become questions (lm-evaluation-harness 0.4 formats).
//!
//! Every built-in task reproduces the prompt lm-evaluation-harness 0.4 builds
//! for it, character for character: the same preprocessing, the same
//! template, the same few-shot assembly (a description, then each example as
//! question, target delimiter, answer and `"\n\n"`, then the question), and
//! the same choice strings, so that log-likelihoods and therefore scores agree.
//! Records are read with their field names as published on the Hugging Face
//! Hub. Nothing here does IO.

use std::collections::BTreeMap;
use std::fmt::Display;

use serde_json::Value;

use super::pyrandom::{lm_eval_fewshot, PyRandom};
use super::{Gold, McDoc};
use crate::config::{
    ChoiceSource, ExactMatchSpec, FewshotSampler, FilterSpec, GenTaskSpec, McTaskSpec,
    BUILTIN_TASKS,
};

/// Put between the question and every choice (lm-eval's `target_delimiter`).
pub const TARGET_DELIMITER: &str = " ";

/// lm-eval's default `fewshot_random_seed`: its few-shot sampler's seed.
pub const LM_EVAL_FEWSHOT_SEED: u64 = 1234;

/// Put after every few-shot example (lm-eval's `fewshot_delimiter`).
pub const FEWSHOT_DELIMITER: &str = "\n\n";

/// lm-eval's `max_gen_toks` when a task sets none.
pub const DEFAULT_MAX_GEN_TOKENS: u32 = 256;

/// What a regex filter yields when nothing matches (lm-eval's fallback).
pub const FALLBACK: &str = "[invalid]";

/// lm-eval's gsm8k (`gsm8k.yaml`, version 3): its prompt, stop strings,
/// the two answer filters and the `exact_match` options.
pub fn gsm8k_spec() -> GenTaskSpec {
    GenTaskSpec {
        data: None,
        template: "Question: {question}\nAnswer:".into(),
        target: "{answer}".into(),
        description: String::new(),
        target_delimiter: " ".into(),
        fewshot_delimiter: FEWSHOT_DELIMITER.into(),
        stop: vec!["Question:".into(), "</s>".into(), "<|im_end|>".into()],
        max_tokens: DEFAULT_MAX_GEN_TOKENS,
        filters: vec![
            FilterSpec {
                name: "strict-match".into(),
                regex: r"#### (\-?[0-9\.\,]+)".into(),
                group_select: 0,
                fallback: FALLBACK.into(),
            },
            FilterSpec {
                name: "flexible-extract".into(),
                regex: r"(-?[$0-9.,]{2,})|(-?[0-9]+)".into(),
                group_select: -1,
                fallback: FALLBACK.into(),
            },
        ],
        exact_match: ExactMatchSpec {
            ignore_case: true,
            ignore_punctuation: false,
            regexes_to_ignore: vec![
                ",".into(),
                r"\$".into(),
                "(?s).*#### ".into(),
                r"\.$".into(),
            ],
        },
        fewshot_sampler: FewshotSampler::Default,
    }
}

/// The metric name lm-eval reports for a filter: `exact_match,<filter>`.
pub fn metric_name(filter: &str) -> String {
    format!("exact_match,{filter}")
}

/// The fixed question-answer examples every truthfulqa question follows.
pub const TRUTHFULQA_PREAMBLE: &str = "Q: What is human life expectancy in the United States?\n\
A: Human life expectancy in the United States is 78 years.\n\n\
Q: Who was president of the United States in 1955?\n\
A: Dwight D. Eisenhower was president of the United States in 1955.\n\n\
Q: Which party did he belong to?\n\
A: He belonged to the Republican Party.\n\n\
Q: What is the square root of banana?\n\
A: I have no comment.\n\n\
Q: How does a telescope work?\n\
A: Telescopes use lenses or mirrors to focus light and make objects appear closer.\n\n\
Q: Where were the 1992 Olympics held?\n\
A: The 1992 Olympics were held in Barcelona, Spain.";

/// The mmlu categories, in the order lm-eval's `mmlu` group lists them.
pub const MMLU_CATEGORIES: [&str; 4] = ["stem", "other", "social_sciences", "humanities"];

/// Every mmlu subject and its category, grouped by category in
/// [`MMLU_CATEGORIES`] order and alphabetical within a category.
pub const MMLU_SUBJECTS: [(&str, &str); 57] = [
    ("abstract_algebra", "stem"),
    ("anatomy", "stem"),
    ("astronomy", "stem"),
    ("college_biology", "stem"),
    ("college_chemistry", "stem"),
    ("college_computer_science", "stem"),
    ("college_mathematics", "stem"),
    ("college_physics", "stem"),
    ("computer_security", "stem"),
    ("conceptual_physics", "stem"),
    ("electrical_engineering", "stem"),
    ("elementary_mathematics", "stem"),
    ("high_school_biology", "stem"),
    ("high_school_chemistry", "stem"),
    ("high_school_computer_science", "stem"),
    ("high_school_mathematics", "stem"),
    ("high_school_physics", "stem"),
    ("high_school_statistics", "stem"),
    ("machine_learning", "stem"),
    ("business_ethics", "other"),
    ("clinical_knowledge", "other"),
    ("college_medicine", "other"),
    ("global_facts", "other"),
    ("human_aging", "other"),
    ("management", "other"),
    ("marketing", "other"),
    ("medical_genetics", "other"),
    ("miscellaneous", "other"),
    ("nutrition", "other"),
    ("professional_accounting", "other"),
    ("professional_medicine", "other"),
    ("virology", "other"),
    ("econometrics", "social_sciences"),
    ("high_school_geography", "social_sciences"),
    ("high_school_government_and_politics", "social_sciences"),
    ("high_school_macroeconomics", "social_sciences"),
    ("high_school_microeconomics", "social_sciences"),
    ("high_school_psychology", "social_sciences"),
    ("human_sexuality", "social_sciences"),
    ("professional_psychology", "social_sciences"),
    ("public_relations", "social_sciences"),
    ("security_studies", "social_sciences"),
    ("sociology", "social_sciences"),
    ("us_foreign_policy", "social_sciences"),
    ("formal_logic", "humanities"),
    ("high_school_european_history", "humanities"),
    ("high_school_us_history", "humanities"),
    ("high_school_world_history", "humanities"),
    ("international_law", "humanities"),
    ("jurisprudence", "humanities"),
    ("logical_fallacies", "humanities"),
    ("moral_disputes", "humanities"),
    ("moral_scenarios", "humanities"),
    ("philosophy", "humanities"),
    ("prehistory", "humanities"),
    ("professional_law", "humanities"),
    ("world_religions", "humanities"),
];

/// The category of an mmlu subject (`stem`, `other`, `social_sciences` or
/// `humanities`), or `None` for a subject mmlu does not have.
pub fn mmlu_category(subject: &str) -> Option<&'static str> {
    MMLU_SUBJECTS
        .iter()
        .find(|(s, _)| *s == subject)
        .map(|(_, c)| *c)
}

/// The description that opens every mmlu question of a subject.
pub fn mmlu_description(subject: &str) -> String {
    format!(
        "The following are multiple choice questions (with answers) about {}.\n\n",
        subject.replace('_', " ")
    )
}

/// A task: multiple-choice (built in, or the user's in `[mc_tasks]`) or
/// generative (gsm8k, or the user's in `[gen_tasks]`).
#[derive(Debug, Clone, PartialEq)]
pub enum Task {
    Hellaswag,
    ArcEasy,
    ArcChallenge,
    TruthfulqaMc2,
    Mmlu,
    Generic { name: String, spec: McTaskSpec },
    Gsm8k,
    Generation { name: String, spec: GenTaskSpec },
}

/// Where a built-in task's records live on the Hugging Face Hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HubSource {
    /// Dataset repository, e.g. `allenai/ai2_arc`.
    pub repo: &'static str,
    /// Dataset configuration (subset), if the repository has several.
    pub config: Option<&'static str>,
    /// The split evaluated (or, from [`Task::fewshot_hub_source`], drawn from).
    pub split: &'static str,
}

impl Task {
    /// The task called `name`: a user task of that name if there is one
    /// (they win over built-in names), else a built-in task.
    pub fn resolve(
        name: &str,
        generic: &BTreeMap<String, McTaskSpec>,
        generation: &BTreeMap<String, GenTaskSpec>,
    ) -> Result<Task, String> {
        if let Some(spec) = generic.get(name) {
            return Ok(Task::Generic {
                name: name.to_string(),
                spec: spec.clone(),
            });
        }
        if let Some(spec) = generation.get(name) {
            return Ok(Task::Generation {
                name: name.to_string(),
                spec: spec.clone(),
            });
        }
        match name {
            "hellaswag" => Ok(Task::Hellaswag),
            "arc_easy" => Ok(Task::ArcEasy),
            "arc_challenge" => Ok(Task::ArcChallenge),
            "truthfulqa_mc2" => Ok(Task::TruthfulqaMc2),
            "mmlu" => Ok(Task::Mmlu),
            "gsm8k" => Ok(Task::Gsm8k),
            _ => {
                let mut msg = format!(
                    "unknown task `{name}`; known tasks: {}",
                    BUILTIN_TASKS.join(", ")
                );
                if !generic.is_empty() {
                    let names: Vec<&str> = generic.keys().map(String::as_str).collect();
                    msg.push_str(&format!("; from [mc_tasks]: {}", names.join(", ")));
                }
                if !generation.is_empty() {
                    let names: Vec<&str> = generation.keys().map(String::as_str).collect();
                    msg.push_str(&format!("; from [gen_tasks]: {}", names.join(", ")));
                }
                Err(msg)
            }
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Task::Hellaswag => "hellaswag",
            Task::ArcEasy => "arc_easy",
            Task::ArcChallenge => "arc_challenge",
            Task::TruthfulqaMc2 => "truthfulqa_mc2",
            Task::Mmlu => "mmlu",
            Task::Generic { name, .. } | Task::Generation { name, .. } => name,
            Task::Gsm8k => "gsm8k",
        }
    }

    /// Few-shot examples when a suite sets no `num_fewshot`: lm-eval's
    /// task default (5 for gsm8k, 0 elsewhere).
    pub fn default_fewshot(&self) -> u32 {
        match self {
            Task::Gsm8k => 5,
            _ => 0,
        }
    }

    /// A generative task's definition (`None` for multiple-choice tasks).
    pub fn generation(&self) -> Option<GenTaskSpec> {
        match self {
            Task::Gsm8k => Some(gsm8k_spec()),
            Task::Generation { spec, .. } => Some(spec.clone()),
            _ => None,
        }
    }

    /// The metrics reported, under lm-eval's names (truthfulqa_mc2 reports
    /// its mc2 score as `acc`, as lm-eval does).
    pub fn metrics(&self) -> &'static [&'static str] {
        match self {
            Task::Hellaswag | Task::ArcEasy | Task::ArcChallenge | Task::Generic { .. } => {
                &["acc", "acc_norm"]
            }
            Task::TruthfulqaMc2 | Task::Mmlu => &["acc"],
            // Named after their filters: see `generate::metric_name`.
            Task::Gsm8k | Task::Generation { .. } => &[],
        }
    }

    /// The metric the task is usually quoted by.
    pub fn primary_metric(&self) -> String {
        match self {
            Task::Hellaswag | Task::ArcEasy | Task::ArcChallenge => "acc_norm".into(),
            Task::TruthfulqaMc2 | Task::Mmlu | Task::Generic { .. } => "acc".into(),
            // The first filter's exact_match.
            Task::Gsm8k | Task::Generation { .. } => {
                let spec = self.generation().expect("generative");
                let first = spec.filters.first().map_or("none", |f| f.name.as_str());
                metric_name(first)
            }
        }
    }

    /// The Hub dataset and split evaluated (`None` for user tasks).
    pub fn hub_source(&self) -> Option<HubSource> {
        let (repo, config, split) = match self {
            Task::Hellaswag => ("Rowan/hellaswag", None, "validation"),
            Task::ArcEasy => ("allenai/ai2_arc", Some("ARC-Easy"), "test"),
            Task::ArcChallenge => ("allenai/ai2_arc", Some("ARC-Challenge"), "test"),
            Task::TruthfulqaMc2 => (
                "truthfulqa/truthful_qa",
                Some("multiple_choice"),
                "validation",
            ),
            Task::Mmlu => ("cais/mmlu", Some("all"), "test"),
            Task::Gsm8k => ("openai/gsm8k", Some("main"), "test"),
            Task::Generic { .. } | Task::Generation { .. } => return None,
        };
        Some(HubSource {
            repo,
            config,
            split,
        })
    }

    /// The split few-shot examples are drawn from, as lm-eval 0.4 takes
    /// them (`<task>_<split>.jsonl` here): `train` for hellaswag and ARC,
    /// `dev` for mmlu and user tasks; `None` for truthfulqa_mc2, which
    /// lm-eval always runs 0-shot.
    pub fn fewshot_split(&self) -> Option<&'static str> {
        match self {
            Task::Hellaswag | Task::ArcEasy | Task::ArcChallenge | Task::Gsm8k => Some("train"),
            Task::Mmlu | Task::Generic { .. } | Task::Generation { .. } => Some("dev"),
            Task::TruthfulqaMc2 => None,
        }
    }

    /// Where few-shot examples live on the Hub (`None` for user tasks and
    /// for truthfulqa_mc2).
    pub fn fewshot_hub_source(&self) -> Option<HubSource> {
        let split = self.fewshot_split()?;
        let hub = self.hub_source()?;
        Some(HubSource { split, ..hub })
    }

    /// Turns records into questions.
    ///
    /// `limit` keeps the first N records (for mmlu the first N of each
    /// subject). `num_fewshot` examples are prepended to every question:
    /// for mmlu the first N `dev` records of the question's subject
    /// (lm-eval's `first_n` sampler); for the other tasks drawn as lm-eval's
    /// default sampler draws them (`random.Random(1234)`, one draw per
    /// question in order) from `fewshot_records`, or the first N for a user
    /// task that asks for `first_n`; truthfulqa_mc2 stays 0-shot, as in lm-eval.
    ///
    /// mmlu questions come grouped by subject, subjects in order of first
    /// appearance, and `McDoc::index` counts from 0 within each subject (as
    /// lm-eval's per-subject `doc_id` does); for other tasks it is the
    /// record's position. Errors name the record (1-based) and the field.
    pub fn docs(
        &self,
        records: &[Value],
        limit: Option<usize>,
        num_fewshot: u32,
        fewshot_records: &[Value],
    ) -> Result<Vec<McDoc>, String> {
        let shots = num_fewshot as usize;
        match self {
            Task::Mmlu => return mmlu_docs(records, limit, shots, fewshot_records),
            Task::Generic { name, spec } => {
                return generic_docs(name, spec, records, limit, shots, fewshot_records)
            }
            _ => {}
        }
        let question = |rec: &Rec| match self {
            Task::Hellaswag => hellaswag_question(rec),
            Task::ArcEasy | Task::ArcChallenge => arc_question(rec),
            Task::TruthfulqaMc2 => truthfulqa_question(rec),
            Task::Mmlu | Task::Generic { .. } => unreachable!("handled above"),
            Task::Gsm8k | Task::Generation { .. } => Err(format!(
                "{} is generative: its questions come from `generate::gen_docs`",
                self.name()
            )),
        };
        // truthfulqa_mc2 is 0-shot whatever is asked, as in lm-eval (its
        // config fixes `num_fewshot: 0` and lm-eval ignores the option): its
        // prompt carries six question-answer examples of its own.
        let shots = if *self == Task::TruthfulqaMc2 {
            0
        } else {
            shots
        };
        let mut pool = Vec::new();
        if shots > 0 {
            if fewshot_records.len() < shots {
                return Err(format!(
                    "{}: num_fewshot = {shots} but there are {} few-shot records",
                    self.name(),
                    fewshot_records.len()
                ));
            }
            for (i, value) in fewshot_records.iter().enumerate() {
                let rec = Rec::new("few-shot record", i, value)?;
                let (text, choices, gold) = question(&rec)?;
                // The example's answer is lm-eval's `doc_to_target`: the gold choice.
                let answer = match gold {
                    Gold::Index(g) => choices[g].clone(),
                    Gold::TrueFirst(_) => unreachable!("truthfulqa_mc2 takes no examples"),
                };
                pool.push((text, answer));
            }
        }
        // lm-eval passes the evaluated document to its sampler when the
        // few-shot split equals the task's `test_split`, draws one more and
        // drops the document: hellaswag has neither (None == None), so its
        // draws take one more; ARC has a test split.
        let drops_doc = *self == Task::Hellaswag;
        let mut rng = PyRandom::new(LM_EVAL_FEWSHOT_SEED);
        let take = limit.unwrap_or(records.len()).min(records.len());
        let mut docs = Vec::with_capacity(take);
        for (index, value) in records[..take].iter().enumerate() {
            let rec = Rec::new("record", index, value)?;
            let (text, choices, gold) = question(&rec)?;
            let context = if shots == 0 {
                text
            } else {
                let picks = if drops_doc {
                    lm_eval_fewshot(&mut rng, fewshot_records, shots, Some(value))
                } else {
                    lm_eval_fewshot(&mut rng, fewshot_records, shots, None)
                }
                .map_err(|e| format!("{}: few-shot examples: {e}", self.name()))?;
                let examples: Vec<(String, String)> =
                    picks.into_iter().map(|i| pool[i].clone()).collect();
                with_examples("", &examples, TARGET_DELIMITER, &text)
            };
            docs.push(McDoc {
                index,
                context,
                choices,
                delimiter: TARGET_DELIMITER.to_string(),
                gold,
                subject: None,
            });
        }
        Ok(docs)
    }
}

/// One record being read, for error messages that name it.
struct Rec<'a> {
    what: &'static str,
    number: usize,
    value: &'a Value,
}

impl<'a> Rec<'a> {
    /// Record at 0-based `index`; it must be a JSON object.
    fn new(what: &'static str, index: usize, value: &'a Value) -> Result<Rec<'a>, String> {
        let rec = Rec {
            what,
            number: index + 1,
            value,
        };
        if !value.is_object() {
            return Err(format!("{} {}: not a JSON object", what, rec.number));
        }
        Ok(rec)
    }

    fn err(&self, field: &str, msg: impl Display) -> String {
        format!("{} {}: field `{}` {}", self.what, self.number, field, msg)
    }

    fn get(&self, path: &str) -> Result<&'a Value, String> {
        lookup(self.value, path).ok_or_else(|| self.err(path, "is missing"))
    }

    fn string(&self, path: &str) -> Result<&'a str, String> {
        self.get(path)?
            .as_str()
            .ok_or_else(|| self.err(path, "must be a string"))
    }

    fn strings(&self, path: &str) -> Result<Vec<String>, String> {
        let bad = || self.err(path, "must be a list of strings");
        let list = self.get(path)?.as_array().ok_or_else(bad)?;
        list.iter()
            .map(|v| v.as_str().map(str::to_string).ok_or_else(bad))
            .collect()
    }
}

/// The value at a dotted path: `a.b` reaches into objects, `list.0` into lists.
fn lookup<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, part| match v {
        Value::Object(map) => map.get(part),
        Value::Array(list) => part.parse::<usize>().ok().and_then(|i| list.get(i)),
        _ => None,
    })
}

/// A whole non-negative number, or a string holding one (Python's `int()`
/// on a label such as `"2"`).
fn as_index(value: &Value) -> Option<usize> {
    match value {
        Value::Number(n) => match n.as_u64() {
            Some(i) => usize::try_from(i).ok(),
            None => n
                .as_f64()
                .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9.0e15)
                .map(|f| f as usize),
        },
        Value::String(s) => s.trim().parse::<usize>().ok(),
        _ => None,
    }
}

/// Whether Python's `str.isspace` holds for `c` (Rust's whitespace plus the
/// four information separators U+001C..U+001F).
fn py_isspace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.strip()` with no arguments.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(py_isspace)
}

/// Python's titlecase of one character (where it differs from uppercase).
fn py_title_char(c: char, out: &mut String) {
    let cp = c as u32;
    let single = match cp {
        0x01C4..=0x01C6 => Some('\u{01C5}'),
        0x01C7..=0x01C9 => Some('\u{01C8}'),
        0x01CA..=0x01CC => Some('\u{01CB}'),
        0x01F1..=0x01F3 => Some('\u{01F2}'),
        // Georgian Mkhedruli letters are their own titlecase.
        0x10D0..=0x10FA | 0x10FD..=0x10FF => Some(c),
        // Greek with ypogegrammeni: titlecase is the prosgegrammeni form.
        0x1F80..=0x1FAF => char::from_u32(cp | 0x8),
        0x1FB3 | 0x1FBC => Some('\u{1FBC}'),
        0x1FC3 | 0x1FCC => Some('\u{1FCC}'),
        0x1FF3 | 0x1FFC => Some('\u{1FFC}'),
        _ => None,
    };
    if let Some(t) = single {
        out.push(t);
        return;
    }
    let upper: Vec<char> = c.to_uppercase().collect();
    match cp {
        // Uppercase ends in capital iota; titlecase keeps the combining ypogegrammeni.
        0x1FB2 | 0x1FB4 | 0x1FB7 | 0x1FC2 | 0x1FC4 | 0x1FC7 | 0x1FF2 | 0x1FF4 | 0x1FF7 => {
            out.extend(&upper[..upper.len() - 1]);
            out.push('\u{0345}');
        }
        // ß, the Latin and Armenian ligatures: first letter capital, the rest small.
        0x00DF | 0x0587 | 0xFB00..=0xFB06 | 0xFB13..=0xFB17 => {
            out.push(upper[0]);
            for u in &upper[1..] {
                out.extend(u.to_lowercase());
            }
        }
        _ => out.extend(upper),
    }
}

/// Python's `str.capitalize()`: the first character in titlecase, every
/// other character lowercased (with the final-sigma rule applied in the
/// context of the whole string).
pub fn py_capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out = String::with_capacity(s.len());
    py_title_char(first, &mut out);
    let skip = first.to_lowercase().count();
    out.extend(s.to_lowercase().chars().skip(skip));
    out
}

/// Removes every `[...]` span the way Python's `re.sub(r"\[.*?\]", "", text)`
/// does: from a `[` to the nearest `]`, never across a newline.
fn remove_bracketed(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find('[') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        match after.find([']', '\n']) {
            Some(end) if after.as_bytes()[end] == b']' => rest = &after[end + 1..],
            _ => {
                out.push('[');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// hellaswag's text cleanup (lm-eval `tasks/hellaswag/utils.py::preprocess`).
pub fn hellaswag_preprocess(text: &str) -> String {
    let text = py_strip(text).replace(" [title]", ". ");
    remove_bracketed(&text).replace("  ", " ")
}

type Question = (String, Vec<String>, Gold);

fn hellaswag_question(rec: &Rec) -> Result<Question, String> {
    let activity = rec.string("activity_label")?;
    let ctx_a = rec.string("ctx_a")?;
    let ctx_b = rec.string("ctx_b")?;
    let endings = rec.strings("endings")?;
    let label = as_index(rec.get("label")?)
        .ok_or_else(|| rec.err("label", "must be an integer or a string holding one"))?;
    if label >= endings.len() {
        return Err(rec.err(
            "label",
            format!("is {label} but there are {} endings", endings.len()),
        ));
    }
    let ctx = format!("{ctx_a} {}", py_capitalize(ctx_b));
    let query = hellaswag_preprocess(&format!("{activity}: {ctx}"));
    let choices = endings.iter().map(|e| hellaswag_preprocess(e)).collect();
    Ok((query, choices, Gold::Index(label)))
}

fn arc_question(rec: &Rec) -> Result<Question, String> {
    let question = rec.string("question")?;
    let texts = rec.strings("choices.text")?;
    let labels = rec.strings("choices.label")?;
    let key = rec.string("answerKey")?;
    let gold = labels.iter().position(|l| l == key).ok_or_else(|| {
        rec.err(
            "answerKey",
            format!("is `{key}`, not one of the labels {labels:?}"),
        )
    })?;
    if gold >= texts.len() {
        return Err(rec.err(
            "choices.text",
            format!(
                "has {} entries but answerKey `{key}` is label {}",
                texts.len(),
                gold + 1
            ),
        ));
    }
    Ok((
        format!("Question: {question}\nAnswer:"),
        texts,
        Gold::Index(gold),
    ))
}

fn truthfulqa_question(rec: &Rec) -> Result<Question, String> {
    let question = rec.string("question")?;
    let choices = rec.strings("mc2_targets.choices")?;
    let field = "mc2_targets.labels";
    let bad = || rec.err(field, "must be a list of 0s and 1s");
    let labels = rec.get(field)?.as_array().ok_or_else(bad)?;
    let labels: Vec<usize> = labels
        .iter()
        .map(|v| match v {
            Value::Number(_) => as_index(v).filter(|l| *l <= 1).ok_or_else(bad),
            _ => Err(bad()),
        })
        .collect::<Result<_, _>>()?;
    if labels.len() != choices.len() {
        return Err(rec.err(
            field,
            format!(
                "has {} entries but mc2_targets.choices has {}",
                labels.len(),
                choices.len()
            ),
        ));
    }
    let n_true = labels.iter().take_while(|l| **l == 1).count();
    if labels[n_true..].iter().any(|l| *l != 0) {
        return Err(rec.err(
            field,
            "must list the true answers (1s) before the false ones (0s)",
        ));
    }
    let context = format!("{TRUTHFULQA_PREAMBLE}\n\nQ: {question}\nA:");
    Ok((context, choices, Gold::TrueFirst(n_true)))
}

/// One mmlu record: its subject, question text (without description) and answer.
struct MmluItem {
    subject: String,
    text: String,
    gold: usize,
}

const LETTERS: [&str; 4] = ["A", "B", "C", "D"];

fn mmlu_subject(rec: &Rec) -> Result<String, String> {
    let subject = rec.string("subject")?;
    if mmlu_category(subject).is_none() {
        return Err(rec.err("subject", format!("is `{subject}`, not an mmlu subject")));
    }
    Ok(subject.to_string())
}

fn mmlu_item(rec: &Rec) -> Result<MmluItem, String> {
    let subject = mmlu_subject(rec)?;
    let question = rec.string("question")?;
    let choices = rec.strings("choices")?;
    if choices.len() != 4 {
        return Err(rec.err(
            "choices",
            format!("must hold 4 choices, not {}", choices.len()),
        ));
    }
    let answer = rec.get("answer")?;
    let gold = match answer {
        Value::String(s) if LETTERS.contains(&s.as_str()) => LETTERS.iter().position(|l| l == s),
        _ => as_index(answer),
    }
    .filter(|g| *g < 4)
    .ok_or_else(|| rec.err("answer", "must be 0-3 or a letter A-D"))?;
    // lm-eval's template calls Python's `str.strip()`, mirrored by `py_strip`.
    let text = format!(
        "{}\nA. {}\nB. {}\nC. {}\nD. {}\nAnswer:",
        py_strip(question),
        choices[0],
        choices[1],
        choices[2],
        choices[3]
    );
    Ok(MmluItem {
        subject,
        text,
        gold,
    })
}

/// Few-shot examples followed by the question: each example is its question,
/// the target delimiter, its answer and the few-shot delimiter.
fn with_examples(
    description: &str,
    examples: &[(String, String)],
    delimiter: &str,
    question: &str,
) -> String {
    let mut out = description.to_string();
    for (q, a) in examples {
        out.push_str(q);
        out.push_str(delimiter);
        out.push_str(a);
        out.push_str(FEWSHOT_DELIMITER);
    }
    out.push_str(question);
    out
}

fn mmlu_docs(
    records: &[Value],
    limit: Option<usize>,
    shots: usize,
    fewshot_records: &[Value],
) -> Result<Vec<McDoc>, String> {
    // Questions per subject, subjects in order of first appearance.
    let mut order: Vec<String> = Vec::new();
    let mut by_subject: BTreeMap<String, Vec<MmluItem>> = BTreeMap::new();
    for (i, value) in records.iter().enumerate() {
        let rec = Rec::new("record", i, value)?;
        let subject = mmlu_subject(&rec)?;
        let items = match by_subject.get_mut(&subject) {
            Some(items) => items,
            None => {
                order.push(subject.clone());
                by_subject.entry(subject).or_default()
            }
        };
        if limit.is_some_and(|n| items.len() >= n) {
            continue;
        }
        items.push(mmlu_item(&rec)?);
    }

    // The first `shots` dev examples of each subject.
    let mut examples: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    if shots > 0 {
        for (i, value) in fewshot_records.iter().enumerate() {
            let rec = Rec::new("few-shot record", i, value)?;
            let subject = mmlu_subject(&rec)?;
            let list = examples.entry(subject).or_default();
            if list.len() < shots {
                let item = mmlu_item(&rec)?;
                list.push((item.text, LETTERS[item.gold].to_string()));
            }
        }
        for subject in &order {
            let have = examples.get(subject).map_or(0, Vec::len);
            if have < shots {
                return Err(format!(
                    "mmlu: num_fewshot = {shots} but subject `{subject}` has {have} few-shot records"
                ));
            }
        }
    }

    let mut docs = Vec::new();
    for subject in &order {
        let description = mmlu_description(subject);
        let shots_for = examples.get(subject).map_or(&[][..], Vec::as_slice);
        for (index, item) in by_subject[subject].iter().enumerate() {
            docs.push(McDoc {
                index,
                context: with_examples(&description, shots_for, TARGET_DELIMITER, &item.text),
                choices: LETTERS.iter().map(|l| l.to_string()).collect(),
                delimiter: TARGET_DELIMITER.to_string(),
                gold: Gold::Index(item.gold),
                subject: Some(item.subject.clone()),
            });
        }
    }
    Ok(docs)
}

/// A piece of a user template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Text(String),
    /// A `{path}` placeholder.
    Field(String),
}

/// Splits a template into text and `{field}` placeholders; `{{` and `}}`
/// are literal braces.
pub fn parse_template(template: &str) -> Result<Vec<Segment>, String> {
    let mut segments = Vec::new();
    let mut text = String::new();
    let mut chars = template.char_indices().peekable();
    while let Some((at, c)) = chars.next() {
        match c {
            '{' if chars.peek().map(|(_, n)| *n) == Some('{') => {
                chars.next();
                text.push('{');
            }
            '}' if chars.peek().map(|(_, n)| *n) == Some('}') => {
                chars.next();
                text.push('}');
            }
            '{' => {
                let mut field = String::new();
                loop {
                    match chars.next() {
                        Some((_, '}')) => break,
                        Some((_, '{')) | None => {
                            return Err(format!(
                                "template: `{{` at byte {at} is not closed (write `{{{{` for a literal brace)"
                            ))
                        }
                        Some((_, ch)) => field.push(ch),
                    }
                }
                if field.is_empty() {
                    return Err(format!("template: empty placeholder `{{}}` at byte {at}"));
                }
                if !text.is_empty() {
                    segments.push(Segment::Text(std::mem::take(&mut text)));
                }
                segments.push(Segment::Field(field));
            }
            '}' => {
                return Err(format!(
                    "template: `}}` at byte {at} closes nothing (write `}}}}` for a literal brace)"
                ))
            }
            _ => text.push(c),
        }
    }
    if !text.is_empty() {
        segments.push(Segment::Text(text));
    }
    Ok(segments)
}

/// `segments` rendered with the fields of record `index` (0-based; `what`
/// names it in errors, e.g. "record 3: field `q` is missing").
pub fn render_record(
    segments: &[Segment],
    what: &'static str,
    index: usize,
    value: &Value,
) -> Result<String, String> {
    render(segments, &Rec::new(what, index, value)?)
}

fn render(segments: &[Segment], rec: &Rec) -> Result<String, String> {
    let mut out = String::new();
    for segment in segments {
        match segment {
            Segment::Text(t) => out.push_str(t),
            Segment::Field(path) => match rec.get(path)? {
                Value::String(s) => out.push_str(s),
                v @ (Value::Number(_) | Value::Bool(_)) => out.push_str(&v.to_string()),
                _ => {
                    return Err(rec.err(
                        path,
                        "must be a string, number or boolean to go into the template",
                    ))
                }
            },
        }
    }
    Ok(out)
}

/// A user task's question text, choices and right choice for one record.
fn generic_question(
    segments: &[Segment],
    spec: &McTaskSpec,
    rec: &Rec,
) -> Result<(String, Vec<String>, usize), String> {
    let text = render(segments, rec)?;
    let choices = match &spec.choices {
        ChoiceSource::Field(field) => rec.strings(field)?,
        ChoiceSource::Fixed(list) => list.clone(),
    };
    let field = spec.answer.as_str();
    let answer = rec.get(field)?;
    let n = choices.len();
    let gold = match answer {
        Value::Number(_) => as_index(answer)
            .filter(|g| *g < n)
            .ok_or_else(|| rec.err(field, format!("must be a choice index below {n}")))?,
        Value::String(s) => {
            let letter = match s.as_bytes() {
                [b @ b'A'..=b'Z'] => Some((b - b'A') as usize),
                _ => None,
            };
            choices
                .iter()
                .position(|c| c == s)
                .or(letter.filter(|l| *l < n))
                .or_else(|| as_index(answer).filter(|g| *g < n))
                .ok_or_else(|| {
                    rec.err(
                        field,
                        format!("is `{s}`: neither one of the choices, a letter, nor an index below {n}"),
                    )
                })?
        }
        _ => return Err(rec.err(field, "must be a choice index or a choice's text")),
    };
    Ok((text, choices, gold))
}

fn generic_docs(
    name: &str,
    spec: &McTaskSpec,
    records: &[Value],
    limit: Option<usize>,
    shots: usize,
    fewshot_records: &[Value],
) -> Result<Vec<McDoc>, String> {
    let segments = parse_template(&spec.template).map_err(|e| format!("{name}: {e}"))?;
    if fewshot_records.len() < shots {
        return Err(format!(
            "{name}: num_fewshot = {shots} but there are {} few-shot records",
            fewshot_records.len()
        ));
    }
    // The whole pool is read when examples are drawn from it at random.
    let pool_size = match spec.fewshot_sampler {
        _ if shots == 0 => 0,
        FewshotSampler::FirstN => shots,
        FewshotSampler::Default => fewshot_records.len(),
    };
    let mut pool = Vec::with_capacity(pool_size);
    for (i, value) in fewshot_records[..pool_size].iter().enumerate() {
        let rec = Rec::new("few-shot record", i, value)?;
        let (text, choices, gold) = generic_question(&segments, spec, &rec)?;
        pool.push((text, choices[gold].clone()));
    }
    // lm-eval seeds the task's sampler with 1234 (its default
    // `fewshot_random_seed`) and draws once per evaluated record, in order;
    // the pool is another split than the one evaluated, so nothing is dropped.
    let mut rng = PyRandom::new(LM_EVAL_FEWSHOT_SEED);
    let take = limit.unwrap_or(records.len()).min(records.len());
    let mut docs = Vec::with_capacity(take);
    for (index, value) in records[..take].iter().enumerate() {
        let rec = Rec::new("record", index, value)?;
        let (text, choices, gold) = generic_question(&segments, spec, &rec)?;
        let examples: Vec<(String, String)> = match spec.fewshot_sampler {
            FewshotSampler::FirstN => pool.clone(),
            FewshotSampler::Default => lm_eval_fewshot(&mut rng, &pool, shots, None)
                .map_err(|e| format!("{name}: few-shot examples: {e}"))?
                .into_iter()
                .map(|i| pool[i].clone())
                .collect(),
        };
        docs.push(McDoc {
            index,
            context: with_examples(&spec.description, &examples, &spec.delimiter, &text),
            choices,
            delimiter: spec.delimiter.clone(),
            gold: Gold::Index(gold),
            subject: None,
        });
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn one(task: &Task, record: Value) -> McDoc {
        let mut docs = task.docs(&[record], None, 0, &[]).unwrap();
        assert_eq!(docs.len(), 1);
        docs.pop().unwrap()
    }

    #[test]
    fn resolve_prefers_user_tasks_and_lists_known_ones() {
        let spec = McTaskSpec {
            data: None,
            template: "{q}".into(),
            choices: ChoiceSource::Fixed(vec!["a".into(), "b".into()]),
            answer: "a".into(),
            delimiter: " ".into(),
            description: String::new(),
            fewshot_sampler: FewshotSampler::Default,
        };
        let mut generic = BTreeMap::new();
        let mut generation = BTreeMap::new();
        assert_eq!(
            Task::resolve("mmlu", &generic, &generation).unwrap(),
            Task::Mmlu
        );
        let gsm8k = Task::resolve("gsm8k", &generic, &generation).unwrap();
        assert_eq!(gsm8k, Task::Gsm8k);
        assert_eq!(gsm8k.primary_metric(), "exact_match,strict-match");
        assert_eq!(gsm8k.default_fewshot(), 5);
        assert_eq!(gsm8k.fewshot_hub_source().unwrap().split, "train");
        generic.insert("hellaswag".to_string(), spec);
        let mut own = gsm8k_spec();
        own.filters.clear();
        generation.insert("sums".to_string(), own);
        let sums = Task::resolve("sums", &generic, &generation).unwrap();
        assert_eq!(sums.primary_metric(), "exact_match,none");
        assert_eq!(sums.default_fewshot(), 0);
        let task = Task::resolve("hellaswag", &generic, &generation).unwrap();
        assert!(matches!(task, Task::Generic { ref name, .. } if name == "hellaswag"));
        assert_eq!(task.metrics(), ["acc", "acc_norm"]);
        assert_eq!(task.primary_metric(), "acc");
        assert_eq!(task.hub_source(), None);
        let err = Task::resolve("hellaswagg", &generic, &generation).unwrap_err();
        assert!(err.contains("`hellaswagg`"), "{err}");
        assert!(err.contains("[gen_tasks]: sums"), "{err}");
        for known in BUILTIN_TASKS {
            assert!(err.contains(known), "{err}");
        }
    }

    #[test]
    fn task_properties() {
        assert_eq!(Task::Hellaswag.primary_metric(), "acc_norm");
        assert_eq!(Task::ArcChallenge.primary_metric(), "acc_norm");
        assert_eq!(Task::TruthfulqaMc2.metrics(), ["acc"]);
        assert_eq!(Task::Mmlu.metrics(), ["acc"]);
        assert_eq!(
            Task::TruthfulqaMc2.hub_source(),
            Some(HubSource {
                repo: "truthfulqa/truthful_qa",
                config: Some("multiple_choice"),
                split: "validation"
            })
        );
        assert_eq!(Task::ArcEasy.hub_source().unwrap().config, Some("ARC-Easy"));
        assert_eq!(Task::Mmlu.fewshot_hub_source().unwrap().split, "dev");
        assert_eq!(Task::Hellaswag.fewshot_hub_source().unwrap().split, "train");
        assert_eq!(Task::TruthfulqaMc2.fewshot_hub_source(), None);
        assert_eq!(MMLU_SUBJECTS.len(), 57);
        for cat in MMLU_CATEGORIES {
            assert!(MMLU_SUBJECTS.iter().any(|(_, c)| *c == cat));
        }
        assert_eq!(mmlu_category("moral_scenarios"), Some("humanities"));
        assert_eq!(mmlu_category("nope"), None);
    }

    #[test]
    fn python_string_helpers() {
        assert_eq!(py_capitalize("hELLO World"), "Hello world");
        assert_eq!(py_capitalize("ßig"), "Ssig");
        assert_eq!(py_capitalize("ǆx"), "ǅx");
        assert_eq!(py_capitalize("ΑΣ"), "Ας");
        assert_eq!(py_capitalize(""), "");
        assert_eq!(py_strip("\u{1c} a b\u{a0}\n"), "a b");
    }

    #[test]
    fn hellaswag_preprocess_like_lm_eval() {
        // strip, then " [title]" → ". ", then [..] spans, then one pass of "  " → " ".
        assert_eq!(
            hellaswag_preprocess(" [step] Use  a wire brush. "),
            " Use a wire brush."
        );
        assert_eq!(
            hellaswag_preprocess("Rinse it [substeps] off."),
            "Rinse it off."
        );
        assert_eq!(hellaswag_preprocess("a   b"), "a  b");
        assert_eq!(hellaswag_preprocess("Done [x"), "Done [x");
        // `.` does not match a newline; the next `[` still can.
        assert_eq!(hellaswag_preprocess("a [b\nc [d] e"), "a [b\nc e");
        // Non-greedy from the first `[`.
        assert_eq!(hellaswag_preprocess("x [a[b] c] y"), "x c] y");
    }

    #[test]
    fn hellaswag_record() {
        let doc = one(
            &Task::Hellaswag,
            json!({
                "activity_label": "Home and Garden",
                "ctx_a": "[header] How to clean a grill [title] Heat the grill.",
                "ctx_b": "SCRAPE the GRATES  with a brush.",
                "endings": [" [step] Use  a wire brush. ", "Rinse it [substeps] off.", "Wait.", "Done [x"],
                "label": "2",
            }),
        );
        assert_eq!(
            doc.context,
            "Home and Garden: How to clean a grill. Heat the grill. Scrape the grates with a brush."
        );
        assert_eq!(
            doc.choices,
            [" Use a wire brush.", "Rinse it off.", "Wait.", "Done [x"]
        );
        assert_eq!(doc.gold, Gold::Index(2));
        assert_eq!(doc.delimiter, " ");
        assert_eq!(doc.continuation(2), " Wait.");

        let numeric = json!({
            "activity_label": "A", "ctx_a": "b", "ctx_b": "", "endings": ["x", "y"], "label": 1,
        });
        let doc = one(&Task::Hellaswag, numeric);
        // ctx_b empty: "A: b " stripped to "A: b".
        assert_eq!(doc.context, "A: b");
        assert_eq!(doc.gold, Gold::Index(1));
    }

    #[test]
    fn errors_name_record_and_field() {
        let good = json!({
            "activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["x"], "label": "0",
        });
        let bad = json!({
            "activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": "x", "label": "0",
        });
        let err = Task::Hellaswag
            .docs(&[good.clone(), bad], None, 0, &[])
            .unwrap_err();
        assert_eq!(err, "record 2: field `endings` must be a list of strings");
        let out_of_range = json!({
            "activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["x"], "label": "3",
        });
        let err = Task::Hellaswag
            .docs(&[out_of_range], None, 0, &[])
            .unwrap_err();
        assert!(err.starts_with("record 1: field `label`"), "{err}");
        let err = Task::Hellaswag
            .docs(&[json!([1])], None, 0, &[])
            .unwrap_err();
        assert_eq!(err, "record 1: not a JSON object");
        let err = Task::Hellaswag
            .docs(
                std::slice::from_ref(&good),
                None,
                1,
                std::slice::from_ref(&good),
            )
            .unwrap_err();
        assert!(err.contains("few-shot"), "{err}");
        // A limit skips later records entirely.
        let docs = Task::Hellaswag
            .docs(&[json!({"activity_label": "A", "ctx_a": "b", "ctx_b": "c", "endings": ["x"], "label": 0}), json!(1)], Some(1), 0, &[])
            .unwrap();
        assert_eq!(docs.len(), 1);
    }

    #[test]
    fn arc_records() {
        let doc = one(
            &Task::ArcChallenge,
            json!({
                "id": "x",
                "question": "Which is a gas?",
                "choices": {"text": ["ice", "steam", "rock"], "label": ["A", "B", "C"]},
                "answerKey": "C",
            }),
        );
        assert_eq!(doc.context, "Question: Which is a gas?\nAnswer:");
        assert_eq!(doc.choices, ["ice", "steam", "rock"]);
        assert_eq!(doc.gold, Gold::Index(2));

        let doc = one(
            &Task::ArcEasy,
            json!({
                "question": "Pick three.",
                "choices": {"text": ["one", "two", "three", "four"], "label": ["1", "2", "3", "4"]},
                "answerKey": "3",
            }),
        );
        assert_eq!(doc.gold, Gold::Index(2));

        let err = Task::ArcEasy
            .docs(
                &[json!({"question": "q", "choices": {"text": ["a"], "label": ["A"]}, "answerKey": "E"})],
                None,
                0,
                &[],
            )
            .unwrap_err();
        assert!(err.starts_with("record 1: field `answerKey`"), "{err}");
    }

    #[test]
    fn truthfulqa_records() {
        let doc = one(
            &Task::TruthfulqaMc2,
            json!({
                "question": "Why?",
                "mc1_targets": {"choices": ["a"], "labels": [1]},
                "mc2_targets": {"choices": ["t1", "t2", "f1"], "labels": [1, 1, 0]},
            }),
        );
        assert!(doc
            .context
            .starts_with("Q: What is human life expectancy in the United States?\nA: Human life"));
        assert!(doc
            .context
            .ends_with("A: The 1992 Olympics were held in Barcelona, Spain.\n\nQ: Why?\nA:"));
        assert_eq!(doc.context, format!("{TRUTHFULQA_PREAMBLE}\n\nQ: Why?\nA:"));
        assert_eq!(doc.choices, ["t1", "t2", "f1"]);
        assert_eq!(doc.gold, Gold::TrueFirst(2));

        let mixed = json!({
            "question": "Why?",
            "mc2_targets": {"choices": ["a", "b", "c"], "labels": [1, 0, 1]},
        });
        let err = Task::TruthfulqaMc2
            .docs(&[mixed], None, 0, &[])
            .unwrap_err();
        assert!(
            err.starts_with("record 1: field `mc2_targets.labels`"),
            "{err}"
        );
    }

    fn mmlu_rec(subject: &str, question: &str, answer: Value) -> Value {
        json!({"question": question, "subject": subject, "choices": ["3", "4", "5", "6"], "answer": answer})
    }

    #[test]
    fn mmlu_context() {
        let doc = one(
            &Task::Mmlu,
            mmlu_rec("abstract_algebra", "  What is 2+2? \n", json!(1)),
        );
        assert_eq!(
            doc.context,
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n\
             What is 2+2?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
        );
        assert_eq!(doc.choices, ["A", "B", "C", "D"]);
        assert_eq!(doc.gold, Gold::Index(1));
        assert_eq!(doc.subject.as_deref(), Some("abstract_algebra"));
        let doc = one(&Task::Mmlu, mmlu_rec("anatomy", "q", json!("D")));
        assert_eq!(doc.gold, Gold::Index(3));
        let err = Task::Mmlu
            .docs(&[mmlu_rec("cooking", "q", json!(0))], None, 0, &[])
            .unwrap_err();
        assert!(err.starts_with("record 1: field `subject`"), "{err}");
        let err = Task::Mmlu
            .docs(&[mmlu_rec("anatomy", "q", json!(4))], None, 0, &[])
            .unwrap_err();
        assert!(err.starts_with("record 1: field `answer`"), "{err}");
    }

    #[test]
    fn mmlu_limit_is_per_subject() {
        let records = [
            mmlu_rec("abstract_algebra", "a1", json!(0)),
            mmlu_rec("abstract_algebra", "a2", json!(0)),
            mmlu_rec("abstract_algebra", "a3", json!(0)),
            mmlu_rec("anatomy", "n1", json!(0)),
            mmlu_rec("abstract_algebra", "a4", json!(0)),
            mmlu_rec("anatomy", "n2", json!(0)),
            mmlu_rec("anatomy", "n3", json!(0)),
        ];
        let docs = Task::Mmlu.docs(&records, Some(2), 0, &[]).unwrap();
        let got: Vec<(usize, &str, bool)> = docs
            .iter()
            .map(|d| {
                (
                    d.index,
                    d.subject.as_deref().unwrap(),
                    d.context.contains("about anatomy"),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (0, "abstract_algebra", false),
                (1, "abstract_algebra", false),
                (0, "anatomy", true),
                (1, "anatomy", true),
            ]
        );
        assert!(docs[1]
            .context
            .ends_with("a2\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"));
        assert!(docs[3]
            .context
            .ends_with("n2\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"));
        assert_eq!(Task::Mmlu.docs(&records, None, 0, &[]).unwrap().len(), 7);
    }

    #[test]
    fn mmlu_one_shot() {
        let dev = [
            mmlu_rec("anatomy", "Anatomy dev?", json!(0)),
            mmlu_rec("abstract_algebra", " Dev one? ", json!(2)),
            mmlu_rec("abstract_algebra", "Dev two?", json!(1)),
        ];
        let test = [mmlu_rec("abstract_algebra", "Test?", json!(3))];
        let docs = Task::Mmlu.docs(&test, None, 1, &dev).unwrap();
        assert_eq!(
            docs[0].context,
            "The following are multiple choice questions (with answers) about abstract algebra.\n\n\
             Dev one?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: C\n\n\
             Test?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer:"
        );
        let two = Task::Mmlu.docs(&test, None, 2, &dev).unwrap();
        assert!(two[0]
            .context
            .contains("Answer: C\n\nDev two?\nA. 3\nB. 4\nC. 5\nD. 6\nAnswer: B\n\nTest?"));
        let err = Task::Mmlu.docs(&test, None, 3, &dev).unwrap_err();
        assert!(
            err.contains("`abstract_algebra` has 2 few-shot records"),
            "{err}"
        );
    }

    fn spec(template: &str, choices: ChoiceSource, answer: &str) -> McTaskSpec {
        McTaskSpec {
            data: None,
            template: template.into(),
            choices,
            answer: answer.into(),
            delimiter: " ".into(),
            description: String::new(),
            fewshot_sampler: FewshotSampler::Default,
        }
    }

    #[test]
    fn generic_template_and_answers() {
        let mut s = spec(
            "Q: {q.text} ({meta.tags.1}, n={meta.n}, ok={ok}) {{lit}}\nA:",
            ChoiceSource::Field("opts".into()),
            "ans",
        );
        s.description = "Colours.\n\n".into();
        let task = Task::Generic {
            name: "colours".into(),
            spec: s.clone(),
        };
        let rec = |ans: Value| {
            json!({
                "q": {"text": "Sky?"},
                "meta": {"tags": ["x", "y"], "n": 3},
                "ok": true,
                "opts": ["red", "blue", "green"],
                "ans": ans,
            })
        };
        let doc = one(&task, rec(json!("blue")));
        assert_eq!(
            doc.context,
            "Colours.\n\nQ: Sky? (y, n=3, ok=true) {lit}\nA:"
        );
        assert_eq!(doc.choices, ["red", "blue", "green"]);
        assert_eq!(doc.gold, Gold::Index(1));
        assert_eq!(one(&task, rec(json!(2))).gold, Gold::Index(2));
        assert_eq!(one(&task, rec(json!("A"))).gold, Gold::Index(0));
        assert_eq!(one(&task, rec(json!("2"))).gold, Gold::Index(2));
        let err = task.docs(&[rec(json!("D"))], None, 0, &[]).unwrap_err();
        assert!(err.starts_with("record 1: field `ans`"), "{err}");
        let err = task.docs(&[rec(json!(3))], None, 0, &[]).unwrap_err();
        assert!(err.starts_with("record 1: field `ans`"), "{err}");

        // An unknown placeholder is named.
        let bad = Task::Generic {
            name: "t".into(),
            spec: spec("{nope.x}", ChoiceSource::Field("opts".into()), "ans"),
        };
        let err = bad.docs(&[rec(json!(0))], None, 0, &[]).unwrap_err();
        assert_eq!(err, "record 1: field `nope.x` is missing");

        // Fixed choices, a delimiter of its own and one example.
        let mut fixed = spec(
            "{q.text}",
            ChoiceSource::Fixed(vec!["yes".into(), "no".into()]),
            "ans",
        );
        fixed.delimiter = "\n".into();
        fixed.description = "D: ".into();
        let task = Task::Generic {
            name: "yn".into(),
            spec: fixed,
        };
        let shot = json!({"q": {"text": "Shot?"}, "ans": "no"});
        let docs = task.docs(&[rec(json!(0))], None, 1, &[shot]).unwrap();
        assert_eq!(docs[0].context, "D: Shot?\nno\n\nSky?");
        assert_eq!(docs[0].delimiter, "\n");
        assert_eq!(docs[0].continuation(0), "\nyes");
        let err = task.docs(&[rec(json!(0))], None, 2, &[]).unwrap_err();
        assert!(err.contains("num_fewshot = 2"), "{err}");
    }

    #[test]
    fn template_syntax() {
        assert_eq!(
            parse_template("a{{b}}{c}").unwrap(),
            [Segment::Text("a{b}".into()), Segment::Field("c".into())]
        );
        assert!(parse_template("a {b").is_err());
        assert!(parse_template("a } b").is_err());
        assert!(parse_template("{}").is_err());
        let task = Task::Generic {
            name: "t".into(),
            spec: spec("{x", ChoiceSource::Fixed(vec!["a".into()]), "y"),
        };
        assert!(task
            .docs(&[], None, 0, &[])
            .unwrap_err()
            .starts_with("t: template"));
    }

    /// lm-eval's default sampler: `random.Random(1234)`, one `sample(pool, 2)`
    /// per record in order; Python gives [[3, 0], [0, 4], [4, 0]] for a pool
    /// of 5. `first_n` gives the first two every time.
    #[test]
    fn generic_fewshot_examples_are_drawn_as_lm_eval_draws_them() {
        let mut s = spec(
            "{q}",
            ChoiceSource::Fixed(vec!["x".into(), "y".into()]),
            "a",
        );
        let rec = |q: &str| serde_json::json!({"q": q, "a": 0});
        let pool: Vec<Value> = (0..5).map(|i| rec(&format!("shot{i}"))).collect();
        let records: Vec<Value> = (0..3).map(|i| rec(&format!("question{i}"))).collect();
        let task = Task::Generic {
            name: "t".into(),
            spec: s.clone(),
        };
        let docs = task.docs(&records, None, 2, &pool).unwrap();
        let shots = |d: &McDoc| -> Vec<String> {
            d.context
                .split(FEWSHOT_DELIMITER)
                .filter(|p| p.starts_with("shot"))
                .map(|p| p.trim_end_matches(" x").to_string())
                .collect()
        };
        let want = [[3, 0], [0, 4], [4, 0]];
        for (d, w) in docs.iter().zip(want) {
            assert_eq!(shots(d), [format!("shot{}", w[0]), format!("shot{}", w[1])]);
            assert!(d.context.ends_with(&format!("question{}", d.index)));
        }
        s.fewshot_sampler = FewshotSampler::FirstN;
        let task = Task::Generic {
            name: "t".into(),
            spec: s,
        };
        for d in task.docs(&records, None, 2, &pool).unwrap() {
            assert_eq!(shots(&d), ["shot0", "shot1"]);
        }
        let err = task.docs(&records, None, 6, &pool).unwrap_err();
        assert!(err.contains("num_fewshot = 6 but there are 5"), "{err}");
    }

    /// hellaswag draws one example more than asked and drops the question
    /// itself (lm-eval: no test split, no few-shot split); ARC draws as
    /// asked. Python's `random.Random(1234)` over a pool of 8, 2 shots:
    /// hellaswag `sample(range(8), 3)[:2]` → [7, 0], [1, 6], [0, 5]; ARC
    /// `sample(range(8), 2)` → [7, 0], [0, 7], [0, 5]. truthfulqa_mc2 stays 0-shot.
    #[test]
    fn builtin_fewshot_examples_follow_lm_evals_draws() {
        let hs = |i: usize| {
            json!({"activity_label": format!("act{i}"), "ctx_a": "a", "ctx_b": "b",
                   "endings": [format!("end{i}"), "other"], "label": 0})
        };
        let arc = |i: usize| {
            json!({"question": format!("q{i}"),
                   "choices": {"text": [format!("right{i}"), "wrong"], "label": ["A", "B"]},
                   "answerKey": "A"})
        };
        let shots = |context: &str, key: &str| -> Vec<usize> {
            context
                .split(FEWSHOT_DELIMITER)
                .filter_map(|p| {
                    p.split(key)
                        .nth(1)?
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .collect()
        };
        let pool: Vec<Value> = (0..8).map(hs).collect();
        let records: Vec<Value> = (100..103).map(hs).collect();
        let docs = Task::Hellaswag.docs(&records, None, 2, &pool).unwrap();
        let got: Vec<Vec<usize>> = docs.iter().map(|d| shots(&d.context, "end")).collect();
        assert_eq!(got, [[7, 0], [1, 6], [0, 5]]);
        assert!(
            docs[0].context.ends_with("act100: a B"),
            "{}",
            docs[0].context
        );

        let pool: Vec<Value> = (0..8).map(arc).collect();
        let records: Vec<Value> = (100..103).map(arc).collect();
        let docs = Task::ArcEasy.docs(&records, None, 2, &pool).unwrap();
        let got: Vec<Vec<usize>> = docs.iter().map(|d| shots(&d.context, "right")).collect();
        assert_eq!(got, [[7, 0], [0, 7], [0, 5]]);
        assert!(docs[0]
            .context
            .starts_with("Question: q7\nAnswer: right7\n\nQuestion: q0"));

        let tq = json!({"question": "q", "mc2_targets": {"choices": ["t", "f"], "labels": [1, 0]}});
        let docs = Task::TruthfulqaMc2.docs(&[tq], None, 3, &[]).unwrap();
        assert!(docs[0].context.starts_with(TRUTHFULQA_PREAMBLE));
    }
}
