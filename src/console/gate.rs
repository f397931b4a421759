//! The gate view: what a waiting governance gate holds, so the operator judges before answering. Each held
//! item shows the fields its layer names (`show`), with the rules every held item passed and the `approval`
//! test that held it; the operator approves or rejects the items marked (or the one under the cursor), or
//! all of them, with an optional comment. Everything shown is read from the task's output as the model
//! holds it: an answer's effect arrives as a task event and the view follows.

use std::collections::BTreeSet;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Paragraph, Row, Table, TableState, Wrap};

use super::keymap::{Action, ViewKey, view_key, view_label};
use super::logview::printable;
use super::model::{Effect, Model, View};
use super::ui::{Chrome, local, pane, relative};
use crate::engine::Command;
use crate::state::TaskState;
use crate::store::{TaskRecord, parse_timestamp};
use crate::tasks::{GateSummary, gate_summary, plain_field};

/// A comment longer than this is not typed further: it goes into the output and the audit trail.
const MAX_COMMENT: usize = 500;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct GateView {
    pub run: String,
    pub task: String,
    pub cursor: usize,
    /// Items marked with Space, by id: `a`/`x` answer these, or the item under the cursor when none is.
    pub marked: BTreeSet<String>,
    pub comment: String,
    /// `c` was pressed: keys go into the comment until Enter (keep) or Esc (drop).
    pub typing: bool,
}

/// Opens the view on a gate.
pub fn open(model: &mut Model, run: String, task: String) {
    model.gate = GateView { run, task, ..GateView::default() };
    model.view = Some(View::Gate);
}

/// `a`, `x` or Enter on the Tasks pane: a waiting gate opens here; anything else says why not.
pub fn open_selected(model: &mut Model, verb: &str) -> Vec<Effect> {
    let (Some(run), Some(task)) = (model.selected_run(), model.selected_task()) else {
        model.set_status(format!("select a task to {verb}"));
        return Vec::new();
    };
    let (run, name, state) = (run.id.clone(), task.name.clone(), task.state);
    if state != TaskState::WaitingApproval {
        model.set_status(format!("cannot {verb} task {name}: it is {state}"));
        return Vec::new();
    }
    open(model, run, name);
    Vec::new()
}

/// The gate the view shows has stopped waiting (every item answered, by this console, another shell or the
/// timeout): the view gives way to the panes, on the task.
pub fn follow(model: &mut Model, task: &TaskRecord) {
    let view = &model.gate;
    let shown = model.view == Some(View::Gate) && view.run == task.run_id && view.task == task.name;
    if !shown || task.state == TaskState::WaitingApproval {
        return;
    }
    model.view = None;
    model.focus = super::model::Pane::Tasks;
    if model.status.is_none() {
        model.set_status(format!("the gate at {} holds nothing more: it is {}", task.name, task.state));
    }
}

fn record(model: &Model) -> Option<&TaskRecord> {
    let view = &model.gate;
    model.tasks.get(&view.run)?.iter().find(|task| task.name == view.task)
}

/// What the gate holds, while it waits.
fn summary(model: &Model) -> Option<GateSummary> {
    let task = record(model).filter(|task| task.state == TaskState::WaitingApproval)?;
    Some(gate_summary(task.output.as_ref()?))
}

/// The view's keys; `None` for keys it leaves to the console.
pub fn key(model: &mut Model, action: Option<Action>, key: KeyEvent) -> Option<Vec<Effect>> {
    // Ctrl-C quits here too, even while a comment is typed.
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return None;
    }
    if model.gate.typing {
        let view = &mut model.gate;
        match key.code {
            KeyCode::Enter => view.typing = false,
            KeyCode::Esc => {
                view.typing = false;
                view.comment.clear();
            }
            KeyCode::Backspace => {
                view.comment.pop();
            }
            KeyCode::Char(c) if !c.is_control() && view.comment.chars().count() < MAX_COMMENT => view.comment.push(c),
            _ => {}
        }
        return Some(Vec::new());
    }
    let held: Vec<String> =
        summary(model).map(|gate| gate.held.into_iter().map(|(id, _)| id).collect()).unwrap_or_default();
    let last = held.len().saturating_sub(1);
    let view = &mut model.gate;
    view.cursor = view.cursor.min(last);
    match view_key(View::Gate, key.code) {
        Some(ViewKey::Mark) => {
            if let Some(id) = held.get(view.cursor)
                && !view.marked.remove(id)
            {
                view.marked.insert(id.clone());
            }
            return Some(Vec::new());
        }
        Some(ViewKey::Comment) => {
            view.typing = true;
            return Some(Vec::new());
        }
        Some(ViewKey::ApproveAll) => return Some(answer(model, true, &held, true)),
        Some(ViewKey::RejectAll) => return Some(answer(model, false, &held, true)),
        _ => {}
    }
    match action? {
        Action::Up => view.cursor = view.cursor.saturating_sub(1),
        Action::Down => view.cursor = (view.cursor + 1).min(last),
        Action::PageUp => view.cursor = view.cursor.saturating_sub(10),
        Action::PageDown => view.cursor = (view.cursor + 10).min(last),
        Action::Top => view.cursor = 0,
        Action::Bottom => view.cursor = last,
        Action::Approve => return Some(answer(model, true, &held, false)),
        Action::Reject => return Some(answer(model, false, &held, false)),
        _ => return None,
    }
    Some(Vec::new())
}

/// Asks, naming the items and the comment, before answering them.
fn answer(model: &mut Model, approve: bool, held: &[String], all: bool) -> Vec<Effect> {
    if held.is_empty() {
        model.set_status(format!("no item is held at task {} any more", model.gate.task));
        return Vec::new();
    }
    let view = &model.gate;
    let items: Vec<String> = if all {
        Vec::new()
    } else if held.iter().any(|id| view.marked.contains(id)) {
        held.iter().filter(|id| view.marked.contains(*id)).cloned().collect()
    } else {
        vec![held[view.cursor.min(held.len() - 1)].clone()]
    };
    let verb = if approve { "Approve" } else { "Reject" };
    let what = if all { format!("all {} held item(s)", held.len()) } else { items.join(", ") };
    let comment = (!view.comment.trim().is_empty()).then(|| view.comment.trim().to_string());
    let with = comment.as_ref().map(|text| format!(" with the comment “{text}”")).unwrap_or_default();
    let question = format!("{verb} {what} at task {} of run {}{with}?", view.task, view.run);
    let (run, task) = (view.run.clone(), view.task.clone());
    let command = match approve {
        true => Command::Approve { run, task, items, comment },
        false => Command::Reject { run, task, items, comment },
    };
    super::keys::confirm(model, printable(&question), command)
}

pub fn draw(frame: &mut Frame, area: Rect, hints: Option<Rect>, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let view = &model.gate;
    let gate = summary(model);
    let held = gate.as_ref().map_or(0, |gate| gate.held.len());
    let title = format!(" Gate · task {} of run {} · {held} held ", view.task, view.run);
    let block = pane(Line::from(title), true, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(hints) = hints {
        // `a`/`x` answer the marked items, or the one under the cursor when none is marked.
        let (key, own) = (|action| chrome.keymap.short_label(action), |key| view_label(View::Gate, key));
        let text = format!(
            " ↑↓ move · {} mark · {}/{} approve/reject · {}/{} all · {} comment · {} back",
            own(ViewKey::Mark),
            key(Action::Approve),
            key(Action::Reject),
            own(ViewKey::ApproveAll),
            own(ViewKey::RejectAll),
            own(ViewKey::Comment),
            key(Action::Back)
        );
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), hints);
    }
    let Some(gate) = gate else {
        let state = record(model).map_or_else(|| "not known here".to_string(), |task| task.state.to_string());
        let text = format!("task {} of run {} is not waiting for approval (it is {state})", view.task, view.run);
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())).wrap(Wrap { trim: true }), inner);
        return;
    };
    let label = |text: &'static str| Span::styled(format!("{text:<9}"), theme.dim());
    let rules = if gate.rules.is_empty() { "(no rules)".to_string() } else { gate.rules.join(", ") };
    let mut about = vec![
        Line::from(vec![label("held by"), Span::raw(printable(gate.held_by.as_deref().unwrap_or("-")))]),
        Line::from(vec![label("passed"), Span::raw(printable(&rules))]),
    ];
    let time = |text: &Option<String>| text.as_deref().and_then(|text| parse_timestamp(text).ok());
    let since = match time(&gate.waiting_since) {
        Some(since) => format!("since {} ({})", local(since, chrome), relative(since, model.now)),
        None => "since it ran".to_string(),
    };
    let expires = match time(&gate.expires_at) {
        Some(at) => {
            let then = if gate.on_timeout.as_deref() == Some("approve") { "approves" } else { "rejects" };
            format!("{} ({}), then {then} what is still held", local(at, chrome), relative(at, model.now))
        }
        None => "never: no approval_timeout".to_string(),
    };
    about.push(Line::from(vec![label("waiting"), Span::raw(since)]));
    about.push(Line::from(vec![label("expires"), Span::raw(expires)]));
    let comment = match (view.typing, view.comment.is_empty()) {
        (true, _) => Line::from(vec![label("comment"), Span::raw(view.comment.clone()), Span::raw("▏")]),
        (false, true) => {
            let text = format!("none ({} to write one)", view_label(View::Gate, ViewKey::Comment));
            Line::from(vec![label("comment"), Span::styled(text, theme.dim())])
        }
        (false, false) => Line::from(vec![label("comment"), Span::raw(printable(&view.comment))]),
    };
    let [top, table_area, bottom] =
        Layout::vertical([Constraint::Length(5), Constraint::Min(0), Constraint::Length(1)]).areas(inner);
    frame.render_widget(Paragraph::new(about), top);
    frame.render_widget(Paragraph::new(comment), bottom);
    // Columns: the mark, then the fields the layer shows, each as wide as its widest value (within reason).
    let names: Vec<String> =
        gate.held.first().map(|(_, fields)| fields.iter().map(|(name, _)| name.clone()).collect()).unwrap_or_default();
    let mut widths: Vec<usize> = names.iter().map(|name| name.chars().count()).collect();
    let rows: Vec<Row> = gate
        .held
        .iter()
        .map(|(id, fields)| {
            let mark = if view.marked.contains(id) { "[x]" } else { "[ ]" };
            let mut cells = vec![Cell::from(mark)];
            for (index, (_, value)) in fields.iter().enumerate() {
                let text = printable(&plain_field(value));
                if let Some(width) = widths.get_mut(index) {
                    *width = (*width).max(text.chars().count()).min(32);
                }
                cells.push(Cell::from(text));
            }
            Row::new(cells)
        })
        .collect();
    let mut constraints = vec![Constraint::Length(3)];
    constraints.extend(widths.iter().map(|width| Constraint::Length(*width as u16)));
    // The last field takes what is left (an applicant's name, a reason).
    if constraints.len() > 1
        && let Some(last) = constraints.last_mut()
    {
        *last = Constraint::Fill(1);
    }
    let mut header = vec![String::new()];
    header.extend(names.iter().map(|name| printable(name)));
    let table = Table::new(rows, constraints)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(view.cursor.min(held.saturating_sub(1))));
    frame.render_stateful_widget(table, table_area, &mut state);
}
