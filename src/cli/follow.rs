//! Printing a run's progress as lines: from the engine's events when the run is in this process, or by
//! reading the store and the log files when another engine runs it.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::state::{RunState, TaskState};
use crate::store::{AttemptRecord, RunRecord, TaskRecord};
use crate::text::{visible, visible_bytes};

pub fn task_line(task: &TaskRecord) -> Option<String> {
    let name = &task.name;
    // Errors carry what tasks and servers said (an HTTP error's body): shown, never obeyed.
    let error = visible(task.error.as_deref().unwrap_or_default());
    let took = match (task.started_at, task.finished_at) {
        (Some(start), Some(end)) => format!(" in {}", seconds(end - start)),
        _ => String::new(),
    };
    match task.state {
        TaskState::Succeeded => Some(format!("✓ {name} succeeded{took}")),
        TaskState::Failed => Some(format!("✗ {name} failed: {error}")),
        TaskState::RetryWait => Some(format!("↻ {name}: {error}")),
        TaskState::Skipped => Some(format!("↷ {name} {error}")),
        TaskState::Cancelled => Some(format!("■ {name} cancelled")),
        TaskState::WaitingApproval => Some(format!(
            "? {name} is waiting for approval: `conveyor approve {run} {name}` or `conveyor reject {run} {name}`",
            run = task.run_id
        )),
        TaskState::Pending | TaskState::Running => None,
    }
}

pub fn attempt_line(attempt: &AttemptRecord) -> String {
    format!("▶ {} attempt {} on {}", attempt.task, attempt.attempt, attempt.route)
}

/// A line a task printed, with its control characters made visible (`conveyor logs --raw` has the bytes).
pub fn log_line(task: &str, line: &str) -> String {
    format!("  {task} │ {}", visible(line))
}

pub fn run_line(run: &RunRecord) -> String {
    let took = match (run.started_at, run.finished_at) {
        (Some(start), Some(end)) => format!(" in {}", seconds(end - start)),
        _ => String::new(),
    };
    match &run.error {
        Some(error) => format!("run {} {}{took}: {}", run.id, run.state, visible(error)),
        None => format!("run {} {}{took}", run.id, run.state),
    }
}

pub fn exit_code(state: RunState) -> ExitCode {
    if state == RunState::Succeeded { ExitCode::SUCCESS } else { ExitCode::FAILURE }
}

pub fn seconds(duration: chrono::Duration) -> String {
    let millis = duration.num_milliseconds().max(0);
    if millis < 60_000 {
        format!("{:.1}s", millis as f64 / 1000.0)
    } else {
        let secs = millis / 1000;
        format!("{}m{:02}s", secs / 60, secs % 60)
    }
}

/// Follows a run that another engine is running, until it ends.
pub fn follow_from_store(state_dir: &Path, location: &crate::store::StoreLocation, run_id: &str) -> ExitCode {
    let store = match crate::store::open(state_dir, location) {
        Ok(store) => store,
        Err(error) => return super::fail(error),
    };
    let mut tasks_seen: HashMap<String, (TaskState, u32)> = HashMap::new();
    let mut attempts_seen: HashMap<(String, u32), u64> = HashMap::new();
    loop {
        let run = match store.run(run_id) {
            Ok(Some(run)) => run,
            Ok(None) => return super::fail(format!("run {run_id} is gone from the store")),
            Err(error) => return super::fail(error),
        };
        let attempts = store.attempts(run_id, None).unwrap_or_default();
        for attempt in &attempts {
            let key = (attempt.task.clone(), attempt.attempt);
            let offset = attempts_seen.entry(key).or_insert_with(|| {
                println!("{}", attempt_line(attempt));
                0
            });
            *offset = print_new_lines(&attempt.task, &attempt.log_path, *offset);
        }
        for task in store.tasks(run_id).unwrap_or_default() {
            let now = (task.state, task.attempts);
            if tasks_seen.insert(task.name.clone(), now) != Some(now)
                && let Some(line) = task_line(&task)
            {
                println!("{line}");
            }
        }
        if run.state.is_finished() {
            println!("{}", run_line(&run));
            return exit_code(run.state);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints the complete lines written to `path` since `offset` (task output only); returns the new offset.
fn print_new_lines(task: &str, path: &PathBuf, offset: u64) -> u64 {
    let Ok(mut file) = std::fs::File::open(path) else { return offset };
    if file.seek(SeekFrom::Start(offset)).is_err() {
        return offset;
    }
    let mut reader = BufReader::new(file);
    let mut consumed = offset;
    // Bytes, not `read_line`: a line of invalid UTF-8 must not stop the follow at it.
    let mut line = Vec::new();
    while let Ok(read) = reader.read_until(b'\n', &mut line) {
        if read == 0 || !line.ends_with(b"\n") {
            break;
        }
        consumed += read as u64;
        let text = &line[..line.len() - 1];
        if !text.starts_with(b"[conveyor] ") {
            println!("  {task} │ {}", visible_bytes(text));
        }
        line.clear();
    }
    consumed
}
