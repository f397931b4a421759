//! What a database must do to keep Conveyor's records: the operations the engine, the console and the CLI
//! call, with the guarantees they rely on. SQLite (`sqlite/`) is the embedded one; the contract tests
//! (`contract.rs`) hold every backend to the same behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::{
    AlertRecord, AttemptRecord, AuditRecord, Changes, Coordination, FireRecord, Gauges, LogReader, QueuedCommand,
    Result, RunRecord, TaskRecord,
};
use crate::state::RunState;

/// A whole store: its records and how engines sharing it agree. `Send` so an engine's store can move to the
/// thread that runs it; not `Sync`: one caller at a time, as a connection is.
pub trait Backend: Records + Coordination + Send {}

impl<T: Records + Coordination + Send> Backend for T {}

/// Every record operation, with today's signatures. Writes go into the open batch when there is one
/// (`begin_batch`), else they are durable when they return. Reads see every write made through this store,
/// committed or still in its open batch.
pub trait Records {
    // --- runs and tasks

    /// A new run and its tasks, in one unit.
    fn insert_run(&self, run: &RunRecord, tasks: &[TaskRecord]) -> Result<()>;
    /// A run's state, start, end and error (the rest of a run never changes).
    fn update_run(&self, run: &RunRecord) -> Result<()>;
    /// Whether the next engine applies the run's `on_interrupt` to it (set when an engine stops with the run
    /// active; cleared once applied).
    fn set_recover(&self, run_id: &str, recover: bool) -> Result<()>;
    /// Runs an engine that is gone left for the next one: active ones (it crashed), and interrupted ones it
    /// marked for recovery (it was stopped). Oldest first.
    fn runs_to_recover(&self) -> Result<Vec<RunRecord>>;
    /// Inserts the task or replaces what is stored of it.
    fn update_task(&self, task: &TaskRecord) -> Result<()>;
    fn run(&self, id: &str) -> Result<Option<RunRecord>>;
    /// Newest first; all workflows when `workflow` is `None`.
    fn runs(&self, workflow: Option<&str>, limit: usize) -> Result<Vec<RunRecord>>;
    /// Runs in any of `states`, oldest first.
    fn runs_in_state(&self, states: &[RunState]) -> Result<Vec<RunRecord>>;
    /// A run's tasks in their workflow's order.
    fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>>;
    /// Every task waiting at a governance gate, oldest run first.
    fn waiting_gates(&self) -> Result<Vec<TaskRecord>>;
    /// The run with this id, else the one run whose id starts with it; several is an error that says to give
    /// more of the id.
    fn find_run(&self, id_or_prefix: &str) -> Result<Option<String>>;
    /// Removes the oldest finished runs of `workflow` beyond its newest `keep` finished ones (an interrupted
    /// run marked for recovery is not finished), rows and files together (the
    /// files once the removal is committed). Returns the removed ids, newest first.
    fn prune(&self, workflow: &str, keep: u32) -> Result<Vec<String>>;

    // --- attempts

    /// Inserts the attempt or updates it in place: an attempt's record is written two or three times.
    fn insert_attempt(&self, attempt: &AttemptRecord) -> Result<()>;
    /// An attempt and its task, in one unit: they change together at an attempt's start and end.
    fn save_attempt_and_task(&self, attempt: &AttemptRecord, task: &TaskRecord) -> Result<()>;
    /// Attempts of a run (or of one of its tasks), oldest first.
    fn attempts(&self, run_id: &str, task: Option<&str>) -> Result<Vec<AttemptRecord>>;
    /// Where the logs of this store's attempts are read from (how they are written is the executors' part).
    fn logs(&self) -> Arc<dyn LogReader>;

    // --- changes, for a reader that keeps up with the store instead of reading it whole again

    /// The runs, tasks and attempts written after the stamp `after` (at most `limit` of each, oldest stamp
    /// first); `None` when this store stamps no changes (SQLite: its console gets the engine's events, or
    /// reads snapshots). Only committed rows are read, and `through` is the highest stamp returned, never one
    /// merely taken: a transaction that took its stamp before another's and commits after it shows up with a
    /// stamp at or below an earlier `through`, so a reader re-reads a little behind its last one.
    fn changes_since(&self, after: i64, limit: usize) -> Result<Option<Changes>> {
        let _ = (after, limit);
        Ok(None)
    }
    /// The highest stamp of a committed change so far (0 for none), to read changes from after a full read
    /// taken now; `None` when this store stamps no changes.
    fn change_mark(&self) -> Result<Option<i64>> {
        Ok(None)
    }
    /// Told (`()`) after a transaction that wrote a run, task or attempt commits, and once after each
    /// reconnection: a hint to read changes now; the reader keeps polling, as a hint can be lost. `None`
    /// where the store cannot tell.
    fn change_wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        None
    }

    // --- workflows: pauses, schedules, fires, processed files

    fn set_paused(&self, workflow: &str, paused: bool, at: DateTime<Utc>) -> Result<()>;
    fn paused_workflows(&self) -> Result<BTreeSet<String>>;
    /// Every scheduled fire of `workflow` up to this instant has been handled (run, queued or skipped). The
    /// mark only moves forward: an earlier instant than the stored one leaves it as it is.
    fn set_scheduled_through(&self, workflow: &str, through: DateTime<Utc>) -> Result<()>;
    fn scheduled_through(&self, workflow: &str) -> Result<Option<DateTime<Utc>>>;
    /// Records a fire, keeping the newest `keep` of its workflow (and every one still queued).
    fn record_fire(&self, fire: &FireRecord, keep: u32) -> Result<()>;
    /// Newest first.
    fn fires(&self, workflow: &str, limit: usize) -> Result<Vec<FireRecord>>;
    /// Fires of every workflow recorded after the one with id `after`, oldest first, with their ids: what a
    /// console attached to a daemon has not shown yet.
    fn fires_since(&self, after: i64, limit: usize) -> Result<Vec<(i64, FireRecord)>>;
    /// The highest fire id so far (0 for none).
    fn last_fire_id(&self) -> Result<i64>;
    /// Fires of `workflow` still waiting in its queue, oldest first.
    fn queued_fires(&self, workflow: &str) -> Result<Vec<DateTime<Utc>>>;
    /// A queued fire has left the queue (its run started, or it was dropped).
    fn unqueue_fire(&self, workflow: &str, scheduled_at: DateTime<Utc>) -> Result<()>;
    /// Whether this file, at this size and modification time, already started a run of `workflow`.
    fn file_processed(&self, workflow: &str, path: &str, size: u64, modified: DateTime<Utc>) -> Result<bool>;
    fn mark_file_processed(
        &self,
        workflow: &str,
        path: &str,
        size: u64,
        modified: DateTime<Utc>,
        run_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()>;
    /// The newest run of `workflow` started for the scheduled instant `at` (its input's `scheduled_at`).
    fn run_for_instant(&self, workflow: &str, at: DateTime<Utc>) -> Result<Option<String>>;
    /// Every instant of `workflow` that has a run, with its newest run.
    fn runs_by_instant(&self, workflow: &str) -> Result<BTreeMap<DateTime<Utc>, String>>;

    // --- alerts and the audit trail

    /// Stores an alert under its `id`, or under the next free one when the id is 0; returns the id.
    fn add_alert(&self, alert: &AlertRecord) -> Result<i64>;
    /// The highest alert id so far (0 for none).
    fn last_alert_id(&self) -> Result<i64>;
    /// Newest first.
    fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>>;
    fn alert(&self, id: i64) -> Result<Option<AlertRecord>>;
    /// Whether an unacknowledged alert with that id existed (a second acknowledgement is `false`).
    fn ack_alert(&self, id: i64, at: DateTime<Utc>) -> Result<bool>;
    fn audit(&self, at: DateTime<Utc>, who: &str, origin: &str, command: &str, ok: bool, outcome: &str) -> Result<()>;
    /// Newest first.
    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Audit records after the one with id `after`, oldest first.
    fn audit_since(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>>;
    /// The highest audit id so far (0 for none).
    fn last_audit_id(&self) -> Result<i64>;
    /// The newest `limit` audit entries naming a run (in the command, or in its outcome as `started run ID`
    /// does), oldest first: who started it, retried or skipped its tasks, answered its gates.
    fn audit_of_run(&self, run_id: &str, limit: usize) -> Result<Vec<AuditRecord>>;
    /// Trims what would otherwise grow without end: alerts and the audit trail beyond their newest `keep`,
    /// and files recorded as processed that are gone from disk and older than `files_for`. Returns how many
    /// records went. A pass may look at only some of the file records (it must stay short on the engine's
    /// loop); the next pass takes the next ones.
    fn trim(&self, keep_alerts: u32, keep_audit: u32, files_for: chrono::Duration, now: DateTime<Utc>)
    -> Result<usize>;

    // --- commands from other shells (never part of a batch: another process waits for them)

    /// Queues a command for the engine that holds the folder; returns its id. An engine that has not taken
    /// it by `expires_at` never will: it is recorded as not carried out (`EXPIRED`).
    fn enqueue_command(&self, at: DateTime<Utc>, who: &str, command: &str, expires_at: DateTime<Utc>) -> Result<i64>;
    /// Commands waiting for the engine, oldest first, after recording those past their deadline as not
    /// carried out.
    fn pending_commands(&self, now: DateTime<Utc>) -> Result<Vec<QueuedCommand>>;
    /// Gives up on a command no engine has taken: `true` if it was still waiting (it will never run now),
    /// `false` if an engine took it first (its result is there to read).
    fn expire_command(&self, id: i64, now: DateTime<Utc>) -> Result<bool>;
    /// Records the engine's answer; answered commands beyond the newest 1,000 may be dropped (the audit
    /// trail keeps every command).
    fn complete_command(&self, id: i64, at: DateTime<Utc>, ok: bool, outcome: &str) -> Result<()>;
    /// `Some((ok, outcome))` once the engine has acted on the command.
    fn command_result(&self, id: i64) -> Result<Option<(bool, String)>>;

    // --- the batch: the engine's unit of durability

    /// Opens a batch: what is written until `commit_batch` becomes durable at once, in one commit. A step
    /// never reads a snapshot that another writer has moved past before it writes.
    fn begin_batch(&self) -> Result<()>;
    /// Commits the batch. On failure the batch's writes are kept: `retry_pending` writes them again, whole
    /// and in order, and nothing of a failed batch is committed piecemeal.
    fn commit_batch(&self) -> Result<()>;
    /// Whether writes of earlier batches still wait to be committed.
    fn has_pending(&self) -> bool;
    /// Writes again, in one transaction, everything no commit has taken yet.
    fn retry_pending(&self) -> Result<()>;
    /// The first failure since the last call, if any: a step that had to wait for the store, even if its
    /// writes went through in the end.
    fn take_trouble(&self) -> Option<String>;

    // --- the store as a whole

    /// What is true now, counted for the metrics endpoint: cheap enough for every scrape.
    fn gauges(&self) -> Result<Gauges>;
    /// A random id of this store, made once: task processes carry it (`CONVEYOR_STATE_ID`) so that an engine
    /// can tell the processes of its store from any other.
    fn state_id(&self) -> Result<String>;
    /// The database's own check of itself: `ok`, or what is wrong.
    fn integrity_check(&self) -> Result<String>;
    /// The local folder of this engine or shell: logs and work files live under it whichever database keeps
    /// the records.
    fn state_dir(&self) -> &Path;
}
