//! GPU facts. This build carries no CUDA support (the `cuda` feature is not
//! implemented yet), so it reports "no GPU" and cases with
//! `requires_gpu = true` are listed as ignored.

/// Whether a usable GPU was found.
pub fn available() -> bool {
    false
}

/// One line for reports and for `servegate list`'s ignore reasons.
pub fn describe() -> String {
    "no GPU: this build has no CUDA support".to_string()
}
