//! Keys while a popup is open: confirmations, the reroute picker, the params form, the command line.

use crossterm::event::{KeyCode, KeyEvent};

use super::keys::{Action, act};
use super::model::{Effect, Model, Pane, Popup};
use crate::engine::Command;

pub fn popup_key(model: &mut Model, key: KeyEvent) -> Vec<Effect> {
    let Some(popup) = model.popup.take() else { return Vec::new() };
    match popup {
        Popup::Help { scroll } => {
            let last = super::keys::BINDINGS.len().saturating_sub(1);
            let scroll = match key.code {
                KeyCode::Down | KeyCode::Char('j') => (scroll + 1).min(last),
                KeyCode::Up | KeyCode::Char('k') => scroll.saturating_sub(1),
                KeyCode::PageDown | KeyCode::Char(' ') => (scroll + 10).min(last),
                KeyCode::PageUp => scroll.saturating_sub(10),
                KeyCode::Home | KeyCode::Char('g') => 0,
                KeyCode::End | KeyCode::Char('G') => last,
                // Any other key closes the help, as it always has.
                _ => return Vec::new(),
            };
            model.popup = Some(Popup::Help { scroll });
        }
        Popup::Alert { id, scroll } => return super::monitor::alert_view_key(model, id, scroll, key),
        Popup::Confirm { question, action, yes_focused } => match key.code {
            KeyCode::Left
            | KeyCode::Right
            | KeyCode::Tab
            | KeyCode::BackTab
            | KeyCode::Char('h')
            | KeyCode::Char('l') => {
                model.popup = Some(Popup::Confirm { question, action, yes_focused: !yes_focused });
            }
            KeyCode::Char('y') => return vec![*action],
            KeyCode::Enter if yes_focused => return vec![*action],
            KeyCode::Enter | KeyCode::Esc | KeyCode::Char('n') => {}
            _ => model.popup = Some(Popup::Confirm { question, action, yes_focused }),
        },
        Popup::Reroute { run, task, routes, notes, selected } => match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                model.popup = Some(Popup::Reroute { run, task, selected: selected.saturating_sub(1), routes, notes });
            }
            KeyCode::Down | KeyCode::Char('j') => {
                let selected = (selected + 1).min(routes.len().saturating_sub(1));
                model.popup = Some(Popup::Reroute { run, task, routes, notes, selected });
            }
            KeyCode::Enter => {
                let to = routes[selected].clone();
                return vec![Effect::Send(Command::RerouteTask { run, task, to })];
            }
            KeyCode::Esc => {}
            _ => model.popup = Some(Popup::Reroute { run, task, routes, notes, selected }),
        },
        Popup::Params { workflow, mut fields, selected } => match key.code {
            KeyCode::Up | KeyCode::BackTab => {
                model.popup = Some(Popup::Params { workflow, fields, selected: selected.saturating_sub(1) });
            }
            KeyCode::Down | KeyCode::Tab => {
                let selected = (selected + 1).min(fields.len().saturating_sub(1));
                model.popup = Some(Popup::Params { workflow, fields, selected });
            }
            KeyCode::Backspace => {
                fields[selected].2.pop();
                model.popup = Some(Popup::Params { workflow, fields, selected });
            }
            KeyCode::Char(c) => {
                fields[selected].2.push(c);
                model.popup = Some(Popup::Params { workflow, fields, selected });
            }
            KeyCode::Enter => {
                let params =
                    fields.into_iter().map(|(name, _, value)| (name, serde_json::Value::String(value))).collect();
                return vec![Effect::Send(Command::Trigger { workflow, input: None, params })];
            }
            _ => {}
        },
        Popup::CommandLine { mut text } => match key.code {
            KeyCode::Enter => return command_line(model, &text),
            KeyCode::Esc => {}
            KeyCode::Backspace => {
                text.pop();
                model.popup = Some(Popup::CommandLine { text });
            }
            KeyCode::Char(c) => {
                text.push(c);
                model.popup = Some(Popup::CommandLine { text });
            }
            _ => model.popup = Some(Popup::CommandLine { text }),
        },
    }
    Vec::new()
}

fn command_line(model: &mut Model, text: &str) -> Vec<Effect> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let command = match words.as_slice() {
        ["q" | "quit"] => return act(model, Action::Quit, &[]),
        ["trigger", name] => Command::Trigger { workflow: name.to_string(), input: None, params: Default::default() },
        ["pause", name] => Command::PauseWorkflow { workflow: name.to_string() },
        ["resume", name] => Command::ResumeWorkflow { workflow: name.to_string() },
        ["cancel", run] => {
            let command = Command::CancelRun { run: run.to_string() };
            return super::keys::confirm(model, format!("Cancel run {run}? Its running tasks are stopped."), command);
        }
        ["history"] | ["history", _] => {
            if let [_, name] = words.as_slice() {
                model.select_workflow_id(name);
            }
            model.focus = Pane::Runs;
            return Vec::new();
        }
        [] => return Vec::new(),
        _ => {
            model.set_status(format!(
                "unknown command `:{text}` (try :trigger NAME, :pause NAME, :resume NAME, :cancel RUN, :history, :q)"
            ));
            return Vec::new();
        }
    };
    vec![Effect::Send(command)]
}
