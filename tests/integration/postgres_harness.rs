//! The throwaway PostgreSQL of `postgres.rs` against a real server: what the store's PostgreSQL tests will lean on.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio_postgres::error::SqlState;

use crate::postgres::{Cluster, database, kill_connections, locate_bindir, sweep_stale};

#[tokio::test]
async fn a_test_database_keeps_the_rows_written_to_it() {
    let db = database();
    let client = db.connect().await.unwrap();
    client.batch_execute("CREATE TABLE notes (id int PRIMARY KEY, text text NOT NULL)").await.unwrap();
    client.execute("INSERT INTO notes VALUES ($1, $2), ($3, $4)", &[&1, &"first", &2, &"second"]).await.unwrap();

    let rows = client.query("SELECT text FROM notes ORDER BY id", &[]).await.unwrap();
    let texts: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
    assert_eq!(texts, ["first", "second"]);
}

#[tokio::test]
async fn the_url_form_reaches_the_same_database_as_the_conninfo() {
    let db = database();
    assert!(db.url.starts_with("postgres://conveyor@%2F"), "the socket folder is the encoded host: {}", db.url);
    let by_conninfo = db.connect().await.unwrap();
    by_conninfo.batch_execute("CREATE TABLE marker (word text); INSERT INTO marker VALUES ('here')").await.unwrap();

    let (by_url, connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let row = by_url.query_one("SELECT current_database(), (SELECT word FROM marker)", &[]).await.unwrap();
    assert_eq!(row.get::<_, String>(0), db.name);
    assert_eq!(row.get::<_, String>(1), "here");
}

#[tokio::test]
async fn two_test_databases_do_not_see_each_others_tables() {
    let (first, second) = (database(), database());
    assert_ne!(first.name, second.name);
    first.connect().await.unwrap().batch_execute("CREATE TABLE only_in_first (x int)").await.unwrap();

    let error = second.connect().await.unwrap().query("SELECT x FROM only_in_first", &[]).await.unwrap_err();
    assert_eq!(error.code(), Some(&SqlState::UNDEFINED_TABLE), "{error}");
}

#[tokio::test]
async fn a_killed_connection_reports_an_error_and_a_new_one_works() {
    let db = database();
    let doomed = db.connect().await.unwrap();
    doomed.query_one("SELECT 1", &[]).await.unwrap();

    assert_eq!(kill_connections(&db), 1, "exactly the one session of this test's database");
    assert!(doomed.query_one("SELECT 1", &[]).await.is_err(), "a killed session does not answer");

    let fresh = db.connect().await.unwrap();
    assert_eq!(fresh.query_one("SELECT 41 + 1", &[]).await.unwrap().get::<_, i32>(0), 42);
}

#[tokio::test]
async fn a_private_cluster_restarts_with_its_data_and_leaves_nothing_when_dropped() {
    let cluster = Cluster::start_private();
    let db = cluster.database();
    let before = db.connect().await.unwrap();
    before.batch_execute("CREATE TABLE kept (word text); INSERT INTO kept VALUES ('survives')").await.unwrap();
    let first_server = cluster.server_pid().unwrap();

    cluster.stop_server();
    assert!(!alive(first_server), "the stopped server is gone");
    assert!(db.connect().await.is_err(), "nothing accepts connections while the server is down");
    assert!(before.query_one("SELECT 1", &[]).await.is_err(), "a session of the stopped server does not answer");

    cluster.start_server();
    let after = db.connect().await.unwrap();
    assert_eq!(after.query_one("SELECT word FROM kept", &[]).await.unwrap().get::<_, String>(0), "survives");

    cluster.restart();
    assert!(after.query_one("SELECT 1", &[]).await.is_err(), "a restart ends the sessions");
    assert_eq!(db.connect().await.unwrap().query("SELECT word FROM kept", &[]).await.unwrap().len(), 1);

    let (server, folder) = (cluster.server_pid().unwrap(), cluster.folder().to_path_buf());
    drop(cluster);
    assert!(!alive(server), "a dropped cluster's server is gone");
    assert!(!folder.exists(), "a dropped cluster's folder is removed");
}

#[test]
fn missing_server_binaries_fail_with_how_to_install_them() {
    let empty = tempfile::tempdir().unwrap();
    let error = locate_bindir("no-such-pg-config", empty.path()).unwrap_err();
    assert!(error.contains("apt-get install postgresql"), "{error}");
}

#[test]
fn the_server_binaries_are_found_by_searching_when_pg_config_is_missing() {
    let root = tempfile::tempdir().unwrap();
    for version in ["9", "15", "16"] {
        crate::common::write(&root.path().join(version).join("bin"), "initdb", "");
        crate::common::write(&root.path().join(version).join("bin"), "postgres", "");
    }
    crate::common::write(&root.path().join("17").join("bin"), "psql", ""); // a client only: no server
    assert_eq!(locate_bindir("no-such-pg-config", root.path()).unwrap(), root.path().join("16/bin"));
}

/// Run in a child test process by the test below; does nothing when run on its own.
#[test]
#[ignore = "a helper: the next test runs it in a process of its own and kills that"]
fn abandoned_cluster_helper() {
    if std::env::var_os("CONVEYOR_PG_ABANDON").is_none() {
        return;
    }
    let cluster = Cluster::start_private();
    println!("CLUSTER {} {}", cluster.server_pid().unwrap(), cluster.folder().display());
    std::thread::park(); // until the test kills this process
}

#[test]
fn the_server_of_a_killed_test_process_stops_and_a_later_run_removes_its_folder() {
    let mut helper = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "postgres_harness::abandoned_cluster_helper", "--ignored", "--nocapture"])
        .env("CONVEYOR_PG_ABANDON", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut announced = None;
    for line in BufReader::new(helper.stdout.take().unwrap()).lines() {
        if let Some(rest) = line.unwrap().strip_prefix("CLUSTER ") {
            let (pid, folder) = rest.split_once(' ').unwrap();
            announced = Some((pid.parse::<u32>().unwrap(), Path::new(folder).to_path_buf()));
            break;
        }
    }
    let Some((server, folder)) = announced else {
        let _ = helper.kill();
        panic!("the helper announced no cluster: {:?}", helper.wait());
    };
    assert!(alive(server));

    helper.kill().unwrap(); // SIGKILL: no destructor, no atexit; only the parent-death signal is left
    helper.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(server) {
        assert!(Instant::now() < deadline, "the abandoned server {server} stopped by itself");
        std::thread::sleep(Duration::from_millis(20));
    }

    // Another test binary's sweep (several run at once on a developer's machine) may hold the folder while
    // it removes it: then this sweep skips it, and it is gone a moment later.
    let deadline = Instant::now() + Duration::from_secs(20);
    while folder.exists() {
        sweep_stale(folder.parent().unwrap());
        assert!(Instant::now() < deadline || !folder.exists(), "the sweep removed the dead run's folder");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Alive and not a zombie (an orphaned server is reaped by whatever adopted it, maybe late).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| stat.rsplit_once(')').map(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])))
        .is_some_and(|dead| !dead)
}
