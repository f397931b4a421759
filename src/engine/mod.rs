//! The engine: a library that takes commands on a channel, runs workflows task by task through executors,
//! writes every state change to the store, then announces it as an event.

mod actor;
mod alerts;
pub mod client;
mod command;
mod event;
mod gates;
pub use gates::{default_max_parallel, max_parallel_tasks};
mod leadership;
pub mod membership;
pub use membership::Membership;
pub use membership::hostname;
mod run;
mod scheduler;
mod transitions;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot, watch};

pub use command::{Command, CommandResult, Declined, Origin, Reply, current_user};
pub use event::Event;
pub use run::{INLINE_ROUTE, retry_delay};

use crate::clock::{SharedClock, SystemClock};
use crate::definition::{Registry, Workflow};
use crate::store::{StateLock, StoreError, StoreLocation};
use crate::tasks::SharedExecutor;

pub struct EngineConfig {
    /// Where task processes start, and against which relative paths in the registry resolve.
    pub workflows_dir: PathBuf,
    /// This host's logs, work files and lock; the records too unless `store` names a database.
    pub state_dir: PathBuf,
    /// Where the records live (the state folder's SQLite file by default).
    pub store: StoreLocation,
    pub clock: SharedClock,
    /// How many task attempts may run at once across all runs, unless the registry's `max_parallel_tasks`
    /// says otherwise.
    pub max_parallel: usize,
    /// Between SIGTERM and SIGKILL when a task is stopped.
    pub kill_grace: Duration,
    /// How often the store is checked for commands from other shells.
    pub command_poll: Duration,
    /// In-process executors by route name; they take precedence over the registry's entry of that name.
    pub executors: BTreeMap<String, SharedExecutor>,
    /// Make this process the reaper of orphaned task processes (`PR_SET_CHILD_SUBREAPER`), so that what a
    /// task leaves outside its process group is found and stopped when its attempt ends. Process-wide: the
    /// binary turns it on; a program embedding the engine that waits for children of its own may not.
    pub subreaper: bool,
    /// Told how long each step's store commit took (the metrics endpoint's histogram).
    pub commit_timer: Option<CommitTimer>,
    /// This process's place among the engines sharing a database, when the caller keeps one across engines
    /// (a daemon in standby); otherwise `open` joins by itself.
    pub membership: Option<Arc<Membership>>,
    /// On a shared database: whether `open` starts a worker of its own to run offered attempts. A daemon runs
    /// one for its whole life, standby or leading, and says no.
    pub own_worker: bool,
}

/// Hears how long a store commit took; called on the engine's own task, so it must be quick.
pub type CommitTimer = Arc<dyn Fn(Duration) + Send + Sync>;

impl EngineConfig {
    pub fn new(workflows_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            workflows_dir: workflows_dir.into(),
            state_dir: state_dir.into(),
            store: StoreLocation::StateFolder,
            clock: Arc::new(SystemClock),
            max_parallel: gates::default_max_parallel(),
            kill_grace: Duration::from_secs(5),
            command_poll: Duration::from_millis(250),
            executors: BTreeMap::new(),
            subreaper: false,
            commit_timer: None,
            membership: None,
            own_worker: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
    /// Another engine sharing the database leads: this one may not run anything (hand the work to it).
    #[error("another engine leads the engines sharing this store ({0})")]
    Standby(String),
}

enum Request {
    Command(Command, Origin, oneshot::Sender<CommandResult>),
    Register(Box<Workflow>),
    Unregister(String),
    Start(String, oneshot::Sender<Result<(), String>>),
    StartAll(oneshot::Sender<Result<(), String>>),
    WatchFolder(oneshot::Sender<Result<(), String>>),
    Shutdown(oneshot::Sender<()>, Stop),
    /// Answered once every request sent before it has been handled and committed.
    Barrier(oneshot::Sender<()>),
    /// Ends the engine as a crash would: nothing more is written and no process is stopped.
    Abandon(oneshot::Sender<()>),
}

/// How an engine stops, which decides what the next engine does with runs it leaves active.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The engine stops (SIGTERM, quitting the console): the next engine applies each run's `on_interrupt`.
    Resumable,
    /// An operator stopped the runs (Ctrl-C of a foreground `conveyor run`): they wait for `conveyor resume`.
    ByOperator,
}

/// A handle on a running engine; clones share it.
#[derive(Clone)]
pub struct Engine {
    requests: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<Event>,
    /// `Some` once the engine has ended: `Ok` after a shutdown, `Err` with why after a fault.
    ended: watch::Receiver<Option<Result<(), String>>>,
    /// Set when it ended because another engine took the lead from it (not a fault of this process).
    stepped_down: Arc<std::sync::atomic::AtomicBool>,
}

/// How many events a slow subscriber may fall behind before it misses some (it is told, and can re-read
/// the store).
const EVENT_BUFFER: usize = 4096;

impl Engine {
    /// Takes the state folder's lock, opens the store, marks runs left unfinished by an earlier engine as
    /// interrupted, and starts the engine on the current tokio runtime.
    pub fn open(mut config: EngineConfig, registry: Registry) -> Result<Engine, EngineError> {
        // Tasks start in the workflows folder: every path handed to them (output file, logs) must not
        // depend on where this process was started.
        config.workflows_dir = std::path::absolute(&config.workflows_dir).map_err(StoreError::Io)?;
        config.state_dir = std::path::absolute(&config.state_dir).map_err(StoreError::Io)?;
        let lock = StateLock::acquire(&config.state_dir)?;
        let store = crate::store::open(&config.state_dir, &config.store)?;
        let capacity = gates::max_parallel_tasks(&registry, config.max_parallel);
        let leadership = leadership::take_lead(&config, &store, capacity)?;
        if config.subreaper && !crate::tasks::reclaim::become_subreaper() {
            tracing::warn!(
                "cannot become the reaper of orphaned task processes: strays of a task are found only at the next start"
            );
        }
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let grace = config.kill_grace;
        let state_id = store.state_id()?;
        let stepped_down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut actor = actor::Actor::new(config, store, lock, registry, events.clone())?;
        if let Some(leadership) = leadership {
            actor.lead(leadership, Arc::clone(&stepped_down));
        }
        let (ended_tx, ended) = watch::channel(None);
        let running = tokio::spawn(actor.run(requests_rx));
        let stepping_down = Arc::clone(&stepped_down);
        tokio::spawn(async move {
            let outcome = match running.await {
                Ok(outcome) => outcome,
                Err(error) if error.is_panic() => {
                    Err(format!("the engine panicked: {}", panic_text(error.into_panic())))
                }
                // The runtime is going away: nothing is left to stop.
                Err(_) => Ok(()),
            };
            if let Err(reason) = &outcome {
                if stepping_down.load(std::sync::atomic::Ordering::SeqCst) {
                    tracing::warn!("{reason}: stopping every task process group this engine started");
                } else {
                    tracing::error!("{reason}: stopping every task process group before the process ends");
                }
                crate::tasks::reclaim::stop_spawned_groups(&state_id, grace).await;
            }
            ended_tx.send_replace(Some(outcome));
        });
        Ok(Engine { requests, events, ended, stepped_down })
    }

    /// Waits until the engine has ended: `Ok` after `shutdown`, `Err` with the reason after a fault (a panic,
    /// the store replaced under it) — after which the process should end with a failure status, so that a
    /// supervisor starts a new engine, which recovers what this one left.
    pub async fn ended(&self) -> Result<(), String> {
        let mut ended = self.ended.clone();
        match ended.wait_for(Option::is_some).await {
            Ok(outcome) => outcome.clone().unwrap_or(Ok(())),
            Err(_) => Err("the engine is gone".into()),
        }
    }

    /// Whether the engine ended because another engine sharing the database took the lead (its lease lapsed,
    /// or a commit was refused by term): not a fault; the process may wait to lead again.
    pub fn stepped_down(&self) -> bool {
        self.stepped_down.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Resolves once every request sent before it has been handled, committed and announced: a test waits
    /// on this instead of sleeping to show that something did not happen.
    pub async fn barrier(&self) -> Result<(), String> {
        self.ask(Request::Barrier).await
    }

    /// Makes a workflow known (or replaces its definition; runs in flight keep the one they started with).
    pub fn register(&self, workflow: Workflow) {
        let _ = self.requests.send(Request::Register(Box::new(workflow)));
    }

    /// Activates a registered workflow's trigger: its schedule (after catching up on fires missed while no
    /// engine ran, as its `catchup` says) or its file watch.
    pub async fn start(&self, workflow: &str) -> Result<(), String> {
        self.ask(|reply| Request::Start(workflow.to_string(), reply)).await?
    }

    /// Activates every registered workflow, and every workflow a reload of the folder adds later.
    pub async fn start_all(&self) -> Result<(), String> {
        self.ask(Request::StartAll).await?
    }

    /// Watches the workflows folder: added, changed and removed files take effect without a restart; a
    /// file that becomes invalid keeps its last good definition and raises an alert.
    pub async fn watch_workflows(&self) -> Result<(), String> {
        self.ask(Request::WatchFolder).await?
    }

    async fn ask<T>(&self, request: impl FnOnce(oneshot::Sender<T>) -> Request) -> Result<T, String> {
        let (reply, answer) = oneshot::channel();
        self.requests.send(request(reply)).map_err(|_| "the engine has stopped".to_string())?;
        answer.await.map_err(|_| "the engine has stopped".to_string())
    }

    pub fn unregister(&self, workflow: &str) {
        let _ = self.requests.send(Request::Unregister(workflow.to_string()));
    }

    /// Sends a command as this process's user, through the library API.
    pub async fn send(&self, command: Command) -> CommandResult {
        self.send_as(command, Origin::local("api")).await
    }

    pub async fn send_as(&self, command: Command, origin: Origin) -> CommandResult {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Command(command, origin, reply))
            .map_err(|_| "the engine has stopped".to_string())?;
        answer.await.map_err(|_| "the engine has stopped".to_string())?
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.events.subscribe()
    }

    /// Stops running tasks gracefully, leaves their runs interrupted for the next engine to recover as
    /// their `on_interrupt` says, and releases the lock.
    pub async fn shutdown(&self) {
        self.shutdown_as(Stop::Resumable).await
    }

    /// Ends the engine the way `kill -9` would, for tests of recovery: nothing more is written, task
    /// processes keep running, the state folder's lock is released.
    #[doc(hidden)]
    pub async fn simulate_crash(&self) {
        let _ = self.ask(Request::Abandon).await;
    }

    pub async fn shutdown_as(&self, stop: Stop) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Shutdown(done, stop)).is_ok() {
            let _ = finished.await;
        }
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(text) => *text,
        Err(payload) => payload.downcast::<&str>().map(|text| text.to_string()).unwrap_or_else(|_| "?".into()),
    }
}
