//! Colours: defaults, `NO_COLOR`, and overrides from the console config file.

use std::collections::HashMap;

use ratatui::style::{Color, Modifier, Style};

use crate::state::{RunState, TaskState};

#[derive(Debug, Clone)]
pub struct Theme {
    pub colour: bool,
    colours: HashMap<&'static str, Color>,
}

/// Names usable in the config file's `[colors]` table, with their defaults.
pub const COLOURS: &[(&str, Color)] = &[
    ("succeeded", Color::Green),
    ("failed", Color::Red),
    ("running", Color::Yellow),
    ("waiting", Color::Magenta),
    ("paused", Color::Blue),
    ("cancelled", Color::DarkGray),
    ("pending", Color::Gray),
    ("focus", Color::Cyan),
    ("accent", Color::Cyan),
    ("error_line", Color::Red),
    ("match", Color::Yellow),
];

impl Theme {
    pub fn new(colour: bool) -> Theme {
        Theme { colour, colours: COLOURS.iter().copied().collect() }
    }

    /// `NO_COLOR` set (to anything) turns colour off.
    pub fn from_env() -> Theme {
        Theme::new(std::env::var_os("NO_COLOR").is_none())
    }

    pub fn set(&mut self, name: &str, value: &str) -> Result<(), String> {
        let key = COLOURS.iter().find(|(known, _)| *known == name).map(|(known, _)| *known).ok_or_else(|| {
            let names: Vec<&str> = COLOURS.iter().map(|(name, _)| *name).collect();
            format!("unknown colour `{name}`: expected one of {}", names.join(", "))
        })?;
        let colour: Color = value
            .parse()
            .map_err(|_| format!("bad colour `{value}` for `{name}`: expected a name such as `red` or `#ff8800`"))?;
        self.colours.insert(key, colour);
        Ok(())
    }

    pub fn fg(&self, name: &str) -> Style {
        match (self.colour, self.colours.get(name)) {
            (true, Some(colour)) => Style::new().fg(*colour),
            _ => Style::new(),
        }
    }

    pub fn border(&self, focused: bool) -> Style {
        match (focused, self.colour) {
            (true, true) => self.fg("focus").add_modifier(Modifier::BOLD),
            (true, false) => Style::new().add_modifier(Modifier::BOLD),
            (false, true) => Style::new().fg(Color::DarkGray),
            (false, false) => Style::new(),
        }
    }

    /// The selected row: reversed, so it shows without colour too.
    pub fn selected(&self) -> Style {
        Style::new().add_modifier(Modifier::REVERSED)
    }

    pub fn dim(&self) -> Style {
        if self.colour { Style::new().fg(Color::DarkGray) } else { Style::new() }
    }

    pub fn run(&self, state: RunState) -> Style {
        self.fg(match state {
            RunState::Succeeded => "succeeded",
            RunState::Failed | RunState::Interrupted => "failed",
            RunState::Running | RunState::Queued => "running",
            RunState::WaitingApproval => "waiting",
            RunState::Paused => "paused",
            RunState::Cancelled => "cancelled",
        })
    }

    pub fn task(&self, state: TaskState) -> Style {
        self.fg(match state {
            TaskState::Succeeded => "succeeded",
            TaskState::Failed => "failed",
            TaskState::Running | TaskState::RetryWait => "running",
            TaskState::WaitingApproval => "waiting",
            TaskState::Skipped | TaskState::Cancelled => "cancelled",
            TaskState::Pending => "pending",
        })
    }
}

pub fn run_symbol(state: RunState) -> &'static str {
    match state {
        RunState::Succeeded => "✓",
        RunState::Failed => "✗",
        RunState::Interrupted => "!",
        RunState::Running | RunState::Queued => "▶",
        // An hourglass, not `?`: a question mark reads as help, and marks must tell states apart without colour.
        RunState::WaitingApproval => "⧗",
        RunState::Paused => "⏸",
        RunState::Cancelled => "■",
    }
}

pub fn task_symbol(state: TaskState) -> &'static str {
    match state {
        TaskState::Succeeded => "✓",
        TaskState::Failed => "✗",
        TaskState::Running => "▶",
        TaskState::RetryWait => "↻",
        TaskState::WaitingApproval => "⧗",
        TaskState::Skipped => "↷",
        TaskState::Cancelled => "■",
        TaskState::Pending => "·",
    }
}
