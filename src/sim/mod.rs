//! The embedded simulated engine: an OpenAI- and vLLM-compatible server that
//! needs no GPU and no weights. It runs on its own thread with its own
//! runtime, so its timing does not compete with the client's scheduler.
//!
//! - `engine`: when tokens are ready (constant timing, or a continuous-batching scheduler);
//! - `lm`: what the tokens are (a trigram model over the project's tokenizer);
//! - `clock`: sub-millisecond deadlines;
//! - `prefix_cache`: which prompt blocks were computed before;
//! - `gpu_step`: `cuda` mode, each scheduler step run by a GPU;
//! - `server`: the HTTP surface.

mod clock;
mod engine;
pub mod gpu_step;
pub mod lm;
mod prefix_cache;
mod server;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::config::{SimParams, SimSpec};

/// A running embedded engine; stopped and joined on drop.
pub struct SimServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

fn invalid(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidInput, e.to_string())
}

impl SimServer {
    /// Binds `addr` (port 0 picks a free port) and serves on a new thread.
    /// Knobs resolve against the built-in profiles (config loading has
    /// already folded user profiles into `spec`).
    pub fn start(spec: &SimSpec, model: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let params = SimParams::resolve(spec, &Default::default())
            .map_err(|(knob, msg)| invalid(format!("sim.{knob}: {msg}")))?;
        Self::start_with(params, model, addr, false)
    }

    /// Starts on a free loopback port.
    pub fn start_local(spec: &SimSpec, model: &str) -> std::io::Result<Self> {
        Self::start(spec, model, SocketAddr::from(([127, 0, 0, 1], 0)))
    }

    /// `standalone` lets `crash_after` end the process (only `servegate sim` sets it).
    pub fn start_with(
        params: SimParams,
        model: &str,
        addr: SocketAddr,
        standalone: bool,
    ) -> std::io::Result<Self> {
        Self::start_logging(params, model, addr, standalone, None)
    }

    /// As [`SimServer::start_with`], and with `prompt_log` every prompt of a
    /// completion request is appended to it as a JSON line of token ids
    /// (`{"prompt_ids": [...]}`), the wire-level record a parity check
    /// compares between two clients.
    pub fn start_logging(
        params: SimParams,
        model: &str,
        addr: SocketAddr,
        standalone: bool,
        prompt_log: Option<std::fs::File>,
    ) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        // `cuda` mode: the device is opened (and a missing one reported)
        // before anything is served.
        let gpu = match params.cuda {
            Some(m) => Some(std::sync::Arc::new(
                gpu_step::GpuStepper::start(m, params.kv_capacity_tokens).map_err(invalid)?,
            )),
            None => None,
        };
        // Train the model before answering anything, so the first request is not slow.
        let _ = lm::Model::shared();
        let model = model.to_string();
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", addr.port()))
            .spawn(move || {
                let clock = clock::PreciseClock::new();
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sim runtime");
                runtime.block_on(async move {
                    tokio::spawn(clock.clone().drive());
                    let state =
                        server::State::new(&model, params, clock, gpu, standalone, prompt_log);
                    let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                    // Stopping drops the runtime, which aborts in-flight streams
                    // instead of waiting for them to finish.
                    tokio::select! {
                        _ = server::serve(listener, state) => {}
                        _ = rx => {}
                    }
                });
            })?;
        Ok(Self {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Blocks until the server stops (for `servegate sim`).
    pub fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for SimServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
