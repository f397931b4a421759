//! A console attached to a shared store reads a snapshot once, then only what changed: the model it ends
//! with is the one a snapshot of the end state gives.

use std::collections::BTreeMap;

use super::{NOW, at, run, task};
use crate::console::{Model, Snapshot};
use crate::state::{AttemptState, RunState, TaskState};
use crate::store::{AttemptRecord, RunRecord, TaskRecord};

fn attempt(task: &TaskRecord, state: AttemptState) -> AttemptRecord {
    AttemptRecord { state, ..AttemptRecord::started(&task.run_id, &task.name, 1, "svc", at(NOW), "t.log".into()) }
}

/// What the screen is drawn from, in an order that does not depend on how it was filled.
type Shown =
    (BTreeMap<String, Vec<RunRecord>>, BTreeMap<String, Vec<TaskRecord>>, BTreeMap<String, Vec<AttemptRecord>>);

fn shown(model: &Model) -> Shown {
    let mut attempts: BTreeMap<String, Vec<AttemptRecord>> =
        model.attempts.iter().map(|(run, list)| (run.clone(), list.clone())).collect();
    for list in attempts.values_mut() {
        list.sort_by(|a, b| (&a.task, a.attempt).cmp(&(&b.task, b.attempt)));
    }
    (
        model.runs.iter().map(|(workflow, list)| (workflow.clone(), list.clone())).collect(),
        model.tasks.iter().map(|(run, list)| (run.clone(), list.clone())).collect(),
        attempts,
    )
}

#[test]
fn a_snapshot_then_its_changes_give_the_model_a_snapshot_of_the_end_state_gives() {
    // Before: a running run, a finished one, and an old finished one whose tasks the console never read.
    let running = run("r-run", "W", RunState::Running, 5, 0);
    let (fetch, score) =
        (task(&running, "Fetch", 0, TaskState::Running, 1), task(&running, "Score", 1, TaskState::Pending, 0));
    let done = run("r-done", "W", RunState::Succeeded, 10, 30);
    let done_task = task(&done, "Fetch", 0, TaskState::Succeeded, 1);
    let old = run("r-old", "V", RunState::Failed, 60, 30);
    let old_task = task(&old, "Fetch", 0, TaskState::Failed, 1);
    let before = Snapshot {
        runs: vec![running.clone(), done.clone(), old.clone()],
        tasks: vec![fetch.clone(), score.clone(), done_task.clone()],
        attempts: vec![attempt(&fetch, AttemptState::Running), attempt(&done_task, AttemptState::Succeeded)],
        ..Snapshot::default()
    };

    // After: the running run succeeded, a new run started in a second workflow, and the old run's task was
    // retried (its run is active again).
    let ended = RunRecord { state: RunState::Succeeded, finished_at: Some(at(NOW)), ..running.clone() };
    let (fetched, scored) = (
        TaskRecord { state: TaskState::Succeeded, ..fetch.clone() },
        TaskRecord { state: TaskState::Succeeded, attempts: 1, ..score.clone() },
    );
    let fresh = run("r-new", "V", RunState::Running, 1, 0);
    let fresh_task = task(&fresh, "Fetch", 0, TaskState::Running, 1);
    let retried = RunRecord { state: RunState::Running, finished_at: None, ..old.clone() };
    let retried_task = TaskRecord { state: TaskState::Running, attempts: 2, ..old_task.clone() };
    let retried_attempt = AttemptRecord { attempt: 2, ..attempt(&retried_task, AttemptState::Running) };
    let end_attempts = vec![
        attempt(&fetched, AttemptState::Succeeded),
        attempt(&scored, AttemptState::Succeeded),
        attempt(&done_task, AttemptState::Succeeded),
        attempt(&fresh_task, AttemptState::Running),
        attempt(&old_task, AttemptState::Failed),
        retried_attempt.clone(),
    ];
    let end = Snapshot {
        runs: vec![ended.clone(), done.clone(), retried.clone(), fresh.clone()],
        tasks: vec![fetched.clone(), scored.clone(), done_task.clone(), fresh_task.clone(), retried_task.clone()],
        attempts: end_attempts.clone(),
        ..Snapshot::default()
    };
    // Oldest stamp first, as the store gives them: the new run's rows before the ended run's.
    let changes = Snapshot {
        runs: vec![fresh.clone(), ended, retried.clone()],
        tasks: vec![fresh_task.clone(), fetched, scored.clone(), retried_task.clone()],
        attempts: vec![
            attempt(&fresh_task, AttemptState::Running),
            end_attempts[0].clone(),
            end_attempts[1].clone(),
            retried_attempt,
        ],
        ..Snapshot::default()
    };

    let mut incremental = Model::new(Vec::new(), true, at(NOW));
    incremental.apply_snapshot(before);
    let mut reads = incremental.apply_changes(changes.clone());
    assert_eq!(reads, ["r-new", "r-old"], "runs whose other tasks the console does not hold are read whole");
    for read in &reads {
        incremental.loading.entry(read.clone()).or_default().reads += 1;
    }
    // The same changes again (a read behind the last one): nothing moves, nothing more is read.
    assert!(incremental.apply_changes(changes).is_empty(), "the runs being read take the changes meanwhile");
    let whole = |run: &str| {
        let tasks = end.tasks.iter().filter(|t| t.run_id == run).cloned().collect();
        (tasks, end.attempts.iter().filter(|a| a.run_id == run).cloned().collect())
    };
    for read in reads.drain(..) {
        let (tasks, attempts) = whole(&read);
        incremental.run_loaded(read, tasks, attempts);
    }

    let mut fresh_console = Model::new(Vec::new(), true, at(NOW));
    fresh_console.apply_snapshot(end);
    assert_eq!(shown(&incremental), shown(&fresh_console));
    assert!(incremental.loading.is_empty());
}
