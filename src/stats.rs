//! Statistics, pure: distributions and percentiles, means with their
//! standard errors (as lm-evaluation-harness computes them), the exact
//! McNemar test, binomial bounds and percentile intervals. No IO, no clocks,
//! no knowledge of requests or tasks: callers bring numbers.

use serde::{Deserialize, Serialize};

/// JSON `null` (how serde_json writes NaN) read back as NaN: a value that
/// was not measured stays unmeasured through a results file, never 0.
pub fn null_as_nan<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

fn nan() -> f64 {
    f64::NAN
}

/// Summary of one sample. An empty sample has `count == 0` and NaN
/// statistics (written as `null`), never zeros that could pass for data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Distribution {
    pub count: usize,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub mean: f64,
    /// Population standard deviation (numpy's default, as vLLM reports it).
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub stddev: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub min: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub p50: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub p90: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub p95: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub p99: f64,
    #[serde(default = "nan", deserialize_with = "null_as_nan")]
    pub max: f64,
}

impl Default for Distribution {
    fn default() -> Self {
        let nan = f64::NAN;
        Self {
            count: 0,
            mean: nan,
            stddev: nan,
            min: nan,
            p50: nan,
            p90: nan,
            p95: nan,
            p99: nan,
            max: nan,
        }
    }
}

impl Distribution {
    pub fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
        if v.is_empty() {
            return Self::default();
        }
        v.sort_by(f64::total_cmp);
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n;
        Self {
            count: v.len(),
            mean,
            stddev: var.sqrt(),
            min: v[0],
            p50: percentile(&v, 50.0),
            p90: percentile(&v, 90.0),
            p95: percentile(&v, 95.0),
            p99: percentile(&v, 99.0),
            max: v[v.len() - 1],
        }
    }

    pub fn stat(&self, stat: Stat) -> f64 {
        match stat {
            Stat::P50 => self.p50,
            Stat::P90 => self.p90,
            Stat::P95 => self.p95,
            Stat::P99 => self.p99,
            Stat::Mean => self.mean,
            Stat::Stddev => self.stddev,
        }
    }
}

/// Percentile `q` (0–100) of sorted values, interpolating linearly between closest ranks.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let rank = (q / 100.0).clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = rank.floor() as usize;
            let hi = (lo + 1).min(n - 1);
            sorted[lo] + (sorted[hi] - sorted[lo]) * (rank - lo as f64)
        }
    }
}

/// Percentiles `qs` (each 0–100) of `values`, in the order asked, as numpy's
/// `np.percentile` (linear interpolation) computes them; non-finite values
/// are left out, and with none left every percentile is NaN.
pub fn percentiles_of(values: &[f64], qs: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    sorted.sort_by(f64::total_cmp);
    qs.iter().map(|&q| percentile(&sorted, q)).collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stat {
    P50,
    P90,
    P95,
    P99,
    Mean,
    Stddev,
}

/// lm-eval's `mean`: `sum(xs) / len(xs)`, summed left to right.
pub fn mean(xs: &[f64]) -> f64 {
    let mut sum = 0.0;
    for &x in xs {
        sum += x;
    }
    sum / xs.len() as f64
}

/// The mean and its standard error (sample standard deviation / √n);
/// the error is `None` when n ≤ 1, where lm-eval reports "N/A". The mean of
/// nothing is NaN.
pub fn mean_stderr(xs: &[f64]) -> (f64, Option<f64>) {
    let mu = mean(xs);
    if xs.len() <= 1 {
        return (mu, None);
    }
    let mut squares = 0.0;
    for &x in xs {
        squares += (x - mu) * (x - mu);
    }
    let n = xs.len() as f64;
    let stddev = (squares / (n - 1.0)).sqrt();
    (mu, Some(stddev / n.sqrt()))
}

/// lm-eval's `aggregate_subtask_metrics` weighted by size:
/// `Σ value·size / Σ size`.
pub fn weighted_mean(values: &[f64], sizes: &[usize]) -> f64 {
    assert_eq!(values.len(), sizes.len());
    let mut sum = 0.0;
    for (v, s) in values.iter().zip(sizes) {
        sum += v * *s as f64;
    }
    sum / sizes.iter().sum::<usize>() as f64
}

/// lm-eval's `pooled_sample_stderr`: the standard error of a size-weighted
/// group mean from its members' standard errors and sizes,
/// `√(Σ (nᵢ−1)·seᵢ²·nᵢ / (Σ nᵢ − k) / Σ nᵢ)`.
pub fn pooled_sample_stderr(stderrs: &[f64], sizes: &[usize]) -> f64 {
    assert_eq!(stderrs.len(), sizes.len());
    let mut sum = 0.0;
    for (se, &n) in stderrs.iter().zip(sizes) {
        sum += (n as f64 - 1.0) * (se * se) * n as f64;
    }
    let total = sizes.iter().sum::<usize>() as f64;
    let var = sum / (total - sizes.len() as f64);
    (var / total).sqrt()
}

/// Exact two-sided McNemar test: the p-value of `b` against `c` discordant
/// pairs, `min(1, 2·P[X ≤ min(b, c)])` with X ~ Binomial(b + c, ½); 1 when
/// there are no discordant pairs. Computed in log space from the largest
/// term down, so it stays accurate for hundreds of thousands of pairs.
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    let n = b + c;
    let m = b.min(c);
    if n == 0 || 2 * m >= n {
        return 1.0;
    }
    // ln of the term at k = m: ln C(n, m) − n ln 2, written as
    // Σ ln((n − m + i) / (4i)) − (n − 2m) ln 2 to keep the sum small,
    // with compensated summation.
    let (mut sum, mut comp) = (0.0f64, 0.0f64);
    for i in 1..=m {
        let term = ((n - m + i) as f64 / (4 * i) as f64).ln();
        let t = sum + term;
        if sum.abs() >= term.abs() {
            comp += (sum - t) + term;
        } else {
            comp += (term - t) + sum;
        }
        sum = t;
    }
    let ln_top = (sum + comp) - (n - 2 * m) as f64 * std::f64::consts::LN_2;
    // Σ_{k ≤ m} P[X = k] / P[X = m], the terms falling geometrically or faster.
    let mut ratio_sum = 1.0;
    let mut term = 1.0;
    let mut k = m;
    while k > 0 {
        term *= k as f64 / (n - k + 1) as f64;
        ratio_sum += term;
        if term < ratio_sum * 1e-18 {
            break;
        }
        k -= 1;
    }
    let p = (ln_top + ratio_sum.ln() + std::f64::consts::LN_2).exp();
    p.min(1.0)
}

/// Standard error of the mean per-item difference (sample standard
/// deviation / √n), when both sides scored the same number of items.
pub fn paired_stderr(candidate: &[f64], baseline: &[f64]) -> Option<f64> {
    let n = candidate.len();
    if n < 2 || n != baseline.len() {
        return None;
    }
    let d: Vec<f64> = candidate.iter().zip(baseline).map(|(c, b)| c - b).collect();
    let mean = d.iter().sum::<f64>() / n as f64;
    let var = d.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
    Some((var / n as f64).sqrt())
}

/// The one-sided 95% upper bound (Clopper–Pearson) of a rate seen `k` times in `n`.
pub fn upper_bound_95(k: u32, n: u32) -> f64 {
    if n == 0 || k >= n {
        return 1.0;
    }
    // The p at which P(X <= k) = 0.05, by bisection (P falls as p grows).
    let (mut lo, mut hi) = (k as f64 / n as f64, 1.0);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if binomial_cdf(k, n, mid) > 0.05 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The fewest trials whose 95% upper bound, with no event seen, is below `rate`.
pub fn trials_to_bound(rate: f64) -> u32 {
    (1..100_000)
        .find(|&n| upper_bound_95(0, n) < rate)
        .unwrap_or(100_000)
}

/// The one-sided 95% lower bound of a rate seen `k` times in `n`.
pub fn lower_bound_95(k: u32, n: u32) -> f64 {
    if n == 0 {
        return 0.0;
    }
    1.0 - upper_bound_95(n - k, n)
}

fn binomial_cdf(k: u32, n: u32, p: f64) -> f64 {
    let ln_choose = |n: u32, j: u32| -> f64 {
        (1..=j)
            .map(|i| ((n - j + i) as f64).ln() - (i as f64).ln())
            .sum()
    };
    (0..=k)
        .map(|j| (ln_choose(n, j) + j as f64 * p.ln() + (n - j) as f64 * (1.0 - p).ln()).exp())
        .sum::<f64>()
        .min(1.0)
}

/// The two-sided percentile interval at `level` of sorted replicates.
pub fn percentile_interval(sorted: &[f64], level: f64) -> (f64, f64) {
    let tail = (1.0 - level) / 2.0 * 100.0;
    (percentile(sorted, tail), percentile(sorted, 100.0 - tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&v, 50.0), 2.5);
        assert!((percentile(&v, 90.0) - 3.7).abs() < 1e-12);
        assert_eq!(percentile(&v, 100.0), 4.0);
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
    }

    #[test]
    fn percentiles_of_unsorted_values_in_the_order_asked() {
        let v = [4.0, f64::NAN, 1.0, 3.0, 2.0];
        assert_eq!(percentiles_of(&v, &[100.0, 50.0]), vec![4.0, 2.5]);
        let p = percentiles_of(&v, &[25.0, 90.0]);
        assert!(
            (p[0] - 1.75).abs() < 1e-12 && (p[1] - 3.7).abs() < 1e-12,
            "{p:?}"
        );
        assert!(percentiles_of(&[], &[50.0])[0].is_nan());
        assert!(percentiles_of(&[1.0], &[]).is_empty());
    }

    #[test]
    fn mean_and_stderr() {
        assert_eq!(mean_stderr(&[1.0, 0.0, 1.0, 1.0]), (0.75, Some(0.25)));
        assert_eq!(mean_stderr(&[1.0]), (1.0, None));
        assert!(mean_stderr(&[]).0.is_nan());
    }

    #[test]
    fn pooled_stderr() {
        // (4·0.1²·5 + 9·0.2²·10) / (15 − 2) / 15 = 3.8 / 195.
        let se = pooled_sample_stderr(&[0.1, 0.2], &[5, 10]);
        assert!((se - 0.139_596_488_090_422_55).abs() < 1e-15, "{se}");
        assert_eq!(weighted_mean(&[0.75, 0.5], &[4, 2]), 4.0 / 6.0);
    }

    #[test]
    fn mcnemar() {
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(1, 0), 1.0);
        assert_eq!(mcnemar_exact(7, 7), 1.0);
        assert!((mcnemar_exact(0, 5) - 0.0625).abs() < 1e-15);
        // 2·(1 + 12 + 66) / 4096
        let p = mcnemar_exact(2, 10);
        assert!((p - 0.038_574_218_75).abs() < 1e-15, "{p}");
        assert_eq!(p, mcnemar_exact(10, 2));
        // Against exact rational arithmetic.
        let p = mcnemar_exact(100, 160);
        assert!(
            (p / 0.000_238_941_903_068_140_23 - 1.0).abs() < 1e-12,
            "{p}"
        );
        let p = mcnemar_exact(20_000, 20_500);
        assert!(p > 0.0 && p < 1.0);
        assert!((p / 0.013_153_825_113_143_827 - 1.0).abs() < 1e-10, "{p}");
        let p = mcnemar_exact(0, 100_000);
        assert!(p.is_finite() && p >= 0.0);
    }

    #[test]
    fn binomial_bounds() {
        // Zero events in 300 trials: the rule of three, 3/n.
        let u = upper_bound_95(0, 300);
        assert!((u - (1.0 - 0.05f64.powf(1.0 / 300.0))).abs() < 1e-9, "{u}");
        assert!((0.0099..0.0100).contains(&u), "{u}");
        // One in 100: about 4.7%.
        let u = upper_bound_95(1, 100);
        assert!((0.046..0.048).contains(&u), "{u}");
        assert_eq!(upper_bound_95(5, 5), 1.0);
        let l = lower_bound_95(100, 100);
        assert!((l - 0.05f64.powf(0.01)).abs() < 1e-9, "{l}");
        assert_eq!(trials_to_bound(0.01), 299);
    }
}
