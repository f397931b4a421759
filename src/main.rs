use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = conveyor::cli::Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("CONVEYOR_LOG").unwrap_or_else(|_| "warn".into()))
        .with_writer(std::io::stderr)
        .init();
    conveyor::cli::run(cli)
}
