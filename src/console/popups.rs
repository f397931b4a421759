//! Keys while a popup is open: confirmations, the reroute picker, the params form, the command line.

use crossterm::event::{KeyCode, KeyEvent};

use super::model::{Effect, Model, Popup};
use crate::engine::Command;

pub fn popup_key(model: &mut Model, key: KeyEvent, routes: &[String]) -> Vec<Effect> {
    let Some(popup) = model.popup.take() else { return Vec::new() };
    match popup {
        Popup::Help => {}
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
        Popup::Reroute { run, task, routes, selected } => match key.code {
            KeyCode::Up | KeyCode::Char('k') => {
                model.popup = Some(Popup::Reroute { run, task, selected: selected.saturating_sub(1), routes });
            }
            KeyCode::Down | KeyCode::Char('j') => {
                let selected = (selected + 1).min(routes.len().saturating_sub(1));
                model.popup = Some(Popup::Reroute { run, task, routes, selected });
            }
            KeyCode::Enter => {
                let to = routes[selected].clone();
                return vec![Effect::Send(Command::RerouteTask { run, task, to })];
            }
            KeyCode::Esc => {}
            _ => model.popup = Some(Popup::Reroute { run, task, routes, selected }),
        },
        Popup::Params(form) => return super::params_form::key(model, form, key),
        Popup::CommandLine(line) => return super::command_line::key(model, routes, line, key),
    }
    Vec::new()
}
