use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use super::fail;
use crate::store::Store;

pub fn run(state: &Path, run: &str, task: Option<&str>, attempt: Option<u32>) -> ExitCode {
    let store = match Store::open(state) {
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
        match std::fs::File::open(&attempt.log_path) {
            Ok(mut file) => {
                if let Err(error) = std::io::copy(&mut file, &mut out) {
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
