//! The SQL of every record operation (`Records` for SQLite), and how its rows become records.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Row, params};
use serde_json::Value;

use super::SqliteStore;
use crate::state::RunState;
use crate::store::{
    AlertRecord, AttemptRecord, AuditRecord, EXPIRED, FireRecord, Gauges, LogReader, QueuedCommand, Records, Result,
    RunRecord, StoreError, TaskRecord, parse_timestamp, timestamp,
};

fn json(value: &Value) -> String {
    serde_json::to_string(value).expect("JSON values serialise")
}

fn from_json(text: Option<String>) -> rusqlite::Result<Option<Value>> {
    text.map(|text| {
        serde_json::from_str(&text)
            .map_err(|error| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(error)))
    })
    .transpose()
}

fn time(row: &Row, column: &str) -> rusqlite::Result<Option<DateTime<Utc>>> {
    let text: Option<String> = row.get(column)?;
    text.map(|text| {
        parse_timestamp(&text).map_err(|error| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                Box::new(std::io::Error::other(error.to_string())),
            )
        })
    })
    .transpose()
}

fn required_time(row: &Row, column: &str) -> rusqlite::Result<DateTime<Utc>> {
    time(row, column)?.ok_or(rusqlite::Error::InvalidColumnName(column.to_string()))
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, column: &str) -> rusqlite::Result<T> {
    let text: String = row.get(column)?;
    text.parse().map_err(|error: String| {
        rusqlite::Error::FromSqlConversionFailure(
            0,
            rusqlite::types::Type::Text,
            Box::new(std::io::Error::other(error)),
        )
    })
}

fn run_from_row(row: &Row) -> rusqlite::Result<RunRecord> {
    Ok(RunRecord {
        id: row.get("id")?,
        workflow: row.get("workflow")?,
        state: parsed(row, "state")?,
        trigger: row.get("trigger")?,
        input: from_json(row.get("input")?)?.unwrap_or(Value::Null),
        params: from_json(row.get("params")?)?.unwrap_or(Value::Null),
        definition_file: PathBuf::from(row.get::<_, String>("definition_file")?),
        definition: row.get::<_, String>("definition")?.into(),
        created_at: required_time(row, "created_at")?,
        started_at: time(row, "started_at")?,
        finished_at: time(row, "finished_at")?,
        error: row.get("error")?,
    })
}

fn task_from_row(row: &Row) -> rusqlite::Result<TaskRecord> {
    Ok(TaskRecord {
        run_id: row.get("run_id")?,
        name: row.get("name")?,
        position: row.get("position")?,
        state: parsed(row, "state")?,
        attempts: row.get("attempts")?,
        route: row.get("route")?,
        input: from_json(row.get("input")?)?,
        output: from_json(row.get("output")?)?,
        started_at: time(row, "started_at")?,
        finished_at: time(row, "finished_at")?,
        error: row.get("error")?,
        route_index: row.get("route_index")?,
        route_attempts: row.get("route_attempts")?,
        retry_at: time(row, "retry_at")?,
    })
}

fn attempt_from_row(row: &Row) -> rusqlite::Result<AttemptRecord> {
    Ok(AttemptRecord {
        run_id: row.get("run_id")?,
        task: row.get("task")?,
        attempt: row.get("attempt")?,
        route: row.get("route")?,
        state: parsed(row, "state")?,
        exit_code: row.get("exit_code")?,
        error: row.get("error")?,
        started_at: required_time(row, "started_at")?,
        finished_at: time(row, "finished_at")?,
        log_path: PathBuf::from(row.get::<_, String>("log_path")?),
        log_bytes: row.get::<_, i64>("log_bytes")?.max(0) as u64,
        pid: row.get("pid")?,
        pid_start: row.get::<_, Option<i64>>("pid_start")?.map(|start| start.max(0) as u64),
        progress: row.get("progress")?,
        prompt_tokens: row.get::<_, Option<i64>>("prompt_tokens")?.map(|tokens| tokens.max(0) as u64),
        completion_tokens: row.get::<_, Option<i64>>("completion_tokens")?.map(|tokens| tokens.max(0) as u64),
        log_text: row.get("log_text")?,
        engine: None,
    })
}

fn fire_from_row(row: &Row) -> rusqlite::Result<FireRecord> {
    Ok(FireRecord {
        workflow: row.get("workflow")?,
        scheduled_at: required_time(row, "scheduled_at")?,
        fired_at: required_time(row, "fired_at")?,
        outcome: row.get("outcome")?,
        run_id: row.get("run_id")?,
        queued: row.get("pending")?,
    })
}

fn audit_from_row(row: &Row) -> rusqlite::Result<AuditRecord> {
    Ok(AuditRecord {
        id: row.get("id")?,
        at: required_time(row, "at")?,
        who: row.get("who")?,
        origin: row.get("origin")?,
        command: row.get("command")?,
        ok: row.get("ok")?,
        outcome: row.get("outcome")?,
    })
}

fn alert_from_row(row: &Row) -> rusqlite::Result<AlertRecord> {
    Ok(AlertRecord {
        id: row.get("id")?,
        at: required_time(row, "at")?,
        severity: row.get("severity")?,
        workflow: row.get("workflow")?,
        run_id: row.get("run_id")?,
        task: row.get("task")?,
        message: row.get("message")?,
        acked_at: time(row, "acked_at")?,
    })
}

impl Records for SqliteStore {
    /// A new run and its tasks, in one unit.
    fn insert_run(&self, run: &RunRecord, tasks: &[TaskRecord]) -> Result<()> {
        let (run, tasks) = (run.clone(), tasks.to_vec());
        self.write(move |connection| {
            atomically(connection, |connection| {
                connection.execute(
                    "INSERT INTO runs (id, workflow, state, trigger, input, params, definition_file, definition, created_at, started_at, finished_at, error)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    params![
                        run.id,
                        run.workflow,
                        run.state.as_str(),
                        run.trigger,
                        json(&run.input),
                        json(&run.params),
                        run.definition_file.to_string_lossy(),
                        run.definition,
                        timestamp(run.created_at),
                        run.started_at.map(timestamp),
                        run.finished_at.map(timestamp),
                        run.error,
                    ],
                )?;
                for task in &tasks {
                    upsert_task(connection, task)?;
                }
                Ok(())
            })
        })
    }

    fn update_run(&self, run: &RunRecord) -> Result<()> {
        let run = run.clone();
        self.write(move |connection| {
            connection.execute(
                "UPDATE runs SET state = ?2, started_at = ?3, finished_at = ?4, error = ?5 WHERE id = ?1",
                params![
                    run.id,
                    run.state.as_str(),
                    run.started_at.map(timestamp),
                    run.finished_at.map(timestamp),
                    run.error
                ],
            )?;
            Ok(())
        })
    }

    /// Whether the next engine applies the run's `on_interrupt` to it (set when an engine stops with the run
    /// active; cleared once applied).
    fn set_recover(&self, run_id: &str, recover: bool) -> Result<()> {
        let run_id = run_id.to_string();
        self.write(move |connection| {
            connection.execute("UPDATE runs SET recover = ?2 WHERE id = ?1", params![run_id, recover])?;
            Ok(())
        })
    }

    /// Runs an engine that is gone left for the next one: active ones (it crashed), and interrupted ones it
    /// marked for recovery (it was stopped). Oldest first.
    fn runs_to_recover(&self) -> Result<Vec<RunRecord>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT * FROM runs WHERE state IN ('queued', 'running', 'paused', 'waiting_approval')
                OR (state = 'interrupted' AND recover = 1)
             ORDER BY created_at, id",
        )?;
        let rows = statement.query_map([], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn update_task(&self, task: &TaskRecord) -> Result<()> {
        let task = task.clone();
        self.write(move |connection| upsert_task(connection, &task))
    }

    fn insert_attempt(&self, attempt: &AttemptRecord) -> Result<()> {
        let attempt = attempt.clone();
        self.write(move |connection| upsert_attempt(connection, &attempt))
    }

    /// An attempt and its task, in one unit: they change together at an attempt's start and end.
    fn save_attempt_and_task(&self, attempt: &AttemptRecord, task: &TaskRecord) -> Result<()> {
        let (attempt, task) = (attempt.clone(), task.clone());
        self.write(move |connection| {
            atomically(connection, |connection| {
                upsert_attempt(connection, &attempt)?;
                upsert_task(connection, &task)
            })
        })
    }

    fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        Ok(self.connection.query_row("SELECT * FROM runs WHERE id = ?1", [id], run_from_row).optional()?)
    }

    /// Newest first; all workflows when `workflow` is `None`.
    fn runs(&self, workflow: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT * FROM runs WHERE (?1 IS NULL OR workflow = ?1) ORDER BY created_at DESC, id DESC LIMIT ?2",
        )?;
        let rows = statement.query_map(params![workflow, limit as i64], run_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn runs_in_state(&self, states: &[RunState]) -> Result<Vec<RunRecord>> {
        let mut statement =
            self.connection.prepare_cached("SELECT * FROM runs WHERE state = ?1 ORDER BY created_at")?;
        let mut runs = Vec::new();
        for state in states {
            let rows = statement.query_map([state.as_str()], run_from_row)?;
            runs.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
        }
        runs.sort_by_key(|run| run.created_at);
        Ok(runs)
    }

    fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let mut statement =
            self.connection.prepare_cached("SELECT * FROM tasks WHERE run_id = ?1 ORDER BY position")?;
        let rows = statement.query_map([run_id], task_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Every task waiting at a governance gate, oldest run first.
    fn waiting_gates(&self) -> Result<Vec<TaskRecord>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT * FROM tasks WHERE state = 'waiting_approval' ORDER BY run_id, position")?;
        let rows = statement.query_map([], task_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Attempts of a run (or of one of its tasks), oldest first.
    fn attempts(&self, run_id: &str, task: Option<&str>) -> Result<Vec<AttemptRecord>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT * FROM attempts WHERE run_id = ?1 AND (?2 IS NULL OR task = ?2) ORDER BY started_at, attempt",
        )?;
        let rows = statement.query_map(params![run_id, task], attempt_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn set_paused(&self, workflow: &str, paused: bool, at: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |connection| {
            connection.execute(
                "INSERT INTO workflow_state (workflow, paused, changed_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workflow) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at",
                params![workflow, paused, timestamp(at)],
            )?;
            Ok(())
        })
    }

    /// Every scheduled fire of `workflow` up to this instant has been handled (run, queued or skipped).
    fn set_scheduled_through(&self, workflow: &str, through: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |connection| {
            connection.execute(
                "INSERT INTO workflow_state (workflow, paused, changed_at, scheduled_through) VALUES (?1, 0, ?2, ?2)
                 ON CONFLICT (workflow) DO UPDATE
                    SET scheduled_through = max(coalesce(scheduled_through, ''), excluded.scheduled_through)",
                params![workflow, timestamp(through)],
            )?;
            Ok(())
        })
    }

    fn scheduled_through(&self, workflow: &str) -> Result<Option<DateTime<Utc>>> {
        let text: Option<Option<String>> = self
            .connection
            .query_row("SELECT scheduled_through FROM workflow_state WHERE workflow = ?1", [workflow], |row| row.get(0))
            .optional()?;
        text.flatten().map(|text| parse_timestamp(&text)).transpose()
    }

    /// Records a fire, keeping the newest `keep` of its workflow (and every one still queued).
    fn record_fire(&self, fire: &FireRecord, keep: u32) -> Result<()> {
        let fire = fire.clone();
        self.write(move |connection| {
            atomically(connection, |connection| {
                connection.execute(
                    "INSERT INTO fires (workflow, scheduled_at, fired_at, outcome, run_id, pending) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    params![
                        fire.workflow,
                        timestamp(fire.scheduled_at),
                        timestamp(fire.fired_at),
                        fire.outcome,
                        fire.run_id,
                        fire.queued
                    ],
                )?;
                connection.execute(
                    "DELETE FROM fires WHERE workflow = ?1 AND pending = 0 AND id <= (SELECT id FROM fires WHERE workflow = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)",
                    params![fire.workflow, keep],
                )?;
                Ok(())
            })
        })
    }

    /// Newest first.
    fn fires(&self, workflow: &str, limit: usize) -> Result<Vec<FireRecord>> {
        let mut statement =
            self.connection.prepare_cached("SELECT * FROM fires WHERE workflow = ?1 ORDER BY id DESC LIMIT ?2")?;
        let rows = statement.query_map(params![workflow, limit as i64], fire_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Fires of every workflow recorded after the one with id `after`, oldest first, with their ids: what a
    /// console attached to a daemon has not shown yet.
    fn fires_since(&self, after: i64, limit: usize) -> Result<Vec<(i64, FireRecord)>> {
        let mut statement = self.connection.prepare_cached("SELECT * FROM fires WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows =
            statement.query_map(params![after, limit as i64], |row| Ok((row.get("id")?, fire_from_row(row)?)))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The highest fire id so far (0 for none).
    fn last_fire_id(&self) -> Result<i64> {
        Ok(self.connection.query_row("SELECT COALESCE(MAX(id), 0) FROM fires", [], |row| row.get(0))?)
    }

    /// Fires of `workflow` still waiting in its queue, oldest first.
    fn queued_fires(&self, workflow: &str) -> Result<Vec<DateTime<Utc>>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT scheduled_at FROM fires WHERE workflow = ?1 AND pending = 1 ORDER BY scheduled_at, id",
        )?;
        let rows = statement.query_map([workflow], |row| required_time(row, "scheduled_at"))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// A queued fire has left the queue (its run started, or it was dropped).
    fn unqueue_fire(&self, workflow: &str, scheduled_at: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |connection| {
            connection.execute(
                "UPDATE fires SET pending = 0 WHERE workflow = ?1 AND scheduled_at = ?2 AND pending = 1",
                params![workflow, timestamp(scheduled_at)],
            )?;
            Ok(())
        })
    }

    /// Whether this file, at this size and modification time, already started a run of `workflow`.
    fn file_processed(&self, workflow: &str, path: &str, size: u64, modified: DateTime<Utc>) -> Result<bool> {
        let found: Option<i64> = self
            .connection
            .query_row(
                "SELECT 1 FROM processed_files WHERE workflow = ?1 AND path = ?2 AND size = ?3 AND modified = ?4",
                params![workflow, path, size as i64, timestamp(modified)],
                |row| row.get(0),
            )
            .optional()?;
        Ok(found.is_some())
    }

    fn mark_file_processed(
        &self,
        workflow: &str,
        path: &str,
        size: u64,
        modified: DateTime<Utc>,
        run_id: Option<&str>,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let (workflow, path, run_id) = (workflow.to_string(), path.to_string(), run_id.map(str::to_string));
        self.write(move |connection| {
            connection.execute(
                "INSERT OR REPLACE INTO processed_files (workflow, path, size, modified, run_id, at) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![workflow, path, size as i64, timestamp(modified), run_id, timestamp(at)],
            )?;
            Ok(())
        })
    }

    fn paused_workflows(&self) -> Result<BTreeSet<String>> {
        let mut statement = self.connection.prepare_cached("SELECT workflow FROM workflow_state WHERE paused = 1")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Stores an alert under its `id`, or under the next free one when the id is 0; returns the id.
    fn add_alert(&self, alert: &AlertRecord) -> Result<i64> {
        let alert = alert.clone();
        self.write(move |connection| {
            connection.execute(
                "INSERT INTO alerts (id, at, severity, workflow, run_id, task, message) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    (alert.id > 0).then_some(alert.id),
                    timestamp(alert.at),
                    alert.severity,
                    alert.workflow,
                    alert.run_id,
                    alert.task,
                    alert.message
                ],
            )?;
            Ok(connection.last_insert_rowid())
        })
    }

    /// The highest alert id so far (0 for none).
    fn last_alert_id(&self) -> Result<i64> {
        Ok(self.connection.query_row("SELECT COALESCE(MAX(id), 0) FROM alerts", [], |row| row.get(0))?)
    }

    /// Newest first.
    fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        let mut statement = self.connection.prepare_cached("SELECT * FROM alerts ORDER BY id DESC LIMIT ?1")?;
        let rows = statement.query_map([limit as i64], alert_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        Ok(self.connection.query_row("SELECT * FROM alerts WHERE id = ?1", [id], alert_from_row).optional()?)
    }

    /// Whether an unacknowledged alert with that id existed.
    fn ack_alert(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let changed = self.write(move |connection| {
            connection.execute(
                "UPDATE alerts SET acked_at = ?2 WHERE id = ?1 AND acked_at IS NULL",
                params![id, timestamp(at)],
            )
        })?;
        Ok(changed > 0)
    }

    fn audit(&self, at: DateTime<Utc>, who: &str, origin: &str, command: &str, ok: bool, outcome: &str) -> Result<()> {
        let (who, origin, command, outcome) =
            (who.to_string(), origin.to_string(), command.to_string(), outcome.to_string());
        self.write(move |connection| {
            connection.execute(
                "INSERT INTO audit (at, who, origin, command, ok, outcome) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![timestamp(at), who, origin, command, ok, outcome],
            )?;
            Ok(())
        })
    }

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut statement = self.connection.prepare_cached("SELECT * FROM audit ORDER BY id DESC LIMIT ?1")?;
        let rows = statement.query_map([limit as i64], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Audit records after the one with id `after`, oldest first.
    fn audit_since(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut statement = self.connection.prepare_cached("SELECT * FROM audit WHERE id > ?1 ORDER BY id LIMIT ?2")?;
        let rows = statement.query_map(params![after, limit as i64], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The highest audit id so far (0 for none).
    fn last_audit_id(&self) -> Result<i64> {
        Ok(self.connection.query_row("SELECT COALESCE(MAX(id), 0) FROM audit", [], |row| row.get(0))?)
    }

    /// The audit entries naming a run (in the command, or in its outcome as `started run ID` does), oldest
    /// first: who started it, retried or skipped its tasks, answered its gates.
    fn audit_of_run(&self, run_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT * FROM (SELECT * FROM audit WHERE instr(command, ?1) > 0 OR instr(outcome, ?1) > 0 \
             ORDER BY id DESC LIMIT ?2) ORDER BY id",
        )?;
        let rows = statement.query_map(params![run_id, limit as i64], audit_from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Queues a command for the engine that holds the folder; returns its id. An engine that has not taken
    /// it by `expires_at` never will: it is recorded as not carried out.
    fn enqueue_command(&self, at: DateTime<Utc>, who: &str, command: &str, expires_at: DateTime<Utc>) -> Result<i64> {
        self.connection.execute(
            "INSERT INTO commands (at, who, command, expires_at) VALUES (?1, ?2, ?3, ?4)",
            params![timestamp(at), who, command, timestamp(expires_at)],
        )?;
        Ok(self.connection.last_insert_rowid())
    }

    /// Commands waiting for the engine, after recording those past their deadline as not carried out.
    fn pending_commands(&self, now: DateTime<Utc>) -> Result<Vec<QueuedCommand>> {
        let mut statement = self
            .connection
            .prepare_cached("SELECT id, who, command, expires_at FROM commands WHERE done_at IS NULL ORDER BY id")?;
        let rows = statement.query_map([], |row| {
            let expires_at: Option<String> = row.get(3)?;
            let command = QueuedCommand { id: row.get(0)?, who: row.get(1)?, command: row.get(2)? };
            Ok((command, expires_at))
        })?;
        let mut pending = Vec::new();
        let now_text = timestamp(now);
        for row in rows {
            let (command, expires_at) = row?;
            // Timestamps share one format, so their text orders as their times do.
            if expires_at.is_some_and(|at| at <= now_text) {
                let (id, at) = (command.id, now_text.clone());
                self.write(move |connection| {
                    connection.execute(
                        "UPDATE commands SET done_at = ?2, ok = 0, outcome = ?3 WHERE id = ?1 AND done_at IS NULL",
                        params![id, at, EXPIRED],
                    )?;
                    Ok(())
                })?;
            } else {
                pending.push(command);
            }
        }
        Ok(pending)
    }

    /// Gives up on a command no engine has taken: `true` if it was still waiting (it will never run now),
    /// `false` if an engine took it first (its result is there to read).
    fn expire_command(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let changed = self.connection.execute(
            "UPDATE commands SET done_at = ?2, ok = 0, outcome = ?3 WHERE id = ?1 AND done_at IS NULL",
            params![id, timestamp(now), EXPIRED],
        )?;
        Ok(changed > 0)
    }

    /// Records the engine's answer; answered commands beyond the newest 1,000 are dropped (the audit trail
    /// keeps every command).
    fn complete_command(&self, id: i64, at: DateTime<Utc>, ok: bool, outcome: &str) -> Result<()> {
        let outcome = outcome.to_string();
        self.write(move |connection| {
            connection.execute(
                "UPDATE commands SET done_at = ?2, ok = ?3, outcome = ?4 WHERE id = ?1",
                params![id, timestamp(at), ok, outcome],
            )?;
            connection.execute("DELETE FROM commands WHERE done_at IS NOT NULL AND id <= ?1 - 1000", [id])?;
            Ok(())
        })
    }

    /// `Some((ok, outcome))` once the engine has acted on the command.
    fn command_result(&self, id: i64) -> Result<Option<(bool, String)>> {
        let result = self
            .connection
            .query_row("SELECT ok, outcome FROM commands WHERE id = ?1 AND done_at IS NOT NULL", [id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        Ok(result)
    }

    /// Removes the oldest finished runs of `workflow` beyond the newest `keep`, rows and files together.
    fn prune(&self, workflow: &str, keep: u32) -> Result<Vec<String>> {
        let mut statement = self.connection.prepare_cached(
            "SELECT id FROM runs WHERE workflow = ?1
                AND (state IN ('succeeded', 'failed', 'cancelled') OR (state = 'interrupted' AND recover = 0))
             ORDER BY created_at DESC, id DESC LIMIT -1 OFFSET ?2",
        )?;
        let doomed: Vec<String> =
            statement.query_map(params![workflow, keep], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let deleted = doomed.clone();
        self.write(move |connection| {
            atomically(connection, |connection| {
                for id in &deleted {
                    connection.execute("DELETE FROM runs WHERE id = ?1", [id])?;
                }
                Ok(())
            })
        })?;
        let (state_dir, removed) = (self.state_dir.clone(), doomed.clone());
        self.after_commit(move || {
            for id in &removed {
                crate::store::remove_run_files(&state_dir, id);
            }
        });
        Ok(doomed)
    }

    /// Trims what would otherwise grow without end: alerts and the audit trail beyond their newest `keep`,
    /// and files recorded as processed that are gone from disk and older than `files_for`. Returns how many
    /// rows went. At most 1,000 file records are looked at (one `stat` each) per call, so a pass stays short
    /// on the engine's loop; the next pass takes the next ones.
    fn trim(
        &self,
        keep_alerts: u32,
        keep_audit: u32,
        files_for: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let cutoff = timestamp(now.checked_sub_signed(files_for).unwrap_or(DateTime::<Utc>::MIN_UTC));
        let mut statement = self.connection.prepare_cached(
            "SELECT workflow, path, size, modified FROM processed_files WHERE at < ?1 ORDER BY at LIMIT 1000",
        )?;
        let gone: Vec<(String, String, i64, String)> = statement
            .query_map([&cutoff], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<Vec<_>>>()?
            .into_iter()
            // A name that is not UTF-8 is stored escaped (`\xff`, `\\`): it cannot be looked up as written, so
            // its record is kept rather than dropped while the file may still be there (it would run again).
            .filter(|(_, path, _, _): &(String, String, i64, String)| {
                !path.contains('\\') && !std::path::Path::new(path).exists()
            })
            .collect();
        self.write(move |connection| {
            let mut removed = connection.execute(
                "DELETE FROM alerts WHERE id <= (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [keep_alerts],
            )?;
            removed += connection.execute(
                "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET ?1)",
                [keep_audit],
            )?;
            for (workflow, path, size, modified) in &gone {
                removed += connection.execute(
                    "DELETE FROM processed_files WHERE workflow = ?1 AND path = ?2 AND size = ?3 AND modified = ?4",
                    params![workflow, path, size, modified],
                )?;
            }
            Ok(removed)
        })
    }

    /// Whether any run id starts with this text (for telling a run from a workflow on the command line).
    fn find_run(&self, id_or_prefix: &str) -> Result<Option<String>> {
        if let Some(run) = self.run(id_or_prefix)? {
            return Ok(Some(run.id));
        }
        let mut statement = self.connection.prepare_cached("SELECT id FROM runs WHERE id LIKE ?1 || '%' LIMIT 2")?;
        let matches: Vec<String> =
            statement.query_map([id_or_prefix], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
        match matches.as_slice() {
            [one] => Ok(Some(one.clone())),
            [] => Ok(None),
            _ => Err(StoreError::Corrupt(format!("`{id_or_prefix}` matches several runs: give more of the id"))),
        }
    }

    fn logs(&self) -> Arc<dyn LogReader> {
        SqliteStore::logs(self)
    }

    fn run_for_instant(&self, workflow: &str, at: DateTime<Utc>) -> Result<Option<String>> {
        SqliteStore::run_for_instant(self, workflow, at)
    }

    fn runs_by_instant(&self, workflow: &str) -> Result<BTreeMap<DateTime<Utc>, String>> {
        SqliteStore::runs_by_instant(self, workflow)
    }

    fn begin_batch(&self) -> Result<()> {
        SqliteStore::begin_batch(self)
    }

    fn commit_batch(&self) -> Result<()> {
        SqliteStore::commit_batch(self)
    }

    fn has_pending(&self) -> bool {
        SqliteStore::has_pending(self)
    }

    fn retry_pending(&self) -> Result<()> {
        SqliteStore::retry_pending(self)
    }

    fn take_trouble(&self) -> Option<String> {
        SqliteStore::take_trouble(self)
    }

    fn gauges(&self) -> Result<Gauges> {
        SqliteStore::gauges(self)
    }

    fn state_id(&self) -> Result<String> {
        SqliteStore::state_id(self)
    }

    fn integrity_check(&self) -> Result<String> {
        SqliteStore::integrity_check(self)
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}
/// Runs `work` as one unit. Inside the engine's batch that is the batch itself (a failed write rolls all of
/// it back and writes it again, see `batch.rs`), so no savepoint is paid for; outside one, a savepoint.
fn atomically<T>(
    connection: &rusqlite::Connection,
    work: impl FnOnce(&rusqlite::Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<T> {
    if !connection.is_autocommit() {
        return work(connection);
    }
    connection.execute_batch("SAVEPOINT unit")?;
    match work(connection) {
        Ok(value) => {
            connection.execute_batch("RELEASE unit")?;
            Ok(value)
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK TO unit; RELEASE unit");
            Err(error)
        }
    }
}

fn upsert_task(connection: &rusqlite::Connection, task: &TaskRecord) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(
        "INSERT INTO tasks (run_id, name, position, state, attempts, route, input, output, started_at, finished_at, error,
            route_index, route_attempts, retry_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
         ON CONFLICT (run_id, name) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
            route = excluded.route, input = excluded.input, output = excluded.output, started_at = excluded.started_at,
            finished_at = excluded.finished_at, error = excluded.error, route_index = excluded.route_index,
            route_attempts = excluded.route_attempts, retry_at = excluded.retry_at",
    )?;
    statement.execute(params![
        task.run_id,
        task.name,
        task.position,
        task.state.as_str(),
        task.attempts,
        task.route,
        task.input.as_ref().map(json),
        task.output.as_ref().map(json),
        task.started_at.map(timestamp),
        task.finished_at.map(timestamp),
        task.error,
        task.route_index,
        task.route_attempts,
        task.retry_at.map(timestamp),
    ])?;
    Ok(())
}

fn upsert_attempt(connection: &rusqlite::Connection, attempt: &AttemptRecord) -> rusqlite::Result<()> {
    let mut statement = connection.prepare_cached(
        // An update in place, not REPLACE's delete and insert: an attempt's row is written two or three times.
        "INSERT INTO attempts (run_id, task, attempt, route, state, exit_code, error, started_at, finished_at,
            log_path, log_bytes, pid, pid_start, progress, prompt_tokens, completion_tokens, log_text)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
         ON CONFLICT (run_id, task, attempt) DO UPDATE SET route = excluded.route, state = excluded.state,
            exit_code = excluded.exit_code, error = excluded.error, started_at = excluded.started_at,
            finished_at = excluded.finished_at, log_path = excluded.log_path, log_bytes = excluded.log_bytes,
            pid = excluded.pid, pid_start = excluded.pid_start, progress = excluded.progress,
            prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
            log_text = excluded.log_text",
    )?;
    statement.execute(params![
        attempt.run_id,
        attempt.task,
        attempt.attempt,
        attempt.route,
        attempt.state.as_str(),
        attempt.exit_code,
        attempt.error,
        timestamp(attempt.started_at),
        attempt.finished_at.map(timestamp),
        attempt.log_path.to_string_lossy(),
        attempt.log_bytes as i64,
        attempt.pid,
        attempt.pid_start.map(|start| start as i64),
        attempt.progress,
        attempt.prompt_tokens.map(|tokens| tokens as i64),
        attempt.completion_tokens.map(|tokens| tokens as i64),
        attempt.log_text,
    ])?;
    Ok(())
}
