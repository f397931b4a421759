//! Schedules on the injected clock (overlap, catch-up, jitter, pauses) and file arrivals in real time.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::clock::ManualClock;
use conveyor::engine::{Command, Event};
use conveyor::state::RunState;
use conveyor::store::Store;

use crate::engine_harness::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Every 10 seconds; the task waits until the file `release` exists, so a run stays active on demand.
fn every_ten_seconds(policy: &str) -> String {
    format!(
        "id = \"Tick\"\n{policy}\n[trigger]\ntype = \"schedule\"\ncron = \"*/10 * * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Hold\"\nrun = 'while [ ! -f release ]; do sleep 0.02; done; cat > \"$CONVEYOR_OUTPUT\"'\n"
    )
}

async fn next_run_started(h: &mut Harness) -> String {
    h.until(|event| match event {
        Event::Run(run) if run.state == RunState::Running && run.trigger == "schedule" => Some(run.id.clone()),
        _ => None,
    })
    .await
}

/// Lets the engine act on a clock change before the test looks at the store: the barrier answers once the
/// timers due by the clock have fired and what they did is committed.
async fn settle(h: &Harness) {
    h.engine.barrier().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_at_its_instants_and_records_each_fire() {
    let clock = ManualClock::new(at("2026-01-01T00:00:01Z"));
    let mut h = Setup::new(&every_ten_seconds("")).clock(&clock).file("release", "").start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(8));
    settle(&h).await;
    assert!(h.runs_of("Tick").is_empty(), "nothing before 00:00:10");
    clock.advance(Duration::from_secs(1));
    let run = next_run_started(&mut h).await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let input = h.task(&run, "Hold").output.unwrap();
    assert_eq!(
        (input["trigger"].as_str(), input["scheduled_at"].as_str()),
        (Some("schedule"), Some("2026-01-01T00:00:10.000Z"))
    );
    clock.advance(Duration::from_secs(10));
    next_run_started(&mut h).await;
    settle(&h).await;
    let fires = h.store().fires("Tick", 10).unwrap();
    let seen: Vec<(String, &str)> =
        fires.iter().map(|f| (conveyor::store::timestamp(f.scheduled_at), f.outcome.as_str())).collect();
    assert_eq!(
        seen,
        vec![("2026-01-01T00:00:20.000Z".to_string(), "started"), ("2026-01-01T00:00:10.000Z".to_string(), "started")]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_skip_leaves_the_active_run_alone_and_records_the_skip() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    let first = next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    settle(&h).await;
    assert_eq!(h.runs_of("Tick").len(), 1);
    let fires = h.store().fires("Tick", 10).unwrap();
    assert_eq!(fires[0].outcome, "skipped: a run is still active (overlap = skip)");
    let alert = &h.store().alerts(5).unwrap()[0];
    assert_eq!(
        alert.message,
        "Tick: the scheduled fire at 2026-01-01T00:00:20.000Z was skipped: a run is still active (overlap = skip)"
    );
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.run_reaches(&first, RunState::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_queue_runs_the_fire_once_the_active_run_ends() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("overlap = \"queue\"")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    let first = next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    settle(&h).await;
    assert_eq!(h.store().fires("Tick", 1).unwrap()[0].outcome, "queued: a run is still active");
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.run_reaches(&first, RunState::Succeeded).await;
    let second = next_run_started(&mut h).await;
    h.run_reaches(&second, RunState::Succeeded).await;
    let input = h.task(&second, "Hold").output.unwrap();
    assert_eq!(input["scheduled_at"], "2026-01-01T00:00:20.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_cancel_previous_replaces_the_active_run() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("overlap = \"cancel_previous\"")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    let first = next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    let cancelled = h.run_reaches(&first, RunState::Cancelled).await;
    assert_eq!(
        cancelled.error.as_deref(),
        Some("cancelled: a newer scheduled run replaces it (overlap = cancel_previous)")
    );
    let runs = h.runs_of("Tick");
    assert_eq!(runs.len(), 2);
    assert!(runs[1].state.is_active());
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.run_reaches(&runs[1].id, RunState::Succeeded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlap_allow_is_bounded_by_max_active_runs() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("overlap = \"allow\"\nmax_active_runs = 2")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    settle(&h).await;
    assert_eq!(h.runs_of("Tick").len(), 2);
    assert_eq!(h.store().fires("Tick", 1).unwrap()[0].outcome, "skipped: max_active_runs (2) reached");
    std::fs::write(h.workflows().join("release"), "").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_workflow_skips_its_fires_and_records_them() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("")).clock(&clock).file("release", "").start();
    h.engine.start("Tick").await.unwrap();
    h.engine.send(Command::PauseWorkflow { workflow: "Tick".into() }).await.unwrap();
    clock.advance(Duration::from_secs(5));
    settle(&h).await;
    assert!(h.runs_of("Tick").is_empty());
    assert_eq!(h.store().fires("Tick", 1).unwrap()[0].outcome, "skipped: the workflow is paused");
    h.engine.send(Command::ResumeWorkflow { workflow: "Tick".into() }).await.unwrap();
    clock.advance(Duration::from_secs(10));
    next_run_started(&mut h).await;
}

fn hourly(catchup: &str) -> String {
    format!(
        "id = \"Hourly\"\ncatchup = \"{catchup}\"\nkeep_runs = 500\n[trigger]\ntype = \"schedule\"\ncron = \"0 * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Note\"\nrun = 'cat > \"$CONVEYOR_OUTPUT\"'\n"
    )
}

/// Starts `Hourly` at 2026-01-10T10:20Z after an engine last handled its fires at `since`.
async fn catch_up(catchup: &str, since: &str) -> Harness {
    let clock = ManualClock::new(at("2026-01-10T10:20:00Z"));
    let since = at(since);
    let h = Setup::new(&hourly(catchup))
        .clock(&clock)
        .prepare(move |store: &Store| store.set_scheduled_through("Hourly", since).unwrap())
        .start();
    h.engine.start("Hourly").await.unwrap();
    h
}

async fn wait_for_runs(h: &Harness, count: usize) {
    wait_until(&format!("{count} runs have finished"), || {
        let runs = h.runs_of("Hourly");
        runs.len() >= count && runs.iter().all(|run| run.state.is_finished())
    });
    settle(h).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_after_no_missed_fire_runs_nothing() {
    let h = catch_up("latest", "2026-01-10T10:05:00Z").await;
    settle(&h).await;
    assert!(h.runs_of("Hourly").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_latest_runs_the_one_missed_fire() {
    let h = catch_up("latest", "2026-01-10T09:50:00Z").await;
    wait_for_runs(&h, 1).await;
    let runs = h.runs_of("Hourly");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].input["scheduled_at"], "2026-01-10T10:00:00.000Z");
    assert_eq!(h.store().fires("Hourly", 5).unwrap()[0].outcome, "catch-up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_latest_after_150_missed_fires_runs_only_the_newest() {
    let h = catch_up("latest", "2026-01-04T04:30:00Z").await;
    wait_for_runs(&h, 1).await;
    let runs = h.runs_of("Hourly");
    assert_eq!(runs.len(), 1);
    assert_eq!(runs[0].input["scheduled_at"], "2026-01-10T10:00:00.000Z");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_all_after_150_missed_fires_runs_the_newest_100_in_order_and_warns() {
    // 2026-01-04T05:00 .. 2026-01-10T10:00 is 150 hourly fires.
    let h = catch_up("all", "2026-01-04T04:30:00Z").await;
    wait_for_runs(&h, 100).await;
    assert_eq!(h.runs_of("Hourly").len(), 100);
    // The fires that started runs, in the order they started them (the test clock stands still, so the
    // runs' own timestamps are all equal).
    let mut started: Vec<_> =
        h.store().fires("Hourly", 1000).unwrap().into_iter().filter(|f| f.run_id.is_some()).collect();
    started.reverse();
    let scheduled: Vec<String> = started.iter().map(|f| conveyor::store::timestamp(f.scheduled_at)).collect();
    assert_eq!(scheduled.len(), 100);
    assert_eq!(scheduled[0], "2026-01-06T07:00:00.000Z");
    assert_eq!(scheduled[99], "2026-01-10T10:00:00.000Z");
    assert!(scheduled.windows(2).all(|pair| pair[0] < pair[1]), "oldest first, one after another");
    let alerts = h.store().alerts(10).unwrap();
    assert!(alerts.iter().any(|a| a.message
        == "Hourly missed more than 100 scheduled fires while no engine ran; running the newest 100 (catchup = all)"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn catch_up_none_runs_nothing_missed() {
    let h = catch_up("none", "2026-01-09T04:30:00Z").await;
    settle(&h).await;
    assert!(h.runs_of("Hourly").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitter_delays_each_fire_within_its_bound() {
    let clock = ManualClock::new(at("2026-01-01T00:00:00Z"));
    let workflow = "id = \"Jittery\"\njitter = \"30s\"\n[trigger]\ntype = \"schedule\"\ncron = \"* * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n";
    let mut h = Setup::new(workflow).clock(&clock).start();
    h.engine.start("Jittery").await.unwrap();
    for minute in 1..=5u64 {
        clock.set(
            at("2026-01-01T00:00:00Z") + chrono::Duration::minutes(minute as i64) - chrono::Duration::milliseconds(1),
        );
        settle(&h).await;
        assert_eq!(h.runs_of("Jittery").len(), minute as usize - 1, "nothing before the scheduled instant");
        for _ in 0..31 {
            clock.advance(Duration::from_secs(1));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        next_run_started(&mut h).await;
    }
    for fire in h.store().fires("Jittery", 10).unwrap() {
        let delay = fire.fired_at - fire.scheduled_at;
        assert!(delay >= chrono::Duration::zero() && delay <= chrono::Duration::seconds(31), "{delay:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_written_in_two_parts_starts_exactly_one_run_that_sees_it_whole() {
    let workflow = "id = \"Inbox\"\n[trigger]\ntype = \"event\"\nwatch = \"inbox/*.json\"\nsettle = \"700ms\"\n[[tasks]]\nname = \"Read\"\nrun = 'file=$(sed -n \"s/.*\\\"file\\\": *\\\"\\([^\\\"]*\\)\\\".*/\\1/p\"); cat \"$file\"'\n";
    let mut h = Setup::new(workflow).file("inbox/old.json", "{\"old\": true}\n").start();
    h.engine.start("Inbox").await.unwrap();
    let first = h
        .until(|event| match event {
            Event::Run(run) if run.state == RunState::Succeeded => Some(run.clone()),
            _ => None,
        })
        .await;
    assert!(first.input["file"].as_str().unwrap().ends_with("inbox/old.json"), "a file present at start is processed");

    let path = h.workflows().join("inbox/new.json");
    std::fs::write(&path, "{\"part\": 1,\n").unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    use std::io::Write;
    std::fs::OpenOptions::new().append(true).open(&path).unwrap().write_all(b" \"whole\": true}\n").unwrap();
    let run = h
        .until(|event| match event {
            Event::Run(run) if run.state == RunState::Succeeded => Some(run.clone()),
            _ => None,
        })
        .await;
    assert_eq!(run.trigger, "event");
    assert!(h.log(&run.id, "Read", 1).contains("{\"part\": 1,\n \"whole\": true}\n"), "{}", h.log(&run.id, "Read", 1));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.runs_of("Inbox").len(), 2, "one run per file, never twice");

    // A new engine on the same state does not process the same files again.
    h.restart().await;
    h.engine.start("Inbox").await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(h.runs_of("Inbox").len(), 2);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_behind_a_run_that_never_ends_stays_bounded() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("overlap = \"queue\"")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    next_run_started(&mut h).await;
    for _ in 0..101 {
        clock.advance(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    wait_until("101 fires are recorded after the first", || h.store().fires("Tick", 200).unwrap().len() == 102);
    let fires = h.store().fires("Tick", 200).unwrap();
    assert_eq!(fires[0].outcome, "skipped: 100 fires already wait for the active run");
    assert_eq!(fires.iter().filter(|f| f.outcome == "queued: a run is still active").count(), 100);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fire_queued_behind_a_run_survives_a_crash_and_starts_when_the_run_ends() {
    let clock = ManualClock::new(at("2026-01-01T00:00:05Z"));
    let mut h = Setup::new(&every_ten_seconds("overlap = \"queue\"")).clock(&clock).start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(5));
    let first = next_run_started(&mut h).await;
    clock.advance(Duration::from_secs(10));
    settle(&h).await;
    let queued = h.store().fires("Tick", 1).unwrap().remove(0);
    assert_eq!((queued.outcome.as_str(), queued.queued), ("queued: a run is still active", true));
    h.engine.simulate_crash().await;
    h.reopen();
    h.engine.start("Tick").await.unwrap();
    std::fs::write(h.workflows().join("release"), "").unwrap();
    wait_until("the resumed run and the queued fire's run have succeeded", || {
        let runs = h.runs_of("Tick");
        runs.len() == 2 && runs.iter().all(|run| run.state == RunState::Succeeded)
    });
    let runs = h.runs_of("Tick");
    assert_eq!(runs[0].id, first);
    assert_eq!(h.task(&runs[1].id, "Hold").output.unwrap()["scheduled_at"], "2026-01-01T00:00:20.000Z");
    assert!(h.store().fires("Tick", 10).unwrap().iter().all(|fire| !fire.queued), "the queue is empty");
    h.engine.shutdown().await;
}

/// Watches `inbox/*.json` with a short settle; the task only succeeds.
const INBOX: &str = "id = \"Inbox\"\n[trigger]\ntype = \"event\"\nwatch = \"inbox/*.json\"\nsettle = \"200ms\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n";

async fn next_file_run(h: &mut Harness) -> conveyor::store::RunRecord {
    h.until(|event| match event {
        Event::Run(run) if run.state == RunState::Succeeded => Some(run.clone()),
        _ => None,
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_that_is_not_utf8_is_processed_at_start_up_and_live_with_its_bytes_escaped() {
    use std::os::unix::ffi::OsStrExt;
    let mut h = Setup::new(INBOX).file("inbox/.keep", "").start();
    let inbox = h.workflows().join("inbox");
    std::fs::write(inbox.join(std::ffi::OsStr::from_bytes(b"old-\xff.json")), "{}").unwrap();
    h.engine.start("Inbox").await.unwrap();
    let old = next_file_run(&mut h).await;
    // `file` must be a JSON string, so the bytes that are not UTF-8 are written `\xNN` and flagged.
    assert_eq!(old.input["file"], format!("{}/old-\\xff.json", inbox.display()));
    assert_eq!(old.input["file_escaped"], true);

    // A backslash is escaped too, so the text decodes to exactly one name.
    std::fs::write(inbox.join(std::ffi::OsStr::from_bytes(b"new\\-\xfe.json")), "{}").unwrap();
    let new = next_file_run(&mut h).await;
    assert_eq!(new.input["file"], format!("{}/new\\\\-\\xfe.json", inbox.display()));
    assert_eq!(new.input["file_escaped"], true);

    std::fs::write(inbox.join("plain.json"), "{}").unwrap();
    let plain = next_file_run(&mut h).await;
    assert_eq!(plain.input["file"], format!("{}/plain.json", inbox.display()));
    assert!(plain.input.get("file_escaped").is_none(), "a UTF-8 name keeps the input it always had");

    // Recorded under the escaped name: a new engine does not process them again. The start-up scan sets its
    // settle timers before the later file's, so once that file's run is done the others have been decided.
    h.restart().await;
    h.engine.start("Inbox").await.unwrap();
    std::fs::write(inbox.join("later.json"), "{}").unwrap();
    let later = next_file_run(&mut h).await;
    assert_eq!(later.input["file"], format!("{}/later.json", inbox.display()));
    h.engine.barrier().await.unwrap();
    assert_eq!(h.runs_of("Inbox").len(), 4);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symlink_is_followed_only_inside_the_watched_folder_at_start_up_and_live_alike() {
    use std::os::unix::fs::symlink;
    let mut h = Setup::new(INBOX).file("inbox/real.txt", "inside").file("outside/secret.json", "{}").start();
    let (inbox, secret) = (h.workflows().join("inbox"), h.workflows().join("outside/secret.json"));
    symlink(&secret, inbox.join("out-old.json")).unwrap();
    symlink("real.txt", inbox.join("in-old.json")).unwrap();
    h.engine.start("Inbox").await.unwrap();
    let old = next_file_run(&mut h).await;
    assert_eq!(old.input["file"], format!("{}/in-old.json", inbox.display()));

    // The outside link first: its alert is raised on its own event, before the inside link has settled.
    symlink(&secret, inbox.join("out-new.json")).unwrap();
    symlink(inbox.join("real.txt"), inbox.join("in-new.json")).unwrap();
    let new = next_file_run(&mut h).await;
    assert_eq!(new.input["file"], format!("{}/in-new.json", inbox.display()));
    h.engine.barrier().await.unwrap();

    assert_eq!(h.runs_of("Inbox").len(), 2, "no link to outside was processed");
    let mut refused: Vec<String> = h
        .store()
        .alerts(20)
        .unwrap()
        .into_iter()
        .filter(|alert| alert.message.contains("is a symbolic link"))
        .map(|alert| alert.message)
        .collect();
    refused.sort();
    let secret = std::fs::canonicalize(&secret).unwrap();
    let expected: Vec<String> = ["out-new.json", "out-old.json"]
        .iter()
        .map(|name| {
            format!(
                "Inbox: {}/{name} is a symbolic link to {}, outside the watched folder {}: it is not processed (move or copy the file into the folder instead)",
                inbox.display(),
                secret.display(),
                inbox.display()
            )
        })
        .collect();
    assert_eq!(refused, expected, "one alert per link, the same at start-up and live");
    h.engine.shutdown().await;
}
