//! Sub-millisecond deadlines for the engine's token timing.
//!
//! tokio's timer wheel has 1 ms resolution and rounds deadlines up, which
//! would put up to a millisecond of the engine's own error into every
//! calibration figure. The clock here is a task on the engine's own runtime:
//! it sleeps on tokio's timer until a deadline is close, then yields in a
//! loop (letting every other task run) until the deadline passes, and wakes
//! the waiting streams. Everything stays on one thread, so a token costs no
//! cross-thread wake-up. Deadlines are rounded up to a 100 µs grid so that one
//! pass releases every token due in the same slice.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};

/// Width of the deadline grid.
const SLICE: Duration = Duration::from_micros(100);
/// Closer than this to the next deadline, the clock stops trusting tokio's
/// millisecond timer and yields until the deadline instead.
const SPIN: Duration = Duration::from_micros(1500);

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
}

struct Shared {
    queue: Mutex<Queue>,
    /// Signals the driver that an earlier deadline arrived.
    earlier: Notify,
}

/// A handle for waiting on precise deadlines; `drive` must run on the same runtime.
#[derive(Clone)]
pub struct PreciseClock {
    shared: Arc<Shared>,
    origin: Instant,
}

impl PreciseClock {
    pub fn new() -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::new(Queue::default()),
                earlier: Notify::new(),
            }),
            origin: Instant::now(),
        }
    }

    /// Completes at `due` (at once if it has passed), never early.
    pub async fn sleep_until(&self, due: Instant) {
        if due <= Instant::now() {
            return;
        }
        // Round up onto the grid: never early, at most one slice late.
        let offset = due.saturating_duration_since(self.origin).as_nanos();
        let slice = SLICE.as_nanos();
        // Saturates rather than wraps: a step of a slow-enough configured
        // engine can lie more than u64 nanoseconds (584 years) away.
        let nanos = u64::try_from(offset.div_ceil(slice) * slice).unwrap_or(u64::MAX);
        let due = self.origin + Duration::from_nanos(nanos);
        let (tx, rx) = oneshot::channel();
        {
            let mut q = self.shared.queue.lock().expect("clock lock");
            q.seq += 1;
            let seq = q.seq;
            let earliest = q.heap.peek().map(|Reverse(e)| e.due);
            q.heap.push(Reverse(Entry { due, seq, wake: tx }));
            if earliest.is_none_or(|e| due < e) {
                self.shared.earlier.notify_one();
            }
        }
        let _ = rx.await;
    }

    /// Releases due entries for as long as the runtime runs.
    pub async fn drive(self) {
        loop {
            let next = {
                let mut q = self.shared.queue.lock().expect("clock lock");
                let now = Instant::now();
                while q.heap.peek().is_some_and(|Reverse(e)| e.due <= now) {
                    let Reverse(e) = q.heap.pop().expect("peeked");
                    let _ = e.wake.send(());
                }
                q.heap.peek().map(|Reverse(e)| e.due)
            };
            match next {
                None => self.shared.earlier.notified().await,
                Some(due) if due.saturating_duration_since(Instant::now()) > SPIN => {
                    let coarse = tokio::time::sleep_until((due - SPIN).into());
                    tokio::select! {
                        _ = coarse => {}
                        _ = self.shared.earlier.notified() => {}
                    }
                }
                Some(_) => tokio::task::yield_now().await,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_in_deadline_order_close_to_due() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let clock = PreciseClock::new();
        let start = Instant::now();
        let late: Vec<Duration> = rt.block_on(async {
            tokio::spawn(clock.clone().drive());
            let tasks: Vec<_> = [7u64, 3, 5, 1, 30]
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
