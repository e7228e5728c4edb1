//! The process's open-file limit: each stream in flight holds a socket, so a
//! run at concurrency 1,500 needs more than the common soft limit of 1,024.

/// File descriptors a run needs besides one socket per request in flight
/// (stdio, logs, the results file, the runtime's own, servers' pipes).
pub const RESERVED_FDS: u64 = 64;

/// Lifts the open-file soft limit to the hard limit, as far as the system
/// allows; returns the soft limit now in force (`None` where unknown).
pub fn raise_soft_limit() -> Option<u64> {
    // SAFETY: plain libc calls on a struct we own.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return None;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                return Some(raised.rlim_cur as u64);
            }
        }
        Some(lim.rlim_cur as u64)
    }
}

/// A warning when `concurrency` streams cannot all hold a socket under an
/// open-file limit of `limit` (requests past it would fail with "Too many
/// open files").
pub fn concurrency_warning(concurrency: u64, limit: Option<u64>) -> Option<String> {
    let limit = limit?;
    (concurrency + RESERVED_FDS > limit).then(|| {
        format!(
            "warning: concurrency {concurrency} needs about {} open files but the limit is {limit} \
             (raise the hard limit, e.g. `ulimit -n {}`); requests past it will fail",
            concurrency + RESERVED_FDS,
            concurrency + RESERVED_FDS
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_rises_and_concurrency_is_checked_against_it() {
        let limit = raise_soft_limit().expect("a limit on Linux");
        assert!(limit >= 64, "{limit}");
        assert_eq!(concurrency_warning(10, Some(1024)), None);
        let w = concurrency_warning(1500, Some(1024)).unwrap();
        assert!(
            w.contains("concurrency 1500") && w.contains("limit is 1024"),
            "{w}"
        );
        assert_eq!(concurrency_warning(1500, None), None);
    }
}
