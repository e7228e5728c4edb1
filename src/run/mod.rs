//! Running cases: scenarios (a workload against both targets, then the
//! gate) and quality suites (tasks scored on both targets, then the
//! tolerances), with the progress shown while they run.

pub mod progress;
pub mod scenario;
pub mod suite;
