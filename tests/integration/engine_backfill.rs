//! `Command::Backfill` through the library: which instants the engine accepts, when it declines, and what a
//! scheduled run's tasks are told of their instant.

use std::time::Duration;

use chrono::{DateTime, Utc};
use conveyor::clock::ManualClock;
use conveyor::engine::{Command, Declined, Event};
use conveyor::state::RunState;

use crate::engine_harness::*;

fn at(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text).unwrap().with_timezone(&Utc)
}

/// Every 10 seconds, one run at a time; its task prints its instant and waits for the file `release`.
const HELD: &str = "id = \"Tick\"\nmax_active_runs = 1\noverlap = \"allow\"\n[trigger]\ntype = \"schedule\"\ncron = \"*/10 * * * * *\"\ntimezone = \"UTC\"\n[[tasks]]\nname = \"Hold\"\nrun = 'while [ ! -f release ]; do sleep 0.02; done; printf \"{\\\"at\\\": \\\"%s\\\"}\" \"$CONVEYOR_SCHEDULED_AT\" > \"$CONVEYOR_OUTPUT\"'\n";

fn backfill(at_text: &str, rerun: bool) -> Command {
    Command::Backfill { workflow: "Tick".into(), scheduled_at: at(at_text), rerun }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engine_backfills_only_instants_of_the_schedule_once_each_and_within_max_active_runs() {
    let mut h = Setup::new(HELD).start();
    let refused = h.engine.send(backfill("2026-01-01T00:00:15Z", false)).await.unwrap_err();
    assert!(refused.starts_with("2026-01-01T00:00:15.000Z is not an instant of Tick's schedule"), "{refused}");

    let started = h.engine.send(backfill("2026-01-01T00:00:10Z", false)).await.unwrap();
    assert_eq!(started.declined, None);
    let first = started.run.unwrap();
    let full = h.engine.send(backfill("2026-01-01T00:00:20Z", false)).await.unwrap();
    assert_eq!((full.declined, full.run), (Some(Declined::AtCapacity), None), "{}", full.message);

    std::fs::write(h.workflows().join("release"), "").unwrap();
    let record = h.run_reaches(&first, RunState::Succeeded).await;
    assert_eq!(
        (record.trigger.as_str(), record.input["scheduled_at"].as_str()),
        ("backfill", Some("2026-01-01T00:00:10.000Z"))
    );
    assert_eq!(h.task(&first, "Hold").output.unwrap()["at"], "2026-01-01T00:00:10.000Z");
    let fire = &h.store().fires("Tick", 1).unwrap()[0];
    assert_eq!((fire.outcome.as_str(), fire.run_id.as_deref()), ("backfill", Some(first.as_str())));

    let again = h.engine.send(backfill("2026-01-01T00:00:10Z", false)).await.unwrap();
    assert_eq!((again.declined, again.run.as_deref()), (Some(Declined::AlreadyRun), Some(first.as_str())));
    let rerun = h.engine.send(backfill("2026-01-01T00:00:10Z", true)).await.unwrap();
    let second = rerun.run.unwrap();
    assert_ne!(second, first);
    h.run_reaches(&second, RunState::Succeeded).await;
    assert_eq!(h.runs_of("Tick").len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scheduled_runs_tasks_see_its_instant_in_conveyor_scheduled_at_and_a_manual_runs_do_not() {
    let clock = ManualClock::new(at("2026-01-01T00:00:01Z"));
    let mut h = Setup::new(HELD).clock(&clock).file("release", "").start();
    h.engine.start("Tick").await.unwrap();
    clock.advance(Duration::from_secs(9));
    let run = h
        .until(|event| match event {
            Event::Run(run) if run.state == RunState::Running && run.trigger == "schedule" => Some(run.id.clone()),
            _ => None,
        })
        .await;
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(h.task(&run, "Hold").output.unwrap()["at"], "2026-01-01T00:00:10.000Z");
    let manual = h.trigger("Tick").await;
    h.run_reaches(&manual, RunState::Succeeded).await;
    assert_eq!(h.task(&manual, "Hold").output.unwrap()["at"], "", "no instant: the variable is not set");
}
