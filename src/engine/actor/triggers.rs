//! Schedules and file arrivals, applied: the `Scheduler` decides what a fire or a file event comes to; this
//! starts the runs, sets the timers, raises the alerts and records the fires.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Actor, Timer};
use crate::definition::{Trigger, Workflow};
use crate::engine::scheduler::{self, Activation, FileStep, Fire};
use crate::state::RunState;
use crate::store::{FireRecord, timestamp};
use crate::trigger::files::{self, FilePattern, Fingerprint};

impl Actor {
    /// Makes a registered workflow's trigger live: schedules its next fire (after catching up on fires
    /// missed while no engine ran), or starts watching for its files.
    pub(super) fn activate(&mut self, id: &str) -> Result<(), String> {
        let workflow = self.workflows.get(id).cloned().ok_or_else(|| format!("no workflow `{id}`"))?;
        self.deactivate(id);
        match &workflow.trigger {
            Trigger::Schedule(_) => {
                // Fires queued behind a run when the last engine stopped still wait for it.
                let queued = self.store.queued_fires(id).unwrap_or_else(|error| {
                    tracing::error!("reading {id}'s queued fires failed: {error}");
                    Vec::new()
                });
                self.scheduler.activate(id, Activation::schedule(queued));
                let now = self.now();
                // Never before what is already handled: an engine taking over from one whose clock ran ahead
                // (or after this host's clock was set back) does not fire those instants again.
                let mut through = now;
                match self.store.scheduled_through(id) {
                    Ok(Some(since)) if since < now => self.catch_up(&workflow, since, now),
                    Ok(Some(since)) => through = since,
                    Ok(None) => {}
                    Err(error) => tracing::error!("reading {id}'s schedule state failed: {error}"),
                }
                if let Err(error) = self.store.set_scheduled_through(id, through) {
                    tracing::error!("storing {id}'s schedule state failed: {error}");
                }
                self.schedule_next(&workflow, through);
                // A queued fire whose run ended while no engine ran starts now.
                self.dequeue(id);
            }
            Trigger::Event { watch, settle } => {
                let pattern = FilePattern::new(watch, &self.config.workflows_dir)?;
                let notes = self.file_notes.clone();
                // Blocks the watcher's thread while the engine catches up; if the kernel's queue overflows
                // meanwhile, `Lost` makes the engine look at every watched folder again.
                let watcher = files::watch(&pattern.root, pattern.recursive, move |seen| {
                    let _ = notes.blocking_send(seen);
                })?;
                let existing = pattern.existing();
                self.scheduler.activate(id, Activation::files(pattern, *settle, watcher));
                for path in existing {
                    self.file_seen(path);
                }
            }
            Trigger::Manual => self.scheduler.activate(id, Activation::default()),
        }
        Ok(())
    }

    pub(super) fn deactivate(&mut self, id: &str) {
        self.scheduler.deactivate(id);
        self.timers.retain(|_, timer| match timer {
            Timer::Fire { workflow, .. } | Timer::Settle { workflow, .. } => workflow != id,
            _ => true,
        });
    }

    fn catch_up(&mut self, workflow: &Workflow, since: DateTime<Utc>, now: DateTime<Utc>) {
        let plan = scheduler::catch_up(workflow, since, now);
        if let Some(message) = plan.warning {
            self.alert("warning", Some(&workflow.id), None, None, message);
        }
        for scheduled in plan.fires {
            self.fire(&workflow.id, scheduled, true);
        }
    }

    /// Sets the timer for the first fire after `after` (plus jitter).
    fn schedule_next(&mut self, workflow: &Workflow, after: DateTime<Utc>) {
        if let Some((at, scheduled)) = scheduler::next_fire(workflow, after, self.now(), rand::random::<f64>()) {
            self.add_timer(at, Timer::Fire { workflow: workflow.id.clone(), scheduled });
        }
    }

    /// A scheduled instant has come: start, queue or skip a run as the workflow's policies say.
    pub(super) fn fire(&mut self, id: &str, scheduled: DateTime<Utc>, catching_up: bool) {
        let Some(workflow) = self.workflows.get(id).cloned() else { return };
        if !self.scheduler.is_active(id) {
            return;
        }
        if !catching_up {
            self.schedule_next(&workflow, scheduled);
        }
        let paused = self.store.paused_workflows().map(|paused| paused.contains(id)).unwrap_or(false);
        let active: Vec<String> = self.active_runs(id);
        let Some(decision) = self.scheduler.fire(&workflow, scheduled, paused, active.len(), catching_up) else {
            return;
        };
        let (outcome, run_id) = match decision {
            Fire::Start { outcome } => self.start_scheduled(id, scheduled, outcome),
            Fire::ReplaceActive => {
                for run in &active {
                    let reason = "cancelled: a newer scheduled run replaces it (overlap = cancel_previous)".to_string();
                    self.stop_run(run, RunState::Cancelled, reason);
                }
                self.start_scheduled(id, scheduled, "started, cancelling the previous run")
            }
            Fire::Queued => ("queued: a run is still active".to_string(), None),
            Fire::Skipped { outcome, alert } => {
                // Recorded and published as a fire; the diagnostic would only say it twice.
                tracing::debug!("{id}: fire at {} {outcome}", timestamp(scheduled));
                if alert {
                    let message = format!("{id}: the scheduled fire at {} was {outcome}", timestamp(scheduled));
                    self.alert("info", Some(id), None, None, message);
                }
                (outcome, None)
            }
        };
        let queued = outcome.starts_with("queued");
        let fire = FireRecord {
            workflow: id.to_string(),
            scheduled_at: scheduled,
            fired_at: self.now(),
            outcome,
            run_id,
            queued,
        };
        if let Err(error) = self.store.record_fire(&fire, self.registry.retention.fires) {
            tracing::error!("recording a fire of {id} failed: {error}");
        }
        self.publish(crate::engine::Event::Fire(fire));
        if !catching_up && let Err(error) = self.store.set_scheduled_through(id, scheduled) {
            tracing::error!("storing {id}'s schedule state failed: {error}");
        }
    }

    fn start_scheduled(&mut self, id: &str, scheduled: DateTime<Utc>, started: &str) -> (String, Option<String>) {
        let input = json!({"scheduled_at": timestamp(scheduled)});
        match self.trigger(id, Some(input), &BTreeMap::new(), "schedule") {
            Ok(reply) => (started.to_string(), reply.run),
            Err(error) => {
                let message = format!("{id}: the scheduled run could not start: {error}");
                self.alert("error", Some(id), None, None, message);
                (format!("failed to start: {error}"), None)
            }
        }
    }

    pub(super) fn active_runs(&self, workflow: &str) -> Vec<String> {
        self.runs
            .values()
            .filter(|run| run.record.workflow == workflow && run.record.state.is_active())
            .map(|run| run.record.id.clone())
            .collect()
    }

    /// After a run ends: the next queued fire of its workflow, if nothing else of it is active.
    pub(super) fn dequeue(&mut self, workflow: &str) {
        if !self.active_runs(workflow).is_empty() {
            return;
        }
        let Some(scheduled) = self.scheduler.next_queued(workflow) else { return };
        let (outcome, run_id) = self.start_scheduled(workflow, scheduled, "started from the queue");
        if let Err(error) = self.store.unqueue_fire(workflow, scheduled) {
            tracing::error!("recording that a queued fire of {workflow} started failed: {error}");
        }
        let fire = FireRecord {
            queued: false,
            workflow: workflow.to_string(),
            scheduled_at: scheduled,
            fired_at: self.now(),
            outcome,
            run_id,
        };
        if let Err(error) = self.store.record_fire(&fire, self.registry.retention.fires) {
            tracing::error!("recording a fire of {workflow} failed: {error}");
        }
        self.publish(crate::engine::Event::Fire(fire));
    }

    /// Something happened to `path`: it settles for every file trigger it matches.
    pub(super) fn file_seen(&mut self, path: PathBuf) {
        let steps = self.scheduler.file_seen(&path, self.now());
        self.apply_file_steps(steps);
    }

    /// A settle interval has passed: the file's run starts if it has stayed the same all along.
    pub(super) fn settle_file(&mut self, id: &str, path: &Path) {
        let steps = self.scheduler.settle_file(id, path, self.now());
        self.apply_file_steps(steps);
    }

    fn apply_file_steps(&mut self, steps: Vec<FileStep>) {
        for step in steps {
            match step {
                FileStep::SettleAt { workflow, path, at } => self.add_timer(at, Timer::Settle { workflow, path }),
                FileStep::Refused { workflow, message } => self.alert("warning", Some(&workflow), None, None, message),
                FileStep::Arrived { workflow, path, file } => self.file_arrived(&workflow, &path, file),
            }
        }
    }

    fn file_arrived(&mut self, id: &str, path: &Path, file: Fingerprint) {
        // Not lossy: two names differing only in bytes that are not UTF-8 must stay two files. (A UTF-8 name
        // spelled exactly like another's escape shares its key; with equal size and time too, it counts as seen.)
        let text = files::file_text(path);
        match self.store.file_processed(id, &text, file.size, file.modified) {
            Ok(true) => return,
            Ok(false) => {}
            Err(error) => {
                tracing::error!("checking whether {text} was processed failed: {error}");
                return;
            }
        }
        if self.store.paused_workflows().map(|paused| paused.contains(id)).unwrap_or(false) {
            tracing::info!("{id} is paused: {text} waits for it to resume");
            return;
        }
        let mut input = json!({"file": text, "size": file.size, "modified": timestamp(file.modified)});
        if files::is_escaped(path) {
            // Tells the task that `file` must be unescaped to open it; UTF-8 names keep the shape they had.
            input["file_escaped"] = json!(true);
        }
        let run = match self.trigger(id, Some(input), &BTreeMap::new(), "event") {
            Ok(reply) => reply.run,
            Err(error) => {
                self.alert("error", Some(id), None, None, format!("{id}: the run for {text} could not start: {error}"));
                None
            }
        };
        if let Err(error) =
            self.store.mark_file_processed(id, &text, file.size, file.modified, run.as_deref(), self.now())
        {
            tracing::error!("recording {text} as processed failed: {error}");
        }
    }

    /// What a file watch reported.
    pub(super) fn file_note(&mut self, seen: files::Seen) {
        match seen {
            files::Seen::Path(path) => self.file_seen(path),
            files::Seen::Lost => {
                tracing::warn!("file events were lost: looking at the watched folders again");
                for id in self.scheduler.file_workflows() {
                    self.rescan(&id);
                }
            }
        }
    }

    /// Files that arrived while a workflow was paused get their run when it resumes.
    pub(super) fn rescan(&mut self, id: &str) {
        for path in self.scheduler.existing_files(id) {
            self.file_seen(path);
        }
    }
}
