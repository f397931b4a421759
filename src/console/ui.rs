//! Drawing the model. Pure: the same model draws the same screen (which the snapshot tests rely on).

use chrono::{DateTime, Local, Utc};
use ratatui::Frame;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, Clear, List, ListItem, ListState, Paragraph, Row, Sparkline, Table, TableState, Wrap,
};

use super::keymap::{self, Action, Keymap, PopupKey, PopupKind};
use super::layout;
use super::model::{Model, Pane, Popup, View};
use super::theme::{Theme, run_symbol, task_symbol};
use crate::state::TaskState;

pub struct Chrome<'a> {
    pub theme: &'a Theme,
    pub keymap: &'a Keymap,
    /// Shows times in UTC instead of the machine's zone (tests).
    pub utc: bool,
    /// The engine log widget's state, when the console has one (not in tests).
    pub engine_log: Option<&'a tui_logger::TuiWidgetState>,
}

/// Draws the model in the places `layout::areas` gives for the frame's size.
pub fn draw(frame: &mut Frame, model: &mut Model, chrome: &Chrome) {
    let screen = frame.area();
    if layout::too_small(screen) {
        let text = vec![
            Line::from("Terminal too small"),
            Line::from(format!(
                "{}x{} — Conveyor needs at least {}x{}",
                screen.width,
                screen.height,
                layout::MIN_WIDTH,
                layout::MIN_HEIGHT
            )),
            Line::from("Enlarge the window, or press q to quit"),
        ];
        let notice = Paragraph::new(text).alignment(Alignment::Center).wrap(Wrap { trim: true });
        frame.render_widget(notice, layout::too_small_notice(screen));
        return;
    }
    let areas = layout::areas(screen, model.popup.as_ref());
    if let Some(view) = model.view {
        draw_header(frame, areas.header, model, chrome);
        // The view's own keys take the footer, unless there is news for the operator.
        let hints = if model.status.is_some() {
            draw_footer(frame, areas.footer, model, chrome);
            None
        } else {
            Some(areas.footer)
        };
        match view {
            View::Details => super::details::draw(frame, areas.body, hints, model, chrome),
            View::AllRuns => super::all_runs::draw(frame, areas.body, hints, model, chrome),
            View::Graph => super::graph::draw(frame, areas.body, hints, model, chrome),
            View::Gate => super::gate::draw(frame, areas.body, hints, model, chrome),
            View::Engines => super::engines::draw(frame, areas.body, hints, model, chrome),
        }
        if let (Some(popup), Some(rect)) = (&model.popup, areas.popup) {
            draw_popup(frame, rect, popup, chrome);
        }
        return;
    }
    draw_header(frame, areas.header, model, chrome);
    draw_workflows(frame, areas.workflows, model, chrome);
    draw_runs(frame, areas.runs, model, chrome);
    draw_tasks(frame, areas.tasks, model, chrome);
    draw_log(frame, areas.log, model, chrome);
    draw_monitor(frame, areas.monitor, model, chrome);
    draw_footer(frame, areas.footer, model, chrome);
    if let (Some(popup), Some(rect)) = (&model.popup, areas.popup) {
        draw_popup(frame, rect, popup, chrome);
        super::monitor::draw_alert_view(frame, rect, model, chrome);
    }
}

pub(super) fn pane<'a>(title: Line<'a>, focused: bool, theme: &Theme) -> Block<'a> {
    Block::bordered().title(title).border_style(theme.border(focused))
}

pub(super) fn local(time: DateTime<Utc>, chrome: &Chrome) -> String {
    if chrome.utc {
        time.format("%m-%d %H:%M:%S").to_string()
    } else {
        time.with_timezone(&Local).format("%m-%d %H:%M:%S").to_string()
    }
}

/// `in 7h12m`, `3m ago`.
pub fn relative(time: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (time - now).num_seconds();
    let span = short_duration(seconds.unsigned_abs());
    if seconds >= 0 { format!("in {span}") } else { format!("{span} ago") }
}

pub fn short_duration(seconds: u64) -> String {
    match seconds {
        0..60 => format!("{seconds}s"),
        60..3600 => format!("{}m{:02}s", seconds / 60, seconds % 60),
        3600..86_400 => format!("{}h{:02}m", seconds / 3600, seconds % 3600 / 60),
        _ => format!("{}d{:02}h", seconds / 86_400, seconds % 86_400 / 3600),
    }
}

pub(super) fn elapsed(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>, now: DateTime<Utc>) -> String {
    match start {
        Some(start) => {
            let millis = (end.unwrap_or(now) - start).num_milliseconds().max(0) as u64;
            if millis < 10_000 { format!("{:.1}s", millis as f64 / 1000.0) } else { short_duration(millis / 1000) }
        }
        None => "-".into(),
    }
}

fn draw_header(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let engine = match &model.cluster {
        Some(place) => format!("cluster {place}"),
        None if model.attached => "attached to a daemon".into(),
        None => "embedded engine".into(),
    };
    let running = model.active_runs();
    let alerts = model.unacknowledged_alerts();
    let mut spans = vec![
        Span::styled(" Conveyor ", Style::new().add_modifier(Modifier::BOLD | Modifier::REVERSED)),
        Span::raw(" "),
        Span::styled(engine, theme.fg("accent")),
        Span::raw(" │ "),
        Span::styled(format!("▶ {running} running"), if running > 0 { theme.fg("running") } else { theme.dim() }),
        Span::raw(" │ "),
        Span::styled(format!("⚠ {alerts} alert(s)"), if alerts > 0 { theme.fg("failed") } else { theme.dim() }),
        Span::raw(" │ "),
        Span::raw(format!("{} workflow(s)", model.workflows.len())),
    ];
    if !model.mouse_captured {
        spans.push(Span::raw(" │ mouse off"));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

fn draw_workflows(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let focused = model.focus == Pane::Workflows;
    let wide = layout::workflows_wide(area);
    let rows: Vec<Row> = model
        .visible_workflows()
        .into_iter()
        .map(|row| {
            let last = model.runs.get(&row.id).and_then(|runs| runs.first());
            let (dot, style) = if row.broken.is_some() {
                ("✗", theme.fg("failed"))
            } else if model.paused.contains(&row.id) {
                ("⏸", theme.fg("paused"))
            } else {
                match last {
                    // The last run's own mark: with NO_COLOR a dot would say nothing of how it ended.
                    Some(run) => (super::theme::run_symbol(run.state), theme.run(run.state)),
                    None => ("○", theme.dim()),
                }
            };
            let when = if row.broken.is_some() {
                "broken".to_string()
            } else if model.paused.contains(&row.id) {
                "paused".to_string()
            } else if let Some(next) = row.next_fire {
                // Under the `next` header a narrow pane says `19h00m`; a wide one `in 19h00m`.
                if wide {
                    relative(next, model.now)
                } else {
                    short_duration((next - model.now).num_seconds().max(0) as u64)
                }
            } else {
                row.trigger.split_whitespace().next().unwrap_or_default().to_string()
            };
            Row::new(vec![
                Cell::from(Span::styled(dot, style)),
                Cell::from(row.id.clone()),
                Cell::from(Span::styled(when, theme.dim())),
            ])
        })
        .collect();
    let filter = model.filter(Pane::Workflows);
    // The filter shows wherever the focus is, since it still narrows the list.
    let title = if (focused && model.filtering) || !filter.is_empty() {
        Line::from(format!(" Workflows /{filter} "))
    } else {
        Line::from(" Workflows ")
    };
    let when_width = if wide { 10 } else { 7 };
    let table = Table::new(rows, [Constraint::Length(1), Constraint::Fill(1), Constraint::Length(when_width)])
        .header(header_row(&["", "workflow", "next"], theme))
        .block(pane(title, focused, theme))
        .row_highlight_style(if focused { theme.selected() } else { Style::new().add_modifier(Modifier::BOLD) });
    let mut state = TableState::default().with_selected(Some(model.cursor.workflow));
    frame.render_stateful_widget(table, area, &mut state);
}

fn draw_runs(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let focused = model.focus == Pane::Runs;
    let Some(workflow) = model.selected_workflow() else {
        frame.render_widget(Paragraph::new("no workflows").block(pane(Line::from(" Runs "), focused, theme)), area);
        return;
    };
    let rate = model.success_rate(&workflow.id).map(|rate| format!(" · {:.0}% ok", rate * 100.0)).unwrap_or_default();
    let filter = model.filter(Pane::Runs);
    let filter = if (focused && model.filtering) || !filter.is_empty() { format!(" /{filter}") } else { String::new() };
    let title = Line::from(format!(" Runs · {}{rate}{filter} ", workflow.id));
    let block = pane(title, focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(problem) = &workflow.broken {
        let text = Paragraph::new(problem.clone()).style(theme.fg("failed")).wrap(Wrap { trim: false });
        frame.render_widget(text, inner);
        return;
    }
    let summary = if layout::runs_summary_shown(area) { 1 } else { 0 };
    let [info, list] = Layout::vertical([Constraint::Length(summary), Constraint::Min(0)]).areas(inner);
    let next = workflow.next_fire.map(|next| format!(" · next {}", relative(next, model.now))).unwrap_or_default();
    let durations = model.durations(&workflow.id, 30);
    let summary = format!("{}{next}", workflow.trigger);
    let summary_width = (summary.chars().count() as u16 + 1).min(info.width);
    let [text, spark] = Layout::horizontal([Constraint::Length(summary_width), Constraint::Min(0)]).areas(info);
    frame.render_widget(Paragraph::new(Span::styled(summary, theme.dim())), text);
    if !durations.is_empty() {
        let data: Vec<u64> = durations.iter().map(|seconds| (seconds * 1000.0) as u64).collect();
        frame.render_widget(Sparkline::default().data(&data).style(theme.fg("accent")), spark);
    }
    let runs = model.visible_runs();
    if runs.is_empty() {
        let text = format!("no runs yet — {} triggers one", chrome.keymap.short_label(Action::Trigger));
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), list);
        return;
    }
    // Narrow panes keep what identifies a run: its state, id and duration.
    let wide = layout::runs_wide(list);
    let rows: Vec<Row> = runs
        .iter()
        .map(|run| {
            Row::new(vec![
                Cell::from(Span::styled(format!("{} {}", run_symbol(run.state), run.state), theme.run(run.state))),
                Cell::from(run.id.clone()),
                Cell::from(if wide { local(run.created_at, chrome) } else { String::new() }),
                Cell::from(elapsed(run.started_at, run.finished_at, model.now)),
                Cell::from(run.trigger.clone()),
            ])
        })
        .collect();
    let widths = [
        Constraint::Length(14),
        Constraint::Length(20),
        Constraint::Length(if wide { 14 } else { 0 }),
        Constraint::Length(8),
        Constraint::Fill(1),
    ];
    let header = header_row(&["state", "run", if wide { "created" } else { "" }, "took", "trigger"], theme);
    let table = Table::new(rows, widths).header(header).row_highlight_style(if focused {
        theme.selected()
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    });
    let mut state = TableState::default().with_selected(Some(model.cursor.run));
    frame.render_stateful_widget(table, list, &mut state);
}

/// `A → B, C → D`: the tasks by depth in the graph.
pub fn graph_line(graph: &[(String, Vec<String>)]) -> String {
    // The same depths the graph view lays its columns out by.
    let depth = super::graph::depths(graph);
    let deepest = depth.values().copied().max().unwrap_or(0);
    (0..=deepest)
        .map(|level| {
            graph
                .iter()
                .filter(|(name, _)| depth.get(name.as_str()) == Some(&level))
                .map(|(name, _)| name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .collect::<Vec<_>>()
        .join(" → ")
}

fn draw_tasks(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let focused = model.focus == Pane::Tasks;
    let Some(run) = model.selected_run() else {
        frame.render_widget(Paragraph::new("").block(pane(Line::from(" Tasks "), focused, theme)), area);
        return;
    };
    let title = Line::from(vec![
        Span::raw(" Tasks · "),
        Span::styled(format!("{} {}", run_symbol(run.state), run.state), theme.run(run.state)),
        Span::raw(format!(" · {} ", run.id)),
    ]);
    let block = pane(title, focused, theme);
    let mut inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(workflow) = model.selected_workflow().filter(|w| !w.graph.is_empty()) {
        let [graph, rest] = Layout::vertical([Constraint::Length(1), Constraint::Min(0)]).areas(inner);
        frame.render_widget(
            Paragraph::new(Span::styled(format!("graph: {}", graph_line(&workflow.graph)), theme.dim())),
            graph,
        );
        inner = rest;
    }
    if let Some(error) = &run.error {
        let [list, message] = Layout::vertical([Constraint::Min(0), Constraint::Length(1)]).areas(inner);
        frame
            .render_widget(Paragraph::new(Span::styled(super::logview::printable(error), theme.fg("failed"))), message);
        inner = list;
    }
    let tasks = model.visible_tasks();
    let limits = model.selected_workflow().map(|workflow| &workflow.attempt_limits);
    // A narrow pane keeps every column in line by giving up the route and half the gauge.
    let wide = layout::tasks_wide(inner);
    let gauge_cells = if wide { 8 } else { 4 };
    // Which engine ran each task's current attempt, when engines sharing a store recorded it.
    let engines_shown =
        tasks.iter().any(|task| model.attempts_of(&run.id, &task.name).iter().any(|a| a.engine.is_some()));
    let rows: Vec<Row> = tasks
        .iter()
        .map(|task| {
            let attempts = model.attempts_of(&run.id, &task.name);
            let current = attempts.iter().max_by_key(|a| a.attempt);
            let mut route = current.map(|a| a.route.clone()).or(task.route.clone()).unwrap_or_default();
            // What a language model counted for the attempt, prompt + completion.
            if let Some(attempt) = current.filter(|a| a.prompt_tokens.is_some() || a.completion_tokens.is_some()) {
                let tokens = attempt.prompt_tokens.unwrap_or(0) + attempt.completion_tokens.unwrap_or(0);
                route.push_str(&format!(" · {} tok", short_count(tokens)));
            }
            // After a retry or a reroute, what matters is the attempt now running: its tries on this route and
            // its own time, not the task's first start.
            // Retries are taken on the task's own route; a fallback route gets one try.
            let limit = if task.route_index > 0 { Some(&1) } else { limits.and_then(|limits| limits.get(&task.name)) };
            let tries = match (task.route_attempts, limit) {
                (0, _) if task.attempts == 0 => String::new(),
                (0, _) => format!("#{}", task.attempts),
                (n, Some(limit)) if n <= *limit => format!("{n}/{limit}"),
                (n, _) => format!("#{n}"),
            };
            let took = match current {
                Some(attempt) => elapsed(Some(attempt.started_at), attempt.finished_at, model.now),
                None => elapsed(task.started_at, task.finished_at, model.now),
            };
            let mut cells = vec![
                Cell::from(Span::styled(task_symbol(task.state), theme.task(task.state))),
                Cell::from(task.name.clone()),
                Cell::from(Span::styled(task.state.to_string(), theme.task(task.state))),
                Cell::from(tries),
                Cell::from(took),
                Cell::from(progress_of(model, &run.workflow, task, gauge_cells)),
            ];
            if engines_shown {
                let engine = current.and_then(|attempt| attempt.engine).map(|id| model.engine_name(id));
                cells.push(Cell::from(super::logview::printable(&engine.unwrap_or_default())));
            }
            cells.push(Cell::from(if wide { route } else { String::new() }));
            Row::new(cells)
        })
        .collect();
    let gauge = if tasks.iter().any(|task| task.state == TaskState::Running) { gauge_cells as u16 + 5 } else { 0 };
    // Names take what the longest needs (up to 24), so the route column has the rest.
    let name_width = tasks.iter().map(|task| task.name.chars().count()).max().unwrap_or(4).clamp(4, 24) as u16;
    let mut widths = vec![
        Constraint::Length(1),
        Constraint::Length(name_width),
        Constraint::Length(16),
        Constraint::Length(5),
        Constraint::Length(7),
        Constraint::Length(gauge),
    ];
    let mut names = vec!["", "task", "state", "try", "took", if gauge > 0 { "progress" } else { "" }];
    if engines_shown {
        widths.push(Constraint::Length(if wide { 18 } else { 10 }));
        names.push("engine");
    }
    widths.push(Constraint::Fill(if wide { 1 } else { 0 }));
    names.push("route");
    let header = header_row(&names, theme);
    let table = Table::new(rows, widths).header(header).row_highlight_style(if focused {
        theme.selected()
    } else {
        Style::new().add_modifier(Modifier::BOLD)
    });
    let mut state = TableState::default().with_selected(Some(model.cursor.task));
    frame.render_stateful_widget(table, inner, &mut state);
}

/// `950`, `1.2k`, `34k`, `1.5M`: a count in four characters or so.
pub fn short_count(count: u64) -> String {
    match count {
        0..1000 => count.to_string(),
        1000..10_000 => format!("{:.1}k", count as f64 / 1000.0),
        10_000..1_000_000 => format!("{}k", count / 1000),
        _ => format!("{:.1}M", count as f64 / 1_000_000.0),
    }
}

/// A list's column names, dim, so the eye goes to the rows.
fn header_row<'a>(names: &[&'a str], theme: &Theme) -> Row<'a> {
    Row::new(names.iter().map(|name| Cell::from(*name))).style(theme.dim().add_modifier(Modifier::UNDERLINED))
}

/// A gauge from `::progress::` lines, or an estimate (`~`) from the median of past successful durations.
fn progress_of(model: &Model, workflow: &str, task: &crate::store::TaskRecord, cells: usize) -> String {
    if task.state != TaskState::Running {
        return String::new();
    }
    // Embedded, progress comes as events; attached to a daemon, as the attempt's stored last report.
    let reported = model.progress.get(&(task.run_id.clone(), task.name.clone())).copied().or_else(|| {
        model.attempts_of(&task.run_id, &task.name).into_iter().max_by_key(|a| a.attempt).and_then(|a| a.progress)
    });
    let (fraction, estimated) = match reported {
        Some(fraction) => (fraction, false),
        None => match (model.typical_duration(workflow, &task.name), task.started_at) {
            (Some(typical), Some(start)) if typical > 0.0 => {
                (((model.now - start).num_milliseconds() as f64 / 1000.0 / typical).min(0.99), true)
            }
            _ => return String::new(),
        },
    };
    let filled = ((fraction * cells as f64).round() as usize).min(cells);
    let bar = format!("{}{}", "█".repeat(filled), "░".repeat(cells - filled));
    format!("{bar}{}{:>3.0}%", if estimated { "~" } else { " " }, fraction * 100.0)
}

fn draw_log(frame: &mut Frame, area: Rect, model: &mut Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let focused = model.focus == Pane::Log;
    let filter = model.filter(Pane::Log).to_string();
    let filtering = model.filtering;
    let Some(log) = model.log.as_mut() else {
        let key = |action| chrome.keymap.short_label(action);
        let text = format!("{} (or {} on a task) opens its log", key(Action::Log), key(Action::Open));
        let hint = Paragraph::new(Span::styled(text, theme.dim())).block(pane(Line::from(" Log "), focused, theme));
        frame.render_widget(hint, area);
        return;
    };
    let mut flags = Vec::new();
    if log.follow {
        flags.push("following".to_string());
    }
    if log.wrap {
        flags.push("wrap".into());
    }
    if let Some((query, matches)) = &log.search {
        flags.push(format!("/{query}: {} match(es)", matches.len()));
    }
    if focused && filtering {
        flags.push(format!("search: {filter}▏"));
    }
    // What changes as one reads comes first, so a narrow pane cuts the names, not the search count.
    let title = format!(
        " Log · {} attempt {} · {} line(s){} · {}{} ",
        log.task,
        log.attempt,
        log.index.lines(),
        if flags.is_empty() { String::new() } else { format!(" · {}", flags.join(" · ")) },
        log.workflow.as_ref().map(|workflow| format!("{workflow} · ")).unwrap_or_default(),
        log.run,
    );
    let block = pane(Line::from(title), focused, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    log.height = inner.height as usize;
    if log.follow {
        log.top = log.last_top();
    }
    let gutter = log.index.lines().max(1).to_string().len();
    let matches = log.search.as_ref().map(|(_, matches)| matches.clone()).unwrap_or_default();
    let lines: Vec<Line> = log
        .window
        .iter()
        .enumerate()
        .map(|(offset, text)| {
            let number = log.window_top + offset;
            let mut style = Style::new();
            if log.index.errors.binary_search(&number).is_ok() {
                style = theme.fg("error_line");
            }
            if matches.binary_search(&number).is_ok() {
                style = style.patch(theme.fg("match")).add_modifier(Modifier::BOLD);
            }
            if log.mark == Some(number) {
                style = style.add_modifier(Modifier::REVERSED);
            }
            Line::from(vec![
                Span::styled(format!("{:>gutter$} ", number + 1), theme.dim()),
                Span::styled(text.clone(), style),
            ])
        })
        .collect();
    let mut paragraph = Paragraph::new(lines);
    if log.wrap {
        paragraph = paragraph.wrap(Wrap { trim: false });
    }
    frame.render_widget(paragraph, inner);
}

fn draw_monitor(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    let focused = model.focus == Pane::Monitor;
    let alerts = model.unacknowledged_alerts();
    let (engine_style, alert_style) = if model.monitor_alerts {
        (theme.dim(), Style::new().add_modifier(Modifier::BOLD))
    } else {
        (Style::new().add_modifier(Modifier::BOLD), theme.dim())
    };
    let title = Line::from(vec![
        Span::raw(" "),
        Span::styled("engine log", engine_style),
        Span::raw(" │ "),
        Span::styled(format!("alerts ({alerts})"), alert_style),
        Span::raw(" "),
    ]);
    let block = pane(title, focused, theme);
    if !model.monitor_alerts {
        super::monitor::draw_engine_log(frame, area, block, model, chrome);
        return;
    }
    let items: Vec<ListItem> = model
        .alerts
        .iter()
        .map(|alert| {
            let style = match alert.severity.as_str() {
                _ if alert.acked_at.is_some() => theme.dim(),
                "error" => theme.fg("failed"),
                "warning" => theme.fg("running"),
                _ => Style::new(),
            };
            let mark = if alert.acked_at.is_some() { "✓" } else { "!" };
            ListItem::new(Line::from(vec![
                Span::styled(format!("{mark} {} ", local(alert.at, chrome)), theme.dim()),
                Span::styled(super::logview::printable(&alert.message), style),
            ]))
        })
        .collect();
    let list = List::new(items).block(block).highlight_style(if focused { theme.selected() } else { Style::new() });
    let mut state = ListState::default().with_selected(Some(model.cursor.alert));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_footer(frame: &mut Frame, area: Rect, model: &Model, chrome: &Chrome) {
    let theme = chrome.theme;
    if let Some(status) = &model.status {
        frame.render_widget(Paragraph::new(Span::styled(format!(" {status}"), theme.fg("running"))), area);
        return;
    }
    if model.filtering && model.focus != Pane::Log {
        frame.render_widget(
            Paragraph::new(format!(" filter: {}▏ (Enter keeps it, Esc clears)", model.filter(model.focus))),
            area,
        );
        return;
    }
    let at_gate = model.selected_task().is_some_and(|task| task.state == TaskState::WaitingApproval);
    let mut hints: Vec<(String, String)> = keymap::footer_actions(model.focus, at_gate)
        .into_iter()
        .map(|action| (chrome.keymap.short_label(action), footer_word(model, action)))
        .collect();
    // `? help` and `q quit` always show: when the line is too long, the hints before them go, last first.
    let width = |hints: &[(String, String)]| {
        hints.iter().map(|(key, word)| key.chars().count() + word.len() + 4).sum::<usize>()
    };
    while width(&hints) > area.width as usize && hints.len() > 2 {
        hints.remove(hints.len() - 3);
    }
    let mut spans = Vec::new();
    for (key, word) in hints {
        spans.push(Span::styled(format!(" {key} "), Style::new().add_modifier(Modifier::REVERSED)));
        spans.push(Span::raw(format!(" {word} ")));
    }
    frame.render_widget(Paragraph::new(Line::from(spans)), area);
}

/// What a key does where the focus is: `/` searches a log and filters a list; `p` resumes what is paused or
/// interrupted.
fn footer_word(model: &Model, action: Action) -> String {
    let name = keymap::name(action);
    let resumes = match model.focus {
        Pane::Workflows => model.selected_workflow().is_some_and(|workflow| model.paused.contains(&workflow.id)),
        Pane::Runs | Pane::Tasks => model.selected_run().is_some_and(|run| {
            matches!(run.state, crate::state::RunState::Paused | crate::state::RunState::Interrupted)
        }),
        _ => false,
    };
    match action {
        Action::Filter if model.focus == Pane::Log => "search".into(),
        Action::Pause if resumes => "resume".into(),
        _ => name.replace('_', " "),
    }
}

/// A popup in its box `rect`, from the layout.
fn draw_popup(frame: &mut Frame, rect: Rect, popup: &Popup, chrome: &Chrome) {
    let theme = chrome.theme;
    match popup {
        Popup::Help { scroll } => {
            let lines: Vec<Line> = keymap::help(chrome.keymap)
                .into_iter()
                .map(|(keys, what)| {
                    Line::from(vec![Span::styled(format!(" {keys:>9} "), theme.fg("accent")), Span::raw(what)])
                })
                .collect();
            let shown = rect.height.saturating_sub(2) as usize;
            let scroll = (*scroll).min(lines.len().saturating_sub(shown));
            let title = if shown < lines.len() {
                format!(
                    " Keys {}-{} of {} ({}/{} scroll, any other key closes) ",
                    scroll + 1,
                    scroll + shown,
                    lines.len(),
                    keymap::popup_label(PopupKind::Help, PopupKey::Down),
                    keymap::popup_label(PopupKind::Help, PopupKey::Up)
                )
            } else {
                " Keys (any key closes) ".to_string()
            };
            frame.render_widget(Clear, rect);
            let block = Block::bordered().title(title).border_style(theme.border(true));
            frame.render_widget(Paragraph::new(lines).scroll((scroll as u16, 0)).block(block), rect);
        }
        Popup::Confirm { question, yes_focused, .. } => {
            frame.render_widget(Clear, rect);
            let button = |label: &str, focused: bool| {
                if focused {
                    Span::styled(format!("[ {label} ]"), theme.selected())
                } else {
                    Span::raw(format!("  {label}  "))
                }
            };
            let lines = vec![
                Line::from(question.clone()),
                Line::from(""),
                Line::from(vec![button("No", !yes_focused), Span::raw("   "), button("Yes", *yes_focused)])
                    .alignment(Alignment::Center),
            ];
            let label = |key| keymap::popup_label(PopupKind::Confirm, key);
            let switch: String =
                keymap::popup_labels(PopupKind::Confirm, PopupKey::Switch).into_iter().take(2).collect();
            let title = format!(
                " Confirm ({switch} choose, {}, {}/{}) ",
                label(PopupKey::Choose),
                label(PopupKey::Yes),
                label(PopupKey::No)
            );
            let block = Block::bordered().title(title).border_style(theme.border(true));
            frame.render_widget(Paragraph::new(lines).wrap(Wrap { trim: true }).block(block), rect);
        }
        Popup::Reroute { task, routes, notes, selected, .. } => {
            let label = |key| keymap::popup_label(PopupKind::Reroute, key);
            frame.render_widget(Clear, rect);
            let name_width = routes.iter().map(|route| route.chars().count()).max().unwrap_or(0);
            let items: Vec<ListItem> = routes
                .iter()
                .zip(notes.iter().chain(std::iter::repeat(&String::new())))
                .map(|(route, note)| {
                    ListItem::new(Line::from(vec![
                        Span::raw(format!(" {route:name_width$}  ")),
                        Span::styled(super::logview::printable(note), theme.dim()),
                    ]))
                })
                .collect();
            let block = Block::bordered()
                .title(format!(" Run {task} on ({}, {}) ", label(PopupKey::Choose), label(PopupKey::Close)))
                .border_style(theme.border(true));
            let list = List::new(items).block(block).highlight_style(theme.selected());
            frame.render_stateful_widget(list, rect, &mut ListState::default().with_selected(Some(*selected)));
        }
        Popup::Params(form) => super::params_form::draw(frame, rect, form, theme),
        Popup::CommandLine(line) => super::command_line::draw(frame, rect, line, theme),
        // Drawn by `monitor::draw_alert_view`, which reads the alert from the model.
        Popup::Alert { .. } => {}
    }
}
