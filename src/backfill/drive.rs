//! Walking a plan: one command per instant, never more runs of the workflow active than the plan's limit,
//! then waiting for the runs started to end. Blocking: it runs on a thread of its own, and reads the store
//! for what is active (a daemon's state is only there).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::plan::{Instant, Plan};
use crate::engine::{Command, Declined, Reply};
use crate::state::RunState;
use crate::store::{Store, StoreLocation};

/// How often the store is read while waiting for room or for runs to end.
const POLL: Duration = Duration::from_millis(100);

/// The engine the commands go to: embedded, or a daemon reached through the store.
pub trait Sender {
    fn send(&self, command: Command) -> Result<Reply, String>;
}

impl<F: Fn(Command) -> Result<Reply, String>> Sender for F {
    fn send(&self, command: Command) -> Result<Reply, String> {
        self(command)
    }
}

/// What happened, as it happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    Started {
        instant: Instant,
        run: String,
    },
    /// The instant already has a run (found by the engine after the plan was made).
    Skipped {
        instant: Instant,
        run: String,
    },
    /// `state` is `None` for a run pruned (`keep_runs`) before its end was seen.
    Ended {
        run: String,
        state: Option<RunState>,
    },
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Instants the plan starts a run for.
    pub total: usize,
    pub started: usize,
    /// Instants that already had a run: counted in the plan, and any the engine found since.
    pub skipped: usize,
    pub succeeded: usize,
    /// Runs that ended other than succeeded (failed, cancelled, interrupted).
    pub failed: usize,
    /// Runs that ended and were pruned (`keep_runs`) before their outcome was read.
    pub gone: usize,
}

impl Tally {
    pub fn ended(&self) -> usize {
        self.succeeded + self.failed + self.gone
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub tally: Tally,
    /// Runs started that had not ended when the walk stopped.
    pub still_active: Vec<String>,
    /// Stopped by the operator before every instant was started.
    pub stopped: bool,
    /// Why the walk ended early, when the engine refused an instant or the store could not be read.
    pub error: Option<String>,
}

/// The operator's brakes: `starting` stops new runs; `waiting` stops waiting for the started ones to end.
#[derive(Debug, Default)]
pub struct Drive {
    pub stop_starting: AtomicBool,
    pub stop_waiting: AtomicBool,
}

/// Starts a run per instant of `plan` through `sender`, keeping at most `plan.limit` runs of the workflow
/// active (runs started otherwise count too), then waits until the runs it started end. `report` hears each
/// step with the tally after it.
pub fn drive(
    plan: &Plan,
    state: &Path,
    location: &StoreLocation,
    sender: &dyn Sender,
    brakes: &Drive,
    report: &mut dyn FnMut(Option<&Step>, &Tally),
) -> Outcome {
    let skipped_before = plan.instants.len() - plan.to_start().count();
    let mut tally = Tally { total: plan.to_start().count(), skipped: skipped_before, ..Tally::default() };
    let mut active: Vec<String> = Vec::new();
    let outcome = |tally: Tally, active: Vec<String>, stopped: bool, error: Option<String>| Outcome {
        tally,
        still_active: active,
        stopped,
        error,
    };
    report(None, &tally);
    let store = match crate::store::open(state, location) {
        Ok(store) => store,
        Err(error) => return outcome(tally, active, false, Some(format!("cannot read the store: {error}"))),
    };
    let mut pending = plan.to_start().cloned().peekable();
    while let Some(instant) = pending.peek().cloned() {
        if brakes.stop_starting.load(Ordering::SeqCst) {
            break;
        }
        if let Err(error) = settle(&store, &mut active, &mut tally, report) {
            return outcome(tally, active, false, Some(error));
        }
        let busy = match workflow_active(&store, &plan.workflow) {
            Ok(busy) => busy,
            Err(error) => return outcome(tally, active, false, Some(error)),
        };
        if busy >= plan.limit {
            std::thread::sleep(POLL);
            continue;
        }
        let command =
            Command::Backfill { workflow: plan.workflow.clone(), scheduled_at: instant.at, rerun: plan.rerun };
        let reply = match sender.send(command) {
            Ok(reply) => reply,
            Err(error) => return outcome(tally, active, false, Some(format!("{}: {error}", instant.shown))),
        };
        match (reply.declined, reply.run) {
            // Something else started a run of the workflow meanwhile: the same instant is asked again.
            (Some(Declined::AtCapacity), _) => std::thread::sleep(POLL),
            (Some(Declined::AlreadyRun), run) => {
                pending.next();
                tally.total -= 1;
                tally.skipped += 1;
                report(Some(&Step::Skipped { instant, run: run.unwrap_or_default() }), &tally);
            }
            (None, Some(run)) => {
                pending.next();
                tally.started += 1;
                active.push(run.clone());
                report(Some(&Step::Started { instant, run }), &tally);
            }
            (None, None) => {
                return outcome(tally, active, false, Some(format!("{}: the engine started no run", instant.shown)));
            }
        }
    }
    while !active.is_empty() {
        if brakes.stop_waiting.load(Ordering::SeqCst) {
            let stopped = brakes.stop_starting.load(Ordering::SeqCst);
            return outcome(tally, active, stopped, None);
        }
        if let Err(error) = settle(&store, &mut active, &mut tally, report) {
            return outcome(tally, active, false, Some(error));
        }
        if !active.is_empty() {
            std::thread::sleep(POLL);
        }
    }
    let stopped = brakes.stop_starting.load(Ordering::SeqCst) && tally.started < tally.total;
    outcome(tally, active, stopped, None)
}

/// Counts the runs started that have ended since last looked at.
fn settle(
    store: &Store,
    active: &mut Vec<String>,
    tally: &mut Tally,
    report: &mut dyn FnMut(Option<&Step>, &Tally),
) -> Result<(), String> {
    let mut still = Vec::with_capacity(active.len());
    for run in active.drain(..) {
        let state = match store.run(&run) {
            Ok(Some(record)) if !record.state.is_finished() => {
                still.push(run);
                continue;
            }
            Ok(Some(record)) => Some(record.state),
            // Only a finished run is pruned.
            Ok(None) => None,
            Err(error) => return Err(format!("cannot read run {run}: {error}")),
        };
        match state {
            Some(RunState::Succeeded) => tally.succeeded += 1,
            Some(_) => tally.failed += 1,
            None => tally.gone += 1,
        }
        report(Some(&Step::Ended { run, state }), tally);
    }
    *active = still;
    Ok(())
}

fn workflow_active(store: &Store, workflow: &str) -> Result<usize, String> {
    let active: Vec<RunState> = RunState::ALL.iter().copied().filter(|state| state.is_active()).collect();
    let runs = store.runs_in_state(&active).map_err(|error| format!("cannot read the active runs: {error}"))?;
    Ok(runs.iter().filter(|run| run.workflow == workflow).count())
}
