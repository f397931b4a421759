//! The SQL of every record operation (`Records` for PostgreSQL). Each mirrors SQLite's (`sqlite/records.rs`):
//! the same rows, orders and limits, so the contract suite holds both to one behaviour.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::PgStore;
use super::connection::Conn;
use super::rows::{self, all, get, ms, optional_text, text};
use crate::state::RunState;
use crate::store::{
    AlertRecord, AttemptRecord, AuditRecord, Changes, EXPIRED, FireRecord, Gauges, LogReader, QueuedCommand, Records,
    Result, RunRecord, StoreError, TaskRecord, parse_timestamp, timestamp,
};

impl Records for PgStore {
    fn insert_run(&self, run: &RunRecord, tasks: &[TaskRecord]) -> Result<()> {
        let (run, tasks, engine) = (run.clone(), tasks.to_vec(), self.engine_id());
        self.write(move |conn| {
            conn.atomically(|conn| {
                conn.execute(
                    "INSERT INTO runs (id, workflow, state, trigger, input, params, definition_file, definition,
                        created_at, started_at, finished_at, error, engine)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
                    &[
                        &run.id,
                        &run.workflow,
                        &run.state.as_str(),
                        &run.trigger,
                        &run.input,
                        &run.params,
                        &run.definition_file.to_string_lossy().as_ref(),
                        &run.definition.as_ref(),
                        &ms(run.created_at),
                        &run.started_at.map(ms),
                        &run.finished_at.map(ms),
                        &optional_text(&run.error),
                        &engine,
                    ],
                )?;
                for task in &tasks {
                    upsert_task(conn, task)?;
                }
                Ok(())
            })
        })
    }

    fn update_run(&self, run: &RunRecord) -> Result<()> {
        let run = run.clone();
        self.write(move |conn| {
            conn.execute(
                "UPDATE runs SET state = $2, started_at = $3, finished_at = $4, error = $5 WHERE id = $1",
                &[
                    &run.id,
                    &run.state.as_str(),
                    &run.started_at.map(ms),
                    &run.finished_at.map(ms),
                    &optional_text(&run.error),
                ],
            )?;
            Ok(())
        })
    }

    fn set_recover(&self, run_id: &str, recover: bool) -> Result<()> {
        let run_id = run_id.to_string();
        self.write(move |conn| {
            conn.execute("UPDATE runs SET recover = $2 WHERE id = $1", &[&run_id, &recover])?;
            Ok(())
        })
    }

    fn runs_to_recover(&self) -> Result<Vec<RunRecord>> {
        self.worker.run(|conn| {
            let found = conn.query(
                "SELECT * FROM runs WHERE state IN ('queued', 'running', 'paused', 'waiting_approval')
                    OR (state = 'interrupted' AND recover)
                 ORDER BY created_at, id",
                &[],
            )?;
            all(found, rows::run)
        })
    }

    fn update_task(&self, task: &TaskRecord) -> Result<()> {
        let task = task.clone();
        self.write(move |conn| upsert_task(conn, &task))
    }

    fn run(&self, id: &str) -> Result<Option<RunRecord>> {
        let id = id.to_string();
        self.worker.run(move |conn| {
            conn.query_opt("SELECT * FROM runs WHERE id = $1", &[&id])?.as_ref().map(rows::run).transpose()
        })
    }

    fn runs(&self, workflow: Option<&str>, limit: usize) -> Result<Vec<RunRecord>> {
        let (workflow, limit) = (workflow.map(str::to_string), limit as i64);
        self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT * FROM runs WHERE ($1::text IS NULL OR workflow = $1) ORDER BY created_at DESC, id DESC LIMIT $2",
                &[&workflow, &limit],
            )?;
            all(found, rows::run)
        })
    }

    fn runs_in_state(&self, states: &[RunState]) -> Result<Vec<RunRecord>> {
        let states: Vec<&'static str> = states.iter().map(|state| state.as_str()).collect();
        self.worker.run(move |conn| {
            // State by state, then a stable sort, as SQLite does: runs of one instant keep that order.
            let mut runs = Vec::new();
            for state in states {
                let found = conn.query("SELECT * FROM runs WHERE state = $1 ORDER BY created_at", &[&state])?;
                runs.extend(all(found, rows::run)?);
            }
            runs.sort_by_key(|run| run.created_at);
            Ok(runs)
        })
    }

    fn tasks(&self, run_id: &str) -> Result<Vec<TaskRecord>> {
        let run_id = run_id.to_string();
        self.worker.run(move |conn| {
            all(conn.query("SELECT * FROM tasks WHERE run_id = $1 ORDER BY position", &[&run_id])?, rows::task)
        })
    }

    fn waiting_gates(&self) -> Result<Vec<TaskRecord>> {
        self.worker.run(|conn| {
            let found =
                conn.query("SELECT * FROM tasks WHERE state = 'waiting_approval' ORDER BY run_id, position", &[])?;
            all(found, rows::task)
        })
    }

    fn find_run(&self, id_or_prefix: &str) -> Result<Option<String>> {
        if let Some(run) = self.run(id_or_prefix)? {
            return Ok(Some(run.id));
        }
        let prefix = id_or_prefix.to_string();
        // ILIKE: SQLite's LIKE, which the embedded store uses, ignores ASCII case too.
        let matches: Vec<String> = self.worker.run(move |conn| {
            let found = conn.query("SELECT id FROM runs WHERE id ILIKE $1 || '%' LIMIT 2", &[&prefix])?;
            all(found, |row| get(row, "id"))
        })?;
        match matches.as_slice() {
            [one] => Ok(Some(one.clone())),
            [] => Ok(None),
            _ => Err(StoreError::Corrupt(format!("`{id_or_prefix}` matches several runs: give more of the id"))),
        }
    }

    fn prune(&self, workflow: &str, keep: u32) -> Result<Vec<String>> {
        let (workflow, keep) = (workflow.to_string(), i64::from(keep));
        let doomed: Vec<String> = self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT id FROM runs WHERE workflow = $1
                    AND (state IN ('succeeded', 'failed', 'cancelled') OR (state = 'interrupted' AND NOT recover))
                 ORDER BY created_at DESC, id DESC OFFSET $2",
                &[&workflow, &keep],
            )?;
            all(found, |row| get(row, "id"))
        })?;
        if doomed.is_empty() {
            return Ok(doomed);
        }
        let deleted = doomed.clone();
        self.write(move |conn| {
            conn.execute("DELETE FROM runs WHERE id = ANY($1)", &[&deleted])?;
            Ok(())
        })?;
        let (state_dir, removed) = (self.state_dir.clone(), doomed.clone());
        self.after_commit(move || {
            for id in &removed {
                crate::store::remove_run_files(&state_dir, id);
            }
        });
        Ok(doomed)
    }

    fn insert_attempt(&self, attempt: &AttemptRecord) -> Result<()> {
        let (attempt, engine) = (attempt.clone(), self.engine_id());
        self.write(move |conn| {
            conn.atomically(|conn| {
                upsert_attempt(conn, &attempt, engine)?;
                super::logs::keep(conn, &attempt)
            })
        })
    }

    fn save_attempt_and_task(&self, attempt: &AttemptRecord, task: &TaskRecord) -> Result<()> {
        let (attempt, task, engine) = (attempt.clone(), task.clone(), self.engine_id());
        self.write(move |conn| {
            conn.atomically(|conn| {
                upsert_attempt(conn, &attempt, engine)?;
                super::logs::keep(conn, &attempt)?;
                upsert_task(conn, &task)
            })
        })
    }

    fn attempts(&self, run_id: &str, task: Option<&str>) -> Result<Vec<AttemptRecord>> {
        let (run_id, task) = (run_id.to_string(), task.map(str::to_string));
        self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT * FROM attempts WHERE run_id = $1 AND ($2::text IS NULL OR task = $2)
                 ORDER BY started_at, attempt",
                &[&run_id, &task],
            )?;
            all(found, rows::attempt)
        })
    }

    fn changes_since(&self, after: i64, limit: usize) -> Result<Option<Changes>> {
        self.worker.run(move |conn| super::changes::since(conn, after, limit)).map(Some)
    }

    fn change_mark(&self) -> Result<Option<i64>> {
        self.worker.run(super::changes::mark).map(Some)
    }

    fn change_wake_ups(&self) -> Option<tokio::sync::mpsc::Receiver<()>> {
        match super::listen::listen(self.config.clone(), self.target.clone(), super::CHANGES_CHANNEL) {
            Ok(woken) => Some(woken),
            Err(error) => {
                tracing::warn!("cannot listen for changes ({error}): the console reads them every half second");
                None
            }
        }
    }

    fn logs(&self) -> Arc<dyn LogReader> {
        PgStore::logs(self)
    }

    fn set_paused(&self, workflow: &str, paused: bool, at: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO workflow_state (workflow, paused, changed_at) VALUES ($1, $2, $3)
                 ON CONFLICT (workflow) DO UPDATE SET paused = excluded.paused, changed_at = excluded.changed_at",
                &[&workflow, &paused, &ms(at)],
            )?;
            Ok(())
        })
    }

    fn paused_workflows(&self) -> Result<BTreeSet<String>> {
        self.worker.run(|conn| {
            let found = conn.query("SELECT workflow FROM workflow_state WHERE paused", &[])?;
            Ok(all(found, |row| get(row, "workflow"))?.into_iter().collect())
        })
    }

    fn set_scheduled_through(&self, workflow: &str, through: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO workflow_state (workflow, paused, changed_at, scheduled_through) VALUES ($1, false, $2, $2)
                 ON CONFLICT (workflow) DO UPDATE
                    SET scheduled_through = GREATEST(workflow_state.scheduled_through, excluded.scheduled_through)",
                &[&workflow, &ms(through)],
            )?;
            Ok(())
        })
    }

    fn scheduled_through(&self, workflow: &str) -> Result<Option<DateTime<Utc>>> {
        let workflow = workflow.to_string();
        self.worker.run(move |conn| {
            let found =
                conn.query_opt("SELECT scheduled_through FROM workflow_state WHERE workflow = $1", &[&workflow])?;
            Ok(match found {
                Some(row) => get(&row, "scheduled_through")?,
                None => None,
            })
        })
    }

    fn record_fire(&self, fire: &FireRecord, keep: u32) -> Result<()> {
        let (fire, keep) = (fire.clone(), i64::from(keep));
        self.write(move |conn| {
            conn.atomically(|conn| {
                conn.execute(
                    "INSERT INTO fires (workflow, scheduled_at, fired_at, outcome, run_id, pending)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        &fire.workflow,
                        &ms(fire.scheduled_at),
                        &ms(fire.fired_at),
                        &text(&fire.outcome),
                        &fire.run_id,
                        &fire.queued,
                    ],
                )?;
                conn.execute(
                    "DELETE FROM fires WHERE workflow = $1 AND NOT pending
                        AND id <= (SELECT id FROM fires WHERE workflow = $1 ORDER BY id DESC LIMIT 1 OFFSET $2)",
                    &[&fire.workflow, &keep],
                )?;
                Ok(())
            })
        })
    }

    fn fires(&self, workflow: &str, limit: usize) -> Result<Vec<FireRecord>> {
        let (workflow, limit) = (workflow.to_string(), limit as i64);
        self.worker.run(move |conn| {
            let found =
                conn.query("SELECT * FROM fires WHERE workflow = $1 ORDER BY id DESC LIMIT $2", &[&workflow, &limit])?;
            all(found, rows::fire)
        })
    }

    fn fires_since(&self, after: i64, limit: usize) -> Result<Vec<(i64, FireRecord)>> {
        let limit = limit as i64;
        self.worker.run(move |conn| {
            let found = conn.query("SELECT * FROM fires WHERE id > $1 ORDER BY id LIMIT $2", &[&after, &limit])?;
            all(found, |row| Ok((get(row, "id")?, rows::fire(row)?)))
        })
    }

    fn last_fire_id(&self) -> Result<i64> {
        self.worker.run(|conn| get(&conn.query_one("SELECT COALESCE(max(id), 0) AS id FROM fires", &[])?, "id"))
    }

    fn queued_fires(&self, workflow: &str) -> Result<Vec<DateTime<Utc>>> {
        let workflow = workflow.to_string();
        self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT scheduled_at FROM fires WHERE workflow = $1 AND pending ORDER BY scheduled_at, id",
                &[&workflow],
            )?;
            all(found, |row| get(row, "scheduled_at"))
        })
    }

    fn unqueue_fire(&self, workflow: &str, scheduled_at: DateTime<Utc>) -> Result<()> {
        let workflow = workflow.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE fires SET pending = false WHERE workflow = $1 AND scheduled_at = $2 AND pending",
                &[&workflow, &ms(scheduled_at)],
            )?;
            Ok(())
        })
    }

    fn file_processed(&self, workflow: &str, path: &str, size: u64, modified: DateTime<Utc>) -> Result<bool> {
        let (workflow, path, size) = (workflow.to_string(), path.to_string(), size as i64);
        self.worker.run(move |conn| {
            let found = conn.query_opt(
                "SELECT 1 FROM processed_files WHERE workflow = $1 AND path = $2 AND size = $3 AND modified = $4",
                &[&workflow, &path, &size, &ms(modified)],
            )?;
            Ok(found.is_some())
        })
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
        let (workflow, path, size, run_id) =
            (workflow.to_string(), path.to_string(), size as i64, run_id.map(str::to_string));
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO processed_files (workflow, path, size, modified, run_id, at) VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (workflow, path, size, modified) DO UPDATE SET run_id = excluded.run_id, at = excluded.at",
                &[&workflow, &path, &size, &ms(modified), &run_id, &ms(at)],
            )?;
            Ok(())
        })
    }

    fn run_for_instant(&self, workflow: &str, at: DateTime<Utc>) -> Result<Option<String>> {
        let (workflow, at) = (workflow.to_string(), timestamp(at));
        self.worker.run(move |conn| {
            let found = conn.query_opt(
                "SELECT id FROM runs WHERE workflow = $1 AND input ->> 'scheduled_at' = $2
                 ORDER BY created_at DESC, id DESC LIMIT 1",
                &[&workflow, &at],
            )?;
            found.map(|row| get(&row, "id")).transpose()
        })
    }

    fn runs_by_instant(&self, workflow: &str) -> Result<BTreeMap<DateTime<Utc>, String>> {
        let workflow = workflow.to_string();
        let found: Vec<(String, String)> = self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT id, input ->> 'scheduled_at' AS at FROM runs
                 WHERE workflow = $1 AND input ->> 'scheduled_at' IS NOT NULL ORDER BY created_at, id",
                &[&workflow],
            )?;
            all(found, |row| Ok((get(row, "id")?, get(row, "at")?)))
        })?;
        // A hand-made input may carry a `scheduled_at` that is no time: it names no instant.
        Ok(found.into_iter().filter_map(|(id, at)| Some((parse_timestamp(&at).ok()?, id))).collect())
    }

    fn add_alert(&self, alert: &AlertRecord) -> Result<i64> {
        let alert = alert.clone();
        self.write(move |conn| {
            let at = ms(alert.at);
            if alert.id <= 0 {
                let row = conn.query_one(
                    "INSERT INTO alerts (at, severity, workflow, run_id, task, message)
                     VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
                    &[&at, &alert.severity, &alert.workflow, &alert.run_id, &alert.task, &text(&alert.message)],
                )?;
                return get(&row, "id");
            }
            conn.atomically(|conn| {
                conn.execute(
                    "INSERT INTO alerts (id, at, severity, workflow, run_id, task, message) OVERRIDING SYSTEM VALUE
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        &alert.id,
                        &at,
                        &alert.severity,
                        &alert.workflow,
                        &alert.run_id,
                        &alert.task,
                        &text(&alert.message),
                    ],
                )?;
                // The next alert without an id of its own comes after this one, as SQLite's rowids do.
                conn.execute(
                    "SELECT setval(pg_get_serial_sequence('alerts', 'id'),
                        GREATEST($1, (SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM alerts_id_seq)))",
                    &[&alert.id],
                )?;
                Ok(alert.id)
            })
        })
    }

    fn last_alert_id(&self) -> Result<i64> {
        self.worker.run(|conn| get(&conn.query_one("SELECT COALESCE(max(id), 0) AS id FROM alerts", &[])?, "id"))
    }

    fn alerts(&self, limit: usize) -> Result<Vec<AlertRecord>> {
        let limit = limit as i64;
        self.worker
            .run(move |conn| all(conn.query("SELECT * FROM alerts ORDER BY id DESC LIMIT $1", &[&limit])?, rows::alert))
    }

    fn alert(&self, id: i64) -> Result<Option<AlertRecord>> {
        self.worker.run(move |conn| {
            conn.query_opt("SELECT * FROM alerts WHERE id = $1", &[&id])?.as_ref().map(rows::alert).transpose()
        })
    }

    fn ack_alert(&self, id: i64, at: DateTime<Utc>) -> Result<bool> {
        let changed = self.write(move |conn| {
            conn.execute("UPDATE alerts SET acked_at = $2 WHERE id = $1 AND acked_at IS NULL", &[&id, &ms(at)])
        })?;
        Ok(changed > 0)
    }

    fn audit(&self, at: DateTime<Utc>, who: &str, origin: &str, command: &str, ok: bool, outcome: &str) -> Result<()> {
        let (who, origin, command, outcome) =
            (who.to_string(), origin.to_string(), command.to_string(), outcome.to_string());
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit (at, who, origin, command, ok, outcome) VALUES ($1, $2, $3, $4, $5, $6)",
                &[&ms(at), &who, &origin, &text(&command), &ok, &text(&outcome)],
            )?;
            Ok(())
        })
    }

    fn audit_trail(&self, limit: usize) -> Result<Vec<AuditRecord>> {
        let limit = limit as i64;
        self.worker
            .run(move |conn| all(conn.query("SELECT * FROM audit ORDER BY id DESC LIMIT $1", &[&limit])?, rows::audit))
    }

    fn audit_since(&self, after: i64, limit: usize) -> Result<Vec<AuditRecord>> {
        let limit = limit as i64;
        self.worker.run(move |conn| {
            all(conn.query("SELECT * FROM audit WHERE id > $1 ORDER BY id LIMIT $2", &[&after, &limit])?, rows::audit)
        })
    }

    fn last_audit_id(&self) -> Result<i64> {
        self.worker.run(|conn| get(&conn.query_one("SELECT COALESCE(max(id), 0) AS id FROM audit", &[])?, "id"))
    }

    fn audit_of_run(&self, run_id: &str, limit: usize) -> Result<Vec<AuditRecord>> {
        let (run_id, limit) = (run_id.to_string(), limit as i64);
        self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT * FROM (SELECT * FROM audit WHERE strpos(command, $1) > 0 OR strpos(outcome, $1) > 0
                    ORDER BY id DESC LIMIT $2) AS newest ORDER BY id",
                &[&run_id, &limit],
            )?;
            all(found, rows::audit)
        })
    }

    fn trim(
        &self,
        keep_alerts: u32,
        keep_audit: u32,
        files_for: chrono::Duration,
        now: DateTime<Utc>,
    ) -> Result<usize> {
        let cutoff = ms(now.checked_sub_signed(files_for).unwrap_or(DateTime::<Utc>::MIN_UTC));
        let old: Vec<(String, String, i64, DateTime<Utc>)> = self.worker.run(move |conn| {
            let found = conn.query(
                "SELECT workflow, path, size, modified FROM processed_files WHERE at < $1 ORDER BY at LIMIT 1000",
                &[&cutoff],
            )?;
            all(found, |row| Ok((get(row, "workflow")?, get(row, "path")?, get(row, "size")?, get(row, "modified")?)))
        })?;
        let gone: Vec<_> = old
            .into_iter()
            // A name that is not UTF-8 is stored escaped (`\xff`, `\\`): it cannot be looked up as written, so
            // its record is kept rather than dropped while the file may still be there (it would run again).
            .filter(|(_, path, _, _)| !path.contains('\\') && !Path::new(path).exists())
            .collect();
        let (keep_alerts, keep_audit) = (i64::from(keep_alerts), i64::from(keep_audit));
        self.write(move |conn| {
            let mut removed = conn.execute(
                "DELETE FROM alerts WHERE id <= (SELECT id FROM alerts ORDER BY id DESC LIMIT 1 OFFSET $1)",
                &[&keep_alerts],
            )?;
            removed += conn.execute(
                "DELETE FROM audit WHERE id <= (SELECT id FROM audit ORDER BY id DESC LIMIT 1 OFFSET $1)",
                &[&keep_audit],
            )?;
            for (workflow, path, size, modified) in &gone {
                removed += conn.execute(
                    "DELETE FROM processed_files WHERE workflow = $1 AND path = $2 AND size = $3 AND modified = $4",
                    &[workflow, path, size, modified],
                )?;
            }
            Ok(removed as usize)
        })
    }

    fn enqueue_command(&self, at: DateTime<Utc>, who: &str, command: &str, expires_at: DateTime<Utc>) -> Result<i64> {
        let (who, command) = (who.to_string(), command.to_string());
        self.worker.run(move |conn| {
            conn.atomically(|conn| {
                let row = conn.query_one(
                    "INSERT INTO commands (at, who, command, expires_at) VALUES ($1, $2, $3, $4) RETURNING id",
                    &[&ms(at), &who, &text(&command), &ms(expires_at)],
                )?;
                // Delivered when this commits: the leader takes the command at once instead of at its next poll.
                conn.execute("SELECT pg_notify($1, '')", &[&super::COMMANDS_CHANNEL])?;
                get(&row, "id")
            })
        })
    }

    fn pending_commands(&self, now: DateTime<Utc>) -> Result<Vec<QueuedCommand>> {
        let waiting: Vec<(QueuedCommand, Option<DateTime<Utc>>)> = self.worker.run(|conn| {
            let found =
                conn.query("SELECT id, who, command, expires_at FROM commands WHERE done_at IS NULL ORDER BY id", &[])?;
            all(found, |row| Ok((rows::command(row)?, get(row, "expires_at")?)))
        })?;
        let now = ms(now);
        let mut pending = Vec::new();
        for (command, expires_at) in waiting {
            if expires_at.is_some_and(|at| at <= now) {
                let id = command.id;
                self.write(move |conn| {
                    conn.execute(
                        "UPDATE commands SET done_at = $2, ok = false, outcome = $3 WHERE id = $1 AND done_at IS NULL",
                        &[&id, &now, &EXPIRED],
                    )?;
                    Ok(())
                })?;
            } else {
                pending.push(command);
            }
        }
        Ok(pending)
    }

    fn expire_command(&self, id: i64, now: DateTime<Utc>) -> Result<bool> {
        let changed = self.worker.run(move |conn| {
            conn.execute(
                "UPDATE commands SET done_at = $2, ok = false, outcome = $3 WHERE id = $1 AND done_at IS NULL",
                &[&id, &ms(now), &EXPIRED],
            )
        })?;
        Ok(changed > 0)
    }

    fn complete_command(&self, id: i64, at: DateTime<Utc>, ok: bool, outcome: &str) -> Result<()> {
        let outcome = outcome.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE commands SET done_at = $2, ok = $3, outcome = $4 WHERE id = $1",
                &[&id, &ms(at), &ok, &text(&outcome)],
            )?;
            conn.execute("DELETE FROM commands WHERE done_at IS NOT NULL AND id <= $1::bigint - 1000", &[&id])?;
            Ok(())
        })
    }

    fn command_result(&self, id: i64) -> Result<Option<(bool, String)>> {
        self.worker.run(move |conn| {
            let found =
                conn.query_opt("SELECT ok, outcome FROM commands WHERE id = $1 AND done_at IS NOT NULL", &[&id])?;
            found.map(|row| Ok((get(&row, "ok")?, get(&row, "outcome")?))).transpose()
        })
    }

    fn begin_batch(&self) -> Result<()> {
        PgStore::begin_batch(self)
    }

    fn commit_batch(&self) -> Result<()> {
        PgStore::commit_batch(self)
    }

    fn has_pending(&self) -> bool {
        PgStore::has_pending(self)
    }

    fn retry_pending(&self) -> Result<()> {
        PgStore::retry_pending(self)
    }

    fn take_trouble(&self) -> Option<String> {
        PgStore::take_trouble(self)
    }

    fn gauges(&self) -> Result<Gauges> {
        PgStore::gauges(self)
    }

    fn state_id(&self) -> Result<String> {
        PgStore::state_id(self)
    }

    fn integrity_check(&self) -> Result<String> {
        PgStore::integrity_check(self)
    }

    fn state_dir(&self) -> &Path {
        &self.state_dir
    }
}

fn upsert_task(conn: &mut Conn, task: &TaskRecord) -> Result<()> {
    conn.execute(
        "INSERT INTO tasks (run_id, name, position, state, attempts, route, input, output, started_at, finished_at,
            error, route_index, route_attempts, retry_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
         ON CONFLICT (run_id, name) DO UPDATE SET state = excluded.state, attempts = excluded.attempts,
            route = excluded.route, input = excluded.input, output = excluded.output, started_at = excluded.started_at,
            finished_at = excluded.finished_at, error = excluded.error, route_index = excluded.route_index,
            route_attempts = excluded.route_attempts, retry_at = excluded.retry_at",
        &[
            &task.run_id,
            &task.name,
            &i64::from(task.position),
            &task.state.as_str(),
            &i64::from(task.attempts),
            &task.route,
            &task.input,
            &task.output,
            &task.started_at.map(ms),
            &task.finished_at.map(ms),
            &optional_text(&task.error),
            &i64::from(task.route_index),
            &i64::from(task.route_attempts),
            &task.retry_at.map(ms),
        ],
    )?;
    Ok(())
}

/// `engine`: the writing handle's registration, unless the record names the engine that ran it (an attempt
/// offered to and claimed by another); a writer that has not joined (a shell) keeps the one there.
fn upsert_attempt(conn: &mut Conn, attempt: &AttemptRecord, engine: Option<i64>) -> Result<()> {
    let engine = attempt.engine.map(|ran| ran as i64).or(engine);
    conn.execute(
        // An update in place: an attempt's row is written two or three times.
        "INSERT INTO attempts (run_id, task, attempt, route, state, exit_code, error, started_at, finished_at,
            log_path, log_bytes, pid, pid_start, progress, prompt_tokens, completion_tokens, log_text, engine)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
         ON CONFLICT (run_id, task, attempt) DO UPDATE SET route = excluded.route, state = excluded.state,
            exit_code = excluded.exit_code, error = excluded.error, started_at = excluded.started_at,
            finished_at = excluded.finished_at, log_path = excluded.log_path, log_bytes = excluded.log_bytes,
            pid = excluded.pid, pid_start = excluded.pid_start, progress = excluded.progress,
            prompt_tokens = excluded.prompt_tokens, completion_tokens = excluded.completion_tokens,
            log_text = excluded.log_text, engine = COALESCE(excluded.engine, attempts.engine)",
        &[
            &attempt.run_id,
            &attempt.task,
            &i64::from(attempt.attempt),
            &attempt.route,
            &attempt.state.as_str(),
            &attempt.exit_code,
            &optional_text(&attempt.error),
            &ms(attempt.started_at),
            &attempt.finished_at.map(ms),
            &attempt.log_path.to_string_lossy().as_ref(),
            &(attempt.log_bytes as i64),
            &attempt.pid.map(i64::from),
            &attempt.pid_start.map(|start| start as i64),
            &attempt.progress,
            &attempt.prompt_tokens.map(|tokens| tokens as i64),
            &attempt.completion_tokens.map(|tokens| tokens as i64),
            &optional_text(&attempt.log_text),
            &engine,
        ],
    )?;
    Ok(())
}
