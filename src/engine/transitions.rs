//! How a run moves on, decided without I/O: what follows an attempt's ending (a retry on the same route, the
//! next fallback route, or failure), what may start now, and when the run is over. Each function returns a
//! decision; the actor applies it (store writes, events, timers, processes), so these rules are tested
//! without an engine, a store or a clock.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::run::{Run, retry_delay};
use crate::state::{RunState, TaskState};
use crate::store::{TaskRecord, timestamp};
use crate::tasks::Ending;

/// What follows a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AfterFailure {
    /// The same route again once `at` has come; `retry` counts this route's retries (1 for the first).
    RetryAt { at: DateTime<Utc>, retry: u32 },
    /// The next fallback route, at once.
    NextRoute,
    /// Nothing is left to try. `alert` is false when the run was being stopped anyway: the stop says why.
    TaskFailed { alert: bool },
}

/// Retries belong to the task's own route only; a fallback route gets one attempt before the next.
pub fn after_failure(run: &Run, index: usize, now: DateTime<Utc>, jitter: f64) -> AfterFailure {
    if run.stopping.is_some() {
        return AfterFailure::TaskFailed { alert: false };
    }
    let record = &run.slots()[index].record;
    let task = run.task(index);
    if record.route_index == 0 && record.route_attempts <= task.retries {
        let wait = retry_delay(task, record.route_attempts, jitter);
        return AfterFailure::RetryAt { at: crate::clock::later(now, wait), retry: record.route_attempts };
    }
    if run.has_next_route(index) { AfterFailure::NextRoute } else { AfterFailure::TaskFailed { alert: true } }
}

/// What an attempt's ending does to its task.
#[derive(Debug, Clone, PartialEq)]
pub enum TaskStep {
    Succeeded {
        output: Value,
    },
    /// A gate holds `waiting` items for an operator; `output` records them.
    AwaitingApproval {
        output: Value,
        waiting: usize,
    },
    /// The engine is stopping: the next engine runs the task again.
    Interrupted,
    Cancelled,
    Failed {
        error: String,
        then: AfterFailure,
    },
}

/// `closing`: the engine is shutting down, so a cancelled attempt was stopped by it, not by an operator.
pub fn attempt_ended(
    run: &Run,
    index: usize,
    ending: Ending,
    closing: bool,
    now: DateTime<Utc>,
    jitter: f64,
) -> TaskStep {
    match ending {
        Ending::Succeeded { output } => TaskStep::Succeeded { output },
        Ending::AwaitingApproval { output, waiting } => TaskStep::AwaitingApproval { output, waiting },
        Ending::Cancelled if closing => TaskStep::Interrupted,
        Ending::Cancelled => TaskStep::Cancelled,
        Ending::Failed { error, .. } => TaskStep::Failed { error, then: after_failure(run, index, now, jitter) },
    }
}

/// What is left for the actor once a step is written on the task's record.
#[derive(Debug, Clone, PartialEq)]
pub enum Then {
    Nothing,
    /// Look for work again at this instant (a retry's wait ends).
    WakeAt(DateTime<Utc>),
    /// Start the task's next attempt now, on the route the record now names.
    StartNextRoute,
    /// The task failed after every attempt: an operator hears of it.
    AlertFailed {
        error: String,
    },
    /// A gate waits for an operator's answer on `waiting` items.
    AwaitApproval {
        waiting: usize,
    },
}

impl TaskStep {
    /// Writes the step on the task's record (memory only); the actor stores it.
    pub fn record(self, record: &mut TaskRecord, retries: u32, now: DateTime<Utc>) -> Then {
        match self {
            TaskStep::Succeeded { output } => {
                record.state = TaskState::Succeeded;
                record.output = Some(output);
                record.finished_at = Some(now);
                Then::Nothing
            }
            TaskStep::AwaitingApproval { output, waiting } => {
                record.state = TaskState::WaitingApproval;
                record.output = Some(output);
                Then::AwaitApproval { waiting }
            }
            TaskStep::Interrupted => {
                record.state = TaskState::Pending;
                // Not counted as a retry: the engine stopped it, the task did not fail.
                record.route_attempts = record.route_attempts.saturating_sub(1);
                record.error = Some("interrupted: the engine stopped while it ran; it runs again".into());
                Then::Nothing
            }
            TaskStep::Cancelled => {
                record.finished_at = Some(now);
                record.state = TaskState::Cancelled;
                record.error = Some("cancelled".into());
                Then::Nothing
            }
            TaskStep::Failed { error, then: AfterFailure::RetryAt { at, retry } } => {
                record.state = TaskState::RetryWait;
                record.error = Some(format!("{error}; retry {retry} of {retries} at {}", timestamp(at)));
                record.retry_at = Some(at);
                Then::WakeAt(at)
            }
            TaskStep::Failed { error, then: AfterFailure::NextRoute } => {
                record.route_index += 1;
                record.route_attempts = 0;
                record.error = Some(error);
                Then::StartNextRoute
            }
            TaskStep::Failed { error, then: AfterFailure::TaskFailed { alert } } => {
                record.state = TaskState::Failed;
                record.finished_at = Some(now);
                record.error = Some(error.clone());
                if alert { Then::AlertFailed { error } } else { Then::Nothing }
            }
        }
    }
}

/// What a run may start now.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Work {
    /// Tasks whose retry wait is over: a new attempt on the same route.
    pub retries: Vec<usize>,
    /// Pending tasks whose parents are done, in list order: their `when`, then a first attempt.
    pub ready: Vec<usize>,
}

/// `None` when the run starts nothing: it is not running, is being stopped, or nothing is due or ready.
pub fn work(run: &Run, now: DateTime<Utc>) -> Option<Work> {
    if run.record.state != RunState::Running || run.stopping.is_some() {
        return None;
    }
    let work = Work { retries: run.due_retries(now), ready: run.ready() };
    (!work.retries.is_empty() || !work.ready.is_empty()).then_some(work)
}

/// Where a run stands once it has started what it can.
#[derive(Debug, Clone, PartialEq)]
pub enum Settlement {
    /// Something still runs, waits or is ready.
    Going,
    Finished {
        state: RunState,
        error: Option<String>,
    },
    /// Only gates waiting for an operator are left: the run waits for approval.
    AwaitsApproval,
}

pub fn settlement(run: &Run) -> Settlement {
    if let Some(target) = run.stopping {
        // A stopped run ends once its last attempt has, with the reason the stop gave.
        if run.running().next().is_none() {
            return Settlement::Finished { state: target, error: run.record.error.clone() };
        }
        return Settlement::Going;
    }
    if !matches!(run.record.state, RunState::Running | RunState::Paused) {
        return Settlement::Going;
    }
    if let Some((state, error)) = run.outcome() {
        Settlement::Finished { state, error }
    } else if run.record.state == RunState::Running && run.is_waiting() {
        Settlement::AwaitsApproval
    } else {
        Settlement::Going
    }
}

/// A new attempt of task `index` on its current route: the task's record counts it and runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Begun {
    pub number: u32,
    pub route: String,
}

pub fn begin_attempt(run: &mut Run, index: usize, now: DateTime<Utc>) -> Begun {
    let route = run.route(index);
    let record = &mut run.slot_mut(index).record;
    record.attempts += 1;
    record.route_attempts += 1;
    record.state = TaskState::Running;
    record.started_at.get_or_insert(now);
    record.finished_at = None;
    record.error = None;
    record.retry_at = None;
    Begun { number: record.attempts, route }
}

/// What a task's evaluated `when` comes to.
#[derive(Debug, Clone, PartialEq)]
pub enum WhenStep {
    /// The task was cancelled, or the run stopped, while its `when` was evaluated: the answer no longer matters.
    Stale,
    /// Its first attempt starts.
    Start,
    /// The run is paused: the task stays pending, and its `when` is evaluated again when the run resumes.
    Hold,
    /// The task is skipped; its input passes on as its output.
    Skip { reason: String },
    /// The expression could not be evaluated: the task fails.
    Fail { error: String },
}

pub fn when_answered(run: &Run, index: usize, result: Result<bool, String>) -> WhenStep {
    if run.slots()[index].state() != TaskState::Pending || run.stopping.is_some() {
        return WhenStep::Stale;
    }
    match result {
        Ok(true) if run.record.state == RunState::Running => WhenStep::Start,
        Ok(true) => WhenStep::Hold,
        Ok(false) => {
            let condition = run.task(index).when.as_deref().unwrap_or_default();
            WhenStep::Skip { reason: format!("skipped: `when = \"{condition}\"` is false") }
        }
        Err(error) => WhenStep::Fail { error },
    }
}

impl WhenStep {
    /// Writes a skip or a failure on the task's record (memory only); `true` when it changed.
    pub fn record(self, record: &mut TaskRecord, now: DateTime<Utc>) -> bool {
        match self {
            WhenStep::Skip { reason } => {
                record.state = TaskState::Skipped;
                record.output = Some(record.input.clone().unwrap_or(Value::Null));
                record.started_at = Some(now);
                record.finished_at = Some(now);
                record.error = Some(reason);
                true
            }
            WhenStep::Fail { error } => {
                record.state = TaskState::Failed;
                record.finished_at = Some(now);
                record.error = Some(error);
                true
            }
            WhenStep::Stale | WhenStep::Start | WhenStep::Hold => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::run::tests::run_of;
    use chrono::TimeZone;
    use serde_json::json;

    fn noon() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 12, 0, 0).unwrap()
    }

    /// Runs an attempt of task `index` to a failure, as the actor would, and returns what followed.
    fn fail(run: &mut Run, index: usize, error: &str) -> (TaskStep, Then) {
        begin_attempt(run, index, noon());
        let step = attempt_ended(run, index, Ending::failed(error), false, noon(), 0.0);
        let retries = run.task(index).retries;
        let then = step.clone().record(&mut run.slot_mut(index).record, retries, noon());
        (step, then)
    }

    fn with_fallback(source: &str) -> Run {
        let registry: crate::definition::Registry = {
            let services = "[services.A]\ncommand = [\"a\"]\n[services.B]\ncommand = [\"b\"]\n";
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("conveyor.toml"), services).unwrap();
            crate::definition::load_folder(dir.path()).registry
        };
        let workflow =
            crate::definition::parse_workflow(std::path::Path::new("w.toml"), source, &registry).expect("valid");
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
        run.workflow = std::sync::Arc::new(workflow);
        run
    }

    const RETRY_TWICE_THEN_B: &str = "id = \"W\"\n[[tasks]]\nname = \"T\"\nservice = \"A\"\nretries = 2\nretry_delay = \"10s\"\nbackoff = 2.0\nfallback = [\"B\"]\n";

    #[test]
    fn a_failure_retries_with_backoff_then_falls_back_then_fails_the_task() {
        let mut run = with_fallback(RETRY_TWICE_THEN_B);
        let first = noon() + chrono::Duration::seconds(10);
        assert_eq!(
            fail(&mut run, 0, "boom"),
            (
                TaskStep::Failed { error: "boom".into(), then: AfterFailure::RetryAt { at: first, retry: 1 } },
                Then::WakeAt(first)
            )
        );
        let record = &run.slots()[0].record;
        assert_eq!((record.state, record.retry_at), (TaskState::RetryWait, Some(first)));
        assert_eq!(record.error.as_deref(), Some("boom; retry 1 of 2 at 2026-01-01T12:00:10.000Z"));

        let second = noon() + chrono::Duration::seconds(20);
        assert_eq!(fail(&mut run, 0, "boom").1, Then::WakeAt(second), "the wait doubles by the backoff");

        assert_eq!(fail(&mut run, 0, "boom").1, Then::StartNextRoute, "retries spent: the fallback route");
        assert_eq!((run.route(0), run.slots()[0].record.route_attempts), ("B".to_string(), 0));

        assert_eq!(
            fail(&mut run, 0, "still boom").1,
            Then::AlertFailed { error: "still boom".into() },
            "a fallback route is not retried, and none is left"
        );
        let record = &run.slots()[0].record;
        assert_eq!((record.state, record.attempts, record.finished_at), (TaskState::Failed, 4, Some(noon())));
    }

    #[test]
    fn a_retry_wait_grows_by_its_jitter_up_to_a_tenth() {
        let mut run = with_fallback(RETRY_TWICE_THEN_B);
        begin_attempt(&mut run, 0, noon());
        let at = noon() + chrono::Duration::seconds(11);
        assert_eq!(after_failure(&run, 0, noon(), 1.0), AfterFailure::RetryAt { at, retry: 1 });
    }

    #[test]
    fn a_route_chosen_by_an_operator_is_retried_but_never_left_for_a_fallback() {
        let mut run = with_fallback(RETRY_TWICE_THEN_B);
        run.slot_mut(0).record.route = Some("B".into());
        assert!(matches!(fail(&mut run, 0, "x").1, Then::WakeAt(_)));
        assert!(matches!(fail(&mut run, 0, "x").1, Then::WakeAt(_)));
        assert_eq!(fail(&mut run, 0, "x").1, Then::AlertFailed { error: "x".into() });
    }

    #[test]
    fn a_task_without_retries_or_fallbacks_fails_at_its_first_failure() {
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
        assert_eq!(fail(&mut run, 0, "exit status 1").1, Then::AlertFailed { error: "exit status 1".into() });
        assert_eq!(
            settlement(&run),
            Settlement::Finished { state: RunState::Failed, error: Some("task T failed: exit status 1".into()) }
        );
    }

    #[test]
    fn a_failure_while_the_run_is_stopped_fails_the_task_without_a_retry_or_an_alert() {
        let mut run = with_fallback(RETRY_TWICE_THEN_B);
        run.stopping = Some(RunState::Cancelled);
        assert_eq!(fail(&mut run, 0, "killed").1, Then::Nothing);
        assert_eq!(run.slots()[0].state(), TaskState::Failed);
    }

    #[test]
    fn a_failed_task_with_continue_on_failure_lets_the_run_go_on_and_succeed() {
        let source = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\ncontinue_on_failure = true\n[[tasks]]\nname = \"B\"\nrun = \"x\"\n";
        let mut run = run_of(source);
        assert_eq!(fail(&mut run, 0, "no").1, Then::AlertFailed { error: "no".into() });
        assert_eq!(work(&run, noon()), Some(Work { retries: vec![], ready: vec![1] }));
        begin_attempt(&mut run, 1, noon());
        let ended = attempt_ended(&run, 1, Ending::Succeeded { output: json!(2) }, false, noon(), 0.0);
        ended.record(&mut run.slot_mut(1).record, 0, noon());
        assert_eq!(settlement(&run), Settlement::Finished { state: RunState::Succeeded, error: None });
    }

    #[test]
    fn a_cancelled_attempt_is_interrupted_while_the_engine_closes_and_cancelled_otherwise() {
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
        begin_attempt(&mut run, 0, noon());
        let step = attempt_ended(&run, 0, Ending::Cancelled, true, noon(), 0.0);
        assert_eq!(step, TaskStep::Interrupted);
        step.record(&mut run.slot_mut(0).record, 0, noon());
        let record = &run.slots()[0].record;
        assert_eq!((record.state, record.route_attempts), (TaskState::Pending, 0), "not counted as a retry");
        assert_eq!(attempt_ended(&run, 0, Ending::Cancelled, false, noon(), 0.0), TaskStep::Cancelled);
    }

    #[test]
    fn readiness_follows_depends_on_and_due_retries() {
        let source = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\n[[tasks]]\nname = \"B\"\nrun = \"x\"\nretries = 1\nretry_delay = \"5s\"\ndepends_on = [\"A\"]\n[[tasks]]\nname = \"C\"\nrun = \"x\"\ndepends_on = [\"A\"]\n[[tasks]]\nname = \"D\"\nrun = \"x\"\ndepends_on = [\"B\", \"C\"]\n";
        let mut run = run_of(source);
        assert_eq!(work(&run, noon()), Some(Work { retries: vec![], ready: vec![0] }));
        begin_attempt(&mut run, 0, noon());
        assert_eq!(work(&run, noon()), None, "B and C wait for A");
        assert_eq!(settlement(&run), Settlement::Going);
        attempt_ended(&run, 0, Ending::Succeeded { output: json!(1) }, false, noon(), 0.0).record(
            &mut run.slot_mut(0).record,
            0,
            noon(),
        );
        assert_eq!(work(&run, noon()), Some(Work { retries: vec![], ready: vec![1, 2] }));
        let Then::WakeAt(at) = fail(&mut run, 1, "flaky").1 else { panic!("B retries") };
        assert_eq!(work(&run, noon()).map(|work| work.ready), Some(vec![2]), "B is not due yet");
        assert_eq!(work(&run, at), Some(Work { retries: vec![1], ready: vec![2] }));
        run.stopping = Some(RunState::Cancelled);
        assert_eq!(work(&run, at), None, "a stopping run starts nothing");
    }

    #[test]
    fn a_gate_holding_items_puts_a_running_run_in_waiting_for_approval() {
        // A graph (a `depends_on` somewhere), so that B runs beside A instead of after it.
        let source = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\n[[tasks]]\nname = \"B\"\nrun = \"x\"\n[[tasks]]\nname = \"C\"\nrun = \"x\"\ndepends_on = [\"A\"]\n";
        let mut run = run_of(source);
        begin_attempt(&mut run, 0, noon());
        begin_attempt(&mut run, 1, noon());
        let held = Ending::AwaitingApproval { output: json!({"items": []}), waiting: 2 };
        let then = attempt_ended(&run, 0, held, false, noon(), 0.0).record(&mut run.slot_mut(0).record, 0, noon());
        assert_eq!(then, Then::AwaitApproval { waiting: 2 });
        assert_eq!(settlement(&run), Settlement::AwaitsApproval, "even while B still runs");
        run.record.state = RunState::WaitingApproval;
        attempt_ended(&run, 1, Ending::Succeeded { output: json!(1) }, false, noon(), 0.0).record(
            &mut run.slot_mut(1).record,
            0,
            noon(),
        );
        assert_eq!(settlement(&run), Settlement::Going, "C waits for the operator's answer on A");
    }

    #[test]
    fn a_stopped_run_finishes_with_its_target_once_its_last_attempt_has_ended() {
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"T\"\nrun = \"x\"\n");
        begin_attempt(&mut run, 0, noon());
        run.stopping = Some(RunState::Failed);
        run.record.error = Some("the run exceeded its timeout of 1m".into());
        assert_eq!(settlement(&run), Settlement::Going, "its attempt still runs");
        attempt_ended(&run, 0, Ending::Cancelled, false, noon(), 0.0).record(&mut run.slot_mut(0).record, 0, noon());
        let error = Some("the run exceeded its timeout of 1m".to_string());
        assert_eq!(settlement(&run), Settlement::Finished { state: RunState::Failed, error });
    }

    #[test]
    fn a_new_attempt_counts_on_its_route_and_clears_the_last_ones_traces() {
        let mut run = with_fallback(RETRY_TWICE_THEN_B);
        fail(&mut run, 0, "boom");
        let begun = begin_attempt(&mut run, 0, noon() + chrono::Duration::seconds(30));
        assert_eq!(begun, Begun { number: 2, route: "A".into() });
        let record = &run.slots()[0].record;
        assert_eq!((record.state, record.route_attempts), (TaskState::Running, 2));
        assert_eq!((record.error.as_ref(), record.retry_at), (None, None));
        assert_eq!(record.started_at, Some(noon()), "a task starts once, whatever its attempts");
    }

    #[test]
    fn a_false_when_skips_the_task_passing_its_input_on_and_an_error_fails_it() {
        let source = "id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\nwhen = \"input.go\"\n[[tasks]]\nname = \"B\"\nrun = \"x\"\n";
        let mut run = run_of(source);
        run.slot_mut(0).record.input = Some(json!({"go": false}));
        assert_eq!(when_answered(&run, 0, Ok(true)), WhenStep::Start);
        let skip = when_answered(&run, 0, Ok(false));
        assert_eq!(skip, WhenStep::Skip { reason: "skipped: `when = \"input.go\"` is false".into() });
        assert!(skip.record(&mut run.slot_mut(0).record, noon()));
        let record = &run.slots()[0].record;
        assert_eq!((record.state, record.output.clone()), (TaskState::Skipped, Some(json!({"go": false}))));
        assert_eq!(work(&run, noon()).map(|work| work.ready), Some(vec![1]), "a skipped task lets the next one run");

        let mut run = run_of(source);
        let fail = when_answered(&run, 0, Err("`when`: unknown name `inptu`".into()));
        assert!(fail.record(&mut run.slot_mut(0).record, noon()));
        assert_eq!(run.slots()[0].state(), TaskState::Failed);
    }

    #[test]
    fn a_when_answered_too_late_changes_nothing_and_a_paused_run_holds_the_task() {
        let mut run = run_of("id = \"W\"\n[[tasks]]\nname = \"A\"\nrun = \"x\"\nwhen = \"true\"\n");
        run.record.state = RunState::Paused;
        assert_eq!(when_answered(&run, 0, Ok(true)), WhenStep::Hold);
        assert!(!WhenStep::Hold.record(&mut run.slot_mut(0).record, noon()));
        run.slot_mut(0).record.state = TaskState::Cancelled;
        assert_eq!(when_answered(&run, 0, Ok(true)), WhenStep::Stale, "cancelled meanwhile");
        run.slot_mut(0).record.state = TaskState::Pending;
        run.stopping = Some(RunState::Cancelled);
        assert_eq!(when_answered(&run, 0, Err("x".into())), WhenStep::Stale, "the run is being stopped");
    }
}
