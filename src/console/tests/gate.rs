//! The gate view: held items with the fields their layer shows, marked and answered with a comment.

use super::*;
use crate::console::model::View;

const RUN: &str = "20261125-114500-a1b2";

/// The fixture's failed run, its Review task waiting with three items held.
fn waiting_gate() -> Fixture {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let mut review = model.tasks[RUN][2].clone();
    review.state = TaskState::WaitingApproval;
    review.output = Some(json!({"applications": [], "governance": {
        "layer": "GovernanceLayer", "items": "applications", "rejected": [], "approved": [],
        "pending": [
            {"id": "A-1002", "applicant": "Northgate Job Training", "amount": 150000, "score": 0.9, "years_active": 12},
            {"id": "A-1004", "applicant": "Harbour Food Bank\u{1b}[31m", "amount": 240000, "score": 0.75},
            {"id": "A-1005", "applicant": "Hillside Clinic", "amount": 510000, "score": 0.8},
        ],
        "rules": ["eligible"], "held_by": "item.amount > 100000", "show": ["id", "applicant", "amount", "score"],
        "approval_timeout": "1day", "on_timeout": "reject",
        "waiting_since": "2026-11-25T11:50:00.000Z", "expires_at": "2026-11-26T11:50:00.000Z",
    }}));
    model.apply(&Event::Task(review));
    press_code(model, KeyCode::Enter);
    press_code(model, KeyCode::Enter);
    press(model, "j");
    assert_eq!(model.selected_task().unwrap().name, "Review");
    fixture
}

#[test]
fn enter_on_a_waiting_gate_opens_the_gate_view_and_a_on_another_task_says_why_not() {
    let mut fixture = waiting_gate();
    let model = &mut fixture.model;
    assert_eq!(press_code(model, KeyCode::Enter), vec![]);
    assert_eq!(model.view, Some(View::Gate));
    press_code(model, KeyCode::Esc);
    press(model, "k");
    let score = model.selected_task().unwrap();
    let expected = format!("cannot approve task Score: it is {}", score.state);
    assert_eq!(press(model, "a"), vec![]);
    assert_eq!((model.view, model.status.as_deref()), (None, Some(expected.as_str())));
}

#[test]
fn marked_items_are_approved_with_the_comment_after_a_question_that_names_them() {
    let mut fixture = waiting_gate();
    let model = &mut fixture.model;
    press(model, "a");
    press(model, "j j ");
    assert_eq!(model.gate.marked, ["A-1004".to_string(), "A-1005".to_string()].into());
    press(model, "cboard said yes");
    press_code(model, KeyCode::Enter);
    assert_eq!(model.gate.comment, "board said yes");
    insta::assert_snapshot!("gate_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("gate_80x24", render(model, 80, 24, false));
    assert_eq!(press(model, "a"), vec![]);
    let Some(crate::console::model::Popup::Confirm { question, .. }) = &model.popup else { panic!("a asks first") };
    assert_eq!(
        question,
        &format!("Approve A-1004, A-1005 at task Review of run {RUN} with the comment “board said yes”?")
    );
    let approve = Command::Approve {
        run: RUN.into(),
        task: "Review".into(),
        items: vec!["A-1004".into(), "A-1005".into()],
        comment: Some("board said yes".into()),
    };
    assert_eq!(press(model, "y"), vec![Effect::Send(approve)]);
}

#[test]
fn x_rejects_the_item_under_the_cursor_when_none_is_marked_and_capital_x_rejects_all() {
    let mut fixture = waiting_gate();
    let model = &mut fixture.model;
    press(model, "a");
    press(model, "j");
    let reject = |items: Vec<&str>| Command::Reject {
        run: RUN.into(),
        task: "Review".into(),
        items: items.into_iter().map(String::from).collect(),
        comment: None,
    };
    assert_eq!(press(model, "xy"), vec![Effect::Send(reject(vec!["A-1004"]))]);
    assert_eq!(press(model, "Xy"), vec![Effect::Send(reject(vec![]))]);
    press(model, "cdraft");
    let ctrl_c = KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL);
    let quit = handle_key(model, &Keymap::default(), ctrl_c, &[]);
    assert!(matches!(model.popup, Some(crate::console::model::Popup::Confirm { .. })) || quit == vec![Effect::Quit]);
    assert_eq!(model.gate.comment, "draft", "Ctrl-C is not typed into the comment");
    model.popup = None;
    press_code(model, KeyCode::Esc);
    assert_eq!((model.gate.comment.as_str(), model.view), ("", Some(View::Gate)), "Esc drops the comment being typed");
}

#[test]
fn a_gate_that_stops_waiting_gives_way_to_the_panes_on_its_task() {
    let mut fixture = waiting_gate();
    let model = &mut fixture.model;
    press(model, "a");
    assert_eq!(model.view, Some(View::Gate));
    let mut review = model.tasks[RUN][2].clone();
    review.state = TaskState::Succeeded;
    model.apply(&Event::Task(review));
    assert_eq!((model.view, model.focus), (None, Pane::Tasks), "answered elsewhere (or by the last answer here)");
    assert_eq!(model.selected_task().unwrap().name, "Review");
    assert_eq!(model.status.as_deref(), Some("the gate at Review holds nothing more: it is succeeded"));
    let screen = render(model, 120, 40, false);
    assert!(screen.contains("Tasks ·"), "{screen}");
}
