use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    conveyor::cli::run(conveyor::cli::Cli::parse())
}
