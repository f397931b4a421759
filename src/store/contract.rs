//! What every backend must do, as tests: each function takes a fresh, empty store and checks one part of
//! the `Records` and `Coordination` contract through the `Store` facade. `store_contract!` turns them into
//! one `#[test]` each for a backend's constructor (SQLite: `sqlite/tests.rs`).

use std::io::Read;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::json;

use super::*;
use crate::state::{AttemptState, RunState, TaskState};

/// Expands the whole suite for a backend: `$open` is evaluated once per test and gives `(keep, store)`,
/// where `keep` (a temporary folder, a database) lives as long as the test. Exported for the integration
/// tests, which run it against PostgreSQL.
#[macro_export]
macro_rules! store_contract {
    ($open:expr) => {
        $crate::store_contract!(@each $open;
            runs_and_tasks_round_trip,
            a_run_is_found_by_its_id_or_a_prefix_only_one_run_has,
            runs_are_listed_newest_first_by_workflow_and_by_state,
            runs_left_active_or_marked_for_recovery_are_recovered_oldest_first,
            attempts_round_trip_and_a_second_write_updates_in_place,
            waiting_gates_are_the_tasks_waiting_for_approval,
            pauses_and_the_schedule_mark_are_kept_apart,
            fires_keep_the_newest_and_every_queued_one,
            fires_and_audit_are_read_after_an_id_oldest_first_and_no_further_than_the_limit,
            alerts_take_the_next_id_or_their_own_and_are_acknowledged_once,
            a_runs_audit_entries_are_those_naming_it_oldest_first,
            commands_wait_until_answered_or_expired,
            retention_removes_the_oldest_finished_runs_with_their_logs_interrupted_ones_too,
            trimming_keeps_the_newest_alerts_and_audit_and_forgets_processed_files_long_gone,
            trimming_keeps_the_record_of_a_file_whose_name_was_stored_escaped,
            gauges_count_what_is_true_now,
            runs_are_found_by_the_instant_they_were_scheduled_for,
            a_batch_is_read_before_and_written_by_its_commit,
            the_state_id_is_made_once_and_the_store_checks_sound,
            an_attempts_log_is_read_through_the_store,
            an_engine_joins_and_renews_a_lease_under_the_same_term,
        );
    };
    (@each $open:expr; $($name:ident),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                let (_keep, mut store) = $open;
                $crate::store::contract::$name(&mut store);
            }
        )+
    };
}
pub use store_contract;

/// A fixed instant plus `minutes`, in whole milliseconds as stored.
fn at(minutes: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).unwrap() + Duration::minutes(minutes)
}

fn run(id: &str, workflow: &str, state: RunState, minute: i64) -> RunRecord {
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        state,
        trigger: "manual".into(),
        input: json!({"a": 1}),
        params: json!({"p": "x"}),
        definition_file: "w.toml".into(),
        definition: "id = \"W\"".into(),
        created_at: at(minute),
        started_at: Some(at(minute)),
        finished_at: None,
        error: None,
    }
}

fn task(run_id: &str, name: &str, position: usize) -> TaskRecord {
    TaskRecord {
        state: TaskState::Succeeded,
        attempts: 1,
        route: Some("Backup".into()),
        input: Some(json!([1, 2])),
        output: Some(json!({"ok": true})),
        started_at: Some(at(1)),
        finished_at: Some(at(2)),
        error: Some("e".into()),
        route_index: 1,
        route_attempts: 2,
        retry_at: Some(at(3)),
        ..TaskRecord::pending(run_id, name, position)
    }
}

fn alert(message: &str) -> AlertRecord {
    AlertRecord {
        id: 0,
        at: at(0),
        severity: "error".into(),
        workflow: Some("W".into()),
        run_id: Some("r1".into()),
        task: Some("T".into()),
        message: message.into(),
        acked_at: None,
    }
}

fn fire(workflow: &str, minute: i64, outcome: &str, queued: bool) -> FireRecord {
    FireRecord {
        workflow: workflow.into(),
        scheduled_at: at(minute),
        fired_at: at(minute),
        outcome: outcome.into(),
        run_id: None,
        queued,
    }
}

fn ids(runs: Vec<RunRecord>) -> Vec<String> {
    runs.into_iter().map(|run| run.id).collect()
}

pub fn runs_and_tasks_round_trip(store: &mut Store) {
    let mut record = run("r1", "W", RunState::Running, 0);
    // Stored out of order: tasks come back in their workflow's order.
    store.insert_run(&record, &[task("r1", "B", 1), TaskRecord::pending("r1", "A", 0)]).unwrap();
    assert_eq!(store.run("r1").unwrap(), Some(record.clone()));
    assert_eq!(store.run("r2").unwrap(), None);
    let tasks = store.tasks("r1").unwrap();
    assert_eq!(tasks, vec![TaskRecord::pending("r1", "A", 0), task("r1", "B", 1)]);

    record.state = RunState::Failed;
    record.finished_at = Some(at(5));
    record.error = Some("B failed".into());
    store.update_run(&record).unwrap();
    assert_eq!(store.run("r1").unwrap(), Some(record));

    let mut first = tasks[0].clone();
    first.state = TaskState::Running;
    first.output = None;
    store.update_task(&first).unwrap();
    store.update_task(&task("r1", "C", 2)).unwrap();
    let names: Vec<(String, TaskState)> =
        store.tasks("r1").unwrap().into_iter().map(|task| (task.name, task.state)).collect();
    assert_eq!(
        names,
        [("A", TaskState::Running), ("B", TaskState::Succeeded), ("C", TaskState::Succeeded)]
            .map(|(name, state)| (name.to_string(), state))
    );
    assert!(store.tasks("r2").unwrap().is_empty());
}

pub fn a_run_is_found_by_its_id_or_a_prefix_only_one_run_has(store: &mut Store) {
    for id in ["r1", "r10", "q7"] {
        store.insert_run(&run(id, "W", RunState::Succeeded, 0), &[]).unwrap();
    }
    assert_eq!(store.find_run("r1").unwrap().as_deref(), Some("r1"), "a whole id wins over a longer one");
    assert_eq!(store.find_run("q").unwrap().as_deref(), Some("q7"));
    assert_eq!(store.find_run("zz").unwrap(), None);
    let error = store.find_run("r").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the store holds a value it cannot read: `r` matches several runs: give more of the id"
    );
}

pub fn runs_are_listed_newest_first_by_workflow_and_by_state(store: &mut Store) {
    store.insert_run(&run("w1", "W", RunState::Failed, 1), &[]).unwrap();
    store.insert_run(&run("x1", "X", RunState::Running, 2), &[]).unwrap();
    store.insert_run(&run("w2", "W", RunState::Running, 3), &[]).unwrap();
    store.insert_run(&run("w3", "W", RunState::Succeeded, 4), &[]).unwrap();
    assert_eq!(ids(store.runs(None, 10).unwrap()), ["w3", "w2", "x1", "w1"]);
    assert_eq!(ids(store.runs(None, 2).unwrap()), ["w3", "w2"]);
    assert_eq!(ids(store.runs(Some("W"), 10).unwrap()), ["w3", "w2", "w1"]);
    assert!(store.runs(Some("Y"), 10).unwrap().is_empty());
    assert_eq!(ids(store.runs_in_state(&[RunState::Running, RunState::Failed]).unwrap()), ["w1", "x1", "w2"]);
    assert!(store.runs_in_state(&[]).unwrap().is_empty());
}

pub fn runs_left_active_or_marked_for_recovery_are_recovered_oldest_first(store: &mut Store) {
    let states = [
        ("queued", RunState::Queued),
        ("marked", RunState::Interrupted),
        ("done", RunState::Succeeded),
        ("running", RunState::Running),
        ("unmarked", RunState::Interrupted),
        ("gate", RunState::WaitingApproval),
        ("paused", RunState::Paused),
    ];
    for (minute, (id, state)) in states.into_iter().enumerate() {
        store.insert_run(&run(id, "W", state, minute as i64), &[]).unwrap();
    }
    store.set_recover("marked", true).unwrap();
    store.set_recover("done", true).unwrap();
    assert_eq!(ids(store.runs_to_recover().unwrap()), ["queued", "marked", "running", "gate", "paused"]);
    store.set_recover("marked", false).unwrap();
    assert_eq!(ids(store.runs_to_recover().unwrap()), ["queued", "running", "gate", "paused"]);
}

pub fn attempts_round_trip_and_a_second_write_updates_in_place(store: &mut Store) {
    store.insert_run(&run("r1", "W", RunState::Running, 0), &[TaskRecord::pending("r1", "T", 0)]).unwrap();
    let mut first = AttemptRecord::started("r1", "T", 1, "svc", at(1), "/logs/r1/T.1.log".into());
    store.insert_attempt(&first).unwrap();
    assert_eq!(store.attempts("r1", None).unwrap(), vec![first.clone()]);

    first.state = AttemptState::Failed;
    first.exit_code = Some(3);
    first.error = Some("exit status 3".into());
    first.finished_at = Some(at(2));
    first.log_bytes = 1234;
    first.pid = Some(4321);
    first.pid_start = Some(987_654_321);
    first.progress = Some(0.5);
    first.prompt_tokens = Some(1180);
    first.completion_tokens = Some(64);
    first.log_text = Some("[conveyor] exit status 3\n".into());
    store.insert_attempt(&first).unwrap();
    assert_eq!(store.attempts("r1", Some("T")).unwrap(), vec![first.clone()], "written again, still one");

    let second = AttemptRecord::started("r1", "T", 2, "fallback", at(3), "/logs/r1/T.2.log".into());
    let mut running = store.tasks("r1").unwrap().remove(0);
    running.state = TaskState::Running;
    running.attempts = 2;
    store.save_attempt_and_task(&second, &running).unwrap();
    let other = AttemptRecord::started("r1", "U", 1, "svc", at(0), "/logs/r1/U.1.log".into());
    store.insert_attempt(&other).unwrap();
    assert_eq!(store.tasks("r1").unwrap(), vec![running]);
    assert_eq!(store.attempts("r1", Some("T")).unwrap(), vec![first.clone(), second.clone()]);
    assert_eq!(store.attempts("r1", None).unwrap(), vec![other, first, second], "oldest first");
    assert!(store.attempts("r1", Some("V")).unwrap().is_empty());
    assert!(store.attempts("r2", None).unwrap().is_empty());
}

pub fn waiting_gates_are_the_tasks_waiting_for_approval(store: &mut Store) {
    let gate = |run_id: &str, name: &str, position: usize| TaskRecord {
        state: TaskState::WaitingApproval,
        ..TaskRecord::pending(run_id, name, position)
    };
    store.insert_run(&run("b", "W", RunState::WaitingApproval, 0), &[gate("b", "G", 0)]).unwrap();
    store
        .insert_run(
            &run("a", "W", RunState::WaitingApproval, 1),
            &[TaskRecord::pending("a", "T", 0), gate("a", "H", 2), gate("a", "G", 1)],
        )
        .unwrap();
    let gates: Vec<(String, String)> =
        store.waiting_gates().unwrap().into_iter().map(|task| (task.run_id, task.name)).collect();
    assert_eq!(gates, [("a", "G"), ("a", "H"), ("b", "G")].map(|(run, task)| (run.to_string(), task.to_string())));
}

pub fn pauses_and_the_schedule_mark_are_kept_apart(store: &mut Store) {
    assert!(store.paused_workflows().unwrap().is_empty());
    store.set_paused("W", true, at(0)).unwrap();
    store.set_paused("X", true, at(0)).unwrap();
    store.set_paused("X", false, at(1)).unwrap();
    assert_eq!(store.paused_workflows().unwrap().into_iter().collect::<Vec<_>>(), ["W"]);

    assert_eq!(store.scheduled_through("W").unwrap(), None);
    store.set_scheduled_through("W", at(5)).unwrap();
    store.set_scheduled_through("Y", at(6)).unwrap();
    assert_eq!(store.scheduled_through("W").unwrap(), Some(at(5)));
    assert_eq!(store.scheduled_through("Y").unwrap(), Some(at(6)));
    store.set_scheduled_through("Y", at(4)).unwrap();
    assert_eq!(store.scheduled_through("Y").unwrap(), Some(at(6)), "the mark never moves back");
    assert_eq!(store.paused_workflows().unwrap().into_iter().collect::<Vec<_>>(), ["W"], "marks leave pauses");
    store.set_paused("W", false, at(7)).unwrap();
    assert_eq!(store.scheduled_through("W").unwrap(), Some(at(5)), "pauses leave marks");
}

pub fn fires_keep_the_newest_and_every_queued_one(store: &mut Store) {
    store.record_fire(&fire("W", 1, "queued", true), 2).unwrap();
    store.record_fire(&fire("X", 1, "started", false), 2).unwrap();
    for minute in 2..=4 {
        store.record_fire(&fire("W", minute, "started", false), 2).unwrap();
    }
    let kept: Vec<(DateTime<Utc>, bool)> =
        store.fires("W", 10).unwrap().into_iter().map(|fire| (fire.scheduled_at, fire.queued)).collect();
    assert_eq!(kept, [(at(4), false), (at(3), false), (at(1), true)]);
    assert_eq!(store.fires("W", 1).unwrap(), vec![fire("W", 4, "started", false)]);
    assert_eq!(store.fires("X", 10).unwrap().len(), 1, "another workflow's fires are its own");

    assert_eq!(store.queued_fires("W").unwrap(), [at(1)]);
    store.unqueue_fire("W", at(1)).unwrap();
    assert!(store.queued_fires("W").unwrap().is_empty());
    assert!(!store.fires("W", 10).unwrap()[2].queued);
}

pub fn fires_and_audit_are_read_after_an_id_oldest_first_and_no_further_than_the_limit(store: &mut Store) {
    assert_eq!((store.last_audit_id().unwrap(), store.last_fire_id().unwrap()), (0, 0));
    for who in ["ann", "bob", "cy"] {
        store.audit(at(0), who, "cli", "trigger W", true, "started").unwrap();
    }
    let trail = store.audit_trail(3).unwrap();
    assert_eq!(trail.iter().map(|entry| entry.who.as_str()).collect::<Vec<_>>(), ["cy", "bob", "ann"]);
    assert_eq!(
        trail[2],
        AuditRecord {
            id: trail[2].id,
            at: at(0),
            who: "ann".into(),
            origin: "cli".into(),
            command: "trigger W".into(),
            ok: true,
            outcome: "started".into(),
        }
    );
    assert_eq!(store.audit_trail(1).unwrap().len(), 1);
    let after = trail[2].id;
    let since: Vec<String> = store.audit_since(after, 10).unwrap().into_iter().map(|a| a.who).collect();
    assert_eq!(since, vec!["bob", "cy"]);
    assert_eq!(store.audit_since(after, 1).unwrap().len(), 1);
    assert!(store.audit_since(store.last_audit_id().unwrap(), 10).unwrap().is_empty());

    for (workflow, outcome) in [("W", "started"), ("X", "skipped: paused"), ("W", "queued")] {
        store.record_fire(&fire(workflow, 0, outcome, false), 10).unwrap();
    }
    let all = store.fires_since(0, 10).unwrap();
    let outcomes: Vec<&str> = all.iter().map(|(_, fire)| fire.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["started", "skipped: paused", "queued"]);
    let later = store.fires_since(all[0].0, 10).unwrap();
    assert_eq!(later.iter().map(|(_, fire)| fire.workflow.as_str()).collect::<Vec<_>>(), vec!["X", "W"]);
    assert_eq!(store.fires_since(0, 1).unwrap().len(), 1);
    assert_eq!(store.last_fire_id().unwrap(), all[2].0);
}

pub fn alerts_take_the_next_id_or_their_own_and_are_acknowledged_once(store: &mut Store) {
    assert_eq!(store.last_alert_id().unwrap(), 0);
    let first = store.add_alert(&alert("first")).unwrap();
    let second = store.add_alert(&alert("second")).unwrap();
    assert!(first > 0 && second > first, "{first}, {second}");
    let own = store.add_alert(&AlertRecord { id: second + 10, ..alert("own") }).unwrap();
    assert_eq!(own, second + 10);
    assert_eq!(store.last_alert_id().unwrap(), own);
    assert_eq!(store.alert(first).unwrap(), Some(AlertRecord { id: first, ..alert("first") }));
    assert_eq!(store.alert(own + 1).unwrap(), None);
    let newest: Vec<String> = store.alerts(2).unwrap().into_iter().map(|alert| alert.message).collect();
    assert_eq!(newest, ["own", "second"]);

    assert!(store.ack_alert(second, at(9)).unwrap());
    assert!(!store.ack_alert(second, at(10)).unwrap(), "a second acknowledgement changes nothing");
    assert!(!store.ack_alert(own + 1, at(10)).unwrap());
    assert_eq!(store.alert(second).unwrap().unwrap().acked_at, Some(at(9)));
    assert_eq!(store.alert(first).unwrap().unwrap().acked_at, None);
}

pub fn a_runs_audit_entries_are_those_naming_it_oldest_first(store: &mut Store) {
    let now = at(0);
    let trigger = r#"{"command":"trigger","workflow":"W"}"#;
    store.audit(now, "alice", "console", trigger, true, "started run r-1 of W").unwrap();
    store.audit(now, "bob", "cli", r#"{"command":"approve","run":"r-1","task":"Gate"}"#, true, "ok").unwrap();
    store.audit(now, "carol", "cli", r#"{"command":"cancel_run","run":"r-2"}"#, true, "cancelling run r-2").unwrap();
    store.audit(now, "dave", "cli", trigger, true, "started run r-3 of W").unwrap();
    let who: Vec<String> = store.audit_of_run("r-1", 10).unwrap().into_iter().map(|entry| entry.who).collect();
    assert_eq!(who, vec!["alice", "bob"]);
    let newest: Vec<String> = store.audit_of_run("r-1", 1).unwrap().into_iter().map(|entry| entry.who).collect();
    assert_eq!(newest, vec!["bob"], "the limit keeps the newest");
    assert!(store.audit_of_run("r-9", 10).unwrap().is_empty());
}

pub fn commands_wait_until_answered_or_expired(store: &mut Store) {
    let now = at(0);
    let later = now + Duration::seconds(30);
    let answered = store.enqueue_command(now, "me", r#"{"command":"a"}"#, later).unwrap();
    let lapsed = store.enqueue_command(now, "me", r#"{"command":"b"}"#, now).unwrap();
    let abandoned = store.enqueue_command(now, "you", r#"{"command":"c"}"#, later).unwrap();
    assert!(answered < lapsed && lapsed < abandoned);
    assert_eq!(store.command_result(lapsed).unwrap(), None);

    let pending = store.pending_commands(now).unwrap();
    assert_eq!(
        pending,
        vec![
            QueuedCommand { id: answered, who: "me".into(), command: r#"{"command":"a"}"#.into() },
            QueuedCommand { id: abandoned, who: "you".into(), command: r#"{"command":"c"}"#.into() },
        ],
        "oldest first, without the one past its deadline"
    );
    assert_eq!(store.command_result(lapsed).unwrap(), Some((false, EXPIRED.to_string())));

    store.complete_command(answered, now, true, "done").unwrap();
    assert_eq!(store.command_result(answered).unwrap(), Some((true, "done".to_string())));
    assert!(!store.expire_command(answered, now).unwrap(), "an answered command keeps its answer");
    assert_eq!(store.command_result(answered).unwrap(), Some((true, "done".to_string())));

    assert!(store.expire_command(abandoned, now).unwrap());
    assert!(!store.expire_command(abandoned, now).unwrap());
    assert_eq!(store.command_result(abandoned).unwrap(), Some((false, EXPIRED.to_string())));
    assert!(store.pending_commands(now).unwrap().is_empty());
}

pub fn retention_removes_the_oldest_finished_runs_with_their_logs_interrupted_ones_too(store: &mut Store) {
    for (i, state) in
        [RunState::Interrupted, RunState::Succeeded, RunState::Succeeded, RunState::Running].iter().enumerate()
    {
        let id = format!("r{i}");
        store.insert_run(&run(&id, "W", *state, i as i64), &[task(&id, "T", 0)]).unwrap();
        let log = store.log_path(&id, "T", 1);
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "line\n").unwrap();
    }
    store.insert_run(&run("marked", "W", RunState::Interrupted, -5), &[]).unwrap();
    store.set_recover("marked", true).unwrap();
    store.insert_run(&run("other", "X", RunState::Failed, -100), &[]).unwrap();
    let pruned = store.prune("W", 1).unwrap();
    assert_eq!(pruned, vec!["r1", "r0"]);
    assert_eq!(ids(store.runs(None, 10).unwrap()), ["r3", "r2", "marked", "other"]);
    assert!(!store.log_path("r0", "T", 1).exists());
    assert!(store.log_path("r2", "T", 1).exists());
    assert!(store.tasks("r0").unwrap().is_empty(), "task rows go with their run");
    assert!(store.prune("W", 1).unwrap().is_empty());
}

pub fn trimming_keeps_the_newest_alerts_and_audit_and_forgets_processed_files_long_gone(store: &mut Store) {
    let now = Utc::now();
    for n in 0..5 {
        store.add_alert(&alert(&format!("alert {n}"))).unwrap();
        store.audit(now, "me", "cli", "{}", true, &format!("command {n}")).unwrap();
    }
    let present = store.state_dir().join("present.json");
    std::fs::write(&present, "{}").unwrap();
    let long_ago = now - Duration::days(60);
    for path in [present.to_string_lossy().into_owned(), "/nowhere/gone.json".to_string()] {
        store.mark_file_processed("W", &path, 2, long_ago, None, long_ago).unwrap();
    }
    store.mark_file_processed("W", "/nowhere/recent.json", 2, now, Some("r1"), now).unwrap();
    assert!(!store.file_processed("W", "/nowhere/recent.json", 3, now).unwrap(), "another size is another file");
    assert!(!store.file_processed("X", "/nowhere/recent.json", 2, now).unwrap(), "and another workflow's");
    let removed = store.trim(2, 3, Duration::days(30), now).unwrap();
    assert_eq!(removed, 3 + 2 + 1);
    let alerts: Vec<String> = store.alerts(10).unwrap().into_iter().map(|a| a.message).collect();
    assert_eq!(alerts, vec!["alert 4", "alert 3"]);
    assert_eq!(store.audit_trail(10).unwrap().len(), 3);
    assert!(store.file_processed("W", &present.to_string_lossy(), 2, long_ago).unwrap(), "its file is still there");
    assert!(!store.file_processed("W", "/nowhere/gone.json", 2, long_ago).unwrap());
    assert!(store.file_processed("W", "/nowhere/recent.json", 2, now).unwrap(), "gone, but recently");
    assert_eq!(store.trim(2, 3, Duration::days(30), now).unwrap(), 0, "nothing more to trim");
}

pub fn trimming_keeps_the_record_of_a_file_whose_name_was_stored_escaped(store: &mut Store) {
    let now = Utc::now();
    let long_ago = now - Duration::days(60);
    // `in/caf\xe9.csv`: a Latin-1 name as `files::file_text` stores it; looked up as written, it never exists.
    let escaped = store.state_dir().join("caf\\xe9.csv").to_string_lossy().into_owned();
    store.mark_file_processed("W", &escaped, 2, long_ago, None, long_ago).unwrap();
    assert_eq!(store.trim(10, 10, Duration::days(30), now).unwrap(), 0);
    assert!(store.file_processed("W", &escaped, 2, long_ago).unwrap(), "the file may still be there: kept");
}

pub fn gauges_count_what_is_true_now(store: &mut Store) {
    assert_eq!(store.gauges().unwrap(), Gauges::default());
    let gate = |run_id: &str, since: Option<DateTime<Utc>>| TaskRecord {
        state: TaskState::WaitingApproval,
        started_at: Some(at(10)),
        output: since.map(|since| json!({"waiting_since": timestamp(since)})),
        ..TaskRecord::pending(run_id, "Gate", 0)
    };
    store.insert_run(&run("w1", "W", RunState::WaitingApproval, 0), &[gate("w1", Some(at(3)))]).unwrap();
    store.insert_run(&run("w2", "W", RunState::WaitingApproval, 1), &[gate("w2", None)]).unwrap();
    store.insert_run(&run("w3", "W", RunState::Succeeded, 2), &[]).unwrap();
    store.insert_run(&run("x1", "X", RunState::Queued, 3), &[]).unwrap();
    store.record_fire(&fire("W", 1, "queued", true), 10).unwrap();
    store.record_fire(&fire("W", 2, "started", false), 10).unwrap();
    store.add_alert(&alert("a")).unwrap();
    let acked = store.add_alert(&AlertRecord { severity: "info".into(), ..alert("b") }).unwrap();
    store.ack_alert(acked, at(0)).unwrap();
    store.add_alert(&alert("c")).unwrap();

    let counts = |pairs: &[(&str, u64)]| pairs.iter().map(|(key, count)| (key.to_string(), *count)).collect();
    assert_eq!(
        store.gauges().unwrap(),
        Gauges {
            active_runs: counts(&[("W", 2), ("X", 1)]),
            queued_fires: counts(&[("W", 1)]),
            waiting_gates: counts(&[("W", 2)]),
            oldest_gate: [("W".to_string(), at(3))].into(),
            unacknowledged_alerts: counts(&[("error", 2)]),
        }
    );
}

pub fn runs_are_found_by_the_instant_they_were_scheduled_for(store: &mut Store) {
    let for_instant = |id: &str, workflow: &str, minute: i64, input: serde_json::Value| RunRecord {
        input,
        ..run(id, workflow, RunState::Succeeded, minute)
    };
    let scheduled = |instant: DateTime<Utc>| json!({"trigger": "schedule", "scheduled_at": timestamp(instant)});
    store.insert_run(&for_instant("first", "W", 0, scheduled(at(60))), &[]).unwrap();
    store.insert_run(&for_instant("again", "W", 1, scheduled(at(60))), &[]).unwrap();
    store.insert_run(&for_instant("next", "W", 2, scheduled(at(120))), &[]).unwrap();
    store.insert_run(&for_instant("manual", "W", 3, json!({"trigger": "manual"})), &[]).unwrap();
    store.insert_run(&for_instant("odd", "W", 4, json!({"scheduled_at": "soon"})), &[]).unwrap();
    store.insert_run(&for_instant("other", "X", 5, scheduled(at(60))), &[]).unwrap();

    assert_eq!(store.run_for_instant("W", at(60)).unwrap().as_deref(), Some("again"), "the newest run");
    assert_eq!(store.run_for_instant("W", at(180)).unwrap(), None);
    assert_eq!(store.run_for_instant("Y", at(60)).unwrap(), None);
    let by_instant = store.runs_by_instant("W").unwrap();
    assert_eq!(by_instant, [(at(60), "again".to_string()), (at(120), "next".to_string())].into());
}

pub fn a_batch_is_read_before_and_written_by_its_commit(store: &mut Store) {
    store.insert_run(&run("old", "W", RunState::Succeeded, 0), &[]).unwrap();
    let log = store.log_path("old", "T", 1);
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    std::fs::write(&log, "line\n").unwrap();

    store.begin_batch().unwrap();
    store.insert_run(&run("new", "W", RunState::Succeeded, 1), &[TaskRecord::pending("new", "T", 0)]).unwrap();
    store.audit(at(1), "me", "cli", "trigger W", true, "started run new of W").unwrap();
    assert_eq!(ids(store.runs(None, 10).unwrap()), ["new", "old"], "a batch reads its own writes");
    assert_eq!(store.prune("W", 1).unwrap(), ["old"]);
    assert!(log.exists(), "a pruned run's files wait for the commit");
    store.commit_batch().unwrap();
    assert!(!log.exists());
    assert!(!store.has_pending());
    assert_eq!(store.take_trouble(), None);
    store.retry_pending().unwrap();

    assert_eq!(ids(store.runs(None, 10).unwrap()), ["new"]);
    assert_eq!(store.tasks("new").unwrap().len(), 1);
    assert_eq!(store.audit_trail(10).unwrap().len(), 1);
}

pub fn the_state_id_is_made_once_and_the_store_checks_sound(store: &mut Store) {
    let id = store.state_id().unwrap();
    assert!(!id.is_empty());
    assert_eq!(store.state_id().unwrap(), id);
    assert_eq!(store.integrity_check().unwrap(), "ok");
}

pub fn an_attempts_log_is_read_through_the_store(store: &mut Store) {
    store.insert_run(&run("r1", "W", RunState::Succeeded, 0), &[]).unwrap();
    let mut quiet = AttemptRecord::started("r1", "T", 1, "svc", at(0), store.log_path("r1", "T", 1));
    quiet.log_text = Some("[conveyor] exit status 0\n".into());
    store.insert_attempt(&quiet).unwrap();
    let stored = store.attempts("r1", Some("T")).unwrap().remove(0);
    let mut text = String::new();
    store.logs().open(&stored).unwrap().read_to_string(&mut text).unwrap();
    assert_eq!(text, "[conveyor] exit status 0\n");
}

pub fn an_engine_joins_and_renews_a_lease_under_the_same_term(store: &mut Store) {
    let routes = vec!["process".to_string(), "http".to_string()];
    store.join("host-a", std::process::id(), &routes).unwrap();
    store.heartbeat().unwrap();
    let ttl = std::time::Duration::from_secs(30);
    let term = store.hold_lease("scheduler", ttl).unwrap().expect("the only engine holds a free lease");
    assert_eq!(store.hold_lease("scheduler", ttl).unwrap(), Some(term), "a renewal keeps the term");
    assert!(store.hold_lease("retention", ttl).unwrap().is_some(), "leases are held by name");
    store.release_lease("scheduler").unwrap();
    store.release_lease("scheduler").unwrap();
    let again = store.hold_lease("scheduler", ttl).unwrap().expect("a released lease is free");
    assert!(again >= term, "terms never go back: {again:?} after {term:?}");
    store.heartbeat().unwrap();
}
