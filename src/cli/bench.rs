//! `bench`: the ad-hoc grid benchmark of one server by URL.

use std::path::PathBuf;

use servegate::client::{Client, Limits};
use servegate::config::{Endpoint, WorkloadConfig};
use servegate::files;
use servegate::grid::{self, BenchFile, Grid};
use servegate::probe;
use servegate::report;
use servegate::tokenizer::Tokenizer;
use servegate::workload;

use super::{project_root, runtime, CliError};

#[derive(clap::Args)]
pub(super) struct BenchArgs {
    /// The server's base URL (with or without a trailing `/v1`).
    #[arg(long, default_value = "http://localhost:8000")]
    base_url: String,
    /// Model name; the server's first model when omitted.
    #[arg(long)]
    model: Option<String>,
    /// Prompts in the `{"short": [...], "medium": [...]}` format (default: the project's prompt sets).
    #[arg(long)]
    prompts_file: Option<PathBuf>,
    /// Prompt sets to run (`1,2` or `1 2`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = ["short".to_string(), "medium".to_string()])]
    prompt_length: Vec<String>,
    /// Requests sent first and discarded, per point.
    #[arg(long, default_value_t = 3)]
    warmup: u32,
    /// Measured requests per point.
    #[arg(long, default_value_t = 20)]
    num_requests: u32,
    /// Requests in flight at once (`1,2,4` or `1 2 4`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [1u32, 2, 4])]
    pub(super) concurrency: Vec<u32>,
    /// Tokens to generate per request (`64,128` or `64 128`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [64u32, 128])]
    pub(super) max_tokens: Vec<u32>,
    /// Write results here (JSON).
    #[arg(long)]
    output: Option<PathBuf>,
    /// Open loop: requests per second (concurrency then caps requests in flight).
    #[arg(long)]
    rate: Option<f64>,
    /// Gamma shape of inter-arrival times (1 = Poisson).
    #[arg(long, default_value_t = 1.0)]
    burstiness: f64,
    /// The API to drive: /v1/completions or /v1/chat/completions.
    #[arg(long, value_enum, default_value = "completions")]
    endpoint: EndpointArg,
    /// A tokenizer.json, to count tokens when the server reports no usage.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Keep every request's timings in the output.
    #[arg(long)]
    save_detailed: bool,
    /// Environment variable holding an API key.
    #[arg(long)]
    api_key_env: Option<String>,
    /// Seconds a request may take, response body included; a stalled or
    /// trickling one then fails as a timeout (also bounds the model lookup).
    #[arg(long, env = "SERVEGATE_REQUEST_TIMEOUT", default_value_t = 120.0)]
    request_timeout: f64,
}

/// Longest wait for one of the probe's requests.
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone, Copy, clap::ValueEnum)]
enum EndpointArg {
    Completions,
    Chat,
}

/// Prompt sets for `servegate bench`: from `--prompts-file`, else the project's prompt folder.
fn bench_prompt_sets(
    args: &BenchArgs,
    root: Option<PathBuf>,
) -> Result<Vec<(String, Vec<String>)>, String> {
    match &args.prompts_file {
        Some(file) => {
            let mut sets = workload::load_prompts_json(file)?;
            args.prompt_length
                .iter()
                .map(|name| {
                    sets.remove(name)
                        .filter(|p| !p.is_empty())
                        .map(|p| (name.clone(), p))
                        .ok_or_else(|| format!("{}: no prompts under `{name}`", file.display()))
                })
                .collect()
        }
        None => {
            let root = project_root(root).ok_or(
                "no --prompts-file and no servegate project here to take prompt sets from",
            )?;
            let dir = match servegate::config::load_project(&root, &[]) {
                Ok(c) => servegate::config::resolve(&root, &c.prompts_dir),
                Err(_) => root.join("prompts"),
            };
            args.prompt_length
                .iter()
                .map(|name| workload::load_prompt_set(&dir, name).map(|p| (name.clone(), p)))
                .collect()
        }
    }
}

pub(super) fn bench(
    args: &BenchArgs,
    root: Option<PathBuf>,
    open_files: Option<u64>,
) -> Result<(), CliError> {
    let most = args.concurrency.iter().copied().max().unwrap_or(1);
    if let Some(w) = servegate::open_files::concurrency_warning(most as u64, open_files) {
        eprintln!("{w}");
    }
    let prompt_sets = bench_prompt_sets(args, root).map_err(CliError::Usage)?;
    let tokenizer = args
        .tokenizer
        .as_deref()
        .map(Tokenizer::from_file)
        .transpose()
        .map_err(CliError::Usage)?;
    check_ranges(args)?;
    let api_key = match &args.api_key_env {
        Some(var) => Some(
            std::env::var(var)
                .map_err(|_| CliError::Usage(format!("environment variable {var} is not set")))?,
        ),
        None => None,
    };
    let rt = runtime();
    let outcome = rt.block_on(measure(args, prompt_sets, tokenizer, api_key));
    // Closing the runtime closes every connection it held, so the results
    // file can be written even when the run used every file allowed.
    drop(rt);
    let file = outcome.map_err(|e| CliError::Failed(format!("{e:#}")))?;
    print_points(&file);
    if let Some(path) = &args.output {
        save(path, &file)?;
    }
    verdict(&file)
}

/// The same ranges as a scenario's workload keys, so a run cannot panic.
fn check_ranges(args: &BenchArgs) -> Result<(), CliError> {
    use servegate::config::limits::{self, count, number};
    let mut checks = vec![
        (
            "--burstiness",
            number(args.burstiness, limits::BURSTINESS).map(drop),
        ),
        (
            "--warmup",
            count(args.warmup.into(), 0, limits::MAX_REQUESTS).map(drop),
        ),
        (
            "--num-requests",
            count(args.num_requests.into(), 1, limits::MAX_REQUESTS).map(drop),
        ),
    ];
    if let Some(rate) = args.rate {
        checks.push(("--rate", number(rate, limits::RATE).map(drop)));
    }
    checks.push((
        "--request-timeout",
        number(args.request_timeout, limits::TIMEOUT_S).map(drop),
    ));
    for &c in &args.concurrency {
        checks.push((
            "--concurrency",
            count(c.into(), 1, limits::MAX_CONCURRENCY).map(drop),
        ));
    }
    for &t in &args.max_tokens {
        checks.push((
            "--max-tokens",
            count(t.into(), 1, limits::MAX_TOKENS).map(drop),
        ));
    }
    match checks.into_iter().find(|(_, r)| r.is_err()) {
        Some((flag, Err(e))) => Err(CliError::Usage(format!("{flag}: {e}"))),
        _ => Ok(()),
    }
}

/// Every point of the grid against the server, in the old script's schema.
async fn measure(
    args: &BenchArgs,
    prompt_sets: Vec<(String, Vec<String>)>,
    tokenizer: Option<Tokenizer>,
    api_key: Option<String>,
) -> anyhow::Result<BenchFile> {
    let request_timeout = std::time::Duration::from_secs_f64(args.request_timeout);
    let endpoint = match args.endpoint {
        EndpointArg::Completions => Endpoint::Completions,
        EndpointArg::Chat => Endpoint::Chat,
    };
    let client = Client::new(&args.base_url, api_key)?.with_limits(Limits {
        timeout: request_timeout,
        ..Limits::default()
    });
    client
        .wait_ready("/v1/models", std::time::Duration::from_secs(10))
        .await
        .map_err(anyhow::Error::msg)?;
    let model = match &args.model {
        Some(m) => m.clone(),
        None => client.first_model().await.map_err(anyhow::Error::msg)?,
    };
    let grid = Grid {
        prompt_sets,
        max_tokens: args.max_tokens.clone(),
        concurrency: args.concurrency.clone(),
        base: WorkloadConfig {
            endpoint,
            warmup: args.warmup,
            num_requests: args.num_requests,
            rate: args.rate,
            burstiness: args.burstiness,
            request_timeout_s: request_timeout.as_secs_f64(),
            ..WorkloadConfig::default()
        },
    };
    let found = probe::probe(&client, Some(&model), request_timeout.min(PROBE_TIMEOUT)).await;
    let (dialect, choices) = probe::dialect(&found);
    for choice in &choices {
        eprintln!("probe: {choice}");
    }
    let results = grid::run_grid(
        &client,
        &model,
        &grid,
        dialect,
        tokenizer,
        args.save_detailed,
        true,
    )
    .await;
    Ok(BenchFile {
        base_url: args.base_url.clone(),
        model,
        warmup: args.warmup,
        num_requests: args.num_requests,
        endpoint,
        probe: probe::record(&found, choices),
        scenarios: results,
    })
}

/// The points' table, the errors behind failed requests, client-lag warnings.
fn print_points(file: &BenchFile) {
    println!("{}", grid::table(&file.scenarios));
    if let Some(errors) = grid::error_report(&file.scenarios) {
        println!("{errors}");
    }
    for p in &file.scenarios {
        if let Some(w) = report::console::client_lag_warning(&p.name, &p.summary) {
            println!("{w}");
        }
    }
}

fn save(path: &std::path::Path, file: &BenchFile) -> Result<(), CliError> {
    match files::write_json_keeping(path, file) {
        Ok(written) if written == path => {
            println!("results: {}", path.display());
            Ok(())
        }
        Ok(written) => Err(CliError::Failed(format!(
            "cannot write {}; the results were saved to {}",
            path.display(),
            written.display()
        ))),
        Err(e) => Err(CliError::Failed(format!(
            "cannot write {}: {e:#}",
            path.display()
        ))),
    }
}

/// A panic of ours, or a point with no completed request (which measured
/// nothing), is never a success.
fn verdict(file: &BenchFile) -> Result<(), CliError> {
    if let Some(panic) = file.panic() {
        return Err(CliError::Failed(panic.to_string()));
    }
    let unmeasured: Vec<&str> = file.unmeasured().iter().map(|p| p.name.as_str()).collect();
    if !unmeasured.is_empty() {
        return Err(CliError::Failed(format!(
            "no request completed at {} of {} points: {}",
            unmeasured.len(),
            file.scenarios.len(),
            unmeasured.join(", ")
        )));
    }
    Ok(())
}
