//! The engine's single owner of run state: it handles commands, starts attempts, reacts to their endings
//! and to timers, and writes each change to the store before publishing it.

mod attempts;
mod backfill;
mod durability;
mod endings;
mod gates;
mod operations;
mod recovery;
mod reload;
mod triggers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use tokio::sync::{broadcast, mpsc};

use super::command::{Command, CommandResult, Origin, Reply};
use super::run::Run;
use super::scheduler::Scheduler;
use super::transitions::{self, Settlement};
use super::{EngineConfig, EngineError, Event, Request, Stop};
use crate::definition::{Registry, Task, Workflow, resolve_params};
use crate::state::{RunState, TaskState};
use crate::store::{AlertRecord, AttemptRecord, RunRecord, StateLock, Store, TaskRecord, timestamp};
use crate::tasks::{CancelHandle, Ending};
use durability::{StoreTrouble, StoreWait};

/// One turn of the actor's loop.
enum Step {
    Request(Option<Request>),
    Internal(Internal),
    File(crate::trigger::files::Seen),
    Timers,
    Poll,
    /// Commands read from the store's queue, run once the requests sent before them have been handled.
    Queued(Vec<crate::store::QueuedCommand>),
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
    pid: u32,
    start: Option<u64>,
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

#[derive(Debug, Clone, PartialEq)]
enum Timer {
    /// A task's retry wait is over (or a paused run's wait passed): look for work.
    Wake {
        run: String,
    },
    RunTimeout {
        run: String,
        after: Duration,
    },
    /// A workflow's scheduled instant (the timer itself may be later, by the workflow's jitter).
    Fire {
        workflow: String,
        scheduled: DateTime<Utc>,
    },
    /// Time to check whether an arrived file has stopped changing.
    Settle {
        workflow: String,
        path: PathBuf,
    },
    /// Time to trim what the store would otherwise keep forever (alerts, audit, processed files).
    Housekeeping,
    /// A gate's `approval_timeout` is over: `on_timeout` decides what is still held.
    GateTimeout {
        run: String,
        task: String,
    },
}

/// How often the store is trimmed.
const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(3600);
const FIRST_HOUSEKEEPING: Duration = Duration::from_secs(60);

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
                },
            };
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

    /// Handles a request; the answer, if it has one, is sent once the step is committed.
    fn request(&mut self, request: Request) -> Option<Answer> {
        match request {
            Request::Command(command, origin, reply) => {
                let result = self.command(&command, &origin);
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::Register(workflow) => {
                self.workflows.insert(workflow.id.clone(), Arc::new(*workflow));
                None
            }
            Request::Unregister(id) => {
                self.deactivate(&id);
                self.workflows.remove(&id);
                None
            }
            Request::Start(id, reply) => {
                let result = self.activate(&id);
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::StartAll(reply) => {
                self.activate_all = true;
                let mut ids: Vec<String> = self.workflows.keys().cloned().collect();
                ids.sort();
                let problems: Vec<String> =
                    ids.iter().filter_map(|id| self.activate(id).err().map(|error| format!("{id}: {error}"))).collect();
                for problem in &problems {
                    self.alert("error", None, None, None, problem.clone());
                }
                let result = if problems.is_empty() { Ok(()) } else { Err(problems.join("; ")) };
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::WatchFolder(reply) => {
                let result = self.watch_folder();
                Some(Box::new(move || drop(reply.send(result))))
            }
            Request::Barrier(reply) => {
                // Timers due by the clock count as sent before: a test that moved a manual clock sees their effect.
                self.fire_timers();
                Some(Box::new(move || {
                    let _ = reply.send(());
                }))
            }
            Request::Shutdown(..) | Request::Abandon(_) => unreachable!("handled by the loop"),
        }
    }

    /// Handles a command and records it in the audit trail.
    fn command(&mut self, command: &Command, origin: &Origin) -> CommandResult {
        let named = self.gate_named(command);
        let command = named.as_ref().unwrap_or(command);
        let result = self.apply(command, origin);
        // A finished run loaded to answer a command that did not bring it back to life lives in the store
        // alone again; only active runs are kept in memory.
        self.runs.retain(|_, run| !run.record.state.is_finished());
        let (ok, outcome) = match &result {
            Ok(reply) => (true, reply.message.clone()),
            Err(error) => (false, error.clone()),
        };
        let text = command.to_json();
        if let Err(error) = self.store.audit(self.now(), &origin.who, &origin.via, &text, ok, &outcome) {
            tracing::error!("writing the audit trail failed: {error}");
        }
        self.publish(Event::Command { who: origin.who.clone(), via: origin.via.clone(), command: text, ok, outcome });
        result
    }

    fn apply(&mut self, command: &Command, origin: &Origin) -> CommandResult {
        match command {
            Command::Trigger { workflow, input, params } => self.trigger(workflow, input.clone(), params, "manual"),
            Command::PauseWorkflow { workflow } => self.pause_workflow(workflow, true),
            Command::ResumeWorkflow { workflow } => self.pause_workflow(workflow, false),
            Command::PauseRun { run } => self.pause_run(run),
            Command::ResumeRun { run } => self.resume_run(run),
            Command::CancelRun { run } => self.cancel_run(run, origin),
            Command::RetryTask { run, task } => self.retry_task(run, task),
            Command::SkipTask { run, task } => self.skip_task(run, task),
            Command::RerouteTask { run, task, to } => self.reroute_task(run, task, to),
            Command::Approve { run, task, items, comment } | Command::Reject { run, task, items, comment } => {
                let approve = matches!(command, Command::Approve { .. });
                let answer = crate::tasks::Answer { approve, who: &origin.who, items, comment: comment.as_deref() };
                self.answer_gate(run, task, answer)
            }
            Command::AckAlert { id } => match self.store.ack_alert(*id, self.now()) {
                Ok(true) => {
                    // Views holding the alert see it acknowledged.
                    if let Ok(Some(alert)) = self.store.alert(*id) {
                        self.publish(Event::Alert(alert));
                    }
                    Ok(Reply::new(format!("alert {id} acknowledged")))
                }
                Ok(false) => Err(format!("no unacknowledged alert {id}")),
                Err(error) => Err(error.to_string()),
            },
            Command::Backfill { workflow, scheduled_at, rerun } => self.backfill(workflow, *scheduled_at, *rerun),
        }
    }

    /// Commands other shells wrote to the store.
    /// Reads the commands other processes queued in the store. A request sent through the API before a
    /// command was queued (a workflow registered, then triggered from another shell) must be handled first,
    /// even if the loop chose this poll before the request arrived: requests are taken in only after the
    /// read, so every one sent before a command it saw is among them, and they run before it.
    fn read_queue(&mut self, requests: &mut mpsc::UnboundedReceiver<Request>) {
        // Deadlines are the wall clock's: the shell that queued a command waits in real time.
        let pending = match self.store.pending_commands(chrono::Utc::now()) {
            Ok(pending) => pending,
            Err(error) => {
                tracing::error!("reading queued commands failed: {error}");
                return;
            }
        };
        if pending.is_empty() {
            return;
        }
        while let Ok(request) = requests.try_recv() {
            self.deferred.push_back(request);
        }
        if self.deferred.is_empty() {
            self.run_queued(pending);
        } else {
            self.queued = Some(pending);
        }
    }

    fn run_queued(&mut self, pending: Vec<crate::store::QueuedCommand>) {
        for queued in pending {
            let origin = Origin { who: queued.who.clone(), via: "cli".into() };
            let result = match serde_json::from_str::<Command>(&queued.command) {
                Ok(command) => self.command(&command, &origin),
                Err(error) => Err(format!("not a command this engine understands: {error}")),
            };
            let (ok, outcome) = match result {
                Ok(reply) => (true, serde_json::to_string(&reply).expect("replies serialise")),
                Err(error) => (false, error),
            };
            if let Err(error) = self.store.complete_command(queued.id, self.now(), ok, &outcome) {
                tracing::error!("recording a command's outcome failed: {error}");
            }
        }
    }

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
        self.store.insert_run(&record, &tasks).map_err(|error| format!("the run could not be stored: {error}"))?;
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

    fn new_run_id(&self, now: DateTime<Utc>) -> String {
        loop {
            let id = format!("{}-{:04x}", now.format("%Y%m%d-%H%M%S"), rand::random::<u16>());
            if !self.runs.contains_key(&id) && matches!(self.store.run(&id), Ok(None)) {
                return id;
            }
        }
    }

    /// Starts whatever can start, then ends the run if nothing is left to do.
    fn advance(&mut self, id: &str) {
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

    fn settle(&mut self, id: &str) {
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

    fn finish_run(&mut self, id: &str, state: RunState, error: Option<String>) {
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

    fn fire_timers(&mut self) {
        let now = self.now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                break;
            }
            match entry.remove() {
                Timer::Wake { run } => self.advance(&run),
                Timer::RunTimeout { run, after } => {
                    let reason = format!("the run exceeded its timeout of {}", humantime::format_duration(after));
                    self.stop_run(&run, RunState::Failed, reason);
                }
                Timer::Fire { workflow, scheduled } => self.fire(&workflow, scheduled, false),
                Timer::Settle { workflow, path } => self.settle_file(&workflow, &path),
                Timer::Housekeeping => {
                    let retention = self.registry.retention;
                    match self.store.trim(
                        retention.alerts,
                        retention.audit,
                        chrono::Duration::from_std(retention.processed_files).unwrap_or(chrono::Duration::MAX),
                        now,
                    ) {
                        Ok(0) => {}
                        Ok(removed) => {
                            tracing::info!("trimmed {removed} old alert, audit and processed-file record(s)")
                        }
                        Err(error) => tracing::debug!("trimming the store failed: {error}"),
                    }
                    self.add_timer(crate::clock::later(now, HOUSEKEEPING_EVERY), Timer::Housekeeping);
                }
                Timer::GateTimeout { run, task } => self.gate_expired(&run, &task),
            }
        }
    }

    fn add_timer(&mut self, at: DateTime<Utc>, timer: Timer) {
        self.timer_seq += 1;
        self.timers.insert((at, self.timer_seq), timer);
    }

    /// Cancels a run's running attempts and pending tasks; the run takes `target` once they have stopped.
    fn stop_run(&mut self, id: &str, target: RunState, reason: String) {
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
