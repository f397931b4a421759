//! Keys: a configurable map from keys to actions, and what each action does to the model.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers, MouseButton, MouseEvent, MouseEventKind};

use super::model::{Effect, Model, Pane, Popup, View};
use super::ui::Areas;
use crate::engine::Command;
use crate::state::{RunState, TaskState};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PreviousPane,
    Open,
    Back,
    Trigger,
    TriggerWithParams,
    Pause,
    Retry,
    Reroute,
    Skip,
    Cancel,
    Approve,
    Reject,
    Log,
    Acknowledge,
    Filter,
    CommandLine,
    Help,
    Quit,
    Mouse,
    Follow,
    NextMatch,
    PreviousMatch,
    NextError,
    PreviousError,
    Wrap,
    PreviousAttempt,
    NextAttempt,
    MonitorTab,
    RunDetails,
    AllRuns,
    Graph,
    Copy,
    Pager,
}

/// Every action with its name in the config file, its default key, and what `?` says of it.
pub const BINDINGS: &[(Action, &str, &str, &str)] = &[
    (Action::Up, "up", "k", "move up"),
    (Action::Down, "down", "j", "move down"),
    (Action::Top, "top", "g", "first row / start of log"),
    (Action::Bottom, "bottom", "G", "last row / end of log"),
    (Action::Open, "open", "enter", "drill in (workflow → runs → tasks → log); on an alert, read it"),
    (Action::Back, "back", "esc", "back out, clear a filter"),
    (Action::NextPane, "next_pane", "tab", "next pane"),
    (Action::PreviousPane, "previous_pane", "backtab", "previous pane"),
    (Action::Trigger, "trigger", "t", "trigger the workflow now"),
    (Action::TriggerWithParams, "trigger_with_params", "T", "trigger with parameters"),
    (Action::Pause, "pause", "p", "pause/resume the workflow (Workflows) or the run"),
    (Action::Retry, "retry", "r", "retry the failed task"),
    (Action::Reroute, "reroute", "R", "run the task on another service or agent"),
    (Action::Skip, "skip", "s", "skip the task (its input passes on)"),
    (Action::Cancel, "cancel", "c", "cancel the run (asks first)"),
    (Action::Approve, "approve", "a", "approve at a gate (shows the held items first)"),
    (Action::Reject, "reject", "x", "reject at a gate (shows the held items first)"),
    (Action::Log, "log", "l", "open the task's log"),
    (Action::Acknowledge, "acknowledge", "A", "acknowledge the alert"),
    (Action::Filter, "filter", "/", "filter the list / search the log / pick engine log workflows"),
    (Action::CommandLine, "command", ":", "command line: :trigger NAME -p k=v, :retry, … (Tab completes)"),
    (Action::Help, "help", "?", "this help"),
    (Action::Quit, "quit", "q", "quit (asks when runs are active)"),
    (Action::Mouse, "mouse", "m", "mouse capture on/off (off lets you select text)"),
    (Action::Follow, "follow", "f", "log: follow new lines"),
    (Action::NextMatch, "next_match", "n", "log: next search match"),
    (Action::PreviousMatch, "previous_match", "N", "log: previous search match"),
    (Action::NextError, "next_error", "e", "log: next error"),
    (Action::PreviousError, "previous_error", "E", "log: previous error"),
    (Action::Wrap, "wrap", "w", "log: wrap long lines"),
    (Action::PreviousAttempt, "previous_attempt", "[", "log: previous attempt"),
    (Action::NextAttempt, "next_attempt", "]", "log: next attempt"),
    (Action::MonitorTab, "monitor_tab", "v", "monitor: engine log / alerts"),
    (Action::RunDetails, "run_details", "i", "run details: trigger, input, outputs, gate decisions, attempts"),
    (Action::AllRuns, "all_runs", "H", "all runs of every workflow (filter, sort, next failed/waiting)"),
    (Action::Graph, "graph", "D", "the workflow's tasks as a graph"),
    (Action::Copy, "copy", "y", "copy the run id, task, workflow, alert or log line (OSC 52)"),
    (Action::Pager, "pager", "o", "open the log in $PAGER"),
];

#[derive(Debug, Clone)]
pub struct Keymap {
    keys: HashMap<(KeyCode, bool), Action>,
}

impl Default for Keymap {
    fn default() -> Keymap {
        let mut keymap = Keymap { keys: HashMap::new() };
        for (action, _, key, _) in BINDINGS {
            keymap.bind(key, *action).expect("default keys parse");
        }
        for (key, action) in [
            ("up", Action::Up),
            ("down", Action::Down),
            ("home", Action::Top),
            ("end", Action::Bottom),
            ("pageup", Action::PageUp),
            ("pagedown", Action::PageDown),
            // In raw mode Ctrl-C is a key, not a signal: it quits as `q` does, asking first when runs are active.
            ("ctrl-c", Action::Quit),
        ] {
            keymap.bind(key, action).expect("default keys parse");
        }
        keymap
    }
}

impl Keymap {
    /// Binds a key written as in the config file: a character, or `enter`, `esc`, `tab`, `backtab`, `up`,
    /// `down`, `left`, `right`, `home`, `end`, `pageup`, `pagedown`, `f1`…`f12`, optionally `ctrl-`.
    pub fn bind(&mut self, key: &str, action: Action) -> Result<(), String> {
        let (ctrl, name) = match key.strip_prefix("ctrl-") {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let code = match name.to_ascii_lowercase().as_str() {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap())
            }
            _ if name.chars().count() == 1 => KeyCode::Char(name.chars().next().unwrap()),
            _ => return Err(format!("unknown key `{key}`")),
        };
        self.keys.insert((code, ctrl), action);
        Ok(())
    }

    pub fn action(&self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        self.keys.get(&(key.code, ctrl)).copied()
    }

    /// The one key shown for an action in the bottom bar, where room is short: the plainest.
    pub fn short_label(&self, action: Action) -> String {
        self.labels(action).into_iter().next().unwrap_or_default()
    }

    /// Every key of an action, as the help shows them.
    pub fn label(&self, action: Action) -> String {
        self.labels(action).join("/")
    }

    /// The keys of an action, single characters first.
    fn labels(&self, action: Action) -> Vec<String> {
        let mut labels: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, bound)| **bound == action)
            .map(|((code, ctrl), _)| {
                let name = match code {
                    KeyCode::Char(c) => c.to_string(),
                    KeyCode::Enter => "Enter".into(),
                    KeyCode::Esc => "Esc".into(),
                    KeyCode::Tab => "Tab".into(),
                    KeyCode::BackTab => "S-Tab".into(),
                    KeyCode::Up => "↑".into(),
                    KeyCode::Down => "↓".into(),
                    KeyCode::Home => "Home".into(),
                    KeyCode::End => "End".into(),
                    KeyCode::PageUp => "PgUp".into(),
                    KeyCode::PageDown => "PgDn".into(),
                    other => format!("{other:?}"),
                };
                if *ctrl { format!("C-{name}") } else { name }
            })
            .collect();
        labels.sort_by_key(|label| (label.chars().count() > 1, label.clone()));
        labels
    }
}

/// A key on a screen too small to show the panes: only quitting acts, so no key does what the operator
/// cannot see.
pub fn handle_key_too_small(keymap: &Keymap, key: KeyEvent) -> Vec<Effect> {
    match keymap.action(key) {
        Some(Action::Quit) => vec![Effect::Quit],
        _ => Vec::new(),
    }
}

/// Handles one key; what it asks of the runtime comes back as effects.
pub fn handle_key(model: &mut Model, keymap: &Keymap, key: KeyEvent, routes: &[String]) -> Vec<Effect> {
    model.status = None;
    if model.popup.is_some() {
        return super::popups::popup_key(model, key, routes);
    }
    if let Some(view) = model.view {
        return view_key(model, keymap, key, view, routes);
    }
    if model.filtering {
        match key.code {
            KeyCode::Esc => {
                model.filtering = false;
                model.focused_filter().clear();
            }
            KeyCode::Enter => {
                model.filtering = false;
                if model.focus == Pane::Log && !model.focused_filter().is_empty() {
                    let query = std::mem::take(model.focused_filter());
                    return vec![Effect::SearchLog(query)];
                }
            }
            KeyCode::Backspace => {
                model.focused_filter().pop();
            }
            KeyCode::Char(c) => model.focused_filter().push(c),
            _ => {}
        }
        model.clamp();
        return Vec::new();
    }
    let action = keymap.action(key);
    if let Some(effects) = super::monitor::monitor_key(model, key, action) {
        return effects;
    }
    let Some(action) = action else { return Vec::new() };
    act(model, action, routes)
}

/// A key in a full-screen view: the view's own keys first; then Esc back to the panes, the keys that open
/// views, and those that act anywhere (quit, help, mouse, command line). Pane keys do nothing here: what
/// they would act on is not on the screen.
fn view_key(model: &mut Model, keymap: &Keymap, key: KeyEvent, view: View, routes: &[String]) -> Vec<Effect> {
    let action = keymap.action(key);
    let handled = match view {
        View::Details => super::details::key(model, action),
        View::AllRuns => super::all_runs::key(model, action, key),
        View::Graph => super::graph::key(model, action, key),
        View::Gate => super::gate::key(model, action, key),
    };
    if let Some(effects) = handled {
        return effects;
    }
    match action {
        Some(Action::Back) => {
            model.view = None;
            Vec::new()
        }
        Some(
            action @ (Action::RunDetails
            | Action::AllRuns
            | Action::Graph
            | Action::Quit
            | Action::Help
            | Action::Mouse
            | Action::CommandLine),
        ) => act(model, action, routes),
        _ => Vec::new(),
    }
}

pub fn act(model: &mut Model, action: Action, routes: &[String]) -> Vec<Effect> {
    let focus = model.focus;
    match action {
        Action::Up => move_cursor(model, -1),
        Action::Down => move_cursor(model, 1),
        Action::PageUp => move_cursor(model, -page(model)),
        Action::PageDown => move_cursor(model, page(model)),
        Action::Top => {
            if let (Pane::Log, Some(log)) = (focus, model.log.as_mut()) {
                log.home();
            } else {
                move_cursor(model, isize::MIN / 2);
            }
        }
        Action::Bottom => {
            if let (Pane::Log, Some(log)) = (focus, model.log.as_mut()) {
                log.end();
            } else {
                move_cursor(model, isize::MAX / 2);
            }
        }
        Action::NextPane | Action::PreviousPane => {
            let index = Pane::ORDER.iter().position(|pane| *pane == focus).unwrap_or(0);
            let step = if action == Action::NextPane { 1 } else { Pane::ORDER.len() - 1 };
            model.focus = Pane::ORDER[(index + step) % Pane::ORDER.len()];
        }
        Action::Open => match focus {
            Pane::Workflows => model.focus = Pane::Runs,
            Pane::Runs => {
                model.focus = Pane::Tasks;
                model.select_task(0);
                let run = model.selected_run().map(|run| run.id.clone());
                model.landing = run.clone().filter(|run| !model.tasks.contains_key(run)).map(|run| (run, false));
                let mut effects: Vec<Effect> = run.map(Effect::LoadRun).into_iter().collect();
                effects.extend(model.land_on_attention());
                return effects;
            }
            Pane::Tasks if model.selected_task().is_some_and(|task| task.state == TaskState::WaitingApproval) => {
                return super::gate::open_selected(model, "open");
            }
            Pane::Tasks => return open_log(model),
            Pane::Monitor if model.monitor_alerts => {
                if let Some(alert) = model.alerts.get(model.cursor.alert).cloned() {
                    return go_to_alert(
                        model,
                        alert.workflow.as_deref(),
                        alert.run_id.as_deref(),
                        alert.task.as_deref(),
                    );
                }
            }
            _ => {}
        },
        Action::Back => {
            if !model.focused_filter().is_empty() {
                model.focused_filter().clear();
                model.clamp();
                return Vec::new();
            }
            model.focus = match focus {
                Pane::Log => Pane::Tasks,
                Pane::Tasks => Pane::Runs,
                Pane::Runs | Pane::Monitor => Pane::Workflows,
                Pane::Workflows => Pane::Workflows,
            };
        }
        Action::Trigger => return trigger(model, false),
        Action::TriggerWithParams => return trigger(model, true),
        Action::Pause => return pause(model),
        Action::Retry => {
            return task_command(model, "retry", |run, task, state| {
                matches!(state, TaskState::Failed | TaskState::Cancelled).then(|| Command::RetryTask { run, task })
            });
        }
        Action::Skip => {
            return task_command(model, "skip", |run, task, state| {
                matches!(state, TaskState::Failed | TaskState::Cancelled | TaskState::Pending | TaskState::RetryWait)
                    .then(|| Command::SkipTask { run, task })
            });
        }
        // The operator judges the held items before answering: the gate view shows them.
        Action::Approve => return super::gate::open_selected(model, "approve"),
        Action::Reject => return super::gate::open_selected(model, "reject"),
        Action::Reroute => {
            let (Some(run), Some(task)) = (model.selected_run(), model.selected_task()) else {
                model.set_status("select a task to reroute");
                return Vec::new();
            };
            if matches!(task.state, TaskState::Succeeded | TaskState::Skipped) {
                model.set_status(format!("task {} is already {}", task.name, task.state));
            } else if routes.is_empty() {
                model.set_status("conveyor.toml registers no service or agent to reroute to");
            } else {
                let notes =
                    routes.iter().map(|route| model.route_notes.get(route).cloned().unwrap_or_default()).collect();
                model.popup = Some(Popup::Reroute {
                    run: run.id.clone(),
                    task: task.name.clone(),
                    routes: routes.to_vec(),
                    notes,
                    selected: 0,
                });
            }
        }
        Action::Cancel => {
            let Some(run) = model.selected_run().filter(|run| run.state.is_active()).cloned() else {
                model.set_status("select an active run to cancel");
                return Vec::new();
            };
            model.popup = Some(Popup::Confirm {
                question: format!("Cancel run {} of {}? Its running tasks are stopped.", run.id, run.workflow),
                action: Box::new(Effect::Send(Command::CancelRun { run: run.id })),
                yes_focused: false,
            });
        }
        Action::Log if matches!(focus, Pane::Workflows | Pane::Runs) => return open_run_log(model),
        Action::Log => return open_log(model),
        Action::Acknowledge => {
            let alert = if focus == Pane::Monitor && model.monitor_alerts {
                model.alerts.get(model.cursor.alert)
            } else {
                model.alerts.iter().find(|alert| alert.acked_at.is_none())
            };
            match alert.filter(|alert| alert.acked_at.is_none()) {
                Some(alert) => return vec![Effect::Send(Command::AckAlert { id: alert.id })],
                None => model.set_status("no unacknowledged alert"),
            }
        }
        Action::Filter => {
            model.filtering = true;
            model.focused_filter().clear();
        }
        Action::CommandLine => model.popup = Some(Popup::CommandLine(Default::default())),
        Action::Help => model.popup = Some(Popup::Help { scroll: 0 }),
        Action::Quit => {
            let active = model.active_runs();
            if active > 0 && !model.attached {
                model.popup = Some(Popup::Confirm {
                    question: format!(
                        "{active} run(s) are active. Quit? Their tasks are stopped and the runs left resumable."
                    ),
                    action: Box::new(Effect::Quit),
                    yes_focused: false,
                });
            } else {
                return vec![Effect::Quit];
            }
        }
        Action::Mouse => return vec![Effect::ToggleMouse],
        Action::Copy => return super::clipboard::copy(model),
        Action::Pager => return super::pager::open(model),
        Action::MonitorTab => {
            model.monitor_alerts = !model.monitor_alerts;
            model.focus = Pane::Monitor;
        }
        Action::RunDetails => return super::details::open(model),
        Action::AllRuns => super::all_runs::open(model),
        Action::Graph => super::graph::open(model),
        Action::Follow
        | Action::Wrap
        | Action::NextMatch
        | Action::PreviousMatch
        | Action::NextError
        | Action::PreviousError
            if focus == Pane::Log =>
        {
            let Some(log) = model.log.as_mut() else { return Vec::new() };
            let found = match action {
                Action::Follow => {
                    if log.follow {
                        log.follow = false
                    } else {
                        log.end()
                    }
                    true
                }
                Action::Wrap => {
                    log.wrap = !log.wrap;
                    true
                }
                Action::NextMatch => log.next_match(true),
                Action::PreviousMatch => log.next_match(false),
                Action::NextError => log.next_error(true),
                _ => log.next_error(false),
            };
            if !found {
                let what = if matches!(action, Action::NextError | Action::PreviousError) {
                    "no error lines"
                } else {
                    "no matches"
                };
                model.set_status(what);
            }
        }
        Action::PreviousAttempt | Action::NextAttempt if focus == Pane::Log => {
            let Some(log) = model.log.as_ref() else { return Vec::new() };
            let attempts = model.attempts_of(&log.run, &log.task);
            let step: i64 = if action == Action::NextAttempt { 1 } else { -1 };
            let wanted = log.attempt as i64 + step;
            if let Some(attempt) = attempts.iter().find(|a| a.attempt as i64 == wanted) {
                return vec![Effect::OpenLog {
                    run: attempt.run_id.clone(),
                    task: attempt.task.clone(),
                    attempt: attempt.attempt,
                    path: attempt.log_path.clone(),
                    jump_to_error: false,
                }];
            }
            model.set_status("no such attempt");
        }
        _ => {}
    }
    Vec::new()
}

/// A click focuses the pane under it and selects the row clicked; the wheel scrolls the pane under it.
pub fn handle_mouse(model: &mut Model, areas: &Areas, mouse: MouseEvent, routes: &[String]) -> Vec<Effect> {
    if model.popup.is_some() {
        return Vec::new();
    }
    // A full-screen view has no panes to click: the wheel scrolls it.
    if let Some(view) = model.view {
        let action = match mouse.kind {
            MouseEventKind::ScrollDown => Action::Down,
            MouseEventKind::ScrollUp => Action::Up,
            _ => return Vec::new(),
        };
        for _ in 0..3 {
            match view {
                View::Details => super::details::key(model, Some(action)),
                View::AllRuns => super::all_runs::key(model, Some(action), KeyEvent::from(KeyCode::Null)),
                View::Graph => super::graph::key(model, Some(action), KeyEvent::from(KeyCode::Null)),
                View::Gate => super::gate::key(model, Some(action), KeyEvent::from(KeyCode::Null)),
            };
        }
        return Vec::new();
    }
    let Some((pane, rect)) = areas.pane_at(mouse.column, mouse.row) else { return Vec::new() };
    match mouse.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            model.focus = pane;
            // Rows start under the border and the column names; the runs list also under its summary line,
            // the tasks list under the graph line of a workflow with `depends_on`.
            let graph = model.selected_workflow().is_some_and(|w| !w.graph.is_empty());
            let above = match pane {
                Pane::Runs if super::ui::runs_summary_shown(rect) => 3,
                Pane::Runs => 2,
                Pane::Tasks if graph => 3,
                Pane::Workflows | Pane::Tasks => 2,
                _ => 1,
            };
            let shown = rect.height.saturating_sub(above + 1).max(1) as usize;
            let current = match pane {
                Pane::Workflows => model.cursor.workflow,
                Pane::Runs => model.cursor.run,
                Pane::Tasks => model.cursor.task,
                Pane::Monitor => model.cursor.alert,
                Pane::Log => return Vec::new(),
            };
            // The list scrolls just far enough to show the selected row, as the table draws it.
            let offset = current.saturating_sub(shown - 1);
            let Some(row) = mouse.row.checked_sub(rect.y + above).map(|row| offset + row as usize) else {
                return Vec::new();
            };
            match pane {
                Pane::Workflows => model.select_workflow(row),
                Pane::Runs => model.select_run(row),
                Pane::Tasks => model.select_task(row),
                Pane::Monitor => model.select_alert(row),
                _ => {}
            }
        }
        // The engine log belongs to tui-logger, which scrolls by pages.
        MouseEventKind::ScrollDown | MouseEventKind::ScrollUp if pane == Pane::Monitor && !model.monitor_alerts => {
            let page = if mouse.kind == MouseEventKind::ScrollUp {
                tui_logger::TuiWidgetEvent::PrevPageKey
            } else {
                tui_logger::TuiWidgetEvent::NextPageKey
            };
            return vec![Effect::EngineLog(page)];
        }
        MouseEventKind::ScrollDown | MouseEventKind::ScrollUp => {
            let previous = model.focus;
            model.focus = pane;
            let action = if mouse.kind == MouseEventKind::ScrollDown { Action::Down } else { Action::Up };
            for _ in 0..3 {
                act(model, action, routes);
            }
            model.focus = previous;
        }
        _ => {}
    }
    Vec::new()
}

fn page(model: &Model) -> isize {
    model.log.as_ref().map_or(10, |log| log.height.max(2) as isize - 1)
}

fn move_cursor(model: &mut Model, by: isize) {
    let step = |at: usize, len: usize| -> usize {
        if len == 0 {
            return 0;
        }
        (at as isize).saturating_add(by).clamp(0, len as isize - 1) as usize
    };
    match model.focus {
        Pane::Workflows => model.select_workflow(step(model.cursor.workflow, model.visible_workflows().len())),
        Pane::Runs => model.select_run(step(model.cursor.run, model.visible_runs().len())),
        Pane::Tasks => model.select_task(step(model.cursor.task, model.visible_tasks().len())),
        Pane::Monitor => model.select_alert(step(model.cursor.alert, model.alerts.len())),
        Pane::Log => {
            if let Some(log) = model.log.as_mut() {
                log.scroll(by.clamp(-1_000_000_000, 1_000_000_000));
            }
        }
    }
}

fn open_log(model: &mut Model) -> Vec<Effect> {
    match model.open_log_effect(model.selected_task().is_some_and(|task| task.state == TaskState::Failed)) {
        Some(effect) => {
            model.focus = Pane::Log;
            vec![effect]
        }
        None => {
            model.set_status("this task has no attempt yet");
            Vec::new()
        }
    }
}

/// `l` on a run (from Workflows or Runs) does what Enter, Enter does: a failed run opens its failed task's
/// latest attempt at the first error, a run at a gate its waiting task, any other run its selected task.
fn open_run_log(model: &mut Model) -> Vec<Effect> {
    if let Some(awaited) = &model.awaited_run {
        // The run just triggered is not listed yet: the selected one is the previous run, not what was meant.
        model.set_status(format!("run {awaited} is starting; its log opens with l once it is listed"));
        return Vec::new();
    }
    let Some(run) = model.selected_run().map(|run| run.id.clone()) else {
        model.set_status("no run selected");
        return Vec::new();
    };
    if !model.tasks.contains_key(&run) {
        // A run older than the snapshot: its tasks are read first, and the log opens when they arrive.
        model.set_status(format!("reading run {run}…"));
        model.landing = Some((run.clone(), true));
        return vec![Effect::LoadRun(run)];
    }
    match model.land_on_attention() {
        Some(effect) => {
            model.focus = Pane::Log;
            vec![effect]
        }
        None => open_log(model),
    }
}

fn trigger(model: &mut Model, with_params: bool) -> Vec<Effect> {
    let Some(workflow) = model.selected_workflow().cloned() else {
        model.set_status("no workflow selected");
        return Vec::new();
    };
    if let Some(problem) = &workflow.broken {
        model.set_status(format!("{} is broken: {problem}", workflow.file.display()));
        return Vec::new();
    }
    if with_params {
        model.popup = Some(Popup::Params(super::params_form::ParamsForm::open(&workflow)));
        return Vec::new();
    }
    vec![Effect::Send(Command::Trigger { workflow: workflow.id, input: None, params: Default::default() })]
}

fn pause(model: &mut Model) -> Vec<Effect> {
    if model.focus == Pane::Workflows {
        let Some(workflow) = model.selected_workflow() else { return Vec::new() };
        let id = workflow.id.clone();
        let command = if model.paused.contains(&id) {
            Command::ResumeWorkflow { workflow: id }
        } else {
            Command::PauseWorkflow { workflow: id }
        };
        return vec![Effect::Send(command)];
    }
    let Some(run) = model.selected_run() else {
        model.set_status("no run selected");
        return Vec::new();
    };
    let command = match run.state {
        RunState::Running => Command::PauseRun { run: run.id.clone() },
        RunState::Paused | RunState::Interrupted => Command::ResumeRun { run: run.id.clone() },
        state => {
            model.set_status(format!("run {} is {state}: nothing to pause or resume", run.id));
            return Vec::new();
        }
    };
    vec![Effect::Send(command)]
}

fn task_command(
    model: &mut Model,
    verb: &str,
    command: impl FnOnce(String, String, TaskState) -> Option<Command>,
) -> Vec<Effect> {
    let (Some(run), Some(task)) = (model.selected_run(), model.selected_task()) else {
        model.set_status(format!("select a task to {verb}"));
        return Vec::new();
    };
    let (name, state, run_id) = (task.name.clone(), task.state, run.id.clone());
    match command(run.id.clone(), name.clone(), state) {
        // Each of these changes what the run does next: the operator says yes to words that name it.
        Some(command) => {
            let question = match verb {
                "skip" => format!("Skip task {name} of run {run_id}? Its input passes on as its output."),
                _ => return vec![Effect::Send(command)],
            };
            confirm(model, question, command)
        }
        None => {
            model.set_status(format!("cannot {verb} task {name}: it is {state}"));
            Vec::new()
        }
    }
}

/// Asks `question` before sending `command`, with No focused.
pub(super) fn confirm(model: &mut Model, question: String, command: Command) -> Vec<Effect> {
    model.popup = Some(Popup::Confirm { question, action: Box::new(Effect::Send(command)), yes_focused: false });
    Vec::new()
}

pub(super) fn go_to_alert(
    model: &mut Model,
    workflow: Option<&str>,
    run: Option<&str>,
    task: Option<&str>,
) -> Vec<Effect> {
    let Some(workflow) = workflow else { return Vec::new() };
    if !model.select_workflow_id(workflow) {
        return Vec::new();
    }
    model.focus = Pane::Runs;
    let Some(run) = run else { return Vec::new() };
    if model.select_run_id(run) {
        model.focus = Pane::Tasks;
        if let Some(index) = task.and_then(|task| model.visible_tasks().iter().position(|t| t.name == task)) {
            model.select_task(index);
        }
    }
    vec![Effect::LoadRun(run.to_string())]
}
