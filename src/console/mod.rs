//! The console: a live dashboard over the engine's events. It owns no engine state: a view model fed by
//! events and by snapshots read from the store in the background, drawn only when something changed.

mod all_runs;
mod backfill;
mod change_feed;
mod clipboard;
mod command_line;
mod config;
mod details;
mod engines;
mod gate;
mod graph;
mod keymap;
mod keys;
mod layout;
mod link;
mod logview;
mod model;
mod monitor;
mod pager;
mod params_form;
mod popups;
mod theme;
mod ui;

#[cfg(test)]
mod tests;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::Utc;
use crossterm::event::{DisableMouseCapture, EnableMouseCapture};
use ratatui::layout::Rect;
use tokio::sync::mpsc;

pub use engines::ONE_ENGINE;
pub use keymap::{Action, Keymap};
pub use keys::{handle_key, handle_mouse};
pub use layout::Areas;
pub use logview::{LogIndex, LogView, WindowRequest, extend_index};
pub use model::{Effect, Model, Pane, Popup, Snapshot, WorkflowRow};
pub use theme::Theme;
pub use ui::{Chrome, draw};

use crate::definition::{Catalog, load_folder};
use crate::store::{AttemptRecord, AuditRecord, FireRecord, Store, StoreLocation, TaskRecord};
use link::Link;

/// What reaches the screen's loop.
enum Message {
    Input(crossterm::event::Event),
    Engine(Box<crate::engine::Event>),
    /// The engine's event stream fell behind: read the store again.
    Resync,
    Snapshot(Snapshot),
    /// Attached to a shared store: the runs, tasks and attempts written since the last read, and alerts,
    /// pauses and engines whole (`Model::apply_changes`).
    Changes(Snapshot),
    RunLoaded(String, Vec<TaskRecord>, Vec<AttemptRecord>),
    Index(PathBuf, Arc<LogIndex>),
    Search(PathBuf, String, Vec<usize>),
    Window(PathBuf, logview::WindowKey, Vec<String>),
    /// What the engine answered to a command; for a trigger, the workflow and the run it started.
    Reply(Result<String, String>, Option<(String, String)>),
    Catalog(Box<Catalog>),
    /// The embedded engine ended on a fault: the console leaves, with a failure status and the reason.
    EngineFailed(String),
    /// Attached to a daemon: commands and fires it recorded since the last read, for the engine log.
    Trail(Vec<AuditRecord>, Vec<FireRecord>),
    /// What the run details view asked the store for.
    Details(String, Box<details::Loaded>),
}

const CHANNEL: usize = 1024;

/// How long the input thread waits for a key before it looks at its gate: the longest `o` waits before the
/// pager gets the terminal. Each wake costs a little CPU at rest (measured: 100 ms doubled the console's idle
/// CPU, 0.17 % → 0.25-0.42 % of a core).
const INPUT_POLL: Duration = Duration::from_millis(250);

/// The console on the records at `location`: with the state folder's SQLite file it embeds an engine (or
/// attaches to the daemon holding the folder); with a PostgreSQL store it attaches to the engines sharing it.
pub fn run(workflows: &Path, state: &Path, location: &StoreLocation) -> ExitCode {
    if !workflows.is_dir() {
        eprintln!("conveyor: {}: no such folder (set --workflows DIR)", workflows.display());
        return ExitCode::FAILURE;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("conveyor: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(run_async(workflows.to_path_buf(), state.to_path_buf(), location.clone()));
    // An expression past its budget may still be computing on a blocking thread: it does not hold the exit.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    code
}

async fn run_async(workflows: PathBuf, state: PathBuf, location: StoreLocation) -> ExitCode {
    let catalog = load_folder(&workflows);
    let config_text = config::path().and_then(|path| std::fs::read_to_string(path).ok());
    let (keymap, theme, problems) = config::load(config_text.as_deref(), Theme::from_env());
    for problem in problems {
        tracing::warn!("{problem}");
    }
    let store = match crate::store::open(&state, &location) {
        Ok(store) => Arc::new(Mutex::new(store)),
        Err(error) => {
            eprintln!("conveyor: {error}");
            return ExitCode::FAILURE;
        }
    };
    // The terminal first: if there is none, no engine is started only to be left behind.
    let mut terminal = match ratatui::try_init() {
        Ok(terminal) => terminal,
        Err(error) => {
            eprintln!("conveyor: cannot set up the terminal: {error}");
            return ExitCode::FAILURE;
        }
    };
    let link = match Link::connect(&workflows, &state, &location, &catalog).await {
        Ok(link) => link,
        Err(error) => {
            ratatui::restore();
            eprintln!("conveyor: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _ = crossterm::execute!(std::io::stdout(), EnableMouseCapture);
    // ratatui's own hook restores the screen on a panic; mouse capture, which it did not turn on, is ours.
    let restore_screen = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
        restore_screen(info);
    }));
    let (tx, rx) = mpsc::channel(CHANNEL);
    let input = Arc::new(pager::InputGate::default());
    spawn_input(tx.clone(), input.clone());
    link.forward_events(tx.clone(), &store);
    let mut console = Console {
        model: Model::new(WorkflowRow::from_catalog(&catalog, Utc::now()), link.attached(), Utc::now()),
        routes: routes_of(&catalog),
        keymap,
        theme,
        link,
        store,
        tx,
        workflows,
        indexing: false,
        reindex: false,
        // The engine's INFO lines from there are alerts, which the monitor already shows by their severity.
        logger: tui_logger::TuiWidgetState::new()
            .set_level_for_target("conveyor::engine::actor::durability", tui_logger::LevelFilter::Warn),
        watcher: monitor::Watcher::default(),
        failure: None,
        input,
        state: state.clone(),
        repaint: false,
        backfill: None,
    };
    console.model.route_notes = route_notes(&catalog);
    console.model.cluster = match &location {
        StoreLocation::StateFolder => None,
        StoreLocation::Postgres(url) => Some(url.place()),
    };
    console.load_snapshot();
    let code = console.run(rx, &mut terminal).await;
    let _ = crossterm::execute!(std::io::stdout(), DisableMouseCapture);
    ratatui::restore();
    if let Some(reason) = &console.failure {
        eprintln!("conveyor: the engine stopped: {reason}");
    }
    // A backfill under way starts nothing more: its runs go on in a daemon, or stop resumable with this engine.
    if let Some(running) = &console.backfill {
        backfill::stop(running);
    }
    console.link.close().await;
    code
}

fn routes_of(catalog: &Catalog) -> Vec<String> {
    catalog.registry.services.keys().chain(catalog.registry.agents.keys()).cloned().collect()
}

/// `service · at most 2 at once · Reads new grant applications…`: what the reroute picker says beside each
/// route's name.
fn route_notes(catalog: &Catalog) -> std::collections::HashMap<String, String> {
    let kinds = [("service", &catalog.registry.services), ("agent", &catalog.registry.agents)];
    kinds
        .into_iter()
        .flat_map(|(kind, routes)| {
            routes.iter().map(move |(name, endpoint)| {
                let mut note = kind.to_string();
                if let Some(bound) = endpoint.max_concurrency {
                    note.push_str(&format!(" · at most {bound} at once"));
                }
                if let Some(description) = &endpoint.description {
                    note.push_str(&format!(" · {description}"));
                }
                (name.clone(), note)
            })
        })
        .collect()
}

/// Terminal input, read on a thread of its own (crossterm's reads block). It polls briefly rather than blocking
/// in a read, so that it can stop at the gate while a pager has the terminal.
fn spawn_input(tx: mpsc::Sender<Message>, gate: Arc<pager::InputGate>) {
    std::thread::spawn(move || {
        pager::input_loop(
            &gate,
            || crossterm::event::poll(INPUT_POLL),
            crossterm::event::read,
            |event| tx.blocking_send(Message::Input(event)).is_ok(),
        );
    });
}

struct Console {
    model: Model,
    routes: Vec<String>,
    keymap: Keymap,
    theme: Theme,
    link: Link,
    store: Arc<Mutex<Store>>,
    tx: mpsc::Sender<Message>,
    workflows: PathBuf,
    indexing: bool,
    /// The log grew while it was being indexed: index again when that is done.
    reindex: bool,
    /// Why the embedded engine ended, if a fault ended it.
    failure: Option<String>,
    logger: tui_logger::TuiWidgetState,
    /// What the engine log has said, so that only changes make lines.
    watcher: monitor::Watcher,
    /// Stops the input thread while a pager has the terminal.
    input: Arc<pager::InputGate>,
    /// This host's state folder: backfill plans there, and a log of another host (on a cluster) is kept
    /// there for the viewer. Kept here so the screen's thread never waits on the store's lock for it.
    state: PathBuf,
    /// The screen was given away (to a pager): clear it and draw everything at the next frame.
    repaint: bool,
    /// The brakes of the backfill `:backfill` started, while it walks.
    backfill: Option<Arc<crate::backfill::Drive>>,
}

impl Console {
    async fn run(&mut self, mut rx: mpsc::Receiver<Message>, terminal: &mut ratatui::DefaultTerminal) -> ExitCode {
        let mut dirty = true;
        loop {
            if dirty {
                if std::mem::take(&mut self.repaint) {
                    let _ = terminal.clear();
                }
                self.model.now = Utc::now();
                tui_logger::move_events();
                let mut stdout = std::io::stdout();
                let _ = crossterm::queue!(stdout, crossterm::terminal::BeginSynchronizedUpdate);
                let chrome =
                    Chrome { theme: &self.theme, keymap: &self.keymap, utc: false, engine_log: Some(&self.logger) };
                let model = &mut self.model;
                let drawn = terminal.draw(|frame| {
                    // Keys and clicks until the next frame are measured against the size this one is drawn at.
                    model.screen = frame.area();
                    draw(frame, model, &chrome)
                });
                if let Err(error) = drawn {
                    tracing::error!("drawing failed: {error}");
                }
                let _ = crossterm::execute!(stdout, crossterm::terminal::EndSynchronizedUpdate);
                let _ = stdout.flush();
                dirty = false;
                self.read_log_window();
            }
            // Elapsed times and relative fire times need a clock only while something moves.
            let tick = if self.model.active_runs() > 0 { Duration::from_secs(1) } else { Duration::from_secs(30) };
            let message = tokio::select! {
                message = rx.recv() => message,
                _ = tokio::time::sleep(tick) => { dirty = true; continue; }
            };
            let Some(message) = message else { return ExitCode::SUCCESS };
            match self.handle(message) {
                Some(Flow::Quit) => return ExitCode::SUCCESS,
                Some(Flow::Failed) => return ExitCode::FAILURE,
                Some(Flow::Redraw) => dirty = true,
                None => {}
            }
        }
    }

    fn handle(&mut self, message: Message) -> Option<Flow> {
        match message {
            Message::Input(event) => return self.input(event),
            Message::Engine(event) => {
                let lines = self.watcher.event(&event, Utc::now());
                monitor::emit(&lines);
                if matches!(*event, crate::engine::Event::Reloaded { .. }) {
                    self.load_catalog();
                }
                if let crate::engine::Event::Log { run_id, task, attempt, .. } = &*event
                    && self
                        .model
                        .log
                        .as_ref()
                        .is_some_and(|l| &l.run == run_id && &l.task == task && l.attempt == *attempt)
                {
                    self.index_log();
                    return None;
                }
                if let Some(effect) = details::reload_on(&self.model, &event) {
                    self.effect(effect);
                }
                if !self.model.apply(&event) && lines.is_empty() {
                    return None;
                }
            }
            Message::Resync => self.load_snapshot(),
            Message::EngineFailed(reason) => {
                self.failure = Some(reason);
                return Some(Flow::Failed);
            }
            Message::Snapshot(snapshot) => {
                monitor::emit(&self.watcher.snapshot(&snapshot, Utc::now()));
                self.model.apply_snapshot(snapshot);
                if self.model.attached && self.model.log.is_some() {
                    self.index_log();
                }
            }
            Message::Changes(changes) => {
                monitor::emit(&self.watcher.changes(&changes, Utc::now()));
                for run in self.model.apply_changes(changes) {
                    self.load_run(run);
                }
                if self.model.log.is_some() {
                    self.index_log();
                }
            }
            Message::RunLoaded(run, tasks, attempts) => {
                if let Some(effect) = self.model.run_loaded(run, tasks, attempts) {
                    self.effect(effect);
                }
            }
            Message::Index(path, index) => {
                self.indexing = false;
                if let Some(log) = self.model.log.as_mut().filter(|log| log.path == path) {
                    log.set_index(index);
                }
                if std::mem::take(&mut self.reindex) {
                    self.index_log();
                }
            }
            Message::Search(path, query, matches) => {
                if let Some(log) = self.model.log.as_mut().filter(|log| log.path == path) {
                    let found = !matches.is_empty();
                    log.search = Some((query.clone(), matches));
                    log.mark = None;
                    if found {
                        log.next_match(true);
                    } else {
                        self.model.set_status(format!("no line contains `{query}`"));
                    }
                }
            }
            Message::Window(path, key, lines) => {
                let shown = self.model.log.as_mut().filter(|log| log.path == path);
                if !shown.is_some_and(|log| log.set_window(key, lines)) {
                    return None;
                }
            }
            Message::Reply(Ok(message), started) => {
                self.model.set_status(message);
                if let Some((workflow, run)) = started {
                    self.model.await_run(&workflow, run);
                }
            }
            Message::Reply(Err(error), _) => self.model.set_status(format!("refused: {error}")),
            Message::Trail(audits, fires) => monitor::emit(&self.watcher.trail(&audits, &fires)),
            Message::Catalog(catalog) => {
                self.routes = routes_of(&catalog);
                self.model.route_notes = route_notes(&catalog);
                self.model.workflows = WorkflowRow::from_catalog(&catalog, Utc::now());
                self.model.clamp();
            }
            Message::Details(run, loaded) => details::loaded(&mut self.model, &run, *loaded),
        }
        self.request_selected_run();
        Some(Flow::Redraw)
    }

    fn input(&mut self, event: crossterm::event::Event) -> Option<Flow> {
        use crossterm::event::Event as Input;
        let effects = match event {
            Input::Key(key) if key.kind == crossterm::event::KeyEventKind::Press => {
                if layout::too_small(self.model.screen) {
                    // The "too small" screen only knows q.
                    keys::handle_key_too_small(&self.keymap, key)
                } else {
                    handle_key(&mut self.model, &self.keymap, key, &self.routes)
                }
            }
            Input::Mouse(mouse) => handle_mouse(&mut self.model, mouse, &self.routes),
            // Until the redraw, a key or click already meets the new size's layout.
            Input::Resize(width, height) => {
                self.model.screen = Rect::new(0, 0, width, height);
                Vec::new()
            }
            _ => return None,
        };
        for effect in effects {
            if let Some(Flow::Quit) = self.effect(effect) {
                return Some(Flow::Quit);
            }
        }
        self.request_selected_run();
        Some(Flow::Redraw)
    }

    fn effect(&mut self, effect: Effect) -> Option<Flow> {
        match effect {
            Effect::Quit => return Some(Flow::Quit),
            Effect::Send(command) => {
                let link = self.link.clone();
                let tx = self.tx.clone();
                let triggered = match &command {
                    crate::engine::Command::Trigger { workflow, .. } => Some(workflow.clone()),
                    _ => None,
                };
                tokio::spawn(async move {
                    let (result, started) = match link.send(command).await {
                        Ok(reply) => (Ok(reply.message), triggered.zip(reply.run)),
                        Err(error) => (Err(error), None),
                    };
                    let _ = tx.send(Message::Reply(result, started)).await;
                });
            }
            Effect::Backfill(request) => {
                if let Some(running) = self.backfill.take() {
                    backfill::stop(&running);
                }
                let state = self.state.clone();
                let (link, tx) = (self.link.clone(), self.tx.clone());
                let dry_run = request.dry_run;
                let brakes = backfill::start(request, link, self.workflows.clone(), state, tx, self.store.clone());
                if !dry_run {
                    self.backfill = Some(brakes);
                }
            }
            Effect::StopBackfill => match self.backfill.take() {
                Some(running) => {
                    backfill::stop(&running);
                    self.model.set_status("backfill: no new run starts; the runs started go on".to_string());
                }
                None => self.model.set_status("no backfill is running".to_string()),
            },
            Effect::OpenLog { run, task, attempt, path, jump_to_error } => {
                // A log written on another host is read through the store into this host's state folder:
                // the engine's path names a folder of that host.
                let path = if self.model.cluster.is_some() && !path.exists() {
                    crate::store::log_path_in(&self.state, &run, &task, attempt)
                } else {
                    path
                };
                let active = self.model.runs.values().flatten().any(|r| r.id == run && r.state.is_active());
                let workflow = self.model.workflow_of_run(&run);
                let mut view = LogView::new(run, task, attempt, path, active && !jump_to_error, jump_to_error);
                // Whose log it is, in full, for the title: looked up once, not on every frame.
                view.workflow = workflow;
                self.model.log = Some(view);
                self.indexing = false;
                self.index_log();
            }
            Effect::LoadRun(run) => self.load_run(run),
            Effect::LoadDetails(run) => {
                let (store, tx) = (self.store.clone(), self.tx.clone());
                tokio::task::spawn_blocking(move || {
                    let store = store.lock().expect("store lock");
                    let audit = store.audit_of_run(&run, details::AUDIT_READ).unwrap_or_default();
                    let loaded = details::Loaded {
                        run: store.run(&run).ok().flatten(),
                        tasks: store.tasks(&run).unwrap_or_default(),
                        attempts: store.attempts(&run, None).unwrap_or_default(),
                        // Parsed here, off the screen's thread.
                        commands: audit.iter().map(details::parse_command).collect(),
                        audit,
                    };
                    let _ = tx.blocking_send(Message::Details(run, Box::new(loaded)));
                });
            }
            Effect::SearchLog(query) => {
                if let Some(log) = &self.model.log {
                    let (path, tx) = (log.path.clone(), self.tx.clone());
                    tokio::task::spawn_blocking(move || {
                        let matches = logview::search(&path, &query);
                        let _ = tx.blocking_send(Message::Search(path, query, matches));
                    });
                }
            }
            Effect::EngineLog(event) => self.logger.transition(event),
            Effect::EngineLogTop => self.engine_log_top(),
            Effect::ToggleMouse => {
                self.model.mouse_captured = !self.model.mouse_captured;
                let _ = if self.model.mouse_captured {
                    crossterm::execute!(std::io::stdout(), EnableMouseCapture)
                } else {
                    crossterm::execute!(std::io::stdout(), DisableMouseCapture)
                };
            }
            Effect::Copy(text) => {
                let tmux = std::env::var_os("TMUX").is_some_and(|value| !value.is_empty());
                let mut stdout = std::io::stdout();
                let _ = stdout.write_all(clipboard::osc52(&text, tmux).as_bytes());
                let _ = stdout.flush();
            }
            Effect::Pager(path) => {
                let (gate, mouse) = (self.input.clone(), self.model.mouse_captured);
                // The pager has the terminal until it ends: this thread waits for it, the runtime's others go on.
                let shown = tokio::task::block_in_place(|| pager::show(&path, &gate, mouse));
                if let Err(error) = shown {
                    self.model.set_status(error);
                }
                self.repaint = true;
            }
        }
        None
    }

    fn engine_log_top(&mut self) {
        // The pane's inside, where the widget is drawn without its border; placed at the origin, as the
        // pages are drawn off screen.
        let inside = layout::inside(layout::areas(self.model.screen, None).monitor);
        let inside = Rect { x: 0, y: 0, ..inside };
        monitor::page_to_top(&self.logger, &self.theme, inside);
    }

    /// The selected run's tasks come from the store when the snapshot did not carry them.
    fn request_selected_run(&mut self) {
        let Some(run) = self.model.selected_run() else { return };
        if self.model.tasks.contains_key(&run.id) || self.model.loading.contains_key(&run.id) {
            return;
        }
        let id = run.id.clone();
        self.load_run(id);
    }

    fn load_run(&mut self, run: String) {
        self.model.loading.entry(run.clone()).or_default().reads += 1;
        let (store, tx) = (self.store.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let store = store.lock().expect("store lock");
            let tasks = store.tasks(&run).unwrap_or_default();
            let attempts = store.attempts(&run, None).unwrap_or_default();
            let _ = tx.blocking_send(Message::RunLoaded(run, tasks, attempts));
        });
    }

    fn load_snapshot(&mut self) {
        let (store, tx) = (self.store.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let snapshot = read_snapshot(&store.lock().expect("store lock"), true);
            let _ = tx.blocking_send(Message::Snapshot(snapshot));
        });
    }

    fn load_catalog(&mut self) {
        let (folder, tx) = (self.workflows.clone(), self.tx.clone());
        tokio::task::spawn_blocking(move || {
            let catalog = load_folder(&folder);
            let _ = tx.blocking_send(Message::Catalog(Box::new(catalog)));
        });
    }

    /// The drawn log pane says which lines it needs; they are read from the file in the background and the
    /// screen is drawn again when they come (the draw itself never touches the disk).
    fn read_log_window(&mut self) {
        let Some(request) = self.model.log.as_mut().and_then(LogView::window_request) else { return };
        let tx = self.tx.clone();
        tokio::task::spawn_blocking(move || {
            let lines = request.read();
            let _ = tx.blocking_send(Message::Window(request.path, request.key, lines));
        });
    }

    /// Extends the open log's index in the background; one job at a time.
    fn index_log(&mut self) {
        let Some(log) = &self.model.log else { return };
        if self.indexing {
            self.reindex = true;
            return;
        }
        self.indexing = true;
        let (path, index, tx) = (log.path.clone(), log.index.clone(), self.tx.clone());
        // A log with no file yet is read through the store and written out once, by the first indexing, for
        // the viewer, which works on files: every later indexing finds the file.
        let first = (log.index.end == 0).then(|| self.model.attempt(&log.run, &log.task, log.attempt).cloned());
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            if let Some(attempt) = first.flatten()
                && !path.exists()
            {
                let logs = store.lock().expect("store lock").logs();
                let mut text = Vec::new();
                match logs.open(&attempt).and_then(|mut log| std::io::Read::read_to_end(&mut log, &mut text)) {
                    Ok(_) => {
                        if let Err(error) = crate::tasks::write_kept_log(&path, &text) {
                            tracing::warn!("cannot write the kept log to {}: {error}", path.display());
                        }
                    }
                    // Nothing printed yet, nothing kept: the file comes when the attempt writes to it.
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => tracing::warn!("cannot read the log of {}: {error}", path.display()),
                }
            }
            let next = Arc::new(logview::extend_index(&path, &index));
            let _ = tx.blocking_send(Message::Index(path, next));
        });
    }
}

enum Flow {
    Redraw,
    Quit,
    /// The embedded engine failed: leave with a failure status (the reason is in `Console::failure`).
    Failed,
}

/// What the console shows: recent runs, alerts, pauses, and the tasks of the runs that may have changed —
/// on the first read also those of each workflow's latest run. Later reads (attached to a daemon, every half
/// second) take only active runs and runs that ended in the last few seconds: a finished run's tasks no
/// longer change, and reading every workflow's latest run each time would be work done again and again.
pub fn read_snapshot(store: &Store, first: bool) -> Snapshot {
    let runs = store.runs(None, 2000).unwrap_or_default();
    let recently = Utc::now() - chrono::Duration::seconds(10);
    let mut latest = std::collections::HashSet::new();
    let mut tasks = Vec::new();
    let mut attempts = Vec::new();
    for run in &runs {
        let changing = run.state.is_active() || run.finished_at.is_some_and(|at| at > recently);
        let latest_of_its_workflow = latest.insert(run.workflow.clone());
        if changing || (first && latest_of_its_workflow) {
            tasks.extend(store.tasks(&run.id).unwrap_or_default());
            attempts.extend(store.attempts(&run.id, None).unwrap_or_default());
        }
    }
    Snapshot {
        runs,
        tasks,
        attempts,
        alerts: store.alerts(200).unwrap_or_default(),
        paused: store.paused_workflows().unwrap_or_default(),
        engines: store.engines().unwrap_or_default(),
    }
}
