//! `sim`, `calibrate`, `train-tokenizer` and `gpu`: the embedded engine and
//! the machine.

use std::path::{Path, PathBuf};

use servegate::calibrate;
use servegate::config::SimSpec;
use servegate::sim::SimServer;

use super::{project_root, runtime, CliError};

#[derive(clap::Args)]
pub(super) struct SimArgs {
    /// Port to listen on.
    #[arg(long, default_value_t = 8100)]
    port: u16,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    host: std::net::IpAddr,
    /// The model name the engine serves.
    #[arg(long, default_value = "servegate-sim")]
    model: String,
    /// `constant`, `engine`, or a `[sim_profiles]` entry of the project's servegate.toml.
    #[arg(long)]
    profile: Option<String>,
    /// Time to first token, ms (over the profile's).
    #[arg(long)]
    ttft_ms: Option<f64>,
    /// Time between tokens, ms (over the profile's).
    #[arg(long, visible_alias = "tpot-ms")]
    itl_ms: Option<f64>,
    /// Most sequences in one batch (engine profile).
    #[arg(long)]
    max_num_seqs: Option<u32>,
    /// Multiplies every time (1.1: 10% slower).
    #[arg(long)]
    slowdown: Option<f64>,
    /// Noise added to log-probabilities (standard deviation).
    #[arg(long)]
    logprob_noise: Option<f64>,
    /// Fraction of requests answered with HTTP 500.
    #[arg(long)]
    error_rate: Option<f64>,
    /// Fraction of streams cut off midway.
    #[arg(long)]
    drop_rate: Option<f64>,
    /// A pause in every stream, ms.
    #[arg(long)]
    stall_ms: Option<f64>,
    /// Time before the server answers readiness, ms.
    #[arg(long)]
    startup_delay_ms: Option<f64>,
    /// Exit after this many requests (a crashing server, for tests).
    #[arg(long)]
    crash_after: Option<u64>,
    /// Prompt blocks computed for an earlier request are not prefilled again
    /// (engine mode; its timing then shows the cache).
    #[arg(long)]
    prefix_caching: bool,
    /// Seed of the engine's randomness (faults, noise).
    #[arg(long)]
    seed: Option<u64>,
    /// Engine mode on the GPU (`cuda` build): every step runs kernels that
    /// read the model's weights and the batch's KV cache.
    #[arg(long)]
    cuda: bool,
    /// `--cuda`: bytes of weights each decode step reads (default 2 GB).
    #[arg(long)]
    model_weights_bytes: Option<u64>,
    /// `--cuda`: KV-cache bytes per context token each step reads (default 128 KiB).
    #[arg(long)]
    kv_bytes_per_token: Option<u64>,
    /// Every knob as a `sim` table in JSON (how servegate starts a
    /// `cuda`-mode target as a process of its own); flags win over it.
    #[arg(long, hide = true)]
    spec_json: Option<String>,
    /// Append every prompt of every completion request to this file, as a
    /// JSON line of token ids (for comparing what two clients sent).
    #[arg(long, value_name = "FILE")]
    log_prompts: Option<PathBuf>,
    /// Write the engine's tokenizer.json to FILE and exit (for prompts of
    /// exact token lengths against it, `bench --tokenizer FILE`).
    #[arg(long, value_name = "FILE")]
    export_tokenizer: Option<PathBuf>,
}

pub(super) fn sim(args: &SimArgs, root: Option<PathBuf>) -> Result<(), CliError> {
    if let Some(path) = &args.export_tokenizer {
        return servegate::files::write_atomic(
            path,
            servegate::tokenizer::ENGINE_TOKENIZER_JSON.as_bytes(),
        )
        .map_err(|e| CliError::Failed(format!("--export-tokenizer {}: {e:#}", path.display())));
    }
    let spec = SimSpec {
        ttft_ms: args.ttft_ms,
        tpot_ms: args.itl_ms,
        max_num_seqs: args.max_num_seqs,
        slowdown: args.slowdown,
        logprob_noise: args.logprob_noise,
        error_rate: args.error_rate,
        drop_rate: args.drop_rate,
        stall_ms: args.stall_ms,
        startup_delay_ms: args.startup_delay_ms,
        crash_after: args.crash_after,
        seed: args.seed,
        prefix_caching: args.prefix_caching.then_some(true),
        cuda: args.cuda.then_some(true),
        model_weights_bytes: args.model_weights_bytes,
        kv_bytes_per_token: args.kv_bytes_per_token,
        // `--cuda` alone means the engine's scheduler on the GPU.
        profile: args
            .profile
            .clone()
            .or_else(|| args.cuda.then(|| "engine".to_string())),
        ..SimSpec::default()
    };
    let spec = match &args.spec_json {
        Some(json) => spec.over(
            &serde_json::from_str::<SimSpec>(json)
                .map_err(|e| CliError::Usage(format!("--spec-json: {e}")))?,
        ),
        None => spec,
    };
    // Profiles defined in the project's servegate.toml, when there is one.
    let profiles = project_root(root)
        .and_then(|r| servegate::config::load_project(&r, &[]).ok())
        .map(|c| c.sim_profiles)
        .unwrap_or_default();
    let params =
        servegate::config::SimParams::resolve(&spec, &profiles).map_err(|(knob, message)| {
            CliError::Usage(format!("--{}: {message}", knob.replace('_', "-")))
        })?;
    // `servegate sim &` in a script starts with SIGINT ignored: handle it.
    servegate::server::process::default_sigint();
    let prompt_log = match &args.log_prompts {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| CliError::Failed(format!("--log-prompts {}: {e}", path.display())))?,
        ),
        None => None,
    };
    let server = SimServer::start_logging(
        params,
        &args.model,
        (args.host, args.port).into(),
        true,
        prompt_log,
    )
    .map_err(|e| {
        CliError::Failed(match e.kind() {
            // A GPU that is not there, or would not take the model.
            std::io::ErrorKind::InvalidInput => e.to_string(),
            _ => format!("cannot listen on {}:{}: {e}", args.host, args.port),
        })
    })?;
    eprintln!(
        "servegate sim: serving `{}` on {}",
        args.model,
        server.url()
    );
    server.join();
    Ok(())
}

/// `servegate calibrate`: servegate's own timing error.
pub(super) fn calibrate(
    levels: Vec<u32>,
    ttft_ms: f64,
    itl_ms: f64,
    tokens: u32,
    lockstep: bool,
) -> Result<(), CliError> {
    let options = calibrate::CalibrateOptions {
        levels,
        ttft_ms,
        itl_ms,
        output_tokens: tokens,
        lockstep,
    };
    let levels = runtime()
        .block_on(calibrate::run(&options))
        .map_err(|e| CliError::Failed(format!("{e:#}")))?;
    println!("{}", calibrate::table(&options, &levels));
    Ok(())
}

/// `servegate train-tokenizer`: the embedded engine's tokenizer, trained and written.
pub(super) fn train_tokenizer(output: &Path, vocab_size: usize) -> Result<(), CliError> {
    servegate::sim::lm::train_tokenizer(vocab_size)
        .and_then(|t| t.save(output, true).map_err(|e| e.to_string()))
        .map_err(CliError::Failed)?;
    println!("wrote {}", output.display());
    Ok(())
}

pub(super) fn gpu(json: bool) -> Result<(), CliError> {
    let probe = servegate::gpu::probe();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&probe).unwrap_or_default()
        );
        return Ok(());
    }
    match &probe {
        servegate::gpu::Probe::NotBuilt { reason } | servegate::gpu::Probe::NoDevice { reason } => {
            println!("no GPU: {reason}");
            println!("memory: {}", servegate::gpu::memory_source());
        }
        servegate::gpu::Probe::Devices { devices } => {
            let mut t = comfy_table::Table::new();
            t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
            t.set_header(vec![
                "GPU",
                "name",
                "compute",
                "SMs",
                "memory",
                "free",
                "memory clock",
                "bus",
                "peak bandwidth",
            ]);
            let gib = |b: u64| format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64);
            for d in devices {
                t.add_row(vec![
                    d.index.to_string(),
                    d.name.clone(),
                    format!("{}.{}", d.compute_capability.0, d.compute_capability.1),
                    d.sm_count.to_string(),
                    gib(d.total_memory_bytes),
                    d.free_memory_bytes.map(gib).unwrap_or_else(|| "?".into()),
                    format!("{} MHz", d.memory_clock_khz / 1000),
                    format!("{} bit", d.bus_width_bits),
                    format!("{:.0} GB/s", d.peak_bandwidth_bytes_per_s / 1e9),
                ]);
            }
            println!("{t}");
            // Which source gave each figure: servegate holds no CUDA context.
            let mut sources: Vec<String> = devices
                .iter()
                .map(|d| {
                    format!(
                        "GPU {}: facts from {}; free memory from {}",
                        d.index, d.facts_source, d.memory_source
                    )
                })
                .collect();
            sources.dedup();
            for line in sources {
                println!("{line}");
            }
            println!(
                "memory while servers run: {}",
                servegate::gpu::memory_source()
            );
        }
    }
    Ok(())
}
