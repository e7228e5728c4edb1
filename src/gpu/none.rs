//! The build without CUDA support.

use super::Probe;

pub fn probe() -> Probe {
    Probe::NotBuilt {
        reason: "this binary was built without the `cuda` feature".to_string(),
    }
}

pub fn memory_used() -> Option<Vec<u64>> {
    None
}

pub fn process_memory() -> Option<Vec<(u32, u64)>> {
    None
}

pub fn memory_source() -> String {
    "none: this binary was built without the `cuda` feature".to_string()
}
