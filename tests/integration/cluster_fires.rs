//! Schedules on several engines sharing one PostgreSQL: whoever leads, and however leadership changes hands
//! (a leader paused past its lease, every engine stopped, the database's sessions terminated again and
//! again), each instant of a schedule is decided exactly once, as its `catchup` says.

use std::time::{Duration, Instant};

use chrono::{DateTime, DurationRound, Utc};

use crate::cluster::{Engines, RENEWAL, TTL, doubled, exactly_once, manual, scheduled};
use crate::postgres::kill_connections;

const EVERY_SECOND: &str = "* * * * * *";
const EVERY_TWO_SECONDS: &str = "*/2 * * * * *";

fn seconds(count: i64) -> chrono::Duration {
    chrono::Duration::seconds(count)
}

#[test]
fn a_leader_paused_past_its_lease_is_replaced_steps_down_once_resumed_and_no_instant_fires_twice_or_never() {
    let mut engines = Engines::new();
    // `all`: the instants that pass while nobody leads are fired by the next leader, so none may be missing.
    let ticks = format!("echo $PPID $CONVEYOR_RUN_ID >> {}/ticks", engines.marks().display());
    engines.workflow("tick.toml", &scheduled("Tick", EVERY_SECOND, "catchup = \"all\"", &ticks));
    engines.start_many(2);
    let first = engines.wait_for_leader();
    engines.wait_until("the first leader has fired three instants", || engines.decisions("Tick").len() >= 3);

    let standby = 1 - first.index;
    let standby_mark = engines.log_mark(standby);
    engines.pause(first.index);
    engines.wait_for_line(standby, standby_mark, "leads the cluster");
    let second = engines.wait_for_leader();
    assert_eq!(second.index, standby, "{}", engines.logs());
    assert!(second.term > first.term, "a new holding has a greater term: {first:?} then {second:?}");
    let fired = engines.decisions("Tick").len();
    engines.wait_until("the new leader has fired three instants", || engines.decisions("Tick").len() >= fired + 3);

    let old_mark = engines.log_mark(first.index);
    let before_resuming = runs_of(&engines, first.engine);
    engines.resume(first.index);
    // Its first renewal after resuming finds the lease taken. The bound is many renewals, so a slow machine
    // does not fail it; what it guards against is an old leader that never notices.
    engines.wait_for_line_within(RENEWAL * 10, first.index, old_mark, "stepped down");
    let fired = engines.decisions("Tick").len();
    engines.wait_until("the new leader goes on firing", || engines.decisions("Tick").len() >= fired + 3);
    assert!(engines.is_running(first.index), "the old leader stays up as a standby:\n{}", engines.logs());
    assert_eq!(engines.leader().map(|leader| leader.index), Some(standby), "{}", engines.logs());
    engines.terminate_all();

    let decisions = engines.decisions("Tick");
    let (from, to) = (*decisions.keys().next().unwrap(), *decisions.keys().last().unwrap());
    if let Err(problems) = exactly_once(&decisions, from, to, seconds(1)) {
        panic!("every instant from {from} to {to} exactly once:\n{problems}\n{}", engines.logs());
    }
    assert!(to - from >= seconds(8), "the test spans the pause: {from} to {to}");
    assert!(engines.term() > first.term);
    assert!(before_resuming.len() >= 3, "the first leader recorded runs: {before_resuming:?}");
    // Woken, it records no run: its commits are refused by term (and it offers no attempt, as an offer is made
    // only while its term holds the lease; `store_postgres` tests that).
    let late: Vec<String> =
        runs_of(&engines, first.engine).into_iter().filter(|run| !before_resuming.contains(run)).collect();
    assert!(late.is_empty(), "the resumed old leader recorded runs {late:?}\n{}", engines.logs());
}

/// The runs engine `engine` recorded, by id.
fn runs_of(engines: &Engines, engine: i64) -> Vec<String> {
    let rows = engines.query("SELECT id FROM runs WHERE engine = $1 ORDER BY id", &[&engine]);
    rows.iter().map(|row| row.get("id")).collect()
}

/// The instants at which `workflow` was decided, after `after`.
fn instants_after(engines: &Engines, workflow: &str, after: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    engines.decisions(workflow).into_keys().filter(|at| *at > after).collect()
}

#[test]
fn engines_all_stopped_for_several_periods_then_started_together_catch_up_as_each_workflow_says() {
    let mut engines = Engines::new();
    engines.workflow("all.toml", &scheduled("All", EVERY_TWO_SECONDS, "catchup = \"all\"", "true"));
    engines.workflow("latest.toml", &scheduled("Latest", EVERY_TWO_SECONDS, "", "true"));
    engines.workflow("none.toml", &scheduled("Nothing", EVERY_TWO_SECONDS, "catchup = \"none\"", "true"));
    let workflows = ["All", "Latest", "Nothing"];
    engines.start_many(2);
    engines.wait_for_leader();
    engines.wait_until("each workflow has fired twice", || {
        workflows.iter().all(|workflow| engines.decisions(workflow).len() >= 2)
    });
    engines.terminate_all();
    let last_before: Vec<DateTime<Utc>> =
        workflows.iter().map(|workflow| *engines.decisions(workflow).keys().last().unwrap()).collect();

    // The outage itself: no engine runs for three or four periods. Nothing to wait on but time.
    std::thread::sleep(Duration::from_secs(7));
    let restarted_at = Utc::now();
    for index in 0..2 {
        engines.restart(index);
    }
    engines.wait_for_leader();
    let settled = restarted_at + seconds(4);
    engines.wait_until("each workflow fires on schedule again after the restart", || {
        workflows.iter().all(|workflow| !instants_after(&engines, workflow, settled).is_empty())
    });
    engines.terminate_all();

    for (workflow, last_before) in workflows.iter().zip(last_before) {
        let decisions = engines.decisions(workflow);
        let problems = doubled(&decisions);
        assert!(problems.is_empty(), "{workflow}: instants decided twice: {problems:?}\n{}", engines.logs());
        let first = *decisions.keys().next().unwrap();
        let last = *decisions.keys().last().unwrap();
        if let Err(problems) = exactly_once(&decisions, first, last_before, seconds(2)) {
            panic!("{workflow} before the stop:\n{problems}");
        }
        let resumed = instants_after(&engines, workflow, last_before);
        let missed = resumed[0] - last_before;
        match *workflow {
            "All" => {
                if let Err(problems) = exactly_once(&decisions, first, last, seconds(2)) {
                    panic!("All: every instant, those missed while stopped included:\n{problems}\n{}", engines.logs());
                }
                let caught_up = resumed.iter().filter(|at| **at <= restarted_at).count();
                assert!(caught_up >= 3, "All: the gap spanned three periods or more, caught up: {resumed:?}");
            }
            "Latest" => {
                // One run for the newest instant missed (so no older one), then the schedule as usual.
                assert!(missed >= seconds(6), "Latest: the older missed instants are not run: {resumed:?}");
                assert!(resumed[0] > restarted_at - seconds(2), "Latest: the newest missed instant: {resumed:?}");
                assert_eq!(decisions[&resumed[0]], ["catch-up"], "{}", engines.logs());
                if let Err(problems) = exactly_once(&decisions, resumed[0], last, seconds(2)) {
                    panic!("Latest after the restart:\n{problems}");
                }
            }
            _ => {
                // Nothing missed is run: the first instant decided is one after the engines came back.
                assert!(resumed[0] > restarted_at, "Nothing: no missed instant is run: {resumed:?} ({restarted_at})");
                assert_ne!(decisions[&resumed[0]], ["catch-up"]);
                if let Err(problems) = exactly_once(&decisions, resumed[0], last, seconds(2)) {
                    panic!("Nothing after the restart:\n{problems}");
                }
            }
        }
    }
}

#[test]
fn sessions_terminated_again_and_again_neither_double_nor_lose_a_fire_and_work_still_starts() {
    let mut engines = Engines::new();
    engines.workflow("tick.toml", &scheduled("Tick", EVERY_SECOND, "catchup = \"all\"", "true"));
    engines.workflow("hello.toml", &manual("Hello", "true"));
    engines.start_many(2);
    engines.wait_for_leader();
    engines.wait_until("three instants have fired", || engines.decisions("Tick").len() >= 3);

    let storm_ends = Instant::now() + Duration::from_secs(12);
    let mut terminated = 0;
    while Instant::now() < storm_ends {
        terminated += kill_connections(&engines.db);
        // The storm's pace: often enough that fires and commits are cut, with a moment to reconnect between.
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(terminated >= 20, "the engines' sessions were terminated ({terminated})");
    let calm = Utc::now();

    // Once it settles, work that another shell asks for still starts and the schedule goes on.
    let run = engines.trigger("Hello");
    engines.wait_until("the triggered run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));
    engines.wait_until("the schedule fires after the storm", || {
        engines.decisions("Tick").keys().any(|at| *at > calm + seconds(2))
    });
    // Every run of the storm ends: no attempt is left offered and unclaimed, or claimed by a worker that never
    // heard its claim's answer; and none ran twice.
    engines.wait_until("every run started before the calm has finished", || {
        let active = engines.query(
            "SELECT 1 FROM runs WHERE workflow = 'Tick' AND state IN ('running', 'queued') AND created_at < $1",
            &[&calm],
        );
        active.is_empty()
    });
    let twice = engines
        .query("SELECT run_id FROM attempts WHERE state = 'succeeded' GROUP BY run_id, task HAVING count(*) > 1", &[]);
    assert!(twice.is_empty(), "a task succeeded twice in {} run(s)\n{}", twice.len(), engines.logs());
    for index in 0..2 {
        assert!(engines.is_running(index), "engine {index} survived its sessions' ending:\n{}", engines.logs());
    }
    engines.terminate_all();

    let decisions = engines.decisions("Tick");
    let (from, to) = (*decisions.keys().next().unwrap(), *decisions.keys().last().unwrap());
    if let Err(problems) = exactly_once(&decisions, from, to, seconds(1)) {
        panic!("every instant from {from} to {to} exactly once:\n{problems}\n{}", engines.logs());
    }
}

#[test]
fn three_engines_decide_each_instant_of_fifty_every_second_workflows_exactly_once_for_two_minutes() {
    const WORKFLOWS: usize = 50;
    const SPAN: i64 = 120;
    let mut engines = Engines::new();
    for number in 0..WORKFLOWS {
        let id = format!("Beat{number:02}");
        engines.workflow(&format!("{id}.toml"), &scheduled(&id, EVERY_SECOND, "catchup = \"all\"", "true"));
    }
    engines.start_many(3);
    engines.wait_for_leader();
    let count_since = |since: DateTime<Utc>| -> i64 {
        let rows = engines.query("SELECT count(DISTINCT workflow) FROM fires WHERE scheduled_at >= $1", &[&since]);
        rows[0].get(0)
    };
    let started = Utc::now().duration_trunc(chrono::TimeDelta::seconds(1)).unwrap();
    engines.wait_until("every workflow has fired", || count_since(started) == WORKFLOWS as i64);
    let from = engines.all_decisions().values().map(|decided| *decided.keys().next().unwrap()).max().unwrap();
    let to = from + seconds(SPAN);
    engines.wait_until_within(
        Duration::from_secs(SPAN as u64) + TTL * 20,
        "every workflow has fired the span's last instant",
        || count_since(to) == WORKFLOWS as i64,
    );
    engines.terminate_all();

    let all = engines.all_decisions();
    assert_eq!(all.len(), WORKFLOWS);
    let mut problems = Vec::new();
    for (workflow, decisions) in &all {
        problems.extend(doubled(decisions).into_iter().map(|problem| format!("{workflow} {problem}")));
        if let Err(wrong) = exactly_once(decisions, from, to, seconds(1)) {
            problems.push(format!("{workflow}:\n{wrong}"));
        }
    }
    assert!(problems.is_empty(), "{} instants each, from {from} to {to}:\n{}", SPAN + 1, problems.join("\n"));
}
