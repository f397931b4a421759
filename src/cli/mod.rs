//! The command line: each subcommand is one view over the library.

mod backfill;
mod complete;
mod daemon;
mod docs;
mod engines;
mod follow;
mod gates;
mod graph;
mod history;
mod list;
mod logfile;
mod logs;
mod next;
mod remote;
mod run;
mod store_choice;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use clap_complete::ArgValueCompleter;

use crate::store::StoreLocation;

#[derive(Debug, Parser)]
#[command(
    name = "conveyor",
    version,
    about = "A terminal operations console with an embedded workflow scheduler and engine"
)]
#[command(
    long_about = "Conveyor runs the pipelines kept as TOML files in a workflows folder: on a schedule, when a file arrives, or by hand.\n\nWith no subcommand it opens the console: a live dashboard with the scheduler and engine inside it (or attached to the daemon that holds the state folder)."
)]
pub struct Cli {
    /// Folder of workflow files (*.toml) and their registry, conveyor.toml.
    #[arg(long, global = true, value_name = "DIR", default_value = "workflows", env = "CONVEYOR_WORKFLOWS")]
    pub workflows: PathBuf,

    /// Folder where runs, logs and the engine lock are kept.
    #[arg(long, global = true, value_name = "DIR", default_value = ".conveyor", env = "CONVEYOR_STATE")]
    pub state: PathBuf,

    /// Where the records live: a PostgreSQL URL (`postgres://user@host/db`) or conninfo (`host=… dbname=…`).
    /// Overrides `store` of the registry; without either, STATE/conveyor.db. Logs and work files stay in
    /// --state either way.
    #[arg(long, global = true, value_name = "ADDRESS", env = "CONVEYOR_STORE", hide_env_values = true)]
    pub store: Option<String>,

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
    /// Run a workflow now in this process, printing task changes and log lines as they come.
    ///
    /// Exit status 0 when the run succeeds, 1 when it fails or is cancelled. If an engine (a console or a
    /// daemon) already holds the state folder, the run is started there and followed to its end.
    Run(RunArgs),
    /// Run the scheduler and engine without a screen, until SIGTERM or SIGINT.
    ///
    /// Schedules fire, watched folders start runs, edits to the workflows folder take effect, and commands
    /// from other shells (`conveyor trigger`, `pause`, …) are acted on. Logs go to stderr and to
    /// STATE/conveyor.log. On SIGTERM no new task starts; running tasks get their grace period and their runs
    /// stay resumable.
    Daemon {
        /// How the daemon's log lines are written: `text` for people, `json` (one object a line) for log
        /// shippers.
        #[arg(long, value_enum, default_value = "text")]
        log_format: LogFormat,
        /// Serve Prometheus metrics at http://ADDR/metrics: a port (9464) is served on 127.0.0.1 only; name
        /// an address to serve beyond this machine (0.0.0.0:9464). Overrides `[metrics] listen` of the
        /// registry.
        #[arg(long, value_name = "ADDR")]
        metrics: Option<String>,
        /// On a store several engines share: run only attempts of these routes (services, agents, or
        /// `inline` for tasks with their own command), comma-separated. Every route by default.
        #[arg(long, value_name = "ROUTES", value_delimiter = ',')]
        serves: Vec<String>,
    },
    /// Upcoming fire times of a scheduled workflow, in its time zone (RFC 3339).
    Next {
        /// The workflow's id.
        #[arg(add = ArgValueCompleter::new(complete::workflows))]
        workflow: String,
        /// How many.
        #[arg(short = 'n', default_value_t = 5)]
        count: usize,
        /// Start after this instant (RFC 3339) instead of now.
        #[arg(long, value_name = "TIME")]
        from: Option<String>,
        /// Print a JSON array of strings.
        #[arg(long)]
        json: bool,
    },
    /// Past and current runs, newest first.
    History {
        /// Only this workflow's runs.
        #[arg(add = ArgValueCompleter::new(complete::workflows))]
        workflow: Option<String>,
        /// At most this many runs.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the logs of a run, of one of its tasks, or of one attempt.
    Logs {
        /// Run id (or a unique prefix of it).
        #[arg(add = ArgValueCompleter::new(complete::runs))]
        run: String,
        /// Only this task (its latest attempt unless --attempt is given).
        #[arg(add = ArgValueCompleter::new(complete::tasks))]
        task: Option<String>,
        /// Attempt number.
        #[arg(long, requires = "task")]
        attempt: Option<u32>,
        /// Print the log's bytes exactly as the task wrote them, for piping. Without it, a terminal gets the
        /// lines with control characters made visible (`\x1b`, `\r`); a pipe or a file gets the bytes.
        #[arg(long)]
        raw: bool,
    },
    /// Start a run in the engine that holds the state folder.
    Trigger(RunArgs),
    /// Pause a workflow (its scheduled fires are skipped) or a run (no new task starts).
    Pause {
        /// A workflow id or a run id.
        #[arg(add = ArgValueCompleter::new(complete::workflows_and_runs))]
        target: String,
    },
    /// Resume a paused workflow, or a paused or interrupted run.
    Resume {
        /// A workflow id or a run id.
        #[arg(add = ArgValueCompleter::new(complete::workflows_and_runs))]
        target: String,
    },
    /// Cancel a run: its running tasks are stopped, the rest never start.
    Cancel {
        #[arg(add = ArgValueCompleter::new(complete::runs))]
        run: String,
    },
    /// Run a failed task again; the run carries on from it with the same input.
    Retry {
        #[arg(add = ArgValueCompleter::new(complete::runs))]
        run: String,
        #[arg(add = ArgValueCompleter::new(complete::tasks))]
        task: String,
    },
    /// Skip a task: its input passes on to the next task.
    Skip {
        #[arg(add = ArgValueCompleter::new(complete::runs))]
        run: String,
        #[arg(add = ArgValueCompleter::new(complete::tasks))]
        task: String,
    },
    /// Run a task on another registered service or agent (now if it failed, else from its next attempt).
    Reroute {
        #[arg(add = ArgValueCompleter::new(complete::runs))]
        run: String,
        #[arg(add = ArgValueCompleter::new(complete::tasks))]
        task: String,
        /// The service or agent to use.
        #[arg(add = ArgValueCompleter::new(complete::routes))]
        to: String,
    },
    /// Approve items waiting at a governance gate (all of them unless --item names some).
    Approve(GateArgs),
    /// Reject items waiting at a governance gate (all of them unless --item names some).
    Reject(GateArgs),
    /// Acknowledge an alert.
    Ack {
        /// The alert's number.
        id: i64,
    },
    /// Print a workflow's task graph for Graphviz (`dot -Tsvg`) or Mermaid; with --run, each task's state in
    /// that run as its colour.
    Graph {
        /// The workflow's id.
        #[arg(add = ArgValueCompleter::new(complete::workflows))]
        workflow: String,
        #[arg(long, value_enum, default_value = "dot")]
        format: graph::Format,
        /// A run of the workflow (its id, or the start of it).
        #[arg(long, add = ArgValueCompleter::new(complete::runs))]
        run: Option<String>,
    },
    /// Print the completion script for a shell: `source <(conveyor completions bash)` in ~/.bashrc.
    ///
    /// The script asks this binary as you type, so workflow ids, recent run ids and a run's task names
    /// complete too (read from --workflows and --state as given on the line). With --static, a script that
    /// completes commands and options only, without calling the binary.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
        /// Commands and options only, for places where the binary cannot be run while completing.
        #[arg(long = "static")]
        fixed: bool,
    },
    /// Write the man pages (conveyor.1 and one per command) into a folder.
    Man {
        /// Where to write them.
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Start one run per instant of a workflow's schedule in a past range, as the schedule would have.
    ///
    /// Instants are the schedule's own, in its zone and daylight-saving rules (`conveyor next` prints the
    /// same). Each run gets `scheduled_at` in its input and `CONVEYOR_SCHEDULED_AT` in its tasks' environment,
    /// and is recorded with trigger `backfill`. Instants that already have a run (however started) are
    /// skipped unless --rerun. Runs start in the engine holding the state folder, or in one of this process's
    /// own. Ctrl-C stops starting new runs; those started go on. Exit status 0 when every run started
    /// succeeded, 1 when one failed or the backfill stopped on an error, 130 when interrupted.
    Backfill(backfill::BackfillArgs),
    /// Every gate waiting for an operator: run, workflow, task, the items held, since when, until when.
    Gates {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// The engines sharing the store: host, PID, the routes each serves, how long since its last heartbeat
    /// (on the database's clock), and which one leads. On the state folder's SQLite file there is one engine.
    Engines,
}

/// Answers a shell asking for completions (`COMPLETE=bash conveyor -- …`) and exits; does nothing otherwise.
/// Called first thing in `main`, before anything is printed.
pub fn complete_if_asked() {
    use clap::CommandFactory;
    clap_complete::CompleteEnv::with_factory(Cli::command).var(complete::VAR).complete();
}

/// Commands that start no engine and only print: `conveyor history | head` should end as `cat | head` does.
fn only_prints(command: Option<&Command>) -> bool {
    matches!(
        command,
        Some(
            Command::Validate { .. }
                | Command::List { .. }
                | Command::Next { .. }
                | Command::History { .. }
                | Command::Logs { .. }
                | Command::Graph { .. }
                | Command::Gates { .. }
                | Command::Engines
                | Command::Completions { .. }
                | Command::Man { .. }
        )
    )
}

/// Rust ignores SIGPIPE, so printing into a closed pipe is an error and `println!` panics on it. A command that
/// only prints takes the default back and ends quietly when the reader goes. (Not for engines: a task closing
/// its stdin early must not kill the engine that feeds it.)
fn quiet_on_closed_pipe() {
    // SAFETY: called once, before any thread is started; SIG_DFL is always a valid disposition.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// Run id (or a unique prefix of it).
    #[arg(add = ArgValueCompleter::new(complete::runs))]
    pub run: String,
    /// The gate's task; may be left out when one gate waits in the run.
    #[arg(add = ArgValueCompleter::new(complete::tasks))]
    pub task: Option<String>,
    /// A held item, by its `id` field, or by its place in the held list (from 0) when it has none
    /// (repeatable; `conveyor gates` lists them). Without it, every held item is answered.
    #[arg(long = "item", value_name = "ID")]
    pub items: Vec<String>,
    /// Why: kept with the decision in the task's output and the audit trail.
    #[arg(long, value_name = "TEXT")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The workflow's id.
    #[arg(add = ArgValueCompleter::new(complete::workflows))]
    pub workflow: String,
    /// A parameter, as NAME=VALUE (repeatable); converted to the type the workflow declares.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE")]
    pub params: Vec<String>,
    /// JSON for the first task's input: a file, or - for standard input.
    #[arg(long, value_name = "FILE")]
    pub input: Option<PathBuf>,
}

pub fn run(cli: Cli) -> ExitCode {
    let workflows = cli.workflows.clone();
    let state = cli.state.clone();
    init_logging(&cli);
    if only_prints(cli.command.as_ref()) {
        quiet_on_closed_pipe();
    }
    let location = || store_choice::chosen(cli.store.as_deref(), &workflows);
    let location = match &cli.command {
        Some(Command::Validate { .. } | Command::List { .. } | Command::Next { .. })
        | Some(Command::Completions { .. } | Command::Man { .. }) => StoreLocation::StateFolder,
        _ => match location() {
            Ok(location) => location,
            Err(error) => return fail(error),
        },
    };
    match cli.command {
        Some(Command::Daemon { metrics, serves, .. }) => {
            daemon::run(&workflows, &state, &location, metrics.as_deref(), &serves)
        }
        Some(Command::Next { workflow, count, from, json }) => {
            next::run(&workflows, &workflow, count, from.as_deref(), json)
        }
        Some(Command::Validate { path }) => validate::run(path.as_deref().unwrap_or(&workflows)),
        Some(Command::List { json }) => list::run(&workflows, json),
        None => crate::console::run(&workflows, &state, &location),
        Some(Command::Run(args)) => run::run(&workflows, &state, &location, &args),
        Some(Command::History { workflow, limit, json }) => {
            history::run(&state, &location, workflow.as_deref(), limit, json)
        }
        Some(Command::Logs { run, task, attempt, raw }) => {
            logs::run(&state, &location, &run, task.as_deref(), attempt, raw)
        }
        Some(Command::Completions { shell, fixed }) => docs::completions(shell, fixed),
        Some(Command::Man { dir }) => docs::man(&dir),
        Some(Command::Graph { workflow, format, run }) => {
            graph::run(&workflows, &state, &location, &workflow, format, run.as_deref())
        }
        Some(Command::Trigger(args)) => remote::trigger(&state, &location, &args),
        Some(Command::Pause { target }) => remote::pause(&workflows, &state, &location, &target, true),
        Some(Command::Resume { target }) => remote::pause(&workflows, &state, &location, &target, false),
        Some(Command::Gates { json }) => gates::run(&state, &location, json),
        Some(Command::Engines) => engines::run(&state, &location),
        Some(Command::Backfill(args)) => backfill::run(&workflows, &state, &location, &args),
        Some(command) => remote::operate(&state, &location, command),
    }
}

/// Diagnostics go to stderr (`CONVEYOR_LOG` sets the filter); the daemon also keeps them in
/// `STATE/conveyor.log`, and logs at `info` by default.
fn init_logging(cli: &Cli) {
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::fmt::writer::MakeWriterExt;
    if cli.command.is_none() {
        // The console owns the terminal: diagnostics go to its Monitor pane (tui-logger), not stderr.
        use tracing_subscriber::layer::SubscriberExt;
        use tracing_subscriber::util::SubscriberInitExt;
        tui_logger::set_default_level(tui_logger::LevelFilter::Info);
        let filter = EnvFilter::try_from_env("CONVEYOR_LOG").unwrap_or_else(|_| "info".into());
        let _ = tracing_subscriber::registry().with(filter).with(tui_logger::TuiTracingSubscriberLayer).try_init();
        return;
    }
    let daemon = matches!(cli.command, Some(Command::Daemon { .. }));
    let json = matches!(cli.command, Some(Command::Daemon { log_format: LogFormat::Json, .. }));
    let default = if daemon { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("CONVEYOR_LOG").unwrap_or_else(|_| default.into());
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    // Under systemd (`JOURNAL_STREAM` is set) the journal keeps stderr: a file of our own would only double it.
    let to_file = daemon && std::env::var_os("JOURNAL_STREAM").is_none();
    let file = to_file
        .then(|| {
            crate::store::create_private_dir(&cli.state).ok()?;
            let log = cli.state.join("conveyor.log");
            logfile::RotatingFile::open(&log, logfile::LOG_LIMIT, logfile::LOG_KEEP).ok()
        })
        .flatten();
    if json {
        // JSON strings escape control characters themselves: no line can be forged.
        let builder = tracing_subscriber::fmt().json().with_env_filter(filter).with_ansi(false);
        let _ = match file {
            Some(file) => builder.with_writer(std::io::stderr.and(std::sync::Mutex::new(file))).try_init(),
            None => builder.with_writer(std::io::stderr).try_init(),
        };
        return;
    }
    let builder = tracing_subscriber::fmt().with_env_filter(filter).fmt_fields(escaped_fields());
    match file {
        Some(file) => {
            let writer = std::io::stderr.and(std::sync::Mutex::new(file));
            let _ = builder.with_ansi(false).with_writer(writer).try_init();
        }
        None => {
            let _ = builder.with_ansi(colour).with_writer(std::io::stderr).try_init();
        }
    }
}

/// Fields as the default formatter writes them, with control characters made visible: a message quoting a
/// task or a server (an alert, an HTTP error's body) cannot forge a line of `conveyor.log` or send escapes
/// to a terminal.
fn escaped_fields() -> impl for<'writer> tracing_subscriber::fmt::FormatFields<'writer> + Send + Sync + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = format!("{value:?}");
        let text = crate::text::visible(&text);
        if field.name() == "message" { write!(writer, "{text}") } else { write!(writer, "{field}={text}") }
    })
    .delimited(" ")
}

/// `--param` values as given; the engine converts them to the declared types.
fn parse_params(params: &[String]) -> Result<std::collections::BTreeMap<String, serde_json::Value>, String> {
    crate::definition::parse_assignments(params, "--param")
}

fn read_input(input: &Option<PathBuf>) -> Result<Option<serde_json::Value>, String> {
    let Some(path) = input else { return Ok(None) };
    let text = if path.as_os_str() == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|error| format!("cannot read standard input: {error}"))?
    } else {
        std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?
    };
    serde_json::from_str(&text).map(Some).map_err(|error| format!("--input {} is not JSON: {error}", path.display()))
}

fn fail(message: impl std::fmt::Display) -> ExitCode {
    eprintln!("conveyor: {message}");
    ExitCode::FAILURE
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    #[test]
    fn a_logged_message_quoting_a_server_cannot_forge_a_line_or_send_escapes() {
        let written = Arc::new(Mutex::new(Vec::new()));
        let sink = written.clone();
        let subscriber = tracing_subscriber::fmt()
            .fmt_fields(super::escaped_fields())
            .with_ansi(false)
            .with_writer(move || Writer(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let body = "HTTP 500: boom\nFORGED \x1b]0;title\x07";
            tracing::info!("alert: {body}");
            tracing::warn!(error = body, "a field too");
        });
        let text = String::from_utf8(written.lock().unwrap().clone()).unwrap();
        assert_eq!(text.lines().count(), 2, "one line per event: {text}");
        assert!(text.contains(r"alert: HTTP 500: boom\nFORGED \x1b]0;title\x07"), "{text}");
        assert!(text.contains(r#"a field too error="HTTP 500: boom\nFORGED \u{1b}]0;title\u{7}""#), "{text}");
        assert!(!text.contains(['\x1b', '\x07']), "no raw escape reaches the log");
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
