//! The engine log: which lines events and snapshots make, at which level; its keys; the alert view.

use chrono::{DateTime, Duration, Utc};
use crossterm::event::KeyCode;
use log::Level;
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use serde_json::json;
use tui_logger::TuiWidgetEvent;

use super::*;
use crate::console::monitor::{self, MonitorLine, Watcher};
use crate::engine::{Command, Event};
use crate::state::{RunState, TaskState};
use crate::store::{AlertRecord, AuditRecord, FireRecord};

fn now() -> DateTime<Utc> {
    at(NOW)
}

fn levels_and_texts(lines: &[MonitorLine]) -> Vec<(Level, String, String)> {
    lines.iter().map(|line| (line.level, line.target.clone(), line.text.clone())).collect()
}

fn alert(id: i64, severity: &str, message: &str) -> AlertRecord {
    AlertRecord {
        id,
        at: now(),
        severity: severity.into(),
        workflow: Some("DailyGrantPipeline".into()),
        run_id: Some("20261125-114500-a1b2".into()),
        task: Some("Score".into()),
        message: message.into(),
        acked_at: None,
    }
}

#[test]
fn a_run_says_it_started_and_how_it_ended_and_a_failure_is_an_error() {
    let mut watcher = Watcher::default();
    let mut record = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0);
    let started = watcher.event(&Event::Run(record.clone()), now());
    assert_eq!(
        levels_and_texts(&started),
        vec![(Level::Info, "DailyGrantPipeline".into(), "run 20261125-120000-ffff started (manual)".into())]
    );
    assert!(watcher.event(&Event::Run(record.clone()), now()).is_empty(), "the same state again says nothing");
    record.state = RunState::Failed;
    record.finished_at = record.started_at.map(|start| start + Duration::seconds(9));
    record.error = Some("task Score failed: exit status 3".into());
    let failed = watcher.event(&Event::Run(record.clone()), now());
    assert_eq!(
        levels_and_texts(&failed),
        vec![(
            Level::Error,
            "DailyGrantPipeline".into(),
            "run 20261125-120000-ffff failed after 9.0s: task Score failed: exit status 3".into()
        )]
    );
    assert_eq!(failed[0].at, record.finished_at.unwrap(), "the line carries the time the run ended");
    let mut ok = run("20261125-120100-eeee", "ReleaseChecks", RunState::Running, 0, 0);
    watcher.event(&Event::Run(ok.clone()), now());
    ok.state = RunState::Succeeded;
    ok.finished_at = ok.started_at.map(|start| start + Duration::seconds(75));
    let succeeded = watcher.event(&Event::Run(ok), now());
    assert_eq!(succeeded[0].level, Level::Info);
    assert_eq!(succeeded[0].text, "run 20261125-120100-eeee succeeded in 1m15s");
}

#[test]
fn a_file_arrival_names_the_file_that_started_the_run() {
    let mut watcher = Watcher::default();
    let mut record = run("20261125-120000-ffff", "InboxIntake", RunState::Running, 0, 0);
    record.trigger = "event".into();
    record.input = json!({"file": "/srv/inbox/a.json", "size": 12});
    let lines = watcher.event(&Event::Run(record), now());
    assert_eq!(lines[0].text, "/srv/inbox/a.json arrived: run 20261125-120000-ffff started");
    assert_eq!(lines[0].target, "InboxIntake");
}

#[test]
fn a_task_says_each_attempt_retry_failure_and_success_with_its_number_and_only_when_it_changes() {
    let mut watcher = Watcher::default();
    let record = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Running, 0, 0);
    watcher.event(&Event::Run(record.clone()), now());
    let pending = task(&record, "Score", 1, TaskState::Pending, 0);
    assert!(watcher.event(&Event::Task(pending), now()).is_empty(), "a new run's pending tasks are no news");
    let mut score = task(&record, "Score", 1, TaskState::Running, 1);
    let started = watcher.event(&Event::Task(score.clone()), now());
    assert_eq!(
        levels_and_texts(&started),
        vec![(Level::Info, "DailyGrantPipeline".into(), "Score started, attempt 1 (run ffff)".into())]
    );
    assert!(watcher.event(&Event::Task(score.clone()), now()).is_empty(), "a progress-only update says nothing");
    score.state = TaskState::RetryWait;
    score.retry_at = Some(now() + Duration::seconds(10));
    let retry = watcher.event(&Event::Task(score.clone()), now());
    assert_eq!(retry[0].level, Level::Warn);
    assert!(retry[0].text.starts_with("Score attempt 1 failed, retry at "), "{}", retry[0].text);
    // The engine's error says when it retries: the line does not say it twice.
    let mut other = score.clone();
    other.run_id = "20261125-120000-aaaa".into();
    other.error = Some("exit status 3; retry 1 of 1 at 2026-11-25T12:00:10Z".into());
    let retry = watcher.event(&Event::Task(other), now());
    assert_eq!(retry[0].text, "Score attempt 1 failed (run aaaa): exit status 3; retry 1 of 1 at 2026-11-25T12:00:10Z");
    score.error = Some("exit status 3".into());
    score.state = TaskState::Running;
    score.attempts = 2;
    assert_eq!(watcher.event(&Event::Task(score.clone()), now())[0].text, "Score started, attempt 2 (run ffff)");
    score.state = TaskState::Failed;
    let failed = watcher.event(&Event::Task(score.clone()), now());
    assert_eq!(failed[0].level, Level::Error);
    assert_eq!(failed[0].text, "Score failed on attempt 2 (run ffff): exit status 3");
    let ingest = task(&record, "Ingest", 0, TaskState::Succeeded, 1);
    let succeeded = watcher.event(&Event::Task(ingest), now());
    assert_eq!(succeeded[0].level, Level::Info);
    assert_eq!(succeeded[0].text, "Ingest succeeded on attempt 1 in 2.0s (run ffff)");
    let unknown = task(&run("x-1", "Other", RunState::Running, 0, 0), "T", 0, TaskState::Running, 1);
    assert_eq!(watcher.event(&Event::Task(unknown), now())[0].target, "engine", "a run not seen names no workflow");
}

#[test]
fn alerts_take_the_level_of_their_severity_and_an_acknowledgement_is_a_line_of_its_own() {
    let mut watcher = Watcher::default();
    let error = watcher.event(&Event::Alert(alert(7, "error", "run failed")), now());
    assert_eq!(levels_and_texts(&error), vec![(Level::Error, "DailyGrantPipeline".into(), "run failed".into())]);
    assert_eq!(watcher.event(&Event::Alert(alert(8, "warning", "slow")), now())[0].level, Level::Warn);
    assert_eq!(watcher.event(&Event::Alert(alert(9, "info", "skipped")), now())[0].level, Level::Info);
    assert!(watcher.event(&Event::Alert(alert(7, "error", "run failed")), now()).is_empty());
    let mut acked = alert(7, "error", "run failed");
    acked.acked_at = Some(now());
    let lines = watcher.event(&Event::Alert(acked), now());
    assert_eq!(
        levels_and_texts(&lines),
        vec![(Level::Info, "DailyGrantPipeline".into(), "alert 7 acknowledged".into())]
    );
}

#[test]
fn fires_commands_and_reloads_make_lines_skips_and_refusals_are_warnings() {
    let mut watcher = Watcher::default();
    let fire = |outcome: &str, run: Option<&str>| FireRecord {
        workflow: "NightlyReport".into(),
        scheduled_at: now(),
        fired_at: now(),
        outcome: outcome.into(),
        run_id: run.map(Into::into),
        queued: false,
    };
    let started = watcher.event(&Event::Fire(fire("started", Some("r-1"))), now());
    assert_eq!(started[0].level, Level::Info);
    assert_eq!(started[0].target, "NightlyReport");
    assert!(started[0].text.ends_with(" started: run r-1"), "{}", started[0].text);
    let skipped = watcher.event(&Event::Fire(fire("skipped: the workflow is paused", None)), now());
    assert_eq!(skipped[0].level, Level::Warn);
    assert!(skipped[0].text.ends_with(" skipped: the workflow is paused"), "{}", skipped[0].text);
    let backfilled = watcher.event(&Event::Fire(fire("backfill", Some("r-2"))), now());
    let day = now().with_timezone(&chrono::Local).format("%Y-%m-%d %H:%M:%S").to_string();
    assert_eq!(backfilled[0].text, format!("backfill of {day}: run r-2"));
    let command = |command: Command, ok| Event::Command {
        who: "ann".into(),
        via: "console".into(),
        command: command.to_json(),
        ok,
        outcome: "done".into(),
    };
    let retry = Command::RetryTask { run: "20261125-114500-a1b2".into(), task: "Score".into() };
    let unknown_run = watcher.event(&command(retry.clone(), true), now());
    assert_eq!(
        levels_and_texts(&unknown_run),
        vec![(Level::Info, "operator".into(), "ann via console: retry_task 20261125-114500-a1b2 Score → done".into())]
    );
    watcher.event(&Event::Run(run("20261125-114500-a1b2", "DailyGrantPipeline", RunState::Failed, 15, 9)), now());
    let known_run = watcher.event(&command(retry, false), now());
    assert_eq!(
        levels_and_texts(&known_run),
        vec![(
            Level::Warn,
            "DailyGrantPipeline".into(),
            "ann via console: retry_task 20261125-114500-a1b2 Score → refused: done".into()
        )],
        "a command on a known run goes under its workflow; a refused one is a warning"
    );
    let mut params = std::collections::BTreeMap::new();
    params.insert("day".to_string(), json!("monday"));
    let trigger = Command::Trigger { workflow: "NightlyReport".into(), input: None, params };
    let triggered = watcher.event(&command(trigger, true), now());
    assert_eq!(triggered[0].target, "NightlyReport");
    assert_eq!(triggered[0].text, r#"ann via console: trigger NightlyReport params={"day":"monday"} → done"#);
    let nothing = Event::Reloaded { changed: vec![], removed: vec![], broken: vec![] };
    assert!(watcher.event(&nothing, now()).is_empty(), "a reload that changed nothing says nothing");
    let reload = Event::Reloaded { changed: vec!["A".into()], removed: vec![], broken: vec!["b.toml".into()] };
    assert_eq!(
        levels_and_texts(&watcher.event(&reload, now())),
        vec![
            (Level::Info, "engine".into(), "reloaded: A".into()),
            (Level::Warn, "engine".into(), "broken: b.toml".into())
        ]
    );
    let progress = Event::Progress { run_id: "r".into(), task: "T".into(), attempt: 1, fraction: 0.5 };
    assert!(watcher.event(&progress, now()).is_empty());
}

#[test]
fn the_first_snapshot_is_learnt_quietly_and_later_ones_say_what_changed_in_order() {
    let mut watcher = Watcher::default();
    let active = run("20261125-115900-e5f6", "ReleaseChecks", RunState::Running, 1, 0);
    let clock = task(&active, "Clock", 1, TaskState::Running, 1);
    let first = Snapshot {
        runs: vec![active.clone()],
        tasks: vec![clock.clone()],
        alerts: vec![alert(2, "error", "old")],
        ..Default::default()
    };
    assert!(watcher.snapshot(&first, now()).is_empty(), "what already was is not news");
    assert!(watcher.snapshot(&first, now()).is_empty(), "nor is it the second time");
    // Between two reads: the active run ended, a new one started and finished, a workflow was paused.
    let mut ended = active.clone();
    ended.state = RunState::Succeeded;
    ended.finished_at = ended.started_at.map(|start| start + Duration::seconds(3));
    let quick = run("20261125-120000-ffff", "DailyGrantPipeline", RunState::Failed, 0, 1);
    let second = Snapshot {
        runs: vec![quick.clone(), ended.clone()],
        tasks: vec![
            task(&ended, "Clock", 1, TaskState::Succeeded, 1),
            task(&quick, "Ingest", 0, TaskState::Failed, 1),
            task(&quick, "Score", 1, TaskState::Pending, 0),
        ],
        alerts: vec![alert(3, "warning", "new"), alert(2, "error", "old")],
        paused: ["NightlyReport".to_string()].into(),
        ..Default::default()
    };
    let texts: Vec<String> = watcher.snapshot(&second, now()).into_iter().map(|line| line.text).collect();
    assert_eq!(
        texts,
        vec![
            "Clock succeeded on attempt 1 in 2.0s (run e5f6)",
            "run 20261125-115900-e5f6 succeeded in 3.0s",
            "run 20261125-120000-ffff started (manual)",
            "Ingest failed on attempt 1 (run ffff): exit status 3",
            "run 20261125-120000-ffff failed after 1.0s: task Score failed: exit status 3",
            "new",
            "paused",
        ]
    );
    let third = Snapshot { paused: Default::default(), ..second };
    assert_eq!(
        levels_and_texts(&watcher.snapshot(&third, now())),
        vec![(Level::Info, "NightlyReport".into(), "resumed".into())]
    );
    // A read that also brings the tasks of a run that had long ended (the first full read, after a quick one).
    let old = run("20261124-070000-c3d4", "DailyGrantPipeline", RunState::Succeeded, 1740, 14);
    let mut before = Snapshot { runs: vec![old.clone()], ..Default::default() };
    before.runs.extend(third.runs.clone());
    watcher.snapshot(&before, now());
    let mut full = before.clone();
    full.tasks =
        vec![task(&old, "Ingest", 0, TaskState::Succeeded, 1), task(&old, "Score", 1, TaskState::Succeeded, 1)];
    assert!(watcher.snapshot(&full, now()).is_empty(), "an ended run's tasks read late are history, not news");
}

#[test]
fn changes_say_what_changed_a_task_without_its_run_too_and_forget_nothing_they_do_not_list() {
    let mut watcher = Watcher::default();
    let active = run("20261125-115900-e5f6", "ReleaseChecks", RunState::Running, 1, 0);
    let other = run("20261125-115800-abcd", "ReleaseChecks", RunState::Running, 2, 0);
    let clock = task(&active, "Clock", 1, TaskState::Running, 1);
    let early = Snapshot { runs: vec![other.clone()], ..Default::default() };
    assert!(watcher.changes(&early, now()).is_empty(), "before the first snapshot: learnt, not news");
    let first = Snapshot { runs: vec![active.clone(), other.clone()], tasks: vec![clock], ..Default::default() };
    assert!(watcher.snapshot(&first, now()).is_empty());
    // Only the task was written: its run is not among the changes, and the other run is not listed at all.
    let retried = Snapshot { tasks: vec![task(&active, "Clock", 1, TaskState::RetryWait, 1)], ..Default::default() };
    assert_eq!(
        levels_and_texts(&watcher.changes(&retried, now())),
        vec![(Level::Warn, "ReleaseChecks".into(), "Clock attempt 1 failed (run e5f6)".into())]
    );
    assert!(watcher.changes(&retried, now()).is_empty(), "a row read again says nothing again");
    let mut ended = other.clone();
    ended.state = RunState::Succeeded;
    ended.finished_at = ended.started_at.map(|start| start + Duration::seconds(3));
    let texts: Vec<String> = watcher
        .changes(&Snapshot { runs: vec![ended], ..Default::default() }, now())
        .into_iter()
        .map(|line| line.text)
        .collect();
    assert_eq!(texts, vec!["run 20261125-115800-abcd succeeded in 3.0s"], "not taken for a new run");
}

#[test]
fn the_trail_of_an_attached_console_starts_at_the_end_and_reads_what_came_after_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = crate::store::Store::open(dir.path()).unwrap();
    store.audit(now(), "ann", "cli", "trigger W", true, "started").unwrap();
    let (audits, fires, cursor) = monitor::read_trail(&store, None);
    assert!(audits.is_empty() && fires.is_empty(), "history is not replayed on attaching");
    store.audit(now() + Duration::seconds(2), "bob", "console", "pause W", false, "no such workflow").unwrap();
    let fire = FireRecord {
        workflow: "W".into(),
        scheduled_at: now(),
        fired_at: now() + Duration::seconds(1),
        outcome: "started".into(),
        run_id: Some("r-1".into()),
        queued: false,
    };
    store.record_fire(&fire, 10).unwrap();
    let (audits, fires, cursor) = monitor::read_trail(&store, Some(cursor));
    let lines = Watcher::default().trail(&audits, &fires);
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[0].target.as_str(), lines[0].level), ("W", Level::Info), "the fire came first");
    assert_eq!(lines[1].text, "bob via console: pause W → refused: no such workflow", "not JSON: kept as it is");
    assert_eq!(lines[1].level, Level::Warn);
    let (audits, fires, _) = monitor::read_trail(&store, Some(cursor));
    assert!(audits.is_empty() && fires.is_empty(), "what was read is not read again");
    let audit = AuditRecord {
        id: 1,
        at: now(),
        who: "cy".into(),
        origin: "cli".into(),
        command: "x".into(),
        ok: true,
        outcome: "ok".into(),
    };
    assert_eq!(Watcher::default().trail(&[audit], &[])[0].target, "operator");
}

#[test]
fn words_wrap_under_the_time_and_an_id_is_cut_only_when_longer_than_a_line() {
    let lines = monitor::wrap_words("12:00:03 INFO Daily run 20261125-120000-ffff started (manual)", 30, 9);
    assert_eq!(lines, vec!["12:00:03 INFO Daily run", "         20261125-120000-ffff", "         started (manual)"]);
    assert!(lines.iter().all(|line| line.chars().count() <= 30));
    let long = monitor::wrap_words("12:00:03 ERR a-very-long-identifier-without-any-space", 20, 9);
    assert_eq!(
        long,
        vec!["12:00:03 ERR a-very-", "         long-identi", "         fier-withou", "         t-any-space"]
    );
    assert!(long.iter().all(|line| line.chars().count() <= 20));
    assert_eq!(monitor::wrap_words("", 20, 9), vec![""]);
}

#[test]
fn in_the_engine_log_page_keys_scroll_g_goes_to_the_oldest_line_and_shift_g_follows_the_newest() {
    let mut model = fixture().model;
    press_code(&mut model, KeyCode::BackTab);
    assert_eq!(model.focus, Pane::Monitor);
    assert_eq!(press_code(&mut model, KeyCode::PageUp), vec![Effect::EngineLog(TuiWidgetEvent::PrevPageKey)]);
    assert_eq!(press(&mut model, "k"), vec![Effect::EngineLog(TuiWidgetEvent::PrevPageKey)]);
    assert_eq!(press_code(&mut model, KeyCode::PageDown), vec![Effect::EngineLog(TuiWidgetEvent::NextPageKey)]);
    assert_eq!(press(&mut model, "j"), vec![Effect::EngineLog(TuiWidgetEvent::NextPageKey)]);
    assert_eq!(press(&mut model, "g"), vec![Effect::EngineLogTop]);
    assert_eq!(press(&mut model, "G"), vec![Effect::EngineLog(TuiWidgetEvent::EscapeKey)]);
    assert_eq!(model.cursor.alert, 0, "the alerts' cursor did not move");
    model.focus = Pane::Workflows;
    assert!(press(&mut model, "j").is_empty(), "elsewhere j moves the list");
    assert_eq!(model.selected_workflow().unwrap().id, "InboxIntake");
}

#[test]
fn slash_in_the_engine_log_opens_the_workflow_and_level_selector_and_esc_closes_it() {
    let mut model = fixture().model;
    model.focus = Pane::Monitor;
    assert!(press(&mut model, "/").is_empty());
    assert!(model.monitor_selector && !model.filtering, "the selector, not the list filter");
    assert_eq!(press(&mut model, "j"), vec![Effect::EngineLog(TuiWidgetEvent::DownKey)]);
    assert_eq!(press_code(&mut model, KeyCode::Up), vec![Effect::EngineLog(TuiWidgetEvent::UpKey)]);
    assert_eq!(press(&mut model, "h"), vec![Effect::EngineLog(TuiWidgetEvent::LeftKey)]);
    assert_eq!(press_code(&mut model, KeyCode::Right), vec![Effect::EngineLog(TuiWidgetEvent::RightKey)]);
    assert_eq!(press(&mut model, "f"), vec![Effect::EngineLog(TuiWidgetEvent::FocusKey)]);
    assert_eq!(press(&mut model, " "), vec![Effect::EngineLog(TuiWidgetEvent::SpaceKey)]);
    assert!(press_code(&mut model, KeyCode::Esc).is_empty());
    assert!(!model.monitor_selector);
    assert_eq!(model.focus, Pane::Monitor, "Esc closed the selector, the focus stays");
}

#[test]
fn enter_on_an_alert_opens_its_full_text_which_goes_to_its_run_acknowledges_and_closes() {
    let mut model = fixture().model;
    press(&mut model, "v");
    assert!(press_code(&mut model, KeyCode::Enter).is_empty());
    assert_eq!(model.popup, Some(Popup::Alert { id: 2, scroll: 0 }));
    press(&mut model, "jj");
    assert_eq!(model.popup, Some(Popup::Alert { id: 2, scroll: 2 }));
    press_code(&mut model, KeyCode::Up);
    assert_eq!(model.popup, Some(Popup::Alert { id: 2, scroll: 1 }));
    assert_eq!(press(&mut model, "A"), vec![Effect::Send(Command::AckAlert { id: 2 })]);
    assert!(model.popup.is_some(), "acknowledging keeps the text open");
    press_code(&mut model, KeyCode::Esc);
    assert_eq!(model.popup, None);
    assert_eq!(model.focus, Pane::Monitor);
    press_code(&mut model, KeyCode::Enter);
    let effects = press(&mut model, "g");
    assert_eq!(effects, vec![Effect::LoadRun("20261125-114500-a1b2".into())]);
    assert_eq!(model.popup, None);
    assert_eq!(model.selected_run().unwrap().id, "20261125-114500-a1b2");
    assert_eq!(model.focus, Pane::Tasks);
    // The acknowledged one says so rather than sending again.
    model.focus = Pane::Monitor;
    model.select_alert(1);
    press_code(&mut model, KeyCode::Enter);
    assert_eq!(model.popup, Some(Popup::Alert { id: 1, scroll: 0 }));
    assert!(press(&mut model, "A").is_empty());
    assert_eq!(model.status.as_deref(), Some("this alert is already acknowledged"));
}

#[test]
fn the_alert_view_shows_the_full_text_wrapped_with_time_severity_what_and_acked_state() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let mut long = alert(5, "error", "");
    long.message = format!(
        "run 20261125-114500-a1b2 of DailyGrantPipeline failed: task Score failed: exit status 3\n\
         Traceback (most recent call last): model endpoint https://models.internal/score/v2 refused the \
         connection after 3 retries; {}the end.",
        "the applications A-0031 to A-0040 were not scored and wait for a retry; ".repeat(3)
    );
    model.alerts.insert(0, long);
    press(model, "v");
    press_code(model, KeyCode::Enter);
    insta::assert_snapshot!("alert_view_120x40", render(model, 120, 40, false));
    insta::assert_snapshot!("alert_view_80x24", render(model, 80, 24, false));
}

#[test]
fn a_console_left_open_for_months_remembers_a_bounded_number_of_runs_tasks_and_alerts() {
    let mut watcher = Watcher::default();
    for n in 0..6000 {
        let mut record = run(&format!("r-{n}"), "W", RunState::Running, 0, 0);
        watcher.event(&Event::Run(record.clone()), now());
        watcher.event(&Event::Task(task(&record, "T", 0, TaskState::Succeeded, 1)), now());
        record.state = RunState::Succeeded;
        watcher.event(&Event::Run(record), now());
        watcher.event(&Event::Alert(alert(n, "error", "failed")), now());
    }
    let (runs, tasks, alerts) = watcher.remembered();
    assert!(runs <= 4097 && tasks <= 4097 && alerts <= 2048, "{runs} runs, {tasks} tasks, {alerts} alerts");
    let active = run("r-active", "W", RunState::Running, 0, 0);
    watcher.event(&Event::Run(active.clone()), now());
    for n in 6000..10_000 {
        watcher.event(&Event::Run(run(&format!("r-{n}"), "W", RunState::Succeeded, 0, 1)), now());
    }
    let mut ended = active;
    ended.state = RunState::Succeeded;
    assert_eq!(watcher.event(&Event::Run(ended), now()).len(), 1, "an active run is not forgotten: no second start");
}

#[test]
fn g_pages_the_engine_log_back_to_its_oldest_line() {
    let lines: Vec<MonitorLine> = (0..60)
        .map(|n| MonitorLine {
            at: now() + Duration::seconds(n),
            level: Level::Info,
            target: "MonitorTopFlow".into(),
            text: format!("line {n}"),
        })
        .collect();
    monitor::emit_with(&lines, |at| at.format("%H:%M:%S").to_string());
    tui_logger::move_events();
    let state = tui_logger::TuiWidgetState::new()
        .set_default_display_level(tui_logger::LevelFilter::Off)
        .set_level_for_target("MonitorTopFlow", tui_logger::LevelFilter::Trace);
    let theme = Theme::new(false);
    let area = ratatui::layout::Rect::new(0, 0, 40, 6);
    let shown = |state: &tui_logger::TuiWidgetState| {
        let mut buffer = ratatui::buffer::Buffer::empty(area);
        ratatui::widgets::Widget::render(monitor::engine_log_widget(state, &theme), area, &mut buffer);
        (0..area.height)
            .map(|y| (0..area.width).map(|x| buffer[(x, y)].symbol()).collect::<String>().trim_end().to_string())
            .collect::<Vec<_>>()
    };
    assert!(shown(&state)[5].ends_with("line 59"), "it follows the newest line: {:?}", shown(&state));
    monitor::page_to_top(&state, &theme, area);
    assert!(shown(&state)[0].ends_with("line 0"), "the oldest line on top: {:?}", shown(&state));
    state.transition(TuiWidgetEvent::EscapeKey);
    assert!(shown(&state)[5].ends_with("line 59"), "G follows the newest again");
}

/// Draws with an engine log that shows only the targets of these lines, so that no other test's lines in
/// tui-logger's global buffer come into it.
fn render_with_log(model: &mut Model, state: &tui_logger::TuiWidgetState, width: u16, height: u16) -> String {
    let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
    let theme = Theme::new(false);
    let keymap = Keymap::default();
    let chrome = Chrome { theme: &theme, keymap: &keymap, utc: true, engine_log: Some(state) };
    terminal
        .draw(|frame| {
            draw(frame, model, &chrome);
        })
        .unwrap();
    let buffer = terminal.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buffer.area.height {
        for x in 0..buffer.area.width {
            text.push_str(buffer[(x, y)].symbol());
        }
        text.truncate(text.trim_end().len());
        text.push('\n');
    }
    text
}

#[test]
fn the_monitor_pane_streams_engine_lines_with_time_level_and_workflow_and_slash_picks_what_shows() {
    let mut fixture = fixture();
    let model = &mut fixture.model;
    let mut watcher = Watcher::default();
    let record = run("20261125-120000-beef", "MonitorSnapshotFlow", RunState::Running, 0, 0);
    let mut lines = watcher.event(&Event::Run(record.clone()), now());
    lines.extend(watcher.event(&Event::Task(task(&record, "Fetch", 0, TaskState::Running, 1)), now()));
    lines.extend(watcher.event(&Event::Task(task(&record, "Fetch", 0, TaskState::Failed, 1)), now()));
    let mut ended = record.clone();
    ended.state = RunState::Failed;
    ended.finished_at = Some(now() + Duration::seconds(4));
    ended.error = Some("task Fetch failed: exit status 3".into());
    lines.extend(watcher.event(&Event::Run(ended), now()));
    let mut warning = alert(40, "warning", "MonitorSnapshotFlow is slow today");
    warning.workflow = Some("MonitorSnapshotFlow".into());
    lines.extend(watcher.event(&Event::Alert(warning), now()));
    let mut command = watcher.event(
        &Event::Command {
            who: "ann".into(),
            via: "console".into(),
            command: "trigger MonitorSnapshotFlow".into(),
            ok: true,
            outcome: "started".into(),
        },
        now(),
    );
    command[0].target = "MonitorSnapshotOperator".into();
    lines.extend(command);
    monitor::emit_with(&lines, |at| at.format("%H:%M:%S").to_string());
    tui_logger::move_events();
    let state = tui_logger::TuiWidgetState::new()
        .set_default_display_level(tui_logger::LevelFilter::Off)
        .set_level_for_target("MonitorSnapshotFlow", tui_logger::LevelFilter::Info)
        .set_level_for_target("MonitorSnapshotOperator", tui_logger::LevelFilter::Info);
    model.focus = Pane::Monitor;
    insta::assert_snapshot!("engine_log_120x40", render_with_log(model, &state, 120, 40));
    insta::assert_snapshot!("engine_log_80x24", render_with_log(model, &state, 80, 24));
    press(model, "/");
    // Other tests' targets are off in this state: hidden, as space hides them in the console.
    state.transition(TuiWidgetEvent::SpaceKey);
    state.transition(TuiWidgetEvent::DownKey);
    insta::assert_snapshot!("engine_log_selector_120x40", render_with_log(model, &state, 120, 40));
    insta::assert_snapshot!("engine_log_selector_80x24", render_with_log(model, &state, 80, 24));
}

#[test]
fn a_reload_the_engine_recorded_in_the_audit_trail_reads_as_it_does_embedded() {
    let reload = AuditRecord {
        id: 7,
        at: now(),
        who: "engine".into(),
        origin: "reload".into(),
        command: json!({"command": "reload", "changed": ["Nightly"], "removed": [], "broken": ["/w/bad.toml"]})
            .to_string(),
        ok: true,
        outcome: "1 changed or added, 0 removed".into(),
    };
    let lines = Watcher::default().trail(&[reload], &[]);
    let texts: Vec<(&str, Level)> = lines.iter().map(|line| (line.text.as_str(), line.level)).collect();
    assert_eq!(texts, vec![("reloaded: Nightly", Level::Info), ("broken: /w/bad.toml", Level::Warn)]);
}
