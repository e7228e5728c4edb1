//! The engine's language model: a token trigram model with Witten–Bell
//! interpolation, trained at startup on the text the project ships, over the
//! project's own BPE tokenizer. Small and deterministic, yet its
//! log-probabilities are real: text it has read scores higher than text it
//! has not, which is what a multiple-choice quality gate needs.
//!
//! Witten–Bell: P(w | h) = (c(h, w) + T(h) · P(w | h')) / (c(h) + T(h)), where
//! T(h) is the number of distinct words seen after h and h' drops the oldest
//! word of h. The unigram level is add-one smoothed over the vocabulary, so
//! every token has a non-zero probability.

use std::collections::HashMap;
use std::sync::OnceLock;

use crate::tokenizer::Tokenizer;

/// Text the model learns from: the engine's corpus and the project's prompt sets.
pub const CORPUS: &[&str] = &[
    include_str!("data/corpus.txt"),
    include_str!("../../prompts/short.txt"),
    include_str!("../../prompts/medium.txt"),
    include_str!("../../prompts/long.txt"),
];

/// Worked arithmetic answers in gsm8k's format (the few-shot pool the
/// project ships), each learnt whole as `Question: …\nAnswer: …`, so that
/// the engine answers gsm8k-style prompts in that style (`… #### N`) and a
/// generative gate's filters have answers to extract.
pub const WORKED_EXAMPLES: &str = include_str!("../../datasets/gsm8k_train.jsonl");

/// The worked examples as documents.
fn worked_examples() -> Vec<String> {
    WORKED_EXAMPLES
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter_map(|r| {
            Some(format!(
                "Question: {}\nAnswer: {}",
                r.get("question")?.as_str()?,
                r.get("answer")?.as_str()?
            ))
        })
        .collect()
}

/// End of a document; generation stops here unless `ignore_eos`.
pub const EOS: &str = "<|endoftext|>";

#[derive(Default)]
struct Counts {
    /// c(h, w) per context h.
    next: HashMap<u32, u32>,
    total: u32,
}

pub struct Model {
    pub tokenizer: Tokenizer,
    pub eos: u32,
    vocab: usize,
    unigram: Vec<u32>,
    unigram_total: u32,
    /// The most frequent tokens, the unigram level's top list.
    unigram_top: Vec<u32>,
    bigram: HashMap<u32, Counts>,
    trigram: HashMap<(u32, u32), Counts>,
    /// Exact top candidates per context level, computed on demand and kept.
    top_cache: std::sync::Mutex<HashMap<Context, TopList>>,
}

/// The two previous tokens (either may be absent at the start of a text).
type Context = (Option<u32>, Option<u32>);
/// Best next tokens with their log-probabilities.
pub type TopList = std::sync::Arc<Vec<(u32, f64)>>;

/// How many alternatives `top` keeps (logprobs may ask up to 5; 8 leaves room).
const TOP_K: usize = 8;

impl Model {
    /// The shared model, trained once per process.
    pub fn shared() -> &'static Model {
        static MODEL: OnceLock<Model> = OnceLock::new();
        MODEL.get_or_init(|| Model::train(Tokenizer::engine(), CORPUS, &worked_examples()))
    }

    /// Learns `documents` paragraph by paragraph (lines starting with `#`
    /// are comments) and each of `whole` as one document.
    pub fn train(tokenizer: Tokenizer, documents: &[&str], whole: &[String]) -> Self {
        let eos = tokenizer.token_id(EOS).unwrap_or(0);
        let vocab = tokenizer.vocab_size().max(eos as usize + 1);
        let mut m = Model {
            tokenizer,
            eos,
            vocab,
            unigram: vec![0; vocab],
            unigram_total: 0,
            unigram_top: Vec::new(),
            bigram: HashMap::new(),
            trigram: HashMap::new(),
            top_cache: Default::default(),
        };
        for doc in documents {
            // Each paragraph (or prompt line) is a document ending in EOS.
            for para in doc.split("\n\n").flat_map(|p| {
                if p.contains('#') {
                    p.lines().collect::<Vec<_>>()
                } else {
                    vec![p]
                }
            }) {
                let para = para.trim();
                if para.is_empty() || para.starts_with('#') {
                    continue;
                }
                let mut ids = m.tokenizer.encode(para);
                ids.push(eos);
                m.add(&ids);
            }
        }
        for doc in whole {
            let mut ids = m.tokenizer.encode(doc);
            ids.push(eos);
            m.add(&ids);
        }
        let mut ids: Vec<u32> = (0..m.vocab as u32).collect();
        ids.sort_by(|&x, &y| {
            m.unigram[y as usize]
                .cmp(&m.unigram[x as usize])
                .then(x.cmp(&y))
        });
        ids.truncate(TOP_K);
        m.unigram_top = ids;
        m
    }

    fn add(&mut self, ids: &[u32]) {
        for (i, &w) in ids.iter().enumerate() {
            if (w as usize) < self.vocab {
                self.unigram[w as usize] += 1;
                self.unigram_total += 1;
            }
            if i >= 1 {
                let c = self.bigram.entry(ids[i - 1]).or_default();
                *c.next.entry(w).or_default() += 1;
                c.total += 1;
            }
            if i >= 2 {
                let c = self.trigram.entry((ids[i - 2], ids[i - 1])).or_default();
                *c.next.entry(w).or_default() += 1;
                c.total += 1;
            }
        }
    }

    pub fn vocab_size(&self) -> usize {
        self.vocab
    }

    fn p_unigram(&self, w: u32) -> f64 {
        let c = self.unigram.get(w as usize).copied().unwrap_or(0);
        (c as f64 + 1.0) / (self.unigram_total as f64 + self.vocab as f64)
    }

    fn p_bigram(&self, a: Option<u32>, w: u32) -> f64 {
        let lower = self.p_unigram(w);
        match a.and_then(|a| self.bigram.get(&a)) {
            Some(c) => interpolate(c, w, lower),
            None => lower,
        }
    }

    /// P(w | a, b) for the context `[.., a, b]` (either may be absent at the start).
    pub fn prob(&self, a: Option<u32>, b: Option<u32>, w: u32) -> f64 {
        let lower = self.p_bigram(b, w);
        match a.zip(b).and_then(|k| self.trigram.get(&k)) {
            Some(c) => interpolate(c, w, lower),
            None => lower,
        }
    }

    pub fn logprob(&self, a: Option<u32>, b: Option<u32>, w: u32) -> f64 {
        self.prob(a, b, w).ln()
    }

    /// The most likely next tokens with their log-probabilities, best first
    /// (ties broken by token id). Exact: a token never seen after a context can
    /// only rank by its lower-order probability, so candidates are the
    /// context's own continuations plus the lower level's top list.
    pub fn top(&self, a: Option<u32>, b: Option<u32>) -> std::sync::Arc<Vec<(u32, f64)>> {
        let key = (a.filter(|_| b.is_some()), b);
        if let Some(hit) = self.top_cache.lock().expect("cache lock").get(&key) {
            return hit.clone();
        }
        let mut candidates: Vec<u32> = Vec::new();
        if let (Some(a), Some(b)) = key {
            if let Some(c) = self.trigram.get(&(a, b)) {
                candidates.extend(c.next.keys());
            }
        }
        if let Some(c) = b.and_then(|b| self.bigram.get(&b)) {
            candidates.extend(c.next.keys());
        }
        candidates.extend(self.unigram_top.iter().copied());
        candidates.sort_unstable();
        candidates.dedup();
        let mut scored: Vec<(u32, f64)> = candidates
            .into_iter()
            .map(|w| (w, self.logprob(key.0, key.1, w)))
            .collect();
        scored.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        scored.truncate(TOP_K);
        let top = std::sync::Arc::new(scored);
        self.top_cache
            .lock()
            .expect("cache lock")
            .insert(key, top.clone());
        top
    }

    /// Samples the next token: greedy at temperature 0, else from the full
    /// distribution scaled by the temperature, drawn with `uniform` in [0, 1).
    pub fn next(&self, a: Option<u32>, b: Option<u32>, temperature: f64, uniform: f64) -> u32 {
        if temperature <= 0.0 {
            return self.top(a, b)[0].0;
        }
        let weights: Vec<f64> = (0..self.vocab as u32)
            .map(|w| self.prob(a, b, w).powf(1.0 / temperature))
            .collect();
        let total: f64 = weights.iter().sum();
        let mut target = uniform * total;
        for (w, p) in weights.iter().enumerate() {
            target -= p;
            if target <= 0.0 {
                return w as u32;
            }
        }
        (self.vocab - 1) as u32
    }
}

fn interpolate(c: &Counts, w: u32, lower: f64) -> f64 {
    let types = c.next.len() as f64;
    let seen = c.next.get(&w).copied().unwrap_or(0) as f64;
    (seen + types * lower) / (c.total as f64 + types)
}

/// Trains the project's byte-level BPE tokenizer on the corpus.
pub fn train_tokenizer(vocab_size: usize) -> Result<tokenizers::Tokenizer, String> {
    use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    use tokenizers::{
        AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper,
        TokenizerBuilder,
    };
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab_size)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(vec![AddedToken::from(EOS, true)])
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut tokenizer = TokenizerBuilder::<
        BPE,
        NormalizerWrapper,
        PreTokenizerWrapper,
        PostProcessorWrapper,
        DecoderWrapper,
    >::new()
    .with_model(BPE::default())
    .with_normalizer(None)
    .with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(ByteLevel::new(
        false, true, true,
    ))))
    .with_post_processor(Some(PostProcessorWrapper::ByteLevel(ByteLevel::new(
        false, true, true,
    ))))
    .with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::new(
        false, true, true,
    ))))
    .build()
    .map_err(|e| e.to_string())?;
    let docs: Vec<String> = CORPUS.iter().map(|s| s.to_string()).collect();
    tokenizer
        .train(&mut trainer, docs.into_iter())
        .map_err(|e| e.to_string())?;
    let json = tokenizer.to_string(true).map_err(|e| e.to_string())?;
    tokenizers::Tokenizer::from_bytes(json.as_bytes()).map_err(|e| e.to_string())
}
