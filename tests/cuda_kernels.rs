//! The embedded engine's GPU kernels on a real device (`cuda` build only).
//! Each trial is listed as ignored where no device answers, so a machine
//! without a GPU says so at list time instead of passing a test that
//! could not run.

use std::time::Duration;

use libtest_mimic::{Arguments, Failed, Trial};
use servegate::config::CudaModel;
use servegate::sim::gpu_step::GpuStepper;

fn main() {
    let args = Arguments::from_args();
    let no_device = !servegate::gpu::available();
    let trials = vec![
        Trial::test("ptx_loads_and_a_step_runs_on_the_device", step_runs)
            .with_ignored_flag(no_device),
        Trial::test(
            "a_step_reads_at_most_what_bandwidth_allows",
            step_within_roofline,
        )
        .with_ignored_flag(no_device),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The PTX loads (`Module::from_ptx`), both kernels launch, and a step with
/// a prefill takes longer than one without.
fn step_runs() -> Result<(), Failed> {
    let model = CudaModel {
        weights_bytes: 256 << 20,
        kv_bytes_per_token: 4096,
    };
    let gpu = GpuStepper::start(model, 4096)?;
    let rt = rt();
    let decode = rt.block_on(gpu.step(1000, 0))?;
    let prefill = rt.block_on(gpu.step(1000, 2000))?;
    if decode.is_zero() || prefill <= decode {
        return Err(format!("decode {decode:?}, with a prefill {prefill:?}").into());
    }
    Ok(())
}

/// A memory-bound step cannot beat the device's peak bandwidth: reading
/// 1 GiB takes at least 1 GiB / peak bandwidth.
fn step_within_roofline() -> Result<(), Failed> {
    let bytes: u64 = 1 << 30;
    let model = CudaModel {
        weights_bytes: bytes,
        kv_bytes_per_token: 0,
    };
    let probe = servegate::gpu::probe();
    let device = &probe.devices()[0];
    let floor = Duration::from_secs_f64(bytes as f64 / device.peak_bandwidth_bytes_per_s);
    let gpu = GpuStepper::start(model, 16)?;
    let rt = rt();
    let _ = rt.block_on(gpu.step(0, 0))?;
    let took = (0..5)
        .map(|_| rt.block_on(gpu.step(0, 0)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .min()
        .expect("five steps");
    println!(
        "{}: 1 GiB step {:.3} ms, bandwidth floor {:.3} ms ({:.0}% of peak)",
        device.name,
        took.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        floor.as_secs_f64() / took.as_secs_f64() * 100.0
    );
    if took < floor {
        return Err(format!("{took:?} is faster than the bandwidth allows ({floor:?})").into());
    }
    Ok(())
}
