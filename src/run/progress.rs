//! Progress bars while a workload or a suite runs.

/// A progress bar on stderr; indicatif draws nothing when stderr is not a
/// terminal, and nothing at all when `SERVEGATE_NO_PROGRESS` is set.
pub fn progress_bar(label: &str, len: u32) -> indicatif::ProgressBar {
    let target = if progress_wanted(std::env::var_os(NO_PROGRESS_VAR).as_deref()) {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len as u64), target);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:30}] {pos}/{len} {elapsed}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(label.to_string());
    bar
}

/// Hides progress bars (CI logs, terminals that record output) when set to
/// anything but an empty value or `0`.
pub const NO_PROGRESS_VAR: &str = "SERVEGATE_NO_PROGRESS";

fn progress_wanted(no_progress: Option<&std::ffi::OsStr>) -> bool {
    no_progress.is_none_or(|v| v.is_empty() || v == "0")
}

#[cfg(test)]
mod tests {
    use super::progress_wanted;
    use std::ffi::OsStr;

    #[test]
    fn no_progress_hides_bars_unless_empty_or_zero() {
        assert!(progress_wanted(None));
        assert!(progress_wanted(Some(OsStr::new(""))));
        assert!(progress_wanted(Some(OsStr::new("0"))));
        assert!(!progress_wanted(Some(OsStr::new("1"))));
        assert!(!progress_wanted(Some(OsStr::new("yes"))));
    }
}
