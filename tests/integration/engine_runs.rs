//! The engine running real processes: data flow, retries, fallbacks, timeouts, cancel, retry and skip,
//! conditions, graphs, bad output.

use std::time::Duration;

use conveyor::clock::ManualClock;
use conveyor::engine::Command;
use conveyor::state::{AttemptState, RunState, TaskState};
use serde_json::json;

use crate::engine_harness::*;

const FLOW: &str = r#"
id = "Flow"
[[tasks]]
name = "First"
run = 'echo "first says hi"; echo "{\"n\": 1}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Second"
run = '''
input=$(cat)
echo "second got $input as $CONVEYOR_TASK attempt $CONVEYOR_ATTEMPT of $CONVEYOR_WORKFLOW" >&2
printf '{"previous": %s, "n": 2}' "$input" > "$CONVEYOR_OUTPUT"
'''
[[tasks]]
name = "Third"
command = ["sh", "-c", "cat > \"$CONVEYOR_OUTPUT\""]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_flows_through_a_three_task_chain() {
    let mut h = Setup::new(FLOW).start();
    let run = h.trigger("Flow").await;
    let finished = h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(finished.error, None);
    assert_eq!(h.task(&run, "Second").input, Some(json!({"n": 1})));
    assert_eq!(h.task(&run, "Third").output, Some(json!({"previous": {"n": 1}, "n": 2})));
    let second_log = h.log(&run, "Second", 1);
    assert!(second_log.contains("second got {\"n\":1} as Second attempt 1 of Flow"), "{second_log}");
    assert!(h.log(&run, "First", 1).contains("first says hi\n"));
    let second_log_path = h.store().log_path(&run, "Second", 1);
    let stderr_lines = std::fs::read_to_string(conveyor::tasks::stderr_index_path(&second_log_path)).unwrap();
    assert_eq!(stderr_lines, "1\n", "line 1 of Second's log (after the engine's start line) came from stderr");
    assert!(!conveyor::tasks::stderr_index_path(&h.store().log_path(&run, "First", 1)).exists());
    let first_input = h.task(&run, "First").input.unwrap();
    assert_eq!(first_input["trigger"], "manual");
    assert!(first_input["fired_at"].is_string());
    let attempts = h.store().attempts(&run, None).unwrap();
    assert_eq!(attempts.len(), 3);
    assert!(
        attempts.iter().all(|a| a.state == AttemptState::Succeeded && a.exit_code == Some(0) && a.route == "inline")
    );
    // Third prints nothing: its few engine lines are kept with the attempt instead of in a file.
    assert!(attempts.iter().all(|a| a.log_bytes > 0 && a.log_path.exists() == (a.task != "Third")));
    assert!(attempts.iter().all(|a| a.log_text.is_some() == (a.task == "Third")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flaky_task_succeeds_on_its_third_attempt_after_waiting_on_the_clock() {
    let clock = ManualClock::new(chrono::Utc::now());
    let flaky = r#"
id = "Flaky"
[[tasks]]
name = "Flaky"
run = 'n=$(cat count 2>/dev/null || echo 0); n=$((n+1)); echo $n > count; echo "try $n"; [ "$n" -ge 3 ]'
retries = 2
retry_delay = "10m"
backoff = 2.0
"#;
    let mut h = Setup::new(flaky).clock(&clock).start();
    let run = h.trigger("Flaky").await;
    let waiting = h.task_reaches(&run, "Flaky", TaskState::RetryWait).await;
    assert!(waiting.error.as_deref().unwrap().starts_with("exit status 1; retry 1 of 2 at "), "{waiting:?}");
    h.engine.barrier().await.unwrap();
    assert_eq!(h.task(&run, "Flaky").attempts, 1, "no retry before the clock moves");
    clock.advance(Duration::from_secs(11 * 60));
    h.task_reaches(&run, "Flaky", TaskState::RetryWait).await;
    clock.advance(Duration::from_secs(11 * 60));
    h.engine.barrier().await.unwrap();
    assert_eq!(h.task(&run, "Flaky").attempts, 2, "the second wait is twice as long");
    clock.advance(Duration::from_secs(11 * 60));
    h.run_reaches(&run, RunState::Succeeded).await;
    let attempts = h.store().attempts(&run, Some("Flaky")).unwrap();
    let states: Vec<AttemptState> = attempts.iter().map(|a| a.state).collect();
    assert_eq!(states, vec![AttemptState::Failed, AttemptState::Failed, AttemptState::Succeeded]);
    assert_eq!(attempts[0].exit_code, Some(1));
    assert!(h.log(&run, "Flaky", 3).contains("try 3"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fallback_route_is_taken_once_retries_are_exhausted() {
    let registry = r#"
[services.Primary]
command = ["sh", "-c", "echo primary down >&2; exit 3"]
[services.Backup]
command = ["sh", "-c", "echo \"backup did $0\"; echo '{\"via\": \"backup\"}' > \"$CONVEYOR_OUTPUT\""]
"#;
    let workflow = "id = \"Routes\"\n[[tasks]]\nname = \"Send\"\nservice = \"Primary\"\naction = \"send\"\nretries = 1\nretry_delay = \"10ms\"\nfallback = [\"Backup\"]\n";
    let mut h = Setup::new(workflow).registry(registry).start();
    let run = h.trigger("Routes").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let attempts = h.store().attempts(&run, Some("Send")).unwrap();
    let routes: Vec<(&str, AttemptState)> = attempts.iter().map(|a| (a.route.as_str(), a.state)).collect();
    assert_eq!(
        routes,
        vec![("Primary", AttemptState::Failed), ("Primary", AttemptState::Failed), ("Backup", AttemptState::Succeeded)]
    );
    assert_eq!(attempts[0].exit_code, Some(3));
    assert_eq!(h.task(&run, "Send").output, Some(json!({"via": "backup"})));
    assert!(h.log(&run, "Send", 3).contains("backup did send"), "the action is the last argument");
    assert!(h.log(&run, "Send", 1).contains("primary down"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeout_stops_the_whole_process_group() {
    let workflow = "id = \"Slow\"\n[[tasks]]\nname = \"Slow\"\nrun = 'sleep 300 & echo $! > background.pid; sleep 300'\ntimeout = \"700ms\"\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Slow").await;
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("task Slow failed: timed out after 700ms"));
    let log = h.log(&run, "Slow", 1);
    assert!(log.contains("[conveyor] timed out after 700ms: stopping its process group"), "{log}");
    let leader = pid_in_log(&log);
    let background: i32 =
        std::fs::read_to_string(h.workflows().join("background.pid")).unwrap().trim().parse().unwrap();
    wait_until("the task's processes are gone", || process_is_gone(leader) && process_is_gone(background));
    let alerts = h.store().alerts(10).unwrap();
    assert!(
        alerts
            .iter()
            .any(|a| a.message == format!("task Slow of run {run} failed after 1 attempt(s): timed out after 700ms"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_running_task_and_the_rest() {
    let workflow = "id = \"Long\"\n[[tasks]]\nname = \"Wait\"\nrun = 'echo waiting; sleep 300'\n[[tasks]]\nname = \"After\"\nrun = 'true'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Long").await;
    h.until(|event| match event {
        conveyor::engine::Event::Log { line, .. } if line == "waiting" => Some(()),
        _ => None,
    })
    .await;
    let reply = h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap();
    assert_eq!(reply.message, format!("cancelling run {run}"));
    let cancelled = h.run_reaches(&run, RunState::Cancelled).await;
    assert!(cancelled.error.unwrap().starts_with("cancelled by "));
    assert_eq!(h.task(&run, "Wait").state, TaskState::Cancelled);
    assert_eq!(h.task(&run, "After").state, TaskState::Cancelled);
    let leader = pid_in_log(&h.log(&run, "Wait", 1));
    wait_until("the cancelled process is gone", || process_is_gone(leader));
    let again = h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap_err();
    assert_eq!(again, format!("run {run} is already cancelled"));
}

const GATED: &str = r#"
id = "Gated"
[[tasks]]
name = "Produce"
run = 'echo "{\"v\": 1}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Check"
run = 'test -f ok || { echo "no ok file" >&2; exit 4; }; echo "{\"checked\": true}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Use"
run = 'cat > "$CONVEYOR_OUTPUT"'
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retrying_a_failed_task_carries_the_run_on_with_the_same_input() {
    let mut h = Setup::new(GATED).start();
    let run = h.trigger("Gated").await;
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("task Check failed: exit status 4"));
    assert_eq!(h.task(&run, "Use").state, TaskState::Pending);
    let refused = h.engine.send(Command::RetryTask { run: run.clone(), task: "Produce".into() }).await.unwrap_err();
    assert_eq!(refused, "task Produce is succeeded, not failed or cancelled (run ".to_string() + &run + " is failed)");
    std::fs::write(h.workflows().join("ok"), "").unwrap();
    let reply = h.engine.send(Command::RetryTask { run: run.clone(), task: "Check".into() }).await.unwrap();
    assert_eq!(reply.message, format!("retrying task Check of run {run}"));
    h.run_reaches(&run, RunState::Succeeded).await;
    let check = h.task(&run, "Check");
    assert_eq!((check.attempts, check.input), (2, Some(json!({"v": 1}))));
    assert_eq!(h.task(&run, "Use").output, Some(json!({"checked": true})));
    let audit = h.store().audit_trail(10).unwrap();
    assert!(
        audit.iter().any(|a| a.ok && a.command.contains("retry_task") && a.outcome.starts_with("retrying task Check"))
    );
    assert!(audit.iter().any(|a| !a.ok && a.command.contains("\"task\":\"Produce\"")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn skipping_a_failed_task_passes_its_input_on() {
    let mut h = Setup::new(GATED).start();
    let run = h.trigger("Gated").await;
    h.run_reaches(&run, RunState::Failed).await;
    let reply = h.engine.send(Command::SkipTask { run: run.clone(), task: "Check".into() }).await.unwrap();
    assert_eq!(reply.message, format!("skipped task Check of run {run}; its input passes on"));
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(h.task(&run, "Check").state, TaskState::Skipped);
    assert_eq!(h.task(&run, "Use").output, Some(json!({"v": 1})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_false_when_skips_the_task() {
    let workflow = r#"
id = "When"
[params]
mode = "quick"
[[tasks]]
name = "Start"
run = 'echo "{\"go\": false, \"items\": [1, 2]}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Maybe"
when = "input.go == true || params.mode == 'full'"
run = 'echo ran; echo "{\"ran\": true}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Always"
when = "size(input.items) == 2"
run = 'cat > "$CONVEYOR_OUTPUT"'
"#;
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("When").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let maybe = h.task(&run, "Maybe");
    assert_eq!(maybe.state, TaskState::Skipped);
    assert_eq!(maybe.attempts, 0);
    assert_eq!(
        maybe.error.as_deref(),
        Some("skipped: `when = \"input.go == true || params.mode == 'full'\"` is false")
    );
    assert_eq!(h.task(&run, "Always").output, Some(json!({"go": false, "items": [1, 2]})));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_branches_run_in_parallel_and_join() {
    let workflow = r#"
id = "Diamond"
[[tasks]]
name = "Split"
run = 'echo "{\"n\": 5}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Left"
depends_on = ["Split"]
run = 'sleep 0.5; echo "{\"side\": \"left\"}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Right"
depends_on = ["Split"]
run = 'sleep 0.5; echo "{\"side\": \"right\"}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Join"
depends_on = ["Left", "Right"]
run = 'cat > "$CONVEYOR_OUTPUT"'
"#;
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Diamond").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(h.task(&run, "Join").output, Some(json!({"Left": {"side": "left"}, "Right": {"side": "right"}})));
    let left = h.task(&run, "Left");
    let right = h.task(&run, "Right");
    assert!(
        left.started_at.unwrap() < right.finished_at.unwrap() && right.started_at.unwrap() < left.finished_at.unwrap()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_json_output_fails_the_task_clearly_and_keeps_the_log() {
    let workflow = "id = \"Bad\"\n[[tasks]]\nname = \"Bad\"\nrun = 'echo \"working\"; echo \"{not json\" > \"$CONVEYOR_OUTPUT\"'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Bad").await;
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(
        failed.error.as_deref(),
        Some("task Bad failed: CONVEYOR_OUTPUT is not valid JSON: key must be a string at line 1 column 2")
    );
    let log = h.log(&run, "Bad", 1);
    assert!(log.contains("working\n") && log.contains("[conveyor] CONVEYOR_OUTPUT is not valid JSON"), "{log}");
    let attempt = &h.store().attempts(&run, None).unwrap()[0];
    assert_eq!((attempt.state, attempt.exit_code), (AttemptState::Failed, Some(0)));
}

const GATE: &str = r#"
[layers.Gate]
items = "applications"
rules = [ { name = "eligible", expr = "item.score >= 0.7" } ]
approval = "item.amount > 100000"
"#;

const GOVERNED: &str = r#"
id = "Governed"
[[tasks]]
name = "Produce"
run = 'echo "{\"applications\": [{\"id\": \"A-1\", \"score\": 0.9, \"amount\": 5000}, {\"id\": \"A-2\", \"score\": 0.8, \"amount\": 250000}, {\"id\": \"A-3\", \"score\": 0.1, \"amount\": 10}]}" > "$CONVEYOR_OUTPUT"'
[[tasks]]
name = "Review"
layer = "Gate"
action = "enforce"
[[tasks]]
name = "Use"
run = 'cat > "$CONVEYOR_OUTPUT"'
"#;

fn ids(output: &serde_json::Value) -> Vec<String> {
    output["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_governance_layer_drops_what_its_rules_reject_and_holds_items_for_approval() {
    let mut h = Setup::new(GOVERNED).registry(GATE).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    let review = h.task(&run, "Review");
    assert_eq!(review.state, TaskState::WaitingApproval);
    assert_eq!(h.task(&run, "Use").state, TaskState::Pending);
    let log = h.log(&run, "Review", 1);
    assert!(
        log.contains("A-3: rejected by eligible") && log.contains("A-2: waits for an operator's approval"),
        "{log}"
    );
    let alert = &h.store().alerts(5).unwrap()[0];
    assert!(
        alert.message.starts_with(&format!("1 item(s) of run {run} wait for approval at task Review")),
        "{}",
        alert.message
    );
    let early = h.engine.send(Command::answer_all(true, run.clone(), "Use")).await.unwrap_err();
    assert_eq!(early, format!("task Use of run {run} is not waiting for approval (it is pending)"));

    let reply = h.engine.send(Command::answer_all(true, run.clone(), "Review")).await.unwrap();
    assert_eq!(reply.message, format!("approved 1 item(s) (A-2) at task Review of run {run}"));
    h.run_reaches(&run, RunState::Succeeded).await;
    let used = h.task(&run, "Use").output.unwrap();
    assert_eq!(ids(&used), vec!["A-1", "A-2"]);
    assert_eq!(used["governance"]["rejected"][0]["item"]["id"], "A-3");

    let second = h.trigger("Governed").await;
    h.run_reaches(&second, RunState::WaitingApproval).await;
    h.engine.send(Command::answer_all(false, second.clone(), "Review")).await.unwrap();
    h.run_reaches(&second, RunState::Succeeded).await;
    assert_eq!(ids(&h.task(&second, "Use").output.unwrap()), vec!["A-1"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gate_keeps_waiting_across_an_engine_restart() {
    let mut h = Setup::new(GOVERNED).registry(GATE).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    h.restart().await;
    assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::WaitingApproval, "not interrupted");
    h.engine.send(Command::answer_all(true, run.clone(), "Review")).await.unwrap();
    h.run_reaches(&run, RunState::Succeeded).await;
    assert_eq!(ids(&h.task(&run, "Use").output.unwrap()), vec!["A-1", "A-2"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_past_its_timeout_is_stopped_and_failed() {
    let workflow = "id = \"Late\"\ntimeout = \"600ms\"\n[[tasks]]\nname = \"Long\"\nrun = 'sleep 300'\n[[tasks]]\nname = \"Never\"\nrun = 'true'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Late").await;
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(failed.error.as_deref(), Some("the run exceeded its timeout of 600ms"));
    assert_eq!(h.task(&run, "Long").state, TaskState::Cancelled);
    assert_eq!(h.task(&run, "Never").state, TaskState::Cancelled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failure_and_success_handlers_run_once_with_the_finished_run() {
    let workflow = r#"
id = "Handled"
[params]
fail = false
[on_failure]
run = 'cat > failure.json'
[on_success]
name = "Celebrate"
run = 'echo "all good"'
[[tasks]]
name = "Work"
run = 'test "$CONVEYOR_PARAM_FAIL" = false'
"#;
    let mut h = Setup::new(workflow).start();
    let failing = Command::Trigger {
        workflow: "Handled".into(),
        input: None,
        params: [("fail".to_string(), json!("true"))].into(),
    };
    let run = h.engine.send(failing).await.unwrap().run.unwrap();
    h.run_reaches(&run, RunState::Failed).await;
    let handler = h
        .until(|event| match event {
            conveyor::engine::Event::Attempt(a) if a.task == "on_failure" && a.state != AttemptState::Running => {
                Some(a.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!((handler.state, handler.route.as_str()), (AttemptState::Succeeded, "inline"));
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.workflows().join("failure.json")).unwrap()).unwrap();
    assert_eq!((written["run"].as_str(), written["state"].as_str()), (Some(run.as_str()), Some("failed")));
    assert_eq!(written["error"], "task Work failed: exit status 1");

    let run = h.trigger("Handled").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    h.until(|event| match event {
        conveyor::engine::Event::Attempt(a) if a.task == "Celebrate" && a.state == AttemptState::Succeeded => Some(()),
        _ => None,
    })
    .await;
    assert!(h.log(&run, "Celebrate", 1).contains("all good\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_output_is_kept_whole_even_when_listeners_fall_behind() {
    let workflow = "id = \"Loud\"\n[[tasks]]\nname = \"Spew\"\nrun = 'seq 1 200000; seq 1 1000 >&2'\n";
    let mut h = Setup::new(workflow).start();
    // A subscriber that never reads: the engine must not wait for it, nor buffer without bound.
    let _idle = h.engine.subscribe();
    let run = h.trigger("Loud").await;
    h.run_reaches(&run, RunState::Succeeded).await;
    let log = h.log(&run, "Spew", 1);
    let lines: Vec<&str> = log.lines().filter(|line| !line.starts_with("[conveyor]")).collect();
    assert_eq!(lines.len(), 201_000);
    assert!(log.contains("\n200000\n"));
    let attempt = &h.store().attempts(&run, None).unwrap()[0];
    assert_eq!(attempt.log_bytes, std::fs::metadata(&attempt.log_path).unwrap().len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_condition_that_runs_too_long_fails_its_task_while_the_engine_keeps_answering() {
    // 1,000 items judged against each other: a million evaluations, seconds past the two-second budget.
    let workflow = "id = \"Heavy\"\n[[tasks]]\nname = \"Make\"\nrun = 'seq 1 1000 | awk \"BEGIN{printf \\\"{\\\\\\\"items\\\\\\\":[\\\"} {printf (NR>1?\\\",\\\":\\\"\\\") \\$1} END{print \\\"]}\\\"}\" > \"$CONVEYOR_OUTPUT\"'\n[[tasks]]\nname = \"Judge\"\nrun = 'true'\nwhen = \"input.items.all(x, input.items.all(y, x + y > 0))\"\n";
    let mut h =
        Setup::new(workflow).file("other.toml", "id = \"Other\"\n[[tasks]]\nname = \"T\"\nrun = 'true'\n").start();
    let run = h.trigger("Heavy").await;
    h.task_reaches(&run, "Make", TaskState::Succeeded).await;
    let other = h.trigger("Other").await;
    h.run_reaches(&other, RunState::Succeeded).await;
    assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::Running, "still judging meanwhile");
    let failed = h.run_reaches(&run, RunState::Failed).await;
    assert_eq!(
        failed.error.as_deref(),
        Some(
            "task Judge failed: `when` took longer than its budget of 2s: stopped waiting for it (simplify the expression or the data it runs over)"
        )
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tasks_progress_is_stored_for_consoles_that_read_the_store() {
    let workflow =
        "id = \"Slow\"\n[[tasks]]\nname = \"Count\"\nrun = 'echo \"::progress::3/5\"; echo waiting; sleep 300'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Slow").await;
    h.until(|event| match event {
        conveyor::engine::Event::Log { line, .. } if line == "waiting" => Some(()),
        _ => None,
    })
    .await;
    let store = h.store();
    wait_until("the progress is stored", || {
        store.attempts(&run, Some("Count")).unwrap().first().and_then(|attempt| attempt.progress) == Some(0.6)
    });
    h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap();
    h.run_reaches(&run, RunState::Cancelled).await;
}

/// Four tasks that may all run once `Start` is done; each says it started, then waits for `release` in the
/// workflows folder.
fn four_waiting(limits: &str) -> String {
    let mut workflow = format!("id = \"Wide\"\n{limits}\n[[tasks]]\nname = \"Start\"\nrun = 'true'\n");
    for name in ["A", "B", "C", "D"] {
        workflow.push_str(&format!("[[tasks]]\nname = \"{name}\"\nservice = \"Slow\"\ndepends_on = [\"Start\"]\n"));
    }
    workflow
}

const SLOW: &str =
    "[services.Slow]\ncommand = [\"sh\", \"-c\", \"echo started; while [ ! -f release ]; do sleep 0.02; done\"]\n";

/// Waits until `count` attempts say they wait for a place, then lets every task finish; returns the
/// lines saying what they waited for.
async fn waiting_lines(h: &mut Harness, run: &str, count: usize) -> Vec<String> {
    let mut waiting = Vec::new();
    while waiting.len() < count {
        let line = h
            .until(|event| match event {
                conveyor::engine::Event::Log { run_id, line, .. }
                    if run_id == run && line.contains("waiting for a free place") =>
                {
                    Some(line.clone())
                }
                _ => None,
            })
            .await;
        waiting.push(line);
    }
    std::fs::write(h.workflows().join("release"), "").unwrap();
    h.run_reaches(run, RunState::Succeeded).await;
    waiting
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_workflows_max_parallel_holds_its_other_tasks_until_a_place_frees() {
    let mut h = Setup::new(&four_waiting("max_parallel = 2")).registry(SLOW).start();
    let run = h.trigger("Wide").await;
    let waiting = waiting_lines(&mut h, &run, 2).await;
    assert!(
        waiting.iter().all(|line| line.ends_with("waiting for a free place: max_parallel 2 of workflow Wide")),
        "{waiting:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_services_max_concurrency_and_the_engines_max_parallel_tasks_hold_attempts_too() {
    let registry = format!("{}max_concurrency = 3\n", SLOW);
    let mut h = Setup::new(&four_waiting("")).registry(&registry).start();
    let run = h.trigger("Wide").await;
    let waiting = waiting_lines(&mut h, &run, 1).await;
    assert!(waiting[0].ends_with("waiting for a free place: max_concurrency 3 of Slow"), "{waiting:?}");

    let registry = format!("max_parallel_tasks = 1\n{SLOW}");
    let mut h = Setup::new(&four_waiting("")).registry(&registry).start();
    let run = h.trigger("Wide").await;
    let waiting = waiting_lines(&mut h, &run, 3).await;
    assert!(waiting.iter().all(|line| line.ends_with("max_parallel_tasks 1 of the engine")), "{waiting:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_ends_the_attempts_still_waiting_for_a_place() {
    let mut h = Setup::new(&four_waiting("max_parallel = 1")).registry(SLOW).start();
    let run = h.trigger("Wide").await;
    for _ in 0..3 {
        h.until(|event| match event {
            conveyor::engine::Event::Log { line, .. } if line.contains("waiting for a free place") => Some(()),
            _ => None,
        })
        .await;
    }
    h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap();
    h.run_reaches(&run, RunState::Cancelled).await;
    let states: Vec<TaskState> = ["A", "B", "C", "D"].iter().map(|name| h.task(&run, name).state).collect();
    assert_eq!(states, vec![TaskState::Cancelled; 4], "the running one and the three waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_run_runs_its_on_cancel_handler_with_the_run_as_input() {
    let workflow = "id = \"Held\"\n[[tasks]]\nname = \"Wait\"\nrun = 'echo waiting; sleep 300'\n[on_cancel]\nname = \"GiveBack\"\nrun = 'cat > cancelled.json'\n[on_failure]\nrun = 'exit 9'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Held").await;
    h.until(|event| match event {
        conveyor::engine::Event::Log { line, .. } if line == "waiting" => Some(()),
        _ => None,
    })
    .await;
    h.engine.send(Command::CancelRun { run: run.clone() }).await.unwrap();
    let handler = h
        .until(|event| match event {
            conveyor::engine::Event::Attempt(attempt)
                if attempt.run_id == run && attempt.task == "GiveBack" && attempt.state != AttemptState::Running =>
            {
                Some(attempt.clone())
            }
            _ => None,
        })
        .await;
    assert_eq!(handler.state, AttemptState::Succeeded, "the on_cancel handler ran, not on_failure's `exit 9`");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(h.workflows().join("cancelled.json")).unwrap()).unwrap();
    assert_eq!((written["run"].as_str(), written["state"].as_str()), (Some(run.as_str()), Some("cancelled")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_task_printing_progress_in_a_tight_loop_passes_on_only_whole_percent_changes() {
    let workflow =
        "id = \"Chatty\"\n[[tasks]]\nname = \"Count\"\nrun = 'seq 1 20000 | sed \"s|^|::progress::|; s|$|/20000|\"'\n";
    let mut h = Setup::new(workflow).start();
    let run = h.trigger("Chatty").await;
    let mut progress_events = 0;
    h.until(|event| match event {
        conveyor::engine::Event::Progress { run_id, .. } if *run_id == run => {
            progress_events += 1;
            None
        }
        conveyor::engine::Event::Run(record) if record.id == run && record.state.is_finished() => Some(()),
        _ => None,
    })
    .await;
    assert!((1..=101).contains(&progress_events), "{progress_events} progress events for 20,000 lines");
    assert_eq!(h.store().attempts(&run, Some("Count")).unwrap()[0].progress, Some(1.0));
}
