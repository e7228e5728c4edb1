//! Every file in `scenarios/` and `suites/` is a test. See `servegate::harness`.

fn main() -> std::process::ExitCode {
    servegate::harness::main()
}
