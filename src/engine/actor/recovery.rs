//! An engine that starts heals what one that is gone left behind: the processes its tasks were running are
//! stopped, and its active runs carry on, wait for an operator, or fail, as their `on_interrupt` says.
//! Succeeded tasks never run again; a task cut short gets a new attempt, which does not count against its
//! `retries` (the engine stopped, not the task).

use std::io::Write;

use super::{Actor, Timer};
use crate::definition::OnInterrupt;
use crate::state::{AttemptState, RunState, TaskState};
use crate::store::{AttemptRecord, RunRecord};
use crate::tasks::reclaim;

const CUT_SHORT: &str = "interrupted: the engine stopped while it ran";

impl Actor {
    pub(super) async fn recover_runs(&mut self) {
        let runs = match self.store.runs_to_recover() {
            Ok(runs) => runs,
            Err(error) => {
                tracing::error!("reading the runs an earlier engine left failed: {error}");
                return;
            }
        };
        // Each run's attempts, read once: for the processes to stop, then for the attempts to close.
        let runs: Vec<(RunRecord, Vec<AttemptRecord>)> = runs
            .into_iter()
            .map(|run| {
                let attempts = self.store.attempts(&run.id, None).unwrap_or_default();
                let running = attempts.into_iter().filter(|attempt| attempt.state == AttemptState::Running).collect();
                (run, running)
            })
            .collect();
        let left = self.left_running(&runs);
        reclaim::stop_processes(&left, self.config.kill_grace).await;
        for (run, running) in runs {
            self.recover_run(run, running);
        }
    }

    /// Every process of this state folder still running belongs to an engine that is gone: the groups
    /// recorded for its attempts (if the leader is the same process, by its start time), any process
    /// carrying the folder's id, and any process on this host running an attempt cut short (on a shared
    /// store, a worker here may have claimed it).
    fn left_running(&self, runs: &[(RunRecord, Vec<AttemptRecord>)]) -> Vec<i32> {
        let mut pids = Vec::new();
        let mut notes: Vec<(std::path::PathBuf, String)> = Vec::new();
        for (_, running) in runs {
            for attempt in running {
                let (Some(pid), Some(start)) = (attempt.pid, attempt.pid_start) else { continue };
                let pid = pid as i32;
                if reclaim::is_alive(pid) && reclaim::start_time(pid) == Some(start) {
                    pids.push(pid);
                    let note = format!("the engine that ran this attempt is gone: stopping its process group {pid}");
                    notes.push((attempt.log_path.clone(), note));
                }
            }
        }
        let cut_short = |marker: &reclaim::Marker| {
            runs.iter().flat_map(|(_, running)| running).any(|attempt| {
                marker.run == attempt.run_id && marker.task == attempt.task && marker.attempt == attempt.attempt
            })
        };
        // One look at every process: this folder's, and any running an attempt cut short.
        for stray in reclaim::marked_where(|marker| marker.state_id == self.state_id || cut_short(marker)) {
            if pids.contains(&stray.pid) {
                continue;
            }
            pids.push(stray.pid);
            let marker = &stray.marker;
            let note =
                format!("the engine that ran this attempt is gone: stopping process {} it left running", stray.pid);
            notes.push((self.store.log_path(&marker.run, &marker.task, marker.attempt), note));
        }
        if !pids.is_empty() {
            tracing::warn!("stopping {} process(es) that tasks of an earlier engine left running", pids.len());
        }
        for (log, note) in &notes {
            append_line(log, note);
        }
        pids
    }

    fn recover_run(&mut self, mut record: RunRecord, running: Vec<AttemptRecord>) {
        let id = record.id.clone();
        let now = self.now();
        let mut cut_short = Vec::new();
        for mut attempt in running {
            attempt.state = AttemptState::Interrupted;
            attempt.error = Some(CUT_SHORT.into());
            attempt.finished_at = Some(now);
            if let Err(error) = self.store.insert_attempt(&attempt) {
                tracing::error!("storing attempt {} of {} failed: {error}", attempt.attempt, attempt.task);
            }
            self.publish(crate::engine::Event::Attempt(attempt));
        }
        let definition = self.definition_of(&record);
        // A run whose definition no longer loads cannot run again as it was defined: an operator decides.
        let policy = definition
            .as_ref()
            .map_or(OnInterrupt::Wait, |workflow| workflow.on_interrupt.unwrap_or(self.registry.on_interrupt));
        let active = matches!(record.state, RunState::Running | RunState::Queued | RunState::Interrupted);
        let fail = active && policy == OnInterrupt::Fail;
        let mut tasks = self.store.tasks(&id).unwrap_or_default();
        for task in tasks.iter_mut() {
            if task.state != TaskState::Running {
                continue;
            }
            if fail {
                task.state = TaskState::Failed;
                task.finished_at = Some(now);
                task.error = Some(CUT_SHORT.into());
            } else {
                // A new attempt comes; the one cut short does not count against `retries`.
                task.state = TaskState::Pending;
                task.route_attempts = task.route_attempts.saturating_sub(1);
                task.error = Some(format!("{CUT_SHORT}; it runs again"));
                task.finished_at = None;
            }
            cut_short.push(task.name.clone());
            self.save_task(task);
        }
        if let Err(error) = self.store.set_recover(&id, false) {
            tracing::error!("clearing run {id}'s recovery mark failed: {error}");
        }
        let workflow = record.workflow.clone();
        let what = if cut_short.is_empty() { String::new() } else { format!(" (cut short: {})", cut_short.join(", ")) };
        if !active {
            // Paused, or waiting at a gate: it stays so; tasks cut short run again when it goes on.
            if let Err(error) = definition.and_then(|workflow| self.install_run(record.clone(), workflow, tasks)) {
                tracing::error!("run {id} cannot be loaded: {error}");
            }
            if !cut_short.is_empty() {
                let message = format!(
                    "run {id} of {workflow} stays {}; {} run(s) again when it goes on",
                    record.state,
                    cut_short.join(", ")
                );
                self.alert("info", Some(&workflow), Some(&id), None, message);
            }
            return;
        }
        match policy {
            OnInterrupt::Resume => {
                let installed = definition.and_then(|workflow| self.install_run(record.clone(), workflow, tasks));
                let run = match installed.and_then(|_| self.loaded_run(&id)) {
                    Ok((_, run)) => run,
                    Err(error) => {
                        self.leave_interrupted(&mut record, format!("it cannot resume by itself: {error}"));
                        return;
                    }
                };
                run.record.state = RunState::Running;
                run.record.finished_at = None;
                run.record.error = None;
                let (started, limit) = (run.record.started_at, run.workflow.timeout);
                let record = run.record.clone();
                self.save_run(&record);
                if let (Some(started), Some(limit)) = (started, limit) {
                    let at = crate::clock::later(started, limit);
                    self.add_timer(at, Timer::RunTimeout { run: id.clone(), after: limit });
                }
                let message = format!("run {id} of {workflow} resumed by itself after the engine stopped{what}");
                self.alert("info", Some(&workflow), Some(&id), None, message);
                self.advance(&id);
            }
            OnInterrupt::Wait => {
                self.leave_interrupted(&mut record, format!("`conveyor resume {id}` carries it on{what}"));
            }
            OnInterrupt::Fail => {
                record.state = RunState::Failed;
                record.finished_at = Some(now);
                record.error = Some("the engine stopped while this run was active (on_interrupt = \"fail\")".into());
                self.save_run(&record);
                let message = format!("run {id} of {workflow} failed: the engine stopped while it was active{what}");
                self.alert("error", Some(&workflow), Some(&id), None, message);
            }
        }
    }

    fn leave_interrupted(&mut self, record: &mut RunRecord, what_next: String) {
        self.runs.remove(&record.id);
        record.state = RunState::Interrupted;
        record.finished_at.get_or_insert(self.now());
        record.error = Some("the engine stopped while this run was active".into());
        self.save_run(record);
        let message = format!("run {} of {} was interrupted; {what_next}", record.id, record.workflow);
        self.alert("warning", Some(&record.workflow), Some(&record.id), None, message);
    }
}

/// A line of the engine's own in an attempt's log (which may not exist, or be gone).
fn append_line(log: &std::path::Path, text: &str) {
    let opened = log.parent().map_or(Ok(()), crate::store::create_private_dir).and_then(|()| {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(log)
    });
    if let Ok(mut file) = opened {
        let _ = writeln!(file, "[conveyor] {text}");
    }
}
