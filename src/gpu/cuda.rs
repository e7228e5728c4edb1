//! The CUDA driver through `cust`. No `cust` type leaves this file.

use std::sync::OnceLock;

use cust::context::{Context, CurrentContext};
use cust::device::{Device, DeviceAttribute};
use cust::CudaFlags;

use super::{peak_bandwidth_bytes_per_s, DeviceInfo, Probe};

/// Driver state shared by every call: one primary context per device, made
/// once. Probing a machine without a device or driver leaves `Err`.
struct Driver {
    devices: Vec<(Device, Context)>,
}

// SAFETY: contexts are only made current on the calling thread under the lock below.
unsafe impl Send for Driver {}
unsafe impl Sync for Driver {}

fn driver() -> &'static Result<std::sync::Mutex<Driver>, String> {
    static DRIVER: OnceLock<Result<std::sync::Mutex<Driver>, String>> = OnceLock::new();
    DRIVER.get_or_init(|| {
        cust::init(CudaFlags::empty())
            .map_err(|e| format!("the CUDA driver found no usable device ({e})"))?;
        let n = Device::num_devices().map_err(|e| format!("cannot count devices ({e})"))?;
        if n == 0 {
            return Err("the CUDA driver reports no device".to_string());
        }
        let mut devices = Vec::new();
        for i in 0..n {
            let device = Device::get_device(i).map_err(|e| format!("device {i}: {e}"))?;
            let ctx = Context::new(device).map_err(|e| format!("device {i}: no context ({e})"))?;
            devices.push((device, ctx));
        }
        Ok(std::sync::Mutex::new(Driver { devices }))
    })
}

fn attribute(device: Device, attr: DeviceAttribute) -> i32 {
    device.get_attribute(attr).unwrap_or(0)
}

/// (free, total) of one device, with its context current on this thread.
fn mem_info(ctx: &Context) -> Option<(u64, u64)> {
    CurrentContext::set_current(ctx).ok()?;
    cust::memory::mem_get_info()
        .ok()
        .map(|(free, total)| (free as u64, total as u64))
}

pub fn probe() -> Probe {
    let driver = match driver() {
        Ok(d) => d.lock().expect("driver lock"),
        Err(reason) => {
            return Probe::NoDevice {
                reason: reason.clone(),
            }
        }
    };
    let devices = driver
        .devices
        .iter()
        .enumerate()
        .map(|(i, (device, ctx))| {
            let clock = attribute(*device, DeviceAttribute::MemoryClockRate).max(0) as u64;
            let width = attribute(*device, DeviceAttribute::GlobalMemoryBusWidth).max(0) as u64;
            DeviceInfo {
                index: i as u32,
                name: device.name().unwrap_or_else(|_| "unknown".into()),
                compute_capability: (
                    attribute(*device, DeviceAttribute::ComputeCapabilityMajor),
                    attribute(*device, DeviceAttribute::ComputeCapabilityMinor),
                ),
                sm_count: attribute(*device, DeviceAttribute::MultiprocessorCount),
                total_memory_bytes: device.total_memory().unwrap_or(0) as u64,
                free_memory_bytes: mem_info(ctx).map(|(free, _)| free),
                memory_clock_khz: clock,
                bus_width_bits: width,
                peak_bandwidth_bytes_per_s: peak_bandwidth_bytes_per_s(clock, width),
            }
        })
        .collect();
    Probe::Devices { devices }
}

pub fn memory_used() -> Option<Vec<u64>> {
    let driver = driver().as_ref().ok()?.lock().expect("driver lock");
    driver
        .devices
        .iter()
        .map(|(_, ctx)| mem_info(ctx).map(|(free, total)| total - free))
        .collect()
}
