//! The embedded simulated engine: an OpenAI-compatible server that needs no GPU
//! and no weights. It runs on its own thread with its own runtime, so its
//! timing does not compete with the client's scheduler.
//!
//! This is the minimal engine: a fixed time to first token and time per
//! token per stream, deterministic text. Its HTTP surface is the contract
//! the rest of servegate relies on.

mod clock;
mod server;

use std::net::SocketAddr;
use std::thread::JoinHandle;

use crate::config::SimSpec;

/// Timing knobs, already multiplied by the slowdown.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Timing {
    pub ttft: std::time::Duration,
    pub tpot: std::time::Duration,
}

impl Timing {
    pub fn from_spec(spec: &SimSpec) -> Self {
        let ms = |v: f64| std::time::Duration::from_secs_f64(v * spec.slowdown / 1000.0);
        Self {
            ttft: ms(spec.ttft_ms),
            tpot: ms(spec.tpot_ms),
        }
    }
}

/// A running embedded engine; stopped and joined on drop.
pub struct SimServer {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl SimServer {
    /// Binds `addr` (port 0 picks a free loopback port) and serves on a new thread.
    pub fn start(spec: &SimSpec, model: &str, addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (clock, clock_guard) = clock::PreciseClock::start();
        let state = server::State::new(model, Timing::from_spec(spec), spec.usage, clock);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sim-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("sim runtime");
                let _clock = clock_guard;
                runtime.block_on(async move {
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

    /// Starts on a free loopback port.
    pub fn start_local(spec: &SimSpec, model: &str) -> std::io::Result<Self> {
        Self::start(spec, model, SocketAddr::from(([127, 0, 0, 1], 0)))
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
