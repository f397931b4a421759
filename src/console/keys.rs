//! The dispatcher: a key becomes an action through the keymap (`keymap.rs`), and here the action is applied
//! to the model; what it asks of the runtime comes back as effects. Clicks and the wheel act on the panes the
//! layout (`layout.rs`) puts under them.

use crossterm::event::{KeyCode, KeyEvent, MouseButton, MouseEvent, MouseEventKind};

use super::keymap::{Action, Keymap};
use super::layout;
use super::model::{Effect, Model, Pane, Popup, View};
use crate::engine::Command;
use crate::state::{RunState, TaskState};

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
        View::Engines => super::engines::key(model, action),
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
            | Action::Engines
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
        Action::Engines => super::engines::open(model),
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
pub fn handle_mouse(model: &mut Model, mouse: MouseEvent, routes: &[String]) -> Vec<Effect> {
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
                View::Engines => super::engines::key(model, Some(action)),
            };
        }
        return Vec::new();
    }
    let areas = layout::areas(model.screen, None);
    let Some((pane, rect)) = areas.pane_at(mouse.column, mouse.row) else { return Vec::new() };
    match mouse.kind {
        MouseEventKind::Down(MouseButton::Left) => {
            model.focus = pane;
            let graph = model.selected_workflow().is_some_and(|w| !w.graph.is_empty());
            let above = layout::first_row(pane, rect, graph);
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

/// How far PgUp/PgDn move: with a log open, what the log pane shows less a line kept for context; else ten.
fn page(model: &Model) -> isize {
    match model.log {
        Some(_) => layout::areas(model.screen, None).log_lines().max(2) as isize - 1,
        None => 10,
    }
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
