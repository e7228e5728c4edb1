//! Change points in a series of measurements, and the rolling-baseline
//! threshold a nightly job checks. Pure: numbers in, indices out; no IO, no
//! clocks, and every random draw comes from a seeded generator, so the same
//! series always gives the same answer.
//!
//! **E-divisive means** (Matteson & James, "A nonparametric approach for
//! multiple change point analysis of multivariate data", JASA 109, 2014),
//! with distance exponent α = 1, as MongoDB's performance CI uses it (Daly et
//! al., "The Use of Change Point Detection to Identify Software Performance
//! Regressions in a Continuous Integration System", ICPE 2020):
//!
//! - For a segment `x[0..n)` split at τ into X = `x[0..τ)` (m points) and
//!   Y = `x[τ..n)` (k points), the divergence is
//!   Q̂(τ) = m·k/(m+k) · ( 2/(m·k) Σ|Xᵢ−Yⱼ| − Σᵢ<ⱼ|Xᵢ−Xⱼ| / C(m,2) − Σᵢ<ⱼ|Yᵢ−Yⱼ| / C(k,2) ),
//!   an energy distance: zero in expectation when both sides come from the
//!   same distribution, large when their means (or shapes) differ. The best
//!   split of a segment maximises Q̂ over τ with at least `min_size` points
//!   on each side.
//! - Hierarchically: the candidate is the best split of the segment whose
//!   best Q̂ is largest. Its significance is a permutation test: each
//!   segment's points are shuffled (within the segment) and its best Q̂
//!   recomputed; one permutation's statistic is the largest over segments;
//!   p = (1 + #{permutation statistic ≥ observed}) / (1 + permutations). A
//!   candidate with p ≤ `significance` is a change point and its segment is
//!   split; the first one that is not ends the search.
//!
//! Cost. One best split is O(n log n), not the textbook O(n²): with α = 1
//! the within-left sum grows by Σᵢ<τ |xᵢ − x_τ| as τ moves right, which a
//! Fenwick tree over the values' ranks gives in O(log n) (count and sum of
//! the smaller values), and each point's distance to all others, the same in
//! every permutation, is computed once per segment from sorted prefix sums;
//! the rest follows from the totals. The permutations of a segment are
//! drawn once and kept, so a segment that is not split costs nothing in the
//! next round; and a test stops as soon as enough permutations exceeded the
//! observation that it cannot be significant (Besag & Clifford's sequential
//! p-value), so a flat series stops after a few dozen permutations. 500
//! points × 199 permutations is a few milliseconds.
//!
//! Hand-rolled because no maintained Rust crate implements E-divisive (the
//! maintained implementations are R's `ecp`, MongoDB's and DataStax's Python
//! packages); it is a hundred lines of arithmetic, tested below on series
//! whose answer is known.
//!
//! **Threshold**: a point is *bad* when it is worse than the median of the
//! `window` points before its streak by more than `tolerance`; `consecutive`
//! bad points in a row are flagged at the last of them.

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::stats::percentile;

/// E-divisive settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Options {
    /// A candidate is a change point when its permutation p-value is at most this.
    pub significance: f64,
    /// Permutations per test (the smallest p-value is 1 / (1 + this)).
    pub permutations: usize,
    /// Fewest points on either side of a change point (at least 2).
    pub min_size: usize,
    /// Seed of the permutations.
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            significance: 0.01,
            permutations: 199,
            min_size: 3,
            seed: 0x00c4_a26e,
        }
    }
}

impl Options {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if !(self.significance > 0.0 && self.significance < 1.0) {
            return Err(format!(
                "significance must lie between 0 and 1 (got {})",
                self.significance
            ));
        }
        if self.min_size < 2 {
            return Err(format!(
                "segments need at least 2 points (got {})",
                self.min_size
            ));
        }
        let smallest = 1.0 / (self.permutations as f64 + 1.0);
        if smallest > self.significance {
            return Err(format!(
                "{} permutations cannot reach a p-value of {} (the smallest is {:.4}); use at least {}",
                self.permutations,
                self.significance,
                smallest,
                (1.0 / self.significance).ceil() as usize - 1
            ));
        }
        Ok(())
    }

    /// Fewest points in which a change point can be found.
    pub fn min_points(&self) -> usize {
        2 * self.min_size
    }
}

/// A change point: `index` is the first point of the new segment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChangePoint {
    pub index: usize,
    /// The divergence Q̂ of the split.
    pub q: f64,
    /// The permutation p-value of the test that accepted it.
    pub p_value: f64,
}

/// The change points of `values` (finite numbers, in order), sorted by index.
pub fn e_divisive(values: &[f64], options: &Options) -> Vec<ChangePoint> {
    debug_assert!(values.iter().all(|v| v.is_finite()), "finite values only");
    if options.check().is_err() || values.len() < options.min_points() {
        return Vec::new();
    }
    let r = options.permutations;
    // Significant when (1 + exceedances) / (1 + r) ≤ significance.
    let allowed =
        ((options.significance * (r as f64 + 1.0) + 1e-9).floor() as usize).saturating_sub(1);
    let mut segments = vec![Segment::new(values, 0, values.len(), options)];
    let mut found = Vec::new();
    while let Some((si, tau, q)) = segments
        .iter()
        .enumerate()
        .filter_map(|(i, s)| s.best.map(|(t, q)| (i, t, q)))
        .max_by(|a, b| a.2.total_cmp(&b.2))
    {
        let at_least = q - 1e-9 * q.abs().max(f64::MIN_POSITIVE);
        let mut exceeded = 0;
        let mut significant = true;
        for p in 0..r {
            let largest = segments
                .iter_mut()
                .map(|s| s.permuted(p, options.min_size))
                .fold(f64::NEG_INFINITY, f64::max);
            if largest >= at_least {
                exceeded += 1;
                if exceeded > allowed {
                    significant = false;
                    break;
                }
            }
        }
        if !significant {
            break;
        }
        found.push(ChangePoint {
            index: tau,
            q,
            p_value: (exceeded + 1) as f64 / (r + 1) as f64,
        });
        let old = segments.swap_remove(si);
        segments.push(Segment::new(values, old.start, tau, options));
        segments.push(Segment::new(values, tau, old.end, options));
    }
    found.sort_by_key(|c| c.index);
    found
}

/// One segment of the series, with its best split and the best splits of
/// its permutations drawn so far.
struct Segment {
    start: usize,
    end: usize,
    /// (absolute index, Q̂), when the segment is long enough to split.
    best: Option<(usize, f64)>,
    points: Vec<Point>,
    permuted: Vec<f64>,
    rng: StdRng,
    scratch: Scratch,
}

/// A value with what every permutation reuses: its rank among the
/// segment's values and its summed distance to all of them.
#[derive(Debug, Clone, Copy)]
struct Point {
    value: f64,
    rank: usize,
    distance_to_all: f64,
}

impl Segment {
    fn new(values: &[f64], start: usize, end: usize, options: &Options) -> Self {
        // Distances do not move with the origin: centred values keep the
        // sums below free of cancellation when the spread is small beside
        // the level (ratios near 1, memory in bytes).
        let centre = values[start..end].iter().sum::<f64>() / (end - start).max(1) as f64;
        let x: Vec<f64> = values[start..end].iter().map(|v| v - centre).collect();
        let n = x.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| x[a].total_cmp(&x[b]));
        let mut points = vec![
            Point {
                value: 0.0,
                rank: 0,
                distance_to_all: 0.0
            };
            n
        ];
        let total: f64 = x.iter().sum();
        let mut below = 0.0; // sum of the values sorted before this one
        for (pos, &i) in order.iter().enumerate() {
            let v = x[i];
            // Ties share the rank of their first: |v − v| is 0 on either side.
            let rank = if pos > 0 && x[order[pos - 1]] == v {
                points[order[pos - 1]].rank
            } else {
                pos
            };
            points[i] = Point {
                value: v,
                rank,
                distance_to_all: pos as f64 * v - below + (total - below) - (n - pos) as f64 * v,
            };
            below += v;
        }
        let mut scratch = Scratch::new(n);
        let best = best_split(&points, options.min_size, &mut scratch).map(|(t, q)| (start + t, q));
        let seed = options.seed ^ (start as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (end as u64);
        Self {
            start,
            end,
            best,
            points,
            permuted: Vec::new(),
            rng: StdRng::seed_from_u64(seed),
            scratch,
        }
    }

    /// The best Q̂ of permutation `p` of this segment (−∞ when it is too
    /// short to split), drawn when first asked for.
    fn permuted(&mut self, p: usize, min_size: usize) -> f64 {
        if self.best.is_none() {
            return f64::NEG_INFINITY;
        }
        while self.permuted.len() <= p {
            self.points.shuffle(&mut self.rng);
            let q = best_split(&self.points, min_size, &mut self.scratch)
                .map_or(f64::NEG_INFINITY, |(_, q)| q);
            self.permuted.push(q);
        }
        self.permuted[p]
    }
}

/// Buffers one best split uses, kept between permutations.
struct Scratch {
    /// Fenwick trees over ranks: count and sum of the values inserted.
    count: Vec<u32>,
    sum: Vec<f64>,
    /// Σ of distances within `x[0..τ)`, for τ = 0..=n.
    within_left: Vec<f64>,
}

impl Scratch {
    fn new(n: usize) -> Self {
        Self {
            count: vec![0; n + 1],
            sum: vec![0.0; n + 1],
            within_left: vec![0.0; n + 1],
        }
    }
}

/// The split τ (points on the left) maximising Q̂, with Q̂; `None` when the
/// segment has fewer than 2 × `min_size` points.
fn best_split(points: &[Point], min_size: usize, s: &mut Scratch) -> Option<(usize, f64)> {
    let n = points.len();
    if n < 2 * min_size || min_size < 2 {
        return None;
    }
    s.count.iter_mut().for_each(|c| *c = 0);
    s.sum.iter_mut().for_each(|c| *c = 0.0);
    // Left to right: Σᵢ<τ |xᵢ − x_τ| from the count and sum of the values of
    // rank ≤ x_τ's among those already seen.
    let mut seen_sum = 0.0;
    s.within_left[0] = 0.0;
    for (t, p) in points.iter().enumerate() {
        let (mut c_le, mut s_le) = (0u32, 0.0);
        let mut i = p.rank + 1;
        while i > 0 {
            c_le += s.count[i];
            s_le += s.sum[i];
            i -= i & i.wrapping_neg();
        }
        let c_le = c_le as f64;
        let to_left = c_le * p.value - s_le + (seen_sum - s_le) - (t as f64 - c_le) * p.value;
        s.within_left[t + 1] = s.within_left[t] + to_left;
        let mut i = p.rank + 1;
        while i <= n {
            s.count[i] += 1;
            s.sum[i] += p.value;
            i += i & i.wrapping_neg();
        }
        seen_sum += p.value;
    }
    let all_pairs = s.within_left[n];
    // Right to left: the within-right sum grows by x_τ's distance to the
    // points after it, which is its distance to all minus to those before.
    let mut within_right = 0.0;
    let mut best: Option<(usize, f64)> = None;
    let mut tau = n;
    while tau > min_size {
        tau -= 1;
        let p = &points[tau];
        let to_left = s.within_left[tau + 1] - s.within_left[tau];
        within_right += p.distance_to_all - to_left;
        // `within_right` now covers x[tau..n), with tau on the left edge of Y.
        if tau <= n - min_size {
            let (m, k) = (tau as f64, (n - tau) as f64);
            let wl = s.within_left[tau];
            let between = all_pairs - wl - within_right;
            let q = m * k / (m + k)
                * (2.0 * between / (m * k)
                    - wl / (m * (m - 1.0) / 2.0)
                    - within_right / (k * (k - 1.0) / 2.0));
            if best.is_none_or(|(_, b)| q > b) {
                best = Some((tau, q));
            }
        }
    }
    best
}

/// Rolling-baseline threshold settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThresholdOptions {
    /// Points whose median is the baseline.
    pub window: usize,
    /// How much worse than the baseline a point may be (0.10: 10%).
    pub tolerance: f64,
    /// Bad points in a row that make a flag.
    pub consecutive: usize,
}

impl Default for ThresholdOptions {
    fn default() -> Self {
        Self {
            window: 5,
            tolerance: 0.10,
            consecutive: 3,
        }
    }
}

impl ThresholdOptions {
    /// Why these settings cannot work, if they cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.window == 0 {
            return Err("the window needs at least 1 run".into());
        }
        if self.consecutive == 0 {
            return Err("consecutive needs at least 1 run".into());
        }
        if !(self.tolerance >= 0.0 && self.tolerance.is_finite()) {
            return Err(format!(
                "tolerance must be a fraction ≥ 0, e.g. 0.1 for 10% (got {})",
                self.tolerance
            ));
        }
        Ok(())
    }

    /// Fewest earlier points a baseline is taken from: half the window,
    /// rounded up, so that a short history is judged as soon as its median
    /// means something.
    pub fn min_baseline(&self) -> usize {
        self.window.div_ceil(2)
    }

    /// Fewest points in which a flag can be raised.
    pub fn min_points(&self) -> usize {
        self.min_baseline() + self.consecutive
    }

    /// Whether `value` is worse than `baseline` by more than the tolerance.
    pub fn is_worse(&self, value: f64, baseline: f64, higher_is_better: bool) -> bool {
        if higher_is_better {
            value < baseline * (1.0 - self.tolerance)
        } else {
            value > baseline * (1.0 + self.tolerance)
        }
    }
}

/// A run of bad points: `start..=end`, flagged at `flagged_at` (the
/// `consecutive`-th of them).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flag {
    pub start: usize,
    pub flagged_at: usize,
    pub end: usize,
    /// The median the streak was judged against.
    pub baseline: f64,
    /// The worst point of the streak.
    pub worst: f64,
}

/// The flags of `values` (finite numbers, in order). Point i is judged
/// against the median of the up to `window` points before it, once at least
/// `min_baseline` exist; a point that is worse by more than the tolerance
/// starts a streak, and the points after it are judged against the same
/// baseline (the streak's own points never enter it) until one is not worse,
/// which ends the streak. A streak of `consecutive` points or more is a flag.
pub fn threshold_flags(
    values: &[f64],
    higher_is_better: bool,
    options: &ThresholdOptions,
) -> Vec<Flag> {
    if options.check().is_err() {
        return Vec::new();
    }
    let mut flags = Vec::new();
    let mut streak: Option<(usize, f64)> = None; // (start, baseline)
    let close = |streak: Option<(usize, f64)>, end: usize, flags: &mut Vec<Flag>| {
        if let Some((start, baseline)) = streak {
            if end + 1 - start >= options.consecutive {
                let worst = values[start..=end]
                    .iter()
                    .copied()
                    .reduce(|a, b| if (b < a) == higher_is_better { b } else { a })
                    .expect("a streak has points");
                flags.push(Flag {
                    start,
                    flagged_at: start + options.consecutive - 1,
                    end,
                    baseline,
                    worst,
                });
            }
        }
    };
    for (i, &v) in values.iter().enumerate() {
        let baseline = match streak {
            Some((_, b)) => b,
            None if i >= options.min_baseline() => {
                median(&values[i.saturating_sub(options.window)..i])
            }
            None => continue,
        };
        if options.is_worse(v, baseline, higher_is_better) {
            streak.get_or_insert((i, baseline));
        } else if streak.is_some() {
            close(streak.take(), i - 1, &mut flags);
        }
    }
    if !values.is_empty() {
        close(streak, values.len() - 1, &mut flags);
    }
    flags
}

/// The median of `values` (NaN when empty).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    percentile(&sorted, 50.0)
}

/// How the mean moved between two segments.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanChange {
    pub before: f64,
    pub after: f64,
    /// after / before − 1; NaN when `before` is 0.
    pub relative: f64,
    /// Interval of `relative` at `level` (NaN bounds without one).
    pub lo: f64,
    pub hi: f64,
    pub level: f64,
}

/// The relative change of the mean from `before` to `after`, with a
/// t-style interval: the delta method's standard error of the ratio of the
/// means, ŝ² = r² (s_a²/(n_a·ā²) + s_b²/(n_b·b̄²)), and a Student t
/// quantile on Welch–Satterthwaite's degrees of freedom. Small segments get
/// the wide interval they deserve, where a bootstrap of three points would
/// not.
pub fn mean_change(before: &[f64], after: &[f64], level: f64) -> MeanChange {
    let (mb, vb) = mean_var(before);
    let (ma, va) = mean_var(after);
    let mut out = MeanChange {
        before: mb,
        after: ma,
        relative: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
        level,
    };
    if mb == 0.0 || !mb.is_finite() || !ma.is_finite() {
        return out;
    }
    let ratio = ma / mb;
    out.relative = ratio - 1.0;
    let (nb, na) = (before.len() as f64, after.len() as f64);
    if nb < 2.0 || na < 2.0 || ma == 0.0 {
        return out;
    }
    // Relative variances of the two means.
    let (rb, ra) = (vb / (nb * mb * mb), va / (na * ma * ma));
    let se = ratio.abs() * (rb + ra).sqrt();
    if se == 0.0 {
        (out.lo, out.hi) = (out.relative, out.relative);
        return out;
    }
    let df = (rb + ra).powi(2) / (rb * rb / (nb - 1.0) + ra * ra / (na - 1.0));
    let t = student_t_quantile((1.0 + level) / 2.0, df);
    (out.lo, out.hi) = (out.relative - t * se, out.relative + t * se);
    out
}

/// Mean and sample variance (n − 1).
fn mean_var(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let mean = xs.iter().sum::<f64>() / n;
    if xs.len() < 2 {
        return (mean, f64::NAN);
    }
    let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var)
}

/// The quantile `p` (0.5 < p < 1) of Student's t with `df` degrees of
/// freedom (real, > 0), by bisection on the distribution function.
/// Hand-rolled: statrs 0.18's `StudentsT::inverse_cdf` is off by 6e-5 at
/// large `df` (1.95985 for the 97.5% point at df = 10⁶), which the tests
/// below do not accept.
pub fn student_t_quantile(p: f64, df: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 1.0_f64);
    while student_t_cdf(hi, df) < p && hi < 1e12 {
        hi *= 2.0;
    }
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if student_t_cdf(mid, df) < p {
            lo = mid;
        } else {
            hi = mid;
        }
        if hi - lo <= 1e-12 * hi {
            break;
        }
    }
    0.5 * (lo + hi)
}

/// P(T ≤ t) for Student's t with `df` degrees of freedom.
pub fn student_t_cdf(t: f64, df: f64) -> f64 {
    let tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t));
    if t >= 0.0 {
        1.0 - tail
    } else {
        tail
    }
}

/// The regularised incomplete beta function I_x(a, b) (Numerical Recipes'
/// continued fraction, evaluated by Lentz's method).
fn incomplete_beta(a: f64, b: f64, x: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(a, b, x) / a
    } else {
        1.0 - front * beta_fraction(b, a, 1.0 - x) / b
    }
}

fn beta_fraction(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..300 {
        let m = m as f64;
        let m2 = 2.0 * m;
        let aa = m * (b - m) * x / ((qam + m2) * (a + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        h *= d * c;
        let aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2));
        d = 1.0 + aa * d;
        if d.abs() < TINY {
            d = TINY;
        }
        c = 1.0 + aa / c;
        if c.abs() < TINY {
            c = TINY;
        }
        d = 1.0 / d;
        let del = d * c;
        h *= del;
        if (del - 1.0).abs() < 1e-15 {
            break;
        }
    }
    h
}

/// ln Γ(x) for x > 0 (Lanczos, g = 7, nine coefficients).
fn ln_gamma(x: f64) -> f64 {
    const G: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut a = G[0];
    let t = x + 7.5;
    for (i, g) in G.iter().enumerate().skip(1) {
        a += g / (x + i as f64);
    }
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + a.ln()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::Rng;
    use rand_distr::{Distribution as _, Normal};

    /// Q̂ of every split, by the definition (O(n²) per split).
    fn q_by_definition(x: &[f64], tau: usize) -> f64 {
        let (a, b) = x.split_at(tau);
        let (m, k) = (a.len() as f64, b.len() as f64);
        let within = |s: &[f64]| {
            let mut sum = 0.0;
            for i in 0..s.len() {
                for j in i + 1..s.len() {
                    sum += (s[i] - s[j]).abs();
                }
            }
            sum / (s.len() as f64 * (s.len() as f64 - 1.0) / 2.0)
        };
        let between: f64 = a
            .iter()
            .flat_map(|x| b.iter().map(move |y| (x - y).abs()))
            .sum();
        m * k / (m + k) * (2.0 * between / (m * k) - within(a) - within(b))
    }

    fn noisy(n: usize, step_at: usize, step: f64, sd: f64, seed: u64) -> Vec<f64> {
        let mut rng = StdRng::seed_from_u64(seed);
        let noise = Normal::new(0.0, sd).unwrap();
        (0..n)
            .map(|i| {
                let level = if i >= step_at { 1.0 + step } else { 1.0 };
                level * (1.0 + noise.sample(&mut rng))
            })
            .collect()
    }

    #[test]
    fn best_split_matches_the_definition() {
        let mut rng = StdRng::seed_from_u64(7);
        for n in [6, 7, 12, 31] {
            // Rounded values make ties, which the ranks must handle.
            let x: Vec<f64> = (0..n)
                .map(|_| (rng.random::<f64>() * 8.0).round())
                .collect();
            let seg = Segment::new(&x, 0, n, &Options::default());
            let (tau, q) = seg.best.unwrap();
            let (want_tau, want_q) = (3..=n - 3)
                .map(|t| (t, q_by_definition(&x, t)))
                .max_by(|a, b| a.1.total_cmp(&b.1))
                .unwrap();
            assert!(
                (q - want_q).abs() < 1e-9 * want_q.abs().max(1.0),
                "{x:?}: {q} vs {want_q}"
            );
            assert!(
                tau == want_tau || (q_by_definition(&x, tau) - want_q).abs() < 1e-9,
                "{x:?}"
            );
        }
        // Too short to split.
        assert!(Segment::new(&[1.0; 5], 0, 5, &Options::default())
            .best
            .is_none());
    }

    /// Over 100 seeded series of 30 points with a step of `step` at point
    /// 15 in Gaussian noise of `sd` (both relative): how many have a change
    /// point at all, at 15 ± 1, at 15 ± 2, and how many change points lie
    /// elsewhere.
    fn step_rates(step: f64, sd: f64) -> (usize, usize, usize, usize) {
        let (mut any, mut within_1, mut within_2, mut elsewhere) = (0, 0, 0, 0);
        for seed in 0..100 {
            let x = noisy(30, 15, step, sd, seed);
            let cps = e_divisive(
                &x,
                &Options {
                    seed,
                    ..Options::default()
                },
            );
            any += usize::from(!cps.is_empty());
            within_1 += usize::from(cps.iter().any(|c| c.index.abs_diff(15) <= 1));
            within_2 += usize::from(cps.iter().any(|c| c.index.abs_diff(15) <= 2));
            elsewhere += cps.iter().filter(|c| c.index.abs_diff(15) > 2).count();
        }
        (any, within_1, within_2, elsewhere)
    }

    /// A 5% step in 2% noise (2.5 standard deviations) is always found. Where
    /// it is placed is as precise as the data allow: no estimator places a
    /// 2.5 σ step within one point 95% of the time (least squares, the best
    /// for Gaussian noise, manages 91% in 2,000 simulated series, as does
    /// E-divisive); within two points both manage 96–97%. A 5% step in 1.5%
    /// noise is placed within one point in 95% and more.
    #[test]
    fn finds_a_five_percent_step_in_two_percent_noise_at_the_right_run() {
        let (any, within_1, within_2, elsewhere) = step_rates(0.05, 0.02);
        eprintln!("5% step, 2% noise: found {any}/100, at ±1 {within_1}/100, at ±2 {within_2}/100, {elsewhere} change points elsewhere");
        assert_eq!(any, 100);
        assert!(within_1 >= 88, "{within_1}/100 within one point");
        assert!(within_2 >= 95, "{within_2}/100 within two points");
        assert!(
            elsewhere <= 8,
            "{elsewhere} change points away from the step"
        );
        let (any, within_1, _, elsewhere) = step_rates(0.05, 0.015);
        eprintln!(
            "5% step, 1.5% noise: found {any}/100, at ±1 {within_1}/100, {elsewhere} elsewhere"
        );
        assert!(within_1 >= 95, "{within_1}/100 within one point");
    }

    /// A flat series of 30 points in 2% noise has no change point in at
    /// least 95 of 100 (the significance level is 1%).
    #[test]
    fn finds_nothing_in_flat_series() {
        let mut false_alarms = 0;
        for seed in 0..100 {
            let flat = noisy(30, 30, 0.0, 0.02, 1000 + seed);
            false_alarms += usize::from(
                !e_divisive(
                    &flat,
                    &Options {
                        seed,
                        ..Options::default()
                    },
                )
                .is_empty(),
            );
        }
        eprintln!("flat series with a change point: {false_alarms}/100");
        assert!(
            false_alarms <= 5,
            "{false_alarms}/100 flat series had a change point"
        );
    }

    #[test]
    fn finds_two_steps_and_their_p_values() {
        let mut x = noisy(40, 20, 0.10, 0.01, 3);
        for v in &mut x[30..] {
            *v *= 0.8;
        }
        let cps = e_divisive(&x, &Options::default());
        let at: Vec<usize> = cps.iter().map(|c| c.index).collect();
        assert_eq!(at, [20, 30], "{cps:?}");
        for c in &cps {
            assert!(c.p_value <= 0.01 && c.p_value >= 1.0 / 200.0, "{c:?}");
        }
        // The same seed, the same answer.
        assert_eq!(e_divisive(&x, &Options::default()), cps);
    }

    #[test]
    fn constant_and_short_series_have_no_change_point() {
        assert!(e_divisive(&[2.0; 50], &Options::default()).is_empty());
        assert!(e_divisive(&[1.0, 1.0, 1.0, 9.0, 9.0], &Options::default()).is_empty());
        // Three and three, perfectly apart: p = 2 / C(6, 3) = 0.1 at best.
        let x = [1.0, 1.0, 1.0, 9.0, 9.0, 9.0];
        assert!(e_divisive(&x, &Options::default()).is_empty());
        let loose = Options {
            significance: 0.2,
            ..Options::default()
        };
        assert_eq!(e_divisive(&x, &loose)[0].index, 3);
    }

    #[test]
    fn options_that_cannot_work_are_refused() {
        let few = Options {
            permutations: 50,
            ..Options::default()
        };
        assert!(
            few.check().unwrap_err().contains("at least 99"),
            "{:?}",
            few.check()
        );
        assert!(Options {
            min_size: 1,
            ..Options::default()
        }
        .check()
        .is_err());
        assert!(Options {
            significance: 0.0,
            ..Options::default()
        }
        .check()
        .is_err());
        assert_eq!(Options::default().check(), Ok(()));
    }

    #[test]
    fn threshold_flags_at_the_kth_consecutive_bad_point() {
        let o = ThresholdOptions::default(); // window 5, 10%, 3 in a row
                                             // Lower is better: 100 for 6 points, then 115 (15% worse).
        let mut x = vec![100.0, 101.0, 99.0, 100.0, 100.0, 100.0];
        x.extend([115.0, 116.0]);
        assert!(
            threshold_flags(&x, false, &o).is_empty(),
            "two bad points are not a flag"
        );
        x.push(117.0);
        let flags = threshold_flags(&x, false, &o);
        assert_eq!(
            flags,
            [Flag {
                start: 6,
                flagged_at: 8,
                end: 8,
                baseline: 100.0,
                worst: 117.0
            }]
        );
        // The streak is judged against the baseline before it, so it stays
        // flagged while it lasts, and ends at the first point within tolerance.
        x.extend([115.0, 114.0, 104.0, 100.0]);
        let flags = threshold_flags(&x, false, &o);
        assert_eq!(
            (flags[0].start, flags[0].flagged_at, flags[0].end),
            (6, 8, 10)
        );
        // Within tolerance is not bad: 109 against 100.
        let ok = [100.0, 100.0, 100.0, 109.0, 109.0, 109.0, 109.0];
        assert!(threshold_flags(&ok, false, &o).is_empty());
        // Higher is better: a 15% drop is the regression, a rise is not.
        let drop = [10.0, 10.0, 10.0, 10.0, 8.5, 8.5, 8.4];
        let flags = threshold_flags(&drop, true, &o);
        assert_eq!(
            (flags[0].start, flags[0].flagged_at, flags[0].worst),
            (4, 6, 8.4)
        );
        let rise = [10.0, 10.0, 10.0, 10.0, 12.0, 12.0, 12.0];
        assert!(threshold_flags(&rise, true, &o).is_empty());
        // Fewer than half the window before it: not judged yet.
        let early = [10.0, 10.0, 20.0, 20.0, 20.0];
        assert!(threshold_flags(&early, false, &o).is_empty());
        assert_eq!(o.min_points(), 6);
    }

    #[test]
    fn threshold_flags_a_synthetic_step_at_the_kth_run_after_it() {
        let x = noisy(30, 15, 0.20, 0.02, 11);
        for k in 1..=5 {
            let o = ThresholdOptions {
                consecutive: k,
                ..ThresholdOptions::default()
            };
            let flags = threshold_flags(&x, false, &o);
            assert_eq!(flags.len(), 1, "{flags:?}");
            assert_eq!(
                (flags[0].start, flags[0].flagged_at, flags[0].end),
                (15, 14 + k, 29)
            );
        }
    }

    #[test]
    fn student_t_quantiles() {
        for (p, df, want) in [
            (0.975, 1.0, 12.706_204_736),
            (0.975, 10.0, 2.228_138_852),
            (0.95, 4.0, 2.131_846_786),
            (0.975, 1e6, 1.959_966_4),
            (0.975, 2.0, 4.302_652_730),
            (0.975, 30.0, 2.042_272_456),
        ] {
            let t = student_t_quantile(p, df);
            assert!(
                (t - want).abs() < 1e-5 * want,
                "t({p}, {df}) = {t}, want {want}"
            );
        }
        assert!((student_t_cdf(0.0, 3.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn mean_change_with_an_interval() {
        let before = [100.0, 102.0, 98.0, 101.0, 99.0];
        let after = [130.0, 131.0, 129.0, 130.5, 129.5];
        let c = mean_change(&before, &after, 0.95);
        assert!((c.relative - 0.3).abs() < 1e-12, "{c:?}");
        assert!(
            c.lo < 0.3 && c.hi > 0.3 && c.lo > 0.25 && c.hi < 0.35,
            "{c:?}"
        );
        // No spread: the interval is the point.
        let c = mean_change(&[1.0, 1.0], &[2.0, 2.0], 0.95);
        assert_eq!((c.relative, c.lo, c.hi), (1.0, 1.0, 1.0));
        // From zero there is no relative change.
        assert!(mean_change(&[0.0, 0.0], &[0.1, 0.2], 0.95)
            .relative
            .is_nan());
    }
}
