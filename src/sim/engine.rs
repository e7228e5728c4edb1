//! When each token of each request is ready.
//!
//! Constant mode: every stream has its own fixed timing (first token `ttft`
//! after arrival, then one every `tpot`), independent of the others.
//! Engine mode: a continuous-batching scheduler. Each step admits waiting
//! requests (at most `max_num_seqs` running, prompt tokens within the step's
//! token budget, prompt + max_tokens within the KV capacity), lasts
//! `step_base + step_per_seq × batch + prefill_per_token × prefilled tokens`,
//! and at its end gives every running request one token. Steps follow each
//! other on absolute deadlines, so time does not drift. `ttft` and `tpot`
//! apply there too, as floors: a request joins the queue `ttft` after it
//! arrives (a fixed front-end latency), and no step is shorter than `tpot`
//! (a memory-bound decode step); both are zero unless set.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::clock::PreciseClock;
use super::gpu_step::GpuStepper;
use super::prefix_cache::{self, PrefixCache};
use crate::config::{SimMode, SimParams};

/// Counters behind `/metrics`.
#[derive(Default)]
pub struct Stats {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    pub generation_tokens: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub requests: AtomicU64,
    /// KV cache tokens reserved by running requests (engine mode).
    pub kv_used_tokens: AtomicUsize,
    /// Prompt tokens looked up in the prefix cache, and those found.
    pub prefix_queries: AtomicU64,
    pub prefix_hits: AtomicU64,
}

struct Job {
    /// When the request may join the queue: arrival + `ttft`.
    admissible: Instant,
    prompt_tokens: usize,
    /// Prompt tokens to compute: those not found in the prefix cache.
    prefill_tokens: usize,
    max_tokens: usize,
    tick: mpsc::UnboundedSender<()>,
}

/// The timing source of one request.
pub enum Ticks {
    Constant {
        arrived: Instant,
        ttft: Duration,
        tpot: Duration,
        clock: PreciseClock,
    },
    Engine(mpsc::UnboundedReceiver<()>),
}

impl Ticks {
    /// Waits until token `i` is ready; false if the engine dropped the request.
    pub async fn ready(&mut self, i: usize, extra: Duration) -> bool {
        match self {
            Ticks::Constant {
                arrived,
                ttft,
                tpot,
                clock,
            } => {
                clock
                    .sleep_until(*arrived + *ttft + *tpot * i as u32 + extra)
                    .await;
                true
            }
            Ticks::Engine(rx) => rx.recv().await.is_some(),
        }
    }
}

pub struct Engine {
    params: SimParams,
    clock: PreciseClock,
    jobs: Option<mpsc::UnboundedSender<Job>>,
    pub stats: Arc<Stats>,
    /// With `prefix_caching`. Looked up when a request arrives (vLLM looks
    /// when it schedules; for the cache's effect the difference is small).
    prefix_cache: Option<Mutex<PrefixCache>>,
}

impl Engine {
    /// Must be called inside the engine's runtime (engine mode spawns the scheduler).
    /// With `gpu` (`cuda` mode) the GPU runs every step.
    pub fn start(params: SimParams, clock: PreciseClock, gpu: Option<Arc<GpuStepper>>) -> Self {
        let stats = Arc::new(Stats::default());
        let jobs = (params.mode == SimMode::Engine).then(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(schedule(
                params.clone(),
                clock.clone(),
                rx,
                stats.clone(),
                gpu,
            ));
            tx
        });
        let prefix_cache = params.prefix_caching.then(|| {
            Mutex::new(PrefixCache::new(
                params.kv_capacity_tokens / prefix_cache::BLOCK_TOKENS,
            ))
        });
        Self {
            params,
            clock,
            jobs,
            stats,
            prefix_cache,
        }
    }

    /// The share of the KV cache running requests reserve, 0 to 1.
    pub fn kv_cache_usage(&self) -> f64 {
        self.stats.kv_used_tokens.load(Ordering::Relaxed) as f64
            / self.params.kv_capacity_tokens as f64
    }

    /// Registers a request that arrived at `arrived`.
    pub fn submit(&self, arrived: Instant, prompt_ids: &[u32], max_tokens: usize) -> Ticks {
        let prompt_tokens = prompt_ids.len();
        self.stats
            .prompt_tokens
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        // Without a cache every lookup misses: the hit rate reads 0, not "unknown".
        let cached = self.prefix_cache.as_ref().map_or(0, |cache| {
            let hashes = prefix_cache::block_hashes(prompt_ids);
            cache
                .lock()
                .expect("prefix cache")
                .lookup_and_insert(&hashes, prompt_tokens)
        });
        self.stats
            .prefix_queries
            .fetch_add(prompt_tokens as u64, Ordering::Relaxed);
        self.stats
            .prefix_hits
            .fetch_add(cached as u64, Ordering::Relaxed);
        match &self.jobs {
            None => Ticks::Constant {
                arrived,
                ttft: self.params.ttft,
                tpot: self.params.tpot,
                clock: self.clock.clone(),
            },
            Some(jobs) => {
                let (tick, rx) = mpsc::unbounded_channel();
                let _ = jobs.send(Job {
                    admissible: arrived + self.params.ttft,
                    prompt_tokens,
                    prefill_tokens: prompt_tokens - cached,
                    max_tokens,
                    tick,
                });
                Ticks::Engine(rx)
            }
        }
    }
}

struct Running {
    job: Job,
    emitted: usize,
    reserved: usize,
}

async fn schedule(
    p: SimParams,
    clock: PreciseClock,
    mut arrivals: mpsc::UnboundedReceiver<Job>,
    stats: Arc<Stats>,
    gpu: Option<Arc<GpuStepper>>,
) {
    let mut waiting: VecDeque<Job> = VecDeque::new();
    let mut running: Vec<Running> = Vec::new();
    let mut kv_used = 0usize;
    let mut step_start = Instant::now();
    loop {
        while let Ok(job) = arrivals.try_recv() {
            waiting.push_back(job);
        }
        if running.is_empty() && waiting.is_empty() {
            match arrivals.recv().await {
                Some(job) => waiting.push_back(job),
                None => return,
            }
            step_start = Instant::now();
        }
        // Idle until the first waiting request may join (arrivals keep their
        // order, and every request waits the same `ttft`).
        if running.is_empty() {
            if let Some(at) = waiting.front().map(|j| j.admissible) {
                if at > step_start {
                    clock.sleep_until(at).await;
                    step_start = at;
                    continue;
                }
            }
        }
        // Admit in arrival order while the batch, the token budget and the cache allow.
        let mut prefill = 0usize;
        while let Some(job) = waiting.front() {
            if job.tick.is_closed() {
                waiting.pop_front();
                continue;
            }
            if job.admissible > step_start {
                break;
            }
            let reserve = job.prompt_tokens + job.max_tokens;
            let fits_batch = running.len() < p.max_num_seqs;
            // An oversized request still runs alone rather than waiting forever.
            let fits_cache = kv_used + reserve <= p.kv_capacity_tokens || running.is_empty();
            let fits_budget = prefill + job.prefill_tokens <= p.max_batch_tokens || prefill == 0;
            if !(fits_batch && fits_cache && fits_budget) {
                break;
            }
            let job = waiting.pop_front().expect("front exists");
            prefill += job.prefill_tokens;
            kv_used += reserve;
            running.push(Running {
                job,
                emitted: 0,
                reserved: reserve,
            });
        }
        stats.running.store(running.len(), Ordering::Relaxed);
        stats.waiting.store(waiting.len(), Ordering::Relaxed);
        stats.kv_used_tokens.store(kv_used, Ordering::Relaxed);
        let modelled = || {
            (p.step_base
                + p.step_per_seq * running.len() as u32
                + p.prefill_per_token * prefill as u32)
                .max(p.tpot)
        };
        let step = match &gpu {
            // The step takes what the GPU takes for the batch's context.
            Some(gpu) => {
                let context: usize = running
                    .iter()
                    .map(|r| r.job.prompt_tokens + r.emitted)
                    .sum();
                match gpu.step(context, prefill).await {
                    Ok(took) => took.max(p.tpot),
                    Err(e) => {
                        eprintln!("servegate sim: {e}; this step is timed by the model instead");
                        modelled()
                    }
                }
            }
            None => modelled(),
        };
        let end = step_start + step;
        clock.sleep_until(end).await;
        running.retain_mut(|r| {
            let delivered = r.job.tick.send(()).is_ok();
            r.emitted += 1;
            let keep = delivered && r.emitted < r.job.max_tokens;
            if !keep {
                kv_used -= r.reserved;
            }
            keep
        });
        stats.running.store(running.len(), Ordering::Relaxed);
        stats.kv_used_tokens.store(kv_used, Ordering::Relaxed);
        // The next step starts when this one ended, not when we got round to it.
        step_start = end;
    }
}
