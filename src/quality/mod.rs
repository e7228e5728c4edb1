//! Quality evaluation: multiple-choice tasks scored through prompt
//! log-probabilities and generative tasks scored through generated answers,
//! the way lm-evaluation-harness's `local-completions` (and
//! `local-chat-completions`) models score them, so that numbers match it on
//! the same data and server.
//!
//! `tasks` turns dataset records into questions, `data` finds and reads the
//! records, `encode` splits context and continuation into token ids, `loglik`
//! asks a server for log-likelihoods, and `score` turns them into metrics;
//! `generate` builds generative prompts and scores answers (filters,
//! exact_match), `generation` asks a server for them.
//! Pass/fail lives in `gate::quality`; running a suite lives in `run::suite`.

pub mod data;
pub mod encode;
pub mod generate;
pub mod generation;
pub mod loglik;
pub mod pyrandom;
pub mod score;
pub mod sources;
pub mod tasks;

/// One multiple-choice question, ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct McDoc {
    /// Position in the task's records after `limit` (per subject for mmlu).
    pub index: usize,
    /// The text every choice continues: description, few-shot examples and the question.
    pub context: String,
    /// The choices as the task defines them (acc_norm divides by their length).
    pub choices: Vec<String>,
    /// Put between context and choice: the continuation is `delimiter + choice`.
    pub delimiter: String,
    pub gold: Gold,
    /// mmlu: the record's subject (e.g. `abstract_algebra`).
    pub subject: Option<String>,
}

impl McDoc {
    /// The text scored for choice `k`.
    pub fn continuation(&self, k: usize) -> String {
        format!("{}{}", self.delimiter, self.choices[k])
    }
}

/// Which choices are right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gold {
    /// Exactly one right choice, by index.
    Index(usize),
    /// truthfulqa_mc2: the first `n` choices are true, the rest false.
    TrueFirst(usize),
}
