use std::os::unix::fs::PermissionsExt;

use chrono::{Duration, Utc};
use serde_json::json;

use super::*;
use crate::state::{RunState, TaskState};

fn run(id: &str, workflow: &str, state: RunState, minutes_ago: i64) -> RunRecord {
    let at = Utc::now() - Duration::minutes(minutes_ago);
    RunRecord {
        id: id.into(),
        workflow: workflow.into(),
        state,
        trigger: "manual".into(),
        input: json!({"a": 1}),
        params: json!({}),
        definition_file: "w.toml".into(),
        definition: "id = \"W\"".into(),
        created_at: at,
        started_at: Some(at),
        finished_at: None,
        error: None,
    }
}

fn task(run_id: &str) -> TaskRecord {
    TaskRecord {
        run_id: run_id.into(),
        name: "T".into(),
        position: 0,
        state: TaskState::Succeeded,
        attempts: 1,
        route: Some("Backup".into()),
        input: Some(json!([1, 2])),
        output: Some(json!({"ok": true})),
        started_at: Some(Utc::now()),
        finished_at: None,
        error: Some("e".into()),
        route_index: 1,
        route_attempts: 2,
        retry_at: Some(Utc::now()),
    }
}

#[test]
fn a_new_store_is_private_and_migrations_run_once() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    drop(Store::open(&state).unwrap());
    let store = Store::open(&state).unwrap();
    assert_eq!(std::fs::metadata(&state).unwrap().permissions().mode() & 0o777, 0o700);
    assert_eq!(std::fs::metadata(state.join(DATABASE_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
    let mode: String = store.connection.query_row("PRAGMA journal_mode", [], |row| row.get(0)).unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn runs_and_tasks_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let record = run("r1", "W", RunState::Running, 0);
    store.insert_run(&record, &[task("r1")]).unwrap();
    let back = store.run("r1").unwrap().unwrap();
    assert_eq!(back.id, "r1");
    assert_eq!(back.input, json!({"a": 1}));
    assert_eq!(back.created_at.timestamp_millis(), record.created_at.timestamp_millis());
    let tasks = store.tasks("r1").unwrap();
    assert_eq!(tasks[0].output, Some(json!({"ok": true})));
    assert_eq!(tasks[0].route.as_deref(), Some("Backup"));
    assert_eq!(store.find_run("r").unwrap().as_deref(), Some("r1"));
    assert_eq!(store.find_run("zz").unwrap(), None);
}

#[test]
fn retention_removes_the_oldest_finished_runs_with_their_logs_interrupted_ones_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    for (i, state) in
        [RunState::Interrupted, RunState::Succeeded, RunState::Succeeded, RunState::Running].iter().enumerate()
    {
        let id = format!("r{i}");
        store.insert_run(&run(&id, "W", *state, 10 - i as i64), &[task(&id)]).unwrap();
        let log = store.log_path(&id, "T", 1);
        std::fs::create_dir_all(log.parent().unwrap()).unwrap();
        std::fs::write(&log, "line\n").unwrap();
    }
    store.insert_run(&run("other", "X", RunState::Failed, 100), &[]).unwrap();
    let pruned = store.prune("W", 1).unwrap();
    assert_eq!(pruned, vec!["r1", "r0"]);
    let left: Vec<String> = store.runs(None, 10).unwrap().into_iter().map(|r| r.id).collect();
    assert_eq!(left, vec!["r3", "r2", "other"]);
    assert!(!store.log_path("r0", "T", 1).exists());
    assert!(store.log_path("r2", "T", 1).exists());
    assert!(store.tasks("r0").unwrap().is_empty(), "task rows go with their run");
}

#[test]
fn pauses_alerts_and_commands_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    store.set_paused("W", true, now).unwrap();
    store.set_paused("X", true, now).unwrap();
    store.set_paused("X", false, now).unwrap();
    assert_eq!(store.paused_workflows().unwrap().into_iter().collect::<Vec<_>>(), vec!["W"]);
    let alert = AlertRecord {
        id: 0,
        at: now,
        severity: "error".into(),
        workflow: Some("W".into()),
        run_id: None,
        task: None,
        message: "m".into(),
        acked_at: None,
    };
    let id = store.add_alert(&alert).unwrap();
    assert!(store.ack_alert(id, now).unwrap());
    assert!(!store.ack_alert(id, now).unwrap());
    assert!(store.alerts(5).unwrap()[0].acked_at.is_some());
    let command = store.enqueue_command(now, "me", "{}", now + chrono::Duration::seconds(30)).unwrap();
    assert_eq!(store.pending_commands(now).unwrap().len(), 1);
    assert_eq!(store.command_result(command).unwrap(), None);
    store.complete_command(command, now, false, "no").unwrap();
    assert!(store.pending_commands(now).unwrap().is_empty());
    assert_eq!(store.command_result(command).unwrap(), Some((false, "no".to_string())));
}

#[test]
fn a_state_folder_open_to_others_is_made_private_or_refused_when_it_is_shared() {
    let dir = tempfile::tempdir().unwrap();
    let loose = dir.path().join("loose");
    std::fs::create_dir(&loose).unwrap();
    std::fs::set_permissions(&loose, std::fs::Permissions::from_mode(0o777)).unwrap();
    drop(Store::open(&loose).unwrap());
    assert_eq!(std::fs::metadata(&loose).unwrap().permissions().mode() & 0o7777, 0o700);

    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let refused = Store::open(&shared).err().expect("a shared folder is refused");
    assert_eq!(
        refused.to_string(),
        format!(
            "the state folder {} is open to other users (mode 1777) and cannot be made private: use a folder of your own (--state)",
            shared.display()
        )
    );
}

#[test]
fn trimming_keeps_the_newest_alerts_and_audit_and_forgets_processed_files_long_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    for n in 0..5 {
        let alert = AlertRecord {
            id: 0,
            at: now,
            severity: "info".into(),
            workflow: None,
            run_id: None,
            task: None,
            message: format!("alert {n}"),
            acked_at: None,
        };
        store.add_alert(&alert).unwrap();
        store.audit(now, "me", "cli", "{}", true, &format!("command {n}")).unwrap();
    }
    let present = dir.path().join("present.json");
    std::fs::write(&present, "{}").unwrap();
    let long_ago = now - chrono::Duration::days(60);
    for path in [present.to_string_lossy().into_owned(), "/nowhere/gone.json".to_string()] {
        store.mark_file_processed("W", &path, 2, long_ago, None, long_ago).unwrap();
    }
    store.mark_file_processed("W", "/nowhere/recent.json", 2, now, None, now).unwrap();
    let removed = store.trim(2, 3, chrono::Duration::days(30), now).unwrap();
    assert_eq!(removed, 3 + 2 + 1);
    let alerts: Vec<String> = store.alerts(10).unwrap().into_iter().map(|a| a.message).collect();
    assert_eq!(alerts, vec!["alert 4", "alert 3"]);
    assert_eq!(store.audit_trail(10).unwrap().len(), 3);
    assert!(store.file_processed("W", &present.to_string_lossy(), 2, long_ago).unwrap(), "its file is still there");
    assert!(!store.file_processed("W", "/nowhere/gone.json", 2, long_ago).unwrap());
    assert!(store.file_processed("W", "/nowhere/recent.json", 2, now).unwrap(), "gone, but recently");
}

#[test]
fn trimming_keeps_the_record_of_a_file_whose_name_was_stored_escaped() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    let long_ago = now - chrono::Duration::days(60);
    // `in/caf\xe9.csv`: a Latin-1 name as `files::file_text` stores it; looked up as written, it never exists.
    let escaped = dir.path().join("caf\\xe9.csv").to_string_lossy().into_owned();
    store.mark_file_processed("W", &escaped, 2, long_ago, None, long_ago).unwrap();
    assert_eq!(store.trim(10, 10, chrono::Duration::days(30), now).unwrap(), 0);
    assert!(store.file_processed("W", &escaped, 2, long_ago).unwrap(), "the file may still be there: kept");
}

#[test]
fn audit_and_fires_are_read_after_an_id_oldest_first_and_no_further_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
    assert_eq!((store.last_audit_id().unwrap(), store.last_fire_id().unwrap()), (0, 0));
    for who in ["ann", "bob", "cy"] {
        store.audit(now, who, "cli", "trigger W", true, "started").unwrap();
    }
    let after = store.audit_trail(3).unwrap()[2].id;
    let since: Vec<String> = store.audit_since(after, 10).unwrap().into_iter().map(|a| a.who).collect();
    assert_eq!(since, vec!["bob", "cy"]);
    assert_eq!(store.audit_since(after, 1).unwrap().len(), 1);
    assert!(store.audit_since(store.last_audit_id().unwrap(), 10).unwrap().is_empty());
    for (workflow, outcome) in [("W", "started"), ("X", "skipped: paused"), ("W", "queued")] {
        let fire = FireRecord {
            workflow: workflow.into(),
            scheduled_at: now,
            fired_at: now,
            outcome: outcome.into(),
            run_id: None,
            queued: false,
        };
        store.record_fire(&fire, 10).unwrap();
    }
    let all = store.fires_since(0, 10).unwrap();
    let outcomes: Vec<&str> = all.iter().map(|(_, fire)| fire.outcome.as_str()).collect();
    assert_eq!(outcomes, vec!["started", "skipped: paused", "queued"]);
    let later = store.fires_since(all[0].0, 10).unwrap();
    assert_eq!(later.iter().map(|(_, fire)| fire.workflow.as_str()).collect::<Vec<_>>(), vec!["X", "W"]);
    assert_eq!(store.last_fire_id().unwrap(), all[2].0);
}

#[test]
fn a_runs_audit_entries_are_those_naming_it_in_the_command_or_the_outcome_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let now = Utc::now();
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

#[test]
fn a_database_failure_is_told_in_the_databases_words_without_its_type() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(DATABASE_FILE), "this is not a database file, but long enough to look like one")
        .unwrap();
    let error = Store::open(dir.path()).err().expect("a file that is not a database cannot be opened as the store");
    let StoreError::Database(words) = &error else { panic!("expected a database error, got {error:?}") };
    assert!(words.contains("not a database"), "{words}");
    assert_eq!(error.to_string(), format!("store: {words}"));
}
