//! The engine: a library that takes commands on a channel, runs workflows task by task through executors,
//! writes every state change to the store, then announces it as an event.

mod actor;
mod alerts;
mod clock;
mod command;
mod event;
mod run;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc, oneshot};

pub use clock::{Clock, ManualClock, SharedClock, Sleep, SystemClock};
pub use command::{Command, CommandResult, Origin, Reply, current_user};
pub use event::Event;
pub use run::{INLINE_ROUTE, retry_delay};

use crate::definition::{Registry, Workflow};
use crate::store::{StateLock, Store, StoreError};
use crate::tasks::SharedExecutor;

pub struct EngineConfig {
    /// Where task processes start, and against which relative paths in the registry resolve.
    pub workflows_dir: PathBuf,
    pub state_dir: PathBuf,
    pub clock: SharedClock,
    /// How many task attempts may run at once across all runs.
    pub max_parallel: usize,
    /// Between SIGTERM and SIGKILL when a task is stopped.
    pub kill_grace: Duration,
    /// How often the store is checked for commands from other shells.
    pub command_poll: Duration,
    /// In-process executors by route name; they take precedence over the registry's entry of that name.
    pub executors: BTreeMap<String, SharedExecutor>,
}

impl EngineConfig {
    pub fn new(workflows_dir: impl Into<PathBuf>, state_dir: impl Into<PathBuf>) -> EngineConfig {
        EngineConfig {
            workflows_dir: workflows_dir.into(),
            state_dir: state_dir.into(),
            clock: Arc::new(SystemClock),
            max_parallel: 16,
            kill_grace: Duration::from_secs(5),
            command_poll: Duration::from_millis(250),
            executors: BTreeMap::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the engine has stopped")]
    Stopped,
}

enum Request {
    Command(Command, Origin, oneshot::Sender<CommandResult>),
    Register(Box<Workflow>),
    Unregister(String),
    Start(String, oneshot::Sender<Result<(), String>>),
    StartAll(oneshot::Sender<Result<(), String>>),
    WatchFolder(oneshot::Sender<Result<(), String>>),
    Shutdown(oneshot::Sender<()>),
}

/// A handle on a running engine; clones share it.
#[derive(Clone)]
pub struct Engine {
    requests: mpsc::UnboundedSender<Request>,
    events: broadcast::Sender<Event>,
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
        let store = Store::open(&config.state_dir)?;
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let (events, _) = broadcast::channel(EVENT_BUFFER);
        let actor = actor::Actor::new(config, store, lock, registry, events.clone())?;
        tokio::spawn(actor.run(requests_rx));
        Ok(Engine { requests, events })
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

    /// Stops running tasks gracefully, leaves their runs interrupted (resumable), and releases the lock.
    pub async fn shutdown(&self) {
        let (done, finished) = oneshot::channel();
        if self.requests.send(Request::Shutdown(done)).is_ok() {
            let _ = finished.await;
        }
    }
}
