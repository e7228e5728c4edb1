//! Sub-millisecond deadlines for the engine's token timing.
//!
//! tokio's timer wheel has 1 ms resolution and rounds deadlines up, which
//! would put up to a millisecond of the engine's own error into every
//! calibration figure. A dedicated thread parks on a condition variable
//! (nanosecond timeouts) until the earliest deadline and wakes the waiting
//! tasks, so tokens leave within tens of microseconds of their due time.
//! Deadlines are rounded up to a 250 µs grid so that one wake-up releases
//! every token due in the same slice: with a thousand streams that keeps the
//! thread from waking tens of thousands of times per second.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

struct Entry {
    due: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.due, self.seq) == (other.due, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.due, self.seq).cmp(&(other.due, other.seq))
    }
}

#[derive(Default)]
struct Queue {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    closed: bool,
}

/// Width of the deadline grid.
const SLICE: std::time::Duration = std::time::Duration::from_micros(250);

/// A shared precise clock; the thread stops when its guard is dropped.
#[derive(Clone)]
pub struct PreciseClock {
    shared: Arc<Shared>,
    origin: Instant,
}

struct Shared {
    queue: Mutex<Queue>,
    changed: Condvar,
}

struct StopOnDrop(Arc<Shared>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.queue.lock().expect("clock lock").closed = true;
        self.0.changed.notify_all();
    }
}

/// Keeps the clock thread alive; dropping it stops the thread.
pub struct ClockGuard(#[allow(dead_code)] StopOnDrop);

impl PreciseClock {
    pub fn start() -> (Self, ClockGuard) {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        });
        let worker = shared.clone();
        std::thread::Builder::new()
            .name("sim-clock".into())
            .spawn(move || run(&worker))
            .expect("clock thread");
        let clock = Self {
            shared: shared.clone(),
            origin: Instant::now(),
        };
        (clock, ClockGuard(StopOnDrop(shared)))
    }

    /// Completes at `due` (at once if it has passed).
    pub async fn sleep_until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        // Round up onto the grid: never early, at most one slice late.
        let offset = due.saturating_duration_since(self.origin).as_nanos();
        let slice = SLICE.as_nanos();
        let due =
            self.origin + std::time::Duration::from_nanos((offset.div_ceil(slice) * slice) as u64);
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock().expect("clock lock");
            if q.closed {
                return;
            }
            q.seq += 1;
            let seq = q.seq;
            let earliest = q.heap.peek().map(|Reverse(e)| e.due);
            q.heap.push(Reverse(Entry { due, seq, wake: tx }));
            // The thread only needs waking when this deadline comes first.
            if earliest.is_none_or(|e| due < e) {
                self.shared.changed.notify_one();
            }
        }
        let _ = rx.await;
    }
}

fn run(shared: &Shared) {
    let mut q = shared.queue.lock().expect("clock lock");
    loop {
        if q.closed {
            return;
        }
        let now = Instant::now();
        while q.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
            let Reverse(e) = q.heap.pop().expect("peeked");
            let _ = e.wake.send(());
        }
        q = match q.heap.peek().map(|Reverse(e)| e.due) {
            Some(due) => {
                let wait = due.saturating_duration_since(Instant::now());
                shared.changed.wait_timeout(q, wait).expect("clock lock").0
            }
            None => shared.changed.wait(q).expect("clock lock"),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn wakes_in_deadline_order_close_to_due() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (clock, _guard) = PreciseClock::start();
        let start = Instant::now();
        let late: Vec<Duration> = rt.block_on(async {
            let tasks: Vec<_> = [7u64, 3, 5, 1]
                .into_iter()
                .map(|ms| {
                    let clock = clock.clone();
                    tokio::spawn(async move {
                        let due = start + Duration::from_millis(ms);
                        clock.sleep_until(due).await;
                        Instant::now() - due
                    })
                })
                .collect();
            let mut out = Vec::new();
            for t in tasks {
                out.push(t.await.unwrap());
            }
            out
        });
        // Never early; on a busy machine lateness is bounded loosely.
        assert!(
            late.iter().all(|d| *d < Duration::from_millis(20)),
            "{late:?}"
        );
    }
}
