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

/// Device memory in use, in bytes, summed over the GPUs servers use; `None`
/// where it cannot be measured (always, in this build). Exclusive targets use
/// it to wait until one server's memory is released before the next starts.
pub fn memory_used_bytes() -> Option<u64> {
    None
}
