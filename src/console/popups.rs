//! Keys while a popup is open: confirmations, the reroute picker, the params form, the command line.

use crossterm::event::{KeyCode, KeyEvent};

use super::model::{Effect, Model, Popup};
use crate::engine::Command;

pub fn popup_key(model: &mut Model, key: KeyEvent, routes: &[String]) -> Vec<Effect> {
    let Some(popup) = model.popup.take() else { return Vec::new() };
    match popup {
        Popup::Help { scroll } => {
            let last = super::keymap::BINDINGS.len().saturating_sub(1);
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
        Popup::Params(form) => return super::params_form::key(model, form, key),
        Popup::CommandLine(line) => return super::command_line::key(model, routes, line, key),
    }
    Vec::new()
}
