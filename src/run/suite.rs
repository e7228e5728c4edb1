//! Runs quality suites: records read, questions built, every target scored
//! through prompt log-probabilities, the accuracy gate applied.
//!
//! Used by the `suite::…` trials, `servegate run` and `servegate eval`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use crate::client::{Client, Limits};
use crate::config::{self, Baseline, CaseConfig};
use crate::discover::{Case, Project};
use crate::gate::quality::{self as qgate, MetricScores, Paired, TaskScores};
use crate::probe::{ProbeReport, Support};
use crate::quality::encode::{self, Encoder, Scored};
use crate::quality::generate::{self, ExactMatch, Filter, GenDoc, GenOutcome};
use crate::quality::generation::{self, Prompt};
use crate::quality::loglik::{self, SendOptions};
use crate::quality::score::{self, DocOutcome, MetricValue};
use crate::quality::sources::{fewshot_records, locate};
use crate::quality::tasks::Task;
use crate::quality::{data, Gold, McDoc};
pub use crate::results::{
    FlippedItem, ItemSample, ItemScores, PairedReport, SideReport, SubtaskResult, SuiteReport,
    TaskResult, TaskSource,
};
use crate::server::pool::{Pool, TargetKey};
use crate::server::TargetEnv;
use crate::tokenizer::Tokenizer;

/// The questions of one task: multiple-choice (`docs`) or generative (`gen`).
pub struct PreparedTask {
    pub task: Task,
    pub docs: Vec<McDoc>,
    pub gen: Vec<GenDoc>,
    pub source: String,
}

impl PreparedTask {
    pub fn items(&self) -> usize {
        self.docs.len() + self.gen.len()
    }
}

/// How a side is reached.
pub struct Side {
    pub target: String,
    pub url: String,
    pub model: String,
    pub client: Client,
    pub log: Option<PathBuf>,
    /// How prompts go to `/v1/completions` (tokens or text; never auto),
    /// and why, for the results.
    pub format: (config::PromptFormat, String),
    /// The probe behind `format`, for the results.
    pub probe: Option<crate::results::ProbeRecord>,
}

impl Side {
    /// How a side's prompts are sent, and the probe's record, from what
    /// the probe found (if it ran).
    fn formats(
        c: &CaseConfig,
        found: Option<&ProbeReport>,
    ) -> (
        (config::PromptFormat, String),
        Option<crate::results::ProbeRecord>,
    ) {
        let format = prompt_format(c, found);
        let record =
            found.map(|r| crate::probe::record(r, vec![format!("prompts as {}", format.1)]));
        (format, record)
    }
}

/// How long one probe request may take in a suite.
fn probe_timeout(c: &CaseConfig) -> Duration {
    Duration::from_secs_f64(c.scoring.timeout_s.min(60.0))
}

/// Probes a side when the suite leaves its prompt format to the probe
/// (`auto`); a named format needs no probe, and none is sent (its requests
/// would land in a server's prompt log among the scored ones).
async fn probe_if_auto<F>(c: &CaseConfig, probe: F) -> Option<std::sync::Arc<ProbeReport>>
where
    F: std::future::Future<Output = std::sync::Arc<ProbeReport>>,
{
    match c.prompt_format {
        config::PromptFormat::Auto => Some(probe.await),
        _ => None,
    }
}

/// How prompts go to a side: as the suite says, or for `auto`, as the
/// probe found the server takes them (text when it refuses token ids).
pub fn prompt_format(
    c: &CaseConfig,
    found: Option<&ProbeReport>,
) -> (config::PromptFormat, String) {
    use config::PromptFormat;
    let token_prompts = found.and_then(|r| {
        r.findings
            .iter()
            .find(|f| f.feature == crate::probe::TOKEN_PROMPTS)
    });
    match (c.prompt_format, token_prompts) {
        (PromptFormat::Tokens, _) => (PromptFormat::Tokens, "token ids (prompt_format)".into()),
        (PromptFormat::Text, _) => (PromptFormat::Text, "text (prompt_format)".into()),
        (PromptFormat::Auto, Some(f)) if f.support == Support::No => (
            PromptFormat::Text,
            format!(
                "text: the probe found token-id prompts refused ({})",
                crate::probe::clip(&f.detail, 60)
            ),
        ),
        (PromptFormat::Auto, Some(f)) if f.support == Support::Yes => (
            PromptFormat::Tokens,
            "token ids: the probe found them taken".into(),
        ),
        (PromptFormat::Auto, _) => (
            PromptFormat::Tokens,
            "token ids: the probe could not tell whether they are taken".into(),
        ),
    }
}

/// Reads every task's records and builds its questions.
pub fn prepare_tasks(c: &CaseConfig) -> Result<Vec<PreparedTask>, String> {
    c.tasks
        .iter()
        .map(|name| {
            let task = Task::resolve(name, &c.mc_tasks, &c.gen_tasks)?;
            let source = locate(c, &task)?;
            let records = data::read_source(&source)?;
            let shots = c.num_fewshot.unwrap_or_else(|| task.default_fewshot());
            let fewshot = match shots {
                0 => Vec::new(),
                _ => fewshot_records(c, &task)?,
            };
            let (docs, gen) = match task.generation() {
                Some(spec) => (
                    Ok(Vec::new()),
                    generate::gen_docs(name, &spec, &records, c.limit, shots as usize, &fewshot),
                ),
                None => (
                    task.docs(&records, c.limit, shots, &fewshot),
                    Ok(Vec::new()),
                ),
            };
            let at = |e: String| format!("{name} ({source}): {e}");
            let prepared = PreparedTask {
                task,
                docs: docs.map_err(at)?,
                gen: gen.map_err(at)?,
                source: source.to_string(),
            };
            if prepared.items() == 0 {
                return Err(format!("{name} ({source}): no records"));
            }
            Ok(prepared)
        })
        .collect()
}

/// The tokenizer: the suite's `tokenizer` file; the embedded engine's own
/// when the candidate is one; the Hugging Face cache entry for the model;
/// else the candidate server's `/tokenize`.
pub fn encoder(
    c: &CaseConfig,
    candidate_is_sim: bool,
    model: &str,
    client: &Client,
) -> Result<Encoder, String> {
    let add_bos = c.scoring.add_bos_token;
    if let Some(path) = &c.tokenizer {
        return Ok(Encoder::local(Tokenizer::from_file(path)?, path, add_bos));
    }
    if candidate_is_sim {
        return Ok(Encoder::Local {
            tokenizer: Tokenizer::engine(),
            origin: "the embedded engine's tokenizer".into(),
            prefix: Tokenizer::engine().token_id(crate::sim::lm::EOS),
            add_bos,
            eos: Some(crate::sim::lm::EOS.to_string()),
        });
    }
    if let Some(path) = data::cached_tokenizer(model) {
        return Ok(Encoder::local(Tokenizer::from_file(&path)?, &path, add_bos));
    }
    Ok(Encoder::Remote {
        client: client.clone(),
        model: model.to_string(),
    })
}

/// Every (context, continuation) of the tasks, tokenised once, and for each
/// question the index of each choice's request among the unique requests.
pub struct Requests {
    pub unique: Vec<Scored>,
    /// `index[task][doc][choice]` into `unique`.
    pub index: Vec<Vec<Vec<usize>>>,
    /// `generations[task]`: each generative question's prompt (empty for
    /// multiple-choice tasks), with the task's stop strings and length.
    pub generations: Vec<GenRequests>,
    /// `unique` decoded to text, for servers that take no token ids (or
    /// the reason why not where the tokenizer cannot decode); made only once
    /// a side needs it (see `Requests::need_text`).
    pub texts: Option<Result<Vec<loglik::TextPrompt>, String>>,
}

/// A generative task's requests, without the model (each side names its own).
#[derive(Default)]
pub struct GenRequests {
    pub prompts: Vec<Prompt>,
    /// Each prompt as text, sent instead of token ids to a server that takes none.
    pub texts: Vec<String>,
    pub stop: Vec<String>,
    pub max_tokens: u32,
}

impl Requests {
    /// Decodes the requests to text, once, for a side that takes no token
    /// ids: a decode per token, not worth paying on servers that take ids.
    pub fn need_text(&mut self, encoder: &Encoder) {
        if self.texts.is_none() {
            self.texts = Some(
                self.unique
                    .iter()
                    .map(|s| {
                        encoder
                            .decode(&s.tokens)
                            .map(|(text, pieces)| loglik::TextPrompt { text, pieces })
                    })
                    .collect(),
            );
        }
    }

    fn count(&self) -> usize {
        self.unique.len()
            + self
                .generations
                .iter()
                .map(|g| g.prompts.len())
                .sum::<usize>()
    }
}

/// The prompts of a generative task: token ids where the tokenizer is
/// local (as lm-eval's `local-completions` sends them), else text; chat
/// messages on the chat endpoint.
async fn generation_requests(
    t: &PreparedTask,
    encoder: &Encoder,
    c: &CaseConfig,
) -> Result<GenRequests, String> {
    let Some(spec) = t.task.generation() else {
        return Ok(GenRequests::default());
    };
    let mut prompts = Vec::with_capacity(t.gen.len());
    for doc in &t.gen {
        let ids = match (c.endpoint, encoder.is_local()) {
            (config::Endpoint::Completions, true) => {
                Some(encoder.encode(&doc.text()).await.map_err(|e| {
                    format!("{} item {}: tokenising: {e}", t.task.name(), doc.index)
                })?)
            }
            _ => None,
        };
        prompts.push(generation::prompt(
            doc,
            c.endpoint,
            c.fewshot_as_multiturn,
            ids,
            c.scoring.max_length,
            spec.max_tokens,
        ));
    }
    Ok(GenRequests {
        prompts,
        texts: t.gen.iter().map(GenDoc::text).collect(),
        stop: generation::stop_strings(&spec, c.endpoint, encoder.eos()),
        max_tokens: spec.max_tokens,
    })
}

pub async fn build_requests(
    tasks: &[PreparedTask],
    encoder: &Encoder,
    c: &CaseConfig,
) -> Result<Requests, String> {
    let max_length = c.scoring.max_length;
    let mut generations = Vec::with_capacity(tasks.len());
    for t in tasks {
        generations.push(generation_requests(t, encoder, c).await?);
    }
    let mut by_text: HashMap<(String, String), usize> = HashMap::new();
    let mut by_tokens: HashMap<Scored, usize> = HashMap::new();
    let mut unique = Vec::new();
    let mut index = Vec::new();
    for t in tasks {
        let mut task_index = Vec::new();
        for doc in &t.docs {
            let mut choices = Vec::new();
            for k in 0..doc.choices.len() {
                let key = (doc.context.clone(), doc.continuation(k));
                let at = match by_text.get(&key) {
                    Some(&at) => at,
                    None => {
                        let (ctx, cont) = encoder.pair(&key.0, &key.1).await.map_err(|e| {
                            format!("{} item {}: tokenising: {e}", t.task.name(), doc.index)
                        })?;
                        let scored = encode::truncate(&ctx, &cont, max_length);
                        let at = *by_tokens.entry(scored.clone()).or_insert_with(|| {
                            unique.push(scored);
                            unique.len() - 1
                        });
                        by_text.insert(key, at);
                        at
                    }
                };
                choices.push(at);
            }
            task_index.push(choices);
        }
        index.push(task_index);
    }
    Ok(Requests {
        unique,
        index,
        generations,
        texts: None,
    })
}

/// Scores every task on one side.
pub async fn score_side(
    side: &Side,
    tasks: &[PreparedTask],
    requests: &Requests,
    options: &SendOptions,
    progress: bool,
) -> Result<(SideReport, Vec<TaskScores>), String> {
    let bar =
        progress.then(|| crate::run::progress::progress_bar(&side.target, requests.count() as u32));
    let tick = || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    };
    let began = Instant::now();
    let at_side = |e: String| format!("{} ({}): {e}", side.target, side.url);
    let as_text = side.format.0 == config::PromptFormat::Text;
    let texts = match (&requests.texts, as_text && !requests.unique.is_empty()) {
        (Some(Ok(t)), true) => Some(t.as_slice()),
        (Some(Err(e)), true) => return Err(at_side(e.clone())),
        (None, true) => unreachable!("`need_text` is called for every text side"),
        (_, false) => None,
    };
    let lls = loglik::score_all(
        &side.client,
        &side.model,
        &requests.unique,
        texts,
        options,
        &tick,
    )
    .await
    .map_err(at_side)?;
    let bodies: Vec<(&'static str, serde_json::Value)> = requests
        .generations
        .iter()
        .flat_map(|g| {
            g.prompts.iter().zip(&g.texts).map(|(p, text)| {
                let p = match p {
                    Prompt::Tokens(_) if as_text => Prompt::Text(text.clone()),
                    p => p.clone(),
                };
                (
                    generation::path(&p),
                    generation::request_body(&side.model, &p, g.max_tokens, &g.stop),
                )
            })
        })
        .collect();
    let mut texts = generation::generate_all(&side.client, &bodies, options, &tick)
        .await
        .map_err(at_side)?
        .into_iter();
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let seconds = began.elapsed().as_secs_f64();
    let mut results = Vec::new();
    let mut scores = Vec::new();
    let mut samples = Vec::new();
    for (t, g) in tasks.iter().zip(&requests.generations) {
        if t.gen.is_empty() {
            continue;
        }
        let texts: Vec<String> = texts.by_ref().take(t.gen.len()).collect();
        let (result, score, task_samples) = score_generations(t, g, &texts)?;
        results.push(result);
        scores.push(score);
        samples.extend(task_samples);
    }
    for (t, index) in tasks.iter().zip(&requests.index) {
        if t.docs.is_empty() {
            continue;
        }
        let mut outcomes: Vec<DocOutcome> = Vec::with_capacity(t.docs.len());
        for (doc, at) in t.docs.iter().zip(index) {
            let doc_lls: Vec<f64> = at.iter().map(|&i| lls[i].ll).collect();
            let outcome = score::score_doc(doc, &doc_lls);
            samples.push(item_sample(t.task.name(), doc, doc_lls, &outcome));
            outcomes.push(outcome);
        }
        let m = score::task_metrics(&t.task, &t.docs, &outcomes);
        scores.push(task_scores(&t.task, &t.docs, &outcomes, &m.metrics));
        results.push(TaskResult {
            task: t.task.name().to_string(),
            items: m.n,
            metrics: m.metrics,
            subtasks: m
                .subtasks
                .into_iter()
                .map(|(name, items, metrics)| SubtaskResult {
                    name,
                    items,
                    metrics,
                })
                .collect(),
        });
    }
    // Reported in the suite's task order.
    let order = |name: &str| tasks.iter().position(|t| t.task.name() == name);
    results.sort_by_key(|r| order(&r.task));
    scores.sort_by_key(|s| order(&s.task));
    Ok((
        SideReport {
            target: side.target.clone(),
            url: side.url.clone(),
            model: side.model.clone(),
            tasks: results,
            requests: requests.count(),
            seconds,
            prompt_format: Some(side.format.1.clone()),
            probe: side.probe.clone(),
            log: side.log.clone(),
            samples,
        },
        scores,
    ))
}

/// One item as scored, for the samples file.
fn item_sample(task: &str, doc: &McDoc, lls: Vec<f64>, outcome: &DocOutcome) -> ItemSample {
    ItemSample {
        task: task.to_string(),
        subject: doc.subject.clone(),
        doc_id: doc.index,
        context: doc.context.clone(),
        scores: ItemScores::Choice {
            continuations: (0..doc.choices.len())
                .map(|k| doc.continuation(k))
                .collect(),
            loglikelihoods: lls,
            gold: match doc.gold {
                Gold::Index(g) => vec![g],
                Gold::TrueFirst(n) => (0..n).collect(),
            },
            pred: outcome.pred,
            pred_norm: outcome.pred_norm,
            acc: outcome.acc,
            acc_norm: outcome.acc_norm,
        },
    }
}

/// A generative task's metrics (`exact_match,<filter>` per filter, with
/// lm-eval's standard error), what the gate needs, and its samples.
fn score_generations(
    t: &PreparedTask,
    g: &GenRequests,
    texts: &[String],
) -> Result<(TaskResult, TaskScores, Vec<ItemSample>), String> {
    let spec = t.task.generation().expect("a generative task");
    let name = t.task.name();
    let filters = generate::filters(&spec).map_err(|e| format!("{name}: {e}"))?;
    let exact = ExactMatch::compile(&spec.exact_match).map_err(|e| format!("{name}: {e}"))?;
    let outcomes: Vec<GenOutcome> = t
        .gen
        .iter()
        .zip(texts)
        .map(|(doc, text)| generate::score_generation(&filters, &exact, text, &doc.target))
        .collect();
    let metrics: Vec<MetricScores> = filters
        .iter()
        .map(|f| {
            let per_item: Vec<f64> = outcomes.iter().map(|o| o.filtered[&f.name].1).collect();
            let (value, stderr) = crate::stats::mean_stderr(&per_item);
            MetricScores {
                name: generate::metric_name(&f.name),
                value,
                stderr,
                per_item,
            }
        })
        .collect();
    let primary: &Filter = &filters[0];
    let samples = t
        .gen
        .iter()
        .zip(texts)
        .zip(&outcomes)
        .zip(&g.prompts)
        .map(|(((doc, text), o), prompt)| ItemSample {
            task: name.to_string(),
            subject: None,
            doc_id: doc.index,
            context: doc.text(),
            scores: ItemScores::Generated {
                messages: match prompt {
                    Prompt::Messages(m) => Some(
                        m.iter()
                            .map(|(role, content)| serde_json::json!({"role": role, "content": content}))
                            .collect(),
                    ),
                    _ => None,
                },
                generated: text.clone(),
                reference: doc.target.clone(),
                filtered: o.filtered.iter().map(|(k, v)| (k.clone(), v.0.clone())).collect(),
                exact_match: o.filtered.iter().map(|(k, v)| (k.clone(), v.1)).collect(),
            },
        })
        .collect();
    let result = TaskResult {
        task: name.to_string(),
        items: t.gen.len(),
        metrics: metrics
            .iter()
            .map(|m| MetricValue {
                name: m.name.clone(),
                value: m.value,
                stderr: m.stderr,
            })
            .collect(),
        subtasks: Vec::new(),
    };
    let scores = TaskScores {
        task: name.to_string(),
        primary: t.task.primary_metric(),
        correct: outcomes
            .iter()
            .map(|o| o.filtered[&primary.name].1 == 1.0)
            .collect(),
        picks: Vec::new(),
        // Every filter's answer, so that an answer that changed under any
        // filter shows as a flipped item.
        answers: outcomes
            .iter()
            .map(|o| {
                filters
                    .iter()
                    .map(|f| o.filtered[&f.name].0.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            })
            .collect(),
        metrics,
    };
    Ok((result, scores, samples))
}

/// Writes the suite's samples file (`<results_dir>/samples/<case>.jsonl`,
/// atomically) and names it in the report. A failed write is a warning:
/// the verdict does not depend on it.
pub fn write_samples(report: &mut SuiteReport, results_dir: &std::path::Path) {
    let path = results_dir
        .join("samples")
        .join(format!("{}.jsonl", crate::files::file_stem(&report.name)));
    match crate::files::write_atomic(&path, report.sample_lines().as_bytes()) {
        Ok(()) => report.samples = Some(path),
        Err(e) => eprintln!("warning: cannot write {}: {e}", path.display()),
    }
}

/// Whether the choice picked by `metric` is right.
fn is_right(doc: &McDoc, pick: usize) -> bool {
    match doc.gold {
        Gold::Index(g) => pick == g,
        Gold::TrueFirst(n) => pick < n,
    }
}

/// What the gate needs of one task: each metric per item, and the primary
/// metric's pick per item.
fn task_scores(
    task: &Task,
    docs: &[McDoc],
    outcomes: &[DocOutcome],
    metrics: &[MetricValue],
) -> TaskScores {
    let primary = task.primary_metric();
    let per_item = |name: &str| -> Vec<f64> {
        outcomes
            .iter()
            .map(|o| {
                if name == "acc_norm" {
                    o.acc_norm
                } else {
                    o.acc
                }
            })
            .collect()
    };
    let picks: Vec<usize> = outcomes
        .iter()
        .map(|o| {
            if primary == "acc_norm" {
                o.pred_norm
            } else {
                o.pred
            }
        })
        .collect();
    TaskScores {
        task: task.name().to_string(),
        correct: docs
            .iter()
            .zip(&picks)
            .map(|(d, &p)| is_right(d, p))
            .collect(),
        picks,
        answers: Vec::new(),
        metrics: metrics
            .iter()
            .map(|m| MetricScores {
                name: m.name.clone(),
                value: m.value,
                stderr: m.stderr,
                per_item: per_item(&m.name),
            })
            .collect(),
        primary,
    }
}

/// The last characters of a question, enough to recognise it.
fn question_tail(context: &str) -> String {
    const KEEP: usize = 300;
    let chars: Vec<char> = context.chars().collect();
    if chars.len() <= KEEP {
        context.to_string()
    } else {
        format!(
            "…{}",
            chars[chars.len() - KEEP..].iter().collect::<String>()
        )
    }
}

fn flipped_items(
    tasks: &[PreparedTask],
    paired: &[Paired],
    c: &[TaskScores],
    b: &[TaskScores],
) -> Vec<PairedReport> {
    paired
        .iter()
        .map(|p| {
            let ti = tasks
                .iter()
                .position(|t| t.task.name() == p.task)
                .unwrap_or(0);
            let (cs, bs) = match (
                c.iter().find(|s| s.task == p.task),
                b.iter().find(|s| s.task == p.task),
            ) {
                (Some(cs), Some(bs)) => (cs, bs),
                _ => unreachable!("paired tasks are scored on both sides"),
            };
            let docs = &tasks[ti].docs;
            let gen = &tasks[ti].gen;
            let items = p
                .flipped
                .iter()
                .map(|&i| {
                    if let Some(doc) = gen.get(i).filter(|_| docs.is_empty()) {
                        return FlippedItem {
                            index: doc.index,
                            subject: None,
                            question: question_tail(&doc.text()),
                            gold: doc.target.clone(),
                            candidate: cs.answers[i].clone(),
                            baseline: bs.answers[i].clone(),
                            candidate_right: cs.correct[i],
                            baseline_right: bs.correct[i],
                        };
                    }
                    let doc = &docs[i];
                    let gold = match doc.gold {
                        Gold::Index(g) => doc.choices[g].clone(),
                        Gold::TrueFirst(n) => format!("any of the first {n} choices"),
                    };
                    FlippedItem {
                        index: doc.index,
                        subject: doc.subject.clone(),
                        question: question_tail(&doc.context),
                        gold,
                        candidate: doc.choices[cs.picks[i]].clone(),
                        baseline: doc.choices[bs.picks[i]].clone(),
                        candidate_right: cs.correct[i],
                        baseline_right: bs.correct[i],
                    }
                })
                .collect();
            PairedReport {
                paired: p.clone(),
                flipped_items: items,
            }
        })
        .collect()
}

/// Everything a suite needs besides its targets.
pub struct SuiteInputs<'a> {
    pub name: String,
    pub file: PathBuf,
    pub config: &'a CaseConfig,
    pub tasks: Vec<PreparedTask>,
    pub options: SendOptions,
    pub progress: bool,
}

/// Scores the candidate and the baseline (when there is one) and applies the gate.
pub async fn evaluate(
    inputs: &SuiteInputs<'_>,
    encoder: &Encoder,
    candidate: &Side,
    baseline: Option<&Side>,
) -> Result<SuiteReport, String> {
    let mut requests = build_requests(&inputs.tasks, encoder, inputs.config).await?;
    for side in std::iter::once(candidate).chain(baseline) {
        if side.format.0 == config::PromptFormat::Text {
            requests.need_text(encoder);
        }
    }
    let cand = score_side(
        candidate,
        &inputs.tasks,
        &requests,
        &inputs.options,
        inputs.progress,
    )
    .await?;
    let base = match baseline {
        Some(b) => Some(
            score_side(
                b,
                &inputs.tasks,
                &requests,
                &inputs.options,
                inputs.progress,
            )
            .await?,
        ),
        None => None,
    };
    Ok(conclude(inputs, encoder, cand, base))
}

/// The gate over both sides' scores.
pub fn conclude(
    inputs: &SuiteInputs<'_>,
    encoder: &Encoder,
    (cand, cand_scores): (SideReport, Vec<TaskScores>),
    base: Option<(SideReport, Vec<TaskScores>)>,
) -> SuiteReport {
    let q = &inputs.config.gate.quality;
    let (base, rows, paired) = match base {
        Some((base, base_scores)) => {
            let mut rows = qgate::compare(q, &cand_scores, &base_scores);
            rows.extend(qgate::against_expected(q, &cand_scores));
            let paired = qgate::paired(&cand_scores, &base_scores);
            let paired = flipped_items(&inputs.tasks, &paired, &cand_scores, &base_scores);
            (Some(base), rows, paired)
        }
        None => (None, qgate::against_expected(q, &cand_scores), Vec::new()),
    };
    SuiteReport {
        name: inputs.name.clone(),
        file: inputs.file.clone(),
        description: inputs.config.description.clone(),
        config: Some(inputs.config.clone()),
        tokenizer: encoder.describe(),
        tasks: inputs
            .tasks
            .iter()
            .map(|t| TaskSource {
                task: t.task.name().to_string(),
                source: t.source.clone(),
                items: t.items(),
            })
            .collect(),
        candidate: cand,
        baseline: base,
        passed: qgate::all_pass(&rows),
        rows,
        paired,
        samples: None,
    }
}

/// How requests are sent, from a suite's `[scoring]`.
pub fn send_options(c: &CaseConfig) -> SendOptions {
    SendOptions {
        concurrency: c.scoring.concurrency.max(1) as usize,
        max_retries: c.scoring.max_retries,
        // Validation keeps it within `config::limits::TIMEOUT_S`.
        timeout: Duration::from_secs_f64(c.scoring.timeout_s),
        ..SendOptions::default()
    }
}

/// Runs suites one after the other through one pool of targets (a target
/// several suites use starts once). One result per suite.
pub fn run_suites(
    project: &Project,
    cases: &[&Case],
    progress_bars: bool,
    progress: &mut dyn FnMut(&str),
) -> Vec<anyhow::Result<SuiteReport>> {
    run_suites_reporting(project, cases, progress_bars, progress, &mut |_, _| {})
}

/// `run_suites`, telling `finished` about each suite as soon as it is scored.
pub fn run_suites_reporting(
    project: &Project,
    cases: &[&Case],
    progress_bars: bool,
    progress: &mut dyn FnMut(&str),
    finished: &mut dyn FnMut(usize, &anyhow::Result<SuiteReport>),
) -> Vec<anyhow::Result<SuiteReport>> {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            return (0..cases.len())
                .map(|i| {
                    let r = Err(anyhow::anyhow!("{e}"));
                    finished(i, &r);
                    r
                })
                .collect()
        }
    };
    runtime.block_on(async {
        let mut pool = Pool::new();
        let mut out = Vec::new();
        for (i, case) in cases.iter().enumerate() {
            let result = run_one(project, case, &mut pool, progress_bars, progress).await;
            finished(i, &result);
            out.push(result);
        }
        pool.stop_all();
        out
    })
}

/// One suite: the candidate is started and scored, then the baseline (so
/// that exclusive targets never overlap); the questions are tokenised once.
async fn run_one(
    project: &Project,
    case: &Case,
    pool: &mut Pool,
    progress_bars: bool,
    progress: &mut dyn FnMut(&str),
) -> anyhow::Result<SuiteReport> {
    let fail = |e: String| anyhow::anyhow!("{}: {e}", case.name);
    let c = &case.config;
    let tasks = prepare_tasks(c).map_err(fail)?;
    let env = TargetEnv::new(&project.root, &c.results_dir);
    let key = |name: &str| {
        let spec = c.targets[name].clone();
        TargetKey {
            name: name.to_string(),
            model: spec.model.clone().unwrap_or_else(|| c.model.clone()),
            spec,
        }
    };
    let inputs = SuiteInputs {
        name: case.name.clone(),
        file: case.file.clone(),
        config: c,
        tasks,
        options: send_options(c),
        progress: progress_bars,
    };
    // Recorded `expected` values take the place of a live baseline.
    let mut roles = vec![("candidate", key(&c.candidate))];
    if let (Baseline::Target(b), true) = (&c.baseline, c.gate.quality.expected.is_empty()) {
        roles.push(("baseline", key(b)));
    }
    let mut encoder: Option<Encoder> = None;
    let mut requests: Option<Requests> = None;
    let mut scored = Vec::new();
    for (role, key) in &roles {
        progress(&format!("{}: {role} `{}`", case.name, key.name));
        let t = pool
            .acquire(key, &env)
            .await
            .map_err(|e| e.context(role.to_string()))?;
        let found = probe_if_auto(c, t.probe(probe_timeout(c))).await;
        let (format, probe) = Side::formats(c, found.as_deref());
        let side = Side {
            target: t.name.clone(),
            url: t.url.clone(),
            model: t.model.clone(),
            client: t.client.clone(),
            log: t.log.clone(),
            format,
            probe,
        };
        if encoder.is_none() {
            let e = self::encoder(c, key.spec.sim.is_some(), &side.model, &side.client)
                .map_err(|e| fail(format!("tokenizer: {e}")))?;
            requests = Some(build_requests(&inputs.tasks, &e, c).await.map_err(fail)?);
            encoder = Some(e);
        }
        let requests = requests.as_mut().expect("built with the encoder");
        if side.format.0 == config::PromptFormat::Text {
            requests.need_text(encoder.as_ref().expect("made with the requests"));
        }
        let result = score_side(
            &side,
            &inputs.tasks,
            requests,
            &inputs.options,
            progress_bars,
        )
        .await;
        // A server that died while scored fails the suite with its log.
        let settle = Duration::from_millis(if result.is_err() { 500 } else { 0 });
        if let Some(how) = pool.take_exited(key, settle).await {
            anyhow::bail!("{}: {role} target `{}` {how}", case.name, key.name);
        }
        scored.push(result.map_err(fail)?);
    }
    let encoder = encoder.expect("the candidate was scored");
    let mut scored = scored.into_iter();
    let cand = scored.next().expect("the candidate was scored");
    let mut report = conclude(&inputs, &encoder, cand, scored.next());
    write_samples(&mut report, &env.results_dir);
    Ok(report)
}

/// The task lists of the old evaluation script, for an ad-hoc evaluation
/// named by size rather than by task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TaskPreset {
    /// hellaswag.
    Quick,
    /// hellaswag, arc_easy, truthfulqa_mc2.
    Standard,
    /// hellaswag, arc_easy, truthfulqa_mc2, mmlu.
    Full,
}

impl TaskPreset {
    /// The preset's tasks.
    pub fn tasks(self) -> Vec<String> {
        let list: &[&str] = match self {
            TaskPreset::Quick => &["hellaswag"],
            TaskPreset::Standard => &["hellaswag", "arc_easy", "truthfulqa_mc2"],
            TaskPreset::Full => &["hellaswag", "arc_easy", "truthfulqa_mc2", "mmlu"],
        };
        list.iter().map(|s| s.to_string()).collect()
    }
}

/// An evaluation from the command line: servers by URL, no project needed.
pub struct AdhocEval {
    pub url: String,
    pub model: Option<String>,
    pub baseline_url: Option<String>,
    pub baseline_model: Option<String>,
    pub tasks: Vec<String>,
    pub limit: Option<usize>,
    pub num_fewshot: Option<u32>,
    pub tolerance: f64,
    pub two_sided: bool,
    pub tokenizer: Option<PathBuf>,
    pub data_dir: Option<PathBuf>,
    pub concurrency: u32,
    /// The API generative tasks drive.
    pub endpoint: config::Endpoint,
    pub api_key: Option<String>,
    /// Seconds one scoring request (and the model lookup) may take, answer included.
    pub timeout_s: f64,
}

/// Runs an ad-hoc evaluation. Without a baseline there is nothing to gate:
/// the scores are reported, and the run passes when every one was measured.
pub async fn adhoc(spec: &AdhocEval) -> Result<SuiteReport, String> {
    let mut c: CaseConfig = toml::from_str("").expect("defaults parse");
    c.tasks = spec.tasks.clone();
    c.limit = spec.limit;
    c.num_fewshot = spec.num_fewshot;
    c.tokenizer = spec.tokenizer.clone();
    c.data_dir = spec.data_dir.clone();
    c.scoring.concurrency = spec.concurrency;
    c.endpoint = spec.endpoint;
    let timeout = match Duration::try_from_secs_f64(spec.timeout_s) {
        Ok(t) if !t.is_zero() => t,
        _ => return Err("the scoring timeout must be a positive number of seconds".into()),
    };
    c.scoring.timeout_s = spec.timeout_s;
    c.gate.quality.max_drop = Some(spec.tolerance);
    c.gate.quality.two_sided = Some(spec.two_sided);
    for task in &c.tasks {
        if !config::BUILTIN_TASKS.contains(&task.as_str()) {
            return Err(format!(
                "unknown task `{task}` (built in: {}; user tasks need a suite file)",
                config::BUILTIN_TASKS.join(", ")
            ));
        }
    }
    let tasks = prepare_tasks(&c)?;
    let config = &c;
    let side = |url: &str, model: Option<&String>, name: &str| {
        let url = url.to_string();
        let model = model.cloned();
        let name = name.to_string();
        let key = spec.api_key.clone();
        async move {
            let client = Client::new(&url, key)
                .map_err(|e| format!("{url}: {e}"))?
                .with_limits(Limits {
                    timeout,
                    ..Limits::default()
                });
            let model = match model {
                Some(m) => m,
                None => client.first_model().await?,
            };
            let found = probe_if_auto(config, async {
                let timeout = probe_timeout(config);
                std::sync::Arc::new(crate::probe::probe(&client, Some(&model), timeout).await)
            })
            .await;
            let (format, probe) = Side::formats(config, found.as_deref());
            Ok::<Side, String>(Side {
                target: name,
                url,
                model,
                client,
                log: None,
                format,
                probe,
            })
        }
    };
    let candidate = side(&spec.url, spec.model.as_ref(), "candidate").await?;
    let baseline = match &spec.baseline_url {
        Some(url) => Some(
            side(
                url,
                spec.baseline_model.as_ref().or(Some(&candidate.model)),
                "baseline",
            )
            .await?,
        ),
        None => None,
    };
    let encoder = encoder(&c, false, &candidate.model, &candidate.client)?;
    let inputs = SuiteInputs {
        name: "eval".into(),
        file: PathBuf::new(),
        config: &c,
        tasks,
        options: send_options(&c),
        progress: true,
    };
    let mut report = evaluate(&inputs, &encoder, &candidate, baseline.as_ref()).await?;
    if baseline.is_none() {
        // Nothing to gate against: the run succeeds when every score was measured.
        report.passed = report.candidate.unscored().is_empty();
    }
    Ok(report)
}
