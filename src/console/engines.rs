//! The Engines view (`M`): the engines sharing the store, as the last read found them — host, PID, the routes
//! each serves, how long since its heartbeat, and which one leads. On SQLite there is one engine, the state
//! folder's, and the view says so.

use ratatui::Frame;
use ratatui::layout::{Constraint, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Paragraph, Row, Table, TableState};

use super::keymap::Action;
use super::model::{Effect, Model, View};
use super::ui::{Chrome, pane, short_duration};

/// Said where a shared store would list its engines.
pub const ONE_ENGINE: &str = "one engine: this state folder's";

/// `M`: opens on the first engine.
pub fn open(model: &mut Model) {
    model.view = Some(View::Engines);
    model.engine_row = model.engine_row.min(model.engines.len().saturating_sub(1));
}

/// The view's keys; `None` for keys it leaves to the console.
pub fn key(model: &mut Model, action: Option<Action>) -> Option<Vec<Effect>> {
    let last = model.engines.len().saturating_sub(1) as isize;
    let at = model.engine_row as isize;
    let to = match action? {
        Action::Up => at - 1,
        Action::Down => at + 1,
        Action::PageUp => at - 10,
        Action::PageDown => at + 10,
        Action::Top => 0,
        Action::Bottom => last,
        _ => return None,
    };
    model.engine_row = to.clamp(0, last) as usize;
    Some(Vec::new())
}

pub fn draw(frame: &mut Frame, area: Rect, hints: Option<Rect>, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let title = match &model.cluster {
        Some(place) => format!(" Engines · {place} · {} registered ", model.engines.len()),
        None => " Engines ".to_string(),
    };
    let block = pane(Line::from(title), true, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(hints) = hints {
        let text = format!(" {} back · heartbeats on the database's clock", chrome.keymap.short_label(Action::Back));
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), hints);
    }
    let empty = match (&model.cluster, model.engines.is_empty()) {
        (None, _) => Some(ONE_ENGINE),
        (Some(_), true) => Some("no engine has joined this store: start one with `conveyor daemon --store …`"),
        _ => None,
    };
    if let Some(text) = empty {
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), inner);
        return;
    }
    let rows: Vec<Row> = model
        .engines
        .iter()
        .map(|engine| {
            let silent = short_duration(engine.silent_for.num_seconds().max(0) as u64);
            // What each engine said of itself: shown, never obeyed.
            let printable = super::logview::printable;
            Row::new(vec![
                if engine.leads { "★ leader".to_string() } else { String::new() },
                format!("#{}", engine.id.0),
                printable(&engine.host),
                engine.pid.to_string(),
                format!("{silent} ago"),
                printable(&engine.routes.join(", ")),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(8),
        Constraint::Length(6),
        Constraint::Length(24),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Fill(1),
    ];
    let header =
        Row::new(["", "engine", "host", "pid", "heartbeat", "routes"]).style(Style::new().add_modifier(Modifier::BOLD));
    let table = Table::new(rows, widths).header(header).row_highlight_style(theme.selected());
    let mut state = TableState::default().with_selected(Some(model.engine_row));
    frame.render_stateful_widget(table, inner, &mut state);
}
