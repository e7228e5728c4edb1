//! The steady state of a phase: the window in which the requests in
//! flight were at their target (from the moment they first reach it to the
//! last moment they do), so that ramp-up and drain, where the server is
//! less loaded than asked, do not dilute the figures. Pure.

use serde::{Deserialize, Serialize};

use crate::metrics::RequestRecord;

/// The window a phase was measured in, when `workload.steady_state` asks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// Seconds from the phase's start.
    pub start_s: f64,
    pub end_s: f64,
    /// Requests in flight the window was held at.
    pub target: usize,
    /// Requests wholly inside the window, and in the phase.
    pub kept: usize,
    pub of: usize,
}

/// The plateau at `target` requests in flight and the requests wholly
/// inside it (failed ones included: a failure in the plateau counts);
/// `None` when the phase never reached the target.
pub fn plateau(records: &[RequestRecord], target: usize) -> Option<(Window, Vec<RequestRecord>)> {
    let mut edges: Vec<(f64, i64)> = records
        .iter()
        .flat_map(|r| [(r.start_s, 1), (r.end_s, -1)])
        .collect();
    edges.sort_by(|a, b| a.0.total_cmp(&b.0));
    // The level after all the edges of one instant: a closed loop's worker
    // ends one request and starts the next at (nearly) the same time.
    let (mut level, mut first, mut last, mut at_target) = (0i64, None, None, false);
    let mut i = 0;
    while i < edges.len() {
        let t = edges[i].0;
        while i < edges.len() && edges[i].0 == t {
            level += edges[i].1;
            i += 1;
        }
        if level >= target as i64 {
            first.get_or_insert(t);
            at_target = true;
        } else if at_target {
            // The plateau ends where the level last left the target.
            last = Some(t);
            at_target = false;
        }
    }
    let (start_s, end_s) = (first?, last?);
    let kept: Vec<RequestRecord> = records
        .iter()
        .filter(|r| r.start_s >= start_s && r.end_s <= end_s)
        .cloned()
        .collect();
    let window = Window {
        start_s,
        end_s,
        target,
        kept: kept.len(),
        of: records.len(),
    };
    Some((window, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(start_s: f64, end_s: f64) -> RequestRecord {
        RequestRecord {
            start_s,
            end_s,
            ..serde_json::from_value(serde_json::json!({
                "start_s": 0.0, "end_s": 0.0, "event_times_s": [], "output_tokens": 0,
                "token_source": "usage", "queue_s": 0.0
            }))
            .expect("a minimal record")
        }
    }

    #[test]
    fn ramp_up_and_drain_are_left_out() {
        // Two workers: one starts at 0, the other at 1 (a ramp); each runs
        // requests of 1 s back to back until 4 and 5.
        let mut records = Vec::new();
        for k in 0..4 {
            records.push(request(k as f64, k as f64 + 1.0));
            records.push(request(k as f64 + 1.0, k as f64 + 2.0));
        }
        let (w, kept) = plateau(&records, 2).unwrap();
        assert_eq!((w.start_s, w.end_s), (1.0, 4.0));
        // [1,2], [2,3], [3,4] from each worker; not [0,1] (ramp) nor [4,5] (drain).
        assert_eq!(kept.len(), 6);
        assert_eq!((w.kept, w.of), (6, 8));
        assert!(plateau(&records, 3).is_none());
    }
}
