//! Operators' commands on runs and workflows: pause, resume, cancel, retry, skip, reroute (answers at a
//! governance gate are in `gates`). A run that is not in memory is loaded from the store first.

use std::sync::Arc;

use super::Actor;
use crate::definition::{Workflow, parse_workflow};
use crate::engine::Event;
use crate::engine::command::{CommandResult, Origin, Reply};
use crate::engine::run::Run;
use crate::state::{RunState, TaskState};
use crate::store::{RunRecord, TaskRecord};

impl Actor {
    pub(super) fn pause_workflow(&mut self, workflow: &str, paused: bool) -> CommandResult {
        if !self.workflows.contains_key(workflow) {
            return Err(format!("no workflow `{workflow}`"));
        }
        self.store.set_paused(workflow, paused, self.now()).map_err(|e| e.to_string())?;
        self.publish(Event::WorkflowPaused { workflow: workflow.to_string(), paused });
        if !paused {
            self.rescan(workflow);
        }
        let word = if paused { "paused" } else { "resumed" };
        Ok(Reply::new(format!("workflow {workflow} {word}")))
    }

    pub(super) fn pause_run(&mut self, id: &str) -> CommandResult {
        let (id, run) = self.loaded_run(id)?;
        if run.record.state != RunState::Running || run.stopping.is_some() {
            return Err(format!("run {id} is {}, not running", run.record.state));
        }
        run.record.state = RunState::Paused;
        let record = run.record.clone();
        self.save_run(&record);
        Ok(Reply::for_run(format!("run {id} paused: no new task starts; running tasks finish"), &id))
    }

    pub(super) fn resume_run(&mut self, id: &str) -> CommandResult {
        let (id, run) = self.loaded_run(id)?;
        match run.record.state {
            RunState::Paused => {
                run.record.state = RunState::Running;
                let record = run.record.clone();
                self.save_run(&record);
            }
            RunState::Interrupted => {
                let mut reset = Vec::new();
                for slot in run.slots_mut().iter_mut() {
                    if matches!(slot.state(), TaskState::Failed | TaskState::Cancelled) {
                        slot.reset();
                        reset.push(slot.record.clone());
                    }
                }
                for record in reset {
                    self.save_task(&record);
                }
                self.revive(&id);
            }
            state => {
                return Err(format!(
                    "run {id} is {state}: only a paused or interrupted run resumes (retry or skip a failed task)"
                ));
            }
        }
        self.advance(&id);
        Ok(Reply::for_run(format!("run {id} resumed"), &id))
    }

    pub(super) fn cancel_run(&mut self, id: &str, origin: &Origin) -> CommandResult {
        let id = self.load_run(id)?;
        let state = self.runs[&id].record.state;
        if state.is_finished() {
            return Err(format!("run {id} is already {state}"));
        }
        self.stop_run(&id, RunState::Cancelled, format!("cancelled by {}", origin.who));
        Ok(Reply::for_run(format!("cancelling run {id}"), &id))
    }

    pub(super) fn retry_task(&mut self, id: &str, task: &str) -> CommandResult {
        let (id, run) = self.loaded_run(id)?;
        let index = task_index(run, &id, task)?;
        let state = run.slots()[index].state();
        if !matches!(state, TaskState::Failed | TaskState::Cancelled) || run.stopping.is_some() {
            let run_state = run.record.state;
            return Err(format!("task {task} is {state}, not failed or cancelled (run {id} is {run_state})"));
        }
        let was_cancelled = run.record.state == RunState::Cancelled;
        let mut changed = Vec::new();
        for (i, slot) in run.slots_mut().iter_mut().enumerate() {
            if i == index || (was_cancelled && slot.state() == TaskState::Cancelled) {
                slot.reset();
                changed.push(slot.record.clone());
            }
        }
        for record in changed {
            self.save_task(&record);
        }
        self.revive(&id);
        self.advance(&id);
        Ok(Reply::for_run(format!("retrying task {task} of run {id}"), &id))
    }

    pub(super) fn skip_task(&mut self, id: &str, task: &str) -> CommandResult {
        let now = self.now();
        let (id, run) = self.loaded_run(id)?;
        let index = task_index(run, &id, task)?;
        let state = run.slots()[index].state();
        if !matches!(state, TaskState::Failed | TaskState::Cancelled | TaskState::Pending | TaskState::RetryWait)
            || run.stopping.is_some()
        {
            return Err(format!(
                "task {task} is {state}: only a failed, cancelled, pending or retrying task can be skipped"
            ));
        }
        let input = run.slots()[index].record.input.clone().unwrap_or_else(|| run.input_for(index));
        let slot = run.slot_mut(index);
        slot.record.state = TaskState::Skipped;
        slot.record.input = Some(input.clone());
        slot.record.output = Some(input);
        slot.record.finished_at = Some(now);
        slot.record.error = Some("skipped by an operator".into());
        slot.record.retry_at = None;
        let record = slot.record.clone();
        self.save_task(&record);
        self.revive(&id);
        self.advance(&id);
        Ok(Reply::for_run(format!("skipped task {task} of run {id}; its input passes on"), &id))
    }

    pub(super) fn reroute_task(&mut self, id: &str, task: &str, to: &str) -> CommandResult {
        let known = self.config.executors.contains_key(to)
            || self.registry.services.contains_key(to)
            || self.registry.agents.contains_key(to);
        if !known {
            let names: Vec<&str> =
                self.registry.services.keys().chain(self.registry.agents.keys()).map(String::as_str).collect();
            return Err(format!("no service or agent `{to}` (known: {})", names.join(", ")));
        }
        let (id, run) = self.loaded_run(id)?;
        let index = task_index(run, &id, task)?;
        let state = run.slots()[index].state();
        let slot = run.slot_mut(index);
        let message = match state {
            TaskState::Succeeded | TaskState::Skipped => {
                return Err(format!("task {task} is already {state}"));
            }
            TaskState::Running => format!("task {task} will use {to} from its next attempt"),
            TaskState::Pending => format!("task {task} will run on {to}"),
            _ => {
                slot.reset();
                format!("task {task} runs again on {to}")
            }
        };
        slot.record.route = Some(to.to_string());
        let record = slot.record.clone();
        self.save_task(&record);
        self.revive(&id);
        self.advance(&id);
        Ok(Reply::for_run(message, &id))
    }

    /// A run by id or unique id prefix, loaded from the store if it is not active in memory.
    /// The run with this id or unique prefix, loaded from the store if it is not in memory, with its full id.
    pub(super) fn loaded_run(&mut self, id: &str) -> Result<(String, &mut Run), String> {
        let id = self.load_run(id)?;
        let run = self.runs.get_mut(&id).ok_or_else(|| format!("no run `{id}`"))?;
        Ok((id, run))
    }

    pub(super) fn load_run(&mut self, id: &str) -> Result<String, String> {
        if self.runs.contains_key(id) {
            return Ok(id.to_string());
        }
        let id = match self.store.find_run(id) {
            Ok(Some(found)) => found,
            Ok(None) => return Err(format!("no run `{id}`")),
            Err(error) => return Err(error.to_string()),
        };
        if self.runs.contains_key(&id) {
            return Ok(id);
        }
        let record = self.store.run(&id).map_err(|e| e.to_string())?.ok_or_else(|| format!("no run `{id}`"))?;
        let workflow = self.definition_of(&record)?;
        let tasks = self.store.tasks(&id).map_err(|e| e.to_string())?;
        self.install_run(record, workflow, tasks)
    }

    /// The workflow a run started with, as stored with it, against today's registry.
    pub(super) fn definition_of(&self, record: &RunRecord) -> Result<Workflow, String> {
        parse_workflow(&record.definition_file, &record.definition, &self.registry).map_err(|problems| {
            let first = problems.first().map(ToString::to_string).unwrap_or_default();
            format!("run {}'s definition no longer loads against the current registry: {first}", record.id)
        })
    }

    /// Makes a stored run active in memory, with a timer for each retry it waits on.
    pub(super) fn install_run(
        &mut self,
        record: RunRecord,
        workflow: Workflow,
        tasks: Vec<TaskRecord>,
    ) -> Result<String, String> {
        let id = record.id.clone();
        if tasks.len() != workflow.tasks.len() {
            return Err(format!("run {id} does not match its stored definition"));
        }
        let run = Run::new(record, Arc::new(workflow), tasks);
        let retries: Vec<_> = run
            .slots()
            .iter()
            .filter(|slot| slot.state() == TaskState::RetryWait)
            .filter_map(|slot| slot.record.retry_at)
            .collect();
        self.prepare_work_dir(&id);
        self.runs.insert(id.clone(), run);
        // A retry wait survives a restart: it ends when it would have.
        for at in retries {
            self.add_timer(at, super::Timer::Wake { run: id.clone() });
        }
        // So does a gate's approval timeout.
        self.gate_timers(&id);
        Ok(id)
    }

    /// Where the run's tasks write `CONVEYOR_OUTPUT`; made once per run rather than per attempt.
    pub(super) fn prepare_work_dir(&self, id: &str) {
        let dir = self.store.work_dir(id);
        if let Err(error) = crate::store::create_private_dir(&dir) {
            tracing::error!("cannot create {}: {error}", dir.display());
        }
    }

    /// A finished run brought back to life by a retry or skip; in memory until it ends again.
    pub(super) fn revive(&mut self, id: &str) {
        let Some(run) = self.runs.get_mut(id) else { return };
        if run.record.state.is_finished() {
            run.record.state = RunState::Running;
            run.record.finished_at = None;
            run.record.error = None;
            let record = run.record.clone();
            self.save_run(&record);
        }
    }
}

/// The index of `task` in `run`, or an error that lists the run's tasks.
pub(super) fn task_index(run: &Run, run_id: &str, task: &str) -> Result<usize, String> {
    run.index_of(task).ok_or_else(|| {
        let names: Vec<&str> = run.workflow.tasks.iter().map(|t| t.name.as_str()).collect();
        format!("run {run_id} has no task `{task}` (tasks: {})", names.join(", "))
    })
}
