//! How PostgreSQL's rows become the store's records, and the conversions on the way in. A value the row
//! cannot give as expected is `Corrupt`, never a panic.

use std::path::PathBuf;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::store::{
    AlertRecord, AttemptRecord, AuditRecord, FireRecord, QueuedCommand, Result, RunRecord, StoreError, TaskRecord,
};

/// A time as the store keeps it: whole milliseconds, as SQLite's text has them, so both backends give back
/// the same instant.
pub(super) fn ms(time: DateTime<Utc>) -> DateTime<Utc> {
    time.trunc_subsecs(3)
}

/// Free text as PostgreSQL takes it: a NUL, which it refuses in `text` (SQLite keeps it), becomes U+FFFD, so
/// a process's odd output cannot make a step's writes fail for good.
pub(super) fn text(value: &str) -> std::borrow::Cow<'_, str> {
    if value.contains('\0') { value.replace('\0', "\u{fffd}").into() } else { value.into() }
}

pub(super) fn optional_text(value: &Option<String>) -> Option<std::borrow::Cow<'_, str>> {
    value.as_deref().map(text)
}

pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, column: &str) -> Result<T> {
    row.try_get(column).map_err(|error| StoreError::Corrupt(format!("column `{column}`: {error}")))
}

fn count(row: &Row, column: &str) -> Result<u32> {
    let value: i64 = get(row, column)?;
    u32::try_from(value).map_err(|_| StoreError::Corrupt(format!("column `{column}`: {value} is out of range")))
}

fn unsigned(row: &Row, column: &str) -> Result<Option<u64>> {
    Ok(get::<Option<i64>>(row, column)?.map(|value| value as u64))
}

fn parsed<T: std::str::FromStr<Err = String>>(row: &Row, column: &str) -> Result<T> {
    let text: String = get(row, column)?;
    text.parse().map_err(|error: String| StoreError::Corrupt(format!("column `{column}`: {error}")))
}

pub(super) fn run(row: &Row) -> Result<RunRecord> {
    Ok(RunRecord {
        id: get(row, "id")?,
        workflow: get(row, "workflow")?,
        state: parsed(row, "state")?,
        trigger: get(row, "trigger")?,
        input: get(row, "input")?,
        params: get(row, "params")?,
        definition_file: PathBuf::from(get::<String>(row, "definition_file")?),
        definition: get::<String>(row, "definition")?.into(),
        created_at: get(row, "created_at")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        error: get(row, "error")?,
    })
}

pub(super) fn task(row: &Row) -> Result<TaskRecord> {
    Ok(TaskRecord {
        run_id: get(row, "run_id")?,
        name: get(row, "name")?,
        position: count(row, "position")?,
        state: parsed(row, "state")?,
        attempts: count(row, "attempts")?,
        route: get(row, "route")?,
        input: get::<Option<Value>>(row, "input")?,
        output: get::<Option<Value>>(row, "output")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        error: get(row, "error")?,
        route_index: count(row, "route_index")?,
        route_attempts: count(row, "route_attempts")?,
        retry_at: get(row, "retry_at")?,
    })
}

pub(super) fn attempt(row: &Row) -> Result<AttemptRecord> {
    Ok(AttemptRecord {
        run_id: get(row, "run_id")?,
        task: get(row, "task")?,
        attempt: count(row, "attempt")?,
        route: get(row, "route")?,
        state: parsed(row, "state")?,
        exit_code: get(row, "exit_code")?,
        error: get(row, "error")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        log_path: PathBuf::from(get::<String>(row, "log_path")?),
        log_bytes: get::<i64>(row, "log_bytes")?.max(0) as u64,
        pid: get::<Option<i64>>(row, "pid")?
            .map(|pid| u32::try_from(pid).map_err(|_| StoreError::Corrupt(format!("column `pid`: {pid} is no PID"))))
            .transpose()?,
        pid_start: unsigned(row, "pid_start")?,
        progress: get(row, "progress")?,
        prompt_tokens: unsigned(row, "prompt_tokens")?,
        completion_tokens: unsigned(row, "completion_tokens")?,
        log_text: get(row, "log_text")?,
        engine: unsigned(row, "engine")?,
    })
}

pub(super) fn fire(row: &Row) -> Result<FireRecord> {
    Ok(FireRecord {
        workflow: get(row, "workflow")?,
        scheduled_at: get(row, "scheduled_at")?,
        fired_at: get(row, "fired_at")?,
        outcome: get(row, "outcome")?,
        run_id: get(row, "run_id")?,
        queued: get(row, "pending")?,
    })
}

pub(super) fn audit(row: &Row) -> Result<AuditRecord> {
    Ok(AuditRecord {
        id: get(row, "id")?,
        at: get(row, "at")?,
        who: get(row, "who")?,
        origin: get(row, "origin")?,
        command: get(row, "command")?,
        ok: get(row, "ok")?,
        outcome: get(row, "outcome")?,
    })
}

pub(super) fn alert(row: &Row) -> Result<AlertRecord> {
    Ok(AlertRecord {
        id: get(row, "id")?,
        at: get(row, "at")?,
        severity: get(row, "severity")?,
        workflow: get(row, "workflow")?,
        run_id: get(row, "run_id")?,
        task: get(row, "task")?,
        message: get(row, "message")?,
        acked_at: get(row, "acked_at")?,
    })
}

pub(super) fn command(row: &Row) -> Result<QueuedCommand> {
    Ok(QueuedCommand { id: get(row, "id")?, who: get(row, "who")?, command: get(row, "command")? })
}

/// Every row through `convert`, stopping at the first that fails.
pub(super) fn all<T>(rows: Vec<Row>, convert: impl Fn(&Row) -> Result<T>) -> Result<Vec<T>> {
    rows.iter().map(convert).collect()
}
