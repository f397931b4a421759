//! A task running while its engine, or the database, fails: an engine that takes over runs it again as an
//! engine does after a crash, a leader that lost its lease records nothing of it, and an outage of the
//! database alone rescues nothing.

use std::time::Duration;

use crate::cluster::{Engines, Leader, TTL, is_alive, manual};

/// A task whose first attempt outlasts any takeover and whose later ones end quickly; each writes its PID and
/// its engine's to `marks/pids` when it starts, and its attempt's number to `marks/finished` when it ends.
fn slow_first_attempt(engines: &Engines, later: &str) -> String {
    let marks = engines.marks().display().to_string();
    manual(
        "Slow",
        &format!(
            "echo $$ $PPID >> {marks}/pids; if [ \"$CONVEYOR_ATTEMPT\" = 1 ]; then sleep 60; else sleep {later}; fi; \
             echo $CONVEYOR_ATTEMPT >> {marks}/finished"
        ),
    )
}

/// Each attempt's number and state.
fn states(attempts: &[(i64, String)]) -> Vec<(i64, &str)> {
    attempts.iter().map(|(number, state)| (*number, state.as_str())).collect()
}

/// Two engines, the `Slow` workflow triggered, and its first attempt running on the leader: the engines,
/// the leader, the run and the first attempt's task process. The standby starts once the attempt runs, so the
/// leader's own worker is the one that claimed it.
fn first_attempt_running(later: &str) -> (Engines, Leader, String, i32) {
    let mut engines = Engines::new();
    engines.workflow("slow.toml", &slow_first_attempt(&engines, later));
    engines.start();
    let leader = engines.wait_for_leader();
    let run = engines.trigger("Slow");
    engines.wait_until("the task's first attempt runs", || engines.marked("pids").len() == 1);
    let first_task = engines.marked("pids")[0][0];
    let standby = engines.start();
    engines.wait_for_line(standby, 0, "standby");
    (engines, leader, run, first_task)
}

fn finished(engines: &Engines) -> String {
    std::fs::read_to_string(engines.marks().join("finished")).unwrap_or_default()
}

#[test]
fn a_leader_killed_while_its_task_runs_is_replaced_and_the_task_runs_again_on_the_new_leader() {
    let (mut engines, leader, run, first_task) = first_attempt_running("1");
    let old_pid = engines.pid(leader.index);
    let standby = 1 - leader.index;
    let mark = engines.log_mark(standby);
    engines.kill(leader.index);
    engines.wait_for_line(standby, mark, "leads the cluster");
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));

    let new_leader = engines.leader().expect("the standby leads");
    assert_eq!(new_leader.index, standby);
    let attempts = engines.attempts(&run, "Work");
    assert_eq!(states(&attempts), [(1, "interrupted"), (2, "succeeded")], "{}", engines.logs());
    let started_by: Vec<u32> = engines.marked("pids").iter().map(|line| line[1] as u32).collect();
    assert_eq!(started_by, [old_pid, engines.pid(standby)], "each leader started one attempt");
    assert_eq!(engines.attempt_engine(&run, "Work", 2), Some(new_leader.engine), "recorded as the new leader's");
    assert!(!is_alive(first_task), "the killed leader's task process {first_task} was stopped by the new leader");
    assert_eq!(finished(&engines), "2\n", "only the second attempt ran to its end");
}

#[test]
fn a_leader_paused_until_another_took_over_records_nothing_of_its_task_once_resumed() {
    // The second attempt lasts long enough for the old leader to resume while it runs.
    let (mut engines, leader, run, first_task) = first_attempt_running("3");
    let old_pid = engines.pid(leader.index);
    let standby = 1 - leader.index;
    let mark = engines.log_mark(standby);
    engines.pause(leader.index);
    engines.wait_for_line(standby, mark, "leads the cluster");
    engines.wait_until("the new leader runs the second attempt", || engines.marked("pids").len() == 2);
    let old_mark = engines.log_mark(leader.index);
    engines.resume(leader.index);
    engines.wait_for_line(leader.index, old_mark, "stepped down");
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));

    assert!(!is_alive(first_task), "the paused leader's task process {first_task} is gone");
    let new_leader = engines.leader().expect("the standby leads");
    assert_eq!(new_leader.index, standby);
    let attempts = engines.attempts(&run, "Work");
    assert_eq!(
        states(&attempts),
        [(1, "interrupted"), (2, "succeeded")],
        "exactly one attempt succeeded; the old leader's ending of the first is not recorded\n{}",
        engines.logs()
    );
    let started_by: Vec<u32> = engines.marked("pids").iter().map(|line| line[1] as u32).collect();
    assert_eq!(started_by, [old_pid, engines.pid(standby)], "each leader started one attempt");
    assert_eq!(engines.attempt_engine(&run, "Work", 2), Some(new_leader.engine), "recorded as the new leader's");
    assert_eq!(finished(&engines), "2\n", "only the second attempt ran to its end");
    assert!(engines.is_running(leader.index), "the old leader stays up as a standby:\n{}", engines.logs());
    engines.terminate_all();
}

#[test]
fn the_database_stopped_for_longer_than_the_lease_while_a_task_runs_rescues_nothing_and_the_end_is_recorded_once_back()
{
    let mut engines = Engines::on_private_server();
    let marks = engines.marks().display().to_string();
    engines.workflow(
        "outlast.toml",
        &manual(
            "Outlast",
            &format!("echo $$ $PPID >> {marks}/pids; sleep 2; echo $CONVEYOR_ATTEMPT >> {marks}/finished"),
        ),
    );
    engines.start_many(2);
    let leader = engines.wait_for_leader();
    let run = engines.trigger("Outlast");
    engines.wait_until("the task runs", || engines.marked("pids").len() == 1);

    let mark = engines.log_mark(leader.index);
    engines.stop_server();
    // A renewal fails: the leader can no longer tell whether it leads (and acts only once it can again).
    engines.wait_for_line(leader.index, mark, "cannot tell whether it still leads");
    engines.wait_until("the task has ended during the outage", || finished(&engines) == "1\n");
    // The outage must outlast the lease: nothing to wait on but time.
    std::thread::sleep(TTL + Duration::from_secs(2));
    engines.start_server();
    engines.wait_until("the run has succeeded", || engines.run_state(&run).as_deref() == Some("succeeded"));

    let attempts = engines.attempts(&run, "Work");
    assert_eq!(states(&attempts), [(1, "succeeded")], "the attempt was not rescued\n{}", engines.logs());
    assert_eq!(engines.marked("pids").len(), 1, "the task ran once");
    for index in 0..2 {
        assert!(engines.is_running(index), "engine {index} outlived the outage:\n{}", engines.logs());
    }
    engines.terminate_all();
}
