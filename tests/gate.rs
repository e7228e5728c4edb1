//! Every file in `scenarios/` and `suites/` is a test. See `servegate::harness`.

fn main() -> std::process::ExitCode {
    servegate::harness::main(std::path::Path::new(env!("CARGO_MANIFEST_DIR")))
}
