//! All runs, time-ordered, across workflows: what failed or waits anywhere, without visiting each workflow.
//! The selection is a run id, so runs arriving above it do not move it.

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState};

use super::keymap::{Action, ViewKey, view_key, view_label};
use super::model::{Effect, Model, Pane, View};
use super::theme::run_symbol;
use super::ui::{Chrome, elapsed, local, pane};
use crate::state::{RunState, TaskState};
use crate::store::RunRecord;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Show {
    #[default]
    All,
    Active,
    Failed,
    Waiting,
}

impl Show {
    fn next(self) -> Show {
        match self {
            Show::All => Show::Active,
            Show::Active => Show::Failed,
            Show::Failed => Show::Waiting,
            Show::Waiting => Show::All,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Show::All => "all",
            Show::Active => "active",
            Show::Failed => "failed",
            Show::Waiting => "waiting",
        }
    }
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Sort {
    /// Newest first.
    #[default]
    Start,
    /// Longest first; a run still going counts until now.
    Duration,
    /// What needs the operator first: failed, waiting, then the rest, newest first within each.
    State,
}

impl Sort {
    fn next(self) -> Sort {
        match self {
            Sort::Start => Sort::Duration,
            Sort::Duration => Sort::State,
            Sort::State => Sort::Start,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Sort::Start => "start",
            Sort::Duration => "duration",
            Sort::State => "state",
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq)]
pub struct AllRuns {
    pub show: Show,
    pub sort: Sort,
    /// The selected run's id; the row index is found from it on every use.
    pub selected: Option<String>,
    /// Where the selection was drawn, for when its run leaves the list (filtered out, forgotten).
    pub at: usize,
}

/// A run waits when it stopped at a gate, or when one of its tasks we know of waits for approval.
pub fn waiting(model: &Model, run: &RunRecord) -> bool {
    run.state == RunState::WaitingApproval
        || model.tasks.get(&run.id).is_some_and(|tasks| tasks.iter().any(|t| t.state == TaskState::WaitingApproval))
}

fn attention(model: &Model, run: &RunRecord) -> u8 {
    match run.state {
        RunState::Failed | RunState::Interrupted => 0,
        _ if waiting(model, run) => 1,
        state if state.is_active() => 2,
        _ => 3,
    }
}

fn duration_ms(model: &Model, run: &RunRecord) -> i64 {
    run.started_at.map_or(0, |start| (run.finished_at.unwrap_or(model.now) - start).num_milliseconds())
}

/// The rows as listed: every workflow's runs the model holds, under the filter, in the chosen order.
pub fn rows(model: &Model) -> Vec<&RunRecord> {
    let view = &model.all_runs;
    let mut rows: Vec<&RunRecord> = model
        .runs
        .values()
        .flatten()
        .filter(|run| match view.show {
            Show::All => true,
            Show::Active => run.state.is_active(),
            Show::Failed => matches!(run.state, RunState::Failed | RunState::Interrupted),
            Show::Waiting => waiting(model, run),
        })
        .collect();
    // Newest first is the order under every sort, and the id breaks ties so equal times keep their places.
    rows.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    match view.sort {
        Sort::Start => {}
        Sort::Duration => rows.sort_by_key(|run| std::cmp::Reverse(duration_ms(model, run))),
        Sort::State => rows.sort_by_cached_key(|run| attention(model, run)),
    }
    rows
}

/// The selected row's index, following the selected id; a run that left the list gives way to the row now
/// in its place.
pub fn cursor(model: &Model) -> Option<usize> {
    cursor_in(model, &rows(model))
}

/// Where the selected run is among `rows` as listed (at its id, else at the same place).
fn cursor_in(model: &Model, rows: &[&RunRecord]) -> Option<usize> {
    if rows.is_empty() {
        return None;
    }
    let view = &model.all_runs;
    Some(
        view.selected
            .as_ref()
            .and_then(|id| rows.iter().position(|run| &run.id == id))
            .unwrap_or(view.at.min(rows.len() - 1)),
    )
}

fn select(model: &mut Model, index: usize) {
    let id = rows(model).get(index).map(|run| run.id.clone());
    if let Some(id) = id {
        model.all_runs.selected = Some(id);
        model.all_runs.at = index;
    }
}

/// `H`: opens on the run selected in the panes, so the operator sees it among the others.
pub fn open(model: &mut Model) {
    model.view = Some(View::AllRuns);
    if let Some(run) = model.selected_run().map(|run| run.id.clone()) {
        model.all_runs.selected = Some(run);
    }
    if let Some(index) = cursor(model) {
        select(model, index);
    }
}

/// The next row after the selection (wrapping round) that matches, selected; whether there was one.
fn jump(model: &mut Model, wanted: impl Fn(&Model, &RunRecord) -> bool) -> bool {
    let rows = rows(model);
    let start = cursor(model).unwrap_or(0);
    let count = rows.len();
    let found = (1..=count).map(|step| (start + step) % count.max(1)).find(|&index| wanted(model, rows[index]));
    match found {
        Some(index) => {
            select(model, index);
            true
        }
        None => false,
    }
}

/// The view's keys; `None` for keys it leaves to the console.
pub fn key(model: &mut Model, action: Option<Action>, key: KeyEvent) -> Option<Vec<Effect>> {
    let count = rows(model).len();
    let at = cursor(model).unwrap_or(0) as isize;
    let move_to = |model: &mut Model, to: isize| select(model, to.clamp(0, count.saturating_sub(1) as isize) as usize);
    match view_key(View::AllRuns, key.code) {
        Some(ViewKey::Show) => {
            model.all_runs.show = model.all_runs.show.next();
            reselect(model);
            return Some(Vec::new());
        }
        Some(ViewKey::Sort) => {
            model.all_runs.sort = model.all_runs.sort.next();
            reselect(model);
            return Some(Vec::new());
        }
        Some(ViewKey::NextFailed) => {
            if !jump(model, |_, run| matches!(run.state, RunState::Failed | RunState::Interrupted)) {
                model.set_status("no failed run in this list");
            }
            return Some(Vec::new());
        }
        Some(ViewKey::NextWaiting) => {
            if !jump(model, waiting) {
                model.set_status("no run waits at a gate in this list");
            }
            return Some(Vec::new());
        }
        _ => {}
    }
    match action? {
        Action::Up => move_to(model, at - 1),
        Action::Down => move_to(model, at + 1),
        Action::PageUp => move_to(model, at - 10),
        Action::PageDown => move_to(model, at + 10),
        Action::Top => move_to(model, 0),
        Action::Bottom => move_to(model, count as isize),
        // The details of the run highlighted here, not of the one the panes have selected; Esc comes back.
        Action::RunDetails => {
            let Some(run) = cursor(model).and_then(|index| rows(model).get(index).map(|run| run.id.clone())) else {
                model.set_status("no run to show");
                return Some(Vec::new());
            };
            return Some(super::details::open_run(model, run, Some(View::AllRuns)));
        }
        Action::Open => {
            let Some(run) = cursor(model).and_then(|index| rows(model).get(index).map(|run| (*run).clone())) else {
                model.set_status("no run to open");
                return Some(Vec::new());
            };
            if model.select_workflow_id(&run.workflow) && model.select_run_id(&run.id) {
                model.focus = Pane::Runs;
                model.view = None;
            } else {
                model.set_status(format!("run {} is no longer listed under {}", run.id, run.workflow));
            }
        }
        _ => return None,
    }
    Some(Vec::new())
}

/// After the filter or order changed: the selected run stays selected when it is still listed.
fn reselect(model: &mut Model) {
    if let Some(index) = cursor(model) {
        select(model, index);
    }
}

pub fn draw(frame: &mut Frame, area: Rect, hints: Option<Rect>, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let view = &model.all_runs;
    let rows = rows(model);
    let selected = cursor_in(model, &rows);
    let title = format!(" All runs · {} · sorted by {} · {} run(s) ", view.show.name(), view.sort.name(), rows.len());
    let block = pane(Line::from(title), true, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(hints) = hints {
        let key = |action| chrome.keymap.short_label(action);
        let own = |key| view_label(View::AllRuns, key);
        let text = format!(
            " {} filter · {} sort · {} failed · {} waiting · {} details · {} open · {} back",
            own(ViewKey::Show),
            own(ViewKey::Sort),
            own(ViewKey::NextFailed),
            own(ViewKey::NextWaiting),
            key(Action::RunDetails),
            key(Action::Open),
            key(Action::Back)
        );
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), hints);
    }
    if rows.is_empty() {
        let text = match view.show {
            Show::All => "no runs yet".to_string(),
            show => format!("no {} runs — {} shows more", show.name(), view_label(View::AllRuns, ViewKey::Show)),
        };
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), inner);
        return;
    }
    // Narrow screens keep what identifies a run and what it needs: state, workflow, id (which holds its start
    // time) and duration; wide ones add the start, and the error or trigger.
    let wide = super::layout::all_runs_wide(inner);
    let table_rows: Vec<Row> = rows
        .iter()
        .map(|run| {
            let gate = if run.state != RunState::WaitingApproval && waiting(model, run) { " ⧗" } else { "" };
            let mut cells = vec![
                Cell::from(Span::styled(
                    format!("{} {}{gate}", run_symbol(run.state), run.state),
                    theme.run(run.state),
                )),
                Cell::from(super::logview::printable(&run.workflow)),
                Cell::from(run.id.clone()),
            ];
            if wide {
                cells.push(Cell::from(local(run.created_at, chrome)));
            }
            cells.push(Cell::from(elapsed(run.started_at, run.finished_at, model.now)));
            if wide {
                let what = run.error.as_deref().map(super::logview::printable).unwrap_or_else(|| run.trigger.clone());
                cells.push(Cell::from(what));
            }
            Row::new(cells)
        })
        .collect();
    let (widths, titles) = if wide {
        (
            vec![
                Constraint::Length(20),
                Constraint::Length(24),
                Constraint::Length(20),
                Constraint::Length(14),
                Constraint::Length(8),
                Constraint::Fill(1),
            ],
            vec!["state", "workflow", "run", "started", "took", "error / trigger"],
        )
    } else {
        (
            vec![Constraint::Length(18), Constraint::Fill(1), Constraint::Length(20), Constraint::Length(8)],
            vec!["state", "workflow", "run", "took"],
        )
    };
    let header = Row::new(titles).style(Style::new().add_modifier(Modifier::BOLD));
    let table = Table::new(table_rows, widths).header(header).row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(selected);
    frame.render_stateful_widget(table, inner, &mut state);
}
