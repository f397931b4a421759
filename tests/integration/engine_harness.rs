//! A real engine on a temporary workflows folder and state folder, with helpers to wait for what it
//! announces.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use conveyor::clock::ManualClock;
use conveyor::definition::load_folder;
use conveyor::engine::{Command, Engine, EngineConfig, Event};
use conveyor::state::{RunState, TaskState};
use conveyor::store::{RunRecord, Store, TaskRecord};
use tokio::sync::broadcast;

pub const WAIT: Duration = Duration::from_secs(30);

pub struct Harness {
    pub dir: tempfile::TempDir,
    pub engine: Engine,
    pub events: broadcast::Receiver<Event>,
    clock: Option<ManualClock>,
    kill_grace: Duration,
}

type Prepare = Box<dyn FnOnce(&Store)>;

pub struct Setup {
    pub registry: String,
    pub workflows: Vec<String>,
    pub files: Vec<(String, String)>,
    pub clock: Option<ManualClock>,
    pub kill_grace: Duration,
    /// Runs on the store before the engine opens it (to stage what an earlier engine left).
    pub prepare: Option<Prepare>,
}

impl Setup {
    pub fn new(workflow: &str) -> Setup {
        Setup {
            registry: String::new(),
            workflows: vec![workflow.to_string()],
            files: Vec::new(),
            clock: None,
            kill_grace: Duration::from_millis(500),
            prepare: None,
        }
    }

    pub fn registry(mut self, text: &str) -> Setup {
        self.registry = text.to_string();
        self
    }

    pub fn file(mut self, name: &str, text: &str) -> Setup {
        self.files.push((name.to_string(), text.to_string()));
        self
    }

    pub fn clock(mut self, clock: &ManualClock) -> Setup {
        self.clock = Some(clock.clone());
        self
    }

    pub fn prepare(mut self, prepare: impl FnOnce(&Store) + 'static) -> Setup {
        self.prepare = Some(Box::new(prepare));
        self
    }

    pub fn start(self) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let folder = dir.path().join("workflows");
        std::fs::create_dir_all(&folder).unwrap();
        std::fs::write(folder.join("conveyor.toml"), &self.registry).unwrap();
        for (index, workflow) in self.workflows.iter().enumerate() {
            std::fs::write(folder.join(format!("w{index}.toml")), workflow).unwrap();
        }
        for (name, text) in &self.files {
            crate::common::write(&folder, name, text);
        }
        if let Some(prepare) = self.prepare {
            prepare(&Store::open(&dir.path().join("state")).unwrap());
        }
        let catalog = load_folder(&folder);
        let problems: Vec<String> = catalog.problems().map(ToString::to_string).collect();
        assert!(problems.is_empty(), "{problems:?}");
        let mut h = Harness {
            engine: open_engine(&folder, &dir.path().join("state"), self.clock.as_ref(), self.kill_grace),
            dir,
            events: broadcast::channel(1).1,
            clock: self.clock,
            kill_grace: self.kill_grace,
        };
        h.events = h.engine.subscribe();
        h
    }
}

fn open_engine(
    folder: &std::path::Path,
    state: &std::path::Path,
    clock: Option<&ManualClock>,
    grace: Duration,
) -> Engine {
    let catalog = load_folder(folder);
    let mut config = EngineConfig::new(folder, state);
    config.kill_grace = grace;
    config.command_poll = Duration::from_millis(50);
    if let Some(clock) = clock {
        config.clock = Arc::new(clock.clone());
    }
    // Another test's task spawning at the moment the last engine let go holds a copy of its lock until that
    // child execs: a few tries ride that out.
    let mut tries = 0;
    let engine = loop {
        match Engine::open(config, catalog.registry.clone()) {
            Ok(engine) => break engine,
            Err(conveyor::engine::EngineError::Store(conveyor::store::StoreError::Locked { .. })) if tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
                config = EngineConfig::new(folder, state);
                config.kill_grace = grace;
                config.command_poll = Duration::from_millis(50);
                if let Some(clock) = clock {
                    config.clock = Arc::new(clock.clone());
                }
            }
            Err(error) => panic!("the engine opens: {error}"),
        }
    };
    for workflow in catalog.workflows {
        engine.register(workflow);
    }
    engine
}

impl Harness {
    pub fn workflows(&self) -> PathBuf {
        self.dir.path().join("workflows")
    }

    pub fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn store(&self) -> Store {
        Store::open(&self.state()).unwrap()
    }

    /// A new engine on the same folders, once the current one has shut down (as after a restart); it
    /// becomes `self.engine`, and the events followed are its own.
    pub async fn restart(&mut self) {
        self.engine.shutdown().await;
        self.reopen();
    }

    /// A new engine on the same folders, with the same clock, after the current one ended (or crashed).
    /// Its first events come after it has subscribed; a test that must see recovery's first events waits on
    /// the store, or on later events.
    pub fn reopen(&mut self) {
        self.engine = open_engine(&self.workflows(), &self.state(), self.clock.as_ref(), self.kill_grace);
        self.events = self.engine.subscribe();
    }

    pub async fn trigger(&mut self, workflow: &str) -> String {
        let reply = self
            .engine
            .send(Command::Trigger { workflow: workflow.into(), input: None, params: Default::default() })
            .await
            .unwrap();
        reply.run.unwrap()
    }

    /// The next event that `pick` accepts.
    pub async fn until<T>(&mut self, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let event =
                tokio::time::timeout_at(deadline, self.events.recv()).await.expect("the awaited event came in time");
            match event {
                Ok(event) => {
                    if let Some(found) = pick(&event) {
                        return found;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(error) => panic!("event stream ended: {error}"),
            }
        }
    }

    pub async fn run_reaches(&mut self, run: &str, state: RunState) -> RunRecord {
        let run = run.to_string();
        self.until(|event| match event {
            Event::Run(record) if record.id == run && record.state == state => Some(record.clone()),
            Event::Run(record) if record.id == run && record.state.is_finished() => {
                panic!("run ended {} ({:?}), expected {state}", record.state, record.error)
            }
            _ => None,
        })
        .await
    }

    pub async fn task_reaches(&mut self, run: &str, task: &str, state: TaskState) -> TaskRecord {
        let (run, task) = (run.to_string(), task.to_string());
        self.until(|event| match event {
            Event::Task(record) if record.run_id == run && record.name == task && record.state == state => {
                Some(record.clone())
            }
            _ => None,
        })
        .await
    }

    /// Runs of `workflow` in the store, oldest first.
    pub fn runs_of(&self, workflow: &str) -> Vec<RunRecord> {
        let mut runs = self.store().runs(Some(workflow), 10_000).unwrap();
        runs.reverse();
        runs
    }

    pub fn task(&self, run: &str, name: &str) -> TaskRecord {
        self.store().tasks(run).unwrap().into_iter().find(|task| task.name == name).unwrap()
    }

    /// The attempt's log as `conveyor logs` shows it: its file, or the engine's lines kept in the store when it
    /// never got one.
    pub fn log(&self, run: &str, task: &str, attempt: u32) -> String {
        let store = self.store();
        let kept = store.attempts(run, Some(task)).unwrap().into_iter().find(|a| a.attempt == attempt);
        match std::fs::read_to_string(store.log_path(run, task, attempt)) {
            Ok(text) => text,
            Err(_) => kept.and_then(|attempt| attempt.log_text).unwrap_or_default(),
        }
    }
}

/// A process is gone, or a zombie nobody has reaped yet (as under a container's init).
pub fn process_is_gone(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')),
    }
}

pub fn pid_in_log(log: &str) -> i32 {
    let start = log.find("(pid ").expect("a started line") + 5;
    log[start..].split(')').next().unwrap().parse().unwrap()
}

pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + WAIT;
    while !condition() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
