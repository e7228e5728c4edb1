//! The `servegate` command line: parse the arguments, run the command, turn
//! its outcome into the exit status (0 passed, 1 failed, 2 usage or
//! configuration error). The commands themselves live in `cli/`.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let code = match cli::Cli::parse().execute() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            e.report();
            e.exit_code()
        }
    };
    servegate::server::process::wait_for_interrupt_handler();
    code
}
