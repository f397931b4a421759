//! Run details: everything about one run on one scrollable page — what started it and who, its params and
//! input, each task's attempts, error, gate decisions and output — so an operator need not open the store.
//! The run, tasks and attempts come live from the model when it holds them, else from the background read
//! (`Effect::LoadDetails`), which also brings the run's audit entries.

use std::collections::HashMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;
use serde_json::Value;

use super::keymap::Action;
use super::logview::printable;
use super::model::{Effect, Model, View};
use super::theme::{run_symbol, task_symbol};
use super::ui::{Chrome, elapsed, local, pane};
use crate::engine::Command;
use crate::state::TaskState;
use crate::store::{AttemptRecord, AuditRecord, RunRecord, TaskRecord};

/// What a JSON value may take of the page: past this, it is cut (and says so), so a huge output does not
/// stall the screen.
const JSON_BYTES: usize = 64 * 1024;
const JSON_LINES: usize = 2_000;
/// Audit entries read for a run.
pub const AUDIT_READ: usize = 500;

#[derive(Debug, Default, Clone, PartialEq)]
pub struct Details {
    pub run: Option<String>,
    pub loaded: Option<Loaded>,
    /// First line shown; the lines the page had room for, and had in all, when last drawn.
    pub top: usize,
    pub height: usize,
    pub total: usize,
    /// The view Esc returns to when details were opened from one (all runs); the panes otherwise.
    pub back: Option<View>,
    /// Each task's output as printed, and the task's state it was printed at.
    pub printed: HashMap<String, (Version, Vec<String>)>,
}

/// The run as read from the store.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Loaded {
    pub run: Option<RunRecord>,
    pub tasks: Vec<TaskRecord>,
    pub attempts: Vec<AttemptRecord>,
    pub audit: Vec<AuditRecord>,
    /// Each audit entry's command, parsed back from its JSON once (when the read comes back, not per frame),
    /// with its name.
    pub commands: Vec<(Option<Command>, String)>,
}

/// `i`: the selected run's details; what the lists do not hold is read in the background.
pub fn open(model: &mut Model) -> Vec<Effect> {
    let Some(run) = model.selected_run().map(|run| run.id.clone()) else {
        model.set_status("select a run to see its details");
        return Vec::new();
    };
    open_run(model, run, None)
}

/// A run's details, whichever run the panes have selected; Esc goes `back`.
pub fn open_run(model: &mut Model, run: String, back: Option<View>) -> Vec<Effect> {
    model.view = Some(View::Details);
    model.details = Details { run: Some(run.clone()), back, ..Details::default() };
    vec![Effect::LoadDetails(run)]
}

/// The background read came back; used only if the same run is still shown.
pub fn loaded(model: &mut Model, run: &str, mut loaded: Loaded) {
    if model.details.run.as_deref() == Some(run) {
        if loaded.commands.len() != loaded.audit.len() {
            loaded.commands = loaded.audit.iter().map(parse_command).collect();
        }
        model.details.loaded = Some(loaded);
    }
}

/// A command on the shown run (another operator's approval, a retry) changes its audit: read it again.
pub fn reload_on(model: &Model, event: &crate::engine::Event) -> Option<Effect> {
    let crate::engine::Event::Command { command, outcome, .. } = event else { return None };
    let run = model.details.run.as_ref().filter(|_| model.view == Some(View::Details))?;
    (command.contains(run.as_str()) || outcome.contains(run.as_str())).then(|| Effect::LoadDetails(run.clone()))
}

/// Scrolling keys; `None` for keys the view leaves to the console.
pub fn key(model: &mut Model, action: Option<Action>) -> Option<Vec<Effect>> {
    // A page is what the view shows, less a line kept for context.
    let page = super::layout::areas(model.screen, None).view_lines().saturating_sub(1).max(1);
    let details = &mut model.details;
    match action? {
        Action::Up => details.top = details.top.saturating_sub(1),
        Action::Down => details.top = details.top.saturating_add(1),
        Action::PageUp => details.top = details.top.saturating_sub(page),
        Action::PageDown => details.top = details.top.saturating_add(page),
        Action::Top => details.top = 0,
        // The draw brings it back to the last page.
        Action::Bottom => details.top = usize::MAX / 2,
        Action::Back => model.view = details.back.take(),
        _ => return None,
    }
    Some(Vec::new())
}

/// A writer that refuses past a size: serde stops there, so pretty-printing costs at most that much.
struct Capped(Vec<u8>);

impl Write for Capped {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        let room = JSON_BYTES.saturating_sub(self.0.len());
        if room == 0 {
            return Err(std::io::Error::other("cut"));
        }
        let taken = bytes.len().min(room);
        self.0.extend_from_slice(&bytes[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A value as indented, printable lines, at most `JSON_LINES` of them; the last says if it was cut.
pub fn pretty(value: &Value) -> Vec<String> {
    let mut out = Capped(Vec::new());
    let cut = serde_json::to_writer_pretty(&mut out, value).is_err();
    let text = String::from_utf8_lossy(&out.0);
    let mut lines: Vec<String> = text.lines().take(JSON_LINES).map(|line| format!("  {}", printable(line))).collect();
    if cut || text.lines().nth(JSON_LINES).is_some() {
        lines.push(format!("  … cut here: the value is larger than the {} KiB shown", JSON_BYTES / 1024));
    }
    lines
}

fn field(name: &str, value: String, style: Style) -> Line<'static> {
    Line::from(vec![
        Span::styled(format!("  {name:<10} "), Style::new().add_modifier(Modifier::BOLD)),
        Span::styled(value, style),
    ])
}

fn heading(text: String, style: Style) -> Line<'static> {
    Line::from(Span::styled(text, style.add_modifier(Modifier::BOLD)))
}

/// What an audit entry asked, parsed back from its JSON, and the command's name (`retry task`).
pub fn parse_command(entry: &AuditRecord) -> (Option<Command>, String) {
    let value = serde_json::from_str::<Value>(&entry.command).ok();
    let name = value
        .as_ref()
        .and_then(|value| value.get("command").and_then(Value::as_str))
        .unwrap_or("command")
        .replace('_', " ");
    (value.and_then(|value| serde_json::from_value(value).ok()), name)
}

/// What the page shows of a run: live from the lists where they hold it, else as read from the store.
struct Sources<'a> {
    run: &'a RunRecord,
    tasks: Vec<&'a TaskRecord>,
    attempts: Vec<&'a AttemptRecord>,
    audit: &'a [AuditRecord],
    commands: &'a [(Option<Command>, String)],
}

fn sources<'a>(model: &'a Model, id: &str) -> Option<Sources<'a>> {
    let loaded = model.details.loaded.as_ref();
    let run = model
        .runs
        .values()
        .flatten()
        .find(|run| run.id == id)
        .or_else(|| loaded.and_then(|loaded| loaded.run.as_ref()))?;
    let tasks: Vec<&TaskRecord> = match model.tasks.get(id) {
        Some(tasks) => tasks.iter().collect(),
        None => loaded.map(|loaded| loaded.tasks.iter().collect()).unwrap_or_default(),
    };
    let attempts: Vec<&AttemptRecord> = match model.attempts.get(id) {
        Some(attempts) => attempts.iter().collect(),
        None => loaded.map(|loaded| loaded.attempts.iter().collect()).unwrap_or_default(),
    };
    let audit: &[AuditRecord] = loaded.map(|loaded| loaded.audit.as_slice()).unwrap_or_default();
    let commands = loaded.map(|loaded| loaded.commands.as_slice()).unwrap_or_default();
    Some(Sources { run, tasks, attempts, audit, commands })
}

/// When a task's output may have changed: outputs are set as a task's state changes (it ends, waits at a
/// gate, is decided, retried or skipped); the output's own shape (kind and length, cheap to read) is there
/// too, for a record that arrives with its output filled in later.
type Version = (TaskState, u32, Option<DateTime<Utc>>, Option<DateTime<Utc>>, Option<(u8, usize)>);

fn version(task: &TaskRecord) -> Version {
    let shape = task.output.as_ref().map(|output| match output {
        Value::Null => (0, 0),
        Value::Bool(yes) => (1, *yes as usize),
        Value::Number(_) => (2, 0),
        Value::String(text) => (3, text.len()),
        Value::Array(items) => (4, items.len()),
        Value::Object(map) => (5, map.len()),
    });
    (task.state, task.attempts, task.started_at, task.finished_at, shape)
}

/// Pretty-prints the outputs whose task changed since the last draw, so a page of large outputs costs its
/// printing once, not on every frame.
fn refresh(model: &mut Model) {
    let Some(id) = model.details.run.clone() else { return };
    let fresh: Vec<(String, Version, Vec<String>)> = match sources(model, &id) {
        Some(sources) => sources
            .tasks
            .iter()
            .filter(|task| model.details.printed.get(&task.name).is_none_or(|(known, _)| *known != version(task)))
            .map(|task| (task.name.clone(), version(task), task.output.as_ref().map(pretty).unwrap_or_default()))
            .collect(),
        None => return,
    };
    for (name, version, lines) in fresh {
        model.details.printed.insert(name, (version, lines));
    }
}

/// Every line of the page, from what the model and the background read hold.
pub fn lines(model: &Model, chrome: &Chrome) -> Vec<Line<'static>> {
    let theme = chrome.theme;
    let details = &model.details;
    let Some(id) = details.run.as_deref() else { return vec![Line::from("no run selected")] };
    let loaded = details.loaded.as_ref();
    let Some(Sources { run, tasks, attempts, audit, commands }) = sources(model, id) else {
        let text =
            if loaded.is_some() { format!("run {id} is not in the store") } else { format!("reading run {id}…") };
        return vec![Line::from(Span::styled(text, theme.dim()))];
    };
    let plain = Style::new();
    let mut out = vec![
        Line::from(vec![
            Span::styled(format!("Run {id}"), Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(" of {} · ", printable(&run.workflow))),
            Span::styled(format!("{} {}", run_symbol(run.state), run.state), theme.run(run.state)),
        ]),
        field("trigger", trigger_text(run, audit, commands, chrome), plain),
    ];
    out.push(field("created", local(run.created_at, chrome), plain));
    if let Some(start) = run.started_at {
        out.push(field("started", local(start, chrome), plain));
    }
    match run.finished_at {
        Some(end) => out.push(field(
            "finished",
            format!("{} (took {})", local(end, chrome), elapsed(run.started_at, Some(end), model.now)),
            plain,
        )),
        None => out.push(field("running", format!("for {}", elapsed(run.started_at, None, model.now)), plain)),
    }
    if let Some(error) = &run.error {
        out.push(field("error", printable(error), theme.fg("failed")));
    }
    out.push(Line::from(""));
    out.push(heading("Params".into(), plain));
    out.extend(pretty(&run.params).into_iter().map(Line::from));
    out.push(heading("Input".into(), plain));
    out.extend(pretty(&run.input).into_iter().map(Line::from));
    let mut by_task: HashMap<&str, Vec<&AttemptRecord>> = HashMap::new();
    for attempt in attempts {
        by_task.entry(attempt.task.as_str()).or_default().push(attempt);
    }
    for task in tasks {
        out.push(Line::from(""));
        let took = if task.started_at.is_some() {
            format!(" · {}", elapsed(task.started_at, task.finished_at, model.now))
        } else {
            String::new()
        };
        out.push(heading(
            format!("Task {}: {} {}{took}", printable(&task.name), task_symbol(task.state), task.state),
            theme.task(task.state),
        ));
        let mut attempts = by_task.remove(task.name.as_str()).unwrap_or_default();
        attempts.sort_by_key(|attempt| attempt.attempt);
        for attempt in attempts {
            let end = attempt.finished_at.map(|end| local(end, chrome)).unwrap_or_else(|| "…".into());
            let mut text = format!(
                "#{} on {} · {} · {} → {} ({})",
                attempt.attempt,
                printable(&attempt.route),
                attempt.state,
                local(attempt.started_at, chrome),
                end,
                elapsed(Some(attempt.started_at), attempt.finished_at, model.now),
            );
            if let Some(code) = attempt.exit_code {
                text.push_str(&format!(" · exit {code}"));
            }
            if let Some(error) = &attempt.error {
                text.push_str(&format!(" · {}", printable(error)));
            }
            if let Some(engine) = attempt.engine {
                text.push_str(&format!(" · engine {}", printable(&model.engine_name(engine))));
            }
            out.push(field("attempt", text, plain));
        }
        if let Some(error) = &task.error {
            out.push(field("error", printable(error), theme.fg("failed")));
        }
        for (entry, (command, _)) in audit.iter().zip(commands) {
            let (verb, comment) = match command {
                Some(Command::Approve { task: name, comment, .. }) if *name == task.name => ("approve", comment),
                Some(Command::Reject { task: name, comment, .. }) if *name == task.name => ("reject", comment),
                _ => continue,
            };
            // The outcome says what was decided ("approved 2 item(s) …"); a refusal says why.
            let verdict = if entry.ok {
                printable(&entry.outcome)
            } else {
                format!("{verb} refused: {}", printable(&entry.outcome))
            };
            let mut text = format!(
                "{} via {} at {}: {verdict}",
                printable(&entry.who),
                printable(&entry.origin),
                local(entry.at, chrome)
            );
            if let Some(comment) = comment {
                text.push_str(&format!(" — “{}”", printable(comment)));
            }
            out.push(field("decision", text, theme.fg("waiting")));
        }
        match &task.output {
            Some(output) => {
                out.push(field("output", String::new(), plain));
                match details.printed.get(&task.name).filter(|(known, _)| *known == version(task)) {
                    Some((_, printed)) => out.extend(printed.iter().cloned().map(Line::from)),
                    None => out.extend(pretty(output).into_iter().map(Line::from)),
                }
            }
            None => out.push(field("output", "none".into(), theme.dim())),
        }
    }
    out.push(Line::from(""));
    out.push(heading("Commands on this run".into(), plain));
    if loaded.is_none() {
        out.push(Line::from(Span::styled("  reading the audit trail…", theme.dim())));
    } else if audit.is_empty() {
        out.push(Line::from(Span::styled("  none", theme.dim())));
    }
    for (entry, (_, name)) in audit.iter().zip(commands) {
        let style = if entry.ok { plain } else { theme.fg("failed") };
        out.push(Line::from(Span::styled(
            format!(
                "  {} {} via {}: {} — {}{}",
                local(entry.at, chrome),
                printable(&entry.who),
                printable(&entry.origin),
                name,
                if entry.ok { "" } else { "refused: " },
                printable(&entry.outcome)
            ),
            style,
        )));
    }
    out
}

/// `manual, by alice via console`, `the schedule`, `file /in/a.csv arrived (1200 bytes)`.
fn trigger_text(
    run: &RunRecord,
    audit: &[AuditRecord],
    commands: &[(Option<Command>, String)],
    chrome: &Chrome,
) -> String {
    match run.trigger.as_str() {
        "event" => {
            let file = run.input.get("file").and_then(Value::as_str).map(printable);
            let size = run.input.get("size").and_then(Value::as_u64).map(|size| format!(" ({size} bytes)"));
            match file {
                Some(file) => format!("event: file {file} arrived{}", size.unwrap_or_default()),
                None => "event".into(),
            }
        }
        "schedule" => "the schedule".into(),
        kind => {
            let started = format!("started run {}", run.id);
            let by = audit.iter().zip(commands).find_map(|(entry, (command, _))| {
                let trigger = matches!(command, Some(Command::Trigger { .. } | Command::Backfill { .. }));
                (entry.ok && trigger && entry.outcome.contains(&started)).then_some(entry)
            });
            // A backfilled run stands for an instant of the schedule: which one is what an operator asks.
            let kind = match run.input.get("scheduled_at").and_then(Value::as_str) {
                Some(instant) if kind == "backfill" => format!("backfill of {}", printable(instant)),
                _ => printable(kind),
            };
            match by {
                Some(entry) => format!(
                    "{kind}, by {} via {} at {}",
                    printable(&entry.who),
                    printable(&entry.origin),
                    local(entry.at, chrome)
                ),
                None => kind,
            }
        }
    }
}

pub fn draw(frame: &mut Frame, area: Rect, hints: Option<Rect>, model: &mut Model, chrome: &Chrome) {
    let theme = chrome.theme;
    if let Some(hints) = hints {
        let key = |action| chrome.keymap.short_label(action);
        let text = format!(
            " {}/{} scroll · {}/{} page · {}/{} top/bottom · {} back",
            key(Action::Down),
            key(Action::Up),
            key(Action::PageUp),
            key(Action::PageDown),
            key(Action::Top),
            key(Action::Bottom),
            key(Action::Back)
        );
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), hints);
    }
    refresh(model);
    let block = pane(Line::from(""), true, theme);
    let width = block.inner(area).width as usize;
    let lines: Vec<Line> = lines(model, chrome).into_iter().flat_map(|line| wrap(line, width)).collect();
    let details = &mut model.details;
    let title = format!(" Run details · {} ", details.run.as_deref().unwrap_or("-"));
    let block = pane(Line::from(title), true, theme);
    let inner = block.inner(area);
    details.height = inner.height as usize;
    details.top = details.top.min(lines.len().saturating_sub(details.height));
    details.total = lines.len();
    let total = lines.len();
    let shown: Vec<Line> = lines.into_iter().skip(details.top).take(details.height).collect();
    let block = if total > details.height {
        block.title_bottom(Line::from(format!(" {}-{} of {total} ", details.top + 1, details.top + shown.len())))
    } else {
        block
    };
    frame.render_widget(Paragraph::new(shown).block(block), area);
}

/// A line longer than the page goes on under itself, indented, broken at a space where there is one, so
/// nothing is cut off at the right.
fn wrap(line: Line<'static>, width: usize) -> Vec<Line<'static>> {
    const INDENT: usize = 4;
    // No character is wider than its bytes are many: a line short in bytes needs no measuring.
    let bytes: usize = line.spans.iter().map(|span| span.content.len()).sum();
    if bytes <= width || line.width() <= width || width <= INDENT + 1 {
        return vec![line];
    }
    let cells: Vec<(char, Style, usize)> = line
        .spans
        .iter()
        .flat_map(|span| {
            span.content.chars().map(move |c| {
                let wide = if c.is_ascii() { 1 } else { Span::raw(c.to_string()).width() };
                (c, span.style, wide)
            })
        })
        .collect();
    let mut out = Vec::new();
    let mut start = 0;
    while start < cells.len() {
        let room = if out.is_empty() { width } else { width - INDENT };
        let (mut end, mut used) = (start, 0);
        while end < cells.len() && used + cells[end].2 <= room {
            used += cells[end].2;
            end += 1;
        }
        // At least one character a line, so a character wider than the page cannot stop the wrapping.
        end = end.max(start + 1);
        let mut next = end;
        if end < cells.len()
            && let Some(space) = (start + 1..end).rev().find(|&at| cells[at].0 == ' ')
        {
            (end, next) = (space, space + 1);
        }
        let mut spans: Vec<Span<'static>> =
            if out.is_empty() { Vec::new() } else { vec![Span::raw(" ".repeat(INDENT))] };
        for &(c, style, _) in &cells[start..end] {
            match spans.last_mut() {
                Some(last) if last.style == style => last.content.to_mut().push(c),
                _ => spans.push(Span::styled(c.to_string(), style)),
            }
        }
        out.push(Line::from(spans));
        start = next;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_small_value_prints_pretty_and_indented() {
        assert_eq!(pretty(&json!({"a": 1})), vec!["  {", "    \"a\": 1", "  }"]);
    }

    #[test]
    fn a_huge_value_is_cut_and_says_so() {
        let big: Vec<Value> = (0..100_000).map(|n| json!({"n": n, "text": "x".repeat(20)})).collect();
        let lines = pretty(&Value::Array(big));
        assert!(lines.len() <= JSON_LINES + 1);
        assert!(lines.last().unwrap().contains("cut here"));
    }

    #[test]
    fn a_long_line_wraps_under_itself_keeping_its_styles() {
        let bold = Style::new().add_modifier(Modifier::BOLD);
        let line = Line::from(vec![Span::styled("abcdef", bold), Span::raw("ghij")]);
        let wrapped = wrap(line, 8);
        let text = |lines: &[Line]| -> Vec<String> {
            lines.iter().map(|line| line.spans.iter().map(|span| span.content.as_ref()).collect()).collect()
        };
        assert_eq!(text(&wrapped), vec!["abcdefgh", "    ij"]);
        assert_eq!(wrapped[0].spans[0].style, bold);
        assert_eq!(wrapped[1].spans.last().unwrap().style, Style::new(), "each piece keeps its own style");
        let words = wrap(Line::from("one two three four"), 10);
        assert_eq!(text(&words), vec!["one two", "    three", "    four"], "broken at spaces");
        assert_eq!(wrap(Line::from("short"), 8).len(), 1);
    }

    #[test]
    fn control_characters_in_a_value_do_not_reach_the_screen() {
        let lines = pretty(&json!({"text": "bell\u{7}"}));
        assert!(lines.iter().all(|line| !line.contains('\u{7}')));
    }
}
