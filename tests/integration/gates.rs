//! Governance gates an operator judges: per-item answers with a comment, the task left out when one gate
//! waits, and `approval_timeout` deciding what is still held (also after a restart).

use std::time::Duration;

use conveyor::clock::ManualClock;
use conveyor::engine::{Command, Origin};
use conveyor::state::{RunState, TaskState};
use serde_json::{Value, json};

use crate::engine_harness::*;

const GATE: &str = r#"
[layers.Gate]
items = "applications"
rules = [ { name = "eligible", expr = "item.score >= 0.7" } ]
approval = "item.amount > 100000"
show = ["id", "amount"]
"#;

const PRODUCE: &str = r#"
[[tasks]]
name = "Produce"
run = '''echo '{"applications": [{"id": "A-1", "score": 0.9, "amount": 5000}, {"id": "A-2", "score": 0.8, "amount": 250000}, {"id": "A-3", "score": 0.1, "amount": 10}, {"id": "A-4", "score": 0.95, "amount": 300000}]}' > "$CONVEYOR_OUTPUT"'''
"#;

fn governed() -> String {
    format!(
        "id = \"Governed\"\n{PRODUCE}\n[[tasks]]\nname = \"Review\"\nlayer = \"Gate\"\n[[tasks]]\nname = \"Use\"\nrun = 'cat > \"$CONVEYOR_OUTPUT\"'\n"
    )
}

fn ids(output: &Value) -> Vec<String> {
    output["applications"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap().to_string()).collect()
}

fn answer(approve: bool, run: &str, task: &str, items: &[&str], comment: Option<&str>) -> Command {
    let (run, task) = (run.to_string(), task.to_string());
    let items = items.iter().map(|item| item.to_string()).collect();
    let comment = comment.map(str::to_string);
    match approve {
        true => Command::Approve { run, task, items, comment },
        false => Command::Reject { run, task, items, comment },
    }
}

fn ada() -> Origin {
    Origin { who: "ada".into(), via: "test".into() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejecting_one_item_with_a_comment_keeps_the_gate_waiting_for_the_other() {
    let mut h = Setup::new(&governed()).registry(GATE).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;

    let reply = h.engine.send_as(answer(false, &run, "Review", &["A-2"], Some("over budget")), ada()).await.unwrap();
    assert_eq!(reply.message, format!("rejected 1 item(s) (A-2) at task Review of run {run}; 1 still held"));
    let review = h.task(&run, "Review");
    assert_eq!(review.state, TaskState::WaitingApproval, "A-4 is still held");
    assert_eq!(h.store().run(&run).unwrap().unwrap().state, RunState::WaitingApproval);
    let record = &review.output.unwrap()["governance"];
    assert_eq!(record["pending"], json!([{"id": "A-4", "score": 0.95, "amount": 300000}]));
    let rejected = &record["rejected"][1];
    assert_eq!(
        (&rejected["item"]["id"], &rejected["by"], &rejected["comment"]),
        (&json!("A-2"), &json!(["operator ada"]), &json!("over budget"))
    );
    let audit = &h.store().audit_trail(1).unwrap()[0];
    assert_eq!((audit.who.as_str(), audit.origin.as_str(), audit.ok), ("ada", "test", true));
    let command: Value = serde_json::from_str(&audit.command).unwrap();
    assert_eq!(
        command,
        json!({"command": "reject", "run": run, "task": "Review", "items": ["A-2"], "comment": "over budget"})
    );

    let unknown = h.engine.send(answer(true, &run, "Review", &["A-2"], None)).await.unwrap_err();
    assert_eq!(unknown, "no item `A-2` is held at this gate (held: A-4)");

    h.engine.send_as(answer(true, &run, "Review", &["A-4"], Some("board said yes")), ada()).await.unwrap();
    h.run_reaches(&run, RunState::Succeeded).await;
    let used = h.task(&run, "Use").output.unwrap();
    assert_eq!(ids(&used), vec!["A-1", "A-4"]);
    let approved = &used["governance"]["approved"][0];
    assert_eq!((&approved["by"], &approved["comment"]), (&json!("ada"), &json!("board said yes")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_task_may_be_left_out_when_one_gate_waits_and_must_be_named_when_two_do() {
    let mut h = Setup::new(&governed()).registry(GATE).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    let reply = h.engine.send(answer(true, &run, "", &[], None)).await.unwrap();
    assert_eq!(reply.message, format!("approved 2 item(s) (A-2, A-4) at task Review of run {run}"));
    let audit = &h.store().audit_trail(1).unwrap()[0];
    assert!(audit.command.contains(r#""task":"Review""#), "the audit names the gate answered: {}", audit.command);
    h.run_reaches(&run, RunState::Succeeded).await;
    let none = h.engine.send(answer(true, &run, "", &[], None)).await.unwrap_err();
    assert_eq!(none, format!("no task of run {run} is waiting for approval"));

    let two = format!(
        "id = \"Two\"\n{PRODUCE}\n[[tasks]]\nname = \"Left\"\nlayer = \"Gate\"\ndepends_on = [\"Produce\"]\n[[tasks]]\nname = \"Right\"\nlayer = \"Gate\"\ndepends_on = [\"Produce\"]\n"
    );
    let mut h = Setup::new(&two).registry(GATE).start();
    let run = h.trigger("Two").await;
    // The run waits as soon as one gate does: the other may still be judging.
    wait_until("both gates wait", || {
        ["Left", "Right"].iter().all(|task| h.task(&run, task).state == TaskState::WaitingApproval)
    });
    let refused = h.engine.send(answer(true, &run, "", &[], None)).await.unwrap_err();
    assert_eq!(refused, format!("2 gates wait in run {run}: name one (Left, Right)"));
}

fn timed(on_timeout: &str) -> String {
    format!("{GATE}approval_timeout = \"1h\"\non_timeout = \"{on_timeout}\"\n")
}

/// Waits until the gate's task has finished, as the timer decided it.
async fn timed_out(h: &mut Harness, run: &str) -> Value {
    h.run_reaches(run, RunState::Succeeded).await;
    h.task(run, "Use").output.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_gate_rejects_what_is_still_held_with_an_alert_and_an_audit_entry() {
    let clock = ManualClock::new(chrono::Utc::now());
    let mut h = Setup::new(&governed()).registry(&timed("reject")).clock(&clock).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    let record = h.task(&run, "Review").output.unwrap()["governance"].clone();
    let time = |key: &str| chrono::DateTime::parse_from_rfc3339(record[key].as_str().unwrap()).unwrap();
    assert_eq!(time("expires_at") - time("waiting_since"), chrono::Duration::hours(1));
    h.engine.send(answer(true, &run, "Review", &["A-4"], None)).await.unwrap();

    clock.advance(Duration::from_secs(59 * 60));
    h.engine.barrier().await.unwrap();
    assert_eq!(h.task(&run, "Review").state, TaskState::WaitingApproval, "not expired a minute early");
    clock.advance(Duration::from_secs(2 * 60));
    h.engine.barrier().await.unwrap();
    let used = timed_out(&mut h, &run).await;
    assert_eq!(ids(&used), vec!["A-1", "A-4"], "A-2, still held, is rejected");
    let rejected = &used["governance"]["rejected"][1];
    assert_eq!((&rejected["item"]["id"], &rejected["by"]), (&json!("A-2"), &json!(["operator timeout"])));
    assert_eq!(rejected["comment"], "approval_timeout of 1h expired");
    let alert = &h.store().alerts(1).unwrap()[0];
    assert_eq!(alert.severity, "warning");
    assert_eq!(
        alert.message,
        format!("the gate's 1h approval timeout expired: rejected 1 item(s) (A-2) at task Review of run {run}")
    );
    let audit = &h.store().audit_trail(1).unwrap()[0];
    assert_eq!((audit.who.as_str(), audit.origin.as_str()), ("timeout", "engine"));
    assert!(audit.command.contains("\"reject\""), "{}", audit.command);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_gate_approves_what_is_still_held_when_on_timeout_says_so() {
    let clock = ManualClock::new(chrono::Utc::now());
    let mut h = Setup::new(&governed()).registry(&timed("approve")).clock(&clock).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    clock.advance(Duration::from_secs(61 * 60));
    h.engine.barrier().await.unwrap();
    let used = timed_out(&mut h, &run).await;
    assert_eq!(ids(&used), vec!["A-1", "A-2", "A-4"]);
    assert_eq!(used["governance"]["approved"][0]["by"], "timeout");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gates_timeout_survives_an_engine_restart() {
    let clock = ManualClock::new(chrono::Utc::now());
    let mut h = Setup::new(&governed()).registry(&timed("reject")).clock(&clock).start();
    let run = h.trigger("Governed").await;
    h.run_reaches(&run, RunState::WaitingApproval).await;
    h.restart().await;
    h.engine.barrier().await.unwrap();
    assert_eq!(h.task(&run, "Review").state, TaskState::WaitingApproval);
    clock.advance(Duration::from_secs(2 * 3600));
    h.engine.barrier().await.unwrap();
    let used = timed_out(&mut h, &run).await;
    assert_eq!(ids(&used), vec!["A-1"], "both held items were rejected by the timeout");
}
