use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    conveyor::cli::complete_if_asked();
    conveyor::cli::run(conveyor::cli::Cli::parse())
}
