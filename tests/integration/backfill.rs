//! `conveyor backfill` through the real binary: in an engine of its own and against a daemon.

use std::path::Path;
use std::process::{Child, Stdio};

use chrono::{DateTime, Utc};
use conveyor::state::RunState;
use conveyor::store::{RunRecord, Store, timestamp};

use crate::common::*;
use crate::engine_harness::wait_until;

/// 02:30 every day in New York: on 2026-03-08 that time does not exist (clocks go from 02:00 to 03:00).
const DAILY: &str = r#"
id = "Daily"
[trigger]
type = "schedule"
cron = "30 2 * * *"
timezone = "America/New_York"
[[tasks]]
name = "Dump"
run = 'env | grep ^CONVEYOR_ > "out/$CONVEYOR_RUN_ID.env"'
"#;

/// Hourly on the 1st of January only: a daemon under test never fires it itself (the tests backfill that day).
fn hourly(id: &str, max_active_runs: u32) -> String {
    format!(
        "id = \"{id}\"\nmax_active_runs = {max_active_runs}\n[trigger]\ntype = \"schedule\"\ncron = \"0 * 1 1 *\"\ntimezone = \"Europe/Berlin\"\n[[tasks]]\nname = \"Work\"\nrun = 'sleep 0.3'\n"
    )
}

fn runs(dir: &Path, workflow: &str) -> Vec<RunRecord> {
    let store = Store::open(&dir.join(".conveyor")).unwrap();
    let mut runs = store.runs(Some(workflow), 1000).unwrap();
    runs.reverse();
    runs
}

fn scheduled(run: &RunRecord) -> String {
    run.input["scheduled_at"].as_str().unwrap().to_string()
}

fn utc(text: &str) -> String {
    timestamp(DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc))
}

#[test]
fn a_backfill_across_a_dst_change_runs_exactly_the_instants_next_prints_once_each_unless_rerun() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "daily.toml", DAILY);
    std::fs::create_dir_all(dir.path().join("workflows/out")).unwrap();
    // Midnight of 2026-03-06 in New York, and the four fires after it.
    let next = run(&["next", "Daily", "--from", "2026-03-06T00:00:00-05:00", "-n", "4"], dir.path());
    let expected: Vec<String> = text(&next.stdout).lines().map(str::to_string).collect();
    assert_eq!(expected.len(), 4, "{expected:?}");
    assert!(expected.contains(&"2026-03-08T03:00:00-04:00".to_string()), "{expected:?}");

    let dry = run(&["backfill", "Daily", "--from", "2026-03-06", "--to", "2026-03-09", "--dry-run"], dir.path());
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry.stderr));
    let listed: Vec<String> = text(&dry.stdout).lines().map(str::to_string).collect();
    let would: Vec<String> = expected.iter().map(|at| format!("{at}  start")).collect();
    assert_eq!(listed[..4], would[..], "{listed:?}");
    assert!(!dir.path().join(".conveyor/conveyor.db").exists() || runs(dir.path(), "Daily").is_empty());

    let first =
        run(&["backfill", "Daily", "--from", "2026-03-06", "--to", "2026-03-09", "--parallel", "2"], dir.path());
    let out = text(&first.stdout);
    assert_eq!(first.status.code(), Some(0), "{out}{}", text(&first.stderr));
    assert!(out.contains("backfill of Daily: 4 of 4 started, 4 succeeded, 0 failed"), "{out}");
    // Not a terminal: a line per step, no bar.
    assert!(out.contains("2026-03-08T03:00:00-04:00  started run ") && !out.contains('\r'), "{out}");
    let stored = runs(dir.path(), "Daily");
    let mut instants: Vec<String> = stored.iter().map(scheduled).collect();
    instants.sort();
    assert_eq!(instants, expected.iter().map(|at| utc(at)).collect::<Vec<_>>());
    for run in &stored {
        assert_eq!(
            (run.trigger.as_str(), run.input["trigger"].as_str(), run.state),
            ("backfill", Some("backfill"), RunState::Succeeded)
        );
        let env = std::fs::read_to_string(dir.path().join(format!("workflows/out/{}.env", run.id))).unwrap();
        assert!(env.lines().any(|line| line == format!("CONVEYOR_SCHEDULED_AT={}", scheduled(run))), "{env}");
    }
    let store = Store::open(&dir.path().join(".conveyor")).unwrap();
    let fires = store.fires("Daily", 10).unwrap();
    assert_eq!(fires.len(), 4);
    assert!(fires.iter().all(|fire| fire.outcome == "backfill" && fire.run_id.is_some()), "{fires:?}");

    let again = run(&["backfill", "Daily", "--from", "2026-03-06", "--to", "2026-03-09"], dir.path());
    assert_eq!(again.status.code(), Some(0), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("nothing to start (4 instants, 4 already run"), "{}", text(&again.stdout));
    assert_eq!(runs(dir.path(), "Daily").len(), 4);
    let dry = run(&["backfill", "Daily", "--from", "2026-03-06", "--to", "2026-03-09", "--dry-run"], dir.path());
    let listed = text(&dry.stdout);
    assert!(listed.lines().next().unwrap().starts_with(&format!("{}  skip (has run 2026", expected[0])), "{listed}");
    assert!(listed.contains("0 would start, 4 skipped"), "{listed}");

    // The day of the gap only, again: its instant is 03:00 EDT, 07:00 UTC.
    let rerun = run(&["backfill", "Daily", "--from", "2026-03-08", "--to", "2026-03-08", "--rerun"], dir.path());
    assert_eq!(rerun.status.code(), Some(0), "{}", text(&rerun.stderr));
    let stored = runs(dir.path(), "Daily");
    assert_eq!(stored.len(), 5);
    assert_eq!(scheduled(stored.last().unwrap()), "2026-03-08T07:00:00.000Z");
}

struct Daemon(Child);

/// A daemon over `dir`, once it has activated every workflow there (each has its schedule state stored).
fn start_daemon(dir: &Path) -> Daemon {
    let child = conveyor().arg("daemon").current_dir(dir).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let daemon = Daemon(child);
    let ids: Vec<String> = std::fs::read_dir(dir.join("workflows"))
        .unwrap()
        .map(|entry| std::fs::read_to_string(entry.unwrap().path()).unwrap())
        .filter_map(|text| {
            text.lines().next().and_then(|line| line.strip_prefix("id = ")).map(|id| id.trim_matches('"').to_string())
        })
        .collect();
    wait_until("the daemon has activated every workflow", || {
        let Ok(Some(store)) = Store::peek(&dir.join(".conveyor")) else { return false };
        ids.iter().all(|id| store.scheduled_through(id).is_ok_and(|through| through.is_some()))
    });
    daemon
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let _ = self.0.wait();
    }
}

/// A `conveyor backfill` whose runs wait for the file `go`: should the test fail half-way, its drop writes
/// the file, so the task ends and the backfill with it, and no process outlives the test.
struct Backfill {
    child: Child,
    go: std::path::PathBuf,
}

impl Drop for Backfill {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = std::fs::write(&self.go, "");
            // SAFETY: a signal to our own child.
            unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

fn overlapping_at_most(runs: &[RunRecord]) -> usize {
    let mut edges: Vec<(DateTime<Utc>, i32)> = Vec::new();
    for run in runs {
        edges.push((run.started_at.unwrap(), 1));
        edges.push((run.finished_at.unwrap(), -1));
    }
    // An end and a start at the same millisecond: the end first, as the start waited for it.
    edges.sort();
    let (mut now, mut most) = (0, 0);
    for (_, change) in edges {
        now += change;
        most = most.max(now);
    }
    most as usize
}

#[test]
fn against_a_daemon_a_backfill_keeps_to_its_parallelism_and_to_max_active_runs() {
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    write(&folder, "one.toml", &hourly("One", 16));
    write(&folder, "two.toml", &hourly("Two", 2));
    let daemon = start_daemon(dir.path());

    let range = ["--from", "2026-01-01T00:00:00+01:00", "--to", "2026-01-01T04:00:00+01:00"];
    let one = run(&[&["backfill", "One", "--parallel", "1"][..], &range].concat(), dir.path());
    assert_eq!(one.status.code(), Some(0), "{}{}", text(&one.stdout), text(&one.stderr));
    assert!(text(&one.stderr).contains("an engine already holds"), "{}", text(&one.stderr));
    let stored = runs(dir.path(), "One");
    assert_eq!(stored.len(), 5);
    assert_eq!(overlapping_at_most(&stored), 1, "{stored:#?}");

    let two = run(&[&["backfill", "Two", "--parallel", "5"][..], &range].concat(), dir.path());
    assert_eq!(two.status.code(), Some(0), "{}{}", text(&two.stdout), text(&two.stderr));
    let stored = runs(dir.path(), "Two");
    assert_eq!(stored.len(), 5);
    assert!(stored.iter().all(|run| run.trigger == "backfill" && run.state == RunState::Succeeded));
    assert!(overlapping_at_most(&stored) <= 2, "{stored:#?}");
    drop(daemon);
}

#[test]
fn a_backfill_refuses_bad_input_and_says_what_was_expected() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("workflows"), "daily.toml", DAILY);
    write(&dir.path().join("workflows"), "hand.toml", "id = \"Hand\"\n[[tasks]]\nname = \"A\"\nrun = 'true'\n");
    let cases: &[(&[&str], &str)] = &[
        (&["backfill", "Nope", "--from", "2026-01-01"], "no workflow `Nope`"),
        (
            &["backfill", "Hand", "--from", "2026-01-01"],
            "workflow `Hand` has a manual trigger: only a scheduled workflow",
        ),
        (&["backfill", "Daily", "--from", "last tuesday"], "bad --from `last tuesday`: expected RFC 3339"),
        (&["backfill", "Daily", "--from", "2026-01-01", "--to", "2026-13-01"], "bad --to `2026-13-01`"),
        (&["backfill", "Daily", "--from", "2026-02-01", "--to", "2026-01-01"], "is after --to"),
        (
            &["backfill", "Daily", "--from", "2026-01-01", "--to", "2026-01-10", "--max", "3"],
            "has more than 3 instants",
        ),
        (
            &["backfill", "Daily", "--from", "2026-01-01", "--to", "2026-01-02", "--parallel", "0"],
            "--parallel must be at least 1",
        ),
    ];
    for (args, expected) in cases {
        let output = run(args, dir.path());
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(text(&output.stderr).contains(expected), "{args:?}: {}", text(&output.stderr));
    }
    assert!(!dir.path().join(".conveyor/conveyor.db").exists(), "nothing was started");
}

#[test]
fn ctrl_c_stops_starting_runs_and_those_started_go_on_in_the_daemon() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    // Each run waits for a file the test writes: the first is still running when Ctrl-C comes.
    let slow = hourly("Slow", 16).replace("run = 'sleep 0.3'", "run = 'while [ ! -e go ]; do sleep 0.05; done'");
    write(&folder, "slow.toml", &slow);
    let daemon = start_daemon(dir.path());
    let child = conveyor()
        .args(["backfill", "Slow", "--from", "2026-01-01T00:00:00+01:00", "--to", "2026-01-01T04:00:00+01:00"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Backfill { child, go: folder.join("go") };
    let backfill = &mut guard.child;
    let mut lines = std::io::BufReader::new(backfill.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("started run "), "{first}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(backfill.id() as i32, libc::SIGINT) };
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let status = backfill.wait().unwrap();
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut backfill.stderr.take().unwrap(), &mut stderr).unwrap();
    assert_eq!(status.code(), Some(130), "{rest:?} {stderr}");
    assert!(stderr.contains("interrupted: no new run starts; the runs already started go on"), "{stderr}");
    assert!(rest.iter().any(|line| line.starts_with("backfill of Slow: 1 of 5 started")), "{rest:?}");
    let stored = runs(dir.path(), "Slow");
    assert_eq!(stored.len(), 1);
    std::fs::write(folder.join("go"), "").unwrap();
    wait_until("the run started goes on to succeed", || runs(dir.path(), "Slow")[0].state == RunState::Succeeded);
    assert_eq!(runs(dir.path(), "Slow").len(), 1, "no run started after Ctrl-C");
    drop(daemon);
}

#[test]
fn in_an_engine_of_its_own_ctrl_c_stops_starting_runs_and_waits_for_those_started() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("workflows");
    let slow = hourly("Slow", 16).replace("run = 'sleep 0.3'", "run = 'while [ ! -e go ]; do sleep 0.05; done'");
    write(&folder, "slow.toml", &slow);
    let child = conveyor()
        .args(["backfill", "Slow", "--from", "2026-01-01T00:00:00+01:00", "--to", "2026-01-01T04:00:00+01:00"])
        .current_dir(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut guard = Backfill { child, go: folder.join("go") };
    let backfill = &mut guard.child;
    let mut lines = std::io::BufReader::new(backfill.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.contains("started run "), "{first}");
    // SAFETY: a signal to our own child.
    unsafe { libc::kill(backfill.id() as i32, libc::SIGINT) };
    let mut stderr = std::io::BufReader::new(backfill.stderr.take().unwrap());
    let mut said = String::new();
    stderr.read_line(&mut said).unwrap();
    stderr.read_line(&mut said).unwrap();
    assert!(said.contains("no new run starts; waiting for the runs already started to end"), "{said}");
    std::fs::write(folder.join("go"), "").unwrap();
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    assert_eq!(backfill.wait().unwrap().code(), Some(130), "{rest:?}");
    assert!(rest.iter().any(|line| line.ends_with(" succeeded") && line.starts_with("run ")), "{rest:?}");
    assert!(rest.iter().any(|line| line.starts_with("backfill of Slow: 1 of 5 started, 1 succeeded")), "{rest:?}");
    let stored = runs(dir.path(), "Slow");
    assert_eq!((stored.len(), stored[0].state), (1, RunState::Succeeded));
}
