//! Runs one workload against one target and records every request.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::client::{Client, CompletionRequest};
use crate::config::WorkloadConfig;
use crate::metrics::{RequestRecord, Summary, TokenSource};

/// The records and summary of one measured phase.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    pub summary: Summary,
    pub records: Vec<RequestRecord>,
}

/// Sends `warmup` discarded requests, then `num_requests` measured ones with
/// `concurrency` in flight (closed loop). Request `i` uses prompt `i mod len`.
pub async fn run(
    client: &Client,
    model: &str,
    workload: &WorkloadConfig,
    prompts: &[String],
) -> BenchResult {
    let concurrency = workload.concurrency.max(1) as usize;
    if workload.warmup > 0 {
        phase(
            client,
            model,
            workload,
            prompts,
            workload.warmup as usize,
            concurrency,
        )
        .await;
    }
    let records = phase(
        client,
        model,
        workload,
        prompts,
        workload.num_requests as usize,
        concurrency,
    )
    .await;
    BenchResult {
        summary: Summary::from_records(&records),
        records,
    }
}

async fn phase(
    client: &Client,
    model: &str,
    workload: &WorkloadConfig,
    prompts: &[String],
    count: usize,
    concurrency: usize,
) -> Vec<RequestRecord> {
    let next = Arc::new(AtomicUsize::new(0));
    let records = Arc::new(Mutex::new(Vec::with_capacity(count)));
    let phase_start = Instant::now();
    let timeout = Duration::from_secs_f64(workload.request_timeout_s);
    let mut workers = Vec::new();
    for _ in 0..concurrency.min(count) {
        let (client, next, records) = (client.clone(), next.clone(), records.clone());
        let prompts = prompts.to_vec();
        let base = CompletionRequest {
            model: model.to_string(),
            prompt: String::new(),
            max_tokens: workload.max_tokens,
            temperature: workload.temperature,
            ignore_eos: workload.ignore_eos,
        };
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let request = CompletionRequest {
                    prompt: prompts[i % prompts.len()].clone(),
                    ..base.clone()
                };
                let start = phase_start.elapsed();
                let outcome =
                    tokio::time::timeout(timeout, client.stream_completion(&request)).await;
                let end = phase_start.elapsed();
                let record = match outcome {
                    Ok(Ok(done)) => RequestRecord {
                        start_s: start.as_secs_f64(),
                        end_s: (start + *done.event_times.last().expect("non-empty")).as_secs_f64(),
                        event_times_s: done.event_times.iter().map(Duration::as_secs_f64).collect(),
                        output_tokens: done.output_tokens,
                        token_source: done.token_source,
                        error: None,
                    },
                    Ok(Err(reason)) => failed(start, end, reason),
                    Err(_) => failed(
                        start,
                        end,
                        format!("timed out after {:.1} s", timeout.as_secs_f64()),
                    ),
                };
                records.lock().expect("records lock").push(record);
            }
        }));
    }
    for w in workers {
        let _ = w.await;
    }
    let mut records = std::mem::take(&mut *records.lock().expect("records lock"));
    records.sort_by(|a, b| a.start_s.total_cmp(&b.start_s));
    records
}

fn failed(start: Duration, end: Duration, reason: String) -> RequestRecord {
    RequestRecord {
        start_s: start.as_secs_f64(),
        end_s: end.as_secs_f64(),
        event_times_s: Vec::new(),
        output_tokens: 0,
        token_source: TokenSource::Events,
        error: Some(reason),
    }
}
