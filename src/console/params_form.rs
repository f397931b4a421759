//! The `T` form: a value for each of a workflow's parameters and a JSON input for the run, checked here the
//! way the engine checks them, so a wrong value is marked and explained and nothing typed is lost.

use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Clear, Paragraph};
use serde_json::Value;

use super::model::{Effect, Model, Popup, WorkflowRow};
use super::theme::Theme;
use crate::definition::{Param, ParamType, resolve_declared, typed_param};
use crate::engine::Command;

#[derive(Debug, Clone, PartialEq)]
pub struct ParamsForm {
    pub workflow: String,
    /// What the workflow declares, to check the values against.
    pub params: Vec<Param>,
    /// One field per parameter, in declared order, then the run's input.
    pub fields: Vec<Field>,
    pub selected: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Field {
    pub name: String,
    /// The parameter's type; `None` for the run's input (JSON).
    pub kind: Option<ParamType>,
    pub description: Option<String>,
    pub value: String,
    /// Why the value was refused, until it is edited.
    pub error: Option<String>,
}

impl Field {
    pub fn kind_label(&self) -> &'static str {
        self.kind.map_or("JSON, optional", ParamType::name)
    }
}

impl ParamsForm {
    /// The lines the form draws: each field, a line under it when it has a description or an error, then a
    /// blank line and the keys. The layout sizes the popup by it.
    pub fn lines(&self) -> usize {
        let notes = self.fields.iter().filter(|field| field.error.is_some() || field.description.is_some()).count();
        self.fields.len() + notes + 2
    }

    /// The form for a workflow: its parameters filled with their defaults, and an empty input.
    pub fn open(workflow: &WorkflowRow) -> ParamsForm {
        let mut fields: Vec<Field> = workflow
            .params
            .iter()
            .map(|param| Field {
                name: param.name.clone(),
                kind: Some(param.kind),
                description: param.description.clone(),
                value: match &param.default {
                    Some(Value::String(text)) => text.clone(),
                    Some(value) => value.to_string(),
                    None => String::new(),
                },
                error: None,
            })
            .collect();
        fields.push(Field {
            name: "input".into(),
            kind: None,
            description: Some("the run's input; empty for none".into()),
            value: String::new(),
            error: None,
        });
        ParamsForm { workflow: workflow.id.clone(), params: workflow.params.clone(), fields, selected: 0 }
    }

    /// The trigger the form asks for, or the form with each wrong value marked and the first one selected.
    pub fn submit(mut self) -> Result<Command, ParamsForm> {
        let mut given = BTreeMap::new();
        let mut input = None;
        for field in &mut self.fields {
            field.error = None;
            let text = field.value.trim();
            match field.kind {
                // An empty field leaves the parameter to its default.
                Some(_) if text.is_empty() => {}
                Some(kind) => match typed_param(&Value::String(field.value.clone()), kind) {
                    Some(value) => {
                        given.insert(field.name.clone(), value);
                    }
                    None => field.error = Some(expected(kind, text)),
                },
                None if text.is_empty() => {}
                None => match serde_json::from_str::<Value>(text) {
                    Ok(value) => input = Some(value),
                    Err(error) => field.error = Some(format!("not JSON: {error}")),
                },
            }
        }
        if let Some(wrong) = self.fields.iter().position(|field| field.error.is_some()) {
            self.selected = wrong;
            return Err(self);
        }
        // The engine's own check, on the whole set: it refuses what the fields alone cannot show.
        if let Err(error) = resolve_declared(&self.workflow, &self.params, &given) {
            self.fields[self.selected].error = Some(error);
            return Err(self);
        }
        Ok(Command::Trigger { workflow: self.workflow, input, params: given })
    }
}

fn expected(kind: ParamType, got: &str) -> String {
    match kind {
        ParamType::Integer => format!("`{got}` is not an integer (such as 42)"),
        ParamType::Float => format!("`{got}` is not a number (such as 0.5)"),
        ParamType::Boolean => format!("`{got}` is not a boolean: true/false, yes/no or 1/0"),
        ParamType::String => format!("`{got}` is not a string"),
    }
}

/// Keys while the form is open: ↑↓ (Tab) choose a field, typing edits it, Enter checks and triggers.
pub fn key(model: &mut Model, mut form: ParamsForm, key: KeyEvent) -> Vec<Effect> {
    let last = form.fields.len().saturating_sub(1);
    let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
    let field = form.selected.min(last);
    match key.code {
        KeyCode::Esc => return Vec::new(),
        KeyCode::Enter => match form.submit() {
            Ok(command) => return vec![Effect::Send(command)],
            Err(marked) => form = marked,
        },
        KeyCode::Up | KeyCode::BackTab => form.selected = field.saturating_sub(1),
        KeyCode::Down | KeyCode::Tab => form.selected = (field + 1).min(last),
        KeyCode::Char('u') if ctrl => {
            if let Some(field) = form.fields.get_mut(field) {
                field.value.clear();
                field.error = None;
            }
        }
        KeyCode::Backspace => {
            if let Some(field) = form.fields.get_mut(field) {
                field.value.pop();
                field.error = None;
            }
        }
        KeyCode::Char(c) if !ctrl => {
            if let Some(field) = form.fields.get_mut(field) {
                field.value.push(c);
                field.error = None;
            }
        }
        _ => {}
    }
    model.popup = Some(Popup::Params(form));
    Vec::new()
}

/// Each field on its line, with its type; under it its description, and in red why its value was refused;
/// in `rect`, the box the layout gave it.
pub fn draw(frame: &mut Frame, rect: Rect, form: &ParamsForm, theme: &Theme) {
    let label = form.fields.iter().map(|f| f.name.chars().count()).max().unwrap_or(0);
    let kind = form.fields.iter().map(|f| f.kind_label().len() + 2).max().unwrap_or(0);
    let mut lines: Vec<Line> = Vec::new();
    for (index, field) in form.fields.iter().enumerate() {
        let style = if index == form.selected { theme.selected() } else { ratatui::style::Style::new() };
        lines.push(Line::from(vec![
            Span::styled(format!(" {:<label$} ", field.name), theme.fg("accent")),
            Span::styled(format!("{:<kind$} ", format!("({})", field.kind_label())), theme.dim()),
            Span::styled(format!("{}▏", field.value), style),
        ]));
        if let Some(error) = &field.error {
            lines.push(Line::from(Span::styled(format!("   ✗ {error}"), theme.fg("failed"))));
        } else if let Some(description) = &field.description {
            lines.push(Line::from(Span::styled(format!("   {description}"), theme.dim())));
        }
    }
    lines.push(Line::from(""));
    lines.push(Line::from(Span::styled(
        " ↑↓ field · type to edit · empty = default · Enter triggers · Esc",
        theme.dim(),
    )));
    debug_assert_eq!(lines.len(), form.lines(), "the layout sized the box by `lines`");
    frame.render_widget(Clear, rect);
    let block = Block::bordered().title(format!(" Trigger {} with ", form.workflow)).border_style(theme.border(true));
    frame.render_widget(Paragraph::new(lines).block(block), rect);
}
