//! The CUDA driver through `cust`, for device facts, and NVML through
//! `nvml-wrapper`, for memory. No `cust` or NVML type leaves this file.
//!
//! Nothing here creates a CUDA context: device attributes need only the
//! driver initialised, and memory comes from NVML (what `nvidia-smi` reads),
//! so servegate takes no device memory from the engines it measures.

use std::sync::OnceLock;

use cust::device::{Device, DeviceAttribute};
use cust::CudaFlags;
use nvml_wrapper::enums::device::UsedGpuMemory;
use nvml_wrapper::Nvml;

use super::{peak_bandwidth_bytes_per_s, DeviceInfo, Probe};

/// Where the device facts come from.
const FACTS: &str = "CUDA driver attributes (no context)";

/// The driver's devices, or why there are none.
fn devices() -> &'static Result<Vec<Device>, String> {
    static DEVICES: OnceLock<Result<Vec<Device>, String>> = OnceLock::new();
    DEVICES.get_or_init(|| {
        cust::init(CudaFlags::empty())
            .map_err(|e| format!("the CUDA driver found no usable device ({e})"))?;
        let n = Device::num_devices().map_err(|e| format!("cannot count devices ({e})"))?;
        if n == 0 {
            return Err("the CUDA driver reports no device".to_string());
        }
        (0..n)
            .map(|i| Device::get_device(i).map_err(|e| format!("device {i}: {e}")))
            .collect()
    })
}

/// NVML, loaded once (`libnvidia-ml.so` at run time), or why it is not there.
fn nvml() -> &'static Result<Nvml, String> {
    static NVML: OnceLock<Result<Nvml, String>> = OnceLock::new();
    NVML.get_or_init(|| Nvml::init().map_err(|e| format!("NVML unavailable ({e})")))
}

fn attribute(device: Device, attr: DeviceAttribute) -> i32 {
    device.get_attribute(attr).unwrap_or(0)
}

/// The NVML index of CUDA device `device`: the one on the same PCI bus
/// (CUDA orders devices fastest first, NVML by bus), else the same index.
fn nvml_index(nvml: &Nvml, device: Device, cuda_index: u32) -> u32 {
    let bus = (
        attribute(device, DeviceAttribute::PciDomainId) as u32,
        attribute(device, DeviceAttribute::PciBusId) as u32,
        attribute(device, DeviceAttribute::PciDeviceId) as u32,
    );
    let count = nvml.device_count().unwrap_or(0);
    (0..count)
        .find(|&i| {
            nvml.device_by_index(i)
                .and_then(|d| d.pci_info())
                .is_ok_and(|p| (p.domain, p.bus, p.device) == bus)
        })
        .unwrap_or(cuda_index)
}

pub fn probe() -> Probe {
    let devices = match devices() {
        Ok(d) => d,
        Err(reason) => {
            return Probe::NoDevice {
                reason: reason.clone(),
            }
        }
    };
    let nvml = nvml();
    let devices = devices
        .iter()
        .enumerate()
        .map(|(i, &device)| {
            let clock = attribute(device, DeviceAttribute::MemoryClockRate).max(0) as u64;
            let width = attribute(device, DeviceAttribute::GlobalMemoryBusWidth).max(0) as u64;
            let (free, memory_source) = match nvml {
                Ok(nvml) => {
                    let index = nvml_index(nvml, device, i as u32);
                    match nvml.device_by_index(index).and_then(|d| d.memory_info()) {
                        Ok(m) => (Some(m.free), format!("NVML (device {index})")),
                        Err(e) => (None, format!("none: NVML device {index}: {e}")),
                    }
                }
                Err(reason) => (None, format!("none: {reason}")),
            };
            DeviceInfo {
                index: i as u32,
                name: device.name().unwrap_or_else(|_| "unknown".into()),
                compute_capability: (
                    attribute(device, DeviceAttribute::ComputeCapabilityMajor),
                    attribute(device, DeviceAttribute::ComputeCapabilityMinor),
                ),
                sm_count: attribute(device, DeviceAttribute::MultiprocessorCount),
                total_memory_bytes: device.total_memory().unwrap_or(0) as u64,
                free_memory_bytes: free,
                memory_clock_khz: clock,
                bus_width_bits: width,
                peak_bandwidth_bytes_per_s: peak_bandwidth_bytes_per_s(clock, width),
                facts_source: FACTS.to_string(),
                memory_source,
            }
        })
        .collect();
    Probe::Devices { devices }
}

/// Memory in use per device (NVML's order); `None` without NVML.
pub fn memory_used() -> Option<Vec<u64>> {
    let nvml = nvml().as_ref().ok()?;
    let count = nvml.device_count().ok()?;
    (0..count)
        .map(|i| {
            nvml.device_by_index(i)
                .and_then(|d| d.memory_info())
                .ok()
                .map(|m| m.used)
        })
        .collect()
}

/// Every process holding device memory, with its bytes summed over
/// devices; `None` without NVML, or where it cannot tell per process.
pub fn process_memory() -> Option<Vec<(u32, u64)>> {
    let nvml = nvml().as_ref().ok()?;
    let mut out: Vec<(u32, u64)> = Vec::new();
    for i in 0..nvml.device_count().ok()? {
        let device = nvml.device_by_index(i).ok()?;
        for p in device.running_compute_processes().ok()? {
            let bytes = match p.used_gpu_memory {
                UsedGpuMemory::Used(b) => b,
                UsedGpuMemory::Unavailable => return None,
            };
            match out.iter_mut().find(|(pid, _)| *pid == p.pid) {
                Some((_, sum)) => *sum += bytes,
                None => out.push((p.pid, bytes)),
            }
        }
    }
    Some(out)
}

/// Where memory figures come from, or why there are none.
pub fn memory_source() -> String {
    match nvml() {
        Ok(nvml) => match nvml.sys_driver_version() {
            Ok(v) => format!("NVML (driver {v})"),
            Err(_) => "NVML".to_string(),
        },
        Err(reason) => format!("none: {reason}"),
    }
}
