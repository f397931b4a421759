//! Keys while a popup is open: confirmations, the reroute picker, the params form, the command line.

use crossterm::event::KeyEvent;

use super::keymap::{self, BINDINGS, PopupKey, PopupKind};

use super::model::{Effect, Model, Popup};
use crate::engine::Command;

pub fn popup_key(model: &mut Model, key: KeyEvent, routes: &[String]) -> Vec<Effect> {
    let Some(popup) = model.popup.take() else { return Vec::new() };
    match popup {
        Popup::Help { scroll } => {
            let last = BINDINGS.len().saturating_sub(1);
            let scroll = match keymap::popup_key(PopupKind::Help, key.code) {
                Some(PopupKey::Down) => (scroll + 1).min(last),
                Some(PopupKey::Up) => scroll.saturating_sub(1),
                Some(PopupKey::PageDown) => (scroll + 10).min(last),
                Some(PopupKey::PageUp) => scroll.saturating_sub(10),
                Some(PopupKey::Top) => 0,
                Some(PopupKey::Bottom) => last,
                // Any other key closes the help, as it always has.
                _ => return Vec::new(),
            };
            model.popup = Some(Popup::Help { scroll });
        }
        Popup::Alert { id, scroll } => return super::monitor::alert_view_key(model, id, scroll, key),
        Popup::Confirm { question, action, yes_focused } => match keymap::popup_key(PopupKind::Confirm, key.code) {
            Some(PopupKey::Switch) => {
                model.popup = Some(Popup::Confirm { question, action, yes_focused: !yes_focused });
            }
            Some(PopupKey::Yes) => return vec![*action],
            Some(PopupKey::Choose) if yes_focused => return vec![*action],
            Some(PopupKey::Choose | PopupKey::No) => {}
            _ => model.popup = Some(Popup::Confirm { question, action, yes_focused }),
        },
        Popup::Reroute { run, task, routes, notes, selected } => {
            match keymap::popup_key(PopupKind::Reroute, key.code) {
                Some(PopupKey::Up) => {
                    model.popup =
                        Some(Popup::Reroute { run, task, selected: selected.saturating_sub(1), routes, notes });
                }
                Some(PopupKey::Down) => {
                    let selected = (selected + 1).min(routes.len().saturating_sub(1));
                    model.popup = Some(Popup::Reroute { run, task, routes, notes, selected });
                }
                Some(PopupKey::Choose) => {
                    let to = routes[selected].clone();
                    return vec![Effect::Send(Command::RerouteTask { run, task, to })];
                }
                Some(PopupKey::Close) => {}
                _ => model.popup = Some(Popup::Reroute { run, task, routes, notes, selected }),
            }
        }
        Popup::Params(form) => return super::params_form::key(model, form, key),
        Popup::CommandLine(line) => return super::command_line::key(model, routes, line, key),
    }
    Vec::new()
}
