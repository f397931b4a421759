//! Schedules and file arrivals: when a workflow's trigger fires, and what the overlap and catch-up
//! policies make of it.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::{Actor, Timer};
use crate::definition::{Catchup, Overlap, Trigger, Workflow};
use crate::state::RunState;
use crate::store::{FireRecord, timestamp};
use crate::trigger::files::{self, Admit, FilePattern, Fingerprint};

/// A fire further in the past than this (the machine slept, the clock jumped) is not replayed.
const TOO_LATE: chrono::Duration = chrono::Duration::minutes(1);
/// `catchup = "all"` runs at most this many missed fires.
pub const CATCHUP_LIMIT: usize = 100;
/// Fires waiting behind an active run (`overlap = "queue"`, catch-up): past this, further fires are skipped,
/// so a run that never ends cannot grow the queue without bound.
pub const QUEUE_LIMIT: usize = CATCHUP_LIMIT;

/// A workflow whose trigger is live.
#[derive(Default)]
pub struct Activation {
    /// Scheduled fires waiting for the active run to end (`overlap = "queue"`, catch-up).
    queue: VecDeque<DateTime<Utc>>,
    /// Set once a skipped fire has raised an alert; cleared when a fire starts a run again.
    skip_alerted: bool,
    files: Option<FileTrigger>,
}

struct FileTrigger {
    pattern: FilePattern,
    settle: Duration,
    /// Links to outside the watched folder already alerted on: one alert per link, however many events it sends.
    refused: HashSet<PathBuf>,
    _watcher: notify::RecommendedWatcher,
}

impl Actor {
    /// Makes a registered workflow's trigger live: schedules its next fire (after catching up on fires
    /// missed while no engine ran), or starts watching for its files.
    pub(super) fn activate(&mut self, id: &str) -> Result<(), String> {
        let workflow = self.workflows.get(id).cloned().ok_or_else(|| format!("no workflow `{id}`"))?;
        self.deactivate(id);
        let mut activation = Activation::default();
        match &workflow.trigger {
            Trigger::Schedule(_) => {
                // Fires queued behind a run when the last engine stopped still wait for it.
                match self.store.queued_fires(id) {
                    Ok(queued) => activation.queue = queued.into(),
                    Err(error) => tracing::error!("reading {id}'s queued fires failed: {error}"),
                }
                self.activations.insert(id.to_string(), activation);
                let now = self.now();
                match self.store.scheduled_through(id) {
                    Ok(Some(since)) if since < now => self.catch_up(&workflow, since, now),
                    Ok(_) => {}
                    Err(error) => tracing::error!("reading {id}'s schedule state failed: {error}"),
                }
                if let Err(error) = self.store.set_scheduled_through(id, now) {
                    tracing::error!("storing {id}'s schedule state failed: {error}");
                }
                self.schedule_next(&workflow, now);
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
                activation.files =
                    Some(FileTrigger { pattern, settle: *settle, refused: HashSet::new(), _watcher: watcher });
                self.activations.insert(id.to_string(), activation);
                for path in existing {
                    self.file_seen(path);
                }
            }
            Trigger::Manual => {
                self.activations.insert(id.to_string(), activation);
            }
        }
        Ok(())
    }

    pub(super) fn deactivate(&mut self, id: &str) {
        self.activations.remove(id);
        self.timers.retain(|_, timer| match timer {
            Timer::Fire { workflow, .. } | Timer::Settle { workflow, .. } => workflow != id,
            _ => true,
        });
        self.pending_files.retain(|(workflow, _), _| workflow != id);
    }

    fn catch_up(&mut self, workflow: &Workflow, since: DateTime<Utc>, now: DateTime<Utc>) {
        let Trigger::Schedule(schedule) = &workflow.trigger else { return };
        let limit = match workflow.catchup {
            Catchup::None => 0,
            Catchup::Latest => 1,
            Catchup::All => CATCHUP_LIMIT,
        };
        let (missed, total) = schedule.missed(since, now, limit.max(1));
        if total == 0 {
            return;
        }
        if workflow.catchup == Catchup::None {
            tracing::info!("{}: fires missed while no engine ran are not run (catchup = none)", workflow.id);
            return;
        }
        if workflow.catchup == Catchup::All && total > CATCHUP_LIMIT {
            let message = format!(
                "{} missed more than {CATCHUP_LIMIT} scheduled fires while no engine ran; running the newest {CATCHUP_LIMIT} (catchup = all)",
                workflow.id
            );
            self.alert("warning", Some(&workflow.id), None, None, message);
        }
        for scheduled in missed {
            self.fire(&workflow.id, scheduled, true);
        }
    }

    /// Sets the timer for the first fire after `after` (plus jitter).
    fn schedule_next(&mut self, workflow: &Workflow, after: DateTime<Utc>) {
        let Trigger::Schedule(schedule) = &workflow.trigger else { return };
        let now = self.now();
        let Some(mut next) = schedule.next_after(after) else { return };
        if now.checked_sub_signed(TOO_LATE).is_some_and(|limit| next < limit) {
            tracing::warn!(
                "{}: the fire at {} is long past (was the machine asleep?); not replaying it",
                workflow.id,
                timestamp(next)
            );
            match schedule.next_after(now) {
                Some(later) => next = later,
                None => return,
            }
        }
        let jitter = workflow.jitter.map_or(Duration::ZERO, |most| most.mul_f64(rand::random::<f64>()));
        let at = crate::clock::later(next, jitter);
        self.add_timer(at, Timer::Fire { workflow: workflow.id.clone(), scheduled: next });
    }

    /// A scheduled instant has come: start, queue or skip a run as the workflow's policies say.
    pub(super) fn fire(&mut self, id: &str, scheduled: DateTime<Utc>, catching_up: bool) {
        let Some(workflow) = self.workflows.get(id).cloned() else { return };
        if !self.activations.contains_key(id) {
            return;
        }
        if !catching_up {
            self.schedule_next(&workflow, scheduled);
        }
        let paused = self.store.paused_workflows().map(|paused| paused.contains(id)).unwrap_or(false);
        let active: Vec<String> = self.active_runs(id);
        let (outcome, run_id) = if paused {
            ("skipped: the workflow is paused".to_string(), None)
        } else if !active.is_empty() && (catching_up || workflow.overlap == Overlap::Queue) {
            let queue = &mut self.activations.get_mut(id).expect("active").queue;
            if queue.len() < QUEUE_LIMIT {
                queue.push_back(scheduled);
                ("queued: a run is still active".to_string(), None)
            } else {
                (format!("skipped: {QUEUE_LIMIT} fires already wait for the active run"), None)
            }
        } else if active.is_empty() {
            self.start_scheduled(id, scheduled, if catching_up { "catch-up" } else { "started" })
        } else {
            match workflow.overlap {
                Overlap::Skip | Overlap::Queue => ("skipped: a run is still active (overlap = skip)".to_string(), None),
                Overlap::CancelPrevious => {
                    for run in &active {
                        let reason =
                            "cancelled: a newer scheduled run replaces it (overlap = cancel_previous)".to_string();
                        self.stop_run(run, RunState::Cancelled, reason);
                    }
                    self.start_scheduled(id, scheduled, "started, cancelling the previous run")
                }
                Overlap::Allow if active.len() < workflow.max_active_runs as usize => {
                    self.start_scheduled(id, scheduled, "started")
                }
                Overlap::Allow => (format!("skipped: max_active_runs ({}) reached", workflow.max_active_runs), None),
            }
        };
        if outcome.starts_with("skipped") {
            // Recorded and published as a fire; the diagnostic would only say it twice.
            tracing::debug!("{id}: fire at {} {outcome}", timestamp(scheduled));
            let activation = self.activations.get_mut(id).expect("active");
            if !activation.skip_alerted {
                activation.skip_alerted = true;
                let message = format!("{id}: the scheduled fire at {} was {outcome}", timestamp(scheduled));
                self.alert("info", Some(id), None, None, message);
            }
        } else if let Some(activation) = self.activations.get_mut(id) {
            activation.skip_alerted = false;
        }
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
        let Some(scheduled) = self.activations.get_mut(workflow).and_then(|activation| activation.queue.pop_front())
        else {
            return;
        };
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

    /// Something happened to `path`: watch it settle for every file trigger it matches. Paths found when
    /// watching starts come here too, so one rule (`FilePattern::admit`) decides for both.
    pub(super) fn file_seen(&mut self, path: PathBuf) {
        let now = self.now();
        let matching: Vec<(String, Duration, Admit)> = self
            .activations
            .iter()
            .filter_map(|(id, activation)| {
                let trigger = activation.files.as_ref()?;
                trigger.pattern.matches(&path).then(|| (id.clone(), trigger.settle, trigger.pattern.admit(&path)))
            })
            .collect();
        for (id, settle, admit) in matching {
            let key = (id.clone(), path.clone());
            match self.admitted(&id, &path, admit) {
                Some(fingerprint) => {
                    // A file written in many chunks sends many events: one timer per file is enough, as
                    // `settle_file` waits again from the latest change it finds.
                    if self.pending_files.insert(key, (fingerprint, now)).is_none() {
                        let at = crate::clock::later(now, settle);
                        self.add_timer(at, Timer::Settle { workflow: id, path: path.clone() });
                    }
                }
                None => {
                    self.pending_files.remove(&key);
                }
            }
        }
    }

    /// The fingerprint of an admitted file; a link to outside the watched folder raises its one alert.
    fn admitted(&mut self, id: &str, path: &Path, admit: Admit) -> Option<Fingerprint> {
        let trigger = self.activations.get_mut(id).and_then(|a| a.files.as_mut())?;
        let target = match admit {
            Admit::File(fingerprint) => {
                trigger.refused.remove(path);
                return Some(fingerprint);
            }
            Admit::No => {
                // Gone or no longer a link: if it comes back pointing outside, that is news again.
                trigger.refused.remove(path);
                return None;
            }
            Admit::Outside(target) => target,
        };
        if trigger.refused.insert(path.to_path_buf()) {
            let message = format!(
                "{id}: {} is a symbolic link to {}, outside the watched folder {}: it is not processed (move or copy the file into the folder instead)",
                files::file_text(path),
                files::file_text(&target),
                files::file_text(&trigger.pattern.root)
            );
            tracing::warn!("{message}");
            self.alert("warning", Some(id), None, None, message);
        }
        None
    }

    /// A settle interval has passed: start the file's run if it has stayed the same all along.
    pub(super) fn settle_file(&mut self, id: &str, path: &Path) {
        let now = self.now();
        let key = (id.to_string(), path.to_path_buf());
        let Some(&(seen, since)) = self.pending_files.get(&key) else { return };
        let Some(trigger) = self.activations.get(id).and_then(|a| a.files.as_ref()) else { return };
        // Asked again, not just re-measured: a link may have been pointed elsewhere while the file settled.
        let (settle_for, admit) = (trigger.settle, trigger.pattern.admit(path));
        let settle = chrono::Duration::from_std(settle_for).unwrap_or(chrono::Duration::MAX);
        match self.admitted(id, path, admit) {
            None => {
                self.pending_files.remove(&key);
            }
            Some(current) if current != seen => {
                self.pending_files.insert(key, (current, now));
                self.add_timer(
                    crate::clock::later(now, settle_for),
                    Timer::Settle { workflow: id.to_string(), path: path.to_path_buf() },
                );
            }
            Some(_) if now.signed_duration_since(since) < settle => {
                self.add_timer(
                    crate::clock::later(since, settle_for),
                    Timer::Settle { workflow: id.to_string(), path: path.to_path_buf() },
                );
            }
            Some(complete) => {
                self.pending_files.remove(&key);
                self.file_arrived(id, path, complete);
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
                let ids: Vec<String> =
                    self.activations.iter().filter(|(_, a)| a.files.is_some()).map(|(id, _)| id.clone()).collect();
                for id in ids {
                    self.rescan(&id);
                }
            }
        }
    }

    /// Files that arrived while a workflow was paused get their run when it resumes.
    pub(super) fn rescan(&mut self, id: &str) {
        let existing = self.activations.get(id).and_then(|a| a.files.as_ref()).map(|t| t.pattern.existing());
        for path in existing.unwrap_or_default() {
            self.file_seen(path);
        }
    }
}
