//! `bench`: the ad-hoc grid benchmark of one server by URL.

use std::path::PathBuf;

use servegate::client::{Client, Limits};
use servegate::config::{Endpoint, WorkloadConfig};
use servegate::files;
use servegate::grid::{self, BenchFile, Grid};
use servegate::probe;
use servegate::report;
use servegate::server_tokenizer::ServerTokenizer;
use servegate::tokenizer::{Codec, Tokenizer};
use servegate::workload;

use super::{parse_goodput, project_root, runtime, CliError, EndpointArg};

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
    #[arg(long, visible_alias = "num-prompts", default_value_t = 20)]
    num_requests: u32,
    /// Requests in flight at once (`1,2,4` or `1 2 4`); with a rate, the cap
    /// on requests in flight (vLLM's `--max-concurrency`).
    #[arg(long, visible_alias = "max-concurrency", value_delimiter = ',', num_args = 1.., default_values_t = [1u32, 2, 4])]
    pub(super) concurrency: Vec<u32>,
    /// Tokens to generate per request (`64,128` or `64 128`).
    #[arg(long, value_delimiter = ',', num_args = 1.., default_values_t = [64u32, 128])]
    pub(super) max_tokens: Vec<u32>,
    /// Write results here (JSON).
    #[arg(long, visible_alias = "result-filename")]
    output: Option<PathBuf>,
    /// Write results even without `--output`, to `servegate-bench-DATE.json`.
    #[arg(long)]
    save_result: bool,
    /// Open loop: requests per second (concurrency then caps requests in
    /// flight); `inf` sends them all at once, as vLLM's `--request-rate inf`.
    #[arg(long, visible_alias = "request-rate", value_parser = parse_rate)]
    rate: Option<f64>,
    /// Where prompts come from: the prompt sets (`--prompt-length`), or
    /// `vllm bench serve`'s `random`, `prefix_repetition`, `sharegpt`.
    #[arg(long, value_enum, default_value = "prompt-sets")]
    dataset_name: DatasetArg,
    /// The ShareGPT-format file for `--dataset-name sharegpt`.
    #[arg(long)]
    dataset_path: Option<PathBuf>,
    /// `random`: input tokens per request.
    #[arg(long, default_value_t = 1024)]
    random_input_len: u32,
    /// `random`: output tokens per request.
    #[arg(long, default_value_t = 128)]
    random_output_len: u32,
    /// `random`: lengths drawn from `len × [1 − r, 1 + r]`.
    #[arg(long, default_value_t = 0.0)]
    random_range_ratio: f64,
    /// `random`: tokens of a prefix every request shares.
    #[arg(long, default_value_t = 0)]
    random_prefix_len: u32,
    /// `prefix_repetition`: how many shared prefixes.
    #[arg(long, default_value_t = 10)]
    prefix_repetition_num_prefixes: u32,
    /// `prefix_repetition`: tokens per prefix.
    #[arg(long, default_value_t = 256)]
    prefix_repetition_prefix_len: u32,
    /// `prefix_repetition`: tokens of each request's own suffix.
    #[arg(long, default_value_t = 256)]
    prefix_repetition_suffix_len: u32,
    /// `prefix_repetition`: output tokens per request.
    #[arg(long, default_value_t = 128)]
    prefix_repetition_output_len: u32,
    /// Seed of generated prompts and arrivals.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Goodput objectives, vLLM's syntax: `ttft:200 tpot:50 e2el:2000` (ms).
    #[arg(long, num_args = 1..)]
    goodput: Vec<String>,
    /// Latency metrics to report percentiles of, vLLM's names comma-separated:
    /// `ttft`, `tpot`, `itl`, `e2el` (default with `--metric-percentiles`:
    /// `ttft,tpot,itl`). Printed per point and written as `p99_ttft_ms`, ….
    #[arg(long, value_name = "METRICS")]
    percentile_metrics: Option<String>,
    /// Percentiles to report of `--percentile-metrics`, comma-separated, each
    /// in (0, 100] (default with `--percentile-metrics`: `99`).
    #[arg(long, value_name = "PERCENTILES")]
    metric_percentiles: Option<String>,
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
    /// Open no connections ahead of each point's measured requests (by
    /// default as many as the concurrency are opened after the warm-up).
    #[arg(long)]
    cold_connections: bool,
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

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum DatasetArg {
    PromptSets,
    Random,
    #[value(name = "prefix_repetition", alias = "prefix-repetition")]
    PrefixRepetition,
    Sharegpt,
}

/// A rate in requests per second, or `inf` (none: all at once).
fn parse_rate(text: &str) -> Result<f64, String> {
    match text {
        "inf" | "infinity" => Ok(f64::INFINITY),
        _ => text.parse().map_err(|e| format!("{e}")),
    }
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
    let slo =
        parse_goodput(&args.goodput).map_err(|e| CliError::Usage(format!("--goodput {e}")))?;
    let percentiles = grid::PercentileSpec::from_flags(
        args.percentile_metrics.as_deref(),
        args.metric_percentiles.as_deref(),
    )
    .map_err(CliError::Usage)?;
    // Generated prompts are cut from the project's prompt text, when there is a project.
    let text_dir =
        project_root(root.clone()).map(|r| match servegate::config::load_project(&r, &[]) {
            Ok(c) => servegate::config::resolve(&r, &c.prompts_dir),
            Err(_) => r.join("prompts"),
        });
    let prompt_sets = match args.dataset_name {
        DatasetArg::PromptSets => Some(bench_prompt_sets(args, root).map_err(CliError::Usage)?),
        DatasetArg::Sharegpt => {
            let path = args.dataset_path.as_ref().ok_or_else(|| {
                CliError::Usage("--dataset-name sharegpt needs --dataset-path".into())
            })?;
            let texts = workload::load_sharegpt(path).map_err(CliError::Usage)?;
            Some(vec![("sharegpt".to_string(), texts)])
        }
        // Made once the model is known (its tokenizer may be the cached one).
        DatasetArg::Random | DatasetArg::PrefixRepetition => None,
    };
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
    let outcome = rt.block_on(measure(
        args,
        prompt_sets,
        tokenizer,
        api_key,
        slo,
        percentiles,
        text_dir,
    ));
    // Closing the runtime closes every connection it held, so the results
    // file can be written even when the run used every file allowed.
    drop(rt);
    let file = outcome.map_err(|e| CliError::Failed(format!("{e:#}")))?;
    print_points(&file);
    let output = args.output.clone().or_else(|| {
        args.save_result.then(|| {
            let now = chrono::Local::now().format("%Y%m%d-%H%M%S");
            PathBuf::from(format!("servegate-bench-{now}.json"))
        })
    });
    if let Some(path) = &output {
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
    if let Some(rate) = args.rate.filter(|r| r.is_finite()) {
        checks.push(("--rate", number(rate, limits::RATE).map(drop)));
    }
    if matches!(
        args.dataset_name,
        DatasetArg::Random | DatasetArg::PrefixRepetition
    ) {
        for (flag, v, least) in [
            ("--random-input-len", args.random_input_len, 1),
            ("--random-output-len", args.random_output_len, 1),
            ("--random-prefix-len", args.random_prefix_len, 0),
            (
                "--prefix-repetition-num-prefixes",
                args.prefix_repetition_num_prefixes,
                1,
            ),
            (
                "--prefix-repetition-prefix-len",
                args.prefix_repetition_prefix_len,
                1,
            ),
            (
                "--prefix-repetition-suffix-len",
                args.prefix_repetition_suffix_len,
                1,
            ),
            (
                "--prefix-repetition-output-len",
                args.prefix_repetition_output_len,
                1,
            ),
        ] {
            checks.push((flag, count(v.into(), least, limits::MAX_TOKENS).map(drop)));
        }
        checks.push((
            "--random-range-ratio",
            number(args.random_range_ratio, (0.0, 0.999)).map(drop),
        ));
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
    prompt_sets: Option<Vec<(String, Vec<String>)>>,
    tokenizer: Option<Tokenizer>,
    api_key: Option<String>,
    slo: Option<servegate::metrics::Slo>,
    percentiles: Option<grid::PercentileSpec>,
    text_dir: Option<PathBuf>,
) -> anyhow::Result<BenchFile> {
    let request_timeout = std::time::Duration::from_secs_f64(args.request_timeout);
    let endpoint = Endpoint::from(args.endpoint);
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
    let (prompt_sets, max_tokens) = match prompt_sets {
        Some(sets) => {
            let sets = sets
                .into_iter()
                .map(|(name, texts)| {
                    let prompts = texts
                        .into_iter()
                        .map(|t| {
                            workload::Prompt::text(t, tokenizer.as_ref().map(|t| t as &dyn Codec))
                        })
                        .collect();
                    (name, prompts)
                })
                .collect();
            (sets, args.max_tokens.clone())
        }
        None => generated(args, &client, &model, tokenizer.as_ref(), text_dir)?,
    };
    let grid = Grid {
        prompt_sets,
        max_tokens,
        concurrency: args.concurrency.clone(),
        base: WorkloadConfig {
            endpoint,
            warmup: args.warmup,
            num_requests: args.num_requests,
            // `inf`: no arrival schedule, every request at once up to the concurrency.
            rate: args.rate.filter(|r| r.is_finite()),
            burstiness: args.burstiness,
            request_timeout_s: request_timeout.as_secs_f64(),
            seed: args.seed,
            slo,
            warm_connections: !args.cold_connections,
            ..WorkloadConfig::default()
        },
        percentiles,
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

/// A `random` or `prefix_repetition` set, one prompt per request, and the
/// output length that names its points (each request asks for its own).
#[allow(clippy::type_complexity)]
fn generated(
    args: &BenchArgs,
    client: &Client,
    model: &str,
    tokenizer: Option<&Tokenizer>,
    text_dir: Option<PathBuf>,
) -> anyhow::Result<(Vec<(String, Vec<workload::Prompt>)>, Vec<u32>)> {
    use servegate::config::{PrefixRepetitionPrompts, PromptSource, RandomPrompts};
    // `--tokenizer`, else the model's in the Hugging Face cache, else the
    // server's own through `/tokenize`.
    let (cached, server);
    let tokenizer: &dyn Codec = match tokenizer {
        Some(t) => t,
        None => match servegate::quality::data::cached_tokenizer(model) {
            Some(path) => {
                cached = Tokenizer::from_file(&path).map_err(anyhow::Error::msg)?;
                &cached
            }
            None => {
                server = ServerTokenizer::connect(client.clone(), model).map_err(|e| {
                    anyhow::anyhow!(
                        "--dataset-name random and prefix_repetition make prompts of exact token lengths: \
                         pass --tokenizer (a tokenizer.json); `{model}` is not in the Hugging Face cache, \
                         and {e}"
                    )
                })?;
                eprintln!("prompts made with the server's own tokenizer (/tokenize)");
                &server
            }
        },
    };
    let (source, output_len) = match args.dataset_name {
        DatasetArg::Random => (
            PromptSource::Random {
                random: RandomPrompts {
                    input_len: args.random_input_len,
                    output_len: args.random_output_len,
                    range_ratio: args.random_range_ratio,
                    prefix_len: args.random_prefix_len,
                },
            },
            args.random_output_len,
        ),
        _ => (
            PromptSource::PrefixRepetition {
                prefix_repetition: PrefixRepetitionPrompts {
                    num_prefixes: args.prefix_repetition_num_prefixes,
                    prefix_len: args.prefix_repetition_prefix_len,
                    suffix_len: args.prefix_repetition_suffix_len,
                    output_len: args.prefix_repetition_output_len,
                },
            },
            args.prefix_repetition_output_len,
        ),
    };
    // Without a project, a built-in sentence is the text prompts are cut from.
    let dir = text_dir.unwrap_or_default();
    let wanted = (args.warmup + args.num_requests) as usize;
    let prompts = workload::load_prompts(&dir, &dir, &source, Some(tokenizer), wanted, args.seed)
        .map_err(anyhow::Error::msg)?;
    Ok((vec![(source.label(), prompts)], vec![output_len]))
}

/// The points' table, the errors behind failed requests, client-lag warnings.
fn print_points(file: &BenchFile) {
    println!("{}", grid::table(&file.scenarios));
    if let Some(table) = grid::percentile_table(&file.scenarios) {
        println!("Latency percentiles (ms)");
        println!("{table}");
    }
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
