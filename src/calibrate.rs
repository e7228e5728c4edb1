//! `servegate calibrate`: measures servegate's own timing error.
//!
//! The embedded engine runs in constant-timing mode (every stream gets its
//! first token `ttft` after arrival and each next one `itl` later,
//! independently of the others) in a child process, so the figures here are
//! the client's alone: whatever the measured TTFT and ITL differ from the
//! configured truth is measurement error (plus the engine's timer tick).

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::client::Client;
use crate::config::WorkloadConfig;
use crate::loadgen::{self, BenchSpec};
use crate::workload::Prompt;

#[derive(Debug, Clone)]
pub struct CalibrateOptions {
    pub levels: Vec<u32>,
    pub ttft_ms: f64,
    pub itl_ms: f64,
    pub output_tokens: u32,
    /// Every stream sent at the same instant, rather than spread over one
    /// request's duration as independent users would be.
    pub lockstep: bool,
}

impl Default for CalibrateOptions {
    fn default() -> Self {
        Self {
            levels: vec![1, 64, 256, 1000],
            ttft_ms: 50.0,
            itl_ms: 20.0,
            output_tokens: 32,
            lockstep: false,
        }
    }
}

/// Figures for one concurrency level.
#[derive(Debug, Clone, Serialize)]
pub struct Level {
    pub concurrency: u32,
    /// `warm`: the connections were open before measuring; `cold`: each
    /// stream opened its own.
    pub connections: &'static str,
    pub requests: usize,
    pub failed: usize,
    pub ttft_p50_ms: f64,
    pub ttft_p99_ms: f64,
    pub itl_p50_ms: f64,
    pub itl_stddev_ms: f64,
    pub events_per_s: f64,
    /// Client CPU (user + system) per million stream events.
    pub cpu_s_per_million_events: f64,
    /// The engine's CPU per million stream events (from /proc; NaN where unavailable).
    pub engine_cpu_s_per_million_events: f64,
    /// servegate's own peak resident memory while the level ran, bytes
    /// (Linux; `None` elsewhere).
    pub client_peak_rss_bytes: Option<u64>,
}

/// Starts a new peak-memory window for this process (Linux: writing 5 to
/// `clear_refs` resets `VmHWM` to the current resident size).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident memory since the last reset, bytes.
fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The engine as a child process; killed when dropped.
struct EngineProcess(Child);

impl Drop for EngineProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// CPU seconds (user + system) this process has used.
fn process_cpu_s() -> f64 {
    // SAFETY: getrusage writes into the zeroed struct we own.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// CPU seconds a child process has used, from `/proc/PID/stat` (Linux).
fn child_cpu_s(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return f64::NAN;
    };
    // Fields after the command name (which may contain spaces) start after ')'.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 here.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) + ticks(12)) / hz
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub async fn run(options: &CalibrateOptions) -> anyhow::Result<Vec<Level>> {
    crate::open_files::raise_soft_limit();
    let port = free_port()?;
    let exe = std::env::current_exe()?;
    let child = Command::new(exe)
        .args(["sim", "--port", &port.to_string()])
        .args([
            "--ttft-ms",
            &options.ttft_ms.to_string(),
            "--tpot-ms",
            &options.itl_ms.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let engine_pid = child.id();
    let _engine = EngineProcess(child);
    let url = format!("http://127.0.0.1:{port}");
    Client::new(&url, None)?
        .wait_ready("/v1/models", Duration::from_secs(20))
        .await
        .map_err(anyhow::Error::msg)?;
    let prompts = Arc::new(vec![Prompt {
        text: "calibration prompt".into(),
        tokens: None,
        max_tokens: None,
        arrival_s: None,
        turn: None,
    }]);
    let request_s =
        (options.ttft_ms + options.itl_ms * (options.output_tokens.max(1) - 1) as f64) / 1000.0;
    let mut levels = Vec::new();
    for &c in &options.levels {
        for warm in [false, true] {
            // A fresh client each time: no connection left over from before.
            let client = Client::new(&url, None)?;
            let requests = (2 * c).max(8);
            let spec = BenchSpec {
                model: "servegate-sim".into(),
                workload: WorkloadConfig {
                    max_tokens: options.output_tokens,
                    concurrency: c,
                    num_requests: requests,
                    // No warm-up requests: they would open the connections
                    // the cold measurement is about.
                    warmup: 0,
                    warm_connections: warm,
                    ramp_up_s: if options.lockstep { 0.0 } else { request_s },
                    ..WorkloadConfig::default()
                },
                prompts: prompts.clone(),
                tokenizer: None,
                progress: None,
                dialect: Default::default(),
                measuring: None,
            };
            let cpu_before = process_cpu_s();
            let engine_before = child_cpu_s(engine_pid);
            reset_peak_rss();
            let result = loadgen::run(&client, &spec).await;
            let client_peak_rss_bytes = peak_rss_bytes();
            let cpu = process_cpu_s() - cpu_before;
            let engine_cpu = child_cpu_s(engine_pid) - engine_before;
            let s = &result.summary;
            let events: usize = result.records.iter().map(|r| r.event_times_s.len()).sum();
            levels.push(Level {
                concurrency: c,
                connections: if warm { "warm" } else { "cold" },
                requests: requests as usize,
                failed: s.failed,
                ttft_p50_ms: s.ttft_ms.p50,
                ttft_p99_ms: s.ttft_ms.p99,
                itl_p50_ms: s.itl_ms.p50,
                itl_stddev_ms: s.itl_ms.stddev,
                events_per_s: if s.duration_s > 0.0 {
                    events as f64 / s.duration_s
                } else {
                    0.0
                },
                cpu_s_per_million_events: cpu / events as f64 * 1e6,
                engine_cpu_s_per_million_events: engine_cpu / events as f64 * 1e6,
                client_peak_rss_bytes,
            });
        }
    }
    Ok(levels)
}

/// The levels as a table, each measured with cold and with warm connections.
pub fn table(options: &CalibrateOptions, levels: &[Level]) -> String {
    let mut t = comfy_table::Table::new();
    t.load_preset(comfy_table::presets::UTF8_FULL_CONDENSED);
    t.set_header(vec![
        "concurrency".to_string(),
        "connections".into(),
        "requests".into(),
        "failed".into(),
        format!("TTFT p50 (truth {})", options.ttft_ms),
        "TTFT p50 error".into(),
        "TTFT p99".into(),
        format!("ITL p50 (truth {})", options.itl_ms),
        "ITL stddev".into(),
        "events/s".into(),
        "client CPU s / M events".into(),
        "engine CPU s / M events".into(),
        "client peak RSS".into(),
    ]);
    for l in levels {
        t.add_row(vec![
            l.concurrency.to_string(),
            l.connections.to_string(),
            l.requests.to_string(),
            l.failed.to_string(),
            format!("{:.2} ms", l.ttft_p50_ms),
            format!("{:+.2} ms", l.ttft_p50_ms - options.ttft_ms),
            format!("{:.2} ms", l.ttft_p99_ms),
            format!("{:.2} ms", l.itl_p50_ms),
            format!("{:.3} ms", l.itl_stddev_ms),
            format!("{:.0}", l.events_per_s),
            format!("{:.1}", l.cpu_s_per_million_events),
            format!("{:.1}", l.engine_cpu_s_per_million_events),
            l.client_peak_rss_bytes
                .map_or_else(|| "—".into(), |b| format!("{:.1} MB", b as f64 / 1e6)),
        ]);
    }
    t.to_string()
}
