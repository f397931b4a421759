use std::io::{BufRead, BufReader, IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::store::StoreLocation;

/// Prints the chosen logs: as bytes with `raw` or when stdout is not a terminal (for pipes and files),
/// else line by line with control characters made visible, so a log cannot take over the terminal.
pub fn run(
    state: &Path,
    location: &StoreLocation,
    run: &str,
    task: Option<&str>,
    attempt: Option<u32>,
    raw: bool,
) -> ExitCode {
    let escape = !raw && std::io::stdout().is_terminal();
    let store = match crate::store::open(state, location) {
        Ok(store) => store,
        Err(error) => return fail(error),
    };
    let run_id = match store.find_run(run) {
        Ok(Some(id)) => id,
        Ok(None) => return fail(format!("no run `{run}` in {}", state.display())),
        Err(error) => return fail(error),
    };
    let attempts = match store.attempts(&run_id, task) {
        Ok(attempts) => attempts,
        Err(error) => return fail(error),
    };
    let chosen: Vec<_> = match (task, attempt) {
        (Some(_), Some(number)) => attempts.into_iter().filter(|a| a.attempt == number).collect(),
        (Some(_), None) => attempts.into_iter().last().into_iter().collect(),
        (None, _) => attempts,
    };
    if chosen.is_empty() {
        return fail(match (task, attempt) {
            (Some(task), Some(number)) => format!("run {run_id} has no attempt {number} of task {task}"),
            (Some(task), None) => format!("task {task} of run {run_id} has no attempts (is the name right?)"),
            _ => format!("run {run_id} has no task attempts yet"),
        });
    }
    let logs = store.logs();
    let mut out = std::io::stdout().lock();
    let several = chosen.len() > 1 || task.is_none();
    for attempt in chosen {
        if several {
            let _ = writeln!(
                out,
                "=== {} attempt {} on {} ({}) ===",
                attempt.task, attempt.attempt, attempt.route, attempt.state
            );
        }
        // A log that never got a file is the engine's few lines, kept in the store: printed as a file would be.
        match logs.open(&attempt) {
            Ok(mut log) => {
                let copied = if escape { print_visible(log, &mut out) } else { std::io::copy(&mut log, &mut out) };
                if let Err(error) = copied {
                    return fail(format!("reading {}: {error}", attempt.log_path.display()));
                }
            }
            Err(error) => {
                let _ = writeln!(out, "(log {} unavailable: {error})", attempt.log_path.display());
            }
        }
    }
    ExitCode::SUCCESS
}

/// The log's lines with their control characters made visible; returns the bytes read.
fn print_visible(file: impl std::io::Read, out: &mut impl Write) -> std::io::Result<u64> {
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut read = 0;
    loop {
        line.clear();
        match reader.read_until(b'\n', &mut line)? {
            0 => return Ok(read),
            count => read += count as u64,
        }
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        writeln!(out, "{}", crate::text::visible_bytes(text))?;
    }
}
