//! The keymap: every action, its name in the config file, its default keys and its help text in one table,
//! which the key dispatcher (`keys.rs`), the help popup and the footer all read, so that what a key does and
//! what the screen says it does cannot drift apart. No action is applied here.

use std::collections::HashMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::model::{Pane, View};

/// What a key asks for; `keys::act` applies it to the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Up,
    Down,
    Top,
    Bottom,
    PageUp,
    PageDown,
    NextPane,
    PreviousPane,
    Open,
    Back,
    Trigger,
    TriggerWithParams,
    Pause,
    Retry,
    Reroute,
    Skip,
    Cancel,
    Approve,
    Reject,
    Log,
    Acknowledge,
    Filter,
    CommandLine,
    Help,
    Quit,
    Mouse,
    Follow,
    NextMatch,
    PreviousMatch,
    NextError,
    PreviousError,
    Wrap,
    PreviousAttempt,
    NextAttempt,
    MonitorTab,
    RunDetails,
    AllRuns,
    Graph,
    Copy,
    Pager,
    Engines,
}

/// Every action with its name in the config file, its default key, and what `?` says of it.
pub const BINDINGS: &[(Action, &str, &str, &str)] = &[
    (Action::Up, "up", "k", "move up"),
    (Action::Down, "down", "j", "move down"),
    (Action::Top, "top", "g", "first row / start of log"),
    (Action::Bottom, "bottom", "G", "last row / end of log"),
    (Action::Open, "open", "enter", "drill in (workflow → runs → tasks → log); on an alert, read it"),
    (Action::Back, "back", "esc", "back out, clear a filter"),
    (Action::NextPane, "next_pane", "tab", "next pane"),
    (Action::PreviousPane, "previous_pane", "backtab", "previous pane"),
    (Action::Trigger, "trigger", "t", "trigger the workflow now"),
    (Action::TriggerWithParams, "trigger_with_params", "T", "trigger with parameters"),
    (Action::Pause, "pause", "p", "pause/resume the workflow (Workflows) or the run"),
    (Action::Retry, "retry", "r", "retry the failed task"),
    (Action::Reroute, "reroute", "R", "run the task on another service or agent"),
    (Action::Skip, "skip", "s", "skip the task (its input passes on)"),
    (Action::Cancel, "cancel", "c", "cancel the run (asks first)"),
    (Action::Approve, "approve", "a", "approve at a gate (shows the held items first)"),
    (Action::Reject, "reject", "x", "reject at a gate (shows the held items first)"),
    (Action::Log, "log", "l", "open the task's log"),
    (Action::Acknowledge, "acknowledge", "A", "acknowledge the alert"),
    (Action::Filter, "filter", "/", "filter the list / search the log / pick engine log workflows"),
    (Action::CommandLine, "command", ":", "command line: :trigger NAME -p k=v, :retry, … (Tab completes)"),
    (Action::Help, "help", "?", "this help"),
    (Action::Quit, "quit", "q", "quit (asks when runs are active)"),
    (Action::Mouse, "mouse", "m", "mouse capture on/off (off lets you select text)"),
    (Action::Follow, "follow", "f", "log: follow new lines"),
    (Action::NextMatch, "next_match", "n", "log: next search match"),
    (Action::PreviousMatch, "previous_match", "N", "log: previous search match"),
    (Action::NextError, "next_error", "e", "log: next error"),
    (Action::PreviousError, "previous_error", "E", "log: previous error"),
    (Action::Wrap, "wrap", "w", "log: wrap long lines"),
    (Action::PreviousAttempt, "previous_attempt", "[", "log: previous attempt"),
    (Action::NextAttempt, "next_attempt", "]", "log: next attempt"),
    (Action::MonitorTab, "monitor_tab", "v", "monitor: engine log / alerts"),
    (Action::RunDetails, "run_details", "i", "run details: trigger, input, outputs, gate decisions, attempts"),
    (Action::AllRuns, "all_runs", "H", "all runs of every workflow (filter, sort, next failed/waiting)"),
    (Action::Graph, "graph", "D", "the workflow's tasks as a graph"),
    (Action::Copy, "copy", "y", "copy the run id, task, workflow, alert or log line (OSC 52)"),
    (Action::Pager, "pager", "o", "open the log in $PAGER"),
    (Action::Engines, "engines", "M", "engines sharing the store: host, pid, routes, heartbeat, leader"),
];

/// Keys bound by default beside those in `BINDINGS`: they have no help line of their own (the help lists them
/// beside the action's first key, as `k/↑`) and no name in the config file.
pub const ALSO_BOUND: &[(&str, Action)] = &[
    ("up", Action::Up),
    ("down", Action::Down),
    ("home", Action::Top),
    ("end", Action::Bottom),
    ("pageup", Action::PageUp),
    ("pagedown", Action::PageDown),
    // In raw mode Ctrl-C is a key, not a signal: it quits as `q` does, asking first when runs are active.
    ("ctrl-c", Action::Quit),
];

/// The action the config file names `name`.
pub fn by_name(name: &str) -> Option<Action> {
    BINDINGS.iter().find(|(_, known, ..)| *known == name).map(|(action, ..)| *action)
}

/// An action's name in the config file; the footer shows it (with `_` as a space) beside the key.
pub fn name(action: Action) -> &'static str {
    BINDINGS.iter().find(|(known, ..)| *known == action).map(|(_, name, ..)| *name).unwrap_or_default()
}

/// The help popup's lines, in the table's order: each action's keys as bound now (the config file may have
/// added some) and what it does.
pub fn help(keymap: &Keymap) -> Vec<(String, &'static str)> {
    BINDINGS.iter().map(|(action, _, _, what)| (keymap.label(*action), *what)).collect()
}

/// The actions the footer offers where the focus is, most useful first; `? help` and `q quit` always last, as
/// the footer keeps them when it has to drop hints. `at_gate`: the selected task waits for approval.
pub fn footer_actions(focus: Pane, at_gate: bool) -> Vec<Action> {
    let mut actions = match focus {
        Pane::Workflows => {
            vec![Action::Open, Action::Trigger, Action::TriggerWithParams, Action::Pause, Action::Filter]
        }
        Pane::Runs => vec![Action::Open, Action::Trigger, Action::Pause, Action::Cancel, Action::Filter],
        Pane::Tasks => vec![Action::Log, Action::Retry, Action::Skip, Action::Reroute, Action::Cancel],
        Pane::Log => vec![
            Action::Follow,
            Action::Filter,
            Action::NextMatch,
            Action::NextError,
            Action::Wrap,
            Action::NextAttempt,
        ],
        Pane::Monitor => vec![Action::MonitorTab, Action::Acknowledge, Action::Open],
    };
    if focus == Pane::Tasks && at_gate {
        actions.extend([Action::Approve, Action::Reject]);
    }
    actions.extend([Action::NextPane, Action::Help, Action::Quit]);
    actions
}

/// What a key does in one full-screen view only, beside the keymap's actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViewKey {
    /// All runs: which runs are listed (all, active, failed, waiting), in what order; the next failed or
    /// waiting run.
    Show,
    Sort,
    NextFailed,
    NextWaiting,
    /// Gate: mark the held item under the cursor; write a comment; answer every held item at once.
    Mark,
    Comment,
    ApproveAll,
    RejectAll,
    /// Graph: scroll sideways (up and down are the keymap's).
    ScrollLeft,
    ScrollRight,
}

/// The views' own keys. They are fixed (the config file names only actions); each view's key handler finds
/// a key here and its hint line shows the key from here, the first listed for it.
pub const VIEW_KEYS: &[(View, KeyCode, ViewKey)] = &[
    (View::AllRuns, KeyCode::Char('f'), ViewKey::Show),
    (View::AllRuns, KeyCode::Char('s'), ViewKey::Sort),
    (View::AllRuns, KeyCode::Char('e'), ViewKey::NextFailed),
    (View::AllRuns, KeyCode::Char('w'), ViewKey::NextWaiting),
    (View::Gate, KeyCode::Char(' '), ViewKey::Mark),
    (View::Gate, KeyCode::Char('c'), ViewKey::Comment),
    (View::Gate, KeyCode::Char('A'), ViewKey::ApproveAll),
    (View::Gate, KeyCode::Char('X'), ViewKey::RejectAll),
    (View::Graph, KeyCode::Char('h'), ViewKey::ScrollLeft),
    (View::Graph, KeyCode::Left, ViewKey::ScrollLeft),
    (View::Graph, KeyCode::Char('l'), ViewKey::ScrollRight),
    (View::Graph, KeyCode::Right, ViewKey::ScrollRight),
];

/// What `code` does in `view` of its own, if anything.
pub fn view_key(view: View, code: KeyCode) -> Option<ViewKey> {
    VIEW_KEYS.iter().find(|(known, bound, _)| *known == view && *bound == code).map(|(.., key)| *key)
}

/// The key a view's hint line shows for one of its own keys.
pub fn view_label(view: View, key: ViewKey) -> String {
    let first = VIEW_KEYS.iter().find(|(known, _, bound)| *known == view && *bound == key);
    first.map(|(_, code, _)| fixed_label(*code)).unwrap_or_default()
}

/// The popups with keys of their own: while one is open it takes every key, so the keymap's actions do not
/// reach what is under it. (The params form and the command line take typing; the alert view's keys are the
/// monitor's.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopupKind {
    Help,
    Confirm,
    Reroute,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PopupKey {
    Up,
    Down,
    PageUp,
    PageDown,
    Top,
    Bottom,
    /// Confirm: move between No and Yes.
    Switch,
    Yes,
    No,
    /// Enter: the focused button, the highlighted route.
    Choose,
    Close,
}

/// The popups' keys, fixed like the views'. Each popup's key handler finds a key here and its title names
/// keys from here, the first listed for each.
pub const POPUP_KEYS: &[(PopupKind, KeyCode, PopupKey)] = &[
    (PopupKind::Help, KeyCode::Char('j'), PopupKey::Down),
    (PopupKind::Help, KeyCode::Down, PopupKey::Down),
    (PopupKind::Help, KeyCode::Char('k'), PopupKey::Up),
    (PopupKind::Help, KeyCode::Up, PopupKey::Up),
    (PopupKind::Help, KeyCode::PageDown, PopupKey::PageDown),
    (PopupKind::Help, KeyCode::Char(' '), PopupKey::PageDown),
    (PopupKind::Help, KeyCode::PageUp, PopupKey::PageUp),
    (PopupKind::Help, KeyCode::Home, PopupKey::Top),
    (PopupKind::Help, KeyCode::Char('g'), PopupKey::Top),
    (PopupKind::Help, KeyCode::End, PopupKey::Bottom),
    (PopupKind::Help, KeyCode::Char('G'), PopupKey::Bottom),
    (PopupKind::Confirm, KeyCode::Left, PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::Right, PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::Tab, PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::BackTab, PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::Char('h'), PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::Char('l'), PopupKey::Switch),
    (PopupKind::Confirm, KeyCode::Enter, PopupKey::Choose),
    (PopupKind::Confirm, KeyCode::Char('y'), PopupKey::Yes),
    (PopupKind::Confirm, KeyCode::Char('n'), PopupKey::No),
    (PopupKind::Confirm, KeyCode::Esc, PopupKey::No),
    (PopupKind::Reroute, KeyCode::Char('k'), PopupKey::Up),
    (PopupKind::Reroute, KeyCode::Up, PopupKey::Up),
    (PopupKind::Reroute, KeyCode::Char('j'), PopupKey::Down),
    (PopupKind::Reroute, KeyCode::Down, PopupKey::Down),
    (PopupKind::Reroute, KeyCode::Enter, PopupKey::Choose),
    (PopupKind::Reroute, KeyCode::Esc, PopupKey::Close),
];

/// What `code` does in a popup of `kind`; `None` for a key it does not know.
pub fn popup_key(kind: PopupKind, code: KeyCode) -> Option<PopupKey> {
    POPUP_KEYS.iter().find(|(known, bound, _)| *known == kind && *bound == code).map(|(.., key)| *key)
}

/// The keys a popup's title names for `key`, in the table's order.
pub fn popup_labels(kind: PopupKind, key: PopupKey) -> Vec<String> {
    POPUP_KEYS
        .iter()
        .filter(|(known, _, bound)| *known == kind && *bound == key)
        .map(|(_, code, _)| fixed_label(*code))
        .collect()
}

/// The first key a popup's title names for `key`.
pub fn popup_label(kind: PopupKind, key: PopupKey) -> String {
    popup_labels(kind, key).into_iter().next().unwrap_or_default()
}

/// How a fixed key (a view's or a popup's) is written on screen.
fn fixed_label(code: KeyCode) -> String {
    match code {
        KeyCode::Char(' ') => "space".into(),
        KeyCode::Char(c) => c.to_string(),
        KeyCode::Enter => "Enter".into(),
        KeyCode::Esc => "Esc".into(),
        KeyCode::Left => "←".into(),
        KeyCode::Right => "→".into(),
        other => format!("{other:?}"),
    }
}

#[derive(Debug, Clone)]
pub struct Keymap {
    keys: HashMap<(KeyCode, bool), Action>,
}

impl Default for Keymap {
    fn default() -> Keymap {
        let mut keymap = Keymap { keys: HashMap::new() };
        let table = BINDINGS.iter().map(|(action, _, key, _)| (*key, *action));
        for (key, action) in table.chain(ALSO_BOUND.iter().copied()) {
            keymap.bind(key, action).expect("default keys parse");
        }
        keymap
    }
}

impl Keymap {
    /// Binds a key written as in the config file: a character, or `enter`, `esc`, `tab`, `backtab`, `up`,
    /// `down`, `left`, `right`, `home`, `end`, `pageup`, `pagedown`, `f1`…`f12`, optionally `ctrl-`.
    pub fn bind(&mut self, key: &str, action: Action) -> Result<(), String> {
        let (ctrl, name) = match key.strip_prefix("ctrl-") {
            Some(rest) => (true, rest),
            None => (false, key),
        };
        let code = match name.to_ascii_lowercase().as_str() {
            "enter" => KeyCode::Enter,
            "esc" => KeyCode::Esc,
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" => KeyCode::PageUp,
            "pagedown" => KeyCode::PageDown,
            "space" => KeyCode::Char(' '),
            f if f.len() > 1 && f.starts_with('f') && f[1..].parse::<u8>().is_ok() => {
                KeyCode::F(f[1..].parse().unwrap())
            }
            _ if name.chars().count() == 1 => KeyCode::Char(name.chars().next().unwrap()),
            _ => return Err(format!("unknown key `{key}`")),
        };
        self.keys.insert((code, ctrl), action);
        Ok(())
    }

    pub fn action(&self, key: KeyEvent) -> Option<Action> {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        self.keys.get(&(key.code, ctrl)).copied()
    }

    /// The one key shown for an action in the bottom bar, where room is short: the plainest.
    pub fn short_label(&self, action: Action) -> String {
        self.labels(action).into_iter().next().unwrap_or_default()
    }

    /// Every key of an action, as the help shows them.
    pub fn label(&self, action: Action) -> String {
        self.labels(action).join("/")
    }

    /// The keys of an action, single characters first.
    fn labels(&self, action: Action) -> Vec<String> {
        let mut labels: Vec<String> = self
            .keys
            .iter()
            .filter(|(_, bound)| **bound == action)
            .map(|((code, ctrl), _)| {
                let name = match code {
                    KeyCode::Char(c) => c.to_string(),
                    KeyCode::Enter => "Enter".into(),
                    KeyCode::Esc => "Esc".into(),
                    KeyCode::Tab => "Tab".into(),
                    KeyCode::BackTab => "S-Tab".into(),
                    KeyCode::Up => "↑".into(),
                    KeyCode::Down => "↓".into(),
                    KeyCode::Home => "Home".into(),
                    KeyCode::End => "End".into(),
                    KeyCode::PageUp => "PgUp".into(),
                    KeyCode::PageDown => "PgDn".into(),
                    // As the config file writes it; the debug form would say `F(5)`.
                    KeyCode::F(number) => format!("F{number}"),
                    other => format!("{other:?}"),
                };
                if *ctrl { format!("C-{name}") } else { name }
            })
            .collect();
        labels.sort_by_key(|label| (label.chars().count() > 1, label.clone()));
        labels
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn press(keymap: &Keymap, code: KeyCode, modifiers: KeyModifiers) -> Option<Action> {
        keymap.action(KeyEvent::new(code, modifiers))
    }

    #[test]
    fn each_default_key_in_the_table_dispatches_to_its_own_action() {
        let keymap = Keymap::default();
        for (action, name, key, _) in BINDINGS {
            let mut alone = Keymap { keys: HashMap::new() };
            alone.bind(key, *action).unwrap_or_else(|error| panic!("{name}: {error}"));
            let (&(code, ctrl), _) = alone.keys.iter().next().unwrap();
            let modifiers = if ctrl { KeyModifiers::CONTROL } else { KeyModifiers::NONE };
            assert_eq!(press(&keymap, code, modifiers), Some(*action), "`{key}` is bound to {name}");
        }
        assert_eq!(press(&keymap, KeyCode::PageDown, KeyModifiers::NONE), Some(Action::PageDown));
        assert_eq!(press(&keymap, KeyCode::Char('c'), KeyModifiers::CONTROL), Some(Action::Quit));
        assert_eq!(press(&keymap, KeyCode::Char('z'), KeyModifiers::NONE), None);
    }

    #[test]
    fn no_two_actions_share_a_default_key_or_a_name() {
        let keys: Vec<&str> =
            BINDINGS.iter().map(|(_, _, key, _)| *key).chain(ALSO_BOUND.iter().map(|(key, _)| *key)).collect();
        let names: Vec<&str> = BINDINGS.iter().map(|(_, name, ..)| *name).collect();
        for list in [&keys, &names] {
            let mut sorted = list.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len(), "a duplicate in {list:?}");
        }
        let actions: std::collections::HashSet<Action> = BINDINGS.iter().map(|(action, ..)| *action).collect();
        assert_eq!(actions.len(), BINDINGS.len(), "an action has two lines in the table");
        assert_eq!(Keymap::default().keys.len(), keys.len(), "every default key is bound");
    }

    #[test]
    fn the_help_and_the_footer_show_the_keys_as_bound_including_ones_the_config_added() {
        let mut keymap = Keymap::default();
        let lines = help(&keymap);
        assert_eq!(lines.len(), BINDINGS.len(), "one help line per action in the table");
        assert_eq!(lines[0], ("k/↑".to_string(), "move up"));
        assert!(lines.contains(&("q/C-c".to_string(), "quit (asks when runs are active)")));
        keymap.bind("F5", Action::Trigger).unwrap();
        let trigger = help(&keymap).into_iter().find(|(_, what)| *what == "trigger the workflow now").unwrap();
        assert_eq!(trigger.0, "t/F5", "a key added in the config shows in the help");
        assert_eq!(keymap.short_label(Action::Trigger), "t", "the footer shows the plainest key");
        assert_eq!(
            (name(Action::TriggerWithParams), by_name("next_pane")),
            ("trigger_with_params", Some(Action::NextPane))
        );
        assert_eq!(by_name("retyr"), None);
    }

    #[test]
    fn every_footer_hint_has_a_name_and_help_and_quit_come_last() {
        for focus in Pane::ORDER {
            for at_gate in [false, true] {
                let actions = footer_actions(focus, at_gate);
                assert!(actions.iter().all(|action| !name(*action).is_empty()), "{focus:?}: {actions:?}");
                assert_eq!(actions[actions.len() - 3..], [Action::NextPane, Action::Help, Action::Quit]);
                let gate = actions.contains(&Action::Approve) && actions.contains(&Action::Reject);
                assert_eq!(gate, focus == Pane::Tasks && at_gate, "approve and reject only at a gate in Tasks");
            }
        }
    }

    #[test]
    fn a_key_the_config_cannot_name_is_refused_with_what_it_meant() {
        let mut keymap = Keymap::default();
        assert_eq!(keymap.bind("ctrl-banana", Action::Up), Err("unknown key `ctrl-banana`".to_string()));
        assert_eq!(keymap.bind("f", Action::Up), Ok(()), "a single character is a key");
        assert_eq!(press(&keymap, KeyCode::F(12), KeyModifiers::NONE), None);
        keymap.bind("F12", Action::Help).unwrap();
        assert_eq!(press(&keymap, KeyCode::F(12), KeyModifiers::NONE), Some(Action::Help));
    }

    #[test]
    fn each_view_finds_its_own_keys_and_shows_the_first_one_bound() {
        assert_eq!(view_key(View::AllRuns, KeyCode::Char('e')), Some(ViewKey::NextFailed));
        assert_eq!(view_key(View::Details, KeyCode::Char('e')), None, "a view's key is its own");
        assert_eq!(view_key(View::Graph, KeyCode::Left), Some(ViewKey::ScrollLeft));
        assert_eq!(view_label(View::Graph, ViewKey::ScrollLeft), "h");
        assert_eq!(view_label(View::Gate, ViewKey::Mark), "space");
        for (index, (view, code, key)) in VIEW_KEYS.iter().enumerate() {
            let again = VIEW_KEYS[index + 1..].iter().any(|(other, bound, _)| other == view && bound == code);
            assert!(!again, "{code:?} does two things in {view:?}");
            assert_eq!(view_key(*view, *code), Some(*key));
            assert!(!view_label(*view, *key).is_empty());
        }
    }

    #[test]
    fn each_popup_finds_its_own_keys_and_its_title_names_them() {
        assert_eq!(popup_key(PopupKind::Help, KeyCode::Char(' ')), Some(PopupKey::PageDown));
        assert_eq!(popup_key(PopupKind::Help, KeyCode::Char('q')), None, "any other key closes the help");
        assert_eq!(popup_key(PopupKind::Confirm, KeyCode::Char('y')), Some(PopupKey::Yes));
        assert_eq!(popup_key(PopupKind::Reroute, KeyCode::Char('y')), None);
        assert_eq!(popup_labels(PopupKind::Confirm, PopupKey::Switch)[..2], ["←", "→"]);
        assert_eq!(
            (popup_label(PopupKind::Help, PopupKey::Down), popup_label(PopupKind::Help, PopupKey::Up)),
            ("j".into(), "k".into())
        );
        assert_eq!(popup_label(PopupKind::Reroute, PopupKey::Close), "Esc");
        for (index, (kind, code, key)) in POPUP_KEYS.iter().enumerate() {
            let again = POPUP_KEYS[index + 1..].iter().any(|(other, bound, _)| other == kind && bound == code);
            assert!(!again, "{code:?} does two things in {kind:?}");
            assert_eq!(popup_key(*kind, *code), Some(*key));
        }
    }
}
