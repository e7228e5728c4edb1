//! The ranges a run can use. Validation rejects every value outside them, so
//! that what `servegate check` accepts never panics or exhausts memory later:
//! seconds and milliseconds become `Duration`s (which panic on negative, NaN,
//! infinite or overflowing values), a rate and a burstiness become a Gamma
//! distribution whose samples are added up into send times, and counts size
//! buffers and the number of matrix points.

/// A day: the longest timeout, ramp or simulated delay a run accepts.
pub const DAY_S: f64 = 86_400.0;

/// Timeouts in seconds (`request_timeout_s`, `ready_timeout_s`,
/// `stop_timeout_s`, `scoring.timeout_s`): a millisecond to a day.
pub const TIMEOUT_S: (f64, f64) = (0.001, DAY_S);
/// `workload.ramp_up_s`: none to a day.
pub const RAMP_UP_S: (f64, f64) = (0.0, DAY_S);
/// Seconds between `/metrics` scrapes: often enough for a short phase,
/// seldom enough not to load the server.
pub const SCRAPE_INTERVAL_S: (f64, f64) = (0.05, 3600.0);
/// Milliseconds (embedded engine timings and faults, SLOs): none to a day.
pub const MS: (f64, f64) = (0.0, DAY_S * 1000.0);
/// Service-level objectives in milliseconds: above zero, at most a day.
pub const SLO_MS: (f64, f64) = (0.001, DAY_S * 1000.0);
/// `workload.rate`, requests per second. Below it a run of a few requests
/// lasts weeks; above it the gaps are shorter than the clock resolves.
pub const RATE: (f64, f64) = (1e-3, 1e6);
/// `workload.burstiness`, the Gamma shape of the gaps between arrivals.
pub const BURSTINESS: (f64, f64) = (1e-3, 1e3);
/// The embedded engine's `slowdown` factor.
pub const SLOWDOWN: (f64, f64) = (1e-3, 1000.0);
/// The embedded engine's `logprob_noise` (a standard deviation in nats).
pub const LOGPROB_NOISE: (f64, f64) = (0.0, 100.0);
/// Fractions (`error_rate`, `drop_rate`).
pub const FRACTION: (f64, f64) = (0.0, 1.0);
/// Sampling temperature, as OpenAI-compatible servers accept it.
pub const TEMPERATURE: (f64, f64) = (0.0, 2.0);

/// Requests in one phase (`num_requests`, `warmup`): each one's record is
/// kept in memory.
pub const MAX_REQUESTS: u64 = 1_000_000;
/// Requests in flight (`concurrency`, `max_concurrency`, `scoring.concurrency`)
/// and sequences in the embedded engine's batch (`max_num_seqs`).
pub const MAX_CONCURRENCY: u64 = 100_000;
/// Tokens of one request (`max_tokens`, `min_tokens`, synthetic `input_tokens`).
pub const MAX_TOKENS: u64 = 1_000_000;
/// `scoring.max_length`, the model's length in tokens.
pub const MAX_LENGTH: u64 = 10_000_000;
/// Distinct synthetic prompts.
pub const MAX_SYNTHETIC_PROMPTS: u64 = 10_000;
/// Measured phases per target (`repeats`).
pub const MAX_REPEATS: u64 = 1_000;
/// Documents per task (`limit`).
pub const MAX_LIMIT: u64 = 1_000_000;
/// Few-shot examples per question.
pub const MAX_FEWSHOT: u64 = 1_000;
/// Most tokens a generative task may ask for per question.
pub const MAX_GEN_TOKENS: u64 = 1_000_000;
/// Retries of a scoring request; the wait doubles from 0.5 s each time, so
/// ten already wait about eight minutes in all.
pub const MAX_RETRIES: u64 = 10;
/// Points of one file's matrix (the product of its axes' lengths), checked
/// before the matrix is expanded: each point is a full copy of the case.
pub const MAX_MATRIX_POINTS: u64 = 10_000;

/// `v` when it is a number within `range` (NaN and infinities never are);
/// otherwise the message an error shows.
pub fn number(v: f64, (lo, hi): (f64, f64)) -> Result<f64, String> {
    if v.is_finite() && lo <= v && v <= hi {
        Ok(v)
    } else {
        Err(format!(
            "must be a number between {} and {} (got {})",
            show(lo),
            show(hi),
            show(v)
        ))
    }
}

/// `v` when it is a whole number within `lo..=hi`; otherwise the message.
pub fn count(v: u64, lo: u64, hi: u64) -> Result<u64, String> {
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(format!(
            "must be a whole number between {lo} and {hi} (got {v})"
        ))
    }
}

/// A number as a user would write it: `1e30` rather than 31 digits.
pub fn show(v: f64) -> String {
    let a = v.abs();
    if v.is_finite() && v != 0.0 && !(1e-4..1e9).contains(&a) {
        format!("{v:e}")
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_show_the_range_and_the_value_as_written() {
        assert_eq!(
            number(1e30, TIMEOUT_S).unwrap_err(),
            "must be a number between 0.001 and 86400 (got 1e30)"
        );
        assert_eq!(
            number(1e-300, RATE).unwrap_err(),
            "must be a number between 0.001 and 1000000 (got 1e-300)"
        );
        for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY, -1.0] {
            assert!(number(bad, MS).is_err(), "{bad}");
        }
        assert_eq!(number(0.0, MS), Ok(0.0));
        assert_eq!(
            count(4_294_967_295, 0, MAX_REQUESTS).unwrap_err(),
            "must be a whole number between 0 and 1000000 (got 4294967295)"
        );
    }

    /// The largest values accepted still make valid `Duration`s, also after
    /// the engine's `slowdown` stretches them.
    #[test]
    fn the_bounds_convert_without_panicking() {
        let _ = std::time::Duration::from_secs_f64(TIMEOUT_S.1);
        let _ = std::time::Duration::from_secs_f64(MS.1 * SLOWDOWN.1 / 1000.0);
        let scale = 1.0 / (RATE.0 * BURSTINESS.0);
        assert!(rand_distr::Gamma::new(BURSTINESS.0, scale).is_ok());
        let scale = 1.0 / (RATE.1 * BURSTINESS.1);
        assert!(rand_distr::Gamma::new(BURSTINESS.1, scale).is_ok());
    }
}
