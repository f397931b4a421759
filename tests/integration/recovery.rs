//! An engine that starts after a crash or a stop heals what the last one left, as each workflow's
//! `on_interrupt` says, with no operator: the engine library, crashed in-process with `simulate_crash`.

use std::time::Duration;

use conveyor::clock::ManualClock;
use conveyor::engine::{Command, Stop};
use conveyor::state::{AttemptState, RunState, TaskState};

use crate::engine_harness::*;

/// Three tasks; the second writes its PID and sleeps until the file `release` exists; each appends its name
/// to `ran`, so a task that ran twice shows.
fn three_steps(extra: &str) -> String {
    format!(
        "id = \"W\"\n{extra}\n[[tasks]]\nname = \"A\"\nrun = 'echo A >> ran; echo {{\\\"a\\\": 1}} > \"$CONVEYOR_OUTPUT\"'\n[[tasks]]\nname = \"B\"\nrun = 'echo $$ > b.pid; while [ ! -f release ]; do sleep 0.05; done; echo B >> ran; cat > \"$CONVEYOR_OUTPUT\"'\n[[tasks]]\nname = \"C\"\nrun = 'echo C >> ran; cat'\n"
    )
}

fn ran(h: &Harness) -> String {
    std::fs::read_to_string(h.workflows().join("ran")).unwrap_or_default()
}

async fn crash_while_b_runs(h: &mut Harness) -> (String, i32) {
    let run = h.trigger("W").await;
    h.task_reaches(&run, "B", TaskState::Running).await;
    let pid_file = h.workflows().join("b.pid");
    wait_until("B has written its pid", || std::fs::read_to_string(&pid_file).is_ok_and(|pid| pid.ends_with('\n')));
    let pid: i32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    std::fs::remove_file(&pid_file).unwrap();
    // The process group is stored with a later step (at the latest the store's poll, a quarter second on):
    // wait for it, not for a step, since the engine may hear of the start after the task wrote its PID.
    let store = h.store();
    wait_until("B's process group is stored", || {
        store.attempts(&run, Some("B")).unwrap().first().is_some_and(|attempt| attempt.pid.is_some())
    });
    drop(store);
    h.engine.simulate_crash().await;
    assert!(!process_is_gone(pid), "a crash leaves the task's process running");
    (run, pid)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_crash_the_run_carries_on_by_itself_and_nothing_that_succeeded_runs_again() {
    let mut h = Setup::new(&three_steps("")).start();
    let (run, old_pid) = crash_while_b_runs(&mut h).await;
    h.reopen();
    wait_until("the old attempt's process is stopped", || process_is_gone(old_pid));
    let b = h.task_reaches(&run, "B", TaskState::Running).await;
    assert_eq!(b.attempts, 2, "a new attempt of the task that was cut short");
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(ran(&h), "A\nB\nC\n", "A ran once, B's first attempt never finished, C ran once");
    assert!(h.log(&run, "C", 1).contains("{\"a\":1}"), "C got B's output, which is A's: {}", h.log(&run, "C", 1));
    let store = h.store();
    let attempts = store.attempts(&run, Some("B")).unwrap();
    let states: Vec<AttemptState> = attempts.iter().map(|attempt| attempt.state).collect();
    assert_eq!(states, vec![AttemptState::Interrupted, AttemptState::Succeeded]);
    assert!(attempts[0].pid.is_some() && attempts[0].pid_start.is_some(), "the process was recorded: {attempts:?}");
    assert!(
        h.log(&run, "B", 1).contains("the engine that ran this attempt is gone: stopping its process group"),
        "{}",
        h.log(&run, "B", 1)
    );
    let alerts = store.alerts(10).unwrap();
    assert!(
        alerts.iter().any(|alert| alert.message
            == format!("run {run} of W resumed by itself after the engine stopped (cut short: B)")),
        "{alerts:?}"
    );
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_interrupt_wait_leaves_the_run_to_an_operator_and_fail_fails_it() {
    for (policy, state) in [("wait", RunState::Interrupted), ("fail", RunState::Failed)] {
        let mut h = Setup::new(&three_steps(&format!("on_interrupt = \"{policy}\""))).start();
        let (run, old_pid) = crash_while_b_runs(&mut h).await;
        h.reopen();
        h.engine.barrier().await.unwrap();
        assert!(process_is_gone(old_pid), "{policy}: the old process is stopped whatever the policy");
        let stored = h.store().run(&run).unwrap().unwrap();
        assert_eq!(stored.state, state, "{policy}");
        assert_eq!(ran(&h), "A\n", "{policy}: nothing ran again");
        if policy == "wait" {
            assert_eq!(h.task(&run, "B").state, TaskState::Pending);
            std::fs::write(h.workflows().join("release"), "").unwrap();
            h.events = h.engine.subscribe();
            h.engine.send(Command::ResumeRun { run: run.clone() }).await.unwrap();
            h.run_reaches(&run, RunState::Succeeded).await;
            assert_eq!(ran(&h), "A\nB\nC\n");
        } else {
            assert_eq!(h.task(&run, "B").state, TaskState::Failed);
            assert_eq!(
                stored.error.as_deref(),
                Some("the engine stopped while this run was active (on_interrupt = \"fail\")")
            );
        }
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_sets_the_default_policy_and_a_workflow_overrides_it() {
    let mut h = Setup::new(&three_steps("")).registry("on_interrupt = \"wait\"\n").start();
    let (run, _) = crash_while_b_runs(&mut h).await;
    h.reopen();
    h.engine.barrier().await.unwrap();
    assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::Interrupted);
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_leaves_runs_that_the_next_resumes_but_an_operators_stop_is_never_resumed() {
    for stop in [Stop::Resumable, Stop::ByOperator] {
        let mut h = Setup::new(&three_steps("")).start();
        let run = h.trigger("W").await;
        h.task_reaches(&run, "B", TaskState::Running).await;
        h.engine.shutdown_as(stop).await;
        let stored = h.store().run(&run).unwrap().unwrap();
        assert_eq!(stored.state, RunState::Interrupted, "{stop:?}");
        assert_eq!(h.task(&run, "B").state, TaskState::Pending, "{stop:?}: B waits for a new attempt");
        std::fs::write(h.workflows().join("release"), "").unwrap();
        h.reopen();
        h.engine.barrier().await.unwrap();
        if stop == Stop::Resumable {
            wait_until("the run has carried on by itself", || {
                h.store().run(&run).unwrap().unwrap().state == RunState::Succeeded
            });
        } else {
            assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::Interrupted, "never by itself");
            h.events = h.engine.subscribe();
            h.engine.send(Command::ResumeRun { run: run.clone() }).await.unwrap();
            h.run_reaches(&run, RunState::Succeeded).await;
        }
        assert_eq!(ran(&h), "A\nB\nC\n", "{stop:?}");
        h.engine.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_wait_survives_a_crash_on_the_same_route_with_the_same_remaining_delay() {
    let clock = ManualClock::new(chrono::Utc::now());
    let flaky = "id = \"F\"\n[[tasks]]\nname = \"Flaky\"\nrun = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; [ \"$n\" -ge 3 ]'\nretries = 2\nretry_delay = \"10m\"\nbackoff = 1.0\n";
    let mut h = Setup::new(flaky).clock(&clock).start();
    let run = h.trigger("F").await;
    let waiting = h.task_reaches(&run, "Flaky", TaskState::RetryWait).await;
    assert_eq!((waiting.route_attempts, waiting.route_index), (1, 0));
    let retry_at = h.task(&run, "Flaky").retry_at.expect("the retry's time is stored");
    h.engine.simulate_crash().await;
    clock.advance(Duration::from_secs(9 * 60));
    h.reopen();
    h.engine.barrier().await.unwrap();
    let task = h.task(&run, "Flaky");
    assert_eq!((task.state, task.attempts, task.retry_at), (TaskState::RetryWait, 1, Some(retry_at)));
    clock.advance(Duration::from_secs(2 * 60));
    h.engine.barrier().await.unwrap();
    h.task_reaches(&run, "Flaky", TaskState::RetryWait).await;
    let task = h.task(&run, "Flaky");
    assert_eq!((task.attempts, task.route_attempts), (2, 2), "the second retry is still the task's own");
    clock.advance(Duration::from_secs(11 * 60));
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(h.task(&run, "Flaky").attempts, 3, "two retries, as `retries = 2` allows");
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_and_a_paused_run_survive_a_crash_as_they_are() {
    let registry = "[layers.Gate]\nitems = \"items\"\napproval = \"true\"\n";
    let gated = "id = \"G\"\n[[tasks]]\nname = \"Make\"\nrun = 'echo {\\\"items\\\": [{\\\"id\\\": 1}]} > \"$CONVEYOR_OUTPUT\"'\n[[tasks]]\nname = \"Review\"\nlayer = \"Gate\"\n[[tasks]]\nname = \"After\"\nrun = 'true'\n";
    let mut h = Setup::new(gated).registry(registry).file("paused.toml", &three_steps("")).start();
    let gate_run = h.trigger("G").await;
    h.run_reaches(&gate_run, RunState::WaitingApproval).await;
    let paused_run = h.trigger("W").await;
    h.task_reaches(&paused_run, "B", TaskState::Running).await;
    h.engine.send(Command::PauseRun { run: paused_run.clone() }).await.unwrap();
    h.engine.simulate_crash().await;
    h.reopen();
    h.engine.barrier().await.unwrap();
    let store = h.store();
    assert_eq!(store.run(&gate_run).unwrap().unwrap().state, RunState::WaitingApproval);
    assert_eq!(store.run(&paused_run).unwrap().unwrap().state, RunState::Paused);
    assert_eq!(h.task(&paused_run, "B").state, TaskState::Pending, "cut short; runs again when resumed");
    h.engine.send(Command::answer_all(true, gate_run.clone(), "Review")).await.unwrap();
    h.run_reaches(&gate_run, RunState::Succeeded).await;
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.engine.send(Command::ResumeRun { run: paused_run.clone() }).await.unwrap();
    h.run_reaches(&paused_run, RunState::Succeeded).await;
    assert_eq!(ran(&h), "A\nB\nC\n");
    h.engine.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_another_process_holds_the_databases_write_lock_nothing_is_announced_and_then_all_is_stored() {
    let workflow = "id = \"L\"\n[[tasks]]\nname = \"T\"\nrun = 'while [ ! -f go ]; do sleep 0.02; done; echo {\\\"done\\\": true} > \"$CONVEYOR_OUTPUT\"'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("L").await;
    h.task_reaches(&run, "T", TaskState::Running).await;
    let holder = h.store();
    holder.begin_batch().unwrap();
    std::fs::write(h.workflows().join("go"), "").unwrap();
    let announced = tokio::time::timeout(
        Duration::from_secs(7),
        h.until(|event| match event {
            conveyor::engine::Event::Task(task) if task.state == TaskState::Succeeded => Some(()),
            conveyor::engine::Event::Run(record) if record.state.is_finished() => Some(()),
            _ => None,
        }),
    )
    .await;
    assert!(announced.is_err(), "nothing is announced while the store cannot take it");
    holder.commit_batch().unwrap();
    drop(holder);
    h.run_reaches(&run, RunState::Succeeded).await;
    let task = h.task(&run, "T");
    assert_eq!((task.state, task.output), (TaskState::Succeeded, Some(serde_json::json!({"done": true}))));
    h.engine.barrier().await.unwrap();
    let alerts = h.store().alerts(10).unwrap();
    assert_eq!(alerts.iter().filter(|alert| alert.message.starts_with("the store refused writes for")).count(), 1);
    h.engine.shutdown().await;
}
