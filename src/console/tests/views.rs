//! The full-screen views: run details (`i`), all runs (`H`) and the task graph (`D`).

use super::*;
use crate::console::details::{self, Loaded};
use crate::console::model::View;
use crate::store::AuditRecord;

const FAILED: &str = "20261125-114500-a1b2";
const OLDER: &str = "20261124-070000-c3d4";
const RELEASE: &str = "20261125-115900-e5f6";
const WAITING: &str = "20261125-113000-g7h8";

fn audit(id: i64, minutes_ago: i64, who: &str, command: Command, outcome: &str) -> AuditRecord {
    AuditRecord {
        id,
        at: at(NOW) - Duration::minutes(minutes_ago),
        who: who.into(),
        origin: "console".into(),
        command: command.to_json(),
        ok: true,
        outcome: outcome.into(),
    }
}

/// The failed run's details as the store read brings them: who started it, and a gate answered at Review.
fn failed_run_details(model: &mut Model) {
    let mut ingest = model.tasks[FAILED][0].clone();
    ingest.output = Some(json!({"applications": [{"id": "A-0001", "amount": 5000}], "note": "bell\u{7}"}));
    model.apply(&Event::Task(ingest));
    let mut review = model.tasks[FAILED][2].clone();
    review.state = TaskState::Succeeded;
    review.output = Some(json!({"governance": {"approved": [{"item": "A-0001", "by": "alice"}]}}));
    model.apply(&Event::Task(review));
    let mut attempts = model.attempts[FAILED].clone();
    attempts[2].exit_code = Some(3);
    attempts[2].error = Some("exit status 3".into());
    model.attempts.insert(FAILED.into(), attempts);
    let trigger = Command::Trigger { workflow: "DailyGrantPipeline".into(), input: None, params: Default::default() };
    let approve = Command::Approve {
        run: FAILED.into(),
        task: "Review".into(),
        items: vec!["A-0001".into()],
        comment: Some("within budget".into()),
    };
    let retry = Command::RetryTask { run: FAILED.into(), task: "Score".into() };
    let loaded = Loaded {
        audit: vec![
            audit(7, 15, "alice", trigger, &format!("started run {FAILED} of DailyGrantPipeline")),
            audit(8, 13, "bob", approve, &format!("approved 1 item(s) at task Review of run {FAILED}")),
            AuditRecord { ok: false, ..audit(9, 12, "bob", retry, "task Score is not failed") },
        ],
        ..Loaded::default()
    };
    details::loaded(model, FAILED, loaded);
}

#[test]
fn i_opens_the_selected_runs_details_and_asks_the_store_for_the_rest() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    assert_eq!(model.selected_run().unwrap().id, FAILED);
    assert_eq!(press(model, "i"), vec![Effect::LoadDetails(FAILED.into())]);
    assert_eq!(model.view, Some(View::Details));
    let reading = render(model, 120, 40, false);
    assert!(reading.contains("reading the audit trail…"), "{reading}");
    failed_run_details(model);
    insta::assert_snapshot!("details_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("details_80x24", render(model, 80, 24, false));
}

#[test]
fn details_of_another_run_arriving_late_are_not_shown() {
    let mut model = fixture().model;
    press(&mut model, "i");
    details::loaded(&mut model, OLDER, Loaded { audit: vec![], ..Loaded::default() });
    assert_eq!(model.details.loaded, None, "the view shows {FAILED}, not {OLDER}");
}

#[test]
fn i_without_a_run_says_so_and_stays_on_the_panes() {
    let mut model = fixture().model;
    press(&mut model, "j");
    assert_eq!(model.selected_workflow().unwrap().id, "InboxIntake");
    assert_eq!(press(&mut model, "i"), vec![]);
    assert_eq!(model.view, None);
    assert_eq!(model.status.as_deref(), Some("select a run to see its details"));
}

#[test]
fn details_scroll_by_line_page_and_end_and_esc_returns_to_the_panes() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "i");
    failed_run_details(model);
    render(model, 80, 24, false);
    let height = model.details.height;
    assert_eq!(height, 20, "24 rows less header, footer and borders");
    press(model, "jj");
    assert_eq!(model.details.top, 2);
    press(model, "k");
    assert_eq!(model.details.top, 1);
    press_code(model, KeyCode::PageDown);
    assert_eq!(model.details.top, 1 + height - 1);
    press(model, "G");
    let screen = render(model, 80, 24, false);
    let total = model.details.total;
    assert_eq!(model.details.top, total - height, "G shows the last page, not past it");
    assert!(screen.contains(&format!(" {}-{total} of {total} ", total - height + 1)), "{screen}");
    assert!(screen.contains("Commands on this run"), "{screen}");
    insta::assert_snapshot!("details_end_80x24", screen);
    press(model, "g");
    assert_eq!(model.details.top, 0);
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, None);
    assert_eq!(model.focus, Pane::Workflows, "the panes are as they were");
}

fn chrome() -> Chrome<'static> {
    let theme = Box::leak(Box::new(Theme::new(false)));
    let keymap = Box::leak(Box::new(Keymap::default()));
    Chrome { theme, keymap, utc: true, engine_log: None }
}

fn text_of(model: &Model) -> String {
    details::lines(model, &chrome())
        .iter()
        .map(|line| line.spans.iter().map(|span| span.content.as_ref()).collect::<String>())
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn details_say_who_started_a_run_which_file_started_an_event_run_and_what_the_gate_decided() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "i");
    failed_run_details(model);
    let text = text_of(model);
    assert!(text.contains("manual, by alice via console at 11-25 11:45:00"), "{text}");
    assert!(text.contains("bob via console at 11-25 11:47:00: approved 1 item(s)"), "{text}");
    assert!(text.contains("retry task — refused: task Score is not failed"), "{text}");
    assert!(text.contains("#2 on EligibilityAgent · failed"), "{text}");
    assert!(text.contains("exit 3 · exit status 3"), "{text}");
    assert!(!text.contains('\u{7}'), "control characters are escaped");
    let mut event = run("20261125-110000-ffff", "InboxIntake", RunState::Succeeded, 60, 3);
    event.trigger = "event".into();
    event.input = json!({"file": "/srv/inbox/a.csv", "size": 1200});
    model.apply(&Event::Run(event));
    model.details.run = Some("20261125-110000-ffff".into());
    let text = text_of(model);
    assert!(text.contains("event: file /srv/inbox/a.csv arrived (1200 bytes)"), "{text}");
    let mut backfilled = run("20261125-100000-eeee", "NightlyReport", RunState::Succeeded, 90, 3);
    backfilled.trigger = "backfill".into();
    backfilled.input = json!({"trigger": "backfill", "scheduled_at": "2026-03-08T07:00:00.000Z"});
    model.apply(&Event::Run(backfilled));
    model.details.run = Some("20261125-100000-eeee".into());
    let text = text_of(model);
    assert!(text.contains("backfill of 2026-03-08T07:00:00.000Z"), "{text}");
}

/// The fixture plus a run of InboxIntake waiting at a gate.
fn with_waiting_run() -> Fixture {
    let mut fixture = fixture();
    let waiting = run(WAITING, "InboxIntake", RunState::WaitingApproval, 30, 0);
    fixture.model.apply(&Event::Run(waiting));
    fixture
}

fn listed(model: &Model) -> Vec<String> {
    crate::console::all_runs::rows(model).iter().map(|run| run.id.clone()).collect()
}

fn all_runs_selected(model: &Model) -> Option<String> {
    let rows = crate::console::all_runs::rows(model);
    crate::console::all_runs::cursor(model).map(|index| rows[index].id.clone())
}

#[test]
fn h_lists_every_workflows_runs_newest_first_on_the_selected_run() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    assert_eq!(press(model, "H"), vec![]);
    assert_eq!(model.view, Some(View::AllRuns));
    assert_eq!(listed(model), vec![RELEASE, FAILED, WAITING, OLDER]);
    assert_eq!(all_runs_selected(model).as_deref(), Some(FAILED), "the run selected in the panes");
    press(model, "j");
    assert_eq!(all_runs_selected(model).as_deref(), Some(WAITING));
    press(model, "G");
    assert_eq!(all_runs_selected(model).as_deref(), Some(OLDER));
    press(model, "g");
    assert_eq!(all_runs_selected(model).as_deref(), Some(RELEASE));
    insta::assert_snapshot!("all_runs_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("all_runs_80x24", render(model, 80, 24, false));
}

#[test]
fn f_cycles_all_active_failed_waiting_and_s_cycles_start_duration_state() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    press(model, "H");
    press(model, "f");
    assert_eq!(listed(model), vec![RELEASE, WAITING], "active");
    press(model, "f");
    assert_eq!(listed(model), vec![FAILED], "failed");
    press(model, "f");
    assert_eq!(listed(model), vec![WAITING], "waiting");
    press(model, "f");
    assert_eq!(listed(model).len(), 4, "all again");
    press(model, "s");
    // Durations: the waiting run 30 minutes so far, the release check 1 minute, the others 14 s and 9 s.
    assert_eq!(listed(model), vec![WAITING, RELEASE, OLDER, FAILED], "longest first");
    press(model, "s");
    assert_eq!(listed(model), vec![FAILED, WAITING, RELEASE, OLDER], "failed, waiting, active, the rest");
    press(model, "s");
    assert_eq!(listed(model), vec![RELEASE, FAILED, WAITING, OLDER], "newest first again");
    insta::assert_snapshot!("all_runs_failed_80x24", {
        press(model, "ff");
        render(model, 80, 24, false)
    });
}

#[test]
fn a_task_waiting_at_a_gate_makes_its_run_waiting() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let mut gate = model.tasks[RELEASE][2].clone();
    gate.state = TaskState::WaitingApproval;
    model.apply(&Event::Task(gate));
    press(model, "H");
    press(model, "fff");
    assert_eq!(listed(model), vec![RELEASE]);
}

#[test]
fn e_and_w_jump_to_the_next_failed_run_and_the_next_waiting_gate_wrapping_round() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    let second = run("20261125-100000-dead", "ReleaseChecks", RunState::Failed, 120, 5);
    model.apply(&Event::Run(second));
    press(model, "H");
    press(model, "g");
    press(model, "e");
    assert_eq!(all_runs_selected(model).as_deref(), Some(FAILED));
    press(model, "e");
    assert_eq!(all_runs_selected(model).as_deref(), Some("20261125-100000-dead"));
    press(model, "e");
    assert_eq!(all_runs_selected(model).as_deref(), Some(FAILED), "round to the first again");
    press(model, "w");
    assert_eq!(all_runs_selected(model).as_deref(), Some(WAITING));
    press(model, "fff");
    press(model, "e");
    assert_eq!(model.status.as_deref(), Some("no failed run in this list"));
    press(model, "fff");
    assert_eq!(listed(model), vec![FAILED, "20261125-100000-dead"]);
    press(model, "w");
    assert_eq!(model.status.as_deref(), Some("no run waits at a gate in this list"));
}

#[test]
fn new_runs_arriving_keep_the_selected_run_in_all_runs() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    press(model, "H");
    assert_eq!(all_runs_selected(model).as_deref(), Some(FAILED));
    model.apply(&Event::Run(run("20261125-120000-new1", "ReleaseChecks", RunState::Running, 0, 0)));
    assert_eq!(listed(model)[0], "20261125-120000-new1");
    assert_eq!(all_runs_selected(model).as_deref(), Some(FAILED), "selected by id, not by row");
}

#[test]
fn enter_in_all_runs_selects_that_run_in_the_panes_and_returns_to_them() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    model.filters.insert(Pane::Workflows, "Daily".into());
    model.clamp();
    press(model, "H");
    press(model, "w");
    assert_eq!(all_runs_selected(model).as_deref(), Some(WAITING));
    press_code(model, KeyCode::Enter);
    assert_eq!(model.view, None);
    assert_eq!(model.selected_workflow().unwrap().id, "InboxIntake", "the filter hiding it is cleared");
    assert_eq!(model.selected_run().unwrap().id, WAITING);
    assert_eq!(model.focus, Pane::Runs);
    press(model, "H");
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, None);
    assert_eq!(model.selected_run().unwrap().id, WAITING, "Esc leaves the selection alone");
}

#[test]
fn d_draws_the_selected_runs_tasks_as_a_graph() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "jjj");
    assert_eq!(model.selected_workflow().unwrap().id, "ReleaseChecks");
    assert_eq!(press(model, "D"), vec![]);
    assert_eq!(model.view, Some(View::Graph));
    insta::assert_snapshot!("graph_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("graph_80x24", render(model, 80, 24, false));
}

#[test]
fn a_workflow_without_depends_on_draws_its_tasks_in_a_line() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "D");
    let screen = render(model, 120, 40, false);
    assert!(screen.contains("tasks in order (no depends_on)"), "{screen}");
    assert!(screen.contains("│ ✓ Ingest │─────▶│ ✗ Score  │─────▶│ · Review │"), "{screen}");
}

#[test]
fn a_graph_wider_and_deeper_than_the_screen_scrolls_and_stops_at_its_edges() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let mut wide = model.workflows[3].clone();
    wide.id = "AWideOne".into();
    wide.tasks = (0..60).map(|n| format!("Step{n:02}")).collect();
    wide.graph = wide
        .tasks
        .iter()
        .enumerate()
        .map(|(n, name)| (name.clone(), if n < 10 { vec![] } else { vec![format!("Step{:02}", n - 10)] }))
        .collect();
    model.workflows.insert(0, wide);
    model.select_workflow(0);
    press(model, "D");
    render(model, 80, 24, false);
    let (width, height) = (model.graph_view.width, model.graph_view.height);
    assert!(width > 0 && height > 0, "six columns of ten boxes do not fit in 80x24");
    press(model, "ll");
    assert_eq!(model.graph_view.x, 8);
    press_code(model, KeyCode::Right);
    assert_eq!(model.graph_view.x, 12);
    press(model, "h");
    assert_eq!(model.graph_view.x, 8);
    press(model, "jj");
    assert_eq!(model.graph_view.y, 2);
    for _ in 0..50 {
        press(model, "l");
        press_code(model, KeyCode::PageDown);
    }
    assert_eq!((model.graph_view.x, model.graph_view.y), (width, height), "scrolling stops at the edges");
    let screen = render(model, 80, 24, false);
    assert!(screen.contains("Step59"), "the far corner shows the last task:\n{screen}");
    press(model, "g");
    assert_eq!((model.graph_view.x, model.graph_view.y), (0, 0));
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, None);
}

#[test]
fn views_switch_between_each_other_and_pane_keys_do_nothing_in_them() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "H");
    press(model, "D");
    assert_eq!(model.view, Some(View::Graph));
    assert_eq!(press(model, "i"), vec![Effect::LoadDetails(FAILED.into())]);
    assert_eq!(model.view, Some(View::Details));
    assert_eq!(press(model, "tcp"), vec![], "trigger, cancel and pause act on panes not shown");
    assert_eq!(model.popup, None);
    press(model, "?");
    assert_eq!(model.popup, Some(Popup::Help { scroll: 0 }), "help opens over a view");
}

#[test]
fn the_wheel_scrolls_a_view() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    press(model, "H");
    press(model, "g");
    let wheel = crossterm::event::MouseEvent {
        kind: crossterm::event::MouseEventKind::ScrollDown,
        column: 10,
        row: 10,
        modifiers: KeyModifiers::NONE,
    };
    handle_mouse(model, wheel, &[]);
    assert_eq!(all_runs_selected(model).as_deref(), Some(OLDER), "three rows down");
}

#[test]
fn a_command_on_the_shown_run_reads_its_details_again_and_others_do_not() {
    let mut model = fixture().model;
    let command = |run: &str| Event::Command {
        who: "carol".into(),
        via: "cli".into(),
        command: Command::RetryTask { run: run.into(), task: "Score".into() }.to_json(),
        ok: true,
        outcome: format!("retrying task Score of run {run}"),
    };
    assert_eq!(details::reload_on(&model, &command(FAILED)), None, "no details view open");
    press(&mut model, "i");
    assert_eq!(details::reload_on(&model, &command(FAILED)), Some(Effect::LoadDetails(FAILED.into())));
    assert_eq!(details::reload_on(&model, &command(OLDER)), None);
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(details::reload_on(&model, &command(FAILED)), None, "closed again");
}

#[test]
fn i_in_all_runs_shows_the_highlighted_run_and_esc_comes_back_to_the_list() {
    let mut fixture = with_waiting_run();
    let model = &mut fixture.model;
    press(model, "H");
    press(model, "w");
    assert_eq!(press(model, "i"), vec![Effect::LoadDetails(WAITING.into())]);
    assert_eq!(model.view, Some(View::Details));
    assert_eq!(model.selected_run().unwrap().id, FAILED, "the panes keep their selection");
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, Some(View::AllRuns));
    assert_eq!(all_runs_selected(model).as_deref(), Some(WAITING));
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, None);
}

#[test]
fn an_output_is_printed_once_and_again_when_its_task_changes() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "i");
    failed_run_details(model);
    render(model, 120, 40, false);
    assert!(model.details.printed.contains_key("Ingest"));
    let mut again = model.tasks[FAILED][0].clone();
    again.output = Some(json!({"second": "attempt"}));
    again.attempts = 2;
    again.finished_at = again.finished_at.map(|at| at + Duration::seconds(30));
    model.apply(&Event::Task(again));
    let screen = render(model, 120, 40, false);
    assert!(screen.contains(r#""second": "attempt""#), "{screen}");
    assert!(!screen.contains("applications"), "the old output is gone:\n{screen}");
}

#[test]
fn m_shows_the_engines_sharing_the_store_with_the_leader_marked_and_esc_goes_back() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    model.attached = true;
    model.cluster = Some("conveyor@db.internal:5432/conveyor".into());
    let mut quiet = engine(3, "gpu-1", 977, false);
    quiet.silent_for = Duration::seconds(41);
    quiet.routes = vec!["EligibilityAgent".into()];
    model.engines = vec![engine(1, "batch-1", 4242, true), quiet];
    press(model, "M");
    assert_eq!(model.view, Some(View::Engines));
    press(model, "j");
    assert_eq!(model.engine_row, 1);
    press(model, "jjj");
    assert_eq!(model.engine_row, 1, "the last row holds");
    insta::assert_snapshot!("engines_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("engines_80x24", render(model, 80, 24, false));
    press_code(model, KeyCode::Esc);
    assert_eq!(model.view, None);
}

#[test]
fn on_sqlite_the_engines_view_says_there_is_one_engine_the_state_folders() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    press(model, "M");
    let screen = render(model, 80, 24, false);
    assert!(screen.contains("one engine: this state folder's"), "{screen}");
}
