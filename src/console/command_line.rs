//! The `:` command line: the line being edited (cursor, Tab completion, the session's history), and a pure
//! parser from its text to an operator command. Arguments left out default to the selection, as the keys do.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};

use super::keymap::Action;
use super::keys::{act, confirm};
use super::model::{Effect, Model, Pane, Popup};
use super::theme::Theme;
use crate::engine::Command;

/// Lines of `:` history kept.
const HISTORY_KEPT: usize = 200;

/// Every command, in the order Tab offers them.
pub const COMMANDS: &[&str] = &[
    "trigger", "retry", "skip", "reroute", "approve", "reject", "ack", "pause", "resume", "cancel", "history",
    "backfill", "quit",
];

/// The options of `:backfill`, as `conveyor backfill` spells them.
const BACKFILL_OPTIONS: &[&str] = &["--from", "--to", "--parallel", "--rerun", "--dry-run"];

/// The line being typed after `:`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandLine {
    pub text: String,
    /// Byte offset of the cursor in `text`, always on a character boundary.
    pub cursor: usize,
    /// What the last Tab offered, while Tab is pressed again to cycle through it.
    pub completion: Option<Completion>,
    /// Which line of the session's history Up/Down recalled; `None` while typing a new one.
    pub recalled: Option<usize>,
    /// The new line being typed before Up recalled an older one, given back by Down.
    pub draft: String,
    /// Why the last Enter was refused: the line stays, to be corrected.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// Where the completed word starts in the text.
    pub start: usize,
    pub candidates: Vec<String>,
    pub index: usize,
}

/// What a line asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    Send(Command),
    /// Changes what a run does next: the operator says yes to a question that names it.
    Confirm(String, Command),
    /// Does what the key for the action does (`:q`, `:ack` and `:reroute` alone).
    Act(Action),
    /// Shows the runs of a workflow (the selected one when none is named).
    History(Option<String>),
    /// Work the runtime does beyond one command (`:backfill`).
    Effect(Effect),
    Nothing,
}

/// Handles a key while the command line is open; `routes` are the services and agents `:reroute` may name.
pub fn key(model: &mut Model, routes: &[String], mut line: CommandLine, key: KeyEvent) -> Vec<Effect> {
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let cycling = matches!(key.code, KeyCode::Tab | KeyCode::BackTab);
    if !cycling {
        line.completion = None;
    }
    match key.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Enter => return enter(model, routes, line),
        KeyCode::Tab => complete(model, routes, &mut line, true),
        KeyCode::BackTab => complete(model, routes, &mut line, false),
        KeyCode::Char('u') if ctrl => {
            line.text.drain(..line.cursor);
            line.cursor = 0;
        }
        KeyCode::Char('w') if ctrl => {
            let start = previous_word(&line.text, line.cursor);
            line.text.drain(start..line.cursor);
            line.cursor = start;
        }
        KeyCode::Char('a') if ctrl => line.cursor = 0,
        KeyCode::Char('e') if ctrl => line.cursor = line.text.len(),
        KeyCode::Char(c) if !ctrl && !key.modifiers.contains(KeyModifiers::ALT) => {
            line.text.insert(line.cursor, c);
            line.cursor += c.len_utf8();
        }
        KeyCode::Backspace => {
            if let Some((at, _)) = line.text[..line.cursor].char_indices().next_back() {
                line.text.remove(at);
                line.cursor = at;
            }
        }
        KeyCode::Delete if line.cursor < line.text.len() => {
            line.text.remove(line.cursor);
        }
        KeyCode::Left => {
            line.cursor = line.text[..line.cursor].char_indices().next_back().map_or(0, |(at, _)| at);
        }
        KeyCode::Right => {
            line.cursor += line.text[line.cursor..].chars().next().map_or(0, char::len_utf8);
        }
        KeyCode::Home => line.cursor = 0,
        KeyCode::End => line.cursor = line.text.len(),
        KeyCode::Up => recall(model, &mut line, true),
        KeyCode::Down => recall(model, &mut line, false),
        _ => {}
    }
    if !cycling {
        line.error = None;
    }
    model.popup = Some(Popup::CommandLine(line));
    Vec::new()
}

/// Where the word before the cursor starts (Ctrl-W): spaces before the cursor go with it.
fn previous_word(text: &str, cursor: usize) -> usize {
    let before = text[..cursor].trim_end();
    before.rfind(char::is_whitespace).map_or(0, |at| at + before[at..].chars().next().map_or(1, char::len_utf8))
}

fn recall(model: &Model, line: &mut CommandLine, older: bool) {
    let history = &model.command_history;
    let index = match (line.recalled, older) {
        (None, true) if !history.is_empty() => {
            line.draft = line.text.clone();
            Some(history.len() - 1)
        }
        (None, _) => return,
        (Some(index), true) => Some(index.saturating_sub(1)),
        (Some(index), false) if index + 1 < history.len() => Some(index + 1),
        (Some(_), false) => None,
    };
    line.recalled = index;
    line.text = match index {
        Some(index) => history[index].clone(),
        None => std::mem::take(&mut line.draft),
    };
    line.cursor = line.text.len();
}

fn enter(model: &mut Model, routes: &[String], mut line: CommandLine) -> Vec<Effect> {
    let text = line.text.trim().to_string();
    let parsed = match parse(model, routes, &text) {
        Ok(parsed) => parsed,
        Err(error) => {
            line.error = Some(error);
            model.popup = Some(Popup::CommandLine(line));
            return Vec::new();
        }
    };
    if !text.is_empty() && model.command_history.last() != Some(&text) {
        // Up/Down recall a session's lines; a console left open for months keeps only the newest.
        if model.command_history.len() == HISTORY_KEPT {
            model.command_history.remove(0);
        }
        model.command_history.push(text);
    }
    match parsed {
        Parsed::Send(command) => vec![Effect::Send(command)],
        Parsed::Confirm(question, command) => confirm(model, question, command),
        Parsed::Act(action) => act(model, action, routes),
        Parsed::History(workflow) => {
            if let Some(workflow) = workflow {
                model.select_workflow_id(&workflow);
            }
            model.focus = Pane::Runs;
            Vec::new()
        }
        Parsed::Effect(effect) => vec![effect],
        Parsed::Nothing => Vec::new(),
    }
}

/// Tab completes the word under the cursor; pressed again it puts the next candidate in its place.
fn complete(model: &Model, routes: &[String], line: &mut CommandLine, forward: bool) {
    if let Some(completion) = line.completion.as_mut() {
        let count = completion.candidates.len();
        completion.index =
            if forward { (completion.index + 1) % count } else { (completion.index + count - 1) % count };
        let chosen = &completion.candidates[completion.index];
        line.text.replace_range(completion.start..line.cursor, chosen);
        line.cursor = completion.start + chosen.len();
        return;
    }
    let start = line.text[..line.cursor]
        .rfind(char::is_whitespace)
        .map_or(0, |at| at + line.text[at..].chars().next().map_or(1, char::len_utf8));
    let before: Vec<&str> = line.text[..start].split_whitespace().collect();
    let candidates = candidates(model, routes, &before, &line.text[start..line.cursor]);
    // Shift-Tab starts from the last candidate, as it goes backwards.
    let index = if forward { 0 } else { candidates.len().saturating_sub(1) };
    let Some(first) = candidates.get(index).cloned() else {
        line.error = Some("nothing to complete here".into());
        return;
    };
    line.text.replace_range(start..line.cursor, &first);
    line.cursor = start + first.len();
    if candidates.len() == 1 {
        // The only candidate is the word: the next one can be typed at once.
        if !first.ends_with('=') {
            if !line.text[line.cursor..].starts_with(' ') {
                line.text.insert(line.cursor, ' ');
            }
            line.cursor += 1;
        }
    } else {
        line.completion = Some(Completion { start, candidates, index });
    }
}

/// What may stand where `prefix` is being typed, after the words `before` (the command first): commands, then
/// workflows, runs (the selected workflow's first, newest first), tasks of the run named or selected, routes.
pub fn candidates(model: &Model, routes: &[String], before: &[&str], prefix: &str) -> Vec<String> {
    let Some((command, args)) = before.split_first() else {
        return matching(COMMANDS.iter().map(|c| c.to_string()), prefix);
    };
    let workflows = || model.workflows.iter().map(|row| row.id.clone()).collect::<Vec<_>>();
    let (positional, after_param) = positional(args);
    let selected_run = model.selected_run().map(|run| run.id.clone());
    let tasks_of = |run: Option<&str>| run.map(|run| task_names(model, run)).unwrap_or_default();
    let mut found: Vec<String> = Vec::new();
    match (*command, positional.len()) {
        ("trigger", _) if after_param => {
            let workflow = positional.first().map(|w| w.to_string()).or_else(|| model.selected.workflow.clone());
            let row = model.workflows.iter().find(|row| Some(&row.id) == workflow.as_ref());
            found.extend(row.into_iter().flat_map(|row| row.params.iter().map(|p| format!("{}=", p.name))));
        }
        ("trigger", _) if prefix.starts_with('-') => found.extend(["-p".to_string(), "--input".to_string()]),
        ("trigger", 0) => found.extend(workflows()),
        ("pause" | "resume", 0) => {
            found.extend(workflows());
            found.extend(run_ids(model));
        }
        ("history", 0) => found.extend(workflows()),
        ("backfill", _) if prefix.starts_with('-') => found.extend(BACKFILL_OPTIONS.iter().map(|o| o.to_string())),
        ("backfill", 0) => {
            found.extend(model.workflows.iter().filter(|row| row.scheduled).map(|row| row.id.clone()));
            found.push("stop".into());
        }
        ("cancel", 0) => found.extend(run_ids(model)),
        ("retry" | "skip" | "approve" | "reject" | "reroute", 0) => {
            found.extend(tasks_of(selected_run.as_deref()));
            found.extend(run_ids(model));
            if *command == "reroute" {
                found.extend(routes.iter().cloned());
            }
        }
        ("retry" | "skip" | "approve" | "reject", 1) => found.extend(tasks_of(Some(positional[0]))),
        ("reroute", 1) if is_run(model, positional[0]) => found.extend(tasks_of(Some(positional[0]))),
        ("reroute", 1 | 2) => found.extend(routes.iter().cloned()),
        ("ack", 0) => {
            found.extend(model.alerts.iter().filter(|a| a.acked_at.is_none()).map(|a| a.id.to_string()));
        }
        _ => {}
    }
    matching(found.into_iter(), prefix)
}

/// The arguments that are not options, and whether the last word given is `-p` (a parameter name comes next).
fn positional<'a>(args: &[&'a str]) -> (Vec<&'a str>, bool) {
    let mut positional = Vec::new();
    let mut words = args.iter();
    while let Some(word) = words.next() {
        if matches!(*word, "-p" | "--param" | "-i" | "--input") {
            if words.next().is_none() {
                return (positional, matches!(*word, "-p" | "--param"));
            }
        } else {
            positional.push(*word);
        }
    }
    (positional, false)
}

/// Candidates starting with the prefix (case aside), each once, in the order given.
fn matching(candidates: impl Iterator<Item = String>, prefix: &str) -> Vec<String> {
    let prefix = prefix.to_lowercase();
    let mut seen = std::collections::HashSet::new();
    candidates.filter(|c| c.to_lowercase().starts_with(&prefix) && seen.insert(c.clone())).collect()
}

/// Run ids the lists hold: the selected workflow's first, then the others', newest first.
fn run_ids(model: &Model) -> Vec<String> {
    let selected = model.selected.workflow.as_deref();
    let mut ids: Vec<String> = model.visible_runs().iter().map(|run| run.id.clone()).collect();
    let mut others: Vec<_> = model
        .runs
        .iter()
        .filter(|(workflow, _)| Some(workflow.as_str()) != selected)
        .flat_map(|(_, runs)| runs)
        .collect();
    others.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| b.id.cmp(&a.id)));
    ids.extend(others.into_iter().map(|run| run.id.clone()));
    ids
}

fn is_run(model: &Model, id: &str) -> bool {
    model.runs.values().flatten().any(|run| run.id == id)
}

/// The tasks of a run as read, or else as its workflow declares them.
fn task_names(model: &Model, run: &str) -> Vec<String> {
    if let Some(tasks) = model.tasks.get(run) {
        return tasks.iter().map(|task| task.name.clone()).collect();
    }
    let workflow = model.workflow_of_run(run);
    model
        .workflows
        .iter()
        .find(|row| Some(&row.id) == workflow.as_ref())
        .map(|row| row.tasks.clone())
        .unwrap_or_default()
}

/// Splits a line into words: whitespace separates them, quotes keep spaces inside one.
pub fn words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut word: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), c) => word.get_or_insert_default().push(c),
            (None, '"' | '\'') => {
                quote = Some(c);
                word.get_or_insert_default();
            }
            (None, c) if c.is_whitespace() => words.extend(word.take()),
            (None, c) => word.get_or_insert_default().push(c),
        }
    }
    if let Some(open) = quote {
        return Err(format!("a {open} is not closed: close it or remove it"));
    }
    words.extend(word);
    Ok(words)
}

/// What a line asks for, against what the console shows; an error says what the command needs.
pub fn parse(model: &Model, routes: &[String], text: &str) -> Result<Parsed, String> {
    let words = words(text)?;
    let Some((command, args)) = words.split_first() else { return Ok(Parsed::Nothing) };
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let none = args.is_empty();
    let parsed = match command.as_str() {
        "q" | "quit" if none => Parsed::Act(Action::Quit),
        "trigger" => trigger(model, &args)?,
        "pause" | "resume" => {
            let pause = command == "pause";
            Parsed::Send(match target(model, command, &args, "a WORKFLOW or RUN")? {
                Target::Workflow(workflow) if pause => Command::PauseWorkflow { workflow },
                Target::Workflow(workflow) => Command::ResumeWorkflow { workflow },
                Target::Run(run) if pause => Command::PauseRun { run },
                Target::Run(run) => Command::ResumeRun { run },
            })
        }
        "cancel" => {
            let run = match args.as_slice() {
                [] => {
                    model.selected_run().map(|run| run.id.clone()).ok_or("`:cancel` needs a RUN, or a run selected")?
                }
                [run] => run.to_string(),
                _ => return Err("`:cancel` takes one RUN".into()),
            };
            if let Some(known) = model.runs.values().flatten().find(|known| known.id == run && !known.state.is_active())
            {
                return Err(format!("run {run} is {}: nothing to cancel", known.state));
            }
            let of = model.workflow_of_run(&run).map(|w| format!(" of {w}")).unwrap_or_default();
            Parsed::Confirm(format!("Cancel run {run}{of}? Its running tasks are stopped."), Command::CancelRun { run })
        }
        "approve" | "reject" => {
            let (rest, items, comment) = gate_options(command, &args)?;
            let (run, task) = run_and_task(model, command, &rest)?;
            let verb = if command == "approve" { "Approve" } else { "Reject" };
            let what = if items.is_empty() { "the items waiting".to_string() } else { items.join(", ") };
            let with = comment.as_ref().map(|text| format!(" with the comment “{text}”")).unwrap_or_default();
            let question = format!("{verb} {what} at task {task} of run {run}{with}?");
            let command = match command.as_str() {
                "approve" => Command::Approve { run, task, items, comment },
                _ => Command::Reject { run, task, items, comment },
            };
            Parsed::Confirm(question, command)
        }
        "retry" | "skip" => {
            let (run, task) = run_and_task(model, command, &args)?;
            match command.as_str() {
                "retry" => Parsed::Send(Command::RetryTask { run, task }),
                _ => Parsed::Confirm(
                    format!("Skip task {task} of run {run}? Its input passes on as its output."),
                    Command::SkipTask { run, task },
                ),
            }
        }
        "reroute" => {
            let Some((to, rest)) = args.split_last() else { return Ok(Parsed::Act(Action::Reroute)) };
            if routes.is_empty() {
                return Err("conveyor.toml registers no service or agent to reroute to".into());
            }
            if !routes.iter().any(|route| route == to) {
                return Err(format!("no service or agent `{to}`: expected one of {}", routes.join(", ")));
            }
            let (run, task) = run_and_task(model, "reroute", rest).map_err(|_| {
                "`:reroute` needs RUN TASK ROUTE, or TASK ROUTE, or ROUTE with a task selected".to_string()
            })?;
            Parsed::Send(Command::RerouteTask { run, task, to: to.to_string() })
        }
        "ack" => match args.as_slice() {
            [] => Parsed::Act(Action::Acknowledge),
            [id] => Parsed::Send(Command::AckAlert {
                id: id.parse().map_err(|_| format!("`:ack` takes an alert number, not `{id}`"))?,
            }),
            _ => return Err("`:ack` takes one alert number".into()),
        },
        "backfill" => backfill(model, &args)?,
        "history" => match args.as_slice() {
            [] => Parsed::History(None),
            [workflow] => {
                known_workflow(model, workflow)?;
                Parsed::History(Some(workflow.to_string()))
            }
            _ => return Err("`:history` takes one WORKFLOW".into()),
        },
        _ => {
            return Err(format!("unknown command `:{command}`: Tab on an empty line lists the commands"));
        }
    };
    Ok(parsed)
}

enum Target {
    Workflow(String),
    Run(String),
}

/// A named workflow or run; with none named, the workflow selected in Workflows or else the selected run (as
/// `p` chooses).
fn target(model: &Model, command: &str, args: &[&str], what: &str) -> Result<Target, String> {
    match args {
        [] if model.focus == Pane::Workflows => model
            .selected_workflow()
            .map(|workflow| Target::Workflow(workflow.id.clone()))
            .ok_or_else(|| format!("`:{command}` needs {what}, or one selected")),
        [] => model
            .selected_run()
            .map(|run| Target::Run(run.id.clone()))
            .ok_or_else(|| format!("`:{command}` needs {what}, or one selected")),
        [name] if model.workflows.iter().any(|row| row.id == *name) => Ok(Target::Workflow(name.to_string())),
        // A run older than the lists is still the engine's to find.
        [name] => Ok(Target::Run(name.to_string())),
        _ => Err(format!("`:{command}` takes one {}", what.trim_start_matches("a "))),
    }
}

/// RUN TASK as given; TASK alone is a task of the selected run; nothing is the selected task.
/// The words of `:approve`/`:reject` that are not options, the `--item` IDs and the `--comment`.
type GateOptions<'a> = (Vec<&'a str>, Vec<String>, Option<String>);

/// `--item ID` (repeatable) and `--comment TEXT` of `:approve`/`:reject`, and the words left.
fn gate_options<'a>(command: &str, args: &[&'a str]) -> Result<GateOptions<'a>, String> {
    let (mut rest, mut items, mut comment) = (Vec::new(), Vec::new(), None);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match *word {
            "--item" => items.push(words.next().ok_or(format!("`:{command} --item` needs an item's ID"))?.to_string()),
            "--comment" => {
                comment = Some(words.next().ok_or(format!("`:{command} --comment` needs TEXT"))?.to_string())
            }
            _ => rest.push(*word),
        }
    }
    Ok((rest, items, comment))
}

fn run_and_task(model: &Model, command: &str, args: &[&str]) -> Result<(String, String), String> {
    let selected_run = model.selected_run().map(|run| run.id.clone());
    let needs = || format!("`:{command}` needs RUN TASK, or a task selected");
    match args {
        [] => {
            let task = model.selected_task().map(|task| task.name.clone()).ok_or_else(needs)?;
            Ok((selected_run.ok_or_else(needs)?, task))
        }
        [task] => Ok((selected_run.ok_or_else(needs)?, task.to_string())),
        [run, task] => Ok((run.to_string(), task.to_string())),
        _ => Err(needs()),
    }
}

fn known_workflow<'a>(model: &'a Model, id: &str) -> Result<&'a super::model::WorkflowRow, String> {
    model.workflows.iter().find(|row| row.id == id).ok_or_else(|| format!("no workflow `{id}` (Tab completes names)"))
}

/// `:trigger [WORKFLOW] [-p NAME=VALUE]… [--input JSON]`: the parameters are checked against the workflow's
/// declarations as the engine checks them, so a typo is caught before anything is sent.
fn trigger(model: &Model, args: &[&str]) -> Result<Parsed, String> {
    let mut workflow = None;
    let mut pairs = Vec::new();
    let mut input = None;
    let mut words = args.iter();
    while let Some(word) = words.next() {
        match *word {
            "-p" | "--param" => {
                pairs.push(*words.next().ok_or("`-p` needs NAME=VALUE after it")?);
            }
            "-i" | "--input" => {
                let text = words.next().ok_or("`--input` needs a JSON value after it")?;
                input = Some(serde_json::from_str(text).map_err(|error| format!("--input is not JSON: {error}"))?);
            }
            name if workflow.is_none() && !name.starts_with('-') => workflow = Some(name.to_string()),
            other => return Err(format!("`:trigger` does not know `{other}`: try :trigger NAME -p NAME=VALUE")),
        }
    }
    let workflow = match workflow {
        Some(workflow) => workflow,
        None => model.selected_workflow().map(|row| row.id.clone()).ok_or("`:trigger` needs a WORKFLOW")?,
    };
    let given = crate::definition::parse_assignments(&pairs, "-p")?;
    let row = known_workflow(model, &workflow)?;
    if let Some(problem) = &row.broken {
        return Err(format!("{} is broken: {problem}", row.file.display()));
    }
    crate::definition::resolve_declared(&row.id, &row.params, &given)?;
    Ok(Parsed::Send(Command::Trigger { workflow, input, params: given }))
}

/// `:backfill [WORKFLOW] --from TIME [--to TIME] [--parallel N] [--rerun] [--dry-run]`, or `:backfill stop`.
/// Times are read in the workflow's zone when the backfill is planned; here only their presence is checked.
fn backfill(model: &Model, args: &[&str]) -> Result<Parsed, String> {
    if args == ["stop"] {
        return Ok(Parsed::Effect(Effect::StopBackfill));
    }
    let usage = "try :backfill WORKFLOW --from 2026-03-01 --to 2026-03-07 [--parallel N] [--rerun] [--dry-run]";
    let (mut workflow, mut from, mut to, mut parallel) = (None, None, None, 1);
    let (mut rerun, mut dry_run) = (false, false);
    let mut words = args.iter();
    while let Some(word) = words.next() {
        let mut value =
            |flag: &str| words.next().map(|v| v.to_string()).ok_or(format!("`{flag}` needs a value: {usage}"));
        match *word {
            "--from" => from = Some(value("--from")?),
            "--to" => to = Some(value("--to")?),
            "--parallel" => {
                let text = value("--parallel")?;
                parallel = text
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or(format!("`--parallel` takes a whole number ≥ 1, not `{text}`"))?;
            }
            "--rerun" => rerun = true,
            "--dry-run" => dry_run = true,
            name if workflow.is_none() && !name.starts_with('-') => workflow = Some(name.to_string()),
            other => return Err(format!("`:backfill` does not know `{other}`: {usage}")),
        }
    }
    let workflow = match workflow {
        Some(workflow) => workflow,
        None => model
            .selected_workflow()
            .map(|row| row.id.clone())
            .ok_or(format!("`:backfill` needs a WORKFLOW: {usage}"))?,
    };
    let row = known_workflow(model, &workflow)?;
    if !row.scheduled {
        let kind = row.trigger.split_whitespace().next().unwrap_or("other");
        return Err(format!("{workflow} has a {kind} trigger: only a scheduled workflow can be backfilled"));
    }
    let from = from.ok_or(format!("`:backfill` needs --from: {usage}"))?;
    let request = super::backfill::Request { workflow, from, to, parallel, rerun, dry_run };
    Ok(Parsed::Effect(Effect::Backfill(request)))
}

/// The line at the bottom of the screen (`rect`, from the layout), with the cursor where it is; under it what
/// Tab offers or why Enter was refused.
pub fn draw(frame: &mut Frame, rect: Rect, line: &CommandLine, theme: &Theme) {
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(" Command (Tab completes, ↑↓ history, Esc) ").border_style(theme.border(true));
    let inner = block.inner(rect);
    frame.render_widget(block, rect);
    let room = inner.width as usize;
    let (before, after) = line.text.split_at(line.cursor);
    // A line longer than the screen scrolls to keep the cursor in view.
    let scroll = (2 + before.chars().count()).saturating_sub(room) as u16;
    let text = Paragraph::new(format!(":{before}▏{after}")).scroll((0, scroll));
    frame.render_widget(text, Rect { height: inner.height.min(1), ..inner });
    let below = if let Some(error) = &line.error {
        Line::from(Span::styled(format!("✗ {error}"), theme.fg("failed")))
    } else if let Some(completion) = &line.completion {
        // The candidates from as far back as fits with the current one still shown.
        let width = |candidate: &String| candidate.chars().count() + 2;
        let mut first = completion.index;
        let mut used = width(&completion.candidates[first]) + 3;
        while first > 0 && used + width(&completion.candidates[first - 1]) <= room {
            first -= 1;
            used += width(&completion.candidates[first]);
        }
        let mut spans = if first > 0 { vec![Span::styled("…  ", theme.dim())] } else { Vec::new() };
        for (index, candidate) in completion.candidates.iter().enumerate().skip(first) {
            let style = if index == completion.index { theme.selected() } else { theme.dim() };
            spans.push(Span::styled(candidate.clone(), style));
            spans.push(Span::raw("  "));
        }
        Line::from(spans)
    } else {
        return;
    };
    if inner.height > 1 {
        frame.render_widget(Paragraph::new(below), Rect { y: inner.y + 1, height: 1, ..inner });
    }
}
