//! The engine's `cuda` mode: each scheduler step's work done by a GPU.
//!
//! A decode step streams, from device memory the engine allocated at start,
//! the bytes a model of the configured size reads per step (its weights,
//! then the batch's KV cache); a step that prefills also runs a
//! compute-bound kernel sized from the prompt tokens. The step then takes
//! what the GPU takes. The kernels are PTX kept in the repository
//! (`cuda/kernels.ptx`, with the CUDA C it corresponds to beside it), loaded
//! through `cust`'s module API, so building needs no CUDA toolkit.
//!
//! A CUDA context is current on one thread, so the device is driven from a
//! thread of its own, and steps are asked of it over a channel.

use std::time::Duration;

use crate::config::CudaModel;

/// The kernels, as the driver JIT-compiles them.
pub const KERNELS_PTX: &str = include_str!("cuda/kernels.ptx");

/// The kernels' entry points, as `KERNELS_PTX` declares them.
pub const KERNELS: [&str; 2] = ["stream_bytes", "prefill_compute"];

/// Rounds of the compute kernel for `flops` over `threads` threads: each
/// round is two fused multiply-adds, four operations. Pure.
pub fn compute_rounds(flops: f64, threads: u64) -> u32 {
    (flops / (4.0 * threads.max(1) as f64))
        .ceil()
        .clamp(0.0, u32::MAX as f64) as u32
}

struct Request {
    context_tokens: usize,
    prefill_tokens: usize,
    reply: tokio::sync::oneshot::Sender<Result<Duration, String>>,
}

/// Runs steps on the GPU, from its own thread.
pub struct GpuStepper {
    requests: std::sync::mpsc::Sender<Request>,
}

impl GpuStepper {
    /// Opens the first device, allocates the model's bytes and the KV cache
    /// (`kv_capacity_tokens` of them, at most 16 GiB) and loads the kernels;
    /// an error starting with "no GPU" where there is none.
    pub fn start(model: CudaModel, kv_capacity_tokens: usize) -> Result<Self, String> {
        let (requests, incoming) = std::sync::mpsc::channel::<Request>();
        let (ready, opened) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("gpu-steps".into())
            .spawn(move || {
                let gpu = match device::Gpu::open(model, kv_capacity_tokens) {
                    Ok(gpu) => {
                        let _ = ready.send(Ok(()));
                        gpu
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                for r in incoming {
                    let _ = r.reply.send(gpu.step(r.context_tokens, r.prefill_tokens));
                }
            })
            .map_err(|e| format!("cannot start the GPU thread: {e}"))?;
        opened
            .recv()
            .map_err(|_| "the GPU thread ended before opening the device".to_string())??;
        Ok(Self { requests })
    }

    /// Runs one step: reads the weights and `context_tokens` tokens of KV
    /// cache, and prefills `prefill_tokens`; returns how long the GPU took.
    pub async fn step(
        &self,
        context_tokens: usize,
        prefill_tokens: usize,
    ) -> Result<Duration, String> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.requests
            .send(Request {
                context_tokens,
                prefill_tokens,
                reply,
            })
            .map_err(|_| "the GPU thread has ended".to_string())?;
        answer
            .await
            .map_err(|_| "the GPU thread has ended".to_string())?
    }
}

#[cfg(feature = "cuda")]
mod device {
    use std::time::{Duration, Instant};

    use cust::context::Context;
    use cust::device::{Device, DeviceAttribute};
    use cust::launch;
    use cust::memory::DeviceBuffer;
    use cust::module::Module;
    use cust::stream::{Stream, StreamFlags};
    use cust::CudaFlags;

    use super::{compute_rounds, CudaModel, KERNELS_PTX};

    /// Threads per block of both kernels.
    const THREADS: u32 = 256;

    /// The device and what the engine keeps on it.
    pub struct Gpu {
        module: Module,
        stream: Stream,
        bytes: DeviceBuffer<u8>,
        sink: DeviceBuffer<u64>,
        out: DeviceBuffer<f32>,
        blocks: u32,
        model: CudaModel,
        // Dropped last (fields drop in order): everything above lives in it.
        _context: Context,
    }

    impl Gpu {
        pub fn open(model: CudaModel, kv_capacity_tokens: usize) -> Result<Self, String> {
            cust::init(CudaFlags::empty())
                .map_err(|e| format!("no GPU: the CUDA driver found no usable device ({e})"))?;
            let device = Device::get_device(0).map_err(|e| format!("no GPU: {e}"))?;
            let context =
                Context::new(device).map_err(|e| format!("no GPU: cannot make a context ({e})"))?;
            let module = Module::from_ptx(KERNELS_PTX, &[])
                .map_err(|e| format!("the engine's kernels did not load: {e}"))?;
            let stream = Stream::new(StreamFlags::NON_BLOCKING, None)
                .map_err(|e| format!("cannot make a stream: {e}"))?;
            let kv = model
                .kv_bytes_per_token
                .saturating_mul(kv_capacity_tokens as u64)
                .min(16 << 30);
            let size = model.weights_bytes.saturating_add(kv).div_ceil(16) * 16;
            let bytes = DeviceBuffer::<u8>::zeroed(size as usize).map_err(|e| {
                format!(
                    "cannot allocate {:.2} GiB for the model and its KV cache: {e}",
                    size as f64 / (1u64 << 30) as f64
                )
            })?;
            let sms = device
                .get_attribute(DeviceAttribute::MultiprocessorCount)
                .unwrap_or(1)
                .max(1) as u32;
            // Enough blocks to keep every multiprocessor busy.
            let blocks = sms * 8;
            let sink = DeviceBuffer::<u64>::zeroed(1).map_err(|e| e.to_string())?;
            let out = DeviceBuffer::<f32>::zeroed(blocks as usize).map_err(|e| e.to_string())?;
            Ok(Self {
                module,
                stream,
                bytes,
                sink,
                out,
                blocks,
                model,
                _context: context,
            })
        }

        pub fn step(
            &self,
            context_tokens: usize,
            prefill_tokens: usize,
        ) -> Result<Duration, String> {
            let start = Instant::now();
            let (module, stream) = (&self.module, &self.stream);
            let read = self
                .model
                .step_bytes(context_tokens)
                .min(self.bytes.len() as u64);
            let words: u64 = read / 16;
            let (bytes, sink, out) = (
                self.bytes.as_device_ptr(),
                self.sink.as_device_ptr(),
                self.out.as_device_ptr(),
            );
            // SAFETY: the kernels read `words` 16-byte words of `bytes`
            // (allocated with at least that many) and may write one word of
            // `sink` and one float per block of `out`, as sized above.
            unsafe {
                launch!(module.stream_bytes<<<self.blocks, THREADS, 0, stream>>>(bytes, words, sink))
                    .map_err(|e| format!("stream_bytes: {e}"))?;
                if prefill_tokens > 0 {
                    let threads = u64::from(self.blocks) * u64::from(THREADS);
                    let rounds = compute_rounds(self.model.prefill_flops(prefill_tokens), threads);
                    launch!(module.prefill_compute<<<self.blocks, THREADS, 0, stream>>>(out, rounds))
                        .map_err(|e| format!("prefill_compute: {e}"))?;
                }
            }
            self.stream
                .synchronize()
                .map_err(|e| format!("the step failed on the GPU: {e}"))?;
            Ok(start.elapsed())
        }
    }
}

#[cfg(not(feature = "cuda"))]
mod device {
    use std::time::Duration;

    use super::CudaModel;

    pub enum Gpu {}

    impl Gpu {
        pub fn open(_: CudaModel, _: usize) -> Result<Self, String> {
            Err("no GPU: this binary was built without the `cuda` feature".into())
        }

        pub fn step(&self, _: usize, _: usize) -> Result<Duration, String> {
            match *self {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PTX as the driver will read it: its header, the two entry
    /// points the engine launches, balanced braces, every branch target
    /// defined in its own kernel, and no register beyond those declared.
    /// (`ci/ptxas-check.sh` also assembles it with NVIDIA's `ptxas`.)
    #[test]
    fn gpu_kernels_ptx_is_well_formed() {
        let ptx = KERNELS_PTX;
        assert!(ptx.contains(".version 7.0") && ptx.contains(".address_size 64"));
        let entries: Vec<&str> = ptx
            .lines()
            .filter_map(|l| l.trim().strip_prefix(".visible .entry "))
            .map(|l| l.trim_end_matches('('))
            .collect();
        assert_eq!(entries, KERNELS);
        let code: String = ptx
            .lines()
            .map(|l| l.split("//").next().unwrap_or(""))
            .collect::<Vec<_>>()
            .join("\n");
        assert_eq!(code.matches('{').count(), code.matches('}').count());
        for body in code.split(".visible .entry ").skip(1) {
            let labels: Vec<&str> = body
                .lines()
                .filter_map(|l| l.trim().strip_suffix(':'))
                .collect();
            for target in body.lines().filter_map(|l| {
                l.split_once("bra")
                    .map(|(_, t)| t.trim().trim_end_matches(';'))
            }) {
                assert!(labels.contains(&target), "branch to undefined `{target}`");
            }
            // `.reg .b64 %rd<16>;` declares %rd0..%rd15.
            for decl in body.lines().filter_map(|l| l.trim().strip_prefix(".reg ")) {
                let (_, reg) = decl.split_once('%').expect("a register declaration");
                let (name, n) = reg.trim_end_matches(">;").split_once('<').unwrap();
                let n: usize = n.parse().unwrap();
                for used in body.split(&format!("%{name}")).skip(1) {
                    let digits: String = used.chars().take_while(char::is_ascii_digit).collect();
                    if let Ok(k) = digits.parse::<usize>() {
                        assert!(k < n, "%{name}{k} beyond the {n} declared");
                    }
                }
            }
        }
    }

    #[test]
    fn gpu_step_sizes_follow_the_model() {
        let model = CudaModel {
            weights_bytes: 16_000_000_000,
            kv_bytes_per_token: 131_072,
        };
        // Weights once, plus every context token's keys and values.
        assert_eq!(model.step_bytes(0), 16_000_000_000);
        assert_eq!(model.step_bytes(1000), 16_000_000_000 + 131_072_000);
        // Two operations per parameter per token, with two-byte weights.
        assert_eq!(model.prefill_flops(10), 1.6e11);
        assert_eq!(compute_rounds(4096.0, 256), 4);
        assert_eq!(compute_rounds(0.0, 256), 0);
    }

    /// Without a device (or without the `cuda` build) the engine says "no GPU".
    #[test]
    fn gpu_stepper_without_a_device_says_no_gpu() {
        if crate::gpu::available() {
            return;
        }
        let model = CudaModel {
            weights_bytes: 1 << 20,
            kv_bytes_per_token: 0,
        };
        let err = GpuStepper::start(model, 16).err().expect("no device");
        assert!(err.starts_with("no GPU"), "{err}");
    }
}
