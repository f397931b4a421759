//! The store's rows as the rest of Conveyor sees them, whichever database keeps them.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;

use crate::state::{AttemptState, RunState, TaskState};

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub workflow: String,
    pub state: RunState,
    /// What started it: `schedule`, `event`, `manual`.
    pub trigger: String,
    pub input: Value,
    pub params: Value,
    /// The workflow file as it was when the run started, so a resumed run keeps its definition.
    #[serde(skip)]
    pub definition_file: PathBuf,
    #[serde(skip)]
    pub definition: std::sync::Arc<str>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskRecord {
    pub run_id: String,
    pub name: String,
    pub position: u32,
    pub state: TaskState,
    pub attempts: u32,
    /// The route an operator chose for the task's next attempts.
    pub route: Option<String>,
    pub input: Option<Value>,
    pub output: Option<Value>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub error: Option<String>,
    /// 0 is the task's own route; 1.. are its `fallback` entries.
    pub route_index: u32,
    /// Attempts made on the current route since the task last (re)started; an attempt cut short by the
    /// engine stopping does not count.
    pub route_attempts: u32,
    /// When a task in `retry_wait` tries again; kept so a restart waits out the same delay.
    pub retry_at: Option<DateTime<Utc>>,
}

impl TaskRecord {
    /// A task of a new run, not started yet.
    pub fn pending(run_id: &str, name: &str, position: usize) -> TaskRecord {
        TaskRecord {
            run_id: run_id.to_string(),
            name: name.to_string(),
            position: position as u32,
            state: TaskState::Pending,
            attempts: 0,
            route: None,
            input: None,
            output: None,
            started_at: None,
            finished_at: None,
            error: None,
            route_index: 0,
            route_attempts: 0,
            retry_at: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttemptRecord {
    pub run_id: String,
    pub task: String,
    pub attempt: u32,
    pub route: String,
    pub state: AttemptState,
    pub exit_code: Option<i32>,
    pub error: Option<String>,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub log_path: PathBuf,
    pub log_bytes: u64,
    /// The attempt's process group (its leader's PID), once it has started, so that an engine starting
    /// after a crash can stop what this attempt left running.
    pub pid: Option<u32>,
    /// The leader's start time (`/proc/PID/stat` field 22): a PID reused by another process does not match.
    pub pid_start: Option<u64>,
    /// The last `::progress::` the attempt reported, so that a console attached to a daemon shows the gauge
    /// an embedded one gets from events.
    pub progress: Option<f64>,
    /// Tokens a language model counted for the attempt (an LLM agent's), from its replies' `usage`.
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The whole log of an attempt that printed nothing: the engine's few lines, kept here instead of in a
    /// file of their own (`LogSink::held_text`); read through `attempt_log`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_text: Option<String>,
    /// The engine (`EngineId`) that ran it, on a store several engines share; always `None` on SQLite, whose
    /// one engine is the state folder's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<u64>,
}

impl AttemptRecord {
    /// An attempt that starts now: running, with nothing yet known of how it goes.
    pub fn started(
        run_id: &str,
        task: &str,
        attempt: u32,
        route: &str,
        started_at: DateTime<Utc>,
        log_path: PathBuf,
    ) -> AttemptRecord {
        AttemptRecord {
            run_id: run_id.to_string(),
            task: task.to_string(),
            attempt,
            route: route.to_string(),
            state: AttemptState::Running,
            exit_code: None,
            error: None,
            started_at,
            finished_at: None,
            log_path,
            log_bytes: 0,
            pid: None,
            pid_start: None,
            progress: None,
            prompt_tokens: None,
            completion_tokens: None,
            log_text: None,
            engine: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub severity: String,
    pub workflow: Option<String>,
    pub run_id: Option<String>,
    pub task: Option<String>,
    pub message: String,
    pub acked_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditRecord {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub who: String,
    pub origin: String,
    pub command: String,
    pub ok: bool,
    pub outcome: String,
}

/// The runs, tasks and attempts written after a change stamp, as they are now (a row written twice since is
/// here once, at its latest), each list oldest stamp first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Changes {
    pub runs: Vec<RunRecord>,
    pub tasks: Vec<TaskRecord>,
    pub attempts: Vec<AttemptRecord>,
    /// The highest stamp these rows cover: the next read asks for what came after it.
    pub through: i64,
}

/// One scheduled instant of a workflow and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FireRecord {
    pub workflow: String,
    pub scheduled_at: DateTime<Utc>,
    pub fired_at: DateTime<Utc>,
    /// `started`, `queued`, `catch-up`, or `skipped: <why>`.
    pub outcome: String,
    pub run_id: Option<String>,
    /// Waits in the workflow's queue for its active run to end; kept across restarts until it starts.
    pub queued: bool,
}

/// A command written by another shell, waiting for the engine that holds the folder.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedCommand {
    pub id: i64,
    pub who: String,
    pub command: String,
}

/// The outcome of a command that no engine took in time.
pub const EXPIRED: &str = "not carried out: no engine took the command before its deadline";

/// Counts by workflow (or by severity, for alerts), as the store has them at one moment.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauges {
    pub active_runs: BTreeMap<String, u64>,
    pub queued_fires: BTreeMap<String, u64>,
    pub waiting_gates: BTreeMap<String, u64>,
    /// Since when the longest-waiting gate of each workflow has waited.
    pub oldest_gate: BTreeMap<String, DateTime<Utc>>,
    pub unacknowledged_alerts: BTreeMap<String, u64>,
}
