//! Which targets run when. A run's work is a list of jobs (one case on one
//! side); [`schedule`] orders them target by target so each target starts
//! once for every case that uses it, and [`Pool`] keeps the started targets,
//! stopping every other one before an exclusive target starts, so exclusive
//! targets (GPU servers) never run at the same time.

use std::time::{Duration, Instant};

use super::{process, RunningTarget, TargetEnv};
use crate::config::TargetSpec;

/// A target as a case sees it: two cases share a server only when name,
/// specification and model are all equal.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetKey {
    pub name: String,
    pub spec: TargetSpec,
    pub model: String,
}

/// Orders jobs: for each distinct target in order of first use, every
/// `(case, side)` that needs it, in case order. `needs[case][side]` is the
/// target a case needs on that side (`None`: nothing to run).
pub fn schedule<K: PartialEq>(needs: &[[Option<K>; 2]]) -> Vec<(usize, usize)> {
    let mut order: Vec<&K> = Vec::new();
    for pair in needs {
        for key in pair.iter().flatten() {
            if !order.contains(&key) {
                order.push(key);
            }
        }
    }
    let mut jobs = Vec::new();
    for key in order {
        for (case, pair) in needs.iter().enumerate() {
            for (side, need) in pair.iter().enumerate() {
                if need.as_ref() == Some(key) {
                    jobs.push((case, side));
                }
            }
        }
    }
    jobs
}

/// Started targets of one run. Dropping the pool stops them all.
#[derive(Default)]
pub struct Pool {
    running: Vec<(TargetKey, RunningTarget)>,
    /// Targets that would not start, with the error, so that later cases
    /// needing them fail at once instead of waiting for them again.
    failed: Vec<(TargetKey, String)>,
    /// GPU memory in use before the first exclusive target started.
    gpu_level: Option<Option<u64>>,
}

/// Longest wait for GPU memory to be released between exclusive targets.
const GPU_RELEASE_TIMEOUT: Duration = Duration::from_secs(120);

impl Pool {
    pub fn new() -> Self {
        Self::default()
    }

    /// The running target for `key`, started if needed (stopping whatever
    /// may not run beside it first).
    pub async fn acquire(
        &mut self,
        key: &TargetKey,
        env: &TargetEnv,
    ) -> anyhow::Result<&mut RunningTarget> {
        if let Some((_, error)) = self.failed.iter().find(|(k, _)| k == key) {
            anyhow::bail!(
                "{error}\n(target `{}` failed to start earlier in this run; not retried)",
                key.name
            );
        }
        if let Some(i) = self.running.iter().position(|(k, _)| k == key) {
            if self.running[i].1.exited().is_none() {
                return Ok(&mut self.running[i].1);
            }
            // It died between cases: start it again.
            self.running.remove(i);
        }
        let exclusive = key.spec.is_exclusive();
        let mut stopped_exclusive = false;
        // The processes of stopped servers that held device memory (NVML
        // per process): the next exclusive target waits for them to leave.
        let mut leaving: Option<Vec<u32>> = Some(Vec::new());
        self.running.retain_mut(|(_, t)| {
            if exclusive || t.exclusive {
                stopped_exclusive |= t.exclusive;
                if let (Some(pids), Some(pgid)) = (&mut leaving, t.process_group()) {
                    match crate::gpu::group_pids(pgid, process::group_of) {
                        Some(held) => pids.extend(held),
                        None => leaving = None,
                    }
                }
                t.stop();
                false
            } else {
                true
            }
        });
        if exclusive || stopped_exclusive {
            let waited = match (&leaving, self.gpu_level) {
                // Watched per process: the stopped servers' own memory.
                (Some(pids), _) if crate::gpu::process_memory().is_some() => {
                    let pids = pids.clone();
                    tokio::task::spawn_blocking(move || {
                        crate::gpu::wait_for_processes_to_leave(&pids, GPU_RELEASE_TIMEOUT)
                    })
                    .await
                    .map_err(|e| e.to_string())
                    .and_then(|r| r)
                }
                (_, None) => {
                    self.gpu_level = Some(crate::gpu::memory_used_bytes());
                    Ok(())
                }
                (_, Some(level)) => wait_for_gpu_memory_release(level, GPU_RELEASE_TIMEOUT).await,
            };
            if let Err(e) = waited {
                eprintln!("warning: before starting `{}`: {e}", key.name);
            }
        }
        match RunningTarget::start(&key.name, &key.spec, &key.model, env).await {
            Ok(t) => {
                self.running.push((key.clone(), t));
                Ok(&mut self.running.last_mut().expect("just pushed").1)
            }
            Err(e) => {
                self.failed.push((key.clone(), format!("{e:#}")));
                Err(e)
            }
        }
    }

    /// After a job: when the target has exited, removes it (stopping what is
    /// left of its process group) and says how, with the tail of its log.
    /// `settle` gives a server that just refused requests time to finish dying.
    pub async fn take_exited(&mut self, key: &TargetKey, settle: Duration) -> Option<String> {
        let i = self.running.iter().position(|(k, _)| k == key)?;
        let deadline = Instant::now() + settle;
        let how = loop {
            match self.running[i].1.exited() {
                Some(how) => break how,
                None if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                None => return None,
            }
        };
        let (_, mut target) = self.running.remove(i);
        target.stop();
        Some(match target.quote_log() {
            Some(log) => format!("{how}\n{log}"),
            None => how,
        })
    }

    /// Stops every running target, in start order.
    pub fn stop_all(&mut self) {
        for (_, t) in &mut self.running {
            t.stop();
        }
        self.running.clear();
    }
}

/// The wait between exclusive targets on a GPU: until device memory in use
/// is back to `level` (what was in use before the first exclusive target
/// started), for at most `timeout`. Without a GPU there is nothing to wait for.
pub async fn wait_for_gpu_memory_release(
    level: Option<u64>,
    timeout: Duration,
) -> Result<(), String> {
    /// Allocations of other processes come and go; this much above the level counts as released.
    const SLACK: u64 = 256 << 20;
    let Some(level) = level else {
        return Ok(());
    };
    tokio::task::spawn_blocking(move || crate::gpu::wait_for_release(level, SLACK, timeout))
        .await
        .map_err(|e| e.to_string())?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_target_serves_all_its_cases_before_the_next_starts() {
        // Three cases comparing A with B, then one comparing C with A.
        let needs = [
            [Some('A'), Some('B')],
            [Some('A'), Some('B')],
            [Some('A'), Some('B')],
            [Some('C'), Some('A')],
        ];
        assert_eq!(
            schedule(&needs),
            vec![
                (0, 0),
                (1, 0),
                (2, 0),
                (3, 1),
                (0, 1),
                (1, 1),
                (2, 1),
                (3, 0)
            ]
        );
    }

    #[test]
    fn one_case_runs_candidate_then_baseline() {
        assert_eq!(schedule(&[[Some(1), Some(2)]]), vec![(0, 0), (0, 1)]);
        // The same target on both sides: two jobs, one server.
        assert_eq!(schedule(&[[Some(1), Some(1)]]), vec![(0, 0), (0, 1)]);
        // A recorded baseline or a case that failed early needs nothing.
        assert_eq!(schedule(&[[Some(1), None], [None, None]]), vec![(0, 0)]);
    }

    #[tokio::test]
    async fn no_gpu_means_no_wait() {
        let started = Instant::now();
        assert!(wait_for_gpu_memory_release(Some(0), Duration::from_secs(5))
            .await
            .is_ok());
        assert!(started.elapsed() < Duration::from_secs(1));
    }
}
