//! The `:` command line, the `T` form, `y` and `o`: what their keys do to the model, and how they draw.

use crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use serde_json::json;

use super::*;
use crate::console::command_line::{CommandLine, Parsed, candidates, parse};
use crate::engine::Command;

const FAILED: &str = "20261125-114500-a1b2";
const OLDER: &str = "20261124-070000-c3d4";
const RELEASE: &str = "20261125-115900-e5f6";

fn routes() -> Vec<String> {
    vec!["ArchiveService".to_string(), "NotificationService".to_string()]
}

fn ctrl(model: &mut Model, c: char) -> Vec<Effect> {
    handle_key(model, &Keymap::default(), KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL), &routes())
}

fn line(model: &Model) -> &CommandLine {
    match &model.popup {
        Some(Popup::CommandLine(line)) => line,
        other => panic!("the command line is open: {other:?}"),
    }
}

/// The text with `|` where the cursor is.
fn shown(model: &Model) -> String {
    let line = line(model);
    format!("{}|{}", &line.text[..line.cursor], &line.text[line.cursor..])
}

fn send(command: Command) -> Result<Parsed, String> {
    Ok(Parsed::Send(command))
}

fn retry(run: &str, task: &str) -> Command {
    Command::RetryTask { run: run.into(), task: task.into() }
}

#[test]
fn the_cursor_moves_inside_the_line_and_ctrl_u_and_ctrl_w_delete_before_it() {
    let mut model = fixture().model;
    press(&mut model, ":pase");
    press_code(&mut model, KeyCode::Left);
    press_code(&mut model, KeyCode::Left);
    press(&mut model, "u");
    assert_eq!(shown(&model), "pau|se");
    press_code(&mut model, KeyCode::End);
    press(&mut model, " ReleaseChecks");
    ctrl(&mut model, 'w');
    assert_eq!(shown(&model), "pause |", "Ctrl-W takes the word before the cursor");
    press(&mut model, "Release  ");
    ctrl(&mut model, 'w');
    assert_eq!(shown(&model), "pause |", "and the spaces after it");
    press_code(&mut model, KeyCode::Home);
    press_code(&mut model, KeyCode::Delete);
    assert_eq!(shown(&model), "|ause ");
    press_code(&mut model, KeyCode::Right);
    press_code(&mut model, KeyCode::Right);
    ctrl(&mut model, 'u');
    assert_eq!(shown(&model), "|se ", "Ctrl-U clears to the start");
    press_code(&mut model, KeyCode::Backspace);
    assert_eq!(shown(&model), "|se ", "nothing before the cursor to delete");
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(model.popup, None);
}

#[test]
fn up_and_down_recall_the_lines_run_this_session() {
    let mut model = fixture().model;
    press(&mut model, ":pause ReleaseChecks");
    press_code(&mut model, KeyCode::Enter);
    press(&mut model, ":resume ReleaseChecks");
    press_code(&mut model, KeyCode::Enter);
    press(&mut model, ":resume ReleaseChecks");
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.command_history, ["pause ReleaseChecks", "resume ReleaseChecks"], "a repeat is kept once");
    press(&mut model, ":dra");
    press_code(&mut model, KeyCode::Up);
    assert_eq!(shown(&model), "resume ReleaseChecks|");
    press_code(&mut model, KeyCode::Up);
    press_code(&mut model, KeyCode::Up);
    assert_eq!(shown(&model), "pause ReleaseChecks|", "the oldest line stays");
    press_code(&mut model, KeyCode::Down);
    assert_eq!(shown(&model), "resume ReleaseChecks|");
    press_code(&mut model, KeyCode::Down);
    assert_eq!(shown(&model), "dra|", "past the newest, the line being typed comes back");
    press_code(&mut model, KeyCode::Down);
    assert_eq!(shown(&model), "dra|");
}

#[test]
fn tab_completes_the_command_then_its_arguments_and_cycles_through_several() {
    let mut model = fixture().model;
    press(&mut model, ":tr");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger |", "one candidate: the word and a space");
    press(&mut model, "ni");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger NightlyReport |", "names complete whatever their case");
    press(&mut model, "-p ");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger NightlyReport -p label=|");
    assert_eq!(line(&model).completion.as_ref().unwrap().candidates, ["label=", "max_lines="]);
    insta::assert_snapshot!("command_line_completion_80x24", render(&mut model, 80, 24, false));
    insta::assert_snapshot!("command_line_completion_120x40", render(&mut model, 120, 40, false));
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger NightlyReport -p max_lines=|");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger NightlyReport -p label=|", "the cycle starts again");
    press_code(&mut model, KeyCode::BackTab);
    assert_eq!(shown(&model), "trigger NightlyReport -p max_lines=|");
    press(&mut model, "7");
    assert_eq!(line(&model).completion, None, "typing ends the cycle");
    press_code(&mut model, KeyCode::Home);
    for _ in 0.."trigger".len() {
        press_code(&mut model, KeyCode::Delete);
    }
    press(&mut model, "tri");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(shown(&model), "trigger |NightlyReport -p max_lines=7", "the word before the cursor completes");
    press_code(&mut model, KeyCode::End);
    ctrl(&mut model, 'u');
    press(&mut model, "zz");
    press_code(&mut model, KeyCode::Tab);
    assert_eq!(line(&model).error.as_deref(), Some("nothing to complete here"));
}

#[test]
fn candidates_are_runs_of_the_selected_workflow_first_then_tasks_and_routes() {
    let mut model = fixture().model;
    let routes = routes();
    assert_eq!(candidates(&model, &routes, &[], "re"), ["retry", "reroute", "reject", "resume"]);
    assert_eq!(candidates(&model, &routes, &["cancel"], ""), [FAILED, OLDER, RELEASE]);
    assert_eq!(
        candidates(&model, &routes, &["retry"], ""),
        ["Ingest", "Score", "Review", "Award", "Notify", FAILED, OLDER, RELEASE],
        "tasks of the selected run, then runs"
    );
    assert_eq!(candidates(&model, &routes, &["skip", RELEASE], ""), ["Disk", "Clock", "Summary"]);
    model.tasks.remove(OLDER);
    assert_eq!(
        candidates(&model, &routes, &["approve", OLDER], "A"),
        ["Award"],
        "a run whose tasks were not read offers its workflow's"
    );
    assert_eq!(candidates(&model, &routes, &["reroute", FAILED], "S"), ["Score"]);
    assert_eq!(candidates(&model, &routes, &["reroute", "Score"], ""), routes);
    assert_eq!(candidates(&model, &routes, &["reroute", FAILED, "Score"], "N"), ["NotificationService"]);
    assert_eq!(candidates(&model, &routes, &["pause"], "Re"), ["ReleaseChecks"]);
    assert_eq!(candidates(&model, &routes, &["history"], "d"), ["DailyGrantPipeline"]);
    assert_eq!(candidates(&model, &routes, &["ack"], ""), ["2"], "only unacknowledged alerts");
    assert_eq!(candidates(&model, &routes, &["trigger", "-p"], ""), Vec::<String>::new(), "no params declared");
}

#[test]
fn every_operator_command_parses_with_its_arguments_or_the_selection() {
    let model = fixture().model;
    let routes = routes();
    let p = |text: &str| parse(&model, &routes, text);
    let trigger = |workflow: &str, params: &[(&str, &str)], input: Option<serde_json::Value>| Command::Trigger {
        workflow: workflow.into(),
        input,
        params: params.iter().map(|(k, v)| (k.to_string(), json!(v))).collect(),
    };
    assert_eq!(
        p("trigger NightlyReport -p max_lines=12 -p label='a b'"),
        send(trigger("NightlyReport", &[("label", "a b"), ("max_lines", "12")], None))
    );
    assert_eq!(p("trigger"), send(trigger("DailyGrantPipeline", &[], None)), "the selected workflow");
    assert_eq!(
        p(r#"trigger NightlyReport --input '{"id": 7}'"#),
        send(trigger("NightlyReport", &[], Some(json!({"id": 7}))))
    );
    assert_eq!(
        p("trigger NightlyReport -p max_lines=many").unwrap_err(),
        "parameter `max_lines` of workflow `NightlyReport` is a integer: got \"many\""
    );
    assert!(
        p("trigger NightlyReport -p lines=1").unwrap_err().starts_with("workflow `NightlyReport` has no parameter")
    );
    assert_eq!(p("trigger NightlyReport -p lines").unwrap_err(), "bad -p `lines`: expected NAME=VALUE");
    assert_eq!(p("trigger Nightly").unwrap_err(), "no workflow `Nightly` (Tab completes names)");
    assert_eq!(p("retry"), send(retry(FAILED, "Ingest")), "the selected task of the selected run");
    assert_eq!(p("retry Score"), send(retry(FAILED, "Score")));
    assert_eq!(p("retry r-1 T"), send(retry("r-1", "T")));
    assert_eq!(p("retry a b c").unwrap_err(), "`:retry` needs RUN TASK, or a task selected");
    let Ok(Parsed::Confirm(question, Command::SkipTask { run, task })) = p("skip Score") else { panic!() };
    assert_eq!((run.as_str(), task.as_str()), (FAILED, "Score"));
    assert!(question.starts_with("Skip task Score of run 20261125-114500-a1b2?"));
    assert!(matches!(p("approve r-1 Gate"), Ok(Parsed::Confirm(_, Command::Approve { .. }))));
    assert!(matches!(p("reject r-1 Gate"), Ok(Parsed::Confirm(_, Command::Reject { .. }))));
    let Ok(Parsed::Confirm(question, answer)) = p("reject r-1 Gate --item A-2 --item A-4 --comment 'over budget'")
    else {
        panic!("a per-item answer parses")
    };
    assert_eq!(question, "Reject A-2, A-4 at task Gate of run r-1 with the comment “over budget”?");
    let expected = Command::Reject {
        run: "r-1".into(),
        task: "Gate".into(),
        items: vec!["A-2".into(), "A-4".into()],
        comment: Some("over budget".into()),
    };
    assert_eq!(answer, expected);
    assert_eq!(p("approve r-1 Gate --item").unwrap_err(), "`:approve --item` needs an item's ID");
    assert!(
        matches!(p(&format!("cancel {RELEASE}")), Ok(Parsed::Confirm(q, Command::CancelRun { .. })) if q.contains("of ReleaseChecks"))
    );
    assert_eq!(p("cancel").unwrap_err(), "run 20261125-114500-a1b2 is failed: nothing to cancel");
    assert!(matches!(p("cancel r-1"), Ok(Parsed::Confirm(_, Command::CancelRun { run })) if run == "r-1"));
    assert_eq!(p("cancel a b").unwrap_err(), "`:cancel` takes one RUN");
    let reroute =
        |run: &str, task: &str, to: &str| Command::RerouteTask { run: run.into(), task: task.into(), to: to.into() };
    assert_eq!(p("reroute ArchiveService"), send(reroute(FAILED, "Ingest", "ArchiveService")));
    assert_eq!(p("reroute Score ArchiveService"), send(reroute(FAILED, "Score", "ArchiveService")));
    assert_eq!(p("reroute r-1 T ArchiveService"), send(reroute("r-1", "T", "ArchiveService")));
    assert_eq!(
        p("reroute Score Archive").unwrap_err(),
        "no service or agent `Archive`: expected one of ArchiveService, NotificationService"
    );
    assert_eq!(p("reroute"), Ok(Parsed::Act(Action::Reroute)), "alone it opens the picker, as R does");
    assert_eq!(p("ack"), Ok(Parsed::Act(Action::Acknowledge)));
    assert_eq!(p("ack 2"), send(Command::AckAlert { id: 2 }));
    assert_eq!(p("ack two").unwrap_err(), "`:ack` takes an alert number, not `two`");
    assert_eq!(p("pause"), send(Command::PauseWorkflow { workflow: "DailyGrantPipeline".into() }));
    assert_eq!(p("resume NightlyReport"), send(Command::ResumeWorkflow { workflow: "NightlyReport".into() }));
    assert_eq!(p(&format!("pause {RELEASE}")), send(Command::PauseRun { run: RELEASE.into() }));
    assert_eq!(p("resume r-1"), send(Command::ResumeRun { run: "r-1".into() }));
    assert_eq!(p("history NightlyReport"), Ok(Parsed::History(Some("NightlyReport".into()))));
    assert_eq!(p("history"), Ok(Parsed::History(None)));
    assert_eq!(p("q"), Ok(Parsed::Act(Action::Quit)));
    assert_eq!(p("  "), Ok(Parsed::Nothing));
    assert_eq!(p("trigger 'Nightly").unwrap_err(), "a ' is not closed: close it or remove it");
}

#[test]
fn without_a_selection_the_commands_say_what_they_need() {
    let model = Model::new(Vec::new(), false, chrono::Utc::now());
    for (text, error) in [
        ("retry", "`:retry` needs RUN TASK, or a task selected"),
        ("skip Score", "`:skip` needs RUN TASK, or a task selected"),
        ("pause", "`:pause` needs a WORKFLOW or RUN, or one selected"),
        ("cancel", "`:cancel` needs a RUN, or a run selected"),
        ("trigger", "`:trigger` needs a WORKFLOW"),
        ("reroute ArchiveService", "`:reroute` needs RUN TASK ROUTE, or TASK ROUTE, or ROUTE with a task selected"),
    ] {
        assert_eq!(parse(&model, &routes(), text), Err(error.to_string()), "{text}");
    }
    assert_eq!(
        parse(&model, &[], "reroute r T X").unwrap_err(),
        "conveyor.toml registers no service or agent to reroute to"
    );
}

#[test]
fn commands_that_change_a_run_ask_first_and_a_refused_line_stays_with_the_reason() {
    let mut model = fixture().model;
    press(&mut model, ":skip Score");
    assert!(press_code(&mut model, KeyCode::Enter).is_empty());
    let Some(Popup::Confirm { action, .. }) = &model.popup else { panic!("skip asks first: {:?}", model.popup) };
    assert_eq!(**action, Effect::Send(Command::SkipTask { run: FAILED.into(), task: "Score".into() }));
    assert_eq!(
        press(&mut model, "y"),
        vec![Effect::Send(Command::SkipTask { run: FAILED.into(), task: "Score".into() })]
    );
    press(&mut model, ":retry");
    assert_eq!(
        press_code(&mut model, KeyCode::Enter),
        vec![Effect::Send(retry(FAILED, "Ingest"))],
        "retry does not ask"
    );
    press(&mut model, ":trigger NightlyReport -p max_lines=lots");
    assert!(press_code(&mut model, KeyCode::Enter).is_empty());
    assert_eq!(line(&model).text, "trigger NightlyReport -p max_lines=lots");
    insta::assert_snapshot!("command_line_refused_80x24", render(&mut model, 80, 24, false));
    insta::assert_snapshot!("command_line_refused_120x40", render(&mut model, 120, 40, false));
    ctrl(&mut model, 'w');
    assert_eq!(line(&model).error, None, "editing clears the reason");
    press_code(&mut model, KeyCode::Esc);
    press(&mut model, ":history NightlyReport");
    press_code(&mut model, KeyCode::Enter);
    assert_eq!((model.focus, model.selected_workflow().unwrap().id.as_str()), (Pane::Runs, "NightlyReport"));
    assert_eq!(model.popup, None);
}

#[test]
fn a_wrong_value_in_the_params_form_is_marked_and_what_was_typed_stays() {
    let mut model = fixture().model;
    press(&mut model, "jj");
    press(&mut model, "T");
    press_code(&mut model, KeyCode::Down);
    ctrl(&mut model, 'u');
    press(&mut model, "many");
    press_code(&mut model, KeyCode::Tab);
    press(&mut model, "{\"id\": ");
    assert!(press_code(&mut model, KeyCode::Enter).is_empty(), "nothing is sent");
    let Some(Popup::Params(form)) = &model.popup else { panic!("the form stays open") };
    let values: Vec<&str> = form.fields.iter().map(|f| f.value.as_str()).collect();
    assert_eq!(values, ["nightly", "many", "{\"id\": "]);
    assert_eq!(form.fields[0].error, None);
    assert_eq!(form.fields[1].error.as_deref(), Some("`many` is not an integer (such as 42)"));
    assert!(form.fields[2].error.as_deref().unwrap().starts_with("not JSON: "));
    assert_eq!(form.selected, 1, "the first wrong field is selected");
    insta::assert_snapshot!("params_form_refused_120x40", render(&mut model, 120, 40, false));
    insta::assert_snapshot!("params_form_refused_80x24", render(&mut model, 80, 24, false));
    ctrl(&mut model, 'u');
    press(&mut model, "12");
    press_code(&mut model, KeyCode::Down);
    press(&mut model, "7}");
    let effects = press_code(&mut model, KeyCode::Enter);
    assert_eq!(
        effects,
        vec![Effect::Send(Command::Trigger {
            workflow: "NightlyReport".into(),
            input: Some(json!({"id": 7})),
            params: [("label".to_string(), json!("nightly")), ("max_lines".to_string(), json!(12))].into(),
        })]
    );
}

#[test]
fn a_workflow_without_parameters_opens_the_form_with_only_the_input() {
    let mut model = fixture().model;
    press(&mut model, "G");
    press(&mut model, "T");
    insta::assert_snapshot!("params_form_input_only_80x24", render(&mut model, 80, 24, false));
    insta::assert_snapshot!("params_form_input_only_120x40", render(&mut model, 120, 40, false));
    assert_eq!(
        press_code(&mut model, KeyCode::Enter),
        vec![Effect::Send(Command::Trigger {
            workflow: "ReleaseChecks".into(),
            input: None,
            params: Default::default()
        })],
        "an empty input sends none"
    );
}

#[test]
fn y_copies_what_is_selected_in_each_pane() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    assert_eq!(press(model, "y"), vec![Effect::Copy("DailyGrantPipeline".into())]);
    assert_eq!(model.status.as_deref(), Some("copied workflow DailyGrantPipeline"));
    press_code(model, KeyCode::Tab);
    assert_eq!(press(model, "y"), vec![Effect::Copy(FAILED.into())]);
    assert_eq!(model.status.as_deref(), Some("copied run 20261125-114500-a1b2"));
    press_code(model, KeyCode::Tab);
    press(model, "j");
    assert_eq!(press(model, "y"), vec![Effect::Copy(format!("{FAILED} Score"))]);
    model.focus = Pane::Monitor;
    assert!(press(model, "y").is_empty(), "the engine log tab has no selection");
    press(model, "v");
    assert_eq!(press(model, "y"), vec![Effect::Copy(model.alerts[0].message.clone())]);
    assert_eq!(model.status.as_deref(), Some("copied alert 2"));
}

#[test]
fn y_in_the_log_copies_the_marked_line_or_else_the_top_one() {
    let mut fixture = fixture();
    press_code(&mut fixture.model, KeyCode::Enter);
    open_log(&mut fixture);
    let model = &mut fixture.model;
    model.focus = Pane::Log;
    assert!(press(model, "y").is_empty(), "lines not read yet");
    assert_eq!(model.status.as_deref(), Some("that line is still being read: try again"));
    render(model, 120, 40, false);
    assert_eq!(
        press(model, "y"),
        vec![Effect::Copy("Traceback (most recent call last): model endpoint refused".into())],
        "the error the log opened at"
    );
    assert_eq!(model.status.as_deref(), Some("copied log line 32"));
    model.log.as_mut().unwrap().mark = None;
    let top = model.log.as_ref().unwrap().top;
    assert_eq!(press(model, "y"), vec![Effect::Copy(format!("scoring application A-{top:04}"))]);
}

#[test]
fn o_pages_the_open_log_or_the_selected_tasks_latest_attempt() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    assert!(press(model, "o").is_empty());
    assert!(model.status.as_deref().unwrap().starts_with("open a log"));
    press_code(model, KeyCode::Enter);
    press_code(model, KeyCode::Enter);
    assert_eq!(model.selected_task().unwrap().name, "Score");
    assert_eq!(press(model, "o"), vec![Effect::Pager(fixture.log.clone())], "the latest of Score's two attempts");
    open_log(&mut fixture);
    fixture.model.focus = Pane::Log;
    assert_eq!(press(&mut fixture.model, "o"), vec![Effect::Pager(fixture.log.clone())]);
}

#[test]
fn a_long_line_scrolls_to_its_cursor_and_the_candidates_to_the_chosen_one() {
    let mut model = fixture().model;
    press(&mut model, ":");
    press_code(&mut model, KeyCode::BackTab);
    assert_eq!(shown(&model), "quit|", "Shift-Tab cycles backwards from the first");
    insta::assert_snapshot!("command_line_candidates_scrolled_80x24", render(&mut model, 80, 24, false));
    ctrl(&mut model, 'u');
    press(&mut model, "history ");
    press(&mut model, &"0123456789".repeat(9));
    insta::assert_snapshot!("command_line_long_80x24", render(&mut model, 80, 24, false));
    insta::assert_snapshot!("command_line_long_120x40", render(&mut model, 120, 40, false));
}

#[test]
fn backfill_parses_its_options_completes_scheduled_workflows_and_refuses_what_cannot_be_backfilled() {
    use crate::console::backfill::Request;
    let model = fixture().model;
    let parsed =
        parse(&model, &routes(), "backfill NightlyReport --from 2026-03-01 --to 2026-03-07 --parallel 2 --rerun");
    let request = Request {
        workflow: "NightlyReport".into(),
        from: "2026-03-01".into(),
        to: Some("2026-03-07".into()),
        parallel: 2,
        rerun: true,
        dry_run: false,
    };
    assert_eq!(parsed, Ok(Parsed::Effect(Effect::Backfill(request))));
    assert_eq!(parse(&model, &routes(), "backfill stop"), Ok(Parsed::Effect(Effect::StopBackfill)));
    let refused = |line: &str| parse(&model, &routes(), line).unwrap_err();
    assert!(refused("backfill ReleaseChecks --from 2026-03-01").starts_with("ReleaseChecks has a manual trigger"));
    assert!(refused("backfill NightlyReport").starts_with("`:backfill` needs --from"));
    assert!(refused("backfill NightlyReport --from 2026-03-01 --parallel 0").contains("whole number ≥ 1, not `0`"));
    assert!(refused("backfill NightlyReport --from").starts_with("`--from` needs a value"));
    assert!(refused("backfill Nope --from 2026-03-01").starts_with("no workflow `Nope`"));
    assert_eq!(candidates(&model, &routes(), &["backfill"], ""), ["DailyGrantPipeline", "NightlyReport", "stop"]);
    assert_eq!(candidates(&model, &routes(), &["backfill", "NightlyReport"], "--r"), ["--rerun"]);
}
