//! The console's view model: what the screen shows, fed by engine events and store snapshots, changed by
//! keys. No I/O here; what a key asks for that needs the engine or the disk comes back as an `Effect`.

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;

use chrono::{DateTime, Utc};

use crate::definition::{Catalog, Param, Trigger};
use crate::engine::{Command, Event};
use crate::state::{RunState, TaskState};
use crate::store::{AlertRecord, AttemptRecord, EngineRecord, RunRecord, TaskRecord};

use super::all_runs::AllRuns;
use super::command_line::CommandLine;
use super::details::Details;
use super::graph::GraphView;
use super::logview::LogView;
use super::params_form::ParamsForm;

/// Runs kept in memory per workflow (the store has the rest).
pub const RUNS_SHOWN: usize = 100;
/// Alerts kept in memory (the store has the rest).
pub const ALERTS_SHOWN: usize = 200;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Pane {
    Workflows,
    Runs,
    Tasks,
    Log,
    Monitor,
}

impl Pane {
    pub const ORDER: [Pane; 5] = [Pane::Workflows, Pane::Runs, Pane::Tasks, Pane::Log, Pane::Monitor];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Workflows => "Workflows",
            Pane::Runs => "Runs",
            Pane::Tasks => "Tasks",
            Pane::Log => "Log",
            Pane::Monitor => "Monitor",
        }
    }
}

/// A full-screen view drawn in place of the five panes; Esc returns to them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// `i`: the selected run's trigger, input, outputs, errors, gate decisions and attempts.
    Details,
    /// `H`: every workflow's runs, newest first.
    AllRuns,
    /// `D`: the selected workflow's tasks as boxes and edges.
    Graph,
    /// Enter, `a` or `x` on a task waiting at a gate: its held items, to approve or reject.
    Gate,
    /// `M`: the engines sharing the store.
    Engines,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowRow {
    pub id: String,
    pub description: Option<String>,
    pub trigger: String,
    pub next_fire: Option<DateTime<Utc>>,
    pub scheduled: bool,
    /// The file's first problem, for files that did not load.
    pub broken: Option<String>,
    pub file: PathBuf,
    pub params: Vec<Param>,
    pub tasks: Vec<String>,
    /// How many attempts each task may take on its own route: its retries, plus one.
    pub attempt_limits: std::collections::BTreeMap<String, u32>,
    /// Each task's `depends_on`, when the workflow is a graph.
    pub graph: Vec<(String, Vec<String>)>,
}

impl WorkflowRow {
    pub fn from_catalog(catalog: &Catalog, now: DateTime<Utc>) -> Vec<WorkflowRow> {
        let mut rows: Vec<WorkflowRow> = catalog
            .workflows
            .iter()
            .map(|workflow| {
                let (next_fire, scheduled) = match &workflow.trigger {
                    Trigger::Schedule(schedule) => (schedule.next_after(now), true),
                    _ => (None, false),
                };
                WorkflowRow {
                    id: workflow.id.clone(),
                    description: workflow.description.clone(),
                    trigger: workflow.trigger.summary(),
                    next_fire,
                    scheduled,
                    broken: None,
                    file: workflow.file.clone(),
                    params: workflow.params.clone(),
                    tasks: workflow.tasks.iter().map(|task| task.name.clone()).collect(),
                    attempt_limits: workflow.tasks.iter().map(|task| (task.name.clone(), task.retries + 1)).collect(),
                    graph: if workflow.is_dag() {
                        workflow.tasks.iter().map(|task| (task.name.clone(), task.depends_on.clone())).collect()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        for (file, problems) in &catalog.broken {
            if file.file_name().is_some_and(|name| name == crate::definition::REGISTRY_FILE) && problems.is_empty() {
                continue;
            }
            let name = file.file_stem().map(|stem| stem.to_string_lossy().into_owned()).unwrap_or_default();
            rows.push(WorkflowRow {
                id: name,
                description: None,
                trigger: "broken".into(),
                next_fire: None,
                scheduled: false,
                broken: Some(problems.first().map(ToString::to_string).unwrap_or_default()),
                file: file.clone(),
                params: Vec::new(),
                tasks: Vec::new(),
                attempt_limits: Default::default(),
                graph: Vec::new(),
            });
        }
        rows.sort_by_key(|row| row.id.to_lowercase());
        rows
    }
}

/// What the store holds, read in the background when the console starts (and, attached to a daemon, every
/// half second).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub runs: Vec<RunRecord>,
    pub tasks: Vec<TaskRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub alerts: Vec<AlertRecord>,
    pub paused: BTreeSet<String>,
    /// The engines sharing the store (none on SQLite).
    pub engines: Vec<EngineRecord>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Popup {
    /// `c` on a run, `q` with runs active: Cancel is focused by default.
    Confirm { question: String, action: Box<Effect>, yes_focused: bool },
    /// `R`: a route to run the task on.
    Reroute {
        run: String,
        task: String,
        routes: Vec<String>,
        /// What each route is (`agent · Scores each application…`), beside its name.
        notes: Vec<String>,
        selected: usize,
    },
    /// `T`: values for a workflow's parameters and its input.
    Params(ParamsForm),
    /// `?`: the keys, scrolled down by `scroll` lines (a short terminal does not hold them all).
    Help { scroll: usize },
    /// `:` commands.
    CommandLine(CommandLine),
    /// Enter on an alert: its full text, scrolled down `scroll` lines.
    Alert { id: i64, scroll: u16 },
}

/// What the runtime does for the model: talk to the engine, read the disk, stop.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    Send(Command),
    /// Walk a schedule's past instants (`:backfill`), a run each, off the screen's thread.
    Backfill(super::backfill::Request),
    /// Stop starting the runs of the backfill under way.
    StopBackfill,
    OpenLog {
        run: String,
        task: String,
        attempt: u32,
        path: PathBuf,
        jump_to_error: bool,
    },
    /// Read a run's tasks and attempts from the store (a run older than what the snapshot held).
    LoadRun(String),
    SearchLog(String),
    ToggleMouse,
    Quit,
    /// Scrolls or filters the engine log (tui-logger's widget state, held by the runtime).
    EngineLog(tui_logger::TuiWidgetEvent),
    /// Scrolls the engine log to its oldest line.
    EngineLogTop,
    /// Read what the run details view shows beyond the lists: the run, its tasks and attempts, its audit.
    LoadDetails(String),
    /// Put text on the terminal's clipboard (OSC 52).
    Copy(String),
    /// Show a log file in `$PAGER`, the console's screen set aside meanwhile.
    Pager(PathBuf),
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Cursors {
    pub workflow: usize,
    pub run: usize,
    pub task: usize,
    pub alert: usize,
}

/// What is selected, by identity: rows come and go (reloads, new runs, filters), and the cursors are found
/// again from these, so a key acts on the row the operator chose, not on whatever slid into its place.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Selected {
    pub workflow: Option<String>,
    pub run: Option<String>,
    pub task: Option<String>,
    pub alert: Option<i64>,
}

/// Where the selection is among `ids`: at its id when listed; otherwise at the same place (kept in range),
/// which becomes the selection. An empty list keeps the id, for when a filter is cleared.
fn follow<T: PartialEq + Clone>(ids: &[T], selected: Option<T>, at: usize) -> (usize, Option<T>) {
    if ids.is_empty() {
        return (0, selected);
    }
    if let Some(index) = selected.as_ref().and_then(|id| ids.iter().position(|known| known == id)) {
        return (index, selected);
    }
    let index = at.min(ids.len() - 1);
    (index, Some(ids[index].clone()))
}

pub struct Model {
    pub attached: bool,
    /// The shared database the console is attached to (`user@host:port/db`), when it is one.
    pub cluster: Option<String>,
    pub workflows: Vec<WorkflowRow>,
    pub paused: BTreeSet<String>,
    pub runs: HashMap<String, Vec<RunRecord>>,
    pub tasks: HashMap<String, Vec<TaskRecord>>,
    pub attempts: HashMap<String, Vec<AttemptRecord>>,
    pub progress: HashMap<(String, String), f64>,
    pub alerts: Vec<AlertRecord>,
    /// The engines registered in a shared store, as last read (none on SQLite).
    pub engines: Vec<EngineRecord>,
    /// The row selected in the Engines view.
    pub engine_row: usize,
    pub focus: Pane,
    /// Row indexes as drawn, derived from `selected` whenever rows change.
    pub cursor: Cursors,
    pub selected: Selected,
    /// Text typed after `/`, per pane: a list shows only rows containing its own filter (the Runs list is not
    /// filtered by what was typed in Workflows); the log's is the search being typed.
    pub filters: HashMap<Pane, String>,
    /// A run whose tasks are being read because Enter or `l` asked to land on what needs attention there; the
    /// flag says whether to open the log (`l`) once they arrive.
    pub landing: Option<(String, bool)>,
    pub filtering: bool,
    /// A run the operator just triggered: selected as soon as its workflow's list shows it (attached to a
    /// daemon that is up to half a second later), so the next `l` opens its log and not the previous run's.
    pub awaited_run: Option<String>,
    pub popup: Option<Popup>,
    pub log: Option<LogView>,
    pub status: Option<String>,
    pub mouse_captured: bool,
    pub now: DateTime<Utc>,
    pub monitor_alerts: bool,
    /// Each registered service's and agent's kind and description, for the reroute picker.
    pub route_notes: HashMap<String, String>,
    /// `/` in the engine log: tui-logger's selector of workflows and levels is shown instead of the lines.
    pub monitor_selector: bool,
    /// The full-screen view replacing the panes, if any.
    pub view: Option<View>,
    pub details: Details,
    pub all_runs: AllRuns,
    pub graph_view: GraphView,
    /// Lines run from the `:` command line this session, oldest first, for Up/Down.
    pub command_history: Vec<String>,
    pub gate: super::gate::GateView,
    /// Runs whose tasks are being read from the store, with what events changed meanwhile: the read may
    /// predate those events, so their versions win when it arrives.
    pub loading: HashMap<String, ChangedWhileLoading>,
    /// The terminal's size, as the runtime last drew or was told on a resize: where clicks land and how far a
    /// page goes follow from it through `layout::areas`, the same places the drawing uses.
    pub screen: ratatui::layout::Rect,
}

/// Tasks and attempts of a run that events changed while its records were being read.
#[derive(Debug, Default, Clone)]
pub struct ChangedWhileLoading {
    /// Reads asked for and not yet arrived.
    pub reads: u32,
    tasks: std::collections::HashSet<String>,
    attempts: std::collections::HashSet<(String, u32)>,
}

impl Model {
    pub fn new(workflows: Vec<WorkflowRow>, attached: bool, now: DateTime<Utc>) -> Model {
        Model {
            attached,
            cluster: None,
            workflows,
            paused: BTreeSet::new(),
            runs: HashMap::new(),
            tasks: HashMap::new(),
            attempts: HashMap::new(),
            progress: HashMap::new(),
            alerts: Vec::new(),
            engines: Vec::new(),
            engine_row: 0,
            focus: Pane::Workflows,
            cursor: Cursors::default(),
            selected: Selected::default(),
            filters: HashMap::new(),
            landing: None,
            filtering: false,
            awaited_run: None,
            popup: None,
            log: None,
            status: None,
            mouse_captured: true,
            now,
            monitor_alerts: false,
            route_notes: HashMap::new(),
            monitor_selector: false,
            view: None,
            details: Details::default(),
            loading: HashMap::new(),
            all_runs: AllRuns::default(),
            graph_view: GraphView::default(),
            command_history: Vec::new(),
            gate: Default::default(),
            screen: Default::default(),
        }
    }

    /// Workflows as listed, under the Workflows filter whichever pane has focus.
    pub fn visible_workflows(&self) -> Vec<&WorkflowRow> {
        let filter = self.filter(Pane::Workflows).to_lowercase();
        self.workflows.iter().filter(|row| filter.is_empty() || row.id.to_lowercase().contains(&filter)).collect()
    }

    pub fn filter(&self, pane: Pane) -> &str {
        self.filters.get(&pane).map_or("", String::as_str)
    }

    /// The filter of the pane with focus, which `/` edits.
    pub fn focused_filter(&mut self) -> &mut String {
        self.filters.entry(self.focus).or_default()
    }

    pub fn selected_workflow(&self) -> Option<&WorkflowRow> {
        self.visible_workflows().get(self.cursor.workflow).copied()
    }

    pub fn visible_runs(&self) -> Vec<&RunRecord> {
        let Some(workflow) = self.selected_workflow() else { return Vec::new() };
        let filter = self.filter(Pane::Runs).to_lowercase();
        self.runs
            .get(&workflow.id)
            .map(|runs| {
                runs.iter()
                    .filter(|run| filter.is_empty() || run.id.contains(&filter) || run.state.as_str().contains(&filter))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn selected_run(&self) -> Option<&RunRecord> {
        self.visible_runs().get(self.cursor.run).copied()
    }

    pub fn visible_tasks(&self) -> Vec<&TaskRecord> {
        let Some(run) = self.selected_run() else { return Vec::new() };
        self.tasks.get(&run.id).map(|tasks| tasks.iter().collect()).unwrap_or_default()
    }

    pub fn selected_task(&self) -> Option<&TaskRecord> {
        self.visible_tasks().get(self.cursor.task).copied()
    }

    /// One attempt as the store last told it: the viewer reads its log through the store when it has no
    /// file (`AttemptRecord::log_text`).
    pub fn attempt(&self, run: &str, task: &str, attempt: u32) -> Option<&AttemptRecord> {
        self.attempts_of(run, task).into_iter().find(|a| a.attempt == attempt)
    }

    /// An engine as an operator knows it: `host:pid` while it is registered, else its number (`#7`).
    pub fn engine_name(&self, id: u64) -> String {
        match self.engines.iter().find(|engine| engine.id.0 == id) {
            Some(engine) => format!("{}:{}", engine.host, engine.pid),
            None => format!("#{id}"),
        }
    }

    pub fn attempts_of(&self, run: &str, task: &str) -> Vec<&AttemptRecord> {
        self.attempts.get(run).map(|all| all.iter().filter(|a| a.task == task).collect()).unwrap_or_default()
    }

    pub fn active_runs(&self) -> usize {
        self.runs.values().flatten().filter(|run| run.state.is_active()).count()
    }

    /// The workflow of a run the lists hold.
    pub fn workflow_of_run(&self, run: &str) -> Option<String> {
        self.runs.values().flatten().find(|known| known.id == run).map(|known| known.workflow.clone())
    }

    pub fn unacknowledged_alerts(&self) -> usize {
        self.alerts.iter().filter(|alert| alert.acked_at.is_none()).count()
    }

    /// Durations in seconds of the workflow's last finished runs, oldest first.
    pub fn durations(&self, workflow: &str, count: usize) -> Vec<f64> {
        let mut durations: Vec<f64> = self
            .runs
            .get(workflow)
            .into_iter()
            .flatten()
            .filter_map(|run| Some((run.finished_at? - run.started_at?).num_milliseconds() as f64 / 1000.0))
            .take(count)
            .collect();
        durations.reverse();
        durations
    }

    /// Share of the workflow's finished runs that succeeded, if any finished.
    pub fn success_rate(&self, workflow: &str) -> Option<f64> {
        let finished: Vec<&RunRecord> =
            self.runs.get(workflow).into_iter().flatten().filter(|run| run.state.is_finished()).collect();
        if finished.is_empty() {
            return None;
        }
        let ok = finished.iter().filter(|run| run.state == RunState::Succeeded).count();
        Some(ok as f64 / finished.len() as f64)
    }

    /// The median duration of the task's past successful runs, for an estimated progress.
    pub fn typical_duration(&self, workflow: &str, task: &str) -> Option<f64> {
        let runs = self.runs.get(workflow)?;
        let mut seconds: Vec<f64> = runs
            .iter()
            .filter_map(|run| self.tasks.get(&run.id))
            .flatten()
            .filter(|t| t.name == task && t.state == TaskState::Succeeded)
            .filter_map(|t| Some((t.finished_at? - t.started_at?).num_milliseconds() as f64 / 1000.0))
            .collect();
        if seconds.is_empty() {
            return None;
        }
        seconds.sort_by(f64::total_cmp);
        Some(seconds[seconds.len() / 2])
    }

    pub fn apply_snapshot(&mut self, snapshot: Snapshot) {
        self.paused = snapshot.paused;
        self.alerts = snapshot.alerts;
        self.engines = snapshot.engines;
        let mut runs: HashMap<String, Vec<RunRecord>> = HashMap::new();
        for run in snapshot.runs {
            runs.entry(run.workflow.clone()).or_default().push(run);
        }
        for list in runs.values_mut() {
            list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
            list.truncate(RUNS_SHOWN);
        }
        self.runs = runs;
        let mut tasks: HashMap<String, Vec<TaskRecord>> = HashMap::new();
        for task in snapshot.tasks {
            tasks.entry(task.run_id.clone()).or_default().push(task);
        }
        for list in tasks.values_mut() {
            list.sort_by_key(|task| task.position);
        }
        self.tasks.extend(tasks);
        let mut attempts: HashMap<String, Vec<AttemptRecord>> = HashMap::new();
        for attempt in snapshot.attempts {
            attempts.entry(attempt.run_id.clone()).or_default().push(attempt);
        }
        self.attempts.extend(attempts);
        self.forget_unlisted_runs();
        self.clamp();
    }

    /// Tasks, attempts and progress are kept only for runs the lists still show, so a console left open for
    /// months holds no more than it did on its first day.
    fn forget_unlisted_runs(&mut self) {
        let listed: std::collections::HashSet<&str> = self.runs.values().flatten().map(|run| run.id.as_str()).collect();
        self.tasks.retain(|run, _| listed.contains(run.as_str()));
        self.attempts.retain(|run, _| listed.contains(run.as_str()));
        self.progress.retain(|(run, _), _| listed.contains(run.as_str()));
        self.loading.retain(|run, _| listed.contains(run.as_str()));
    }

    /// Applies an engine event; whether the screen changed.
    pub fn apply(&mut self, event: &Event) -> bool {
        match event {
            Event::Run(run) => {
                let list = self.runs.entry(run.workflow.clone()).or_default();
                match list.iter_mut().find(|known| known.id == run.id) {
                    Some(known) => *known = run.clone(),
                    None => {
                        list.insert(0, run.clone());
                        if list.len() > RUNS_SHOWN {
                            list.truncate(RUNS_SHOWN);
                            self.forget_unlisted_runs();
                        }
                    }
                }
            }
            Event::Task(task) => self.upsert_task(task),
            // Attempts and progress add no row to any list: nothing to bring the cursors back to.
            Event::Attempt(attempt) => {
                self.upsert_attempt(attempt);
                return true;
            }
            Event::Progress { run_id, task, fraction, .. } => {
                self.progress.insert((run_id.clone(), task.clone()), *fraction);
                return true;
            }
            // The open log is read from its file; its lines on the event stream change nothing here.
            Event::Log { .. } => return false,
            // A known alert comes again when it is acknowledged: it changes in place.
            Event::Alert(alert) => match self.alerts.iter_mut().find(|known| known.id == alert.id) {
                Some(known) => *known = alert.clone(),
                None => {
                    self.alerts.insert(0, alert.clone());
                    self.alerts.truncate(ALERTS_SHOWN);
                }
            },
            Event::WorkflowPaused { workflow, paused } => {
                if *paused {
                    self.paused.insert(workflow.clone());
                } else {
                    self.paused.remove(workflow);
                }
            }
            Event::Reloaded { .. } | Event::Command { .. } | Event::Fire(_) => return false,
        }
        self.clamp();
        true
    }

    fn upsert_task(&mut self, task: &TaskRecord) {
        if let Some(changed) = self.loading.get_mut(&task.run_id) {
            changed.tasks.insert(task.name.clone());
        }
        let list = self.tasks.entry(task.run_id.clone()).or_default();
        match list.iter_mut().find(|known| known.name == task.name) {
            Some(known) => *known = task.clone(),
            None => {
                list.push(task.clone());
                list.sort_by_key(|task| task.position);
            }
        }
        if task.state != TaskState::Running {
            self.progress.remove(&(task.run_id.clone(), task.name.clone()));
        }
        super::gate::follow(self, task);
    }

    fn upsert_attempt(&mut self, attempt: &AttemptRecord) {
        if let Some(changed) = self.loading.get_mut(&attempt.run_id) {
            changed.attempts.insert((attempt.task.clone(), attempt.attempt));
        }
        let list = self.attempts.entry(attempt.run_id.clone()).or_default();
        match list.iter_mut().find(|a| a.task == attempt.task && a.attempt == attempt.attempt) {
            Some(known) => *known = attempt.clone(),
            None => list.push(attempt.clone()),
        }
    }

    /// Applies what changed in a shared store since the last read (`Message::Changes`): runs, tasks and
    /// attempts as upserts, alerts, pauses and engines whole. A run's tasks and attempts are taken only
    /// where its others are known (or being read): a run the console holds no tasks of gets them read whole
    /// instead, so its list is never one changed task out of many. Returns the runs to read.
    pub fn apply_changes(&mut self, changes: Snapshot) -> Vec<String> {
        self.paused = changes.paused;
        self.alerts = changes.alerts;
        self.engines = changes.engines;
        let mut touched = BTreeSet::new();
        for run in changes.runs {
            let list = self.runs.entry(run.workflow.clone()).or_default();
            match list.iter_mut().find(|known| known.id == run.id) {
                Some(known) => *known = run,
                None => {
                    touched.insert(run.workflow.clone());
                    list.push(run);
                }
            }
        }
        // In the order a snapshot lists them, however the changes came; the oldest fall off as they would.
        for workflow in touched {
            let list = self.runs.get_mut(&workflow).expect("touched above");
            list.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
            list.truncate(RUNS_SHOWN);
        }
        self.forget_unlisted_runs();
        let listed: std::collections::HashSet<String> =
            self.runs.values().flatten().map(|run| run.id.clone()).collect();
        let mut reads = BTreeSet::new();
        let mut known = |model: &Model, run: &String| {
            let known = model.tasks.contains_key(run) || model.loading.contains_key(run);
            if !known && listed.contains(run) {
                reads.insert(run.clone());
            }
            known
        };
        for task in changes.tasks {
            if known(self, &task.run_id) {
                self.upsert_task(&task);
            }
        }
        for attempt in changes.attempts {
            if known(self, &attempt.run_id) {
                self.upsert_attempt(&attempt);
            }
        }
        self.clamp();
        reads.into_iter().collect()
    }

    /// Brings every cursor back to its selected row after rows changed; a selected row that is gone gives way
    /// to the row now in its place, and a new workflow or run starts its runs or tasks from the top.
    pub fn clamp(&mut self) {
        let ids: Vec<String> = self.visible_workflows().iter().map(|row| row.id.clone()).collect();
        let before = self.selected.workflow.clone();
        (self.cursor.workflow, self.selected.workflow) = follow(&ids, before.clone(), self.cursor.workflow);
        if self.selected.workflow != before {
            self.awaited_run = None;
            if self.log.as_ref().is_some_and(|log| log.workflow != self.selected.workflow) {
                self.log = None;
            }
            self.cursor = Cursors { run: 0, task: 0, ..self.cursor };
            self.selected.run = None;
            self.selected.task = None;
        }
        let ids: Vec<String> = self.visible_runs().iter().map(|run| run.id.clone()).collect();
        if let Some(awaited) = self.awaited_run.take_if(|awaited| ids.contains(awaited)) {
            self.selected.run = Some(awaited);
        }
        let before = self.selected.run.clone();
        (self.cursor.run, self.selected.run) = follow(&ids, before.clone(), self.cursor.run);
        if self.selected.run != before {
            self.cursor.task = 0;
            self.selected.task = None;
        }
        let ids: Vec<String> = self.visible_tasks().iter().map(|task| task.name.clone()).collect();
        (self.cursor.task, self.selected.task) = follow(&ids, self.selected.task.take(), self.cursor.task);
        let ids: Vec<i64> = self.alerts.iter().map(|alert| alert.id).collect();
        (self.cursor.alert, self.selected.alert) = follow(&ids, self.selected.alert.take(), self.cursor.alert);
    }

    /// Selects the workflow at a row of the list as shown (past the end, the last).
    pub fn select_workflow(&mut self, index: usize) {
        let rows = self.visible_workflows();
        if let Some(id) = rows.get(index.min(rows.len().saturating_sub(1))).map(|row| row.id.clone()) {
            self.choose_workflow(id);
        }
        self.clamp();
    }

    /// Selects a workflow by id, clearing the Workflows filter when it hides it; whether it exists.
    pub fn select_workflow_id(&mut self, id: &str) -> bool {
        if !self.visible_workflows().iter().any(|row| row.id == id) {
            self.filters.remove(&Pane::Workflows);
        }
        if !self.visible_workflows().iter().any(|row| row.id == id) {
            return false;
        }
        self.choose_workflow(id.to_string());
        self.clamp();
        true
    }

    /// Selects the run at a row of the list as shown (past the end, the last).
    pub fn select_run(&mut self, index: usize) {
        let rows = self.visible_runs();
        if let Some(id) = rows.get(index.min(rows.len().saturating_sub(1))).map(|run| run.id.clone()) {
            self.choose_run(id);
        }
        self.clamp();
    }

    /// Selects a run of the selected workflow by id, clearing the Runs filter when it hides it.
    pub fn select_run_id(&mut self, id: &str) -> bool {
        if !self.visible_runs().iter().any(|run| run.id == id) {
            self.filters.remove(&Pane::Runs);
        }
        if !self.visible_runs().iter().any(|run| run.id == id) {
            return false;
        }
        self.choose_run(id.to_string());
        self.clamp();
        true
    }

    /// Selects a run the operator started once it is listed (now, if it already is), when its workflow is
    /// the one selected.
    pub fn await_run(&mut self, workflow: &str, run: String) {
        if self.selected.workflow.as_deref() == Some(workflow) {
            self.awaited_run = Some(run);
            self.clamp();
        }
    }

    /// A different workflow starts its runs and tasks from the top, and the log of another workflow's task
    /// closes: the Log pane never shows what the selection is not about.
    fn choose_workflow(&mut self, id: String) {
        if self.log.as_ref().is_some_and(|log| log.workflow.as_ref().is_some_and(|workflow| *workflow != id)) {
            self.log = None;
        }
        if self.selected.workflow.as_ref() != Some(&id) {
            self.awaited_run = None;
            self.selected = Selected { workflow: Some(id), run: None, task: None, ..self.selected.clone() };
            self.cursor = Cursors { run: 0, task: 0, ..self.cursor };
        }
    }

    /// A different run starts its tasks from the top.
    fn choose_run(&mut self, id: String) {
        self.awaited_run = None;
        if self.selected.run.as_ref() != Some(&id) {
            self.selected.run = Some(id);
            self.selected.task = None;
            self.cursor.task = 0;
        }
    }

    /// Selects the task at a row of the list (past the end, the last).
    pub fn select_task(&mut self, index: usize) {
        let rows = self.visible_tasks();
        if let Some(task) = rows.get(index.min(rows.len().saturating_sub(1))) {
            self.selected.task = Some(task.name.clone());
        }
        self.clamp();
    }

    /// Selects the alert at a row of the list (past the end, the last).
    pub fn select_alert(&mut self, index: usize) {
        if let Some(alert) = self.alerts.get(index.min(self.alerts.len().saturating_sub(1))) {
            self.selected.alert = Some(alert.id);
        }
        self.clamp();
    }

    pub fn set_status(&mut self, text: impl Into<String>) {
        self.status = Some(text.into());
    }

    /// The log of the selected task's latest attempt, landing on the first error when asked.
    pub fn open_log_effect(&self, jump_to_error: bool) -> Option<Effect> {
        let run = self.selected_run()?;
        let task = self.selected_task()?;
        let attempt = self.attempts_of(&run.id, &task.name).into_iter().max_by_key(|a| a.attempt)?;
        Some(Effect::OpenLog {
            run: run.id.clone(),
            task: task.name.clone(),
            attempt: attempt.attempt,
            path: attempt.log_path.clone(),
            jump_to_error,
        })
    }

    /// A run's tasks and attempts read from the store; lands on what needs attention when a key asked to while
    /// they were being read and the run is still selected.
    pub fn run_loaded(
        &mut self,
        run: String,
        mut tasks: Vec<TaskRecord>,
        mut attempts: Vec<AttemptRecord>,
    ) -> Option<Effect> {
        // What an event brought since the read was asked for is at least as new as the read: keep it (a
        // later change comes as an event of its own).
        let changed = match self.loading.get_mut(&run) {
            // Another read is on its way, which may predate the same events: they are kept for it too.
            Some(changed) if changed.reads > 1 => {
                changed.reads -= 1;
                changed.clone()
            }
            _ => self.loading.remove(&run).unwrap_or_default(),
        };
        let known_tasks = self.tasks.remove(&run).unwrap_or_default();
        for task in known_tasks.into_iter().filter(|task| changed.tasks.contains(&task.name)) {
            match tasks.iter_mut().find(|read| read.name == task.name) {
                Some(read) => *read = task,
                None => tasks.push(task),
            }
        }
        tasks.sort_by_key(|task| task.position);
        let known_attempts = self.attempts.remove(&run).unwrap_or_default();
        for attempt in known_attempts {
            if !changed.attempts.contains(&(attempt.task.clone(), attempt.attempt)) {
                continue;
            }
            match attempts.iter_mut().find(|read| read.task == attempt.task && read.attempt == attempt.attempt) {
                Some(read) => *read = attempt,
                None => attempts.push(attempt),
            }
        }
        self.tasks.insert(run.clone(), tasks);
        self.attempts.insert(run.clone(), attempts);
        self.clamp();
        let (_, open) = self.landing.take_if(|(waiting, _)| *waiting == run)?;
        if self.selected_run().is_none_or(|selected| selected.id != run) {
            return None;
        }
        let effect = self.land_on_attention();
        if open && effect.is_some() {
            self.focus = Pane::Log;
        }
        effect
    }

    /// What needs the operator first: on a failed run the cursor goes to its failed task and its latest
    /// attempt's log opens at the first error; on a run waiting at a gate, to the waiting task; on a running
    /// run, to the task running now, whose log opens following.
    pub fn land_on_attention(&mut self) -> Option<Effect> {
        let run = self.selected_run()?;
        let tasks = self.visible_tasks();
        let wanted = if run.state == RunState::Failed {
            TaskState::Failed
        } else if tasks.iter().any(|task| task.state == TaskState::WaitingApproval) {
            TaskState::WaitingApproval
        } else {
            TaskState::Running
        };
        let index = tasks.iter().position(|task| task.state == wanted)?;
        self.select_task(index);
        match wanted {
            TaskState::Failed => self.open_log_effect(true),
            TaskState::Running => self.open_log_effect(false),
            _ => None,
        }
    }
}
