//! `conveyor daemon` and `conveyor next` through the real binary.

use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use conveyor::state::RunState;
use conveyor::store::{StateLock, Store};

use crate::common::*;
use crate::engine_harness::wait_until;

fn every_second(word: &str) -> String {
    format!(
        "id = \"Beat\"\n[trigger]\ntype = \"schedule\"\ncron = \"* * * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Say\"\nrun = 'echo {word}'\n"
    )
}

fn start_daemon(dir: &std::path::Path) -> Child {
    conveyor().arg("daemon").current_dir(dir).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn store(dir: &std::path::Path) -> Store {
    let started = Instant::now();
    while !dir.join(".conveyor/conveyor.db").exists() {
        assert!(started.elapsed() < Duration::from_secs(20), "the daemon created its store");
        std::thread::sleep(Duration::from_millis(50));
    }
    Store::open(&dir.join(".conveyor")).unwrap()
}

fn terminate(daemon: &mut Child) -> std::process::ExitStatus {
    let status = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    daemon.wait().unwrap()
}

#[test]
fn a_daemon_fires_every_second_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "beat.toml", &every_second("tick"));
    let mut daemon = start_daemon(dir.path());
    let store = store(dir.path());
    wait_until("three scheduled runs have finished", || {
        store.runs(Some("Beat"), 100).unwrap().iter().filter(|run| run.state == RunState::Succeeded).count() >= 3
    });
    let second = start_daemon(dir.path());
    let refused = second.wait_with_output().unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(text(&refused.stderr).contains("another engine (PID"), "{}", text(&refused.stderr));

    let status = terminate(&mut daemon);
    assert_eq!(status.code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut log).unwrap();
    assert!(log.contains("SIGTERM: stopping"), "{log}");
    assert!(log.contains("stopped"), "{log}");
    let file_log = std::fs::read_to_string(dir.path().join(".conveyor/conveyor.log")).unwrap();
    assert!(file_log.contains("conveyor daemon (PID"), "{file_log}");

    let runs = store.runs(Some("Beat"), 100).unwrap();
    assert!(runs.iter().all(|run| run.state.is_finished()), "no run is left running");
    let mut fires: Vec<_> = store.fires("Beat", 100).unwrap().into_iter().map(|f| f.scheduled_at).collect();
    fires.reverse();
    assert!(
        fires.windows(2).all(|pair| pair[1] - pair[0] == chrono::Duration::seconds(1)),
        "one fire a second: {fires:?}"
    );
    assert!(fires.iter().all(|at| at.timestamp_subsec_millis() == 0));
    assert!(!StateLock::is_held(&dir.path().join(".conveyor")), "the lock is released");
}

#[test]
fn editing_a_workflow_while_the_daemon_runs_changes_what_it_does_next() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    write(&folder, "beat.toml", &every_second("first-version"));
    let mut daemon = start_daemon(dir.path());
    let store = store(dir.path());
    let said = |store: &Store, word: &str| {
        store.runs(Some("Beat"), 200).unwrap().iter().any(|run| {
            let log = std::fs::read_to_string(store.log_path(&run.id, "Say", 1)).unwrap_or_default();
            log.contains(word)
        })
    };
    wait_until("the first version ran", || said(&store, "first-version"));
    write(&folder, "beat.toml", &every_second("second-version"));
    wait_until("the edited version ran", || said(&store, "second-version"));

    write(&folder, "beat.toml", "id = \"Beat\"\n[trigger]\ntype = \"schedule\"\ncron = \"* * *\"\n");
    wait_until("an alert names the broken file", || {
        store.alerts(20).unwrap().iter().any(|alert| {
            alert.message.contains("beat.toml:4:8: bad cron expression `* * *`")
                && alert.message.ends_with("(workflow Beat keeps its last good definition)")
        })
    });
    let before = store.runs(Some("Beat"), 500).unwrap().len();
    wait_until("the last good definition keeps running", || store.runs(Some("Beat"), 500).unwrap().len() >= before + 2);

    write(&folder, "other.toml", "id = \"Other\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n");
    // The folder is read again once the edit has settled (300 ms): until then `Other` is unknown.
    wait_until("a workflow added while the daemon runs can be triggered", || {
        run(&["trigger", "Other"], dir.path()).status.code() == Some(0)
    });
    assert_eq!(terminate(&mut daemon).code(), Some(0));
}

#[test]
fn next_prints_upcoming_fires_in_the_workflows_zone() {
    let output = run(
        &["next", "DailyGrantPipeline", "-n", "3", "--from", "2026-03-07T12:00:00Z"],
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(
        text(&output.stdout),
        "2026-03-08T03:00:00-04:00\n2026-03-09T02:00:00-04:00\n2026-03-10T02:00:00-04:00\n"
    );
    let json = run(
        &["next", "DailyGrantPipeline", "-n", "2", "--from", "2026-11-01T00:00:00Z", "--json"],
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
    );
    assert_eq!(text(&json.stdout), "[\"2026-11-01T02:00:00-05:00\",\"2026-11-02T02:00:00-05:00\"]\n");
    let manual = run(&["next", "ReleaseChecks"], std::path::Path::new(env!("CARGO_MANIFEST_DIR")));
    assert_eq!(text(&manual.stderr), "conveyor: workflow `ReleaseChecks` has a manual trigger, not a schedule\n");
}

#[test]
fn next_from_the_far_future_says_there_is_no_fire_instead_of_panicking() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The latest instant RFC 3339 can write: past chrono's own year 9999 once the offset is taken off.
    let output =
        run(&["next", "DailyGrantPipeline", "-n", "18446744073709551615", "--from", "9999-12-31T23:59:59-23:59"], root);
    assert_eq!(output.status.code(), Some(0), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "");
    assert_eq!(
        text(&output.stderr),
        "conveyor: workflow `DailyGrantPipeline` has no fire after +10000-01-01T23:58:59+00:00 (fires are found up to the year 5000)\n"
    );
    // A count beyond what is left gives what is left, up to where cron times are searched.
    let json = run(&["next", "DailyGrantPipeline", "--from", "4999-12-30T00:00:00Z", "-n", "99", "--json"], root);
    assert_eq!(
        text(&json.stdout),
        "[\"4999-12-30T02:00:00-05:00\",\"4999-12-31T02:00:00-05:00\",\"5000-01-01T02:00:00-05:00\"]\n"
    );
}

#[test]
fn a_servers_error_body_cannot_forge_a_line_of_conveyor_log() {
    let dir = tempfile::tempdir().unwrap();
    let workflows = dir.path().join("workflows");
    let url = crate::cli_runs::hostile_server();
    write(&workflows, "conveyor.toml", &format!("[services.Hostile]\nurl = \"{url}\"\n"));
    write(&workflows, "call.toml", "id = \"Call\"\n[[tasks]]\nname = \"Ask\"\nservice = \"Hostile\"\n");
    let mut daemon = start_daemon(dir.path());
    let store = store(dir.path());
    let triggered = run(&["trigger", "Call"], dir.path());
    assert_eq!(triggered.status.code(), Some(0), "{}", text(&triggered.stderr));
    wait_until("the call has failed", || {
        store.runs(Some("Call"), 10).unwrap().iter().any(|run| run.state == RunState::Failed)
    });
    assert_eq!(terminate(&mut daemon).code(), Some(0));
    let file_log = std::fs::read(dir.path().join(".conveyor/conveyor.log")).unwrap();
    let file_log = text(&file_log);
    assert!(file_log.contains(r"HTTP 500: boom\nFORGED \x1b]0;title\x07"), "the alert is logged, escaped: {file_log}");
    assert!(!file_log.contains(['\x1b', '\x07']), "{file_log}");
    assert!(file_log.lines().all(|line| !line.starts_with("FORGED")), "{file_log}");
}

#[test]
fn under_systemd_the_daemon_says_ready_feeds_the_watchdog_from_its_loop_and_says_stopping() {
    use std::os::unix::net::UnixDatagram;
    let dir = tempfile::tempdir().unwrap();
    write(
        &dir.path().join("workflows"),
        "peek.toml",
        "id = \"Peek\"\n[[tasks]]\nname = \"Look\"\nrun = 'echo \"socket=${NOTIFY_SOCKET:-none} watchdog=${WATCHDOG_USEC:-none}\" > peek.txt'\n",
    );
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut daemon = conveyor()
        .arg("daemon")
        .current_dir(dir.path())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "300000")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let received = |what: &str| -> String {
        let mut buffer = [0u8; 512];
        loop {
            let size = socket.recv(&mut buffer).unwrap_or_else(|error| panic!("waiting for {what}: {error}"));
            let message = String::from_utf8_lossy(&buffer[..size]).into_owned();
            if message.lines().any(|line| line == what) {
                return message;
            }
        }
    };
    let ready = received("READY=1");
    assert!(ready.contains("STATUS=running 1 workflow(s)"), "{ready}");
    received("WATCHDOG=1");
    received("WATCHDOG=1");
    // A task does not inherit the daemon's socket: it could otherwise report readiness or feed the watchdog.
    assert!(run(&["trigger", "Peek"], dir.path()).status.success());
    let peek = dir.path().join("workflows/peek.txt");
    wait_until("the task ran", || peek.exists());
    wait_until("the task wrote its line", || std::fs::read_to_string(&peek).unwrap_or_default().ends_with('\n'));
    assert_eq!(std::fs::read_to_string(&peek).unwrap(), "socket=none watchdog=none\n");
    let status = std::process::Command::new("kill").args(["-TERM", &daemon.id().to_string()]).status().unwrap();
    assert!(status.success());
    received("STOPPING=1");
    assert_eq!(daemon.wait().unwrap().code(), Some(0));
}

#[test]
fn the_daemons_log_comes_as_one_json_object_a_line_for_log_shippers() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "beat.toml", &every_second("tick"));
    let mut daemon = conveyor()
        .args(["daemon", "--log-format", "json"])
        .current_dir(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let store = store(dir.path());
    wait_until("a scheduled run has finished", || {
        store.runs(Some("Beat"), 10).unwrap().iter().any(|run| run.state == RunState::Succeeded)
    });
    assert_eq!(terminate(&mut daemon).code(), Some(0));
    let mut log = String::new();
    std::io::Read::read_to_string(daemon.stderr.as_mut().unwrap(), &mut log).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|error| panic!("not JSON ({error}): {line}")))
        .collect();
    assert!(lines.iter().all(|line| line["level"].is_string() && line["timestamp"].is_string()), "{log}");
    let messages: Vec<&str> = lines.iter().filter_map(|line| line["fields"]["message"].as_str()).collect();
    assert!(messages.iter().any(|message| message.starts_with("conveyor daemon (PID")), "{messages:?}");
    assert!(messages.iter().any(|message| message.starts_with("SIGTERM: stopping")), "{messages:?}");
    let file = std::fs::read_to_string(dir.path().join(".conveyor/conveyor.log")).unwrap();
    assert!(file.lines().all(|line| serde_json::from_str::<serde_json::Value>(line).is_ok()), "{file}");
}
