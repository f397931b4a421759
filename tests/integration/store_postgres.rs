//! The store on PostgreSQL: the whole contract suite every backend passes, and what only a database shared by
//! several engines does (leases between two stores, migrations raced at start), and how it meets a lost
//! connection or a stopped server.

use std::io::Write;
use std::sync::{Arc, Barrier, Mutex};
use std::time::{Duration, Instant};

use conveyor::state::RunState;
use conveyor::store::{RunRecord, Store, StoreError, Term};

use crate::postgres::{Cluster, TestDatabase, database, kill_connections};

/// A fresh database and state folder, kept as long as the test.
fn open() -> ((TestDatabase, tempfile::TempDir), Store) {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&db.url, dir.path()).unwrap();
    ((db, dir), store)
}

mod contract {
    use super::open;

    conveyor::store_contract!(open());
}

/// A running run of workflow `W`, as an engine inserts one.
pub fn run(id: &str) -> RunRecord {
    let now = chrono::Utc::now();
    RunRecord {
        id: id.into(),
        workflow: "W".into(),
        state: RunState::Running,
        trigger: "manual".into(),
        input: serde_json::json!({"b": 2, "a": 1}),
        params: serde_json::json!({}),
        definition_file: "w.toml".into(),
        definition: "id = \"W\"".into(),
        created_at: now,
        started_at: Some(now),
        finished_at: None,
        error: None,
    }
}

/// `store` after `join`, as an engine uses it.
fn engine(address: &str, host: &str) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(address, dir.path()).unwrap();
    store.join(host, std::process::id(), &["process".to_string()]).unwrap();
    (dir, store)
}

#[test]
fn a_lease_is_held_by_one_engine_at_a_time_and_a_takeover_gets_a_greater_term() {
    let db = database();
    // One by URL, one by conninfo: both forms reach the same database.
    let ((_a, first), (_b, second)) = (engine(&db.url, "host-a"), engine(&db.conninfo, "host-b"));
    let ttl = Duration::from_secs(30);
    let held = first.hold_lease("scheduler", ttl).unwrap().expect("a free lease is taken");
    assert_eq!(second.hold_lease("scheduler", ttl).unwrap(), None, "another engine holds it: no, not an error");
    assert!(second.hold_lease("retention", ttl).unwrap().is_some(), "another name is another lease");
    second.release_lease("scheduler").unwrap();
    assert_eq!(first.hold_lease("scheduler", ttl).unwrap(), Some(held), "releasing another's lease does nothing");

    // A renewal for no time at all: the lease lapses at once, as one not renewed in time does.
    assert_eq!(first.hold_lease("scheduler", Duration::ZERO).unwrap(), Some(held));
    let deadline = Instant::now() + Duration::from_secs(10);
    let taken = loop {
        if let Some(term) = second.hold_lease("scheduler", ttl).unwrap() {
            break term;
        }
        assert!(Instant::now() < deadline, "the lapsed lease was never free to take");
    };
    assert!(taken > held, "a takeover gets a greater term: {taken:?} after {held:?}");
    assert_eq!(first.hold_lease("scheduler", ttl).unwrap(), None, "the former holder's renewal fails");
    assert_eq!(second.hold_lease("scheduler", ttl).unwrap(), Some(taken), "the new holder renews its term");

    second.release_lease("scheduler").unwrap();
    let back = first.hold_lease("scheduler", ttl).unwrap().expect("a released lease is free at once");
    assert!(back > taken, "{back:?} after {taken:?}");
    assert!(back > Term(2));
}

#[test]
fn a_lease_taken_while_a_batch_is_open_is_decided_at_once_and_stays_when_the_batch_fails() {
    let db = database();
    let ((_a, first), (_b, second)) = (engine(&db.url, "host-a"), engine(&db.url, "host-b"));
    let ttl = Duration::from_secs(30);
    first.insert_run(&run("r1"), &[]).unwrap();
    first.begin_batch().unwrap();
    first.set_paused("W", true, chrono::Utc::now()).unwrap();
    let held = first.hold_lease("scheduler", ttl).unwrap().expect("a free lease is taken");
    // Not waiting for the batch's commit: the other engine is told no at once.
    assert_eq!(second.hold_lease("scheduler", ttl).unwrap(), None);
    first.insert_run(&run("r1"), &[]).unwrap_err(); // the same id again: the batch cannot be committed
    first.commit_batch().unwrap_err();
    assert!(first.has_pending());
    assert!(second.paused_workflows().unwrap().is_empty(), "nothing of the failed batch landed");
    assert_eq!(second.hold_lease("scheduler", ttl).unwrap(), None, "the lease did not go with the batch");
    assert_eq!(first.hold_lease("scheduler", ttl).unwrap(), Some(held));
}

/// Inside a current-thread runtime, as `conveyor run` calls the store.
#[tokio::test]
async fn engines_are_registered_with_their_routes_and_heartbeats_on_the_databases_clock() {
    let db = database();
    let (_dir, store) = engine(&db.url, "host-a");
    let first = store.join("host-a", 4242, &["process".to_string(), "http".to_string()]).unwrap();
    let client = db.connect().await.unwrap();
    let registered =
        client.query_one("SELECT id, host, pid, routes, count(*) OVER () FROM engines", &[]).await.unwrap();
    assert_eq!(registered.get::<_, i64>(0) as u64, first.0);
    assert_eq!(registered.get::<_, String>(1), "host-a");
    assert_eq!(registered.get::<_, i64>(2), 4242);
    assert_eq!(registered.get::<_, Vec<String>>(3), ["process", "http"]);
    assert_eq!(registered.get::<_, i64>(4), 1, "joining again replaces the earlier registration");

    let heartbeat = "SELECT heartbeat_at, now() FROM engines";
    let before: chrono::DateTime<chrono::Utc> = client.query_one(heartbeat, &[]).await.unwrap().get(0);
    store.heartbeat().unwrap();
    let row = client.query_one(heartbeat, &[]).await.unwrap();
    let (after, server_now): (chrono::DateTime<chrono::Utc>, chrono::DateTime<chrono::Utc>) = (row.get(0), row.get(1));
    assert!(after > before && after <= server_now, "{before} → {after} (the server's now: {server_now})");
}

#[test]
fn leases_and_heartbeats_need_a_join_first() {
    let ((_keep, _dir), store) = open();
    let error = store.hold_lease("scheduler", Duration::from_secs(1)).unwrap_err();
    assert!(error.to_string().contains("call join before heartbeats and leases"), "{error}");
    assert!(store.heartbeat().is_err());
}

#[tokio::test]
async fn engines_starting_together_migrate_the_database_once() {
    let db = database();
    let barrier = Arc::new(Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (url, barrier) = (db.url.clone(), Arc::clone(&barrier));
            std::thread::spawn(move || {
                let dir = tempfile::tempdir().unwrap();
                barrier.wait();
                Store::connect(&url, dir.path()).map(|store| store.integrity_check().unwrap())
            })
        })
        .collect();
    for start in starts {
        assert_eq!(start.join().unwrap().unwrap(), "ok");
    }
    let client = db.connect().await.unwrap();
    let versions = client.query("SELECT version FROM schema_version", &[]).await.unwrap();
    assert_eq!(versions.len(), 1);
    let ((_keep, _dir), again) = open();
    assert_eq!(again.integrity_check().unwrap(), "ok");
}

#[test]
fn json_keeps_its_key_order_as_written() {
    let ((_keep, _dir), store) = open();
    store.insert_run(&run("r1"), &[]).unwrap();
    let input = store.run("r1").unwrap().unwrap().input;
    assert_eq!(serde_json::to_string(&input).unwrap(), r#"{"b":2,"a":1}"#);
}

#[test]
fn a_nul_in_free_text_is_kept_as_a_replacement_character_rather_than_refusing_the_write() {
    let ((_keep, _dir), store) = open();
    let mut failed = run("r1");
    failed.error = Some("exit status 1: \0garbage".into());
    store.insert_run(&failed, &[]).unwrap();
    store.audit(chrono::Utc::now(), "me", "cli", "{}", false, "said \0").unwrap();
    assert_eq!(store.run("r1").unwrap().unwrap().error.as_deref(), Some("exit status 1: \u{fffd}garbage"));
    assert_eq!(store.audit_trail(1).unwrap()[0].outcome, "said \u{fffd}");
}

#[test]
fn a_batch_whose_connection_is_killed_before_its_commit_is_written_again_whole_on_a_new_one() {
    let db = database();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&db.url, dir.path()).unwrap();
    store.begin_batch().unwrap();
    store.insert_run(&run("r1"), &[]).unwrap();
    store.audit(chrono::Utc::now(), "me", "cli", "trigger W", true, "started run r1 of W").unwrap();
    assert_eq!(kill_connections(&db), 1);

    // The commit fails on the dead connection and is written again at once, whole, on a new one.
    store.commit_batch().unwrap();
    let trouble = store.take_trouble().expect("the step had to wait for the store");
    assert!(trouble.contains("PostgreSQL"), "{trouble}");
    assert!(!store.has_pending());
    assert_eq!(store.runs(None, 10).unwrap().len(), 1, "written once, whole");
    assert_eq!(store.audit_trail(10).unwrap().len(), 1);
}

#[test]
fn a_store_whose_idle_connection_was_killed_connects_again() {
    let ((db, _dir), store) = open();
    store.insert_run(&run("r1"), &[]).unwrap();
    assert_eq!(kill_connections(&db), 1);
    // A read is asked again on a new connection.
    assert_eq!(store.run("r1").unwrap().map(|run| run.id).as_deref(), Some("r1"));
    // A write is not (it might have landed before the connection went): at worst the first one fails, as
    // an error, never a hang, and the next goes through.
    assert_eq!(kill_connections(&db), 1);
    if let Err(error) = store.set_paused("W", true, chrono::Utc::now()) {
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        store.set_paused("W", true, chrono::Utc::now()).unwrap();
    }
    assert_eq!(store.paused_workflows().unwrap().into_iter().collect::<Vec<_>>(), ["W"]);
}

#[test]
fn writes_while_the_server_is_down_are_held_and_written_once_it_is_back() {
    let cluster = Cluster::start_private();
    let db = cluster.database();
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&db.url, dir.path()).unwrap();
    store.begin_batch().unwrap();
    store.set_paused("W", true, chrono::Utc::now()).unwrap();
    cluster.stop_server();
    store.set_paused("X", true, chrono::Utc::now()).unwrap_err();
    let error = store.commit_batch().unwrap_err();
    assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    let error = store.retry_pending().unwrap_err();
    assert!(error.to_string().contains("cannot connect to PostgreSQL at conveyor@"), "{error}");
    assert!(store.has_pending());

    cluster.start_server();
    store.retry_pending().unwrap();
    let paused: Vec<String> = store.paused_workflows().unwrap().into_iter().collect();
    assert_eq!(paused, ["W", "X"], "both writes of the step, in one commit");
}

/// Log lines written while the closure runs, on any thread the store starts.
fn captured_logs(work: impl FnOnce()) -> String {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl Write for Capture {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let capture = Capture(Arc::default());
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, work);
    String::from_utf8_lossy(&capture.0.lock().unwrap()).into_owned()
}

#[test]
fn the_password_of_the_address_is_in_no_error_and_no_log_line() {
    const PASSWORD: &str = "pw-s3cret-9d1f";
    let db = database();
    let with_password = db.url.replacen("postgres://conveyor@", &format!("postgres://conveyor:{PASSWORD}@"), 1);
    assert!(with_password.contains(PASSWORD));
    let dir = tempfile::tempdir().unwrap();
    let mut errors = Vec::new();
    let logs = captured_logs(|| {
        let store = Store::connect(&with_password, dir.path()).unwrap();
        store.set_paused("W", true, chrono::Utc::now()).unwrap();
        kill_connections(&db);
        for _ in 0..2 {
            if let Err(error) = store.paused_workflows() {
                errors.push(error.to_string());
            }
        }
        drop(store);
        let missing = with_password.replace(&db.name, "no_such_database");
        errors.push(Store::connect(&missing, dir.path()).err().expect("no such database").to_string());
        let conninfo = format!("{} password={PASSWORD} dbname=no_such_database", db.conninfo);
        errors.push(Store::connect(&conninfo, dir.path()).err().expect("no such database").to_string());
        errors.push(Store::connect(&format!("{with_password}?sslmode=maybe"), dir.path()).err().unwrap().to_string());
    });
    let missing = &errors[errors.len() - 3];
    assert!(missing.contains("no_such_database") && missing.contains("does not exist"), "{missing}");
    assert!(errors.last().unwrap().contains("sslmode"), "what was wrong is said: {errors:?}");
    for text in errors.iter().chain([&logs]) {
        assert!(!text.contains(PASSWORD), "the password shows in: {text}");
    }
}

/// How many chunks the database keeps of an attempt's log, and the largest one's size.
async fn chunks(db: &TestDatabase, run: &str) -> (i64, i32) {
    let client = db.connect().await.unwrap();
    let row = client
        .query_one("SELECT count(*), COALESCE(max(length(bytes)), 0) FROM log_chunks WHERE run_id = $1", &[&run])
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

fn read_log(store: &Store, run: &str) -> std::io::Result<String> {
    let attempt = store.attempts(run, None).unwrap().pop().expect("an attempt");
    let mut text = String::new();
    std::io::Read::read_to_string(&mut store.logs().open(&attempt)?, &mut text)?;
    Ok(text)
}

fn finished(mut attempt: conveyor::store::AttemptRecord) -> conveyor::store::AttemptRecord {
    attempt.state = conveyor::state::AttemptState::Succeeded;
    attempt.finished_at = Some(chrono::Utc::now());
    attempt
}

#[tokio::test]
async fn a_finished_attempts_log_is_kept_in_the_database_and_read_on_a_host_without_its_file() {
    let db = database();
    let (_a, engine_host) = engine(&db.url, "host-a");
    let (_b, other_host) = engine(&db.url, "host-b");
    engine_host.insert_run(&run("r1"), &[]).unwrap();
    let path = engine_host.log_path("r1", "T", 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, "first line\nsecond line\n").unwrap();
    let started = conveyor::store::AttemptRecord::started("r1", "T", 1, "svc", chrono::Utc::now(), path.clone());
    engine_host.insert_attempt(&started).unwrap();
    assert_eq!(chunks(&db, "r1").await.0, 0, "a running attempt's log stays on its host");
    // Both "hosts" are this machine: the other host's view is the engine's file gone.
    let elsewhere = path.with_extension("away");
    let on_the_other_host = |store: &Store| {
        std::fs::rename(&path, &elsewhere).unwrap();
        let text = read_log(store, "r1");
        std::fs::rename(&elsewhere, &path).unwrap();
        text
    };
    let error = on_the_other_host(&other_host).unwrap_err();
    assert!(error.to_string().contains("still running on another host"), "{error}");

    let task = conveyor::store::TaskRecord::pending("r1", "T", 0);
    engine_host.save_attempt_and_task(&finished(started.clone()), &task).unwrap();
    assert_eq!(chunks(&db, "r1").await.0, 1);
    assert_eq!(on_the_other_host(&other_host).unwrap(), "first line\nsecond line\n", "read from the database");
    std::fs::write(&path, "the file wins where it is\n").unwrap();
    assert_eq!(read_log(&other_host, "r1").unwrap(), "the file wins where it is\n");

    // Written again (an attempt's record is written more than once): its chunks are replaced, not added to.
    std::fs::write(&path, "rewritten\n").unwrap();
    engine_host.insert_attempt(&finished(started)).unwrap();
    assert_eq!(chunks(&db, "r1").await.0, 1);
    assert_eq!(on_the_other_host(&other_host).unwrap(), "rewritten\n");
}

#[tokio::test]
async fn a_long_log_keeps_its_last_mebibyte_in_chunks_of_at_most_256_kib_and_says_it_was_cut() {
    let db = database();
    let (_a, engine_host) = engine(&db.url, "host-a");
    let (_b, other_host) = engine(&db.url, "host-b");
    engine_host.insert_run(&run("r1"), &[]).unwrap();
    let path = engine_host.log_path("r1", "T", 1);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut log = std::fs::File::create(&path).unwrap();
    let mut written = 0;
    for n in 0.. {
        let line = format!("line {n:07} of a long log\n");
        log.write_all(line.as_bytes()).unwrap();
        written += line.len();
        if written > 1024 * 1024 + 300 * 1024 {
            break;
        }
    }
    drop(log);
    let attempt = conveyor::store::AttemptRecord::started("r1", "T", 1, "svc", chrono::Utc::now(), path.clone());
    engine_host.insert_attempt(&finished(attempt)).unwrap();
    let (count, largest) = chunks(&db, "r1").await;
    assert_eq!(count, 5, "1 MiB and a note, in 256 KiB pieces");
    assert!(largest <= 256 * 1024, "{largest}");

    // The other host has no file: it reads the database's chunks.
    let whole = std::fs::read_to_string(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    let text = read_log(&other_host, "r1").unwrap();
    let (note, rest) = text.split_once('\n').unwrap();
    assert!(note.starts_with("[conveyor] the database keeps only the last "), "{note}");
    assert!(note.contains(&format!("({written} bytes in all")), "{note}");
    assert!(whole.ends_with(rest) && rest.starts_with("line "), "the end, from a full line");
    assert!(rest.len() <= 1024 * 1024 && rest.len() > 1024 * 1024 - 100);
}

#[tokio::test]
async fn a_quiet_attempts_text_is_kept_as_its_log_when_it_has_no_file() {
    let db = database();
    let (_a, engine_host) = engine(&db.url, "host-a");
    let (_b, other_host) = engine(&db.url, "host-b");
    engine_host.insert_run(&run("r1"), &[]).unwrap();
    let mut attempt = conveyor::store::AttemptRecord::started(
        "r1",
        "T",
        1,
        "svc",
        chrono::Utc::now(),
        engine_host.log_path("r1", "T", 1),
    );
    attempt.log_text = Some("[conveyor] exit status 0\n".into());
    engine_host.insert_attempt(&finished(attempt)).unwrap();
    assert_eq!(chunks(&db, "r1").await.0, 0, "the record's text is the log: no copy of it in chunks");
    assert_eq!(read_log(&other_host, "r1").unwrap(), "[conveyor] exit status 0\n");
}

#[tokio::test]
async fn a_joined_store_records_which_engine_inserted_a_run_and_ran_an_attempt_and_a_shell_does_not_erase_it() {
    let db = database();
    let (_a, engine_host) = engine(&db.url, "host-a");
    let me = engine_host.engines().unwrap().pop().expect("registered").id;
    engine_host.insert_run(&run("r1"), &[]).unwrap();
    let attempt = conveyor::store::AttemptRecord::started("r1", "T", 1, "svc", chrono::Utc::now(), "T.1.log".into());
    engine_host.insert_attempt(&attempt).unwrap();
    assert_eq!(engine_host.attempts("r1", None).unwrap()[0].engine, Some(me.0));
    let client = db.connect().await.unwrap();
    let row = client.query_one("SELECT engine FROM runs WHERE id = 'r1'", &[]).await.unwrap();
    assert_eq!(row.get::<_, Option<i64>>(0), Some(me.0 as i64));

    // A shell (not joined) writing the attempt again leaves the engine that ran it.
    let (_dir, shell) = open_on(&db);
    shell.insert_attempt(&finished(attempt)).unwrap();
    let read = shell.attempts("r1", None).unwrap().remove(0);
    assert_eq!((read.engine, read.state), (Some(me.0), conveyor::state::AttemptState::Succeeded));
}

/// A store on `db` that has not joined, as a shell's command opens it.
fn open_on(db: &TestDatabase) -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&db.url, dir.path()).unwrap();
    (dir, store)
}

/// The ids a read of changes holds, by kind.
fn changed(changes: &conveyor::store::Changes) -> (Vec<String>, Vec<String>, Vec<(String, u32)>) {
    (
        changes.runs.iter().map(|run| run.id.clone()).collect(),
        changes.tasks.iter().map(|task| format!("{}/{}", task.run_id, task.name)).collect(),
        changes.attempts.iter().map(|attempt| (attempt.task.clone(), attempt.attempt)).collect(),
    )
}

#[test]
fn every_write_of_a_run_its_task_and_attempt_is_seen_once_after_the_last_read() {
    let (_keep, store) = open();
    let (_other_host, engine) = engine(&_keep.0.url, "host-a");
    assert_eq!(store.change_mark().unwrap(), Some(0));
    let nothing = store.changes_since(0, 100).unwrap().expect("PostgreSQL stamps changes");
    assert_eq!((changed(&nothing), nothing.through), ((vec![], vec![], vec![]), 0));

    let mut task = conveyor::store::TaskRecord::pending("r1", "T", 0);
    engine.insert_run(&run("r1"), std::slice::from_ref(&task)).unwrap();
    let first = store.changes_since(0, 100).unwrap().unwrap();
    assert_eq!(changed(&first), (vec!["r1".to_string()], vec!["r1/T".to_string()], vec![]));
    assert!(first.through > 0);
    assert_eq!(store.change_mark().unwrap(), Some(first.through));
    let quiet = store.changes_since(first.through, 100).unwrap().unwrap();
    assert_eq!((changed(&quiet), quiet.through), ((vec![], vec![], vec![]), first.through), "nothing new");

    // The task starts an attempt; the run is not written.
    task.state = conveyor::state::TaskState::Running;
    task.attempts = 1;
    let attempt = conveyor::store::AttemptRecord::started("r1", "T", 1, "svc", chrono::Utc::now(), "t.log".into());
    engine.save_attempt_and_task(&attempt, &task).unwrap();
    let second = store.changes_since(first.through, 100).unwrap().unwrap();
    assert_eq!(changed(&second), (vec![], vec!["r1/T".to_string()], vec![("T".to_string(), 1)]));
    assert_eq!(second.tasks[0].state, conveyor::state::TaskState::Running, "the row as it is now");

    // Written twice since the last read: seen once, as last written.
    engine.insert_attempt(&finished(attempt.clone())).unwrap();
    let mut ended = run("r1");
    ended.state = RunState::Succeeded;
    engine.update_run(&ended).unwrap();
    engine.update_run(&ended).unwrap();
    let third = store.changes_since(second.through, 100).unwrap().unwrap();
    assert_eq!(changed(&third), (vec!["r1".to_string()], vec![], vec![("T".to_string(), 1)]));
    assert_eq!(third.runs[0].state, RunState::Succeeded);
    assert_eq!(third.attempts[0].state, conveyor::state::AttemptState::Succeeded);
    assert!(third.through > second.through);
}

#[test]
fn a_read_of_changes_cut_at_its_limit_leaves_the_rest_for_the_next_without_skipping_any() {
    let (_keep, store) = open();
    for id in ["r1", "r2", "r3"] {
        store.insert_run(&run(id), &[conveyor::store::TaskRecord::pending(id, "T", 0)]).unwrap();
    }
    let (mut after, mut runs, mut tasks) = (0, Vec::new(), Vec::new());
    for _ in 0..10 {
        let read = store.changes_since(after, 2).unwrap().unwrap();
        if read.through == after {
            break;
        }
        assert!(read.runs.len() <= 2 && read.tasks.len() <= 2);
        let (r, t, _) = changed(&read);
        runs.extend(r);
        tasks.extend(t);
        after = read.through;
    }
    assert_eq!(runs, ["r1", "r2", "r3"], "each run once, in the order written");
    assert_eq!(tasks, ["r1/T", "r2/T", "r3/T"]);
}

#[tokio::test]
async fn a_committed_write_of_a_run_wakes_a_listener_of_changes_and_a_rolled_back_one_does_not() {
    let (keep, store) = open();
    let mut woken = store.change_wake_ups().expect("PostgreSQL notifies changes");
    assert_eq!(within(&mut woken, 10).await.expect("woken once on connecting"), Some(()));
    let client = keep.0.connect().await.unwrap();
    client.batch_execute("BEGIN; UPDATE runs SET state = state; ROLLBACK").await.unwrap();
    store.insert_run(&run("r1"), &[]).unwrap();
    assert_eq!(within(&mut woken, 10).await.expect("woken by the insert's commit"), Some(()));
    client.batch_execute("BEGIN; INSERT INTO meta VALUES ('k', 'v'); COMMIT").await.unwrap();
    client.batch_execute("UPDATE runs SET state = state WHERE id = 'none'").await.unwrap();
    assert!(within(&mut woken, 1).await.is_err(), "no run, task or attempt written, nobody woken");
}

/// The next wake-up within `seconds`; `Err` when none came.
async fn within(
    woken: &mut tokio::sync::mpsc::Receiver<()>,
    seconds: u64,
) -> Result<Option<()>, tokio::time::error::Elapsed> {
    tokio::time::timeout(Duration::from_secs(seconds), woken.recv()).await
}
