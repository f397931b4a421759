//! What the engine announces, after the store has it.

use serde::Serialize;

use crate::store::{AlertRecord, AttemptRecord, FireRecord, RunRecord, TaskRecord};
use crate::tasks::Stream;

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    Run(RunRecord),
    Task(TaskRecord),
    Attempt(AttemptRecord),
    Log {
        run_id: String,
        task: String,
        attempt: u32,
        stream: Stream,
        line: String,
    },
    Progress {
        run_id: String,
        task: String,
        attempt: u32,
        fraction: f64,
    },
    Alert(AlertRecord),
    /// A scheduled instant came, and what came of it (started, queued, skipped), as stored.
    Fire(FireRecord),
    WorkflowPaused {
        workflow: String,
        paused: bool,
    },
    /// The workflows folder was read again: workflows added or changed, removed, and files that are broken.
    Reloaded {
        changed: Vec<String>,
        removed: Vec<String>,
        broken: Vec<String>,
    },
    /// An operator's command and what came of it (also in the audit trail).
    Command {
        who: String,
        via: String,
        command: String,
        ok: bool,
        outcome: String,
    },
}
