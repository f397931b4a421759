//! A run's life in the actor: it is created, moves on as the run's rules decide (see `transitions`), is
//! stopped, and finishes (its handler, its queued fires, pruning).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use super::{Actor, Timer};
use crate::definition::resolve_params;
use crate::engine::Event;
use crate::engine::command::{CommandResult, Reply};
use crate::engine::run::Run;
use crate::engine::transitions::{self, Settlement};
use crate::state::{RunState, TaskState};
use crate::store::{RunRecord, TaskRecord, timestamp};

impl Actor {
    pub fn trigger(
        &mut self,
        workflow_id: &str,
        input: Option<Value>,
        params: &BTreeMap<String, Value>,
        kind: &str,
    ) -> CommandResult {
        let workflow = self.workflows.get(workflow_id).cloned().ok_or_else(|| {
            let mut known: Vec<&str> = self.workflows.keys().map(String::as_str).collect();
            known.sort();
            format!("no workflow `{workflow_id}` (known: {})", known.join(", "))
        })?;
        let params = resolve_params(&workflow, params)?;
        let now = self.now();
        let mut start = Map::new();
        start.insert("trigger".into(), json!(kind));
        start.insert("fired_at".into(), json!(timestamp(now)));
        start.insert("params".into(), Value::Object(params.clone()));
        match input {
            Some(Value::Object(given)) => start.extend(given),
            Some(other) => {
                start.insert("input".into(), other);
            }
            None => {}
        }
        let id = self.new_run_id(now);
        let record = RunRecord {
            id: id.clone(),
            workflow: workflow.id.clone(),
            state: RunState::Running,
            trigger: kind.to_string(),
            input: Value::Object(start),
            params: Value::Object(params),
            definition_file: workflow.file.clone(),
            definition: workflow.source.clone(),
            created_at: now,
            started_at: Some(now),
            finished_at: None,
            error: None,
        };
        let tasks: Vec<TaskRecord> = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(position, task)| TaskRecord::pending(&id, &task.name, position))
            .collect();
        match self.store.insert_run(&record, &tasks) {
            // Held with the rest of the step (the connection was cut, the server is down): written once the
            // store takes it, and announced only then. Refusing the run here would leave that write to land
            // for a run no engine follows.
            Ok(()) | Err(crate::store::StoreError::Unavailable(_)) => {}
            Err(error) => return Err(format!("the run could not be stored: {error}")),
        }
        self.publish(Event::Run(record.clone()));
        for task in &tasks {
            self.publish(Event::Task(task.clone()));
        }
        if let Some(limit) = workflow.timeout {
            self.add_timer(crate::clock::later(now, limit), Timer::RunTimeout { run: id.clone(), after: limit });
        }
        self.prepare_work_dir(&id);
        self.runs.insert(id.clone(), Run::new(record, workflow.clone(), tasks));
        self.advance(&id);
        Ok(Reply::for_run(format!("started run {id} of {}", workflow.id), &id))
    }

    pub(super) fn new_run_id(&self, now: DateTime<Utc>) -> String {
        loop {
            let id = format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), rand::random::<u16>());
            if !self.runs.contains_key(&id) && matches!(self.store.run(&id), Ok(None)) {
                return id;
            }
        }
    }

    /// Starts whatever can start, then ends the run if nothing is left to do.
    pub(super) fn advance(&mut self, id: &str) {
        loop {
            let now = self.now();
            let Some(run) = self.runs.get(id) else { return };
            // A closing engine starts nothing: the next one carries the run on.
            if self.closing.is_some() {
                break;
            }
            let Some(work) = transitions::work(run, now) else { break };
            for index in work.retries {
                self.start_attempt(id, index);
            }
            for index in work.ready {
                self.start_task(id, index);
            }
        }
        self.settle(id);
    }

    pub(super) fn settle(&mut self, id: &str) {
        let Some(run) = self.runs.get_mut(id) else { return };
        match transitions::settlement(run) {
            Settlement::Going => {}
            Settlement::Finished { state, error } => self.finish_run(id, state, error),
            Settlement::AwaitsApproval => {
                run.record.state = RunState::WaitingApproval;
                let record = run.record.clone();
                self.save_run(&record);
            }
        }
    }

    pub(super) fn finish_run(&mut self, id: &str, state: RunState, error: Option<String>) {
        let now = self.now();
        let Some(mut run) = self.runs.remove(id) else { return };
        for index in 0..run.slots().len() {
            let slot = run.slot_mut(index);
            if matches!(slot.state(), TaskState::Pending | TaskState::RetryWait) && state == RunState::Cancelled {
                slot.record.state = TaskState::Cancelled;
                slot.record.finished_at = Some(now);
                self.save_task(&slot.record);
            }
        }
        run.record.state = state;
        run.record.finished_at = Some(now);
        run.record.error = error.clone();
        self.save_run(&run.record);
        self.timers
            .retain(|_, timer| !matches!(timer, Timer::Wake { run } | Timer::RunTimeout { run, .. } | Timer::GateTimeout { run, .. } if run == id));
        if state == RunState::Failed {
            let message = format!("run {id} of {} failed: {}", run.record.workflow, error.clone().unwrap_or_default());
            self.alert("error", Some(&run.record.workflow), Some(id), None, message);
        }
        let handler = match state {
            RunState::Succeeded => run.workflow.on_success.clone(),
            RunState::Failed => run.workflow.on_failure.clone(),
            RunState::Cancelled => run.workflow.on_cancel.clone(),
            _ => None,
        };
        match handler {
            Some(handler) => self.start_handler(&run, &handler),
            None => {
                let _ = std::fs::remove_dir_all(self.store.work_dir(id));
            }
        }
        self.dequeue(&run.record.workflow);
        match self.store.prune(&run.record.workflow, run.workflow.keep_runs) {
            Ok(pruned) if !pruned.is_empty() => {
                tracing::info!("pruned {} old run(s) of {}", pruned.len(), run.record.workflow)
            }
            Ok(_) => {}
            Err(error) => tracing::error!("pruning old runs failed: {error}"),
        }
    }

    /// Cancels a run's running attempts and pending tasks; the run takes `target` once they have stopped.
    pub(super) fn stop_run(&mut self, id: &str, target: RunState, reason: String) {
        let now = self.now();
        let Some(run) = self.runs.get_mut(id) else { return };
        if run.stopping.is_some() {
            return;
        }
        run.stopping = Some(target);
        run.record.error = Some(reason);
        let mut changed = Vec::new();
        for slot in run.slots_mut().iter_mut() {
            match slot.state() {
                TaskState::Running => {
                    if let Some(cancel) = &slot.cancel {
                        cancel.cancel();
                    }
                }
                TaskState::RetryWait | TaskState::Pending | TaskState::WaitingApproval => {
                    slot.record.state = TaskState::Cancelled;
                    slot.record.finished_at = Some(now);
                    slot.record.retry_at = None;
                    changed.push(slot.record.clone());
                }
                _ => {}
            }
        }
        for record in changed {
            self.save_task(&record);
        }
        self.settle(id);
    }
}
