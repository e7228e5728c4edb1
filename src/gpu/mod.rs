//! GPU facts: which devices there are, how much memory the servers use, and
//! what memory bandwidth allows for decode. One API for both builds: with the
//! `cuda` feature it asks the CUDA driver (through `cust`, kept inside
//! `cuda.rs`); without it, or without a device, every call says "no GPU".

#[cfg(feature = "cuda")]
mod cuda;
#[cfg(not(feature = "cuda"))]
mod none;
#[cfg(feature = "cuda")]
use cuda as backend;
#[cfg(not(feature = "cuda"))]
use none as backend;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One device as the driver describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub compute_capability: (i32, i32),
    pub sm_count: i32,
    pub total_memory_bytes: u64,
    pub free_memory_bytes: Option<u64>,
    /// Memory clock in kHz, as the driver reports it.
    pub memory_clock_khz: u64,
    pub bus_width_bits: u64,
    /// Derived: 2 × clock × bus width / 8 (double data rate).
    pub peak_bandwidth_bytes_per_s: f64,
    /// Where the facts above came from.
    #[serde(default)]
    pub facts_source: String,
    /// Where `free_memory_bytes` came from, or why it is missing.
    #[serde(default)]
    pub memory_source: String,
}

/// What `probe` found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Probe {
    /// The binary was built without the `cuda` feature.
    NotBuilt {
        reason: String,
    },
    /// CUDA support is built in, but no device answered.
    NoDevice {
        reason: String,
    },
    Devices {
        devices: Vec<DeviceInfo>,
    },
}

impl Probe {
    pub fn devices(&self) -> &[DeviceInfo] {
        match self {
            Probe::Devices { devices } => devices,
            _ => &[],
        }
    }
}

/// Peak memory bandwidth from the memory clock (kHz) and the bus width (bits).
/// Memory transfers twice per clock (double data rate).
pub fn peak_bandwidth_bytes_per_s(memory_clock_khz: u64, bus_width_bits: u64) -> f64 {
    2.0 * memory_clock_khz as f64 * 1000.0 * bus_width_bits as f64 / 8.0
}

/// Decode at batch 1 reads every weight once per token, so memory bandwidth
/// caps it at bandwidth / weight bytes tokens per second per sequence.
pub fn roofline_tokens_per_s(bandwidth_bytes_per_s: f64, weight_bytes: u64) -> f64 {
    if weight_bytes == 0 {
        return f64::NAN;
    }
    bandwidth_bytes_per_s / weight_bytes as f64
}

/// The roofline of one case: what bandwidth allows, what the candidate did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Roofline {
    pub device: String,
    pub weight_bytes: u64,
    pub bandwidth_bytes_per_s: f64,
    /// Tokens per second per sequence that bandwidth allows at batch 1.
    pub ideal_tokens_per_s: f64,
    /// The candidate's decode rate per sequence (1000 / TPOT p50).
    pub measured_tokens_per_s: f64,
    pub fraction: f64,
}

impl Roofline {
    pub fn new(device: &DeviceInfo, weight_bytes: u64, tpot_p50_ms: f64) -> Self {
        let ideal = roofline_tokens_per_s(device.peak_bandwidth_bytes_per_s, weight_bytes);
        let measured = if tpot_p50_ms > 0.0 {
            1000.0 / tpot_p50_ms
        } else {
            f64::NAN
        };
        Self {
            device: device.name.clone(),
            weight_bytes,
            bandwidth_bytes_per_s: device.peak_bandwidth_bytes_per_s,
            ideal_tokens_per_s: ideal,
            measured_tokens_per_s: measured,
            fraction: measured / ideal,
        }
    }
}

/// Total tensor bytes of every `*.safetensors` file in `dir`, read from the
/// file headers alone (weights are never loaded).
pub fn safetensors_weight_bytes(dir: &Path) -> Result<u64, String> {
    use std::io::Read;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no *.safetensors file in {}", dir.display()));
    }
    let mut total = 0u64;
    for path in files {
        let mut f = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut len = [0u8; 8];
        f.read_exact(&mut len)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let n = u64::from_le_bytes(len);
        if n > 100 * 1024 * 1024 {
            return Err(format!(
                "{}: header of {n} bytes is not plausible",
                path.display()
            ));
        }
        let mut header = vec![0u8; n as usize];
        f.read_exact(&mut header)
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let metadata: safetensors::tensor::Metadata = serde_json::from_slice(&header)
            .map_err(|e| format!("{}: not a safetensors header: {e}", path.display()))?;
        let data: u64 = metadata
            .tensors()
            .values()
            .map(|t| (t.data_offsets.1 - t.data_offsets.0) as u64)
            .sum();
        let file_len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if file_len < 8 + n + data {
            return Err(format!("{}: shorter than its header says", path.display()));
        }
        total += data;
    }
    Ok(total)
}

/// Asks the driver for its devices.
pub fn probe() -> Probe {
    backend::probe()
}

/// Whether a usable GPU was found.
pub fn available() -> bool {
    !probe().devices().is_empty()
}

/// One line for reports and for `servegate list`'s ignore reasons.
pub fn describe() -> String {
    match probe() {
        Probe::NotBuilt { reason } | Probe::NoDevice { reason } => format!("no GPU: {reason}"),
        Probe::Devices { devices } => devices
            .iter()
            .map(|d| {
                format!(
                    "GPU {}: {} ({:.0} GiB)",
                    d.index,
                    d.name,
                    d.total_memory_bytes as f64 / (1u64 << 30) as f64
                )
            })
            .collect::<Vec<_>>()
            .join("; "),
    }
}

/// Device memory in use per device, in bytes (NVML); `None` without a GPU
/// or without NVML.
pub fn memory_used_per_device() -> Option<Vec<u64>> {
    backend::memory_used()
}

/// Device memory in use, summed over devices; `None` without a GPU.
pub fn memory_used_bytes() -> Option<u64> {
    memory_used_per_device().map(|v| v.iter().sum())
}

/// Where memory figures come from (`NVML (driver …)`), or why there are none.
pub fn memory_source() -> String {
    backend::memory_source()
}

/// Every process holding device memory and its bytes (summed over
/// devices); `None` where NVML cannot tell per process.
pub fn process_memory() -> Option<Vec<(u32, u64)>> {
    backend::process_memory()
}

/// Tells which process group a process is in (`/proc`); given by the
/// caller, which knows processes.
pub type GroupOf = fn(u32) -> Option<i32>;

/// Bytes held by the processes of group `pgid` among `processes`. Pure.
pub fn group_bytes(processes: &[(u32, u64)], pgid: i32, group_of: GroupOf) -> u64 {
    processes
        .iter()
        .filter(|(pid, _)| group_of(*pid) == Some(pgid))
        .map(|(_, bytes)| bytes)
        .sum()
}

/// The pids of group `pgid` holding device memory now; `None` where NVML
/// cannot tell per process.
pub fn group_pids(pgid: i32, group_of: GroupOf) -> Option<Vec<u32>> {
    Some(
        process_memory()?
            .into_iter()
            .filter(|(pid, _)| group_of(*pid) == Some(pgid))
            .map(|(pid, _)| pid)
            .collect(),
    )
}

/// Waits until none of `pids` holds device memory any more (the driver
/// has released what a stopped server held); gives up after `timeout`.
pub fn wait_for_processes_to_leave(pids: &[u32], timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let Some(now) = process_memory() else {
            return Ok(());
        };
        let left: Vec<&(u32, u64)> = now.iter().filter(|(p, _)| pids.contains(p)).collect();
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let held: u64 = left.iter().map(|(_, b)| b).sum();
            return Err(format!(
                "processes {:?} still hold {:.2} GiB of device memory after {:.0} s",
                left.iter().map(|(p, _)| p).collect::<Vec<_>>(),
                held as f64 / (1u64 << 30) as f64,
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits until device memory in use falls to `level` (plus `slack` bytes),
/// polling; gives up after `timeout` with an error naming what is still
/// held. The fallback where NVML cannot tell per process.
pub fn wait_for_release(level: u64, slack: u64, timeout: Duration) -> Result<(), String> {
    let deadline = Instant::now() + timeout;
    loop {
        let Some(used) = memory_used_bytes() else {
            return Ok(());
        };
        if used <= level + slack {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "GPU memory still {:.2} GiB above its level after {:.0} s",
                (used - level) as f64 / (1u64 << 30) as f64,
                timeout.as_secs_f64()
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Peak and mean memory use of one device over a measured phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemoryStats {
    pub device: u32,
    pub samples: usize,
    pub peak_used_bytes: u64,
    pub mean_used_bytes: f64,
}

/// Folds per-device samples into statistics.
pub fn memory_stats(samples: &[Vec<u64>]) -> Vec<MemoryStats> {
    let devices = samples.iter().map(Vec::len).max().unwrap_or(0);
    (0..devices)
        .map(|d| {
            let values: Vec<u64> = samples.iter().filter_map(|s| s.get(d).copied()).collect();
            MemoryStats {
                device: d as u32,
                samples: values.len(),
                peak_used_bytes: values.iter().copied().max().unwrap_or(0),
                mean_used_bytes: if values.is_empty() {
                    0.0
                } else {
                    values.iter().map(|&v| v as f64).sum::<f64>() / values.len() as f64
                },
            }
        })
        .collect()
}

/// Samples device memory on its own thread every `interval` until stopped:
/// per device, and per watched process group (a target's server).
/// The thread only reads NVML's counters, so the run it watches is not disturbed.
pub struct MemoryMonitor {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Samples>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Default)]
struct Samples {
    devices: Vec<Vec<u64>>,
    /// Per watched group: its peak, when NVML could tell per process.
    group_peaks: Vec<Option<u64>>,
}

/// What a monitor saw: per device, and the peak of each watched group.
pub struct Watched {
    pub devices: Vec<MemoryStats>,
    pub group_peaks: Vec<Option<u64>>,
}

impl MemoryMonitor {
    /// `None` when there is no GPU to watch. `groups` are process groups
    /// whose own memory is followed (`group_of` tells a process's group).
    pub fn start(interval: Duration, groups: Vec<i32>, group_of: GroupOf) -> Option<Self> {
        memory_used_per_device()?;
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Samples {
            devices: Vec::new(),
            group_peaks: vec![None; groups.len()],
        }));
        let (s, out) = (stop.clone(), samples.clone());
        let thread = std::thread::Builder::new()
            .name("gpu-monitor".into())
            .spawn(move || {
                while !s.load(Ordering::Relaxed) {
                    let used = memory_used_per_device();
                    let processes = if groups.is_empty() {
                        None
                    } else {
                        process_memory()
                    };
                    let mut out = out.lock().expect("samples lock");
                    if let Some(used) = used {
                        out.devices.push(used);
                    }
                    if let Some(processes) = processes {
                        for (k, &pgid) in groups.iter().enumerate() {
                            let bytes = group_bytes(&processes, pgid, group_of);
                            let peak = &mut out.group_peaks[k];
                            *peak = Some(peak.map_or(bytes, |p| p.max(bytes)));
                        }
                    }
                    drop(out);
                    std::thread::sleep(interval);
                }
            })
            .ok()?;
        Some(Self {
            stop,
            samples,
            thread: Some(thread),
        })
    }

    pub fn finish(mut self) -> Watched {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let samples = std::mem::take(&mut *self.samples.lock().expect("samples lock"));
        Watched {
            devices: memory_stats(&samples.devices),
            group_peaks: samples.group_peaks,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h100_bandwidth_and_roofline() {
        // H100 SXM5: HBM3 at 2619 MHz on a 5120-bit bus, about 3.35 TB/s.
        let bw = peak_bandwidth_bytes_per_s(2_619_000, 5120);
        assert!((bw / 1e12 - 3.352).abs() < 0.001, "{bw}");
        // An 8-billion-parameter model in bf16 is 16 GB: about 209 tokens/s per sequence.
        let ideal = roofline_tokens_per_s(bw, 16_000_000_000);
        assert!((ideal - 209.5).abs() < 0.5, "{ideal}");
        let device = DeviceInfo {
            index: 0,
            name: "H100".into(),
            compute_capability: (9, 0),
            sm_count: 132,
            total_memory_bytes: 80 << 30,
            free_memory_bytes: None,
            memory_clock_khz: 2_619_000,
            bus_width_bits: 5120,
            peak_bandwidth_bytes_per_s: bw,
            facts_source: String::new(),
            memory_source: String::new(),
        };
        // 10 ms per token is 100 tokens/s: under half of what bandwidth allows.
        let r = Roofline::new(&device, 16_000_000_000, 10.0);
        assert!((r.fraction - 100.0 / ideal).abs() < 1e-9);
        assert!(roofline_tokens_per_s(bw, 0).is_nan());
    }

    #[test]
    fn memory_samples_fold_into_peak_and_mean() {
        let stats = memory_stats(&[vec![10, 100], vec![30, 100], vec![20, 400]]);
        assert_eq!(stats.len(), 2);
        assert_eq!(
            (stats[0].peak_used_bytes, stats[0].mean_used_bytes),
            (30, 20.0)
        );
        assert_eq!((stats[1].peak_used_bytes, stats[1].samples), (400, 3));
    }

    #[test]
    fn safetensors_headers_give_weight_bytes() {
        use safetensors::{serialize, tensor::TensorView, Dtype};
        let dir = tempfile::tempdir().unwrap();
        let a = vec![0u8; 4 * 6];
        let b = vec![0u8; 2 * 10];
        let views = vec![
            ("a", TensorView::new(Dtype::F32, vec![2, 3], &a).unwrap()),
            ("b", TensorView::new(Dtype::BF16, vec![10], &b).unwrap()),
        ];
        std::fs::write(
            dir.path().join("model-00001.safetensors"),
            serialize(views, None).unwrap(),
        )
        .unwrap();
        let c = vec![0u8; 8];
        let views = vec![("c", TensorView::new(Dtype::F64, vec![1], &c).unwrap())];
        std::fs::write(
            dir.path().join("model-00002.safetensors"),
            serialize(views, None).unwrap(),
        )
        .unwrap();
        assert_eq!(safetensors_weight_bytes(dir.path()).unwrap(), 24 + 20 + 8);
        let empty = tempfile::tempdir().unwrap();
        assert!(safetensors_weight_bytes(empty.path())
            .unwrap_err()
            .contains("no *.safetensors"));
    }

    /// On a machine without a GPU, in either build, every call says so and nothing panics.
    /// A group's bytes are its own processes' only, over every device.
    #[test]
    fn group_memory_counts_only_the_groups_processes() {
        let processes = [(100, 5 << 30), (101, 1 << 30), (200, 7 << 30)];
        let group_of = |pid: u32| match pid {
            100 | 101 => Some(100),
            200 => Some(200),
            _ => None,
        };
        assert_eq!(group_bytes(&processes, 100, group_of), 6 << 30);
        assert_eq!(group_bytes(&processes, 200, group_of), 7 << 30);
        assert_eq!(group_bytes(&processes, 300, group_of), 0);
    }

    #[test]
    fn no_gpu_paths_report_cleanly() {
        let p = probe();
        if p.devices().is_empty() {
            assert!(!available());
            assert!(describe().starts_with("no GPU: "), "{}", describe());
            assert_eq!(memory_used_bytes(), None);
            assert!(MemoryMonitor::start(Duration::from_millis(10), vec![1], |_| None).is_none());
            assert!(wait_for_release(0, 0, Duration::from_millis(1)).is_ok());
            assert!(wait_for_processes_to_leave(&[1], Duration::from_millis(1)).is_ok());
            assert_eq!(group_pids(1, |_| Some(1)), None);
            // Without NVML, memory figures say why there are none.
            assert!(memory_source().starts_with("none: "), "{}", memory_source());
            #[cfg(not(feature = "cuda"))]
            assert!(matches!(p, Probe::NotBuilt { .. }));
            #[cfg(feature = "cuda")]
            assert!(matches!(p, Probe::NoDevice { .. }), "{p:?}");
        }
    }
}
