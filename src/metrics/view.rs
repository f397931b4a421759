//! The counters and histograms are a view over the engine's events: each event that ends something is
//! counted once, under labels from loaded definitions.

use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};

use super::families::{AttemptLabels, Families, RunLabels, TaskLabels, WorkflowLabel};
use super::labels::Known;
use crate::engine::Event;
use crate::state::AttemptState;
use crate::store::{AttemptRecord, FireRecord, RunRecord, Store};

/// How many ended runs and attempts are remembered, so that an event repeating an end is not counted twice.
const REMEMBERED: usize = 10_000;

pub struct EventView {
    families: Families,
    known: Arc<RwLock<Known>>,
    workflows_dir: PathBuf,
    /// Runs and attempts that started before this view did belong to an earlier engine's counts.
    since: DateTime<Utc>,
    /// Run id → workflow, for the runs seen since the view started.
    runs: HashMap<String, String>,
    started: Remembered<String>,
    /// Runs whose last event showed an end: a retry that carries a failed run on ends it again.
    ended: Remembered<String>,
    attempts_ended: Remembered<(String, String, u32)>,
    /// Where the workflow of a run seen first through one of its attempts is read (a run resumed after a restart).
    store: Option<Store>,
}

impl EventView {
    pub fn new(families: Families, known: Arc<RwLock<Known>>, workflows_dir: PathBuf, since: DateTime<Utc>) -> Self {
        EventView {
            families,
            known,
            workflows_dir,
            since,
            runs: HashMap::new(),
            started: Remembered::default(),
            ended: Remembered::default(),
            attempts_ended: Remembered::default(),
            store: None,
        }
    }

    pub fn with_store(mut self, store: Store) -> Self {
        self.store = Some(store);
        self
    }

    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::Run(run) => self.run(run),
            Event::Attempt(attempt) => self.attempt(attempt),
            Event::Fire(fire) => self.fire(fire),
            Event::Reloaded { changed, removed, broken } => self.reloaded(changed, removed, broken.len()),
            _ => {}
        }
    }

    fn run(&mut self, run: &RunRecord) {
        self.runs.insert(run.id.clone(), run.workflow.clone());
        let workflow = self.known().workflow(&run.workflow);
        if run.started_at.is_some_and(|at| at >= self.since) && self.started.insert(run.id.clone()) {
            self.families.runs_started.get_or_create(&WorkflowLabel { workflow: workflow.clone() }).inc();
        }
        if run.state.is_finished() {
            if self.ended.insert(run.id.clone()) {
                let labels = RunLabels { workflow, state: run.state.to_string() };
                self.families.runs_finished.get_or_create(&labels).inc();
            }
            self.runs.remove(&run.id);
        } else {
            self.ended.forget(&run.id);
        }
    }

    fn attempt(&mut self, attempt: &AttemptRecord) {
        let Some(finished_at) = attempt.finished_at else { return };
        if attempt.state == AttemptState::Running || finished_at < self.since {
            return;
        }
        if !self.attempts_ended.insert((attempt.run_id.clone(), attempt.task.clone(), attempt.attempt)) {
            return;
        }
        let workflow = self.workflow_of(&attempt.run_id);
        let (workflow, task) = {
            let known = self.known();
            let task = known.task(&workflow, &attempt.task);
            (known.workflow(&workflow), task)
        };
        let labels = AttemptLabels { workflow: workflow.clone(), task: task.clone(), state: attempt.state.to_string() };
        self.families.task_attempts.get_or_create(&labels).inc();
        // An attempt an engine stop cut short says nothing of how long the task takes (after a crash its end is
        // stamped by the next engine, and its span includes the time none ran).
        if attempt.state != AttemptState::Interrupted {
            let seconds = (finished_at - attempt.started_at).num_milliseconds().max(0) as f64 / 1000.0;
            self.families.task_duration.get_or_create(&TaskLabels { workflow, task }).observe(seconds);
        }
    }

    fn fire(&mut self, fire: &FireRecord) {
        // A queued fire is announced again when it leaves the queue: its lateness was counted when it came.
        if fire.outcome.starts_with("started from the queue") {
            return;
        }
        let seconds = (fire.fired_at - fire.scheduled_at).num_milliseconds().max(0) as f64 / 1000.0;
        let workflow = self.known().workflow(&fire.workflow);
        self.families.fire_lateness.get_or_create(&WorkflowLabel { workflow }).observe(seconds);
    }

    fn reloaded(&mut self, changed: &[String], removed: &[String], broken: usize) {
        self.families.broken_workflow_files.set(broken as i64);
        if !changed.is_empty() {
            // The event names what changed; the names of its tasks are in the files.
            let catalog = crate::definition::load_folder(&self.workflows_dir);
            self.families.initialize(&catalog.workflows);
            self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner()).add(&catalog.workflows);
        }
        let mut known = self.known.write().unwrap_or_else(|poisoned| poisoned.into_inner());
        for workflow in removed {
            known.remove(workflow);
        }
    }

    fn known(&self) -> std::sync::RwLockReadGuard<'_, Known> {
        self.known.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn workflow_of(&mut self, run_id: &str) -> String {
        if let Some(workflow) = self.runs.get(run_id) {
            return workflow.clone();
        }
        let stored = self.store.as_ref().and_then(|store| store.run(run_id).ok().flatten());
        match stored {
            Some(run) => {
                if !run.state.is_finished() {
                    self.runs.insert(run.id, run.workflow.clone());
                }
                run.workflow
            }
            None => super::labels::OTHER.to_string(),
        }
    }
}

/// A set that keeps only its newest `REMEMBERED` entries.
struct Remembered<T> {
    set: HashSet<T>,
    order: VecDeque<T>,
}

impl<T> Default for Remembered<T> {
    fn default() -> Self {
        Remembered { set: HashSet::new(), order: VecDeque::new() }
    }
}

impl<T: Clone + Eq + Hash> Remembered<T> {
    /// Whether it is new.
    fn insert(&mut self, item: T) -> bool {
        if !self.set.insert(item.clone()) {
            return false;
        }
        self.order.push_back(item);
        while self.order.len() > REMEMBERED {
            if let Some(oldest) = self.order.pop_front() {
                self.set.remove(&oldest);
            }
        }
        true
    }

    fn forget(&mut self, item: &T) {
        if self.set.remove(item) {
            self.order.retain(|kept| kept != item);
        }
    }
}
