//! The selected workflow's tasks as boxes and edges: one column per depth in the graph (the longest path
//! from a root), each box marked with its task's state in the selected run. An edge that skips columns runs
//! through the columns between, so edges only ever join neighbouring columns and never cross a box.

use std::collections::HashMap;

use crossterm::event::KeyEvent;
use ratatui::Frame;
use ratatui::layout::Rect;
use ratatui::style::Style;
use ratatui::text::{Line, Span};
use ratatui::widgets::Paragraph;

use super::keymap::{Action, ViewKey, view_key, view_label};
use super::model::{Effect, Model, View};
use super::theme::task_symbol;
use super::ui::{Chrome, pane};
use crate::state::TaskState;

/// Scroll position, and the size last drawn (so keys stop scrolling where the drawing ends).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct GraphView {
    pub x: usize,
    pub y: usize,
    pub width: usize,
    pub height: usize,
    /// The last graph laid out and its layout: laying out is quadratic in the tasks, and the graph changes
    /// only when its file does, so frames reuse it.
    layout: Option<Layout>,
}

/// A graph (each task with its parents) and how it was laid out (`None`: too large to draw).
type Layout = (Vec<(String, Vec<String>)>, Option<Placed>);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Task(String),
    /// Where an edge passes through a column on its way to a deeper one.
    Through,
}

/// Nodes by column (top to bottom), and edges between neighbouring columns as `(column, row)` pairs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub columns: Vec<Vec<Node>>,
    pub edges: Vec<((usize, usize), (usize, usize))>,
}

/// Graphs with more nodes than this (tasks plus the places edges pass through) are not drawn.
const MAX_NODES: usize = 5_000;

/// Depth of each task: the longest path from a root, as the Tasks pane's graph line counts it. A parent
/// that is not a task is ignored; a cycle (which the loader refuses) cannot make this loop forever.
pub(super) fn depths(graph: &[(String, Vec<String>)]) -> HashMap<&str, usize> {
    let known: std::collections::HashSet<&str> = graph.iter().map(|(name, _)| name.as_str()).collect();
    let mut depth: HashMap<&str, usize> = HashMap::new();
    for _ in 0..graph.len() {
        for (name, parents) in graph {
            let level = parents
                .iter()
                .filter(|parent| known.contains(parent.as_str()))
                .map(|parent| depth.get(parent.as_str()).copied().unwrap_or(0) + 1)
                .max()
                .unwrap_or(0);
            depth.insert(name.as_str(), level.min(graph.len()));
        }
    }
    depth
}

/// Lays the graph out in columns; `None` when it is too large to draw.
pub fn place(graph: &[(String, Vec<String>)]) -> Option<Placed> {
    let depth = depths(graph);
    let deepest = depth.values().copied().max().unwrap_or(0);
    // Nodes by id; each column lists node ids.
    let mut nodes: Vec<Node> = Vec::new();
    let mut columns: Vec<Vec<usize>> = vec![Vec::new(); if graph.is_empty() { 0 } else { deepest + 1 }];
    let mut id_of: HashMap<&str, usize> = HashMap::new();
    for (name, _) in graph {
        if id_of.contains_key(name.as_str()) {
            continue;
        }
        id_of.insert(name.as_str(), nodes.len());
        columns[depth[name.as_str()]].push(nodes.len());
        nodes.push(Node::Task(name.clone()));
    }
    let mut links: Vec<(usize, usize)> = Vec::new();
    for (name, parents) in graph {
        let child = id_of[name.as_str()];
        for parent in parents {
            let (Some(&from), Some(&to)) = (id_of.get(parent.as_str()), depth.get(parent.as_str())) else { continue };
            let (from_depth, child_depth) = (to, depth[name.as_str()]);
            if from_depth >= child_depth {
                continue;
            }
            let mut previous = from;
            for column in columns.iter_mut().take(child_depth).skip(from_depth + 1) {
                if nodes.len() >= MAX_NODES {
                    return None;
                }
                column.push(nodes.len());
                links.push((previous, nodes.len()));
                previous = nodes.len();
                nodes.push(Node::Through);
            }
            links.push((previous, child));
        }
    }
    if nodes.len() > MAX_NODES {
        return None;
    }
    // One pass of barycentres: a node sits near the mean row of what leads into it, which uncrosses most
    // edges of the graphs workflows have.
    let mut parents_of: HashMap<usize, Vec<usize>> = HashMap::new();
    for &(from, to) in &links {
        parents_of.entry(to).or_default().push(from);
    }
    let mut row: Vec<usize> = vec![0; nodes.len()];
    for column in &mut columns {
        let mut keyed: Vec<(f64, usize)> = column
            .iter()
            .enumerate()
            .map(|(index, &node)| {
                let parents: Vec<usize> = parents_of.get(&node).into_iter().flatten().map(|from| row[*from]).collect();
                let mean = if parents.is_empty() {
                    index as f64
                } else {
                    parents.iter().sum::<usize>() as f64 / parents.len() as f64
                };
                (mean, node)
            })
            .collect();
        keyed.sort_by(|a, b| a.0.total_cmp(&b.0));
        *column = keyed.into_iter().map(|(_, node)| node).collect();
        for (index, &node) in column.iter().enumerate() {
            row[node] = index;
        }
    }
    let column_of: HashMap<usize, usize> =
        columns.iter().enumerate().flat_map(|(c, ids)| ids.iter().map(move |&id| (id, c))).collect();
    let mut edges: Vec<((usize, usize), (usize, usize))> =
        links.iter().map(|&(from, to)| ((column_of[&from], row[from]), (column_of[&to], row[to]))).collect();
    edges.sort();
    edges.dedup();
    Some(Placed {
        columns: columns.into_iter().map(|ids| ids.into_iter().map(|id| nodes[id].clone()).collect()).collect(),
        edges,
    })
}

/// The graph a workflow's tasks form: its `depends_on`, or for a workflow without them the order its tasks
/// run in, one after another.
pub fn graph_of(tasks: &[String], graph: &[(String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    if !graph.is_empty() {
        return graph.to_vec();
    }
    tasks
        .iter()
        .enumerate()
        .map(|(index, name)| (name.clone(), index.checked_sub(1).map(|p| tasks[p].clone()).into_iter().collect()))
        .collect()
}

const UP: u8 = 1;
const DOWN: u8 = 2;
const LEFT: u8 = 4;
const RIGHT: u8 = 8;
const GAP: usize = 6;
const PITCH_Y: usize = 4;

#[derive(Clone, Copy, Default)]
struct Cell {
    lines: u8,
    fixed: Option<char>,
    style: Style,
}

/// The drawing, cell by cell, before it is clipped to the screen.
pub struct Canvas {
    pub width: usize,
    pub height: usize,
    cells: Vec<Cell>,
}

impl Canvas {
    fn new(width: usize, height: usize) -> Canvas {
        Canvas { width, height, cells: vec![Cell::default(); width * height] }
    }

    fn cell(&mut self, x: usize, y: usize) -> Option<&mut Cell> {
        if x < self.width && y < self.height { self.cells.get_mut(y * self.width + x) } else { None }
    }

    fn put(&mut self, x: usize, y: usize, c: char, style: Style) {
        if let Some(cell) = self.cell(x, y) {
            *cell = Cell { lines: 0, fixed: Some(c), style };
        }
    }

    /// One character a cell: one that takes two columns (or none) would push the box out of line, so it
    /// shows as `?`.
    fn text(&mut self, x: usize, y: usize, text: &str, style: Style) {
        for (offset, c) in text.chars().enumerate() {
            let single = c.is_ascii() || Span::raw(c.to_string()).width() == 1;
            self.put(x + offset, y, if single { c } else { '?' }, style);
        }
    }

    fn line(&mut self, x: usize, y: usize, bits: u8, style: Style) {
        if let Some(cell) = self.cell(x, y)
            && cell.fixed.is_none()
        {
            cell.lines |= bits;
            cell.style = style;
        }
    }

    fn horizontal(&mut self, from: usize, to: usize, y: usize, style: Style) {
        let (low, high) = (from.min(to), from.max(to));
        for x in low..=high {
            let bits = if x > low { LEFT } else { 0 } | if x < high { RIGHT } else { 0 };
            self.line(x, y, bits.max(if low == high { LEFT | RIGHT } else { 0 }), style);
        }
    }

    fn vertical(&mut self, x: usize, from: usize, to: usize, style: Style) {
        let (low, high) = (from.min(to), from.max(to));
        for y in low..=high {
            let bits = if y > low { UP } else { 0 } | if y < high { DOWN } else { 0 };
            self.line(x, y, bits, style);
        }
    }

    /// The character at a cell: box-drawing where lines meet, so edges that share a path join up.
    pub fn symbol(&self, x: usize, y: usize) -> char {
        let Some(cell) = self.cells.get(y * self.width + x) else { return ' ' };
        if let Some(c) = cell.fixed {
            return c;
        }
        match cell.lines {
            0 => ' ',
            b if b & (UP | DOWN) == 0 => '─',
            b if b & (LEFT | RIGHT) == 0 => '│',
            b if b == DOWN | RIGHT => '┌',
            b if b == DOWN | LEFT => '┐',
            b if b == UP | RIGHT => '└',
            b if b == UP | LEFT => '┘',
            b if b == UP | DOWN | RIGHT => '├',
            b if b == UP | DOWN | LEFT => '┤',
            b if b == LEFT | RIGHT | DOWN => '┬',
            b if b == LEFT | RIGHT | UP => '┴',
            _ => '┼',
        }
    }

    fn style(&self, x: usize, y: usize) -> Style {
        self.cells.get(y * self.width + x).map(|cell| cell.style).unwrap_or_default()
    }
}

/// Cells a drawing may have (a long chain is wide, a fan-out tall; both scroll); past this it is not drawn.
const MAX_CELLS: usize = 1_000_000;

/// Draws the placed graph: boxes `[mark name]` styled by their task's state, edges between them; `None`
/// when the drawing would be too large.
pub fn paint(placed: &Placed, states: &HashMap<String, TaskState>, chrome: &Chrome) -> Option<Canvas> {
    let theme = chrome.theme;
    let longest = placed
        .columns
        .iter()
        .flatten()
        .filter_map(|node| match node {
            Node::Task(name) => Some(name.chars().count()),
            Node::Through => None,
        })
        .max()
        .unwrap_or(0);
    let box_width = (longest + 6).clamp(10, 28);
    let pitch_x = box_width + GAP;
    let rows = placed.columns.iter().map(Vec::len).max().unwrap_or(0);
    let width = (placed.columns.len() * pitch_x).saturating_sub(GAP);
    let height = (rows * PITCH_Y).saturating_sub(1);
    if width.saturating_mul(height) > MAX_CELLS {
        return None;
    }
    let mut canvas = Canvas::new(width, height);
    let edge = theme.dim();
    for ((from_column, from_row), (to_column, to_row)) in &placed.edges {
        let (start_x, start_y) = (from_column * pitch_x + box_width, from_row * PITCH_Y + 1);
        let (end_x, end_y) = (to_column * pitch_x - 1, to_row * PITCH_Y + 1);
        let middle = start_x + GAP / 2 - 1;
        canvas.horizontal(start_x, middle, start_y, edge);
        canvas.vertical(middle, start_y, end_y, edge);
        canvas.horizontal(middle, end_x, end_y, edge);
        if matches!(placed.columns[*to_column].get(*to_row), Some(Node::Task(_))) {
            canvas.put(end_x, end_y, '▶', edge);
        } else {
            canvas.line(end_x, end_y, RIGHT, edge);
        }
    }
    for (column, nodes) in placed.columns.iter().enumerate() {
        for (row, node) in nodes.iter().enumerate() {
            let (x, y) = (column * pitch_x, row * PITCH_Y);
            let Node::Task(name) = node else {
                canvas.horizontal(x, x + box_width - 1, y + 1, edge);
                continue;
            };
            let state = states.get(name).copied().unwrap_or(TaskState::Pending);
            let style = theme.task(state);
            let inside = box_width - 2;
            canvas.text(x, y, &format!("┌{}┐", "─".repeat(inside)), style);
            canvas.text(x, y + 2, &format!("└{}┘", "─".repeat(inside)), style);
            let shown = super::logview::printable(name);
            let label: String = if shown.chars().count() > inside - 3 {
                shown.chars().take(inside - 4).chain(std::iter::once('…')).collect()
            } else {
                shown
            };
            let text = format!("{} {label}", task_symbol(state));
            canvas.text(x, y + 1, &format!("│ {text:<width$}│", width = inside - 1), style);
        }
    }
    Some(canvas)
}

/// `D`: the selected workflow's graph, from its top-left corner.
pub fn open(model: &mut Model) {
    if model.selected_workflow().is_none() {
        model.set_status("no workflow selected");
        return;
    }
    model.view = Some(View::Graph);
    model.graph_view.x = 0;
    model.graph_view.y = 0;
}

/// The view's keys (h/j/k/l and arrows scroll); `None` for keys it leaves to the console.
pub fn key(model: &mut Model, action: Option<Action>, key: KeyEvent) -> Option<Vec<Effect>> {
    let view = &mut model.graph_view;
    match view_key(View::Graph, key.code) {
        Some(ViewKey::ScrollLeft) => view.x = view.x.saturating_sub(4),
        Some(ViewKey::ScrollRight) => view.x += 4,
        _ => match action? {
            Action::Up => view.y = view.y.saturating_sub(1),
            Action::Down => view.y += 1,
            Action::PageUp => view.y = view.y.saturating_sub(10),
            Action::PageDown => view.y += 10,
            Action::Top => (view.x, view.y) = (0, 0),
            Action::Bottom => view.y = usize::MAX / 2,
            _ => return None,
        },
    }
    // Scrolling stops where the drawing ends (as last drawn; the draw clamps again).
    view.x = view.x.min(view.width);
    view.y = view.y.min(view.height);
    Some(Vec::new())
}

pub fn draw(frame: &mut Frame, area: Rect, hints: Option<Rect>, model: &mut Model, chrome: &Chrome) {
    let theme = chrome.theme;
    if let Some(hints) = hints {
        let (key, own) = (|action| chrome.keymap.short_label(action), |key| view_label(View::Graph, key));
        let text = format!(
            " {}/{}/{}/{} or arrows scroll · {} top-left · {} back",
            own(ViewKey::ScrollLeft),
            key(Action::Down),
            key(Action::Up),
            own(ViewKey::ScrollRight),
            key(Action::Top),
            key(Action::Back)
        );
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), hints);
    }
    let Some(workflow) = model.selected_workflow().cloned() else {
        frame.render_widget(
            Paragraph::new("no workflow selected").block(pane(Line::from(" Graph "), true, theme)),
            area,
        );
        return;
    };
    let run = model.selected_run().map(|run| (run.id.clone(), run.state));
    let states: HashMap<String, TaskState> =
        model.visible_tasks().iter().map(|task| (task.name.clone(), task.state)).collect();
    let shape = if workflow.graph.is_empty() { "tasks in order (no depends_on)" } else { "depends_on" };
    let whose = match &run {
        Some((id, state)) => format!("run {id} {state}"),
        None => "no run: every task pending".into(),
    };
    let title = format!(" Graph · {} · {shape} · {whose} ", super::logview::printable(&workflow.id));
    let block = pane(Line::from(title), true, theme);
    let inner = block.inner(area);
    frame.render_widget(block, area);
    if let Some(problem) = &workflow.broken {
        let text = Paragraph::new(super::logview::printable(problem)).style(theme.fg("failed"));
        frame.render_widget(text, inner);
        return;
    }
    if workflow.tasks.is_empty() {
        frame.render_widget(Paragraph::new(Span::styled("this workflow has no tasks", theme.dim())), inner);
        return;
    }
    let graph = graph_of(&workflow.tasks, &workflow.graph);
    let view = &mut model.graph_view;
    if view.layout.as_ref().is_none_or(|(known, _)| *known != graph) {
        let placed = place(&graph);
        view.layout = Some((graph, placed));
    }
    let placed = view.layout.as_ref().and_then(|(_, placed)| placed.as_ref());
    let Some(canvas) = placed.and_then(|placed| paint(placed, &states, chrome)) else {
        let text = format!("{} tasks: too large a graph to draw; the Tasks pane lists them", workflow.tasks.len());
        frame.render_widget(Paragraph::new(Span::styled(text, theme.dim())), inner);
        return;
    };
    let view = &mut model.graph_view;
    view.width = canvas.width.saturating_sub(inner.width as usize);
    view.height = canvas.height.saturating_sub(inner.height as usize);
    view.x = view.x.min(view.width);
    view.y = view.y.min(view.height);
    let buffer = frame.buffer_mut();
    for row in 0..inner.height as usize {
        for column in 0..inner.width as usize {
            let (x, y) = (view.x + column, view.y + row);
            if x >= canvas.width || y >= canvas.height {
                continue;
            }
            let symbol = canvas.symbol(x, y);
            if symbol == ' ' {
                continue;
            }
            let position = (inner.x + column as u16, inner.y + row as u16);
            buffer[position].set_char(symbol).set_style(canvas.style(x, y));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        edges
            .iter()
            .map(|(name, parents)| (name.to_string(), parents.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    fn names(placed: &Placed) -> Vec<Vec<&str>> {
        placed
            .columns
            .iter()
            .map(|column| {
                column
                    .iter()
                    .map(|node| match node {
                        Node::Task(name) => name.as_str(),
                        Node::Through => "|",
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_diamond_lays_out_in_three_columns_with_four_edges() {
        let placed = place(&graph(&[("A", &[]), ("B", &["A"]), ("C", &["A"]), ("D", &["B", "C"])])).unwrap();
        assert_eq!(names(&placed), vec![vec!["A"], vec!["B", "C"], vec!["D"]]);
        assert_eq!(placed.edges, vec![((0, 0), (1, 0)), ((0, 0), (1, 1)), ((1, 0), (2, 0)), ((1, 1), (2, 0))]);
    }

    #[test]
    fn an_edge_that_skips_a_column_passes_through_it() {
        let placed = place(&graph(&[("A", &[]), ("B", &["A"]), ("C", &["A", "B"])])).unwrap();
        assert_eq!(names(&placed), vec![vec!["A"], vec!["B", "|"], vec!["C"]]);
        assert_eq!(placed.edges, vec![((0, 0), (1, 0)), ((0, 0), (1, 1)), ((1, 0), (2, 0)), ((1, 1), (2, 0))]);
    }

    #[test]
    fn a_node_sits_near_its_parents_so_two_chains_do_not_cross() {
        let placed = place(&graph(&[("A", &[]), ("B", &[]), ("D", &["B"]), ("C", &["A"])])).unwrap();
        assert_eq!(names(&placed), vec![vec!["A", "B"], vec!["C", "D"]]);
        assert_eq!(placed.edges, vec![((0, 0), (1, 0)), ((0, 1), (1, 1))]);
    }

    #[test]
    fn unknown_parents_and_cycles_are_drawn_without_them_and_without_looping() {
        let placed = place(&graph(&[("A", &["ghost"]), ("B", &["C"]), ("C", &["B"])])).unwrap();
        let total: usize = placed.columns.iter().map(Vec::len).sum();
        assert_eq!(total, 3, "every task is drawn once");
        assert_eq!(names(&placed)[0], vec!["A"]);
    }

    #[test]
    fn a_workflow_without_depends_on_is_a_chain_in_task_order() {
        let tasks: Vec<String> = ["One", "Two", "Three"].iter().map(|s| s.to_string()).collect();
        let placed = place(&graph_of(&tasks, &[])).unwrap();
        assert_eq!(names(&placed), vec![vec!["One"], vec!["Two"], vec!["Three"]]);
        assert_eq!(placed.edges.len(), 2);
    }

    #[test]
    fn edges_join_with_box_drawing_characters() {
        let theme = super::super::theme::Theme::new(false);
        let keymap = super::super::keymap::Keymap::default();
        let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
        let placed = place(&graph(&[("A", &[]), ("B", &["A"]), ("C", &["A"]), ("D", &["B", "C"])])).unwrap();
        let canvas = paint(&placed, &HashMap::new(), &chrome).unwrap();
        let text: Vec<String> = (0..canvas.height)
            .map(|y| (0..canvas.width).map(|x| canvas.symbol(x, y)).collect::<String>().trim_end().to_string())
            .collect();
        let expected = [
            "┌────────┐      ┌────────┐      ┌────────┐",
            "│ · A    │──┬──▶│ · B    │──┬──▶│ · D    │",
            "└────────┘  │   └────────┘  │   └────────┘",
            "            │               │",
            "            │   ┌────────┐  │",
            "            └──▶│ · C    │──┘",
            "                └────────┘",
        ];
        assert_eq!(text, expected);
    }

    #[test]
    fn a_character_two_columns_wide_does_not_push_a_box_out_of_line() {
        let theme = super::super::theme::Theme::new(false);
        let keymap = super::super::keymap::Keymap::default();
        let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
        let placed = place(&graph(&[("報告", &[])])).unwrap();
        let canvas = paint(&placed, &HashMap::new(), &chrome).unwrap();
        let middle: String = (0..canvas.width).map(|x| canvas.symbol(x, 1)).collect();
        assert_eq!(middle, "│ · ??   │");
    }

    #[test]
    fn long_edges_pass_through_every_column_between() {
        let mut edges: Vec<(String, Vec<String>)> = Vec::new();
        for n in 0..60 {
            let parents = if n == 0 { Vec::new() } else { vec![format!("T{}", n - 1), "T0".into()] };
            edges.push((format!("T{n}"), parents));
        }
        let placed = place(&edges).unwrap();
        assert_eq!(placed.columns.len(), 60);
        // T0 → Tn passes through columns 1..n: column c holds T(c) and one passage per later task.
        assert_eq!(placed.columns[1].len(), 1 + 58);
        assert!(placed.edges.iter().all(|((from, _), (to, _))| to - from == 1), "edges join neighbouring columns");
    }

    #[test]
    fn a_graph_too_large_to_draw_is_refused_not_laid_out() {
        let mut edges: Vec<(String, Vec<String>)> = Vec::new();
        for n in 0..400 {
            let parents = if n == 0 { Vec::new() } else { vec![format!("T{}", n - 1), "T0".into()] };
            edges.push((format!("T{n}"), parents));
        }
        assert_eq!(place(&edges), None);
    }
}
