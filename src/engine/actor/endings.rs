//! Taking in how an attempt ended: its record is closed, the run's rules decide what follows (see
//! `transitions`), and this applies it: the store, the alerts, a retry's timer, the next route.

use super::{Actor, Done, HANDLER, Timer};
use crate::engine::Event;
use crate::engine::transitions::{self, TaskStep, Then};
use crate::state::{AttemptState, TaskState};
use crate::store::AttemptRecord;
use crate::tasks::Ending;

impl Actor {
    pub(super) fn attempt_done(&mut self, done: Done) {
        if done.index == HANDLER {
            return self.handler_done(done);
        }
        let now = self.now();
        let closing = self.closing.is_some();
        let Some(run) = self.runs.get_mut(&done.run_id) else { return };
        let slot = run.slot_mut(done.index);
        let finished = slot.attempt.as_mut().filter(|attempt| attempt.attempt == done.attempt).map(|attempt| {
            close_attempt(attempt, &done, closing, now);
            attempt.clone()
        });
        // An ending of an attempt the task has moved past (an operator retried or skipped it meanwhile)
        // is kept for the record and changes nothing else.
        if slot.record.attempts != done.attempt || slot.state() != TaskState::Running {
            if let Some(attempt) = finished {
                if let Err(error) = self.store.insert_attempt(&attempt) {
                    tracing::error!("storing an attempt failed: {error}");
                }
                self.publish(Event::Attempt(attempt));
            }
            return;
        }
        slot.cancel = None;
        let mut step = transitions::attempt_ended(run, done.index, done.ending, closing, now, rand::random::<f64>());
        let gate_expires = match &mut step {
            TaskStep::AwaitingApproval { output, .. } => super::gates::stamp(output, now),
            _ => None,
        };
        let task = run.task(done.index);
        let (task_name, retries) = (task.name.clone(), task.retries);
        let record = &mut run.slot_mut(done.index).record;
        let then = step.record(record, retries, now);
        let record = record.clone();
        let workflow = run.record.workflow.clone();
        self.save_attempt_and_task(finished, &record);
        let run_id = &done.run_id;
        match then {
            Then::Nothing => {}
            Then::WakeAt(at) => self.add_timer(at, Timer::Wake { run: run_id.clone() }),
            Then::AlertFailed { error } => {
                let attempts = record.attempts;
                let message = format!("task {task_name} of run {run_id} failed after {attempts} attempt(s): {error}");
                self.alert("error", Some(&workflow), Some(run_id), Some(&task_name), message);
            }
            Then::AwaitApproval { waiting } => {
                if let Some(at) = gate_expires {
                    self.add_timer(at, Timer::GateTimeout { run: run_id.clone(), task: task_name.clone() });
                }
                let message = format!(
                    "{waiting} item(s) of run {run_id} wait for approval at task {task_name}: `conveyor gates` lists them, `conveyor approve|reject {run_id} {task_name} [--item ID] [--comment TEXT]` answers (Enter on the task in the console)"
                );
                self.alert("warning", Some(&workflow), Some(run_id), Some(&task_name), message);
            }
            Then::StartNextRoute => self.start_attempt(run_id, done.index),
        }
        self.advance(run_id);
    }

    pub(super) fn handler_done(&mut self, done: Done) {
        let Some((mut record, _)) = self.handlers.remove(&done.run_id) else { return };
        record.finished_at = Some(self.now());
        record.log_bytes = done.log_bytes;
        record.log_text = done.log_text;
        let failure = match done.ending {
            Ending::Succeeded { .. } | Ending::AwaitingApproval { .. } => {
                record.state = AttemptState::Succeeded;
                record.exit_code = Some(0);
                None
            }
            Ending::Failed { error, exit_code } => {
                record.state = AttemptState::Failed;
                record.exit_code = exit_code;
                record.error = Some(error.clone());
                Some(error)
            }
            Ending::Cancelled => {
                record.state = AttemptState::Cancelled;
                None
            }
        };
        if let Err(error) = self.store.insert_attempt(&record) {
            tracing::error!("storing a handler's attempt failed: {error}");
        }
        self.publish(Event::Attempt(record.clone()));
        if let Some(error) = failure {
            let workflow = self.store.run(&done.run_id).ok().flatten().map(|run| run.workflow);
            let message = format!("the {} handler of run {} failed: {error}", record.task, done.run_id);
            self.alert("warning", workflow.as_deref(), Some(&done.run_id), Some(&record.task), message);
        }
        let _ = std::fs::remove_dir_all(self.store.work_dir(&done.run_id));
    }
}

/// The attempt's own record as it ends; `closing`: stopped by the engine, to be run again by the next one.
fn close_attempt(attempt: &mut AttemptRecord, done: &Done, closing: bool, now: chrono::DateTime<chrono::Utc>) {
    attempt.finished_at = Some(now);
    attempt.log_bytes = done.log_bytes;
    attempt.log_text = done.log_text.clone();
    match &done.ending {
        Ending::Succeeded { .. } => {
            attempt.state = AttemptState::Succeeded;
            attempt.exit_code = Some(0);
        }
        Ending::Failed { error, exit_code } => {
            attempt.state = AttemptState::Failed;
            attempt.error = Some(error.clone());
            attempt.exit_code = *exit_code;
        }
        Ending::Cancelled if closing => {
            attempt.state = AttemptState::Interrupted;
            attempt.error = Some("interrupted: the engine stopped while it ran".into());
        }
        Ending::Cancelled => attempt.state = AttemptState::Cancelled,
        Ending::AwaitingApproval { .. } => attempt.state = AttemptState::Succeeded,
    }
}
