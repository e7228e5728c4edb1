//! Resolving an embedded engine's knobs: inline knobs, then the named
//! profile, then the built-in defaults; and checking every value.

use std::collections::BTreeMap;
use std::time::Duration;

use super::limits::{self, count, number};
use super::{SimMode, SimSpec};

/// Concrete knobs of one embedded engine.
#[derive(Debug, Clone, PartialEq)]
pub struct SimParams {
    pub mode: SimMode,
    pub ttft: Duration,
    pub tpot: Duration,
    pub max_num_seqs: usize,
    pub max_batch_tokens: usize,
    pub kv_capacity_tokens: usize,
    pub step_base: Duration,
    pub step_per_seq: Duration,
    pub prefill_per_token: Duration,
    pub logprob_noise: f64,
    pub seed: u64,
    pub usage: bool,
    pub error_rate: f64,
    pub drop_rate: f64,
    pub stall: Duration,
    pub startup_delay: Duration,
    pub crash_after: Option<u64>,
    pub prefix_caching: bool,
    /// With `cuda = true`: what each step makes the GPU do.
    pub cuda: Option<CudaModel>,
}

/// The model a `cuda`-mode engine stands for: what one step reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CudaModel {
    pub weights_bytes: u64,
    pub kv_bytes_per_token: u64,
}

impl CudaModel {
    /// Bytes a decode step reads with `context_tokens` tokens of context in
    /// the batch: every weight once, and every context token's keys and values.
    pub fn step_bytes(&self, context_tokens: usize) -> u64 {
        self.weights_bytes.saturating_add(
            self.kv_bytes_per_token
                .saturating_mul(context_tokens as u64),
        )
    }

    /// Floating-point operations of prefilling `tokens` prompt tokens: two
    /// per parameter per token, with two-byte (bf16) weights.
    pub fn prefill_flops(&self, tokens: usize) -> f64 {
        self.weights_bytes as f64 * tokens as f64
    }
}

/// The built-in profiles. `constant` is the default.
pub fn builtin_profile(name: &str) -> Option<SimSpec> {
    match name {
        "constant" => Some(SimSpec {
            mode: Some(SimMode::Constant),
            ttft_ms: Some(20.0),
            tpot_ms: Some(5.0),
            ..SimSpec::default()
        }),
        // A small GPU engine's shape: a 4 ms step plus 0.15 ms per running
        // sequence, 10 µs per prefilled prompt token, 32 sequences at most.
        "engine" => Some(SimSpec {
            mode: Some(SimMode::Engine),
            max_num_seqs: Some(32),
            max_batch_tokens: Some(4096),
            kv_capacity_tokens: Some(65536),
            step_base_ms: Some(4.0),
            step_per_seq_ms: Some(0.15),
            prefill_ms_per_token: Some(0.01),
            ..SimSpec::default()
        }),
        _ => None,
    }
}

pub const BUILTIN_PROFILES: &[&str] = &["constant", "engine"];

/// A resolution error: the knob at fault and why.
pub type KnobError = (String, String);

impl SimParams {
    /// Inline knobs, then the named profile, then the built-in defaults of
    /// the resulting mode; every value checked.
    pub fn resolve(
        spec: &SimSpec,
        profiles: &BTreeMap<String, SimSpec>,
    ) -> Result<Self, KnobError> {
        checked(&layered(spec, profiles)?)
    }
}

/// `spec` over its named profile (and the built-in one it builds on), over
/// the built-in profile of the mode they settle on.
fn layered(spec: &SimSpec, profiles: &BTreeMap<String, SimSpec>) -> Result<SimSpec, KnobError> {
    let mut layered = spec.clone();
    if let Some(name) = &spec.profile {
        let named = named_profile(name, profiles)?;
        layered = layered.over(&named);
        // A user profile may itself build on a built-in one.
        if let Some(base) = named.profile.as_deref().and_then(builtin_profile) {
            layered = layered.over(&base);
        }
    }
    let base_mode = layered.mode.unwrap_or(SimMode::Constant);
    let base = match base_mode {
        SimMode::Constant => builtin_profile("constant"),
        SimMode::Engine => builtin_profile("engine"),
    }
    .expect("built-in profile");
    Ok(layered.over(&base))
}

/// A user profile by name, else a built-in one; the error lists both kinds.
fn named_profile(name: &str, profiles: &BTreeMap<String, SimSpec>) -> Result<SimSpec, KnobError> {
    profiles
        .get(name)
        .cloned()
        .or_else(|| builtin_profile(name))
        .ok_or_else(|| {
            let mut known: Vec<String> = BUILTIN_PROFILES.iter().map(|s| s.to_string()).collect();
            known.extend(profiles.keys().cloned());
            (
                "profile".to_string(),
                format!("unknown profile `{name}` (known: {})", known.join(", ")),
            )
        })
}

/// The layered knobs as concrete values. Every knob is checked within
/// `limits`, so that the `Duration`s (and the scheduler's sums and products
/// of them) cannot panic. `slowdown` first, then the fields as written, so
/// that the first bad knob reported stays the same.
fn checked(s: &SimSpec) -> Result<SimParams, KnobError> {
    let slowdown = check("slowdown", s.slowdown.unwrap_or(1.0), limits::SLOWDOWN)?;
    let ms = |knob: &str, v: Option<f64>| engine_ms(knob, v, slowdown);
    let tokens = u32::MAX.into();
    Ok(SimParams {
        mode: s.mode.unwrap_or(SimMode::Constant),
        ttft: ms("ttft_ms", s.ttft_ms)?,
        tpot: ms("tpot_ms", s.tpot_ms)?,
        max_num_seqs: seqs(
            "max_num_seqs",
            s.max_num_seqs.unwrap_or(32),
            limits::MAX_CONCURRENCY,
        )?,
        max_batch_tokens: seqs(
            "max_batch_tokens",
            s.max_batch_tokens.unwrap_or(4096),
            tokens,
        )?,
        kv_capacity_tokens: seqs(
            "kv_capacity_tokens",
            s.kv_capacity_tokens.unwrap_or(65536),
            tokens,
        )?,
        step_base: ms("step_base_ms", s.step_base_ms)?,
        step_per_seq: ms("step_per_seq_ms", s.step_per_seq_ms)?,
        prefill_per_token: ms("prefill_ms_per_token", s.prefill_ms_per_token)?,
        logprob_noise: check(
            "logprob_noise",
            s.logprob_noise.unwrap_or(0.0),
            limits::LOGPROB_NOISE,
        )?,
        seed: s.seed.unwrap_or(0),
        usage: s.usage.unwrap_or(true),
        error_rate: check("error_rate", s.error_rate.unwrap_or(0.0), limits::FRACTION)?,
        drop_rate: check("drop_rate", s.drop_rate.unwrap_or(0.0), limits::FRACTION)?,
        stall: fault_ms("stall_ms", s.stall_ms)?,
        startup_delay: fault_ms("startup_delay_ms", s.startup_delay_ms)?,
        crash_after: s.crash_after,
        prefix_caching: s.prefix_caching.unwrap_or(false),
        cuda: cuda_model(s)?,
    })
}

/// The `cuda` knobs, checked; `None` unless `cuda = true`.
fn cuda_model(s: &SimSpec) -> Result<Option<CudaModel>, KnobError> {
    if s.cuda != Some(true) {
        return Ok(None);
    }
    if !cfg!(feature = "cuda") {
        return Err((
            "cuda".to_string(),
            "no GPU: this binary was built without the `cuda` feature".to_string(),
        ));
    }
    if s.mode != Some(SimMode::Engine) {
        return Err((
            "cuda".to_string(),
            "the GPU runs the scheduler's steps: use the `engine` profile or mode".to_string(),
        ));
    }
    let bytes = |knob: &str, v: Option<u64>, default: u64, range: (u64, u64)| {
        count(v.unwrap_or(default), range.0, range.1).map_err(|e| (knob.to_string(), e))
    };
    Ok(Some(CudaModel {
        weights_bytes: bytes(
            "model_weights_bytes",
            s.model_weights_bytes,
            2_000_000_000,
            (1 << 20, 1 << 40),
        )?,
        kv_bytes_per_token: bytes(
            "kv_bytes_per_token",
            s.kv_bytes_per_token,
            128 << 10,
            (0, 64 << 20),
        )?,
    }))
}

/// `v` within `range`, or the error naming `knob`.
fn check(knob: &str, v: f64, range: (f64, f64)) -> Result<f64, KnobError> {
    number(v, range).map_err(|e| (knob.to_string(), e))
}

/// A size of at least one, at most `hi`, or the error naming `knob`.
fn seqs(knob: &str, v: u32, hi: u64) -> Result<usize, KnobError> {
    count(v.into(), 1, hi)
        .map(|v| v as usize)
        .map_err(|e| (knob.to_string(), e))
}

/// An engine timing in milliseconds (none when unset), stretched by `slowdown`.
fn engine_ms(knob: &str, v: Option<f64>, slowdown: f64) -> Result<Duration, KnobError> {
    let v = check(knob, v.unwrap_or(0.0), limits::MS)?;
    Ok(Duration::from_secs_f64(v * slowdown / 1000.0))
}

/// A fault's delay in milliseconds (none when unset). Faults are not the
/// engine's speed: slowdown does not stretch them.
fn fault_ms(knob: &str, v: Option<f64>) -> Result<Duration, KnobError> {
    let v = check(knob, v.unwrap_or(0.0), limits::MS)?;
    Ok(Duration::from_secs_f64(v / 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inline_knobs_win_over_profile_over_defaults() {
        let mut profiles = BTreeMap::new();
        profiles.insert(
            "slowish".to_string(),
            SimSpec {
                profile: Some("engine".into()),
                max_num_seqs: Some(8),
                ..SimSpec::default()
            },
        );
        let spec = SimSpec {
            profile: Some("slowish".into()),
            step_base_ms: Some(10.0),
            slowdown: Some(2.0),
            ..SimSpec::default()
        };
        let p = SimParams::resolve(&spec, &profiles).unwrap();
        assert_eq!(p.mode, SimMode::Engine);
        assert_eq!(p.max_num_seqs, 8);
        assert_eq!(p.step_base, Duration::from_millis(20));
        assert_eq!(p.step_per_seq, Duration::from_secs_f64(0.15 * 2.0 / 1000.0));
        let p = SimParams::resolve(&SimSpec::default(), &profiles).unwrap();
        assert_eq!(
            (p.mode, p.ttft, p.tpot),
            (
                SimMode::Constant,
                Duration::from_millis(20),
                Duration::from_millis(5)
            )
        );
    }

    #[test]
    fn timing_knobs_apply_over_the_engine_profile() {
        let none = BTreeMap::new();
        let spec = SimSpec {
            profile: Some("engine".into()),
            ttft_ms: Some(300.0),
            tpot_ms: Some(40.0),
            ..SimSpec::default()
        };
        let p = SimParams::resolve(&spec, &none).unwrap();
        assert_eq!(p.mode, SimMode::Engine);
        assert_eq!(
            (p.ttft, p.tpot),
            (Duration::from_millis(300), Duration::from_millis(40))
        );
        assert_eq!(p.max_num_seqs, 32);
        // Unset, they add nothing to the scheduler's own timing.
        let p = SimParams::resolve(&builtin_profile("engine").unwrap(), &none).unwrap();
        assert_eq!((p.ttft, p.tpot), (Duration::ZERO, Duration::ZERO));
    }

    #[test]
    fn bad_knobs_are_named() {
        let none = BTreeMap::new();
        let bad = SimSpec {
            error_rate: Some(1.5),
            ..SimSpec::default()
        };
        assert_eq!(SimParams::resolve(&bad, &none).unwrap_err().0, "error_rate");
        let bad = SimSpec {
            profile: Some("nope".into()),
            ..SimSpec::default()
        };
        let e = SimParams::resolve(&bad, &none).unwrap_err();
        assert!(e.0 == "profile" && e.1.contains("engine"), "{e:?}");
        let bad = SimSpec {
            slowdown: Some(0.0),
            ..SimSpec::default()
        };
        assert_eq!(SimParams::resolve(&bad, &none).unwrap_err().0, "slowdown");
    }
}
