//! The engine's single owner of run state: it handles commands, starts attempts, reacts to their endings
//! and to timers, and writes each change to the store before publishing it.

mod attempts;
mod backfill;
mod durability;
mod endings;
mod gates;
mod leading;
mod operations;
mod recovery;
mod reload;
mod requests;
mod runs;
mod timers;
mod triggers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use tokio::sync::{broadcast, mpsc};

use super::run::Run;
use super::scheduler::Scheduler;
use super::{EngineConfig, EngineError, Event, Request, Stop, leadership};
use crate::definition::{Registry, Task, Workflow};
use crate::state::RunState;
use crate::store::{AlertRecord, AttemptRecord, RunRecord, StateLock, Store, TaskRecord};
use crate::tasks::{CancelHandle, Ending};
use durability::{StoreTrouble, StoreWait};
use timers::{FIRST_HOUSEKEEPING, Timer};

/// One turn of the actor's loop.
enum Step {
    Request(Option<Request>),
    Internal(Internal),
    File(crate::trigger::files::Seen),
    Timers,
    Poll,
    /// Commands read from the store's queue, run once the requests sent before them have been handled.
    Queued(Vec<crate::store::QueuedCommand>),
    /// The engine's standing among those sharing the database changed: looked at before the next step.
    Standing,
}

/// An answer to a request, sent after the step that made it is committed.
type Answer = Box<dyn FnOnce() + Send>;

/// What `launch` needs to start an attempt.
struct Launch<'a> {
    run_id: &'a str,
    /// The task's place in the run, or `HANDLER` for an `on_failure`/`on_success` handler.
    index: usize,
    number: u32,
    task: &'a Task,
    route: &'a str,
    input: Value,
    params: Map<String, Value>,
    workflow: String,
}

/// File events waiting for the engine before the watcher's thread waits too.
const FILE_NOTES: usize = 4096;

/// The `index` of a run's `on_failure`/`on_success` handler, which runs after the run's own tasks.
const HANDLER: usize = usize::MAX;
/// Attempt endings taken into one step (one commit) at most.
const ENDINGS_PER_STEP: usize = 64;

/// Notes (a process started, progress, tokens) cost no commit, so many may be taken in before a request; the
/// bound keeps a task printing progress in a loop from holding the request back.
const NOTES_BEFORE_REQUEST: usize = 4096;

/// What the actor hears from the tasks and watchers it started.
pub(super) enum Internal {
    Done(Done),
    /// An attempt's process has started: its group and start time go to the store.
    Spawned(Spawned),
    /// An LLM agent's attempt counted its tokens: kept on the attempt, stored with the next step.
    Usage {
        run_id: String,
        index: usize,
        attempt: u32,
        usage: crate::tasks::Usage,
    },
    /// An attempt reported how far it is (`::progress::`): kept on the attempt, stored with the next step.
    Progress {
        run_id: String,
        index: usize,
        attempt: u32,
        fraction: f64,
    },
    /// A workflow file changed (debounced): the folder as read and validated again, off the engine's loop.
    Reload(Box<crate::definition::Catalog>),
    /// Something the engine relies on broke (an executor panicked): the process must end.
    Fatal(String),
    /// A task's `when`, evaluated off the loop: run it, skip it, or fail it.
    Condition {
        run_id: String,
        index: usize,
        result: Result<bool, String>,
    },
}

pub(super) struct Spawned {
    run_id: String,
    index: usize,
    attempt: u32,
    started: crate::tasks::Started,
}

/// An attempt that has ended, reported by the task that ran it.
pub(super) struct Done {
    run_id: String,
    index: usize,
    attempt: u32,
    ending: Ending,
    log_bytes: u64,
    /// The log, when it never got a file (only the engine's lines, and the attempt ended quickly).
    log_text: Option<String>,
}

pub struct Actor {
    config: EngineConfig,
    store: Store,
    _lock: StateLock,
    registry: Registry,
    workflows: HashMap<String, Arc<Workflow>>,
    runs: HashMap<String, Run>,
    /// The live triggers: fires queued behind runs, files settling.
    scheduler: Scheduler,
    /// Activate every workflow, including ones that appear when the folder is reloaded.
    activate_all: bool,
    folder_watch: Option<notify::RecommendedWatcher>,
    /// The problem last reported for each broken workflow file, so a reload does not repeat the alert.
    broken_reported: HashMap<PathBuf, String>,
    /// `on_failure`/`on_success` handlers still running, by run.
    handlers: HashMap<String, (AttemptRecord, CancelHandle)>,
    timers: BTreeMap<(DateTime<Utc>, u64), Timer>,
    timer_seq: u64,
    events: broadcast::Sender<Event>,
    /// Events of the step under way, announced once it is committed.
    pending_events: std::cell::RefCell<Vec<Event>>,
    internal: mpsc::UnboundedSender<Internal>,
    internal_rx: Option<mpsc::UnboundedReceiver<Internal>>,
    /// File events from the watches, bounded: a flood of files waits in the watcher, not in memory here.
    file_notes: mpsc::Sender<crate::trigger::files::Seen>,
    file_notes_rx: Option<mpsc::Receiver<crate::trigger::files::Seen>>,
    /// The bounds on attempts at once (engine, workflow, service or agent) and on an LLM agent's requests.
    gates: crate::engine::gates::Gates,
    /// The id of the newest alert.
    last_alert: std::cell::Cell<i64>,
    /// Attempts whose process group is known but not yet stored: `(run, task index)`.
    unsaved_attempts: Vec<(String, usize)>,
    /// This state folder's id, carried by every task process (`CONVEYOR_STATE_ID`).
    state_id: String,
    /// Answers of steps not yet committed.
    pending_answers: Vec<Answer>,
    /// Requests that came while the store refused writes, handled once it accepts them.
    deferred: VecDeque<Request>,
    /// Commands read from the store's queue that wait for the requests taken in with them.
    queued: Option<Vec<crate::store::QueuedCommand>>,
    /// A message taken while gathering attempt endings into one step, that belongs to a step of its own.
    held_internal: Option<Internal>,
    /// Since when, and why, the store has refused writes.
    store_trouble: Option<StoreTrouble>,
    /// A fault that ends the engine at the end of this step.
    fatal: Option<String>,
    /// Set while shutting down: a stopped attempt's task waits for the next engine instead of failing.
    closing: Option<Stop>,
    /// On a database several engines share: the lead this engine acts under.
    leadership: Option<crate::engine::leadership::Leadership>,
    /// Raised when it gives the lead up (read by the engine's handle).
    stepped_down: Arc<std::sync::atomic::AtomicBool>,
    /// Attempts launched in the step under way, waiting for its commit before their process starts.
    held_starts: std::cell::RefCell<Vec<tokio::sync::oneshot::Sender<()>>>,
}

impl Actor {
    pub fn new(
        config: EngineConfig,
        store: Store,
        lock: StateLock,
        registry: Registry,
        events: broadcast::Sender<Event>,
    ) -> Result<Actor, EngineError> {
        // Unbounded, yet bounded in practice: one `Done` per attempt started, a `Reload` per settled edit.
        let (internal, internal_rx) = mpsc::unbounded_channel();
        let (file_notes, file_notes_rx) = mpsc::channel(FILE_NOTES);
        let state_id = store.state_id()?;
        let last_alert = store.last_alert_id()?;
        let actor = Actor {
            config,
            store,
            _lock: lock,
            registry,
            workflows: HashMap::new(),
            runs: HashMap::new(),
            scheduler: Scheduler::default(),
            activate_all: false,
            folder_watch: None,
            broken_reported: HashMap::new(),
            handlers: HashMap::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
            events,
            pending_events: Default::default(),
            internal,
            internal_rx: Some(internal_rx),
            file_notes,
            file_notes_rx: Some(file_notes_rx),
            gates: Default::default(),
            state_id,
            last_alert: std::cell::Cell::new(last_alert),
            unsaved_attempts: Vec::new(),
            pending_answers: Vec::new(),
            deferred: VecDeque::new(),
            queued: None,
            held_internal: None,
            store_trouble: None,
            fatal: None,
            closing: None,
            leadership: None,
            stepped_down: Default::default(),
            held_starts: Default::default(),
        };
        Ok(actor)
    }

    fn now(&self) -> DateTime<Utc> {
        self.config.clock.now()
    }

    /// The actor's loop, until shutdown (`Ok`) or a fault that must end the process (`Err`, with why).
    pub async fn run(mut self, mut requests: mpsc::UnboundedReceiver<Request>) -> Result<(), String> {
        let mut internal_rx = self.internal_rx.take().expect("the actor runs once");
        let mut file_notes = self.file_notes_rx.take().expect("the actor runs once");
        let mut poll = tokio::time::interval(self.config.command_poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut standing = self.standing_watch();
        // Only a leader on a shared store listens: SQLite has no one to notify it, and polls.
        let mut wake_ups = if self.leadership.is_some() { self.store.wake_ups() } else { None };
        let _ = self.store.begin_batch();
        self.recover_runs().await;
        // Not at start-up, which must be quick (and a `conveyor run` is often over before then).
        self.add_timer(crate::clock::later(self.now(), FIRST_HOUSEKEEPING), Timer::Housekeeping);
        self.flush();
        loop {
            if let Some(reason) = self.fatal.take() {
                self.stop_everything_now(&mut internal_rx).await;
                return Err(reason);
            }
            match self.verdict() {
                leadership::Verdict::Act => {}
                leadership::Verdict::StepDown(reason) => {
                    self.step_down(reason);
                    continue;
                }
                leadership::Verdict::Wait => match self.wait_to_lead(&mut requests, &mut standing).await {
                    leading::LeadWait::Act => continue,
                    leading::LeadWait::StepDown(reason) => {
                        self.step_down(reason);
                        continue;
                    }
                    leading::LeadWait::Shutdown(reply) => {
                        // Nothing can be written: the engine that leads next recovers the runs as after a crash.
                        self.stop_everything_now(&mut internal_rx).await;
                        drop(self);
                        if let Some(reply) = reply {
                            let _ = reply.send(());
                        }
                        return Ok(());
                    }
                },
            }
            if self.store.has_pending() {
                if let StoreWait::Shutdown(reply) = self.wait_for_store(&mut requests).await {
                    self.shutdown(&mut internal_rx).await;
                    drop(self);
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                    return Ok(());
                }
                continue;
            }
            let next = self.timers.keys().next().map(|(at, _)| *at);
            let clock = self.config.clock.clone();
            let sleep = async move {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            // Biased: definitions registered and commands sent through the API come before timers and before
            // the store's queue, so a queued command never sees an engine that has not yet learnt its workflows.
            let step = match (self.deferred.pop_front(), self.held_internal.take()) {
                (Some(request), held) => {
                    self.held_internal = held;
                    Step::Request(Some(request))
                }
                (None, Some(message)) => Step::Internal(message),
                (None, None) if self.queued.is_some() => Step::Queued(self.queued.take().unwrap_or_default()),
                (None, None) => tokio::select! {
                    biased;
                    request = requests.recv() => Step::Request(request),
                    Some(message) = internal_rx.recv() => Step::Internal(message),
                    Some(seen) = file_notes.recv() => Step::File(seen),
                    _ = sleep => Step::Timers,
                    _ = poll.tick() => Step::Poll,
                    Some(()) = woken(&mut wake_ups) => Step::Poll,
                    _ = leading::standing_changed(&mut standing) => Step::Standing,
                },
            };
            if let Step::Standing = step {
                continue;
            }
            let step = match step {
                Step::Internal(message) => match self.note_without_commit(message) {
                    Some(message) => Step::Internal(message),
                    None => continue,
                },
                Step::Request(request) => {
                    self.notes_before_request(&mut internal_rx);
                    Step::Request(request)
                }
                other => other,
            };
            // Each step is one batch: one commit for all it changed, then its events, then any answer. A batch
            // that cannot begin still runs: its writes wait in the store until it accepts them.
            let _ = self.store.begin_batch();
            let answer = match step {
                Step::Request(Some(Request::Shutdown(reply, stop))) => {
                    self.closing = Some(stop);
                    self.flush();
                    self.shutdown(&mut internal_rx).await;
                    // The lock and the store go before the caller hears back, so it may open them again.
                    drop(self);
                    let _ = reply.send(());
                    return Ok(());
                }
                Step::Request(Some(Request::Abandon(reply))) => {
                    drop(self);
                    let _ = reply.send(());
                    return Ok(());
                }
                Step::Request(Some(request)) => self.request(request),
                Step::Request(None) => {
                    self.closing = Some(Stop::Resumable);
                    self.flush();
                    self.shutdown(&mut internal_rx).await;
                    return Ok(());
                }
                Step::Internal(Internal::Done(done)) => {
                    crate::failpoint::hit("engine.attempt-ended");
                    self.attempt_done(done);
                    self.more_endings(&mut internal_rx);
                    None
                }
                Step::Internal(Internal::Spawned(_) | Internal::Progress { .. } | Internal::Usage { .. }) => None,
                Step::Internal(Internal::Condition { run_id, index, result }) => {
                    self.condition_decided(&run_id, index, result);
                    None
                }
                Step::Internal(Internal::Fatal(reason)) => {
                    self.fatal = Some(reason);
                    None
                }
                Step::File(seen) => {
                    self.file_note(seen);
                    None
                }
                Step::Internal(Internal::Reload(catalog)) => {
                    self.reload(*catalog);
                    None
                }
                Step::Timers => {
                    self.fire_timers();
                    None
                }
                Step::Poll => {
                    self.read_queue(&mut requests);
                    None
                }
                Step::Queued(commands) => {
                    self.run_queued(commands);
                    None
                }
                Step::Standing => None,
            };
            if let Some(answer) = answer {
                self.pending_answers.push(answer);
            }
            self.flush();
        }
    }

    /// Attempts that ended meanwhile join the step of the one that just did, so that a wide fan-out commits
    /// once per step instead of once per attempt (docs/benchmarks.md); bounded, so a flood still lets other
    /// work in.
    fn more_endings(&mut self, internal_rx: &mut mpsc::UnboundedReceiver<Internal>) {
        for _ in 1..ENDINGS_PER_STEP {
            match internal_rx.try_recv() {
                Ok(Internal::Done(done)) => {
                    crate::failpoint::hit("engine.attempt-ended");
                    self.attempt_done(done);
                }
                Ok(message) => {
                    if let Some(other) = self.note_without_commit(message) {
                        self.held_internal = Some(other);
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// Notes that arrived before a request are taken in first, so a request's answer (a barrier's above all)
    /// reflects every process started before it was sent, and their groups are stored with its batch.
    /// Requests win the loop's biased select, so without this a note could wait behind any number of them.
    fn notes_before_request(&mut self, internal_rx: &mut mpsc::UnboundedReceiver<Internal>) {
        if self.held_internal.is_some() {
            return;
        }
        for _ in 0..NOTES_BEFORE_REQUEST {
            match internal_rx.try_recv() {
                Ok(message) => {
                    if let Some(other) = self.note_without_commit(message) {
                        self.held_internal = Some(other);
                        return;
                    }
                }
                Err(_) => return,
            }
        }
    }

    /// What an attempt reports on the way (its process started, its progress, its tokens) is kept on it and
    /// stored with the next step's batch, without a commit of its own (a crash before then is covered by the
    /// folder's id in the process's environment). Anything else is given back, for a step of its own.
    fn note_without_commit(&mut self, message: Internal) -> Option<Internal> {
        match message {
            Internal::Spawned(spawned) => self.attempt_spawned(spawned),
            Internal::Progress { run_id, index, attempt, fraction } => {
                self.attempt_progressed(run_id, index, attempt, fraction)
            }
            Internal::Usage { run_id, index, attempt, usage } => self.attempt_used(run_id, index, attempt, usage),
            other => return Some(other),
        }
        None
    }

    /// Stops every running attempt (SIGTERM, then SIGKILL after the grace period) and leaves the runs for
    /// the next engine: a running run becomes `interrupted` (marked for recovery unless an operator stopped
    /// it), its stopped tasks pending again; paused runs and gates stay as they are.
    /// Every running attempt and handler is told to stop (its process group gets SIGTERM, then SIGKILL).
    fn cancel_every_attempt(&self) {
        let running = self.runs.values().flat_map(|run| run.running());
        for cancel in running.filter_map(|slot| slot.cancel.as_ref()).chain(self.handlers.values().map(|(_, c)| c)) {
            cancel.cancel();
        }
    }

    fn anything_running(&self) -> bool {
        !self.handlers.is_empty() || self.runs.values().any(|run| run.running().next().is_some())
    }

    async fn shutdown(&mut self, internal_rx: &mut mpsc::UnboundedReceiver<Internal>) {
        let stop = *self.closing.get_or_insert(Stop::Resumable);
        let _ = self.store.begin_batch();
        self.cancel_every_attempt();
        self.flush();
        let deadline = tokio::time::Instant::now() + self.config.kill_grace + Duration::from_secs(5);
        while self.anything_running() {
            match tokio::time::timeout_at(deadline, internal_rx.recv()).await {
                Ok(Some(Internal::Done(done))) => {
                    let _ = self.store.begin_batch();
                    self.attempt_done(done);
                    self.flush();
                }
                Ok(Some(_)) => {}
                _ => break,
            }
        }
        let _ = self.store.begin_batch();
        let now = self.now();
        let ids: Vec<String> = self.runs.keys().cloned().collect();
        for id in ids {
            let Some(run) = self.runs.get_mut(&id) else { continue };
            if !matches!(run.record.state, RunState::Running | RunState::Queued) {
                continue;
            }
            run.record.state = RunState::Interrupted;
            run.record.finished_at = Some(now);
            run.record.error = Some(match stop {
                Stop::Resumable => "the engine stopped while this run was active".into(),
                Stop::ByOperator => "stopped by an operator; `conveyor resume` carries it on".into(),
            });
            let record = run.record.clone();
            self.save_run(&record);
            if let Err(error) = self.store.set_recover(&id, stop == Stop::Resumable) {
                tracing::error!("marking run {id} for recovery failed: {error}");
            }
        }
        self.flush();
        if self.store.has_pending() {
            tracing::error!(
                "the engine stops with writes the store did not take; the next engine recovers from what it has"
            );
        }
    }

    fn save_run(&self, record: &RunRecord) {
        if let Err(error) = self.store.update_run(record) {
            tracing::error!("storing run {} failed: {error}", record.id);
        }
        self.publish(Event::Run(record.clone()));
    }

    fn save_attempt_and_task(&self, attempt: Option<AttemptRecord>, task: &TaskRecord) {
        let Some(attempt) = attempt else { return self.save_task(task) };
        if let Err(error) = self.store.save_attempt_and_task(&attempt, task) {
            tracing::error!("storing attempt {} of task {} failed: {error}", attempt.attempt, task.name);
        }
        self.publish(Event::Attempt(attempt));
        self.publish(Event::Task(task.clone()));
    }

    fn save_task(&self, record: &TaskRecord) {
        if let Err(error) = self.store.update_task(record) {
            tracing::error!("storing task {} of run {} failed: {error}", record.name, record.run_id);
        }
        self.publish(Event::Task(record.clone()));
    }

    /// Queues an event; `flush` announces it once the step's changes are committed.
    fn publish(&self, event: Event) {
        self.pending_events.borrow_mut().push(event);
    }

    fn alert(&self, severity: &str, workflow: Option<&str>, run: Option<&str>, task: Option<&str>, message: String) {
        // The engine numbers its alerts itself: an alert held while the store refuses writes keeps the id it
        // was announced with when it is written again.
        self.last_alert.set(self.last_alert.get() + 1);
        let record = AlertRecord {
            id: self.last_alert.get(),
            at: self.now(),
            severity: severity.to_string(),
            workflow: workflow.map(str::to_string),
            run_id: run.map(str::to_string),
            task: task.map(str::to_string),
            message,
            acked_at: None,
        };
        if let Err(error) = self.store.add_alert(&record) {
            tracing::debug!("storing an alert failed: {error}");
        }
        // Its sinks fire with the other events, once it is committed.
        self.publish(Event::Alert(record));
    }
}

/// Resolves when the store says a command was queued; never without wake-ups.
async fn woken(wake_ups: &mut Option<mpsc::Receiver<()>>) -> Option<()> {
    match wake_ups {
        Some(receiver) => receiver.recv().await,
        None => std::future::pending().await,
    }
}
