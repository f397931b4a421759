//! One run in memory: which tasks may start, what each one gets as input, and when the run is over.
//! No I/O here; the actor applies what these functions decide.

use std::sync::Arc;

use serde_json::{Map, Value};

use crate::definition::{Task, TaskKind, Workflow};
use crate::state::{RunState, TaskState};
use crate::store::{AttemptRecord, RunRecord, TaskRecord};
use crate::tasks::CancelHandle;

/// The route name of inline `run`/`command` tasks.
pub use crate::tasks::INLINE_ROUTE;

pub struct Run {
    pub record: RunRecord,
    pub workflow: Arc<Workflow>,
    /// Private, so that every change goes through `slot_mut` and friends, which keep `finished_prefix` true.
    slots: Vec<Slot>,
    /// Every slot before this one has finished (succeeded, skipped, failed or cancelled): the questions each
    /// step asks (what is ready, busy, waiting) start here, so a step of a long chain does not look at every
    /// task before it again. Grows lazily as slots finish; any mutable access to a slot before it moves it
    /// back.
    finished_prefix: std::cell::Cell<usize>,
    /// Set while running attempts are being stopped: the state the run takes once they have.
    pub stopping: Option<RunState>,
    /// Each task's parents by index, worked out once: every step asks which tasks are ready, and looking
    /// names up (or allocating) per task per step made a long run's steps grow with its length.
    parents: Vec<Vec<usize>>,
}

pub struct Slot {
    /// The task as stored, with where it stands on its routes and retries.
    pub record: TaskRecord,
    pub cancel: Option<CancelHandle>,
    /// Its `when` is being evaluated (off the engine's loop): not ready, yet not done.
    pub evaluating: bool,
    /// The attempt running now (or the last one), as stored.
    pub attempt: Option<AttemptRecord>,
}

impl Slot {
    pub fn new(record: TaskRecord) -> Slot {
        Slot { record, cancel: None, evaluating: false, attempt: None }
    }

    pub fn state(&self) -> TaskState {
        self.record.state
    }

    /// Back to the start of its routes, for a retry.
    pub fn reset(&mut self) {
        self.record.state = TaskState::Pending;
        self.record.error = None;
        self.record.finished_at = None;
        self.record.route_index = 0;
        self.record.route_attempts = 0;
        self.record.retry_at = None;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    Ready,
    Waiting,
    /// A parent failed (without `continue_on_failure`) or was cancelled: this task cannot run.
    Blocked,
}

impl Run {
    pub fn new(record: RunRecord, workflow: Arc<Workflow>, tasks: Vec<TaskRecord>) -> Run {
        let parents = parents_of(&workflow);
        let slots = tasks.into_iter().map(Slot::new).collect();
        Run { record, workflow, slots, finished_prefix: Default::default(), stopping: None, parents }
    }

    pub fn slots(&self) -> &[Slot] {
        &self.slots
    }

    pub fn slot_mut(&mut self, index: usize) -> &mut Slot {
        self.finished_prefix.set(self.finished_prefix.get().min(index));
        &mut self.slots[index]
    }

    pub fn slot_get_mut(&mut self, index: usize) -> Option<&mut Slot> {
        self.finished_prefix.set(self.finished_prefix.get().min(index));
        self.slots.get_mut(index)
    }

    pub fn slots_mut(&mut self) -> &mut [Slot] {
        self.finished_prefix.set(0);
        &mut self.slots
    }

    /// The slots from the first that has not finished: the only ones that can be ready, busy or waiting.
    fn open_slots(&self) -> impl Iterator<Item = (usize, &Slot)> {
        let mut first = self.finished_prefix.get();
        while self.slots.get(first).is_some_and(|slot| slot.state().is_finished()) {
            first += 1;
        }
        self.finished_prefix.set(first);
        self.slots.iter().enumerate().skip(first)
    }

    pub fn task(&self, index: usize) -> &Task {
        &self.workflow.tasks[index]
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.workflow.tasks.iter().position(|task| task.name == name)
    }

    pub fn parents(&self, index: usize) -> &[usize] {
        &self.parents[index]
    }

    pub fn readiness(&self, index: usize) -> Readiness {
        let mut readiness = Readiness::Ready;
        for &parent in self.parents(index) {
            match self.slots[parent].state() {
                TaskState::Succeeded | TaskState::Skipped => {}
                TaskState::Failed if self.task(parent).continue_on_failure => {}
                TaskState::Failed | TaskState::Cancelled => return Readiness::Blocked,
                _ => readiness = Readiness::Waiting,
            }
        }
        readiness
    }

    /// The run's input for a first task; a parent's output for one parent; `{parent: output}` for several.
    pub fn input_for(&self, index: usize) -> Value {
        match self.parents(index) {
            [] => self.record.input.clone(),
            [parent] => self.output_of(*parent),
            several => {
                let mut joined = Map::new();
                for parent in several {
                    joined.insert(self.task(*parent).name.clone(), self.output_of(*parent));
                }
                Value::Object(joined)
            }
        }
    }

    fn output_of(&self, index: usize) -> Value {
        self.slots[index].record.output.clone().unwrap_or(Value::Null)
    }

    /// The task's own route: the service, agent or layer it names, or `inline`.
    pub fn primary_route(task: &Task) -> String {
        match &task.kind {
            TaskKind::Service(name) | TaskKind::Agent(name) | TaskKind::Layer(name) => name.clone(),
            TaskKind::Run(_) | TaskKind::Command(_) => INLINE_ROUTE.to_string(),
        }
    }

    /// The route the next attempt of a task takes: an operator's choice, else its own, else a fallback.
    pub fn route(&self, index: usize) -> String {
        let slot = &self.slots[index];
        if let Some(chosen) = &slot.record.route {
            return chosen.clone();
        }
        let task = self.task(index);
        match slot.record.route_index {
            0 => Run::primary_route(task),
            n => task.fallback[n as usize - 1].clone(),
        }
    }

    pub fn has_next_route(&self, index: usize) -> bool {
        let slot = &self.slots[index].record;
        slot.route.is_none() && (slot.route_index as usize) < self.task(index).fallback.len()
    }

    /// Tasks that are running or waiting to retry.
    pub fn is_busy(&self) -> bool {
        self.open_slots()
            .any(|(_, slot)| slot.evaluating || matches!(slot.state(), TaskState::Running | TaskState::RetryWait))
    }

    pub fn running(&self) -> impl Iterator<Item = &Slot> {
        self.open_slots().map(|(_, slot)| slot).filter(|slot| slot.state() == TaskState::Running)
    }

    /// Tasks waiting to retry whose time has come.
    pub fn due_retries(&self, now: chrono::DateTime<chrono::Utc>) -> Vec<usize> {
        self.open_slots()
            .filter(|(_, slot)| {
                slot.state() == TaskState::RetryWait && slot.record.retry_at.is_some_and(|at| at <= now)
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// Pending tasks whose parents are done, in list order.
    pub fn ready(&self) -> Vec<usize> {
        self.open_slots()
            .filter(|&(index, slot)| {
                slot.state() == TaskState::Pending && !slot.evaluating && self.readiness(index) == Readiness::Ready
            })
            .map(|(index, _)| index)
            .collect()
    }

    /// A task holds items for an operator.
    pub fn is_waiting(&self) -> bool {
        self.open_slots().any(|(_, slot)| slot.state() == TaskState::WaitingApproval)
    }

    /// Once nothing is busy, ready or waiting for an operator: how the run ended, with the reason for a failure.
    pub fn outcome(&self) -> Option<(RunState, Option<String>)> {
        if self.is_busy() || self.is_waiting() || !self.ready().is_empty() {
            return None;
        }
        let failed = self
            .slots
            .iter()
            .enumerate()
            .find(|(index, slot)| slot.state() == TaskState::Failed && !self.task(*index).continue_on_failure);
        if let Some((index, slot)) = failed {
            let reason = slot.record.error.clone().unwrap_or_else(|| "failed".to_string());
            return Some((RunState::Failed, Some(format!("task {} failed: {reason}", self.task(index).name))));
        }
        let all_done = self
            .slots
            .iter()
            .all(|slot| matches!(slot.state(), TaskState::Succeeded | TaskState::Skipped | TaskState::Failed));
        if all_done {
            Some((RunState::Succeeded, None))
        } else {
            let stuck: Vec<&str> = self
                .slots
                .iter()
                .enumerate()
                .filter(|(_, slot)| !slot.state().is_finished())
                .map(|(index, _)| self.task(index).name.as_str())
                .collect();
            Some((RunState::Failed, Some(format!("tasks that cannot run: {}", stuck.join(", ")))))
        }
    }
}

/// Without `depends_on` anywhere, each task follows the one before it.
fn parents_of(workflow: &Workflow) -> Vec<Vec<usize>> {
    if !workflow.is_dag() {
        return (0..workflow.tasks.len()).map(|index| if index == 0 { Vec::new() } else { vec![index - 1] }).collect();
    }
    let index: std::collections::HashMap<&str, usize> =
        workflow.tasks.iter().enumerate().map(|(position, task)| (task.name.as_str(), position)).collect();
    workflow
        .tasks
        .iter()
        .map(|task| task.depends_on.iter().filter_map(|name| index.get(name.as_str()).copied()).collect())
        .collect()
}

/// The wait before retry number `retry` (1 for the first): `delay × backoff^(retry-1)`, capped at an hour,
/// with up to 10 % random jitter so that many failing tasks do not retry in lockstep.
pub fn retry_delay(task: &Task, retry: u32, jitter: f64) -> std::time::Duration {
    const CAP: f64 = 3600.0;
    let base = task.retry_delay.as_secs_f64() * task.backoff.powi(retry.saturating_sub(1).min(1000) as i32);
    // No delay times a backoff grown past any number is still no delay.
    let base = if base.is_nan() { 0.0 } else { base };
    let with_jitter = base.min(CAP) * (1.0 + 0.1 * jitter.clamp(0.0, 1.0));
    std::time::Duration::from_secs_f64(with_jitter.min(CAP))
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::definition::{Registry, parse_workflow};
    use chrono::Utc;
    use serde_json::json;
    use std::path::{Path, PathBuf};
    use std::time::Duration;

    pub(in crate::engine) fn run_of(source: &str) -> Run {
        let workflow = Arc::new(parse_workflow(Path::new("w.toml"), source, &Registry::default()).unwrap());
        let record = RunRecord {
            id: "r".into(),
            workflow: workflow.id.clone(),
            state: RunState::Running,
            trigger: "manual".into(),
            input: json!({"start": true}),
            params: json!({}),
            definition_file: PathBuf::new(),
            definition: "".into(),
            created_at: Utc::now(),
            started_at: None,
            finished_at: None,
            error: None,
        };
        let tasks = workflow
            .tasks
            .iter()
            .enumerate()
            .map(|(position, task)| TaskRecord::pending("r", &task.name, position))
            .collect();
        Run::new(record, workflow, tasks)
    }

    fn finish(run: &mut Run, index: usize, state: TaskState, output: Value) {
        run.slot_mut(index).record.state = state;
        run.slot_mut(index).record.output = Some(output);
    }

    const CHAIN: &str = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\n[[tasks]]\nname = \"B\"\nrun = \"x\"\ncontinue_on_failure = true\n[[tasks]]\nname = \"C\"\nrun = \"x\"\n";
    const DIAMOND: &str = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\n[[tasks]]\nname = \"B\"\nrun = \"x\"\ndepends_on = [\"A\"]\n[[tasks]]\nname = \"C\"\nrun = \"x\"\ndepends_on = [\"A\"]\n[[tasks]]\nname = \"D\"\nrun = \"x\"\ndepends_on = [\"B\", \"C\"]\n";

    #[test]
    fn a_sequence_passes_each_output_to_the_next_task() {
        let mut run = run_of(CHAIN);
        assert_eq!(run.ready(), vec![0]);
        assert_eq!(run.input_for(0), json!({"start": true}));
        finish(&mut run, 0, TaskState::Succeeded, json!({"a": 1}));
        assert_eq!(run.ready(), vec![1]);
        assert_eq!(run.input_for(1), json!({"a": 1}));
        finish(&mut run, 1, TaskState::Failed, Value::Null);
        assert_eq!(run.ready(), vec![2], "B continues on failure");
        finish(&mut run, 2, TaskState::Succeeded, json!(3));
        assert_eq!(run.outcome(), Some((RunState::Succeeded, None)));
    }

    #[test]
    fn a_task_reset_behind_the_finished_ones_is_seen_again() {
        let mut run = run_of(CHAIN);
        finish(&mut run, 0, TaskState::Succeeded, json!(1));
        finish(&mut run, 1, TaskState::Succeeded, json!(2));
        assert_eq!(run.ready(), vec![2]);
        assert!(!run.is_busy());
        // An operator's retry of A, after the steps above moved past it.
        run.slot_mut(0).reset();
        assert_eq!(run.ready(), vec![0, 2], "A again, and C, whose parent B is done");
        run.slots_mut()[1].record.state = TaskState::Running;
        assert!(run.is_busy(), "a change through slots_mut is seen too");
        assert_eq!(run.running().count(), 1);
    }

    #[test]
    fn a_graph_runs_branches_together_and_joins_their_outputs() {
        let mut run = run_of(DIAMOND);
        finish(&mut run, 0, TaskState::Succeeded, json!("a"));
        assert_eq!(run.ready(), vec![1, 2]);
        finish(&mut run, 1, TaskState::Succeeded, json!("b"));
        assert_eq!(run.readiness(3), Readiness::Waiting);
        finish(&mut run, 2, TaskState::Skipped, json!("c"));
        assert_eq!(run.ready(), vec![3]);
        assert_eq!(run.input_for(3), json!({"B": "b", "C": "c"}));
    }

    #[test]
    fn a_failure_blocks_what_depends_on_it_and_fails_the_run() {
        let mut run = run_of(DIAMOND);
        finish(&mut run, 0, TaskState::Succeeded, json!("a"));
        finish(&mut run, 1, TaskState::Failed, Value::Null);
        run.slot_mut(1).record.error = Some("exit status 3".into());
        assert_eq!(run.readiness(3), Readiness::Blocked);
        assert_eq!(run.outcome(), None, "C can still run");
        finish(&mut run, 2, TaskState::Succeeded, json!("c"));
        assert_eq!(run.outcome(), Some((RunState::Failed, Some("task B failed: exit status 3".into()))));
    }

    #[test]
    fn retry_waits_grow_by_the_backoff_and_stay_capped() {
        let run = run_of("id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\nretry_delay = \"10s\"\nbackoff = 3.0\n");
        let task = run.task(0);
        assert_eq!(retry_delay(task, 1, 0.0), Duration::from_secs(10));
        assert_eq!(retry_delay(task, 3, 0.0), Duration::from_secs(90));
        assert_eq!(retry_delay(task, 2, 1.0), Duration::from_secs(33));
        assert_eq!(retry_delay(task, 40, 1.0), Duration::from_secs(3600));
        let instant =
            run_of("id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\nretry_delay = \"0s\"\nbackoff = 100.0\n");
        assert_eq!(retry_delay(instant.task(0), 900, 1.0), Duration::ZERO, "0 × an overflowing backoff is 0");
    }

    #[test]
    fn routes_go_from_the_task_to_its_fallbacks_unless_an_operator_chose_one() {
        let registry: Registry = {
            let source = "[services.A]\ncommand = [\"a\"]\n[services.B]\ncommand = [\"b\"]\n";
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("conveyor.toml"), source).unwrap();
            crate::definition::load_folder(dir.path()).registry
        };
        let workflow = parse_workflow(
            Path::new("w.toml"),
            "id = \"W\"\n[[tasks]]\nname = \"T\"\nservice = \"A\"\nfallback = [\"B\"]\n",
            &registry,
        )
        .unwrap();
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
        run.workflow = Arc::new(workflow);
        assert_eq!(run.route(0), "A");
        assert!(run.has_next_route(0));
        run.slot_mut(0).record.route_index = 1;
        assert_eq!(run.route(0), "B");
        assert!(!run.has_next_route(0));
        run.slot_mut(0).record.route = Some("C".into());
        assert_eq!(run.route(0), "C");
    }
}
