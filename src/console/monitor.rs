//! The Monitor pane's engine log: what the engine does, as short lines with a level and a target (the
//! workflow, or `engine` / `operator`), pushed into tui-logger so its target selector filters them by
//! workflow and level. The engine knows nothing of this: the console turns the events it sees (embedded) or
//! the snapshots and store records it reads (attached to a daemon) into lines, and only changes make lines.

use std::collections::{BTreeSet, HashMap};

use chrono::{DateTime, Local, Utc};
use crossterm::event::{KeyCode, KeyEvent};
use log::Level;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Padding, Paragraph, Wrap};
use tui_logger::{ExtLogRecord, LogFormatter, TuiWidgetEvent, TuiWidgetState};

use super::keymap::Action;
use super::logview::printable;
use super::model::{Effect, Model, Pane, Popup, Snapshot};
use super::theme::Theme;
use super::ui::Chrome;
use crate::engine::{Command, Event};
use crate::state::{RunState, TaskState};
use crate::store::{AlertRecord, AuditRecord, FireRecord, RunRecord, Store, TaskRecord};

/// The module the monitor's own records name, so the formatter knows their message starts with the time the
/// engine recorded (not the time the console read it, which attached to a daemon is up to half a second
/// later).
pub const MODULE: &str = "conveyor::console::monitor";
/// Target of lines about the engine as a whole (reloads).
pub const ENGINE: &str = "engine";
/// Target of operators' commands that name no workflow the console knows.
pub const OPERATOR: &str = "operator";
/// Store records read per attached refresh: a burst beyond it is read on the next ones.
const TRAIL_BATCH: usize = 500;
/// Runs remembered before those that ended are forgotten.
const RUNS_REMEMBERED: usize = 4096;
/// Alerts remembered before the older half is forgotten (the console lists 200).
const ALERTS_REMEMBERED: usize = 2048;

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorLine {
    pub at: DateTime<Utc>,
    pub level: Level,
    pub target: String,
    pub text: String,
}

impl MonitorLine {
    fn new(at: DateTime<Utc>, level: Level, target: &str, text: impl Into<String>) -> MonitorLine {
        MonitorLine { at, level, target: target.to_string(), text: super::logview::printable(&text.into()) }
    }
}

/// What the console last saw of each run, task, alert and pause, so that an event or a snapshot repeating
/// what is known says nothing (an `Event::Task` comes for many reasons).
#[derive(Debug, Default)]
pub struct Watcher {
    runs: HashMap<String, (String, RunState)>,
    tasks: HashMap<(String, String), (TaskState, u32)>,
    alerts: HashMap<i64, bool>,
    paused: BTreeSet<String>,
    /// The first snapshot tells what already was: it is learnt, not announced.
    seeded: bool,
}

impl Watcher {
    /// The lines an engine event makes (none when it repeats what is known).
    pub fn event(&mut self, event: &Event, now: DateTime<Utc>) -> Vec<MonitorLine> {
        match event {
            Event::Run(run) => self.run(run, now),
            Event::Task(task) => self.task(task, now),
            Event::Alert(alert) => self.alert(alert).into_iter().collect(),
            Event::Fire(fire) => vec![fire_line(fire)],
            Event::Command { who, via, command, ok, outcome } => {
                vec![self.command(now, who, via, command, *ok, outcome)]
            }
            Event::Reloaded { changed, removed, broken } => reload_lines(now, changed, removed, broken),
            Event::WorkflowPaused { workflow, paused } => self.pause(workflow, *paused, now).into_iter().collect(),
            Event::Attempt(_) | Event::Log { .. } | Event::Progress { .. } => Vec::new(),
        }
    }

    /// The lines a snapshot read from the store makes, compared with what was seen before; the first one
    /// only teaches what is.
    pub fn snapshot(&mut self, snapshot: &Snapshot, now: DateTime<Utc>) -> Vec<MonitorLine> {
        self.read(snapshot, now, true)
    }

    /// The lines what changed in a shared store makes (`Model::apply_changes`): as a snapshot's, but only the
    /// rows written are there, so a task may come without its run and a run not listed is not old.
    pub fn changes(&mut self, changes: &Snapshot, now: DateTime<Utc>) -> Vec<MonitorLine> {
        if !self.seeded {
            // Ahead of the first snapshot: what is known, not news; the snapshot still seeds the rest.
            for run in &changes.runs {
                self.runs.insert(run.id.clone(), (run.workflow.clone(), run.state));
            }
            for task in &changes.tasks {
                self.tasks.insert((task.run_id.clone(), task.name.clone()), (task.state, task.attempts));
            }
            return Vec::new();
        }
        self.read(changes, now, false)
    }

    fn read(&mut self, snapshot: &Snapshot, now: DateTime<Utc>, whole: bool) -> Vec<MonitorLine> {
        if !self.seeded {
            self.seeded = true;
            for run in &snapshot.runs {
                self.runs.insert(run.id.clone(), (run.workflow.clone(), run.state));
            }
            for task in &snapshot.tasks {
                self.tasks.insert((task.run_id.clone(), task.name.clone()), (task.state, task.attempts));
            }
            self.alerts = snapshot.alerts.iter().map(|alert| (alert.id, alert.acked_at.is_some())).collect();
            self.paused = snapshot.paused.clone();
            return Vec::new();
        }
        let mut lines = Vec::new();
        let mut tasks_of: HashMap<&str, Vec<&TaskRecord>> = HashMap::new();
        for task in &snapshot.tasks {
            tasks_of.entry(task.run_id.as_str()).or_default().push(task);
        }
        // Oldest first, so a run's start comes before its tasks' and lines read in order.
        let mut runs: Vec<&RunRecord> = snapshot.runs.iter().collect();
        runs.sort_by(|a, b| a.created_at.cmp(&b.created_at).then_with(|| a.id.cmp(&b.id)));
        for run in runs {
            let mut tasks = tasks_of.remove(run.id.as_str()).unwrap_or_default();
            tasks.sort_by_key(|task| task.position);
            // A run that had ended before and has not changed: its tasks, read for the first time, are history.
            let old = self.runs.get(&run.id).is_some_and(|(_, state)| *state == run.state && state.is_finished());
            if old {
                for task in tasks {
                    self.tasks.insert((task.run_id.clone(), task.name.clone()), (task.state, task.attempts));
                }
                continue;
            }
            // A run's start before its tasks' lines, its end (the last of its lines) after them.
            let mut own = self.run(run, now);
            let end = if run.state.is_finished() { own.pop() } else { None };
            lines.extend(own);
            for task in tasks {
                lines.extend(self.task(task, now));
            }
            lines.extend(end);
        }
        // Tasks whose run was not written (changes only: a snapshot lists every run it reads tasks of).
        let mut rest: Vec<&TaskRecord> = tasks_of.into_values().flatten().collect();
        rest.sort_by(|a, b| (&a.run_id, a.position).cmp(&(&b.run_id, b.position)));
        for task in rest {
            lines.extend(self.task(task, now));
        }
        let mut alerts: Vec<&AlertRecord> = snapshot.alerts.iter().collect();
        alerts.sort_by_key(|alert| alert.id);
        lines.extend(alerts.into_iter().filter_map(|alert| self.alert(alert)));
        let before = self.paused.clone();
        for workflow in snapshot.paused.difference(&before) {
            lines.extend(self.pause(workflow, true, now));
        }
        for workflow in before.difference(&snapshot.paused) {
            lines.extend(self.pause(workflow, false, now));
        }
        if !whole {
            return lines;
        }
        // Runs the store no longer lists are old: nothing about them changes any more.
        let listed: BTreeSet<&str> = snapshot.runs.iter().map(|run| run.id.as_str()).collect();
        self.runs.retain(|id, _| listed.contains(id.as_str()));
        self.tasks.retain(|(run, _), _| listed.contains(run.as_str()));
        // The alerts the store lists are the newest: an older one is not shown again, nor changes.
        let oldest = snapshot.alerts.iter().map(|alert| alert.id).min().unwrap_or(i64::MAX);
        self.alerts.retain(|id, _| *id >= oldest);
        lines
    }

    fn run(&mut self, run: &RunRecord, now: DateTime<Utc>) -> Vec<MonitorLine> {
        let before = self.runs.insert(run.id.clone(), (run.workflow.clone(), run.state)).map(|(_, state)| state);
        if self.runs.len() > RUNS_REMEMBERED {
            self.forget_ended();
        }
        if before == Some(run.state) {
            return Vec::new();
        }
        let target = run.workflow.as_str();
        let id = &run.id;
        let mut lines = Vec::new();
        let started_at = run.started_at.unwrap_or(run.created_at);
        if matches!(before, None | Some(RunState::Queued)) && run.state != RunState::Queued {
            let text = match run.input.get("file").and_then(|file| file.as_str()).filter(|_| run.trigger == "event") {
                Some(file) => format!("{file} arrived: run {id} started"),
                None => format!("run {id} started ({})", run.trigger),
            };
            lines.push(MonitorLine::new(started_at, Level::Info, target, text));
        }
        let ended = run.finished_at.unwrap_or(now);
        let took = duration(run.started_at, run.finished_at);
        let error = run.error.as_deref().map(|error| format!(": {error}")).unwrap_or_default();
        let line = match run.state {
            RunState::Queued => Some((Level::Info, format!("run {id} queued ({})", run.trigger))),
            RunState::Running => match before {
                Some(RunState::Paused | RunState::WaitingApproval | RunState::Interrupted) => {
                    Some((Level::Info, format!("run {id} resumed")))
                }
                _ => None,
            },
            RunState::Paused => Some((Level::Info, format!("run {id} paused"))),
            RunState::WaitingApproval => Some((Level::Warn, format!("run {id} waits for approval"))),
            RunState::Succeeded => Some((Level::Info, format!("run {id} succeeded in {took}"))),
            RunState::Failed => Some((Level::Error, format!("run {id} failed after {took}{error}"))),
            RunState::Cancelled => Some((Level::Warn, format!("run {id} cancelled after {took}"))),
            RunState::Interrupted => Some((Level::Warn, format!("run {id} interrupted{error}"))),
        };
        let at = if run.state.is_finished() { ended } else { now };
        lines.extend(line.map(|(level, text)| MonitorLine::new(at, level, target, text)));
        lines
    }

    fn task(&mut self, task: &TaskRecord, now: DateTime<Utc>) -> Vec<MonitorLine> {
        let key = (task.run_id.clone(), task.name.clone());
        let before = self.tasks.insert(key, (task.state, task.attempts));
        if before == Some((task.state, task.attempts)) || (before.is_none() && task.state == TaskState::Pending) {
            return Vec::new();
        }
        let target = self.runs.get(&task.run_id).map_or(ENGINE, |(workflow, _)| workflow.as_str()).to_string();
        let (name, attempt, run) = (&task.name, task.attempts, short_run(&task.run_id));
        let error = task.error.as_deref().map(|error| format!(": {error}")).unwrap_or_default();
        let (at, level, text) = match task.state {
            TaskState::Pending => (now, Level::Info, format!("{name} pending again (run {run})")),
            TaskState::Running => {
                (task.started_at.unwrap_or(now), Level::Info, format!("{name} started, attempt {attempt} (run {run})"))
            }
            TaskState::RetryWait => {
                // The engine's error already says when it tries again; without one, say it here.
                let when = task.retry_at.filter(|_| task.error.is_none());
                let when = when.map(|at| format!(", retry at {}", clock(at))).unwrap_or_default();
                (now, Level::Warn, format!("{name} attempt {attempt} failed{when} (run {run}){error}"))
            }
            TaskState::WaitingApproval => (now, Level::Warn, format!("{name} waits for approval (run {run})")),
            TaskState::Succeeded => {
                let took = duration(task.started_at, task.finished_at);
                let at = task.finished_at.unwrap_or(now);
                (at, Level::Info, format!("{name} succeeded on attempt {attempt} in {took} (run {run})"))
            }
            TaskState::Failed => {
                let at = task.finished_at.unwrap_or(now);
                (at, Level::Error, format!("{name} failed on attempt {attempt} (run {run}){error}"))
            }
            TaskState::Skipped => (task.finished_at.unwrap_or(now), Level::Warn, format!("{name} skipped (run {run})")),
            TaskState::Cancelled => {
                (task.finished_at.unwrap_or(now), Level::Warn, format!("{name} cancelled (run {run})"))
            }
        };
        vec![MonitorLine::new(at, level, &target, text)]
    }

    fn alert(&mut self, alert: &AlertRecord) -> Option<MonitorLine> {
        let acked = alert.acked_at.is_some();
        let before = self.alerts.insert(alert.id, acked);
        if self.alerts.len() > ALERTS_REMEMBERED {
            // The oldest are no longer listed anywhere: their acknowledgement is not news.
            let mut ids: Vec<i64> = self.alerts.keys().copied().collect();
            ids.sort_unstable();
            let cut = ids[ids.len() - ALERTS_REMEMBERED / 2];
            self.alerts.retain(|id, _| *id >= cut);
        }
        let target = alert.workflow.as_deref().unwrap_or(ENGINE);
        match before {
            Some(was) if was == acked => None,
            Some(_) => Some(MonitorLine::new(
                alert.acked_at.unwrap_or(alert.at),
                Level::Info,
                target,
                format!("alert {} acknowledged", alert.id),
            )),
            None => Some(MonitorLine::new(alert.at, severity_level(&alert.severity), target, alert.message.clone())),
        }
    }

    fn pause(&mut self, workflow: &str, paused: bool, now: DateTime<Utc>) -> Option<MonitorLine> {
        let changed = if paused { self.paused.insert(workflow.to_string()) } else { self.paused.remove(workflow) };
        changed.then(|| MonitorLine::new(now, Level::Info, workflow, if paused { "paused" } else { "resumed" }))
    }

    /// A command goes under the workflow it names, or whose run it names, so that a workflow's lines say
    /// who did what to it; a refused command is a warning: someone asked for something that did not happen.
    pub fn command(
        &self,
        at: DateTime<Utc>,
        who: &str,
        via: &str,
        command: &str,
        ok: bool,
        outcome: &str,
    ) -> MonitorLine {
        let fields: Option<serde_json::Map<String, serde_json::Value>> = serde_json::from_str(command).ok();
        let named = |key: &str| fields.as_ref().and_then(|fields| fields.get(key)?.as_str().map(str::to_string));
        let target = named("workflow")
            .or_else(|| named("run").and_then(|run| self.runs.get(&run).map(|(workflow, _)| workflow.clone())))
            .unwrap_or_else(|| OPERATOR.to_string());
        let level = if ok { Level::Info } else { Level::Warn };
        let verdict = if ok { "" } else { "refused: " };
        let text = fields.as_ref().map_or_else(|| command.to_string(), command_text);
        MonitorLine::new(at, level, &target, format!("{who} via {via}: {text} → {verdict}{outcome}"))
    }

    /// The lines of audit records and fires read from the store (attached to a daemon), in the order they
    /// were recorded.
    pub fn trail(&self, audits: &[AuditRecord], fires: &[FireRecord]) -> Vec<MonitorLine> {
        let mut lines: Vec<MonitorLine> = audits
            .iter()
            .flat_map(|audit| match reload_of(audit) {
                Some((changed, removed, broken)) => reload_lines(audit.at, &changed, &removed, &broken),
                None => {
                    vec![self.command(audit.at, &audit.who, &audit.origin, &audit.command, audit.ok, &audit.outcome)]
                }
            })
            .chain(fires.iter().map(fire_line))
            .collect();
        lines.sort_by_key(|line| line.at);
        lines
    }

    /// How many runs, tasks and alerts it remembers.
    #[cfg(test)]
    pub fn remembered(&self) -> (usize, usize, usize) {
        (self.runs.len(), self.tasks.len(), self.alerts.len())
    }

    fn forget_ended(&mut self) {
        self.runs.retain(|_, (_, state)| !state.is_finished());
        let runs = &self.runs;
        self.tasks.retain(|(run, _), _| runs.contains_key(run));
    }
}

/// Alerts by severity: an error alert is an ERROR line, a warning a WARN line, anything else INFO.
pub fn severity_level(severity: &str) -> Level {
    match severity.to_ascii_lowercase().as_str() {
        "error" | "critical" | "fatal" => Level::Error,
        "warning" | "warn" => Level::Warn,
        _ => Level::Info,
    }
}

pub fn fire_line(fire: &FireRecord) -> MonitorLine {
    let run = fire.run_id.as_deref().map(|run| format!(": run {run}")).unwrap_or_default();
    let (level, text) = match fire.outcome.strip_prefix("skipped") {
        Some(why) => (Level::Warn, format!("fire of {} skipped{why}", clock(fire.scheduled_at))),
        // A backfilled instant may be months old: its date is the news.
        None if fire.outcome == "backfill" => {
            let day = fire.scheduled_at.with_timezone(&Local).format("%Y-%m-%d %H:%M:%S");
            (Level::Info, format!("backfill of {day}{run}"))
        }
        None => (Level::Info, format!("fire of {} {}{run}", clock(fire.scheduled_at), fire.outcome)),
    };
    MonitorLine::new(fire.fired_at, level, &fire.workflow, text)
}

/// A command as an operator would say it: `retry_task 20261125-114500-a1b2 Score`, not its JSON.
fn command_text(fields: &serde_json::Map<String, serde_json::Value>) -> String {
    let mut words = Vec::new();
    for (key, value) in fields {
        match value {
            serde_json::Value::String(text) if key == "command" => words.insert(0, text.clone()),
            serde_json::Value::String(text) => words.push(text.clone()),
            other => words.push(format!("{key}={other}")),
        }
    }
    words.join(" ")
}

/// A reload the engine recorded in the audit trail: what changed, was removed, is broken.
fn reload_of(audit: &AuditRecord) -> Option<(Vec<String>, Vec<String>, Vec<String>)> {
    if audit.origin != "reload" {
        return None;
    }
    let record: serde_json::Value = serde_json::from_str(&audit.command).ok()?;
    let names = |key: &str| -> Vec<String> {
        record[key].as_array().into_iter().flatten().filter_map(|name| name.as_str().map(String::from)).collect()
    };
    Some((names("changed"), names("removed"), names("broken")))
}

fn reload_lines(now: DateTime<Utc>, changed: &[String], removed: &[String], broken: &[String]) -> Vec<MonitorLine> {
    let mut lines = Vec::new();
    if !changed.is_empty() {
        lines.push(MonitorLine::new(now, Level::Info, ENGINE, format!("reloaded: {}", changed.join(", "))));
    }
    if !removed.is_empty() {
        lines.push(MonitorLine::new(now, Level::Info, ENGINE, format!("removed: {}", removed.join(", "))));
    }
    if !broken.is_empty() {
        lines.push(MonitorLine::new(now, Level::Warn, ENGINE, format!("broken: {}", broken.join(", "))));
    }
    lines
}

/// Where the audit trail and the fires were read up to.
pub type TrailCursor = (i64, i64);

/// What the daemon recorded since `cursor`: commands with who gave them, and fires, which a snapshot does
/// not carry. Without a cursor it only finds where the records end: history is not replayed on attaching.
pub fn read_trail(store: &Store, cursor: Option<TrailCursor>) -> (Vec<AuditRecord>, Vec<FireRecord>, TrailCursor) {
    let Some((audit_after, fire_after)) = cursor else {
        return (
            Vec::new(),
            Vec::new(),
            (store.last_audit_id().unwrap_or_default(), store.last_fire_id().unwrap_or_default()),
        );
    };
    let audits = store.audit_since(audit_after, TRAIL_BATCH).unwrap_or_default();
    let fires = store.fires_since(fire_after, TRAIL_BATCH).unwrap_or_default();
    let next = (audits.last().map_or(audit_after, |audit| audit.id), fires.last().map_or(fire_after, |(id, _)| *id));
    (audits, fires.into_iter().map(|(_, fire)| fire).collect(), next)
}

/// Hands lines to tui-logger with their workflow as the target; its own level filter is bypassed, the
/// widget's selector decides what shows.
pub fn emit(lines: &[MonitorLine]) {
    emit_with(lines, clock);
}

/// `emit` with the clock of the lines' times chosen (the tests' is UTC, whatever the machine's zone).
pub fn emit_with(lines: &[MonitorLine], clock: impl Fn(DateTime<Utc>) -> String) {
    let drain = tui_logger::Drain::new();
    for line in lines {
        drain.log(
            &log::Record::builder()
                .args(format_args!("{} {}", clock(line.at), line.text))
                .level(line.level)
                .target(&line.target)
                .module_path_static(Some(MODULE))
                .build(),
        );
    }
}

/// `HH:MM:SS` in the machine's zone.
fn clock(at: DateTime<Utc>) -> String {
    at.with_timezone(&Local).format("%H:%M:%S").to_string()
}

fn duration(start: Option<DateTime<Utc>>, end: Option<DateTime<Utc>>) -> String {
    match (start, end) {
        (Some(start), Some(end)) => {
            let millis = (end - start).num_milliseconds().max(0) as u64;
            if millis < 10_000 {
                format!("{:.1}s", millis as f64 / 1000.0)
            } else {
                super::ui::short_duration(millis / 1000)
            }
        }
        _ => "?".into(),
    }
}

/// The random tail of a run id (`20261125-114500-a1b2` → `a1b2`): task lines stay short, and the run's own
/// lines carry its full id.
fn short_run(id: &str) -> &str {
    id.rsplit('-').next().filter(|tail| !tail.is_empty()).unwrap_or(id)
}

/// Words of `text` in lines of at most `width` characters, the lines after the first indented by `indent`;
/// a word is broken only when it is longer than a whole line (an id never wraps inside itself otherwise).
pub fn wrap_words(text: &str, width: usize, indent: usize) -> Vec<String> {
    let width = width.max(indent + 8);
    let mut lines: Vec<String> = Vec::new();
    let mut line = String::new();
    // Characters in `line`, and how many of them are its indent.
    let (mut used, mut start) = (0, 0);
    for word in text.split(' ').filter(|word| !word.is_empty()) {
        let mut chars: Vec<char> = word.chars().collect();
        let gap = usize::from(used > start);
        if used + gap + chars.len() > width && used > start && chars.len() <= width - indent {
            // It fits on a line of its own: it starts one rather than being cut.
            lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
            (used, start) = (indent, indent);
        }
        if used > start {
            line.push(' ');
            used += 1;
        }
        // Longer than a whole line: cut where lines end.
        while used + chars.len() > width {
            line.extend(chars.drain(..width - used));
            lines.push(std::mem::replace(&mut line, " ".repeat(indent)));
            (used, start) = (indent, indent);
        }
        used += chars.len();
        line.extend(chars);
    }
    lines.push(line);
    lines
}

/// `HH:MM:SS LEVEL target message`, wrapped at words under the time.
pub struct Formatter {
    pub time: Style,
    pub target: Style,
    pub error: Style,
    pub warn: Style,
}

impl Formatter {
    pub fn new(theme: &Theme) -> Formatter {
        Formatter {
            time: theme.dim(),
            target: theme.fg("accent"),
            error: theme.fg("failed"),
            warn: theme.fg("running"),
        }
    }

    /// The parts of a record as shown: the monitor's own carry the engine's time in their message.
    pub fn parts(evt: &ExtLogRecord) -> (String, &'static str, String, String) {
        let message = evt.msg();
        let (time, text) = match message.split_once(' ') {
            Some((time, text)) if evt.module_path() == Some(MODULE) => (time.to_string(), text),
            _ => (evt.timestamp.strftime("%H:%M:%S").to_string(), message),
        };
        let level = match evt.level {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
            Level::Trace => "TRACE",
        };
        (time, level, short_target(evt.target()).to_string(), text.replace('\n', " "))
    }
}

/// The console's own diagnostics name a module (`conveyor::engine::actor`): the part after the crate says
/// enough.
fn short_target(target: &str) -> &str {
    match target.strip_prefix("conveyor::") {
        Some(rest) => rest.split("::").next().unwrap_or(rest),
        None => target,
    }
}

impl LogFormatter for Formatter {
    fn min_width(&self) -> u16 {
        20
    }

    fn format(&self, width: usize, evt: &ExtLogRecord) -> Vec<Line<'_>> {
        let (time, level, target, text) = Formatter::parts(evt);
        let style = match evt.level {
            Level::Error => self.error,
            Level::Warn => self.warn,
            _ => Style::new(),
        };
        let head = format!("{time} {level} {target} ");
        let wrapped = wrap_words(&format!("{head}{text}"), width, 9);
        wrapped
            .into_iter()
            .enumerate()
            .map(|(index, line)| {
                if index > 0 || !line.starts_with(&head) {
                    return Line::from(Span::styled(line, style));
                }
                let rest = line[head.len()..].to_string();
                Line::from(vec![
                    Span::styled(format!("{time} "), self.time),
                    Span::styled(format!("{level} "), style.add_modifier(Modifier::BOLD)),
                    Span::styled(format!("{target} "), self.target),
                    Span::styled(rest, style),
                ])
            })
            .collect()
    }
}

/// The engine log in the Monitor pane, or, while `/` has it open, tui-logger's selector of targets
/// (workflows, `engine`, `operator`) and the levels each shows.
pub fn draw_engine_log(frame: &mut Frame, area: Rect, block: Block, model: &Model, chrome: &Chrome) {
    let Some(state) = chrome.engine_log else {
        frame.render_widget(Paragraph::new("").block(block), area);
        return;
    };
    if model.monitor_selector {
        let theme = chrome.theme;
        let block = block.title_bottom(Line::from(" ↑↓ pick · ←→ level · f only · Esc "));
        let inner = block.inner(area);
        frame.render_widget(block, area);
        // The widget writes a name as wide as its whole area after 6 columns of levels: six fewer keep it
        // off the border.
        let list = Rect { width: inner.width.saturating_sub(6), ..inner };
        let widget = tui_logger::TuiLoggerTargetWidget::default()
            .style_show(Style::new().add_modifier(Modifier::BOLD))
            .style_hide(theme.dim())
            .highlight_style(theme.selected())
            .state(state);
        frame.render_widget(widget, list);
        return;
    }
    frame.render_widget(engine_log_widget(state, chrome.theme).block(block), area);
}

/// tui-logger scrolls by pages and knows where the previous page starts only once a page is drawn: pages
/// back, drawn off screen in `area`, until a page changes nothing.
pub fn page_to_top(state: &TuiWidgetState, theme: &Theme, area: Rect) {
    if area.area() == 0 {
        return;
    }
    let page = || {
        let mut buffer = ratatui::buffer::Buffer::empty(area);
        ratatui::widgets::Widget::render(engine_log_widget(state, theme), area, &mut buffer);
        buffer
    };
    let mut shown = page();
    // Bounded: tui-logger keeps 10,000 lines, and a page holds at least one.
    for _ in 0..10_000 {
        state.transition(TuiWidgetEvent::PrevPageKey);
        let next = page();
        if next == shown {
            return;
        }
        shown = next;
    }
}

pub fn engine_log_widget<'a>(state: &TuiWidgetState, theme: &Theme) -> tui_logger::TuiLoggerWidget<'a> {
    tui_logger::TuiLoggerWidget::default().formatter(Box::new(Formatter::new(theme))).state(state)
}

/// Keys for the Monitor pane that differ from the lists': the engine log scrolls by pages (tui-logger's),
/// `/` opens its selector of workflows and levels, and Enter on an alert opens its full text. `None`: the key
/// does what it does elsewhere.
pub fn monitor_key(model: &mut Model, key: KeyEvent, action: Option<Action>) -> Option<Vec<Effect>> {
    if model.focus != Pane::Monitor {
        return None;
    }
    if model.monitor_alerts {
        if action != Some(Action::Open) {
            return None;
        }
        let alert = model.alerts.get(model.cursor.alert)?;
        model.popup = Some(Popup::Alert { id: alert.id, scroll: 0 });
        return Some(Vec::new());
    }
    if model.monitor_selector {
        let event = match key.code {
            KeyCode::Up | KeyCode::Char('k') => TuiWidgetEvent::UpKey,
            KeyCode::Down | KeyCode::Char('j') => TuiWidgetEvent::DownKey,
            KeyCode::Left | KeyCode::Char('h') => TuiWidgetEvent::LeftKey,
            KeyCode::Right | KeyCode::Char('l') => TuiWidgetEvent::RightKey,
            KeyCode::Char(' ') => TuiWidgetEvent::SpaceKey,
            KeyCode::Char('f') => TuiWidgetEvent::FocusKey,
            KeyCode::Esc | KeyCode::Char('/') | KeyCode::Enter => {
                model.monitor_selector = false;
                return Some(Vec::new());
            }
            _ => return None,
        };
        return Some(vec![Effect::EngineLog(event)]);
    }
    let effect = match action? {
        Action::Up | Action::PageUp => Effect::EngineLog(TuiWidgetEvent::PrevPageKey),
        Action::Down | Action::PageDown => Effect::EngineLog(TuiWidgetEvent::NextPageKey),
        Action::Top => Effect::EngineLogTop,
        // Back to following the newest lines.
        Action::Bottom => Effect::EngineLog(TuiWidgetEvent::EscapeKey),
        Action::Filter => {
            model.monitor_selector = true;
            return Some(Vec::new());
        }
        _ => return None,
    };
    Some(vec![effect])
}

/// Keys of the alert view: Enter or `g` goes to the alert's run, `A` acknowledges it, ↑↓ scroll a long
/// text, Esc or `q` closes.
pub fn alert_view_key(model: &mut Model, id: i64, scroll: u16, key: KeyEvent) -> Vec<Effect> {
    let keep = |model: &mut Model, scroll: u16| model.popup = Some(Popup::Alert { id, scroll });
    let Some(alert) = model.alerts.iter().find(|alert| alert.id == id).cloned() else {
        // Gone from the list (trimmed): nothing left to show.
        return Vec::new();
    };
    match key.code {
        KeyCode::Esc | KeyCode::Char('q') => {}
        KeyCode::Enter | KeyCode::Char('g') => {
            if alert.workflow.is_none() {
                keep(model, scroll);
                model.set_status("this alert names no workflow");
                return Vec::new();
            }
            return super::keys::go_to_alert(
                model,
                alert.workflow.as_deref(),
                alert.run_id.as_deref(),
                alert.task.as_deref(),
            );
        }
        KeyCode::Char('A') => {
            keep(model, scroll);
            if alert.acked_at.is_some() {
                model.set_status("this alert is already acknowledged");
                return Vec::new();
            }
            return vec![Effect::Send(Command::AckAlert { id })];
        }
        KeyCode::Down | KeyCode::Char('j') => keep(model, scroll.saturating_add(1)),
        KeyCode::Up | KeyCode::Char('k') => keep(model, scroll.saturating_sub(1)),
        KeyCode::PageDown => keep(model, scroll.saturating_add(10)),
        KeyCode::PageUp => keep(model, scroll.saturating_sub(10)),
        _ => keep(model, scroll),
    }
    Vec::new()
}

/// The alert view, in the popup's box `rect`: an alert's full text, wrapped, with when, how severe, what it
/// concerns and whether it was acknowledged.
pub fn draw_alert_view(frame: &mut Frame, rect: Rect, model: &Model, chrome: &Chrome) {
    let Some(Popup::Alert { id, scroll }) = &model.popup else { return };
    let Some(alert) = model.alerts.iter().find(|alert| alert.id == *id) else { return };
    let theme = chrome.theme;
    frame.render_widget(Clear, rect);
    let label = |name: &str| Span::styled(format!("{name:<9}"), theme.dim());
    let severity = match severity_level(&alert.severity) {
        Level::Error => theme.fg("failed"),
        Level::Warn => theme.fg("running"),
        _ => Style::new(),
    };
    let acked = match alert.acked_at {
        Some(at) => format!("acknowledged {}", super::ui::local(at, chrome)),
        None => "not acknowledged (A acknowledges)".to_string(),
    };
    let mut lines = vec![
        Line::from(vec![label("time"), Span::raw(super::ui::local(alert.at, chrome))]),
        Line::from(vec![label("severity"), Span::styled(printable(&alert.severity), severity)]),
        Line::from(vec![label("workflow"), Span::raw(printable(alert.workflow.as_deref().unwrap_or("-")))]),
        Line::from(vec![label("run"), Span::raw(printable(alert.run_id.as_deref().unwrap_or("-")))]),
        Line::from(vec![label("task"), Span::raw(printable(alert.task.as_deref().unwrap_or("-")))]),
        Line::from(vec![label("state"), Span::raw(acked)]),
        Line::from(""),
    ];
    lines.extend(alert.message.lines().map(|line| Line::from(printable(line))));
    let block = Block::bordered()
        .padding(Padding::horizontal(1))
        .title(format!(" Alert {} ", alert.id))
        .title_bottom(Line::from(" Enter/g go to its run · A acknowledge · ↑↓ scroll · Esc close "))
        .border_style(theme.border(true));
    let text = Paragraph::new(lines).wrap(Wrap { trim: false }).scroll((*scroll, 0)).block(block);
    frame.render_widget(text, rect);
}
