//! Where everything goes on the screen, worked out from the terminal's size (and, for a popup, what it holds)
//! and nothing else: drawing, clicks and paging all ask here, so they cannot disagree about where a pane is.
//! No drawing happens here.

use ratatui::layout::{Constraint, Layout, Position, Rect};

use super::keymap::BINDINGS;
use super::model::{Pane, Popup};

/// Below this the panes do not fit: only a notice is drawn, and only quitting acts.
pub const MIN_WIDTH: u16 = 80;
pub const MIN_HEIGHT: u16 = 24;

/// The screen's parts. On a screen too small every part but `screen` is empty (zero-sized).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Areas {
    pub screen: Rect,
    /// The top line: engine, counts.
    pub header: Rect,
    /// Everything between header and footer: the five panes, or a full-screen view in their place.
    pub body: Rect,
    /// The bottom line: status, filter, or the keys of where the focus is (a view's own keys).
    pub footer: Rect,
    pub workflows: Rect,
    pub runs: Rect,
    pub tasks: Rect,
    pub log: Rect,
    pub monitor: Rect,
    /// The open popup's box, over everything else.
    pub popup: Option<Rect>,
}

pub fn too_small(screen: Rect) -> bool {
    screen.width < MIN_WIDTH || screen.height < MIN_HEIGHT
}

/// The screen's parts, with `popup` open over them.
pub fn areas(screen: Rect, popup: Option<&Popup>) -> Areas {
    if too_small(screen) {
        return Areas { screen, ..Areas::default() };
    }
    let [header, body, footer] =
        Layout::vertical([Constraint::Length(1), Constraint::Min(0), Constraint::Length(1)]).areas(screen);
    // A short terminal gives the lists more of its height: at 24 rows the Runs list still shows two runs.
    let top_share = if screen.height < 32 { 62 } else { 55 };
    let [top, bottom] =
        Layout::vertical([Constraint::Percentage(top_share), Constraint::Percentage(100 - top_share)]).areas(body);
    let [workflows, right] = Layout::horizontal([Constraint::Percentage(32), Constraint::Percentage(68)]).areas(top);
    let [runs, tasks] = Layout::vertical([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(right);
    let [log, monitor] = Layout::horizontal([Constraint::Percentage(64), Constraint::Percentage(36)]).areas(bottom);
    let popup = popup.map(|popup| popup_box(screen, popup));
    Areas { screen, header, body, footer, workflows, runs, tasks, log, monitor, popup }
}

impl Areas {
    pub fn pane(&self, pane: Pane) -> Rect {
        match pane {
            Pane::Workflows => self.workflows,
            Pane::Runs => self.runs,
            Pane::Tasks => self.tasks,
            Pane::Log => self.log,
            Pane::Monitor => self.monitor,
        }
    }

    /// The pane under a click, and where it is.
    pub fn pane_at(&self, column: u16, row: u16) -> Option<(Pane, Rect)> {
        let position = Position { x: column, y: row };
        Pane::ORDER.into_iter().map(|pane| (pane, self.pane(pane))).find(|(_, rect)| rect.contains(position))
    }

    /// The lines of text the log pane shows inside its border.
    pub fn log_lines(&self) -> usize {
        inside(self.log).height as usize
    }

    /// The lines a full-screen view shows inside its border.
    pub fn view_lines(&self) -> usize {
        inside(self.body).height as usize
    }
}

/// Inside a pane's one-cell border.
pub fn inside(rect: Rect) -> Rect {
    ratatui::widgets::Block::bordered().inner(rect)
}

/// The Runs pane's summary line (trigger, next fire, durations) gives way to runs when the pane is short.
pub fn runs_summary_shown(runs: Rect) -> bool {
    runs.height >= 8
}

/// Whether a pane is wide enough for its full columns; a narrow one keeps what identifies a row.
/// The Workflows pane: `in 19h00m` under `next`, else `19h00m`.
pub fn workflows_wide(pane: Rect) -> bool {
    pane.width >= 34
}

/// The runs list (inside the Runs pane): with the time each run was created.
pub fn runs_wide(list: Rect) -> bool {
    list.width >= 70
}

/// The tasks list (inside the Tasks pane): with the route column and the long gauge.
pub fn tasks_wide(list: Rect) -> bool {
    list.width >= 76
}

/// The all-runs view (inside its border): with the start, and the error or trigger.
pub fn all_runs_wide(list: Rect) -> bool {
    list.width >= 100
}

/// How far below a list pane's top its first row is: under the border and the column names; the runs list
/// also under its summary line, the tasks list under the graph line of a workflow with `depends_on`.
pub fn first_row(pane: Pane, rect: Rect, graph_line: bool) -> u16 {
    match pane {
        Pane::Runs if runs_summary_shown(rect) => 3,
        Pane::Runs => 2,
        Pane::Tasks if graph_line => 3,
        Pane::Workflows | Pane::Tasks => 2,
        Pane::Log | Pane::Monitor => 1,
    }
}

/// The three lines saying the screen is too small, halfway down.
pub fn too_small_notice(screen: Rect) -> Rect {
    let top = screen.height.saturating_sub(3) / 2;
    Rect { y: screen.y + top, height: screen.height.min(3), ..screen }
}

/// A box of at most `width` by `height` in the middle of `area`.
pub fn centered(area: Rect, width: u16, height: u16) -> Rect {
    let width = width.min(area.width);
    let height = height.min(area.height);
    Rect { x: area.x + (area.width - width) / 2, y: area.y + (area.height - height) / 2, width, height }
}

/// Where a popup goes: most are centred and as tall as what they hold; the command line sits at the bottom.
pub fn popup_box(screen: Rect, popup: &Popup) -> Rect {
    match popup {
        Popup::Help { .. } => centered(screen, 76, BINDINGS.len() as u16 + 2),
        Popup::Confirm { .. } => centered(screen, 64, 6),
        Popup::Reroute { routes, .. } => centered(screen, 96, routes.len() as u16 + 2),
        Popup::Params(form) => centered(screen, 76, form.lines() as u16 + 2),
        Popup::CommandLine(line) => {
            // A second line under the text when Tab offers candidates or Enter was refused.
            let height = if line.completion.is_some() || line.error.is_some() { 4 } else { 3 };
            Rect { y: screen.bottom().saturating_sub(height), height: height.min(screen.height), ..screen }
        }
        // An alert's text may be long: the view takes most of the screen, though no wider than reads well.
        Popup::Alert { .. } => {
            centered(screen, screen.width.saturating_sub(8).min(100), screen.height.saturating_sub(4))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn screen(width: u16, height: u16) -> Rect {
        Rect::new(0, 0, width, height)
    }

    /// No two panes overlap, and together with header and footer they cover the screen.
    fn tiles(areas: &Areas) {
        let panes = Pane::ORDER.map(|pane| areas.pane(pane));
        for (index, a) in panes.iter().enumerate() {
            assert!(a.area() > 0, "{a:?} is empty");
            for b in &panes[index + 1..] {
                assert!(a.intersection(*b).is_empty(), "{a:?} overlaps {b:?}");
            }
        }
        let covered: u32 = panes.iter().chain([&areas.header, &areas.footer]).map(|rect| rect.area()).sum();
        assert_eq!(covered, areas.screen.area());
    }

    #[test]
    fn at_80x24_the_lists_take_62_percent_of_the_body() {
        let areas = areas(screen(80, 24), None);
        assert_eq!(areas.header, Rect::new(0, 0, 80, 1));
        assert_eq!(areas.footer, Rect::new(0, 23, 80, 1));
        assert_eq!(areas.body, Rect::new(0, 1, 80, 22));
        assert_eq!(areas.workflows, Rect::new(0, 1, 26, 14));
        assert_eq!(areas.runs, Rect::new(26, 1, 54, 6));
        assert_eq!(areas.tasks, Rect::new(26, 7, 54, 8));
        assert_eq!(areas.log, Rect::new(0, 15, 51, 8));
        assert_eq!(areas.monitor, Rect::new(51, 15, 29, 8));
        assert_eq!(areas.popup, None);
        assert_eq!((areas.log_lines(), areas.view_lines()), (6, 20));
        assert!(!runs_summary_shown(areas.runs), "six rows keep the runs, not the summary");
        tiles(&areas);
    }

    #[test]
    fn at_120x40_the_lists_take_55_percent_and_runs_show_their_summary() {
        let areas = areas(screen(120, 40), None);
        assert_eq!(areas.workflows, Rect::new(0, 1, 38, 21));
        assert_eq!(areas.runs, Rect::new(38, 1, 82, 9));
        assert_eq!(areas.tasks, Rect::new(38, 10, 82, 12));
        assert_eq!(areas.log, Rect::new(0, 22, 77, 17));
        assert_eq!(areas.monitor, Rect::new(77, 22, 43, 17));
        assert_eq!(areas.footer, Rect::new(0, 39, 120, 1));
        assert!(runs_summary_shown(areas.runs));
        assert_eq!(first_row(Pane::Runs, areas.runs, false), 3);
        tiles(&areas);
    }

    #[test]
    fn at_80_columns_the_lists_drop_their_extra_columns_and_at_120_they_keep_them() {
        let narrow = areas(screen(80, 24), None);
        let wide = areas(screen(120, 40), None);
        assert!(!workflows_wide(narrow.workflows) && workflows_wide(wide.workflows));
        assert!(!runs_wide(inside(narrow.runs)) && runs_wide(inside(wide.runs)));
        assert!(!tasks_wide(inside(narrow.tasks)) && tasks_wide(inside(wide.tasks)));
        assert!(!all_runs_wide(inside(narrow.body)) && all_runs_wide(inside(wide.body)));
    }

    #[test]
    fn the_taller_share_stops_at_32_rows() {
        // 31 rows still gives the lists 62 % of the 29-row body; 32 rows gives them 55 % of 30.
        assert_eq!(areas(screen(80, 31), None).workflows.height, 18);
        assert_eq!(areas(screen(80, 32), None).workflows.height, 17);
    }

    #[test]
    fn a_screen_narrower_or_shorter_than_80x24_has_no_panes_only_the_notice() {
        for (width, height) in [(79, 24), (80, 23), (60, 20), (0, 0)] {
            let areas = areas(screen(width, height), Some(&Popup::Help { scroll: 0 }));
            assert!(too_small(areas.screen));
            assert_eq!(areas, Areas { screen: screen(width, height), ..Areas::default() });
            assert_eq!(areas.pane_at(1, 1), None, "a click finds no pane");
        }
        assert_eq!(too_small_notice(screen(60, 20)), Rect::new(0, 8, 60, 3));
        assert_eq!(too_small_notice(screen(60, 2)), Rect::new(0, 0, 60, 2), "a tiny screen shows what fits");
        assert!(!too_small(screen(80, 24)));
    }

    #[test]
    fn a_click_finds_the_pane_under_it_and_the_border_rows_are_counted() {
        let areas = areas(screen(80, 24), None);
        assert_eq!(areas.pane_at(0, 0), None, "the header is no pane");
        assert_eq!(areas.pane_at(0, 1), Some((Pane::Workflows, areas.workflows)));
        assert_eq!(areas.pane_at(26, 1).map(|(pane, _)| pane), Some(Pane::Runs));
        assert_eq!(areas.pane_at(79, 7).map(|(pane, _)| pane), Some(Pane::Tasks));
        assert_eq!(areas.pane_at(50, 22).map(|(pane, _)| pane), Some(Pane::Log));
        assert_eq!(areas.pane_at(51, 22).map(|(pane, _)| pane), Some(Pane::Monitor));
        assert_eq!(areas.pane_at(10, 23), None, "the footer is no pane");
        assert_eq!(first_row(Pane::Runs, areas.runs, false), 2, "a short Runs pane has no summary line");
        assert_eq!(first_row(Pane::Tasks, areas.tasks, true), 3);
        assert_eq!(first_row(Pane::Tasks, areas.tasks, false), 2);
    }

    #[test]
    fn popups_are_centred_and_cut_to_the_screen() {
        let small = screen(80, 24);
        let help = areas(small, Some(&Popup::Help { scroll: 0 })).popup.unwrap();
        assert_eq!(help, Rect::new(2, 0, 76, 24), "the help is taller than 24 rows: it scrolls");
        let confirm = Popup::Confirm {
            question: String::new(),
            action: Box::new(super::super::Effect::Quit),
            yes_focused: false,
        };
        assert_eq!(popup_box(small, &confirm), Rect::new(8, 9, 64, 6));
        let reroute = Popup::Reroute {
            run: String::new(),
            task: String::new(),
            routes: vec!["A".into(), "B".into()],
            notes: Vec::new(),
            selected: 0,
        };
        assert_eq!(popup_box(small, &reroute), Rect::new(0, 10, 80, 4), "96 wide is cut to the screen");
        assert_eq!(popup_box(screen(120, 40), &reroute), Rect::new(12, 18, 96, 4));
        assert_eq!(popup_box(screen(120, 40), &Popup::Alert { id: 1, scroll: 0 }), Rect::new(10, 2, 100, 36));
        assert_eq!(popup_box(small, &Popup::Alert { id: 1, scroll: 0 }), Rect::new(4, 2, 72, 20));
        let line = Popup::CommandLine(Default::default());
        assert_eq!(popup_box(small, &line), Rect::new(0, 21, 80, 3), "the command line sits at the bottom");
    }
}
