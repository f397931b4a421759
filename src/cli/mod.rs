//! The command line: each subcommand is one view over the library.

mod list;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "conveyor",
    version,
    about = "A terminal operations console with an embedded workflow scheduler and engine"
)]
#[command(
    long_about = "Conveyor runs the pipelines kept as TOML files in a workflows folder: on a schedule, when a file arrives, or by hand.\n\nWith no subcommand it lists the workflows; the interactive console comes in a later release."
)]
pub struct Cli {
    /// Folder of workflow files (*.toml) and their registry, conveyor.toml.
    #[arg(long, global = true, value_name = "DIR", default_value = "workflows", env = "CONVEYOR_WORKFLOWS")]
    pub workflows: PathBuf,

    /// Folder where runs, logs and the lock are kept.
    #[arg(long, global = true, value_name = "DIR", default_value = ".conveyor", env = "CONVEYOR_STATE")]
    pub state: PathBuf,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check workflow files and the registry; print every problem with file:line:column.
    ///
    /// Exit status 0 when everything is valid, 1 when any file has a problem.
    Validate {
        /// A workflows folder or a single file (default: the --workflows folder).
        path: Option<PathBuf>,
    },
    /// List the workflows: id, trigger, number of tasks, next fire time, file.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cli: Cli) -> ExitCode {
    match cli.command {
        Some(Command::Validate { path }) => validate::run(path.as_deref().unwrap_or(&cli.workflows)),
        Some(Command::List { json }) => list::run(&cli.workflows, json),
        None => list::run(&cli.workflows, false),
    }
}
