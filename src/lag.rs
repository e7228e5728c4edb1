//! How late the client's own runtime runs while it drives a load. A timer
//! ticks every `TICK` on the runtime that sends the requests; when that
//! runtime is saturated (thousands of streams on two cores), ticks come
//! late, and so do the arrival timestamps of every token it reads: TTFT
//! reads high and inter-token gaps bunch up. The lateness is measured so the
//! results can say the client, not the server, set the pace.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The probe's period.
pub const TICK: Duration = Duration::from_millis(10);

/// Lateness that always counts as saturation, whatever the server's pace.
pub const MAX_LAG_MS: f64 = 20.0;

/// Share of the measured inter-token latency the p99 lateness may reach
/// before the figures are distorted enough to say so.
pub const MAX_LAG_OF_ITL: f64 = 0.5;

/// The client's lateness over one measured phase.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ClientLag {
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
    /// Set when the client could not keep up (see `saturated`).
    pub saturated: bool,
}

/// Lateness below this is the timer's own granularity (tokio's timers tick
/// in whole milliseconds), not a busy client.
pub const MIN_LAG_MS: f64 = 3.0;

/// Whether a p99 lateness of `lag_p99_ms` distorts timings whose ITL p50 is
/// `itl_p50_ms` (NaN when unmeasured): past `MAX_LAG_MS` always, or past
/// `MAX_LAG_OF_ITL` of the ITL when it is at least `MIN_LAG_MS`.
pub fn saturated(lag_p99_ms: f64, itl_p50_ms: f64) -> bool {
    if lag_p99_ms > MAX_LAG_MS {
        return true;
    }
    itl_p50_ms.is_finite() && lag_p99_ms >= MIN_LAG_MS && lag_p99_ms > MAX_LAG_OF_ITL * itl_p50_ms
}

/// A running probe; `finish` stops it and summarises what it saw.
pub struct Probe {
    samples: Arc<Mutex<Vec<f64>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Probe {
    /// Starts ticking on the current runtime.
    pub fn start() -> Probe {
        let samples = Arc::new(Mutex::new(Vec::new()));
        let into = samples.clone();
        let task = tokio::spawn(async move {
            let mut due = Instant::now() + TICK;
            loop {
                tokio::time::sleep_until(due.into()).await;
                let late = Instant::now().saturating_duration_since(due);
                into.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push(late.as_secs_f64() * 1000.0);
                // The next tick is due a period after this one was served,
                // so one stall counts once, not as a backlog of late ticks.
                due = Instant::now() + TICK;
            }
        });
        Probe { samples, task }
    }

    /// Stops the probe; `None` when the phase was too short for a tick.
    pub fn finish(self, itl_p50_ms: f64) -> Option<ClientLag> {
        self.task.abort();
        let samples = std::mem::take(
            &mut *self
                .samples
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        let d = crate::stats::Distribution::of(samples);
        (d.count > 0).then(|| ClientLag {
            p50_ms: d.p50,
            p99_ms: d.p99,
            max_ms: d.max,
            saturated: saturated(d.p99, itl_p50_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saturation_is_lateness_against_the_servers_pace() {
        assert!(!saturated(0.3, 20.0));
        assert!(!saturated(0.8, 0.5), "under a millisecond is timer noise");
        assert!(
            !saturated(1.3, 1.0),
            "a tick of lateness is the timer's resolution"
        );
        assert!(saturated(5.0, 2.0));
        assert!(!saturated(5.0, 40.0));
        assert!(saturated(25.0, 100.0));
        assert!(!saturated(3.0, f64::NAN));
    }

    /// A runtime kept busy by blocking work runs its timers late, and the
    /// probe sees it.
    #[test]
    fn a_busy_runtime_is_seen_late() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let idle = rt.block_on(async {
            let p = Probe::start();
            tokio::time::sleep(Duration::from_millis(120)).await;
            p.finish(10.0).unwrap()
        });
        assert!(!idle.saturated, "{idle:?}");
        let busy = rt.block_on(async {
            let p = Probe::start();
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(15)).await;
                // Work that never yields: the timer waits behind it.
                std::thread::sleep(Duration::from_millis(40));
            }
            p.finish(10.0).unwrap()
        });
        assert!(busy.max_ms >= 20.0, "{busy:?}");
        assert!(busy.saturated, "{busy:?}");
    }
}
