//! Dynamic shell completion (clap_complete's `CompleteEnv`): the shell runs `COMPLETE=SHELL conveyor -- WORDS`
//! and prints what this module finds for the word under the cursor: workflow ids from the workflows folder,
//! recent run ids from the store, the task names of the run named on the line.
//!
//! A completion must answer at once and never disturb an engine: the store is opened read-only with a short
//! busy timeout (`Store::peek`), nothing is created, and any trouble gives no candidates rather than an error.

use std::ffi::OsStr;
use std::path::PathBuf;

use clap_complete::CompletionCandidate;

use crate::definition::load_folder;
use crate::store::Store;

/// The variable that asks the binary for completions instead of running.
pub const VAR: &str = "COMPLETE";

/// How many of the newest runs are offered.
const RECENT_RUNS: usize = 50;

/// The words of the line being completed (after the `--` the shell's script puts before them), without the
/// word under the cursor and what follows it.
fn words_before_cursor() -> Vec<String> {
    let args: Vec<String> = std::env::args_os().map(|arg| arg.to_string_lossy().into_owned()).collect();
    let words = match args.iter().position(|arg| arg == "--") {
        Some(at) => args[at + 1..].to_vec(),
        None => Vec::new(),
    };
    // Bash and zsh say where the cursor is; the other shells cut the line there, the current word last.
    let cursor = std::env::var("_CLAP_COMPLETE_INDEX").ok().and_then(|index| index.parse::<usize>().ok());
    let end = cursor.unwrap_or(words.len().saturating_sub(1)).min(words.len());
    words[..end].to_vec()
}

/// `--workflows`/`--state` as given on the line, else as the environment or the defaults say (as clap would).
fn folder(flag: &str, variable: &str, default: &str) -> PathBuf {
    let words = words_before_cursor();
    let mut found = None;
    for (index, word) in words.iter().enumerate() {
        if word == flag {
            found = words.get(index + 1).cloned();
        } else if let Some(value) = word.strip_prefix(&format!("{flag}=")) {
            found = Some(value.to_string());
        }
    }
    found.or_else(|| std::env::var(variable).ok()).unwrap_or_else(|| default.to_string()).into()
}

fn workflows_dir() -> PathBuf {
    folder("--workflows", "CONVEYOR_WORKFLOWS", "workflows")
}

fn state_dir() -> PathBuf {
    folder("--state", "CONVEYOR_STATE", ".conveyor")
}

fn prefix(current: &OsStr) -> String {
    current.to_string_lossy().into_owned()
}

/// Workflow ids, with their trigger as the help.
pub fn workflows(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = prefix(current);
    let catalog = load_folder(&workflows_dir());
    catalog
        .workflows
        .iter()
        .filter(|workflow| workflow.id.starts_with(&prefix))
        .map(|workflow| {
            let help = workflow.description.clone().unwrap_or_else(|| format!("{} trigger", workflow.trigger.kind()));
            CompletionCandidate::new(&workflow.id).help(Some(help.into()))
        })
        .collect()
}

/// The newest runs, newest first, with their workflow and state as the help.
pub fn runs(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = prefix(current);
    let Ok(Some(store)) = Store::peek(&state_dir()) else { return Vec::new() };
    let runs = store.runs(None, RECENT_RUNS).unwrap_or_default();
    runs.iter()
        .filter(|run| run.id.starts_with(&prefix))
        .enumerate()
        .map(|(order, run)| {
            let help = format!("{} {}", run.workflow, run.state);
            CompletionCandidate::new(&run.id).help(Some(help.into())).display_order(Some(order))
        })
        .collect()
}

/// Workflows and runs, for `pause`/`resume`.
pub fn workflows_and_runs(current: &OsStr) -> Vec<CompletionCandidate> {
    let mut found = workflows(current);
    found.extend(runs(current));
    found
}

/// The tasks of the run named earlier on the line; with none named, every task name in the workflows folder.
pub fn tasks(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = prefix(current);
    let store = Store::peek(&state_dir()).ok().flatten();
    let named_run = store.as_ref().and_then(|store| {
        // A word that is a run id (or the unique start of one); the subcommand and options never are.
        words_before_cursor().iter().skip(2).find_map(|word| store.find_run(word).ok().flatten())
    });
    let mut names: Vec<String> = match (&store, &named_run) {
        (Some(store), Some(run)) => store.tasks(run).unwrap_or_default().into_iter().map(|task| task.name).collect(),
        _ => load_folder(&workflows_dir())
            .workflows
            .iter()
            .flat_map(|workflow| workflow.tasks.iter().map(|task| task.name.clone()))
            .collect(),
    };
    let mut seen = std::collections::HashSet::new();
    names.retain(|name| name.starts_with(&prefix) && seen.insert(name.clone()));
    names.into_iter().map(CompletionCandidate::new).collect()
}

/// The services and agents of the registry, for `reroute … TO`.
pub fn routes(current: &OsStr) -> Vec<CompletionCandidate> {
    let prefix = prefix(current);
    let registry = load_folder(&workflows_dir()).registry;
    let services = registry.services.keys().map(|name| (name, "service"));
    let agents = registry.agents.keys().map(|name| (name, "agent"));
    services
        .chain(agents)
        .filter(|(name, _)| name.starts_with(&prefix))
        .map(|(name, kind)| CompletionCandidate::new(name).help(Some(kind.into())))
        .collect()
}

/// The script a shell sources to ask this binary for completions as it types.
pub fn registration(shell: clap_complete::Shell, out: &mut dyn std::io::Write) -> std::io::Result<()> {
    let name = match shell {
        clap_complete::Shell::Bash => "bash",
        clap_complete::Shell::Elvish => "elvish",
        clap_complete::Shell::Fish => "fish",
        clap_complete::Shell::PowerShell => "powershell",
        clap_complete::Shell::Zsh => "zsh",
        other => return Err(std::io::Error::other(format!("no dynamic completion for {other}: use --static"))),
    };
    let shells = clap_complete::env::Shells::builtins();
    let completer = shells.completer(name).ok_or_else(|| std::io::Error::other(format!("unknown shell {name}")))?;
    // As the shell will find it: the name it was called by (on the PATH), or its full path if called by one.
    let program = std::env::args_os().next().map(PathBuf::from).unwrap_or_else(|| "conveyor".into());
    let program = if program.components().count() > 1 { std::path::absolute(&program)? } else { program };
    completer.write_registration(VAR, "conveyor", "conveyor", &program.to_string_lossy(), out)
}
