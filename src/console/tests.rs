//! The console drawn on ratatui's TestBackend from a model fed with fixed data, snapshotted with insta; and
//! what each key does to the model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;

use super::*;
use crate::engine::{Command, Event};
use crate::state::{AttemptState, RunState, TaskState};
use crate::store::{AlertRecord, AttemptRecord, RunRecord, TaskRecord};

pub(super) fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

pub(super) const NOW: &str = "2026-11-25T12:00:00Z";

pub(super) fn run(id: &str, workflow: &str, state: RunState, minutes_ago: i64, seconds: i64) -> RunRecord {
    let start = at(NOW) - Duration::minutes(minutes_ago);
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        state,
        trigger: if minutes_ago > 100 { "schedule".into() } else { "manual".into() },
        input: json!({}),
        params: json!({}),
        definition_file: PathBuf::new(),
        definition: "".into(),
        created_at: start,
        started_at: Some(start),
        finished_at: state.is_finished().then(|| start + Duration::seconds(seconds)),
        error: (state == RunState::Failed).then(|| "task Score failed: exit status 3".to_string()),
    }
}

pub(super) fn task(run: &RunRecord, name: &str, position: u32, state: TaskState, attempts: u32) -> TaskRecord {
    let start = run.started_at.unwrap() + Duration::seconds(position as i64 * 2);
    TaskRecord {
        run_id: run.id.clone(),
        name: name.into(),
        position,
        state,
        attempts,
        route: None,
        input: Some(json!({})),
        output: None,
        started_at: (state != TaskState::Pending).then_some(start),
        finished_at: state.is_finished().then(|| start + Duration::seconds(2)),
        error: (state == TaskState::Failed).then(|| "exit status 3".to_string()),
        route_attempts: attempts,
        ..TaskRecord::pending(&run.id, name, position as usize)
    }
}

fn attempt(task: &TaskRecord, number: u32, route: &str, log: &Path) -> AttemptRecord {
    let started_at = task.started_at.unwrap_or(at(NOW));
    AttemptRecord {
        state: match task.state {
            TaskState::Succeeded => AttemptState::Succeeded,
            TaskState::Running => AttemptState::Running,
            _ => AttemptState::Failed,
        },
        finished_at: task.finished_at,
        ..AttemptRecord::started(&task.run_id, &task.name, number, route, started_at, log.to_path_buf())
    }
}

pub(super) struct Fixture {
    _dir: tempfile::TempDir,
    pub(super) model: Model,
    pub(super) log: PathBuf,
}

/// The bundled workflows, two runs of the seed pipeline (one failed at Score), a running release check,
/// and two alerts.
pub(super) fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("Score.2.log");
    let mut text = String::from("[conveyor] started `sh grants/score.sh analyze_and_suggest` (pid 4242)\n");
    for n in 1..=30 {
        text.push_str(&format!("scoring application A-{n:04}\n"));
    }
    text.push_str("Traceback (most recent call last): model endpoint refused\nERROR: cannot score A-0031\n[conveyor] exit status 3\n");
    std::fs::write(&log, text).unwrap();
    let catalog = crate::definition::load_folder(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/workflows")));
    let mut model = Model::new(WorkflowRow::from_catalog(&catalog, at(NOW)), false, at(NOW));
    model.route_notes = super::route_notes(&catalog);
    let failed = run("20261125-114500-a1b2", "DailyGrantPipeline", RunState::Failed, 15, 9);
    let older = run("20261124-070000-c3d4", "DailyGrantPipeline", RunState::Succeeded, 1740, 14);
    let release = run("20261125-115900-e5f6", "ReleaseChecks", RunState::Running, 1, 0);
    let mut tasks = vec![
        task(&failed, "Ingest", 0, TaskState::Succeeded, 1),
        task(&failed, "Score", 1, TaskState::Failed, 2),
        task(&failed, "Review", 2, TaskState::Pending, 0),
        task(&failed, "Award", 3, TaskState::Pending, 0),
        task(&failed, "Notify", 4, TaskState::Pending, 0),
        task(&release, "Disk", 0, TaskState::Succeeded, 1),
        task(&release, "Clock", 1, TaskState::Running, 1),
        task(&release, "Summary", 2, TaskState::Pending, 0),
    ];
    for name in ["Ingest", "Score", "Review", "Award", "Notify"] {
        let mut done = task(&older, name, tasks.len() as u32 % 5, TaskState::Succeeded, 1);
        done.position =
            ["Ingest", "Score", "Review", "Award", "Notify"].iter().position(|n| *n == name).unwrap() as u32;
        tasks.push(done);
    }
    let attempts = vec![
        attempt(&tasks[0], 1, "GrantIngestionService", &dir.path().join("Ingest.1.log")),
        attempt(&tasks[1], 1, "EligibilityAgent", &dir.path().join("Score.1.log")),
        attempt(&tasks[1], 2, "EligibilityAgent", &log),
        attempt(&tasks[5], 1, "inline", &dir.path().join("Disk.1.log")),
        attempt(&tasks[6], 1, "inline", &dir.path().join("Clock.1.log")),
    ];
    let alerts = vec![
        AlertRecord {
            id: 2,
            at: at(NOW) - Duration::minutes(14),
            severity: "error".into(),
            workflow: Some("DailyGrantPipeline".into()),
            run_id: Some(failed.id.clone()),
            task: None,
            message: "run 20261125-114500-a1b2 of DailyGrantPipeline failed: task Score failed: exit status 3".into(),
            acked_at: None,
        },
        AlertRecord {
            id: 1,
            at: at(NOW) - Duration::hours(3),
            severity: "info".into(),
            workflow: Some("NightlyReport".into()),
            run_id: None,
            task: None,
            message: "NightlyReport: the scheduled fire was skipped: the workflow is paused".into(),
            acked_at: Some(at(NOW)),
        },
    ];
    model.apply_snapshot(Snapshot {
        runs: vec![failed, older, release],
        tasks,
        attempts,
        alerts,
        paused: ["NightlyReport".to_string()].into(),
        ..Snapshot::default()
    });
    model.progress.insert(("20261125-115900-e5f6".into(), "Clock".into()), 0.6);
    Fixture { _dir: dir, model, log }
}

/// Draws as the console does: a first frame says which log lines it needs, they are read (here, at once),
/// and the next frame shows them.
pub(super) fn render(model: &mut Model, width: u16, height: u16, colour: bool) -> String {
    render_with(model, width, height, colour, &Keymap::default())
}

/// `render` with the keys a config file bound.
pub(super) fn render_with(model: &mut Model, width: u16, height: u16, colour: bool, keymap: &Keymap) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let theme = Theme::new(colour);
    let chrome = Chrome { theme: &theme, keymap, utc: true, engine_log: None };
    // As the runtime does: keys pressed after this frame page by its size.
    model.screen = ratatui::layout::Rect::new(0, 0, width, height);
    terminal
        .draw(|frame| {
            draw(frame, model, &chrome);
        })
        .unwrap();
    if let Some(request) = model.log.as_mut().and_then(LogView::window_request) {
        let lines = request.read();
        assert!(model.log.as_mut().unwrap().set_window(request.key, lines));
        terminal
            .draw(|frame| {
                draw(frame, model, &chrome);
            })
            .unwrap();
    }
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        let mut line = String::new();
        for x in 0..buffer.area.width {
            line.push_str(buffer[(x, y)].symbol());
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

pub(super) fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

pub(super) fn press(model: &mut Model, keys: &str) -> Vec<Effect> {
    let keymap = Keymap::default();
    let routes = vec!["ArchiveService".to_string(), "NotificationService".to_string()];
    let mut effects = Vec::new();
    for c in keys.chars() {
        effects.extend(handle_key(model, &keymap, key(KeyCode::Char(c)), &routes));
    }
    effects
}

pub(super) fn press_code(model: &mut Model, code: KeyCode) -> Vec<Effect> {
    handle_key(model, &Keymap::default(), key(code), &["ArchiveService".to_string()])
}

/// Opens the log as the runtime would on an `OpenLog` effect.
pub(super) fn open_log(fixture: &mut Fixture) {
    let effects = press_code(&mut fixture.model, KeyCode::Enter);
    let Some(Effect::OpenLog { run, task, attempt, path, jump_to_error }) =
        effects.into_iter().find(|e| matches!(e, Effect::OpenLog { .. }))
    else {
        panic!("Enter on a failed run opens its failed task's log")
    };
    let workflow = fixture.model.workflow_of_run(&run);
    let mut view = LogView::new(run, task, attempt, path.clone(), false, jump_to_error);
    view.workflow = workflow;
    view.height = 14;
    view.set_index(Arc::new(logview::extend_index(&path, &LogIndex::default())));
    fixture.model.log = Some(view);
}

#[test]
fn page_down_in_the_log_moves_by_what_the_log_pane_shows_at_the_screens_size() {
    let mut fixture = fixture();
    press_code(&mut fixture.model, KeyCode::Enter);
    open_log(&mut fixture);
    let model = &mut fixture.model;
    model.focus = Pane::Log;
    for (width, height, page) in [(120, 40, 14), (80, 24, 5)] {
        // Told the size as on a resize, before any frame: the layout alone says how far a page goes.
        model.screen = ratatui::layout::Rect::new(0, 0, width, height);
        model.log.as_mut().unwrap().home();
        press_code(model, KeyCode::PageDown);
        assert_eq!(model.log.as_ref().unwrap().top, page, "{width}x{height}");
        render(model, width, height, false);
        assert_eq!(model.log.as_ref().unwrap().height, page + 1, "the drawn log shows a page and one line more");
    }
}

#[test]
fn the_footer_the_help_and_the_hints_name_the_keys_the_config_bound_and_those_keys_act() {
    let mut fixture = fixture();
    let (keymap, _, problems) = config::load(Some("[keys]\nopen = \"o\"\nhelp = \"F1\"\n"), Theme::new(false));
    assert_eq!(problems, Vec::<String>::new());
    let model = &mut fixture.model;
    let screen = render_with(model, 120, 40, false, &keymap);
    assert!(screen.contains(" o  open "), "the footer shows the plainest key of open: {screen}");
    assert!(screen.contains("l (or o on a task) opens its log"), "{screen}");
    let routes = ["ArchiveService".to_string()];
    handle_key(model, &keymap, key(KeyCode::Char('o')), &routes);
    assert_eq!(model.focus, Pane::Runs, "o drills in as the footer says");
    handle_key(model, &keymap, key(KeyCode::F(1)), &routes);
    assert_eq!(model.popup, Some(Popup::Help { scroll: 0 }));
    let screen = render_with(model, 120, 40, false, &keymap);
    assert!(screen.contains("?/F1 this help"), "{screen}");
    assert!(screen.contains("o/Enter drill in"), "{screen}");
}

#[test]
fn popups_answer_their_own_keys_and_keep_or_close_as_their_titles_say() {
    let mut model = fixture().model;
    let cancel = Effect::Send(Command::CancelRun { run: "r-1".into() });
    let confirm = |yes_focused| Popup::Confirm { question: "?".into(), action: Box::new(cancel.clone()), yes_focused };
    model.popup = Some(confirm(false));
    assert_eq!(press(&mut model, "z"), vec![], "a key it does not know keeps it open");
    assert_eq!(model.popup, Some(confirm(false)));
    press_code(&mut model, KeyCode::Right);
    assert_eq!(model.popup, Some(confirm(true)), "an arrow moves to Yes");
    press(&mut model, "h");
    assert_eq!(press_code(&mut model, KeyCode::Enter), vec![], "Enter on No sends nothing");
    assert_eq!(model.popup, None);
    model.popup = Some(confirm(false));
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(press_code(&mut model, KeyCode::Enter), vec![cancel.clone()], "Enter on Yes");
    model.popup = Some(confirm(false));
    assert_eq!(press(&mut model, "y"), vec![cancel.clone()], "y answers yes wherever the focus is");
    model.popup = Some(confirm(true));
    assert_eq!((press(&mut model, "n"), &model.popup), (vec![], &None));
    let routes = vec!["A".to_string(), "B".to_string()];
    let reroute = |selected| Popup::Reroute {
        run: "r-1".into(),
        task: "Score".into(),
        routes: routes.clone(),
        notes: Vec::new(),
        selected,
    };
    model.popup = Some(reroute(0));
    press(&mut model, "jjz");
    assert_eq!(model.popup, Some(reroute(1)), "j stops at the last route; z changes nothing");
    press_code(&mut model, KeyCode::Up);
    press_code(&mut model, KeyCode::Down);
    let to = |to: &str| Effect::Send(Command::RerouteTask { run: "r-1".into(), task: "Score".into(), to: to.into() });
    assert_eq!(press_code(&mut model, KeyCode::Enter), vec![to("B")]);
    model.popup = Some(reroute(0));
    assert_eq!((press_code(&mut model, KeyCode::Esc), &model.popup), (vec![], &None));
    model.popup = Some(Popup::Help { scroll: 0 });
    press(&mut model, "jjk");
    assert_eq!(model.popup, Some(Popup::Help { scroll: 1 }));
    press(&mut model, "G");
    assert_eq!(model.popup, Some(Popup::Help { scroll: keymap::BINDINGS.len() - 1 }));
    press_code(&mut model, KeyCode::Home);
    assert_eq!(model.popup, Some(Popup::Help { scroll: 0 }));
    press(&mut model, "x");
    assert_eq!(model.popup, None, "any other key closes the help");
}

#[test]
fn the_dashboard_at_120_by_40() {
    let mut fixture = fixture();
    insta::assert_snapshot!("dashboard_120x40", render(&mut fixture.model, 120, 40, false));
}

#[test]
fn the_dashboard_at_80_by_24() {
    let mut fixture = fixture();
    insta::assert_snapshot!("dashboard_80x24", render(&mut fixture.model, 80, 24, false));
}

#[test]
fn a_terminal_too_small_says_so() {
    let mut fixture = fixture();
    insta::assert_snapshot!("too_small_60x20", render(&mut fixture.model, 60, 20, false));
}

#[test]
fn a_failed_run_opens_on_its_failed_task_with_the_log_at_the_first_error() {
    let mut fixture = fixture();
    press_code(&mut fixture.model, KeyCode::Enter);
    assert_eq!(fixture.model.focus, Pane::Runs);
    open_log(&mut fixture);
    assert_eq!(fixture.model.focus, Pane::Tasks);
    assert_eq!(fixture.model.selected_task().unwrap().name, "Score");
    assert_eq!(fixture.model.log.as_ref().unwrap().mark, Some(31), "the Traceback line");
    insta::assert_snapshot!("failed_run_log_120x40", render(&mut fixture.model, 120, 40, false));
    insta::assert_snapshot!("failed_run_log_80x24", render(&mut fixture.model, 80, 24, false));
}

#[test]
fn the_log_searches_and_jumps_between_errors() {
    let mut fixture = fixture();
    press_code(&mut fixture.model, KeyCode::Enter);
    open_log(&mut fixture);
    let model = &mut fixture.model;
    model.focus = Pane::Log;
    assert!(press(model, "/").is_empty());
    assert!(model.filtering);
    press(model, "A-002");
    let effects = press_code(model, KeyCode::Enter);
    assert_eq!(effects, vec![Effect::SearchLog("A-002".into())]);
    let matches = logview::search(&fixture.log, "A-002");
    assert_eq!(matches, (20..=29).collect::<Vec<_>>());
    let log = model.log.as_mut().unwrap();
    log.search = Some(("A-002".into(), matches));
    log.mark = None;
    log.home();
    press(model, "n");
    assert_eq!(model.log.as_ref().unwrap().mark, Some(20));
    press(model, "N");
    assert_eq!(model.log.as_ref().unwrap().mark, Some(29), "N wraps back to the last match");
    press(model, "e");
    assert_eq!(model.log.as_ref().unwrap().mark, Some(31));
    press(model, "e");
    assert_eq!(model.log.as_ref().unwrap().mark, Some(32));
    press(model, "E");
    assert_eq!(model.log.as_ref().unwrap().mark, Some(31));
    press(model, "w");
    assert!(model.log.as_ref().unwrap().wrap);
    press(model, "f");
    assert!(model.log.as_ref().unwrap().follow);
    press_code(model, KeyCode::Up);
    assert!(!model.log.as_ref().unwrap().follow, "scrolling up stops following");
    insta::assert_snapshot!("log_search_120x40", render(model, 120, 40, false));
}

#[test]
fn every_popup_draws() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "?");
    insta::assert_snapshot!("help_120x40", render(model, 120, 40, false));
    press(model, "x");
    assert_eq!(model.popup, None, "any key but a scrolling one closes the help");
    press(model, "?");
    press(model, "G");
    insta::assert_snapshot!("help_scrolled_80x24", render(model, 80, 24, false));
    assert!(matches!(model.popup, Some(Popup::Help { scroll }) if scroll > 0), "the help scrolls");
    press(model, "g");
    assert_eq!(model.popup, Some(Popup::Help { scroll: 0 }));
    press_code(model, KeyCode::Esc);
    assert_eq!(model.popup, None);
    press_code(model, KeyCode::Enter);
    press(model, "k");
    press(model, "c");
    assert!(model.popup.is_none(), "a finished run cannot be cancelled");
    assert_eq!(model.status.as_deref(), Some("select an active run to cancel"));
    press_code(model, KeyCode::Esc);
    press(model, "G");
    press_code(model, KeyCode::Enter);
    press(model, "c");
    insta::assert_snapshot!("confirm_cancel_80x24", render(model, 80, 24, false));
    press_code(model, KeyCode::Esc);
    model.select_task(1);
    assert_eq!(model.selected_task().unwrap().name, "Clock");
    press(model, "R");
    let screen = render(model, 80, 24, false);
    assert!(screen.contains("service · Writes one notice per award"), "the picker says what each route is");
    insta::assert_snapshot!("reroute_80x24", screen);
    press_code(model, KeyCode::Esc);
    press(model, ":");
    press(model, "trigger NightlyReport");
    insta::assert_snapshot!("command_line_80x24", render(model, 80, 24, false));
}

#[test]
fn the_params_form_and_the_alerts_tab_draw() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "jj");
    assert_eq!(model.selected_workflow().unwrap().id, "NightlyReport");
    press(model, "T");
    insta::assert_snapshot!("params_form_120x40", render(model, 120, 40, false));
    press_code(model, KeyCode::Esc);
    press(model, "v");
    insta::assert_snapshot!("alerts_120x40", render(model, 120, 40, false));
}

#[test]
fn trigger_and_trigger_with_params() {
    let mut model = fixture().model;
    assert_eq!(
        press(&mut model, "t"),
        vec![Effect::Send(Command::Trigger {
            workflow: "DailyGrantPipeline".into(),
            input: None,
            params: Default::default()
        })]
    );
    press(&mut model, "jj");
    assert!(press(&mut model, "T").is_empty());
    let Some(Popup::Params(form)) = &model.popup else { panic!("a params form") };
    assert_eq!((form.fields[0].name.as_str(), form.fields[0].value.as_str()), ("label", "nightly"));
    press_code(&mut model, KeyCode::Backspace);
    press(&mut model, "X");
    let effects = press_code(&mut model, KeyCode::Enter);
    let Effect::Send(Command::Trigger { workflow, params, input }) = &effects[0] else { panic!("{effects:?}") };
    assert_eq!(workflow, "NightlyReport");
    assert_eq!(params.get("label"), Some(&json!("nightlX")));
    assert_eq!(params.get("max_lines"), Some(&json!(1000)), "values go typed, as the form checked them");
    assert_eq!(*input, None);
    press(&mut model, "j");
    assert!(press(&mut model, "T").is_empty());
    let Some(Popup::Params(form)) = &model.popup else { panic!("a form even without params") };
    assert_eq!(form.fields.len(), 1, "a workflow without parameters gets only the input field");
    assert_eq!(form.fields[0].name, "input");
}

#[test]
fn navigation_filter_command_line_alerts_and_mouse_toggle() {
    let mut model = fixture().model;
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(model.focus, Pane::Runs);
    press_code(&mut model, KeyCode::BackTab);
    press_code(&mut model, KeyCode::BackTab);
    assert_eq!(model.focus, Pane::Monitor);
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(model.focus, Pane::Workflows);
    press(&mut model, "G");
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks");
    press(&mut model, "g");
    assert_eq!(model.selected_workflow().unwrap().id, "DailyGrantPipeline");
    press(&mut model, "/inbox");
    assert_eq!(model.visible_workflows().len(), 1);
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.selected_workflow().unwrap().id, "InboxIntake");
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(model.visible_workflows().len(), 4, "Esc clears the filter");
    press(&mut model, ":");
    press(&mut model, "pause ReleaseChecks");
    assert_eq!(
        press_code(&mut model, KeyCode::Enter),
        vec![Effect::Send(Command::PauseWorkflow { workflow: "ReleaseChecks".into() })]
    );
    press(&mut model, ":");
    press(&mut model, "bogus");
    assert!(press_code(&mut model, KeyCode::Enter).is_empty());
    let Some(Popup::CommandLine(line)) = &model.popup else { panic!("a refused line stays open") };
    assert_eq!(line.text, "bogus");
    assert!(line.error.as_deref().unwrap().starts_with("unknown command `:bogus`"));
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(press(&mut model, "A"), vec![Effect::Send(Command::AckAlert { id: 2 })]);
    press(&mut model, "v");
    assert_eq!(model.focus, Pane::Monitor);
    press(&mut model, "j");
    assert!(press(&mut model, "A").is_empty(), "the second alert is already acknowledged");
    assert_eq!(press(&mut model, "m"), vec![Effect::ToggleMouse]);
}

#[test]
fn events_update_the_view_model() {
    let mut model = fixture().model;
    let mut new_run = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0);
    assert!(model.apply(&Event::Run(new_run.clone())));
    assert_eq!(model.visible_runs()[0].id, "20261125-120000-ffff");
    new_run.state = RunState::Succeeded;
    model.apply(&Event::Run(new_run));
    assert_eq!(model.visible_runs().len(), 3);
    assert_eq!(model.visible_runs()[0].state, RunState::Succeeded);
    model.apply(&Event::WorkflowPaused { workflow: "DailyGrantPipeline".into(), paused: true });
    assert!(model.paused.contains("DailyGrantPipeline"));
    let ignored = Event::Log {
        run_id: "x".into(),
        task: "y".into(),
        attempt: 1,
        stream: crate::tasks::Stream::Stdout,
        line: "z".into(),
    };
    assert!(!model.apply(&ignored), "a log line of a log not on screen changes nothing");
}

#[test]
fn no_color_draws_without_colour() {
    let mut fixture = fixture();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let theme = Theme::new(false);
    let keymap = Keymap::default();
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    terminal
        .draw(|frame| {
            draw(frame, &mut fixture.model, &chrome);
        })
        .unwrap();
    let buffer = terminal.backend().buffer();
    let coloured = buffer.content().iter().filter(|cell| cell.fg != ratatui::style::Color::Reset).count();
    assert_eq!(coloured, 0);
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let theme = Theme::new(true);
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    terminal
        .draw(|frame| {
            draw(frame, &mut fixture.model, &chrome);
        })
        .unwrap();
    assert!(terminal.backend().buffer().content().iter().any(|cell| cell.fg == ratatui::style::Color::Red));
}

#[test]
fn clicks_select_and_focus_and_the_wheel_scrolls() {
    let mut fixture = fixture();
    let mut terminal = Terminal::new(TestBackend::new(120, 40)).unwrap();
    let (theme, keymap) = (Theme::new(false), Keymap::default());
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    fixture.model.screen = ratatui::layout::Rect::new(0, 0, 120, 40);
    terminal.draw(|frame| draw(frame, &mut fixture.model, &chrome)).unwrap();
    let areas = layout::areas(fixture.model.screen, None);
    let model = &mut fixture.model;
    let click = |column, row| crossterm::event::MouseEvent {
        kind: crossterm::event::MouseEventKind::Down(crossterm::event::MouseButton::Left),
        column,
        row,
        modifiers: KeyModifiers::NONE,
    };
    handle_mouse(model, click(areas.workflows.x + 3, areas.workflows.y + 5), &[]);
    assert_eq!((model.focus, model.selected_workflow().unwrap().id.as_str()), (Pane::Workflows, "ReleaseChecks"));
    handle_mouse(model, click(areas.workflows.x + 3, areas.workflows.y + 2), &[]);
    assert_eq!(model.selected_workflow().unwrap().id, "DailyGrantPipeline");
    handle_mouse(model, click(areas.runs.x + 5, areas.runs.y + 4), &[]);
    assert_eq!((model.focus, model.selected_run().unwrap().id.as_str()), (Pane::Runs, "20261124-070000-c3d4"));
    handle_mouse(model, click(areas.runs.x + 5, areas.runs.y + 3), &[]);
    handle_mouse(model, click(areas.tasks.x + 5, areas.tasks.y + 3), &[]);
    assert_eq!((model.focus, model.selected_task().unwrap().name.as_str()), (Pane::Tasks, "Score"));
    let wheel = crossterm::event::MouseEvent {
        kind: crossterm::event::MouseEventKind::ScrollDown,
        column: areas.workflows.x + 3,
        row: areas.workflows.y + 2,
        modifiers: KeyModifiers::NONE,
    };
    handle_mouse(model, wheel, &[]);
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks", "three rows down");
    let up_in_engine_log = crossterm::event::MouseEvent {
        kind: crossterm::event::MouseEventKind::ScrollUp,
        column: areas.monitor.x + 3,
        row: areas.monitor.y + 3,
        modifiers: KeyModifiers::NONE,
    };
    assert_eq!(
        handle_mouse(model, up_in_engine_log, &[]),
        vec![Effect::EngineLog(tui_logger::TuiWidgetEvent::PrevPageKey)],
        "the wheel pages the engine log back"
    );
    assert_eq!(model.focus, Pane::Tasks, "the wheel does not move the focus");
    handle_mouse(model, click(areas.workflows.x + 3, areas.workflows.y + 1), &[]);
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks", "a click on the column names selects nothing");
}

#[test]
fn approve_and_reject_answer_a_waiting_gate() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let run = "20261125-114500-a1b2".to_string();
    let mut waiting = model.tasks[&run][2].clone();
    waiting.state = TaskState::WaitingApproval;
    model.apply(&Event::Task(waiting));
    press_code(model, KeyCode::Enter);
    press_code(model, KeyCode::Enter);
    press(model, "j");
    assert_eq!(model.selected_task().unwrap().name, "Review");
    // Both open the gate view, where the held items are judged (tests/gate.rs).
    for key in ["a", "x"] {
        assert_eq!(press(model, key), vec![]);
        assert_eq!(
            (model.view, model.gate.run.as_str(), model.gate.task.as_str()),
            (Some(model::View::Gate), run.as_str(), "Review")
        );
        press_code(model, KeyCode::Esc);
        assert_eq!(model.view, None);
    }
    insta::assert_snapshot!("waiting_gate_120x40", render(model, 120, 40, false));
}

#[test]
fn a_long_session_holds_no_more_than_the_lists_show() {
    let mut model = fixture().model;
    let oldest = "20261124-070000-c3d4".to_string();
    assert!(model.tasks.contains_key(&oldest));
    for n in 0..model::RUNS_SHOWN {
        let mut newer = run(&format!("20261126-{n:06}-0000"), "DailyGrantPipeline", RunState::Succeeded, 0, 1);
        newer.created_at = at(NOW) + Duration::seconds(n as i64);
        let task = task(&newer, "Ingest", 0, TaskState::Succeeded, 1);
        model.apply(&Event::Run(newer));
        model.apply(&Event::Task(task));
    }
    assert_eq!(model.runs["DailyGrantPipeline"].len(), model::RUNS_SHOWN);
    assert!(!model.tasks.contains_key(&oldest), "the tasks of a run that left the list are let go");
    assert!(!model.attempts.contains_key(&oldest));
    let alert = model.alerts[0].clone();
    for n in 0..model::ALERTS_SHOWN + 50 {
        model.apply(&Event::Alert(AlertRecord { id: 1000 + n as i64, ..alert.clone() }));
    }
    assert_eq!(model.alerts.len(), model::ALERTS_SHOWN);
}

#[test]
fn later_snapshots_read_only_runs_that_can_still_change() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    let mut old = run("old", "W", RunState::Succeeded, 600, 5);
    old.created_at = Utc::now() - Duration::hours(2);
    old.finished_at = Some(old.created_at + Duration::seconds(5));
    let mut busy = run("busy", "X", RunState::Running, 1, 0);
    busy.created_at = Utc::now();
    store.insert_run(&old, &[task(&old, "A", 0, TaskState::Succeeded, 1)]).unwrap();
    store.insert_run(&busy, &[task(&busy, "B", 0, TaskState::Running, 1)]).unwrap();
    let first = read_snapshot(&store, true);
    let mut runs: Vec<&str> = first.tasks.iter().map(|t| t.run_id.as_str()).collect();
    runs.sort();
    assert_eq!(runs, vec!["busy", "old"], "the first read shows each workflow's latest run");
    let later = read_snapshot(&store, false);
    let runs: Vec<&str> = later.tasks.iter().map(|t| t.run_id.as_str()).collect();
    assert_eq!(runs, vec!["busy"], "a run finished long ago is not read again");
    assert_eq!(later.runs.len(), 2);
}

#[test]
fn the_log_switches_between_attempts() {
    let mut fixture = fixture();
    press_code(&mut fixture.model, KeyCode::Enter);
    open_log(&mut fixture);
    let model = &mut fixture.model;
    model.focus = Pane::Log;
    assert_eq!(model.log.as_ref().unwrap().attempt, 2);
    assert!(press(model, "]").is_empty(), "there is no third attempt");
    assert_eq!(model.status.as_deref(), Some("no such attempt"));
    let effects = press(model, "[");
    assert!(
        matches!(&effects[..], [Effect::OpenLog { task, attempt: 1, jump_to_error: false, .. }] if task == "Score")
    );
}

/// What `t` sends for a workflow.
fn trigger_of(workflow: &str) -> Vec<Effect> {
    vec![Effect::Send(Command::Trigger { workflow: workflow.into(), input: None, params: Default::default() })]
}

#[test]
fn a_reload_that_adds_a_workflow_before_the_selected_one_keeps_the_selection_on_its_id() {
    let mut model = fixture().model;
    press(&mut model, "G");
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks");
    // As the runtime applies a hot reload: new rows, then the cursors brought back in line.
    let mut rows = model.workflows.clone();
    let mut added = rows[0].clone();
    added.id = "Backup".into();
    rows.push(added);
    rows.sort_by_key(|row| row.id.to_lowercase());
    model.workflows = rows;
    model.clamp();
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks");
    assert_eq!(press(&mut model, "t"), trigger_of("ReleaseChecks"));
}

#[test]
fn a_workflow_filter_stays_with_its_pane_and_enter_opens_the_row_it_shows() {
    let mut model = fixture().model;
    press(&mut model, "/release");
    press_code(&mut model, KeyCode::Enter);
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.focus, Pane::Runs);
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks");
    assert_eq!(
        model.visible_runs().iter().map(|run| run.id.as_str()).collect::<Vec<_>>(),
        vec!["20261125-115900-e5f6"],
        "the workflow filter does not filter the runs"
    );
    press(&mut model, "c");
    let Some(Popup::Confirm { action, .. }) = &model.popup else { panic!("c asks to cancel the run shown") };
    assert_eq!(**action, Effect::Send(Command::CancelRun { run: "20261125-115900-e5f6".into() }));
}

#[test]
fn clearing_a_filter_keeps_the_row_it_selected() {
    let mut model = fixture().model;
    press(&mut model, "G/release");
    press_code(&mut model, KeyCode::Enter);
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(model.visible_workflows().len(), 4);
    assert_eq!(press(&mut model, "t"), trigger_of("ReleaseChecks"));
    press(&mut model, "/inbox");
    press_code(&mut model, KeyCode::Enter);
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(press(&mut model, "t"), trigger_of("InboxIntake"));
}

#[test]
fn l_under_a_workflow_filter_opens_the_log_of_the_run_shown() {
    let mut model = fixture().model;
    press(&mut model, "/daily");
    press_code(&mut model, KeyCode::Enter);
    press_code(&mut model, KeyCode::Enter);
    let effects = press(&mut model, "l");
    assert!(
        matches!(&effects[..], [Effect::OpenLog { run, task, .. }] if run == "20261125-114500-a1b2" && task == "Score"),
        "{effects:?}"
    );
}

#[test]
fn new_runs_arriving_keep_the_selected_run() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press_code(model, KeyCode::Enter);
    assert_eq!(model.selected_run().unwrap().id, "20261125-114500-a1b2");
    model.apply(&Event::Run(run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0)));
    assert_eq!(model.selected_run().unwrap().id, "20261125-114500-a1b2", "an event adds a run above it");
    press(model, "j");
    assert_eq!(model.selected_run().unwrap().id, "20261124-070000-c3d4");
    let mut runs: Vec<RunRecord> = model.runs.values().flatten().cloned().collect();
    runs.push(run("20261125-120100-eeee", "DailyGrantPipeline", RunState::Running, 0, 0));
    model.apply_snapshot(Snapshot { runs, alerts: model.alerts.clone(), ..Snapshot::default() });
    assert_eq!(model.selected_run().unwrap().id, "20261124-070000-c3d4", "a snapshot adds a run above it");
}

#[test]
fn a_new_alert_keeps_the_selected_alert() {
    let mut model = fixture().model;
    press(&mut model, "v");
    press(&mut model, "j");
    assert_eq!(model.alerts[model.cursor.alert].id, 1);
    let mut newer = model.alerts[0].clone();
    newer.id = 3;
    model.apply(&Event::Alert(newer));
    assert_eq!(model.alerts[model.cursor.alert].id, 1);
}

#[test]
fn l_on_a_failed_run_opens_its_failed_task_at_the_latest_attempt_from_workflows_and_runs() {
    for keys in [vec![], vec![KeyCode::Enter]] {
        let mut fixture = fixture();
        let model = &mut fixture.model;
        for code in keys {
            press_code(model, code);
        }
        let effects = press(model, "l");
        assert_eq!(
            effects,
            vec![Effect::OpenLog {
                run: "20261125-114500-a1b2".into(),
                task: "Score".into(),
                attempt: 2,
                path: fixture.log.clone(),
                jump_to_error: true,
            }]
        );
        assert_eq!(model.focus, Pane::Log);
        assert_eq!(model.selected_task().unwrap().name, "Score");
    }
}

#[test]
fn enter_on_a_run_waiting_at_a_gate_selects_the_waiting_task() {
    let mut model = fixture().model;
    let waiting = run("20261125-115950-abcd", "ReleaseChecks", RunState::WaitingApproval, 0, 0);
    model.apply(&Event::Run(waiting.clone()));
    for (position, (name, state)) in
        [("Disk", TaskState::Succeeded), ("Clock", TaskState::Succeeded), ("Summary", TaskState::WaitingApproval)]
            .into_iter()
            .enumerate()
    {
        model.apply(&Event::Task(task(&waiting, name, position as u32, state, 1)));
    }
    press(&mut model, "G");
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.selected_run().unwrap().id, waiting.id);
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.focus, Pane::Tasks);
    assert_eq!(model.selected_task().unwrap().name, "Summary");
}

#[test]
fn l_and_enter_on_a_failed_run_whose_tasks_are_still_being_read_land_on_its_failed_task_when_they_arrive() {
    let failed = "20261125-114500-a1b2".to_string();
    for (keys, focus) in [("l", Pane::Log), ("\n", Pane::Tasks)] {
        let mut fixture = fixture();
        let model = &mut fixture.model;
        let (tasks, attempts) = (model.tasks.remove(&failed).unwrap(), model.attempts.remove(&failed).unwrap());
        press_code(model, KeyCode::Enter);
        let effects = if keys == "l" { press(model, "l") } else { press_code(model, KeyCode::Enter) };
        assert_eq!(effects, vec![Effect::LoadRun(failed.clone())], "nothing to open before the tasks are read");
        let effect = model.run_loaded(failed.clone(), tasks, attempts);
        assert!(
            matches!(&effect, Some(Effect::OpenLog { task, attempt: 2, jump_to_error: true, .. }) if task == "Score"),
            "{effect:?}"
        );
        assert_eq!(model.selected_task().unwrap().name, "Score");
        assert_eq!(model.focus, focus);
    }
}

#[test]
fn an_acknowledged_alert_changes_in_place_and_a_second_acknowledgement_is_refused() {
    let mut model = fixture().model;
    let unacked = model.unacknowledged_alerts();
    let mut alert = model.alerts.iter().find(|alert| alert.acked_at.is_none()).unwrap().clone();
    let before = model.alerts.len();
    alert.acked_at = Some(at(NOW));
    model.apply(&crate::engine::Event::Alert(alert.clone()));
    assert_eq!(model.alerts.len(), before, "the same alert, not a new row");
    assert_eq!(model.unacknowledged_alerts(), unacked - 1, "the header's count goes down");
    assert_eq!(model.alerts.iter().find(|known| known.id == alert.id).unwrap().acked_at, Some(at(NOW)));
    if model.unacknowledged_alerts() == 0 {
        assert!(press(&mut model, "A").is_empty());
        assert_eq!(model.status.as_deref(), Some("no unacknowledged alert"));
    }
}

#[test]
fn behind_terminal_too_small_only_quitting_acts() {
    let keymap = Keymap::default();
    assert!(keys::handle_key_too_small(&keymap, key(KeyCode::Char('t'))).is_empty(), "t starts nothing");
    assert!(keys::handle_key_too_small(&keymap, key(KeyCode::Enter)).is_empty());
    assert_eq!(keys::handle_key_too_small(&keymap, key(KeyCode::Char('q'))), vec![Effect::Quit]);
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    assert_eq!(keys::handle_key_too_small(&keymap, ctrl_c), vec![Effect::Quit]);
}

#[test]
fn ctrl_c_quits_like_q_and_asks_the_same_question_when_runs_are_active() {
    let mut model = fixture().model;
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    let routes = vec!["ArchiveService".to_string()];
    let by_q = {
        let mut copy = fixture().model;
        press(&mut copy, "q");
        copy.popup.is_some()
    };
    let effects = handle_key(&mut model, &Keymap::default(), ctrl_c, &routes);
    assert_eq!(model.popup.is_some(), by_q, "the same question as q");
    if !by_q {
        assert_eq!(effects, vec![Effect::Quit]);
    } else {
        assert!(model.active_runs() > 0);
        assert!(effects.is_empty(), "not cancel: Ctrl-C is not c");
    }
}

#[test]
fn attached_to_a_daemon_the_gauge_shows_the_stored_progress_not_an_estimate() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    model.progress.clear();
    model.attached = true;
    let run = "20261125-115900-e5f6";
    model.attempts.get_mut(run).unwrap().iter_mut().find(|a| a.task == "Clock").unwrap().progress = Some(0.6);
    model.select_workflow_id("ReleaseChecks");
    let screen = render(model, 120, 40, false);
    let clock = screen.lines().find(|line| line.contains("Clock") && line.contains("running")).unwrap();
    assert!(clock.contains("█████░░░  60%"), "{clock}");
    assert!(!clock.contains('~'), "a reported progress is not an estimate: {clock}");
}

#[test]
fn after_a_retry_the_row_shows_the_current_attempt_not_the_tasks_first_start() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let run = "20261125-114500-a1b2";
    let score = model.tasks.get_mut(run).unwrap().iter_mut().find(|t| t.name == "Score").unwrap();
    // An operator's retry: the task started a minute ago, its second go began just now on its own route.
    score.state = TaskState::Running;
    score.started_at = Some(at(NOW) - Duration::seconds(61));
    score.finished_at = None;
    score.attempts = 3;
    score.route_attempts = 1;
    let mut current = model.attempts[run][2].clone();
    current.attempt = 3;
    current.state = AttemptState::Running;
    current.started_at = at(NOW);
    current.finished_at = None;
    model.apply(&Event::Attempt(current));
    let screen = render(model, 120, 40, false);
    let row = screen.lines().find(|line| line.contains("Score") && line.contains("running")).unwrap();
    assert!(row.contains(" 1/1 ") && row.contains(" 0.0s "), "{row}");
    assert!(!row.contains("1m01s") && !row.contains("#3"), "{row}");
}

#[test]
fn a_triggered_run_is_selected_once_listed_so_l_opens_its_log_not_the_previous_runs() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    model.select_workflow_id("DailyGrantPipeline");
    model.focus = Pane::Runs;
    let previous = model.selected_run().unwrap().id.clone();
    // Attached to a daemon the reply comes first; the run is listed by the next snapshot.
    model.await_run("DailyGrantPipeline", "20261125-120000-ffff".into());
    assert_eq!(model.selected_run().unwrap().id, previous);
    let effects = press(model, "l");
    assert!(effects.is_empty(), "the previous run's log does not open: {effects:?}");
    assert!(model.status.as_deref().unwrap().contains("20261125-120000-ffff"));
    let new = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0);
    let started = task(&new, "Ingest", 0, TaskState::Running, 1);
    let log = fixture._dir.path().join("Ingest.new.log");
    model.apply(&Event::Run(new.clone()));
    model.run_loaded(new.id.clone(), vec![started.clone()], vec![attempt(&started, 1, "GrantIngestionService", &log)]);
    assert_eq!(model.selected_run().unwrap().id, new.id, "the new run is selected as soon as it is listed");
    match press(model, "l").as_slice() {
        [Effect::OpenLog { run, task, .. }] => assert_eq!((run.as_str(), task.as_str()), (new.id.as_str(), "Ingest")),
        other => panic!("expected the new run's log: {other:?}"),
    }
}

#[test]
fn a_trigger_of_another_workflow_does_not_hold_the_selection() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    model.select_workflow_id("DailyGrantPipeline");
    model.await_run("ReleaseChecks", "20261125-120000-ffff".into());
    assert_eq!(model.awaited_run, None);
}

#[test]
fn moving_to_another_workflow_closes_the_log_of_the_previous_one() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    model.select_workflow_id("DailyGrantPipeline");
    model.focus = Pane::Runs;
    let effects = press(model, "l");
    let Some(Effect::OpenLog { run, task, attempt, path, .. }) = effects.into_iter().next() else {
        panic!("the failed run's log opens")
    };
    let mut view = LogView::new(run, task, attempt, path, false, true);
    view.workflow = Some("DailyGrantPipeline".into());
    model.log = Some(view);
    model.select_workflow_id("ReleaseChecks");
    assert!(model.log.is_none(), "the Log pane never shows another workflow's log");
    let screen = render(model, 120, 40, false);
    assert!(screen.contains("opens its log"), "{screen}");
}
#[test]
fn an_llm_agents_row_shows_the_tokens_its_attempt_used() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let run = "20261125-114500-a1b2";
    let score = model.attempts.get_mut(run).unwrap().iter_mut().find(|a| a.task == "Score" && a.attempt == 2).unwrap();
    (score.prompt_tokens, score.completion_tokens) = (Some(1180), Some(64));
    let screen = render(model, 120, 40, false);
    let row = screen.lines().find(|line| line.contains("Score") && line.contains("failed")).unwrap();
    assert!(row.contains("EligibilityAgent · 1.2k tok"), "{row}");
    assert_eq!(
        [0, 999, 1000, 12_345, 1_500_000].map(ui::short_count),
        ["0", "999", "1.0k", "12k", "1.5M"].map(String::from)
    );
}

mod changes;
mod cmdline;
mod gate;
mod monitor;
mod views;

#[test]
fn a_log_kept_in_the_store_becomes_the_file_the_viewer_reads() {
    use crate::store::{LocalLogs, LogReader};
    use std::io::Read;
    let mut fixture = fixture();
    let (run, attempt) = {
        let (run, attempts) = fixture.model.attempts.iter_mut().next().expect("the fixture has attempts");
        let attempt = attempts.iter_mut().find(|a| !a.log_path.exists()).expect("an attempt without a file");
        attempt.log_text = Some("[conveyor] started `true` (pid 7)\n[conveyor] exit status 0\n".into());
        (run.clone(), attempt.clone())
    };
    let found = fixture.model.attempt(&run, &attempt.task, attempt.attempt).expect("the attempt").clone();
    assert_eq!(fixture.model.attempt(&run, &attempt.task, attempt.attempt + 1), None);
    let mut kept = Vec::new();
    LocalLogs.open(&found).unwrap().read_to_end(&mut kept).unwrap();
    crate::tasks::write_kept_log(&attempt.log_path, &kept).unwrap();
    let index = logview::extend_index(&attempt.log_path, &LogIndex::default());
    assert_eq!(index.lines(), 2);
    assert_eq!(
        logview::read_lines(&attempt.log_path, &index, 0..2),
        ["[conveyor] started `true` (pid 7)", "[conveyor] exit status 0"]
    );
}

/// Seen in the end-to-end test: the tasks read from the store when a run was selected arrived after the
/// event of its last task, and the graph showed that task running under a succeeded run.
#[test]
fn a_read_of_a_runs_tasks_older_than_an_event_does_not_undo_the_event() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let new = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0);
    model.apply(&Event::Run(new.clone()));
    let running = task(&new, "Ingest", 0, TaskState::Running, 1);
    let log = fixture._dir.path().join("Ingest.new.log");
    let first = attempt(&running, 1, "GrantIngestionService", &log);
    let pending = task(&new, "Score", 1, TaskState::Pending, 0);
    // The console asks for the run's records (twice: selected, then Enter) ...
    model.loading.entry(new.id.clone()).or_default().reads += 2;
    // ... the engine finishes Ingest meanwhile ...
    let succeeded = task(&new, "Ingest", 0, TaskState::Succeeded, 1);
    model.apply(&Event::Task(succeeded.clone()));
    model.apply(&Event::Attempt(attempt(&succeeded, 1, "GrantIngestionService", &log)));
    // ... and both reads, made before that, arrive after it.
    for _ in 0..2 {
        model.run_loaded(new.id.clone(), vec![running.clone(), pending.clone()], vec![first.clone()]);
        let states: Vec<(&str, TaskState)> =
            model.tasks[&new.id].iter().map(|task| (task.name.as_str(), task.state)).collect();
        assert_eq!(states, vec![("Ingest", TaskState::Succeeded), ("Score", TaskState::Pending)]);
        assert_eq!(model.attempts[&new.id][0].state, AttemptState::Succeeded);
    }
    assert!(model.loading.is_empty(), "nothing is tracked once the reads are in");
    // A later change still comes through.
    model.apply(&Event::Task(task(&new, "Score", 1, TaskState::Running, 1)));
    assert_eq!(model.tasks[&new.id][1].state, TaskState::Running);
}

#[test]
fn attached_to_a_cluster_the_header_names_its_database_and_not_a_daemon() {
    let mut fixture = fixture();
    fixture.model.attached = true;
    fixture.model.cluster = Some("ann@db.example:5432/conveyor".into());
    let screen = render(&mut fixture.model, 120, 40, false);
    let header = screen.lines().next().unwrap();
    assert!(header.contains("cluster ann@db.example:5432/conveyor"), "{header}");
    assert!(!header.contains("attached to a daemon"), "{header}");
    fixture.model.cluster = None;
    let header = render(&mut fixture.model, 120, 40, false).lines().next().unwrap().to_string();
    assert!(header.contains("attached to a daemon"), "{header}");
}

pub(super) fn engine(id: u64, host: &str, pid: u32, leads: bool) -> crate::store::EngineRecord {
    crate::store::EngineRecord {
        id: crate::store::EngineId(id),
        host: host.into(),
        pid,
        routes: vec!["GrantIngestionService".into(), "EligibilityAgent".into()],
        started_at: at(NOW) - Duration::hours(2),
        heartbeat_at: at(NOW) - Duration::seconds(3),
        silent_for: Duration::seconds(3),
        leads,
    }
}

#[test]
fn tasks_and_details_name_the_engine_that_ran_each_attempt_only_when_engines_recorded_it() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let tasks_header = |screen: &str| {
        screen
            .lines()
            .find(|line| line.contains("task") && line.contains("state") && line.contains("try"))
            .unwrap()
            .to_string()
    };
    let before = tasks_header(&render(model, 120, 40, false));
    assert!(!before.contains("engine"), "no engine column on SQLite: {before}");
    let mut attempts = model.attempts["20261125-114500-a1b2"].clone();
    attempts[0].engine = Some(9);
    attempts[2].engine = Some(7);
    model.attempts.insert("20261125-114500-a1b2".into(), attempts);
    model.engines = vec![engine(7, "gpu-1", 4242, true)];
    let screen = render(model, 120, 40, false);
    let header = tasks_header(&screen);
    assert!(header.contains("engine"), "{header}");
    let score = screen.lines().find(|line| line.contains("Score") && line.contains("failed")).unwrap();
    assert!(score.contains("gpu-1:4242"), "a registered engine by host and PID: {score}");
    let ingest = screen.lines().find(|line| line.contains("Ingest") && line.contains("succeeded")).unwrap();
    assert!(ingest.contains("#9"), "one no longer registered by its number: {ingest}");

    model.details.run = Some("20261125-114500-a1b2".into());
    let (theme, keymap) = (Theme::new(false), Keymap::default());
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: None };
    let lines: Vec<String> = details::lines(model, &chrome)
        .iter()
        .map(|line| line.spans.iter().map(|span| span.content.as_ref()).collect())
        .collect();
    assert!(lines.iter().any(|line| line.contains("#2 on EligibilityAgent") && line.contains("engine gpu-1:4242")));
    assert!(lines.iter().any(|line| line.contains("#1 on EligibilityAgent") && !line.contains("engine")));
}
