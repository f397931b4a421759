//! The console's config file: key bindings and colours. Looked for at `$CONVEYOR_CONSOLE_CONFIG`, else
//! `$XDG_CONFIG_HOME/conveyor/console.toml`, else `~/.config/conveyor/console.toml`; missing is fine.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::keymap::{BINDINGS, Keymap, by_name};
use super::theme::Theme;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    keys: BTreeMap<String, KeyList>,
    #[serde(default)]
    colors: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum KeyList {
    One(String),
    Many(Vec<String>),
}

pub fn path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("CONVEYOR_CONSOLE_CONFIG") {
        return Some(PathBuf::from(path));
    }
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("conveyor").join("console.toml"))
}

/// The keymap and theme, with the config file's overrides; problems are returned, not fatal.
pub fn load(text: Option<&str>, mut theme: Theme) -> (Keymap, Theme, Vec<String>) {
    let mut keymap = Keymap::default();
    let mut problems = Vec::new();
    let Some(text) = text else { return (keymap, theme, problems) };
    let file: File = match toml::from_str(text) {
        Ok(file) => file,
        Err(error) => {
            problems.push(format!("console config: {}", error.message()));
            return (keymap, theme, problems);
        }
    };
    for (name, keys) in file.keys {
        let Some(action) = by_name(&name) else {
            let names: Vec<&str> = BINDINGS.iter().map(|(_, name, ..)| *name).collect();
            problems.push(format!(
                "console config: unknown action `{name}` in [keys]: expected one of {}",
                names.join(", ")
            ));
            continue;
        };
        let keys = match keys {
            KeyList::One(key) => vec![key],
            KeyList::Many(keys) => keys,
        };
        for key in keys {
            if let Err(error) = keymap.bind(&key, action) {
                problems.push(format!("console config: [keys] {name}: {error}"));
            }
        }
    }
    for (name, value) in file.colors {
        if let Err(error) = theme.set(&name, &value) {
            problems.push(format!("console config: [colors] {error}"));
        }
    }
    (keymap, theme, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

    use crate::console::keymap::Action;

    #[test]
    fn keys_and_colours_can_be_overridden_and_mistakes_are_reported() {
        let text = "[keys]\ntrigger = [\"F5\", \"ctrl-t\"]\nretyr = \"r\"\n[colors]\nfailed = \"magenta\"\nsuccess = \"green\"\n";
        let (keymap, _, problems) = load(Some(text), Theme::new(true));
        assert_eq!(keymap.action(KeyEvent::new(KeyCode::F(5), KeyModifiers::NONE)), Some(Action::Trigger));
        assert_eq!(keymap.action(KeyEvent::new(KeyCode::Char('t'), KeyModifiers::CONTROL)), Some(Action::Trigger));
        assert_eq!(keymap.action(KeyEvent::new(KeyCode::Char('t'), KeyModifiers::NONE)), Some(Action::Trigger));
        assert_eq!(problems.len(), 2);
        assert!(problems[0].starts_with("console config: unknown action `retyr` in [keys]: expected one of up, down"));
        assert!(problems[1].starts_with("console config: [colors] unknown colour `success`"));
    }
}
