//! CPython's `random.Random`, as far as lm-evaluation-harness uses it to
//! draw few-shot examples: seeding from a non-negative integer, `getrandbits`,
//! `_randbelow` and `sample` over a sequence. Pure; no IO.
//!
//! Hand-rolled because the few-shot contexts must be the very ones lm-eval
//! builds, so the stream of numbers must be CPython's, bit for bit: the
//! `rand_mt` crate gives the same Mersenne Twister words but not CPython's
//! integer seeding, rejection sampling or `sample()`'s two strategies, which
//! are what decide the draws. The algorithms are those of CPython's
//! `Modules/_randommodule.c` and `Lib/random.py` (3.8 to 3.13 agree on
//! everything used here); the tests compare with Python's own output.

const N: usize = 624;
const M: usize = 397;
const MATRIX_A: u32 = 0x9908_b0df;
const UPPER_MASK: u32 = 0x8000_0000;
const LOWER_MASK: u32 = 0x7fff_ffff;

/// `random.Random(seed)` for a non-negative integer seed.
#[derive(Clone)]
pub struct PyRandom {
    state: [u32; N],
    index: usize,
}

impl PyRandom {
    /// `random.Random(seed)`: the integer's 32-bit words, least significant
    /// first (one word for 0), fed to `init_by_array`.
    pub fn new(seed: u64) -> Self {
        let mut key = vec![seed as u32];
        if seed >> 32 != 0 {
            key.push((seed >> 32) as u32);
        }
        let mut r = PyRandom {
            state: [0; N],
            index: N,
        };
        r.init_by_array(&key);
        r
    }

    fn init_genrand(&mut self, s: u32) {
        self.state[0] = s;
        for i in 1..N {
            let prev = self.state[i - 1];
            self.state[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        self.index = N;
    }

    fn init_by_array(&mut self, key: &[u32]) {
        self.init_genrand(19_650_218);
        let (mut i, mut j) = (1usize, 0usize);
        let mt = &mut self.state;
        for _ in 0..N.max(key.len()) {
            let prev = mt[i - 1];
            mt[i] = (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_664_525))
                .wrapping_add(key[j])
                .wrapping_add(j as u32);
            i += 1;
            j += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
            if j >= key.len() {
                j = 0;
            }
        }
        for _ in 0..N - 1 {
            let prev = mt[i - 1];
            mt[i] =
                (mt[i] ^ (prev ^ (prev >> 30)).wrapping_mul(1_566_083_941)).wrapping_sub(i as u32);
            i += 1;
            if i >= N {
                mt[0] = mt[N - 1];
                i = 1;
            }
        }
        mt[0] = 0x8000_0000;
    }

    fn twist(&mut self) {
        let mt = &mut self.state;
        for k in 0..N {
            let y = (mt[k] & UPPER_MASK) | (mt[(k + 1) % N] & LOWER_MASK);
            let mag = if y & 1 == 0 { 0 } else { MATRIX_A };
            mt[k] = mt[(k + M) % N] ^ (y >> 1) ^ mag;
        }
        self.index = 0;
    }

    /// The generator's next 32-bit word (`genrand_uint32`).
    pub fn next_u32(&mut self) -> u32 {
        if self.index >= N {
            self.twist();
        }
        let mut y = self.state[self.index];
        self.index += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// `getrandbits(k)` for 0 ≤ k ≤ 64: whole words, least significant
    /// first, the last one shifted down to the bits still wanted.
    pub fn getrandbits(&mut self, k: u32) -> u64 {
        assert!(k <= 64, "getrandbits({k}) beyond 64 bits");
        if k == 0 {
            return 0;
        }
        if k <= 32 {
            return u64::from(self.next_u32() >> (32 - k));
        }
        let low = u64::from(self.next_u32());
        let high = u64::from(self.next_u32() >> (64 - k));
        low | (high << 32)
    }

    /// `_randbelow(n)`: `getrandbits(n.bit_length())` until below `n`
    /// (0 for n = 0, as Python 3.12 returns).
    pub fn randbelow(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let k = usize::BITS - n.leading_zeros();
        loop {
            let r = self.getrandbits(k) as usize;
            if r < n {
                return r;
            }
        }
    }

    /// `sample(range(n), k)`: the positions drawn, in draw order. Like
    /// CPython, a pool that is small against the draw is shuffled in place;
    /// a large one is drawn from with a set of the positions already taken.
    pub fn sample(&mut self, n: usize, k: usize) -> Result<Vec<usize>, String> {
        if k > n {
            return Err(format!(
                "cannot draw {k} of {n} (sample larger than population)"
            ));
        }
        let mut setsize = 21usize;
        if k > 5 {
            // 4 ** ceil(log(k * 3, 4)), with math.log's float arithmetic.
            let exponent = ((k as f64 * 3.0).ln() / 4f64.ln()).ceil() as u32;
            setsize += 4usize.saturating_pow(exponent);
        }
        let mut result = Vec::with_capacity(k);
        if n <= setsize {
            let mut pool: Vec<usize> = (0..n).collect();
            for i in 0..k {
                let j = self.randbelow(n - i);
                result.push(pool[j]);
                pool[j] = pool[n - i - 1];
            }
        } else {
            let mut selected = std::collections::HashSet::with_capacity(k);
            for _ in 0..k {
                let mut j = self.randbelow(n);
                while !selected.insert(j) {
                    j = self.randbelow(n);
                }
                result.push(j);
            }
        }
        Ok(result)
    }
}

/// lm-eval's few-shot draw for one evaluated document (`ContextSampler.sample`
/// in lm-eval 0.4): `n` examples sampled from `pool`; when the pool is the
/// evaluated split (`doc` given), `n + 1` are drawn and every copy of the
/// document is dropped, keeping the first `n`; should that leave fewer than
/// `n` (the pool holds the document twice), `n` are drawn again from the
/// pool without it. Returns positions in `pool`.
pub fn lm_eval_fewshot<T: PartialEq>(
    rng: &mut PyRandom,
    pool: &[T],
    n: usize,
    doc: Option<&T>,
) -> Result<Vec<usize>, String> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if pool.is_empty() {
        return Err("no few-shot documents to draw from".into());
    }
    let Some(doc) = doc else {
        return rng.sample(pool.len(), n);
    };
    let drawn = rng.sample(pool.len(), n + 1)?;
    let kept: Vec<usize> = drawn
        .into_iter()
        .filter(|&i| pool[i] != *doc)
        .take(n)
        .collect();
    if kept.len() == n {
        return Ok(kept);
    }
    let others: Vec<usize> = (0..pool.len()).filter(|&i| pool[i] != *doc).collect();
    Ok(rng
        .sample(others.len(), n)?
        .into_iter()
        .map(|i| others[i])
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Printed by CPython 3.11 itself: `r = random.Random(1234);
    // [r.getrandbits(32) for _ in range(3)]`, `random.Random(0).getrandbits(32)`,
    // `random.Random(2**40).getrandbits(64)`, `random.Random(1234).sample(range(10), 5)`,
    // `...sample(range(1000), 5)`, `random.Random(42).sample(range(100), 8)`.
    const PY_1234_WORDS: [u32; 3] = [4_150_886_329, 3_342_196_574, 1_892_932_127];
    const PY_0_WORD: u64 = 3_626_764_237;
    const PY_2P40_BITS64: u64 = 6_515_814_827_016_330_625;
    const PY_SAMPLE_10_5: [usize; 5] = [7, 1, 0, 9, 4];
    const PY_SAMPLE_1000_5: [usize; 5] = [989, 796, 451, 119, 7];
    const PY_SAMPLE_42_100_8: [usize; 8] = [81, 14, 3, 94, 35, 31, 28, 17];

    #[test]
    fn words_and_bits_match_cpython() {
        let mut r = PyRandom::new(1234);
        assert_eq!(
            [r.next_u32(), r.next_u32(), r.next_u32()],
            [PY_1234_WORDS[0], PY_1234_WORDS[1], PY_1234_WORDS[2]]
        );
        let mut r = PyRandom::new(0);
        assert_eq!(r.getrandbits(32), PY_0_WORD);
        let mut r = PyRandom::new(1 << 40);
        assert_eq!(r.getrandbits(64), PY_2P40_BITS64);
    }

    #[test]
    fn sample_matches_cpython_for_both_strategies() {
        // A small pool (shuffled in place) and a large one (set of taken positions).
        assert_eq!(PyRandom::new(1234).sample(10, 5).unwrap(), PY_SAMPLE_10_5);
        assert_eq!(
            PyRandom::new(1234).sample(1000, 5).unwrap(),
            PY_SAMPLE_1000_5
        );
        assert_eq!(
            PyRandom::new(42).sample(100, 8).unwrap(),
            PY_SAMPLE_42_100_8
        );
        assert!(PyRandom::new(1).sample(3, 4).is_err());
    }

    #[test]
    fn cpython_itself_agrees_on_many_draws() {
        // Where python3 is at hand, compare a few hundred draws with it.
        let script = r#"
import random, json
out = []
for seed in (0, 1, 7, 1234, 2**32 + 5, 2**40):
    r = random.Random(seed)
    for n, k in ((1, 1), (5, 5), (6, 3), (21, 3), (22, 3), (21, 6), (85, 6), (86, 6), (85, 7), (86, 7), (61, 9), (200, 5), (1000, 25), (5000, 100)):
        out.append([seed, n, k, r.sample(range(n), k)])
print(json.dumps(out))
"#;
        let Ok(out) = std::process::Command::new("python3")
            .args(["-c", script])
            .output()
        else {
            eprintln!("python3 not found: compared with the recorded values only");
            return;
        };
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cases: Vec<(u64, usize, usize, Vec<usize>)> =
            serde_json::from_slice(&out.stdout).unwrap();
        let mut current: Option<(u64, PyRandom)> = None;
        for (seed, n, k, want) in cases {
            if current.as_ref().map(|(s, _)| *s) != Some(seed) {
                current = Some((seed, PyRandom::new(seed)));
            }
            let r = &mut current.as_mut().unwrap().1;
            assert_eq!(
                r.sample(n, k).unwrap(),
                want,
                "seed {seed}, sample(range({n}), {k})"
            );
        }
    }

    #[test]
    fn fewshot_draws_drop_the_document_itself() {
        let pool = ["a", "b", "c", "d", "e", "f"];
        // Pool not the evaluated split: plain sample.
        let mut r = PyRandom::new(1234);
        let plain = lm_eval_fewshot(&mut r, &pool, 3, None).unwrap();
        assert_eq!(plain, PyRandom::new(1234).sample(6, 3).unwrap());
        // The document itself is never among its examples, and n are kept.
        for (i, doc) in pool.iter().enumerate() {
            let mut r = PyRandom::new(1234);
            let got = lm_eval_fewshot(&mut r, &pool, 3, Some(doc)).unwrap();
            assert_eq!(got.len(), 3);
            assert!(!got.contains(&i), "{got:?} holds {i}");
            let drawn = PyRandom::new(1234).sample(6, 4).unwrap();
            let want: Vec<usize> = drawn.into_iter().filter(|&j| j != i).take(3).collect();
            assert_eq!(got, want);
        }
        // A pool holding the document twice: drawn again without it.
        let dup = ["a", "a", "b", "c"];
        for seed in 0..20 {
            let got = lm_eval_fewshot(&mut PyRandom::new(seed), &dup, 2, Some(&"a")).unwrap();
            assert_eq!(got.len(), 2);
            assert!(got.iter().all(|&i| dup[i] != "a"), "{got:?}");
        }
        assert!(lm_eval_fewshot(&mut PyRandom::new(1), &dup, 3, Some(&"a")).is_err());
    }
}
